"""Inference speed claims of issue 5, measured in one run on the same weights (batch 1, seq 128, 2 threads).

Baseline: transformers' MobileBertModel in eager mode on the same weights. Backends are interleaved
(A B C A B C ...) and medians reported. Also measured here: this machine's GEMM rate per dtype, which turns
the model's FLOPs into a latency floor, and MobileBERT w/o OPT (LayerNorm + GELU, same weights) on the
same fast paths, to see whether NoNorm + ReLU pay off.

    .venv/bin/python benchmarks/inference.py                 # full model, ~5 minutes on 2 busy cores
    .venv/bin/python benchmarks/inference.py --layers 6 --repeats 5   # quicker
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from mobilebert import MobileBertConfig, MobileBertModel
from mobilebert.atomic import atomic_write_text
from mobilebert.deploy.bench import BenchConfig, format_table, run_bench

FAST_PATHS = ("optimized", "ort-fp32", "ort-int8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "inference.json"))
    a = p.parse_args(argv)

    torch.manual_seed(0)
    student = MobileBertModel(MobileBertConfig.from_preset("mobilebert", num_hidden_layers=a.layers)).eval()
    noopt = MobileBertModel(MobileBertConfig.from_preset("mobilebert-no-opt", num_hidden_layers=a.layers)).eval()
    noopt.load_state_dict(student.state_dict())  # same weights: NoNorm and LayerNorm parameters share shapes
    grid = dict(batches=(a.batch,), seqs=(a.seq,), threads=(a.threads,), repeats=a.repeats)
    res = run_bench(student, BenchConfig(**grid))
    res_noopt = run_bench(noopt, BenchConfig(**grid, backends=FAST_PATHS))
    print(format_table(res))
    print("\nMobileBERT w/o OPT (LayerNorm + GELU) on the same paths:")
    print(format_table(res_noopt, baseline="none"))

    pt = (a.threads, a.batch, a.seq)
    lat = {r["backend"]: r["median_ms"] for r in res.rows}
    flops = res.flops_per_seq[a.seq] * a.batch
    rate = {k.split("@")[0]: v for k, v in res.gemm_gflops.items() if k.endswith(f"@{a.threads}t")}
    hf = res.latency("transformers", *pt)
    best_int8 = min((b for b in ("ort-int8", "torch-int8") if b in lat), key=lat.get)
    ours_fast = min(FAST_PATHS, key=lambda b: lat[b])
    noopt_fast = min(FAST_PATHS, key=lambda b: res_noopt.latency(b, *pt))

    def floor_ms(kind: str) -> float:
        return flops / (rate[kind] * 1e9) * 1e3

    checks = []
    if hf:
        checks += [("optimized fp32 >= 1.5x transformers eager", hf / lat["optimized"], 1.5),
                   (f"best int8 ({best_int8}) >= 3x transformers eager", hf / lat[best_int8], 3.0),
                   ("bf16 >= 2x transformers eager", hf / lat["bf16"], 2.0)]
    checks += [("optimized fp32 within 1.5x of fp32 floor", floor_ms("fp32") * 1.5 / lat["optimized"], 1.0),
               ("bf16 within 1.5x of bf16 floor", floor_ms("bf16") * 1.5 / lat["bf16"], 1.0),
               (f"{best_int8} within 1.5x of int8 floor", floor_ms("int8") * 1.5 / lat[best_int8], 1.0),
               (f"w/o OPT ({noopt_fast}) >= 1.5x slower than MobileBERT ({ours_fast})",
                res_noopt.latency(noopt_fast, *pt) / lat[ours_fast], 1.5)]
    print(f"\nmodel FLOPs {flops / 1e9:.2f} G; floors: " + ", ".join(f"{k} {floor_ms(k):.1f} ms" for k in rate))
    for name, value, need in checks:
        print(f"{'MET ' if value >= need else 'MISS'}  {name}: {value:.2f} (need >= {need})")
    out = Path(a.json)
    atomic_write_text(out, json.dumps({"args": vars(a), "mobilebert": asdict(res), "no_opt": asdict(res_noopt),
                               "floors_ms": {k: floor_ms(k) for k in rate},
                               "checks": [{"name": n, "value": v, "need": r, "met": v >= r} for n, v, r in checks]},
                              indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
