"""Run a model over encoded rows and score the outputs: one path for every runtime and every task.

``run_model`` drives anything called like our models, ``model(input_ids, attention_mask, token_type_ids)`` ->
an output with ``logits`` or ``start_logits`` / ``end_logits``: a PyTorch module, ``deploy.onnx.OnnxModel``, or
any other runtime's wrapper. GLUE scoring (``score_glue``) and SQuAD decoding + metrics (``score_squad``) are
written here once; evaluation during training, ``mobilebert evaluate``, ONNX accuracy and the benchmarks all
call them.
"""

from __future__ import annotations

import dataclasses
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
from ..data.metrics import (
    apply_thresholds,
    classification_metrics,
    entity_metrics,
    majority_baseline,
    multilabel_metrics,
    plot_confusion_matrix,
    tune_thresholds,
)
from ..data.tagging import word_predictions
from ..data.tasks import TaskSetup
from ..deploy.runtime import runtime_model
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
            for r, i in enumerate(chunk):  # per-token logits (T, C) are cut to the row's own tokens
                out[i] = _numpy(res.logits[r] if res.logits.ndim == 2 else res.logits[r, :len(enc.input_ids[i])])
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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def score_file_task(spec: TaskSetup, outputs: list, references: Sequence, enc: Encoded,
                    tune: bool = False) -> tuple[dict[str, float], dict[str, Any]]:
    """(scalar metrics incl. ``score``, details) of ``run_model`` outputs on a ``FILE_TASKS`` split.

    ``score``: accuracy (text classification), micro F1 (multi-label), entity F1 (token classification), the
    mean of Pearson and Spearman (regression). Details: per-class / per-label / per-type scores and the
    confusion matrix. Multi-label: ``tune`` picks per-label thresholds on these rows (stored in the details
    as ``thresholds``); otherwise the model's saved ``spec.thresholds`` (0.5 without) decide."""
    names = list(spec.labels)
    if spec.is_regression:
        metrics = glue.compute_metrics(glue.get_task("stsb"), [float(o[0]) for o in outputs], references)
        return metrics, {}
    if spec.is_token:
        fill = names.index("O") if "O" in names else 0
        preds = [[names[k] for k in word_predictions(o.argmax(-1).tolist(), w, n, fill)]
                 for o, w, n in zip(outputs, enc.word_ids, enc.n_words, strict=True)]
        m = entity_metrics(references, preds)
        scalars = {k: m[k] for k in ("precision", "recall", "f1", "accuracy")}
        return {**scalars, "score": m["f1"]}, {"per_type": m["per_type"], "support": m["support"]}
    if spec.multi_label:
        refs = np.stack(references).astype(int)
        probs = _sigmoid(np.stack(outputs).astype(np.float64))
        thresholds = tune_thresholds(refs, probs) if tune else np.asarray(spec.thresholds or [0.5] * len(names))
        m = multilabel_metrics(refs, apply_thresholds(probs, thresholds), names)
        at_half = multilabel_metrics(refs, apply_thresholds(probs, 0.5), names)["micro_f1"]
        scalars = {"micro_f1": m["micro_f1"], "macro_f1": m["macro_f1"], "exact_match": m["exact_match"],
                   "micro_f1_at_0.5": at_half, "score": m["micro_f1"]}
        return scalars, {"per_label": m["per_label"], "thresholds": [float(t) for t in thresholds]}
    preds = [int(o.argmax()) for o in outputs]
    m = classification_metrics(references, preds, names)
    top, share = majority_baseline(references)
    scalars = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "micro_f1": m["micro_f1"],
               "score": m["accuracy"]}
    return scalars, {"per_class": m["per_class"], "labels": m["labels"], "confusion_matrix": m["confusion_matrix"],
                     "majority_baseline": {"label": names[int(top)], "share": share}}


def write_details(details: dict[str, Any], out: Path, prefix: str = "") -> None:
    """A split's details as ``{prefix}report.json``, and its confusion matrix as a PNG beside it."""
    atomic_write_text(out / f"{prefix}report.json", json.dumps(details, indent=2) + "\n")
    for split, d in details.items():
        if "confusion_matrix" in d:
            plot_confusion_matrix(d["confusion_matrix"], d["labels"], out / f"{prefix}confusion_{split}.png",
                                  title=f"Confusion matrix ({split})")


def evaluate_loaded(model: Callable[..., Any], tokenizer: MobileBertTokenizer, spec: TaskSetup,
                    data: dict[str, Any], batch_size: int = 64, details: dict[str, Any] | None = None,
                    tune: bool = False) -> dict[str, dict[str, float]]:
    """Metrics per evaluation split of already-loaded data (``data`` from ``load_eval_data``); ``details``, when
    given, receives the per-class reports of the user's file tasks (see ``score_file_task``)."""
    results = {}
    for split, item in data.items():
        if spec.is_file_task:
            refs, enc = item
            outs = run_model(model, enc, batch_size, tokenizer.pad_token_id, desc=split)
            results[split], more = score_file_task(spec, outs, refs, enc, tune)
            if details is not None:
                details[split] = more
        elif spec.is_squad:
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
                        limit: int | None = None, source: str = "tsv", columns: dict[str, str | None] | None = None,
                        label_separator: str | None = None, cache_dir: str | Path | None = None,
                        backend: str = "pytorch") -> dict[str, Any]:
    """Scores of a fine-tuned model on dev splits; test splits (GLUE) produce GLUE-server files in
    ``out_dir`` instead, SQuAD writes predictions.json (and null_odds.json for v2.0) there.

    A model fine-tuned on the user's files scores the file ``data_dir`` (its ``validation`` split), reading the
    columns it was trained with unless ``columns`` names others; per-class details (and the confusion matrix
    PNG) go to ``out_dir`` and into the results under ``details``. ``backend``: the runtime that runs the
    model (``deploy.runtime.BACKENDS``: the score of the file one would ship)."""
    model, tokenizer, spec = load_finetuned(model_dir, task)
    model = runtime_model(model, backend, tokenizer, spec.max_seq_length)
    out = Path(out_dir) if out_dir else None
    results: dict[str, Any] = {"task": spec.task, "model": str(model_dir), "backend": backend}
    if spec.is_file_task:
        given = {k: v for k, v in (columns or {}).items() if v is not None}
        spec = dataclasses.replace(spec, columns={**(spec.columns or {}), **given},
                                   label_separator=label_separator or spec.label_separator)
        data = load_eval_data(spec, data_dir, tokenizer, limit=limit, cache_dir=cache_dir)
        details: dict[str, Any] = {}
        results.update(evaluate_loaded(model, tokenizer, spec, data, batch_size, details))
        results["details"] = details
        if out:
            write_details(details, out)
    elif spec.is_squad:
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
