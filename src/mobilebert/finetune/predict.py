"""Prediction rows of a fine-tuned model: labels with probabilities, regression scores, or SQuAD answers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import glue, squad
from ..data.finetuning import encode_glue, encode_squad
from ..data.tasks import TaskSetup
from ..tokenizer import MobileBertTokenizer
from .evaluate import decode_squad, run_model
from .load import load_finetuned

Input = str | tuple[str, str]  # a sentence, a sentence pair, or (question, context)


def predict_rows(model: Callable[..., Any], tokenizer: MobileBertTokenizer, spec: TaskSetup,
                 inputs: Sequence[Input], batch_size: int = 32, top_k: int = 1) -> list[dict[str, Any]]:
    """One row per input from any callable ``model`` (see ``evaluate.run_model``): ``label``, ``score`` (its
    probability) and ``top`` for classifiers, ``score`` for regression, ``answer`` / ``score`` / ``alternatives``
    for question answering."""
    pairs = [x if isinstance(x, tuple) else (x, None) for x in inputs]
    if spec.is_squad:
        if any(c is None for _, c in pairs):
            raise ValueError("a question-answering model needs question and context pairs")
        examples = squad.examples_from_pairs(pairs)
        features = squad.build_features(examples, tokenizer, spec.max_seq_length, spec.doc_stride,
                                        spec.max_query_length)
        outs = run_model(model, encode_squad(features), batch_size, tokenizer.pad_token_id, desc="predict")
        preds = decode_squad(examples, features, outs, spec)
        return [{"question": e.question, "answer": p.text, "score": p.probability,
                 "alternatives": [(c["text"], c["probability"]) for c in p.nbest[1:top_k]]}
                for e, p in zip(examples, preds.values(), strict=True)]
    task = glue.get_task(spec.task)
    has_pair = pairs[0][1] is not None
    if any((b is not None) != has_pair for _, b in pairs):
        raise ValueError("give all inputs as single sentences or all as pairs, not a mix")
    if has_pair != (len(task.text) == 2):
        raise ValueError(f"task {task.name} takes {'pairs' if len(task.text) == 2 else 'single sentences'}")
    examples = [glue.GlueExample(str(i), a, b, None) for i, (a, b) in enumerate(pairs)]
    outs = run_model(model, encode_glue(examples, tokenizer, spec.max_seq_length), batch_size,
                     tokenizer.pad_token_id, desc="predict")
    rows = []
    for (a, b), o in zip(pairs, outs, strict=True):
        row: dict[str, Any] = {"text": a, **({"text_pair": b} if b is not None else {})}
        if task.is_regression:
            row["score"] = float(o[0])
        else:
            probs = torch.softmax(torch.from_numpy(o), -1).numpy()
            ranked = np.argsort(-probs)[:max(1, top_k)]
            row["label"], row["score"] = task.labels[ranked[0]], float(probs[ranked[0]])
            row["top"] = [(task.labels[i], float(probs[i])) for i in ranked]
        rows.append(row)
    return rows


def predict(model_dir: str | Path, inputs: Sequence[Input], task: str | None = None, batch_size: int = 32,
            top_k: int = 1) -> list[dict[str, Any]]:
    """``predict_rows`` of the PyTorch model in a fine-tuned folder (``task`` for folders without finetune.json)."""
    model, tokenizer, spec = load_finetuned(model_dir, task)
    return predict_rows(model, tokenizer, spec, inputs, batch_size, top_k)
