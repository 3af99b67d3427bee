"""Forward latency: our MobileBertModel vs transformers' MobileBertModel on the same weights and inputs.

fp32, inference mode, full 24-layer MobileBERT; batch {1, 8} x seq 128 x threads {1, 2}. The two models run
interleaved (A B A B ...) so machine noise hits both alike; the table gives median and p90 and the ratio
ours / transformers (below 1.0 means we are faster).

    python benchmarks/forward.py [--runs 30] [--out benchmarks/results/forward.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from mobilebert import MobileBertConfig, MobileBertModel
from mobilebert.atomic import atomic_write_text


def p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10)[-1]


def time_pair(fns: dict[str, callable], runs: int, warmup: int = 3) -> dict[str, list[float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():  # interleaved
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", default="benchmarks/results/forward.json")
    args = ap.parse_args()

    import transformers

    torch.manual_seed(0)
    cfg = MobileBertConfig.from_preset("mobilebert", num_hidden_layers=args.layers, padding_invariant=False)
    ours = MobileBertModel(cfg).eval()
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d)
        ref = transformers.MobileBertModel.from_pretrained(d).eval()

    rows = []
    print(f"{'batch':>5} {'threads':>7} {'ours ms (med/p90)':>18} {'transformers ms':>18} {'ratio':>6}")
    for threads in map(int, args.threads.split(",")):
        torch.set_num_threads(threads)
        for b in map(int, args.batches.split(",")):
            ids = torch.randint(1000, cfg.vocab_size, (b, args.seq))
            mask = torch.ones_like(ids)
            types = torch.zeros_like(ids)
            with torch.inference_mode():
                o = ours(ids, mask, types).last_hidden_state
                r = ref(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
                err = ((o - r).abs().max() / r.abs().max()).item()
                inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
                t = time_pair({"ours": partial(ours, **inputs), "transformers": partial(ref, **inputs)}, args.runs)
            row = {"batch": b, "seq": args.seq, "threads": threads, "rel_err": err,
                   **{f"{k}_median_ms": statistics.median(v) for k, v in t.items()},
                   **{f"{k}_p90_ms": p90(v) for k, v in t.items()}}
            row["ratio_median"] = row["ours_median_ms"] / row["transformers_median_ms"]
            rows.append(row)
            print(f"{b:>5} {threads:>7} {row['ours_median_ms']:>9.1f}/{row['ours_p90_ms']:<8.1f}"
                  f"{row['transformers_median_ms']:>9.1f}/{row['transformers_p90_ms']:<8.1f} "
                  f"{row['ratio_median']:>6.2f}")
    out = Path(args.out)
    meta = {"layers": args.layers, "runs": args.runs, "torch": torch.__version__,
            "transformers": transformers.__version__, "dtype": "float32"}
    atomic_write_text(out, json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
