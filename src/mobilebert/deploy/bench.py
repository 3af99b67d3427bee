"""Latency of every inference backend over a grid of batch x sequence x threads, sizes on disk, a plot.

Backends run interleaved (A B C A B C ...) so that noise from other processes on a shared machine hits all
of them alike; medians and 90th percentiles are reported. All backends run the same encoder weights
(``MobileBertModel``: embeddings + blocks + pooler); task heads are too small to matter.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from ..atomic import atomic_path, atomic_write_text
from ..modeling import MobileBertModel
from .optimize import optimize_for_inference

log = logging.getLogger(__name__)

# Pause before each timed call: ONNX Runtime's worker threads spin for ~10-30 ms after a run (and OpenMP's
# briefly), stealing cores from whatever runs next; measured here, back to back, the optimized PyTorch module
# ran 2.5x slower right after an ONNX Runtime call. A deployment runs one runtime; so does each timed call.
SETTLE_S = 0.05
ALL_BACKENDS = ("eager", "optimized", "bf16", "ort-fp32", "ort-int8", "torch-int8", "transformers")


@dataclass
class BenchConfig:
    """The grid; shrink it for a quick run (e.g. batches=(1,), seqs=(128,), threads=(2,), repeats=5)."""

    batches: tuple[int, ...] = (1, 8)
    seqs: tuple[int, ...] = (32, 128, 384)
    threads: tuple[int, ...] = (1, 2)
    backends: tuple[str, ...] = ALL_BACKENDS
    repeats: int = 10  # timed calls per backend and grid point (after 2 warm-up calls)


@dataclass
class BenchResult:
    rows: list[dict] = field(default_factory=list)  # backend, threads, batch, seq, median_ms, p90_ms
    sizes_mb: dict[str, float] = field(default_factory=dict)
    gemm_gflops: dict[str, float] = field(default_factory=dict)  # "<dtype>@<threads>t" -> measured GEMM rate
    flops_per_seq: dict[int, float] = field(default_factory=dict)  # seq -> model FLOPs for one sequence
    machine: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # backend -> why it did not run

    def latency(self, backend: str, threads: int, batch: int, seq: int) -> float | None:
        for r in self.rows:
            if (r["backend"], r["threads"], r["batch"], r["seq"]) == (backend, threads, batch, seq):
                return r["median_ms"]
        return None


# ----------------------------------------------------------------------------- what is measured
def model_flops(model: MobileBertModel, seq: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of one sequence: every encoder Linear plus the attention matmuls."""
    c = model.config
    linear = sum(2 * seq * m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    attention = c.num_hidden_layers * 2 * 2 * seq * seq * c.true_hidden_size  # QK^T and PV
    return float(linear + attention)


def gemm_rate(kind: str, threads: int, m: int = 128, k: int = 512, n: int = 512) -> float:
    """GFLOP/s of this machine's best-of-20 (m x k) @ (k x n) GEMM for fp32, bf16 or int8 (dynamic, fbgemm)."""
    torch.set_num_threads(threads)
    x = torch.randn(m, k)
    if kind == "int8":
        from torch.ao.nn.quantized.dynamic import Linear as QLinear

        lin = nn.Linear(k, n)
        q = QLinear(k, n)
        q.set_weight_bias(torch.quantize_per_tensor(lin.weight.detach(), 0.01, 0, torch.qint8), lin.bias.detach())
        fn: Callable[[], object] = lambda: q(x)  # noqa: E731
    else:
        dt = torch.bfloat16 if kind == "bf16" else torch.float32
        a, w = x.to(dt), torch.randn(k, n, dtype=dt)
        fn = lambda: a @ w  # noqa: E731
    best = float("inf")
    for i in range(25):
        t = time.perf_counter()
        fn()
        if i >= 5:
            best = min(best, time.perf_counter() - t)
    return 2 * m * k * n / best / 1e9


def _file_mb(path: Path) -> float:
    return path.stat().st_size / 2**20


def _state_mb(module: nn.Module, tmp: Path, name: str) -> float:
    """Size of the module's weights as saved: safetensors, or torch's format for quantized (packed) weights."""
    state = module.state_dict()
    plain = all(isinstance(v, torch.Tensor) and not v.is_quantized for v in state.values())
    path = tmp / f"{name}.{'safetensors' if plain else 'pt'}"
    if plain:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return _file_mb(path)


def transformers_twin(model: MobileBertModel) -> nn.Module | None:
    """transformers' MobileBertModel holding the same weights (None if transformers is absent)."""
    try:
        import transformers
    except ImportError:
        return None
    from ..checkpoint import to_hf_state_dict

    cfg = model.config
    if cfg.model_type != "mobilebert":
        return None
    hf = transformers.MobileBertModel(transformers.MobileBertConfig(**cfg.to_dict()),
                                      add_pooling_layer=model.pooler is not None).eval()
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(model), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing:
        log.warning("transformers twin: %d weights not loaded (%s); skipping it", len(missing), missing[:3])
        return None
    return hf


def build_backends(model: nn.Module, names: tuple[str, ...], tmp: Path, threads: tuple[int, ...]
                   ) -> tuple[dict[str, dict[int, Callable]], dict[str, float], dict[str, str]]:
    """name -> {threads -> callable(input_ids, attention_mask)}, sizes in MB, and skipped backends."""
    enc: MobileBertModel = model if isinstance(model, MobileBertModel) else model.mobilebert
    enc = enc.eval()
    runs: dict[str, dict[int, Callable]] = {}
    sizes: dict[str, float] = {}
    skipped: dict[str, str] = {}

    def same_for_all(fn: Callable) -> dict[int, Callable]:
        return dict.fromkeys(threads, fn)

    for name in names:
        try:
            if name == "eager":
                runs[name], sizes[name] = same_for_all(enc), _state_mb(enc, tmp, name)
            elif name in ("optimized", "bf16"):
                fast = optimize_for_inference(enc, dtype=torch.bfloat16 if name == "bf16" else torch.float32)
                runs[name], sizes[name] = same_for_all(fast), _state_mb(fast, tmp, name)
            elif name == "torch-int8":
                from .quantize import quantize_torch

                q = quantize_torch(enc)
                runs[name], sizes[name] = same_for_all(q), _state_mb(q, tmp, name)
            elif name in ("ort-fp32", "ort-int8"):
                from .onnx import OnnxModel, export_onnx

                out = tmp / "onnx"
                if not out.exists():
                    export_onnx(copy.deepcopy(enc), out, int8="ort-int8" in names)
                file = out / ("model.int8.onnx" if name == "ort-int8" else "model.onnx")
                runs[name] = {t: OnnxModel(file, threads=t) for t in threads}
                sizes[name] = _file_mb(file)
            elif name == "transformers":
                hf = transformers_twin(enc)
                if hf is None:
                    skipped[name] = "transformers not installed or not a MobileBERT config"
                    continue
                runs[name], sizes[name] = same_for_all(hf), _state_mb(hf, tmp, name)
            else:
                raise ValueError(f"unknown backend {name!r}; choose from {', '.join(ALL_BACKENDS)}")
        except (ImportError, RuntimeError) as e:  # a backend that cannot run here is reported, not fatal
            skipped[name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log.warning("backend %s skipped: %s", name, skipped[name])
    return runs, sizes, skipped


# ----------------------------------------------------------------------------- the grid
def run_bench(model: nn.Module, cfg: BenchConfig | None = None, progress: bool = True) -> BenchResult:
    """Time every backend on every grid point (interleaved), plus GEMM rates and sizes."""
    return compare_models({"model": model}, cfg, progress)["model"]


def compare_models(models: dict[str, nn.Module], cfg: BenchConfig | None = None, progress: bool = True
                   ) -> dict[str, BenchResult]:
    """``run_bench`` for several models at once, every (model, backend) pair interleaved in one loop on the same
    inputs, so that ratios between models (a student against its teacher) are measured under the same load."""
    cfg = cfg or BenchConfig()
    encs = {k: (m if isinstance(m, MobileBertModel) else m.mobilebert) for k, m in models.items()}
    machine = {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
               "cores": str(os.cpu_count())}
    results = {k: BenchResult(machine=dict(machine)) for k in models}
    vocab = min(e.config.vocab_size for e in encs.values())
    positions = min(e.config.max_position_embeddings for e in encs.values())
    saved_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="mobilebert-bench-") as d:
        runs: dict[tuple[str, str], dict[int, Callable]] = {}
        for k, m in models.items():
            (Path(d) / k).mkdir()
            model_runs, results[k].sizes_mb, results[k].skipped = build_backends(m, cfg.backends, Path(d) / k,
                                                                                 cfg.threads)
            runs.update({(k, n): fns for n, fns in model_runs.items()})
            for s_ in cfg.seqs:
                results[k].flops_per_seq[s_] = model_flops(encs[k], s_)
        points = [(t, b, s) for t in cfg.threads for b in cfg.batches for s in cfg.seqs if s <= positions]
        bar = tqdm(points, desc="bench", disable=not progress)
        for t, b, s in bar:
            torch.set_num_threads(t)
            ids = torch.randint(1, vocab, (b, s))
            mask = torch.ones_like(ids)
            times: dict[tuple[str, str], list[float]] = {n: [] for n in runs}
            with torch.inference_mode():
                for fns in runs.values():
                    for _ in range(2):
                        fns[t](input_ids=ids, attention_mask=mask)
                for _ in range(cfg.repeats):
                    for n, fns in runs.items():
                        time.sleep(SETTLE_S)
                        start = time.perf_counter()
                        fns[t](input_ids=ids, attention_mask=mask)
                        times[n].append((time.perf_counter() - start) * 1e3)
            for (k, n), ts in times.items():
                ts.sort()
                results[k].rows.append({"backend": n, "threads": t, "batch": b, "seq": s,
                                        "median_ms": statistics.median(ts),
                                        "p90_ms": ts[min(len(ts) - 1, int(0.9 * len(ts)))]})
        for t in cfg.threads:
            for kind in ("fp32", "bf16", "int8"):
                time.sleep(SETTLE_S)
                rate = gemm_rate(kind, t)
                for r in results.values():
                    r.gemm_gflops[f"{kind}@{t}t"] = rate
    torch.set_num_threads(saved_threads)
    return results


# ----------------------------------------------------------------------------- reporting
def format_table(res: BenchResult, baseline: str = "transformers") -> str:
    """One line per backend and grid point: median, p90, speed-up against ``baseline`` (else eager)."""
    base = baseline if any(r["backend"] == baseline for r in res.rows) else "eager"
    lines = [f"{'backend':<13}{'thr':>4}{'batch':>6}{'seq':>5}{'median ms':>11}{'p90 ms':>9}{'x ' + base:>16}"
             f"{'size MB':>9}"]
    for r in res.rows:
        b = res.latency(base, r["threads"], r["batch"], r["seq"])
        ratio = f"{b / r['median_ms']:.2f}" if b else "-"
        lines.append(f"{r['backend']:<13}{r['threads']:>4}{r['batch']:>6}{r['seq']:>5}{r['median_ms']:>11.2f}"
                     f"{r['p90_ms']:>9.2f}{ratio:>16}{res.sizes_mb.get(r['backend'], 0):>9.1f}")
    for n, why in res.skipped.items():
        lines.append(f"{n}: skipped ({why})")
    rates = ", ".join(f"{k} {v:.0f}" for k, v in res.gemm_gflops.items())
    lines.append(f"GEMM GFLOP/s (128x512 @ 512x512): {rates}")
    return "\n".join(lines)


def plot(res: BenchResult, path: str | os.PathLike, threads: int, batch: int, seq: int) -> Path | None:
    """Latency against size on disk, one point per backend at one grid point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(n, res.sizes_mb[n], res.latency(n, threads, batch, seq)) for n in res.sizes_mb]
    pts = [p for p in pts if p[2] is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, size, lat in pts:
        ax.scatter(size, lat)
        ax.annotate(n, (size, lat), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("size on disk (MB)")
    ax.set_ylabel(f"median latency (ms), batch {batch}, seq {seq}, {threads} threads")
    ax.set_title("MobileBERT inference backends")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def save_json(res: BenchResult, path: str | os.PathLike) -> None:
    atomic_write_text(Path(path), json.dumps(asdict(res), indent=2) + "\n")


def bench_checkpoint(model_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: BenchConfig | None = None
                     ) -> BenchResult:
    """``mobilebert bench``: load a checkpoint, run the grid, write bench.json and bench.png into out_dir."""
    from .onnx import load_for_export

    model = load_for_export(model_dir)
    cfg = cfg or BenchConfig()
    res = run_bench(model, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_json(res, out / "bench.json")
    seq = 128 if 128 in cfg.seqs else cfg.seqs[0]
    plot(res, out / "bench.png", threads=max(cfg.threads), batch=min(cfg.batches), seq=seq)
    return res


__all__ = ["ALL_BACKENDS", "BenchConfig", "BenchResult", "bench_checkpoint", "format_table", "gemm_rate",
           "model_flops", "plot", "run_bench", "save_json", "transformers_twin"]
