"""Run a model over encoded rows and score the outputs: one path for every runtime and every task.

``run_model`` drives anything called like our models, ``model(input_ids, attention_mask, token_type_ids)`` ->
an output with ``logits`` or ``start_logits`` / ``end_logits``: a PyTorch module, ``deploy.onnx.OnnxModel``, or
any other runtime's wrapper. GLUE scoring (``score_glue``) and SQuAD decoding + metrics (``score_squad``) are
written here once; evaluation during training, ``mobilebert evaluate``, ONNX accuracy and the benchmarks all
call them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write_text
from ..data import glue, squad
from ..data.finetuning import Encoded, batches, encode_squad, load_eval_data
from ..data.tasks import TaskSetup
from ..progress import Progress
from ..tokenizer import MobileBertTokenizer
from .load import finetuned_spec, load_finetuned


def _numpy(t: Any) -> np.ndarray:
    return t.float().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float32)


@torch.inference_mode()
def run_model(model: Callable[..., Any], enc: Encoded, batch_size: int, pad_id: int = 0,
              desc: str = "eval") -> list:
    """Outputs per row, in row order: logits (classification), a score (regression) or (start, end) logits.
    Rows are batched by length, which on a CPU roughly halves the time spent on padding. A PyTorch model is
    put in eval mode and fed on its own device; any other callable gets CPU tensors."""
    device = torch.device("cpu")
    if isinstance(model, nn.Module):
        model.eval()
        device = next(model.parameters()).device
    order = sorted(range(len(enc.input_ids)), key=lambda i: len(enc.input_ids[i]))
    out: list = [None] * len(order)
    for ids, mask, types, chunk in Progress(batches(enc, order, batch_size, pad_id), desc=desc, leave=False,
                                            total=math.ceil(len(order) / batch_size)):
        res = model(ids.to(device), mask.to(device), types.to(device))
        if res.logits is not None:
            for r, i in enumerate(chunk):
                out[i] = _numpy(res.logits[r])
        else:
            for r, i in enumerate(chunk):
                out[i] = (_numpy(res.start_logits[r]), _numpy(res.end_logits[r]))
    return out


# ----------------------------------------------------------------------------- scoring
def predicted_ids(task: glue.GlueTask, outputs: list) -> np.ndarray:
    """Class ids (argmax) or regression scores of ``run_model`` outputs."""
    return np.array([o[0] for o in outputs]) if task.is_regression else np.array([int(o.argmax()) for o in outputs])


def score_glue(task: glue.GlueTask, outputs: list, labels: Sequence) -> tuple[dict[str, float], np.ndarray]:
    """(the task's metrics incl. ``score``, the predictions) of ``run_model`` outputs against ``labels``."""
    preds = predicted_ids(task, outputs)
    return glue.compute_metrics(task, preds, labels), preds


def decode_squad(examples: Sequence[squad.SquadExample], features: Sequence[squad.SquadFeature], outputs: list,
                 spec: TaskSetup) -> dict[str, squad.Prediction]:
    """Answers per question from ``run_model``'s (start, end) logits per feature window."""
    return squad.decode(examples, features, [o[0] for o in outputs], [o[1] for o in outputs],
                        max_answer_length=spec.max_answer_length, version_2=spec.version_2,
                        null_threshold=spec.null_threshold)


def score_squad(examples: Sequence[squad.SquadExample], preds: dict[str, squad.Prediction],
                spec: TaskSetup) -> dict[str, float]:
    """EM / F1 (and the v2.0 breakdowns) of decoded answers; ``score`` is F1."""
    na = {q: p.null_score_diff for q, p in preds.items()} if spec.version_2 else None
    metrics = squad.squad_metrics(examples, {q: p.text for q, p in preds.items()}, na_probs=na,
                                  version_2=spec.version_2)
    metrics["score"] = metrics["f1"]
    return metrics


def evaluate_loaded(model: Callable[..., Any], tokenizer: MobileBertTokenizer, spec: TaskSetup,
                    data: dict[str, Any], batch_size: int = 64) -> dict[str, dict[str, float]]:
    """Metrics per evaluation split of already-loaded data (``data`` from ``load_eval_data``)."""
    results = {}
    for split, item in data.items():
        if spec.is_squad:
            examples, features = item
            outs = run_model(model, encode_squad(features), batch_size, tokenizer.pad_token_id, desc=split)
            results[split] = score_squad(examples, decode_squad(examples, features, outs, spec), spec)
        else:
            examples, enc = item
            outs = run_model(model, enc, batch_size, tokenizer.pad_token_id, desc=split)
            results[split], _ = score_glue(glue.get_task(spec.task), outs, [e.label for e in examples])
    return results


# ----------------------------------------------------------------------------- a saved model
def evaluate_checkpoint(model_dir: str | Path, data_dir: str | Path, task: str | None = None,
                        splits: Sequence[str] | None = None, batch_size: int = 64, out_dir: str | Path | None = None,
                        limit: int | None = None, source: str = "tsv") -> dict[str, Any]:
    """Scores of a fine-tuned model on dev splits; test splits (GLUE) produce GLUE-server files in
    ``out_dir`` instead, SQuAD writes predictions.json (and null_odds.json for v2.0) there."""
    model, tokenizer, spec = load_finetuned(model_dir, task)
    out = Path(out_dir) if out_dir else None
    results: dict[str, Any] = {"task": spec.task, "model": str(model_dir)}
    if spec.is_squad:
        examples, features = load_eval_data(spec, data_dir, tokenizer, limit=limit)["dev"]
        outs = run_model(model, encode_squad(features), batch_size, tokenizer.pad_token_id)
        preds = decode_squad(examples, features, outs, spec)
        results["dev"] = score_squad(examples, preds, spec)
        if out:
            squad.write_predictions(preds, out, spec.version_2)
    else:
        task_ = glue.get_task(spec.task)
        for split in list(splits or task_.dev_splits):
            examples, enc = load_eval_data(spec, data_dir, tokenizer, [split], limit, source)[split]
            outs = run_model(model, enc, batch_size, tokenizer.pad_token_id, desc=split)
            if split in task_.test_splits:
                if out is None:
                    raise ValueError("test splits are unlabelled: give an output folder for the GLUE-server files")
                path = glue.write_submission(task_, split, predicted_ids(task_, outs), out)
                results[split] = {"submission": str(path), "rows": len(outs)}
            else:
                results[split], _ = score_glue(task_, outs, [e.label for e in examples])
    if out:
        atomic_write_text(out / "eval_results.json", json.dumps(results, indent=2) + "\n")
    return results


def glue_accuracy(model: Callable[..., Any], finetuned_dir: str | Path, task: str, data_dir: str | Path,
                  limit: int | None = None, split: str = "dev", batch_size: int = 64) -> float:
    """Accuracy x100 of any callable ``model`` (e.g. an ONNX export) of the classifier in ``finetuned_dir``,
    scored exactly as the PyTorch model is: same tokenizer, sequence length, batching and metric."""
    spec = finetuned_spec(finetuned_dir, task)
    tokenizer = MobileBertTokenizer.from_pretrained(finetuned_dir)
    data = load_eval_data(spec, data_dir, tokenizer, [split], limit)
    return 100 * evaluate_loaded(model, tokenizer, spec, data, batch_size)[split]["accuracy"]


def onnx_glue_accuracy(onnx_dir: str | Path, finetuned_dir: str | Path, task: str, data_dir: str | Path,
                       int8: bool, limit: int | None = None, split: str = "dev") -> float:
    """``glue_accuracy`` of a ``mobilebert export`` folder run by ONNX Runtime (``int8``: the quantized file)."""
    from ..deploy.onnx import OnnxModel

    return glue_accuracy(OnnxModel(onnx_dir, int8=int8), finetuned_dir, task, data_dir, limit, split)
