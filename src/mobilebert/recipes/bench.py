"""Latency of every backend on the same weights over a batch x seq x threads grid (``mobilebert bench``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..deploy.bench import ALL_BACKENDS, BenchConfig, bench_checkpoint, format_table
from ..options import option


@dataclass
class BenchCommandConfig:
    model_dir: str = option(help="checkpoint folder", positional=True, path="model")
    out: str = option("bench_out", help="folder for bench.json and bench.png", output="file")
    batches: list[int] = option(factory=lambda: [1, 8], help="batch sizes of the grid", at_least=1)
    seqs: list[int] = option(factory=lambda: [32, 128, 384], help="sequence lengths of the grid (at most the "
                             "model's max_position_embeddings)", at_least=1)
    threads: list[int] = option(factory=lambda: [1, 2], help="torch / ONNX Runtime / LiteRT / ExecuTorch thread "
                                "counts", at_least=1)
    backends: list[str] | None = option(None, help="subset of backends (default: all; a phone backend whose package "
                                        "is missing is reported as skipped with its install line)",
                                        choices=ALL_BACKENDS)
    repeats: int = option(10, help="timed calls per backend and grid point", at_least=1)


def main(cfg: BenchCommandConfig) -> int:
    backends = tuple(cfg.backends or ALL_BACKENDS)
    why_not_bf16 = slow_bf16() if cfg.backends is None else None  # emulated bf16 is no result worth a row
    if why_not_bf16:
        backends = tuple(b for b in backends if b != "bf16")
    grid = BenchConfig(batches=tuple(cfg.batches), seqs=tuple(cfg.seqs), threads=tuple(cfg.threads),
                       backends=backends, repeats=cfg.repeats)
    print(format_table(bench_checkpoint(cfg.model_dir, cfg.out, grid)))
    if why_not_bf16:
        print(f"bf16: skipped ({why_not_bf16}; --backends bf16 times it anyway)")
    wrote = [str(p) for p in (Path(cfg.out) / "bench.json", Path(cfg.out) / "bench.png") if p.is_file()]
    print(f"wrote {' and '.join(wrote)}" if wrote else f"nothing written to {cfg.out}")
    return 0


def slow_bf16(size: int = 256, reps: int = 5) -> str | None:
    """Why bf16 should not be timed on this CPU, or None. Measured, not guessed from CPU flags: a square GEMM in
    bf16 against fp32, best of ``reps``; without native support (AVX512-BF16 / AMX on x86, BF16 on Arm)
    PyTorch emulates bf16 and it runs several times slower than fp32."""
    import time

    import torch

    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        rates[dtype] = 2 * size**3 / best / 1e9
    fp32, bf16 = rates[torch.float32], rates[torch.bfloat16]
    if bf16 >= 0.5 * fp32:
        return None
    return (f"bf16 GEMM runs at {bf16:.1f} GFLOP/s against fp32's {fp32:.1f} on this CPU (no native bf16, so "
            "PyTorch emulates it)")
