"""Inference speed claims of issues 5 and 14, measured in one run on the same weights (batch 1, seq 128).

Baseline: transformers' MobileBertModel in eager mode on the same weights. Backends are interleaved
(A B C A B C ...) and medians reported; with litert-torch and executorch installed (the mobile venv) the phone
files (LiteRT, ExecuTorch; fp32 and int8) are rows too. Also measured here: this machine's GEMM rate per dtype,
which turns the model's FLOPs into a latency floor, and MobileBERT w/o OPT (LayerNorm + GELU, same weights) on
the same fast paths, to see whether NoNorm + ReLU pay off. ``--e2e`` (a classifier ``--model``, mediapipe
installed) adds raw text -> label through MediaPipe's TextClassifier against our Python pipeline.

    .venv/bin/python benchmarks/inference.py                 # full model, ~5 minutes on 2 busy cores
    .venv/bin/python benchmarks/inference.py --layers 6 --repeats 5   # quicker
    .venv-mobile/bin/python benchmarks/inference.py --model runs/task_distill/kd/seed-1/best --threads 1 2 \\
        --skip-no-opt --e2e --json benchmarks/results/inference_phone.json   # phone paths (issue 14)
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
from mobilebert.data.glue import SAMPLE_DIR, read_glue
from mobilebert.deploy.bench import (
    ALL_BACKENDS,
    BenchConfig,
    BenchResult,
    bench_text_classifier,
    format_table,
    format_text_table,
    has_vnni,
    run_bench,
)

FAST_PATHS = ("optimized", "ort-fp32", "ort-int8")
INT8_PATHS = ("ort-int8", "torch-int8", "litert-int8", "executorch-int8")
SHARED_GLUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"


def checks_at(res: BenchResult, res_noopt: BenchResult | None, threads: int, batch: int, seq: int
              ) -> tuple[list[tuple[str, float, float]], dict[str, float]]:
    """The targets at one thread count as (name, value, need) (met when value >= need), and the FLOP floors
    (ms) of this machine's GEMM rates. A target whose rows are missing (a skipped backend) is left out."""
    pt = (threads, batch, seq)
    lat = {r["backend"]: r["median_ms"] for r in res.rows if (r["threads"], r["batch"], r["seq"]) == pt}
    flops = res.flops_per_seq[seq] * batch
    rate = {k.split("@")[0]: v for k, v in res.gemm_gflops.items() if k.endswith(f"@{threads}t")}
    floors = {k: flops / (v * 1e9) * 1e3 for k, v in rate.items()}
    hf = lat.get("transformers")
    int8 = [b for b in INT8_PATHS if b in lat]
    best_int8 = min(int8, key=lat.__getitem__) if int8 else None
    best = min(lat, key=lat.__getitem__)
    vnni = has_vnni(res.machine.get("cpu", ""))
    t = f"[{threads}t] "
    checks = []
    if hf and "optimized" in lat:
        checks.append((f"{t}optimized fp32 >= 1.5x transformers eager", hf / lat["optimized"], 1.5))
    if hf and best_int8:
        checks.append((f"{t}best int8 ({best_int8}) >= 3x transformers eager"
                       f"{' (target on this VNNI CPU)' if vnni else ''}", hf / lat[best_int8], 3.0))
    if hf and "bf16" in lat:
        checks.append((f"{t}bf16 >= 2x transformers eager", hf / lat["bf16"], 2.0))
    if "optimized" in lat:
        checks.append((f"{t}optimized fp32 within 1.5x of fp32 floor", floors["fp32"] * 1.5 / lat["optimized"], 1.0))
    checks.append((f"{t}best path ({best}) within 1.3x of fp32 floor{'' if vnni else ' (target on this AVX2 CPU)'}",
                   floors["fp32"] * 1.3 / lat[best], 1.0))
    if "bf16" in lat:
        checks.append((f"{t}bf16 within 1.5x of bf16 floor", floors["bf16"] * 1.5 / lat["bf16"], 1.0))
    if best_int8:
        checks.append((f"{t}{best_int8} within 1.5x of int8 floor", floors["int8"] * 1.5 / lat[best_int8], 1.0))
    if res_noopt is not None:
        ours = [b for b in FAST_PATHS if b in lat]
        theirs = [b for b in FAST_PATHS if res_noopt.latency(b, *pt)]
        if ours and theirs:
            ours_fast = min(ours, key=lat.__getitem__)
            noopt_fast = min(theirs, key=lambda b: res_noopt.latency(b, *pt))
            checks.append((f"{t}w/o OPT ({noopt_fast}) >= 1.5x slower than MobileBERT ({ours_fast})",
                           res_noopt.latency(noopt_fast, *pt) / lat[ours_fast], 1.5))
    return checks, floors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="checkpoint folder to time (its encoder); default: a random-weight "
                   "MobileBERT of --layers layers")
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--backends", nargs="+", choices=ALL_BACKENDS, default=None,
                   help="subset (default: all; the phone ones run where litert-torch / executorch import)")
    p.add_argument("--skip-no-opt", action="store_true",
                   help="do not time MobileBERT w/o OPT (LayerNorm + GELU) on the same weights")
    p.add_argument("--e2e", action="store_true", help="raw text -> label: MediaPipe TextClassifier against our "
                   "Python pipeline (needs a classifier --model and mediapipe)")
    p.add_argument("--e2e-texts", type=int, default=32, help="SST-2 dev sentences the e2e calls cycle through")
    p.add_argument("--glue", default=str(SHARED_GLUE), help="GLUE folder for --e2e (else the bundled sample)")
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "inference.json"))
    a = p.parse_args(argv)
    if a.e2e and not a.model:
        p.error("--e2e needs --model (a fine-tuned sequence classifier with its vocab)")

    torch.manual_seed(0)
    if a.model:
        from mobilebert.load import load_model

        student = load_model(a.model).eval()
        config = student.config
    else:
        config = MobileBertConfig.from_preset("mobilebert", num_hidden_layers=a.layers)
        student = MobileBertModel(config).eval()
    grid = dict(batches=(a.batch,), seqs=(a.seq,), threads=tuple(a.threads), repeats=a.repeats)
    res = run_bench(student, BenchConfig(**grid, backends=tuple(a.backends or ALL_BACKENDS)))
    print(format_table(res))
    res_noopt = None
    if not a.skip_no_opt:
        encoder = student if isinstance(student, MobileBertModel) else student.mobilebert
        noopt = MobileBertModel(config.replace(normalization_type="layer_norm", hidden_act="gelu")).eval()
        noopt.load_state_dict(encoder.state_dict())  # same weights: NoNorm and LayerNorm parameters share shapes
        res_noopt = run_bench(noopt, BenchConfig(**grid, backends=FAST_PATHS))
        print("\nMobileBERT w/o OPT (LayerNorm + GELU) on the same paths:")
        print(format_table(res_noopt, baseline="none"))

    e2e = None
    if a.e2e:
        glue_dir = a.glue if (Path(a.glue) / "SST-2").is_dir() else SAMPLE_DIR
        texts = [e.text_a for e in read_glue("sst2", glue_dir, "dev", limit=a.e2e_texts)]
        e2e = bench_text_classifier(a.model, texts, a.seq, tuple(a.threads), a.repeats)
        e2e["data"] = str(glue_dir)
        print("\n" + format_text_table(e2e))

    checks, floors = [], {}
    print(f"\nCPU {res.machine['cpu']}; model FLOPs {res.flops_per_seq[a.seq] * a.batch / 1e9:.2f} G")
    for t in a.threads:
        c, floors[t] = checks_at(res, res_noopt, t, a.batch, a.seq)
        checks += c
        print(f"floors at {t} thread(s): " + ", ".join(f"{k} {v:.1f} ms" for k, v in floors[t].items()))
    for name, value, need in checks:
        print(f"{'MET ' if value >= need else 'MISS'}  {name}: {value:.2f} (need >= {need})")
    out = Path(a.json)
    atomic_write_text(out, json.dumps({"args": vars(a), "cpu": res.machine["cpu"], "mobilebert": asdict(res),
                                       "no_opt": asdict(res_noopt) if res_noopt else None, "e2e": e2e,
                                       "floors_ms": floors,
                                       "checks": [{"name": n, "value": v, "need": r, "met": v >= r}
                                                  for n, v, r in checks]}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
