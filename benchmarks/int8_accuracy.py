"""Does int8 keep a real fine-tuned model's accuracy? Every inference backend on one GLUE dev set.

Users of other MobileBERT/BERT ports report int8 models whose accuracy collapses (90% -> 49%). This runs
a fine-tuned checkpoint (``mobilebert finetune`` output) through eager fp32, the optimized fp32 module,
ONNX Runtime fp32 and int8 (``export --int8``), and PyTorch dynamic int8, and reports the dev metric of
each, its change against eager fp32, and how many predictions changed.

    python benchmarks/int8_accuracy.py --model runs/sst2/seed-1/best [--task sst2] [--glue ../shared/data/glue]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobilebert.atomic import atomic_write_text
from mobilebert.data import glue
from mobilebert.data.finetuning import load_eval_data
from mobilebert.deploy.onnx import OnnxModel, export_onnx
from mobilebert.deploy.optimize import optimize_for_inference
from mobilebert.deploy.quantize import quantize_torch
from mobilebert.finetune.evaluate import run_model, score_glue
from mobilebert.finetune.load import load_finetuned

SHARED_GLUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"


class _Callable(nn.Module):
    """Lets ``run_model`` drive anything called like the model (it asks for a parameter's device)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.fn(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a fine-tuned sequence-classification checkpoint folder")
    p.add_argument("--task", default=None, help="GLUE task (default: the one saved with the model)")
    p.add_argument("--glue", default=str(SHARED_GLUE), help="GLUE data folder")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "int8_accuracy.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)

    model, tokenizer, setup = load_finetuned(a.model, a.task)
    task = glue.get_task(setup.task)
    split = task.dev_splits[0]
    examples, enc = load_eval_data(setup, a.glue, tokenizer, [split])[split]
    labels = [e.label for e in examples]
    with tempfile.TemporaryDirectory() as tmp:
        export = export_onnx(model, Path(tmp) / "onnx", int8=True)
        backends = {
            "eager fp32": model,
            "optimized fp32": _Callable(optimize_for_inference(model)),
            "ORT fp32": _Callable(OnnxModel(Path(tmp) / "onnx", threads=a.threads)),
            "ORT int8": _Callable(OnnxModel(Path(tmp) / "onnx", threads=a.threads, int8=True)),
            "torch int8": quantize_torch(model),
        }
        rows = {}
        for name, m in backends.items():
            t0 = time.perf_counter()
            outs = run_model(m, enc, a.batch_size, tokenizer.pad_token_id, desc=name)
            metrics, preds = score_glue(task, outs, labels)
            rows[name] = {"metrics": metrics, "seconds": time.perf_counter() - t0, "preds": np.asarray(preds)}
    ref_preds = rows["eager fp32"]["preds"]
    main_metric = next(iter(rows["eager fp32"]["metrics"]))
    ref = rows["eager fp32"]["metrics"][main_metric]
    print(f"{task.name} {split}, {len(labels)} examples, model {a.model}, {a.threads} thread(s)")
    print(f"{'backend':16s} {main_metric:>10s} {'change':>8s} {'changed preds':>14s} {'seconds':>8s}")
    for name, r in rows.items():
        changed = int((r["preds"] != ref_preds).sum())
        r["changed_predictions"] = changed
        v = r["metrics"][main_metric]
        print(f"{name:16s} {100 * v:10.2f} {100 * (v - ref):+8.2f} {changed:14d} {r['seconds']:8.1f}")
    worst = min(rows[n]["metrics"][main_metric] for n in ("ORT int8", "torch int8")) - ref
    print(f"worst int8 change against eager fp32: {100 * worst:+.2f} points (target: no drop beyond -1)")
    out = {"args": vars(a), "task": task.name, "split": split, "examples": len(labels), "metric": main_metric,
           "onnx_parity": export.parity,
           "backends": {n: {k: v for k, v in r.items() if k != "preds"} for n, r in rows.items()}}
    atomic_write_text(Path(a.json), json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
