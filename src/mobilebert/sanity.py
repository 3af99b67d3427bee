"""Checks after the work: results that look real but are not.

A fine-tuning run that predicts the majority class everywhere, or a classifier whose probabilities are all at
chance, still prints numbers; these functions turn such results into plain ``note:`` lines the CLI prints with
the summary, so nobody mistakes them for a model that learned the task.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

# How close to the trivial baseline a score may be and still count as "at chance".
ACCURACY_MARGIN = 0.01  # above the majority-class accuracy
CORRELATION_FLOOR = 0.1  # Matthews / Pearson / Spearman
PROBABILITY_MARGIN = 0.05  # above 1 / number of labels
SENTENCE_ENCODER_FLOOR = 0.5  # STS-B Spearman a fine-tuned sentence encoder should beat easily


def majority_baseline(task: str, data_dir: str | os.PathLike, split: str,
                      limit: int | None = None) -> tuple[str, float] | None:
    """(label, share) of the most common label of a labelled GLUE split (its first ``limit`` rows: the subset that
    was scored); None when it cannot be read."""
    from .data import glue

    t = glue.get_task(task)
    if t.is_regression:
        return None
    try:
        labels = [e.label for e in glue.read_glue(t, data_dir, split, limit=limit)]
    except (OSError, ValueError):
        return None
    if not labels:
        return None
    label, count = Counter(labels).most_common(1)[0]
    return t.labels[label], count / len(labels)


def score_notes(task: str, metrics: dict[str, dict[str, float]], data_dir: str | os.PathLike | None,
                limit: int | None = None, majority: tuple[str, float] | None = None) -> list[str]:
    """Notes for dev metrics (split -> metric -> value) that are no better than a constant prediction (on the
    first ``limit`` examples when only those were scored). ``majority``: (label, share) of the scored split when
    known (the user's files); otherwise GLUE's split is read from ``data_dir``."""
    from .data import glue
    from .data.tasks import FILE_TASKS

    if task not in FILE_TASKS:
        try:
            glue.get_task(task)
        except ValueError:  # SQuAD: EM/F1 have no trivial baseline worth stating
            return []
    notes = []
    for split, m in metrics.items():
        if not isinstance(m, dict):
            continue
        if "accuracy" in m and task != "token-classification":
            base = majority
            if base is None and data_dir is not None and task not in FILE_TASKS:
                base = majority_baseline(task, data_dir, split, limit)
            if base is not None and m["accuracy"] <= base[1] + ACCURACY_MARGIN:
                notes.append(f"{split} accuracy {m['accuracy']:.4f} is no better than always answering "
                             f"{base[0]!r} ({base[1]:.4f}): the model has not learned {task}; try a higher "
                             "learning rate, more epochs or more examples")
        for key in ("mcc", "pearson", "spearmanr"):
            if key in m and m[key] <= CORRELATION_FLOOR:
                notes.append(f"{split} {key} {m[key]:.4f} is at chance level: the model has not learned {task}")
    return notes


def dev_majority(spec: Any, dev: dict[str, Any], data_dir: str | os.PathLike | None,
                 limit: int | None = None) -> tuple[str, float] | None:
    """(label, share) of the most common label of the first scored split (single-label classification only)."""
    if spec.is_squad or spec.is_regression or spec.is_token or spec.multi_label:
        return None
    split, item = next(iter(dev.items()))
    if not spec.is_file_task:
        return majority_baseline(spec.task, data_dir, split, limit) if data_dir is not None else None
    label, count = Counter(item[0]).most_common(1)[0]
    return spec.labels[label], count / len(item[0])


def teacher_notes(teacher: str, scores: dict[str, dict[str, float]],
                  majority: tuple[str, float] | None) -> list[str]:
    """A note when the distillation teacher is no better than always answering the majority class."""
    if not scores or majority is None:
        return []
    split, m = next(iter(scores.items()))
    if "accuracy" in m and m["accuracy"] <= majority[1] + ACCURACY_MARGIN:
        return [f"teacher {teacher}: {split} accuracy {m['accuracy']:.4f} is no better than always answering "
                f"{majority[0]!r} ({majority[1]:.4f}); its soft labels teach the student nothing useful: fine-tune "
                "the teacher until it beats that"]
    return []


def file_notes(spec: Any, train: Any, validation: Any, train_path: str | os.PathLike) -> list[str]:
    """Notes about the user's training / validation files (``files.data_notes``): texts in both, a dominant
    class, labels with few examples."""
    from .data import files

    if spec.is_token:
        return files.data_notes(None, train_texts=[" ".join(w) for w in train.words],
                                validation_texts=[" ".join(w) for w in validation.words], train_path=train_path)
    texts = train.texts() if train.columns.text_pair is None else \
        [f"{a}\t{b}" for a, b in zip(train.texts(), train.pairs(), strict=True)]
    vtexts = validation.texts() if validation.columns.text_pair is None else \
        [f"{a}\t{b}" for a, b in zip(validation.texts(), validation.pairs(), strict=True)]
    labels = None  # multi-label rows have no one class to count; regression none at all
    if not spec.is_regression and not spec.multi_label:
        labels = files.LabelMap(tuple(spec.labels)).encode(train).tolist()
    return files.data_notes(labels, spec.labels if labels else None, texts, vtexts, train_path)


def finetune_notes(results: dict[str, Any], data_dir: str | os.PathLike | None) -> list[str]:
    """Notes for a ``finetune`` result: its mean dev scores over seeds against the trivial baselines."""
    summary, hp = results.get("summary", {}), results.get("hparams", {})
    means = {split: {k: v["mean"] for k, v in m.items() if isinstance(v, dict) and "mean" in v}
             for split, m in summary.items()}
    limit = max(hp.get("eval_examples", {}).values(), default=None) if hp.get("eval_subset") else None
    majority = tuple(hp["majority_baseline"]) if hp.get("majority_baseline") else None
    notes = score_notes(hp.get("task", ""), means, data_dir, limit, majority)
    if hp.get("sentence_encoder"):
        for split, m in means.items():
            if "spearmanr" in m and m["spearmanr"] < SENTENCE_ENCODER_FLOOR:
                notes.append(f"{split} spearmanr {m['spearmanr']:.4f} is near chance for a sentence encoder, whose "
                             "untrained regression head starts from nothing: its cosine similarity alone usually "
                             f"scores far higher (mobilebert sts --model {hp.get('model')}); fine-tune longer, or "
                             "use the encoder as it is")
    return notes


def prediction_notes(rows: Sequence[dict[str, Any]], num_labels: int) -> list[str]:
    """A note when every classification is within ``PROBABILITY_MARGIN`` of a uniform guess."""
    scores = [r["score"] for r in rows if "label" in r]
    if num_labels < 2 or not scores:
        return []
    if all(p <= 1 / num_labels + PROBABILITY_MARGIN for p in scores):
        return [f"every prediction is within {PROBABILITY_MARGIN} of chance (1/{num_labels}): the model does not "
                "tell these inputs apart; was it fine-tuned long enough?"]
    return []
