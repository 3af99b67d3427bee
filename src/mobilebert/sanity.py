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
                limit: int | None = None) -> list[str]:
    """Notes for dev metrics (split -> metric -> value) that are no better than a constant prediction (on the
    first ``limit`` examples when only those were scored)."""
    from .data import glue

    try:
        t = glue.get_task(task)
    except ValueError:  # SQuAD: EM/F1 have no trivial baseline worth stating
        return []
    notes = []
    for split, m in metrics.items():
        if not isinstance(m, dict):
            continue
        if "accuracy" in m and data_dir is not None:
            base = majority_baseline(t.name, data_dir, split, limit)
            if base is not None and m["accuracy"] <= base[1] + ACCURACY_MARGIN:
                notes.append(f"{split} accuracy {m['accuracy']:.4f} is no better than always answering "
                             f"{base[0]!r} ({base[1]:.4f}): the model has not learned {t.name}; try a higher "
                             "learning rate, more epochs or more examples")
        for key in ("mcc", "pearson", "spearmanr"):
            if key in m and m[key] <= CORRELATION_FLOOR:
                notes.append(f"{split} {key} {m[key]:.4f} is at chance level: the model has not learned {t.name}")
    return notes


def finetune_notes(results: dict[str, Any], data_dir: str | os.PathLike | None) -> list[str]:
    """Notes for a ``finetune`` result: its mean dev scores over seeds against the trivial baselines."""
    summary, hp = results.get("summary", {}), results.get("hparams", {})
    means = {split: {k: v["mean"] for k, v in m.items() if isinstance(v, dict) and "mean" in v}
             for split, m in summary.items()}
    limit = max(hp.get("eval_examples", {}).values(), default=None) if hp.get("eval_subset") else None
    return score_notes(hp.get("task", ""), means, data_dir, limit)


def prediction_notes(rows: Sequence[dict[str, Any]], num_labels: int) -> list[str]:
    """A note when every classification is within ``PROBABILITY_MARGIN`` of a uniform guess."""
    scores = [r["score"] for r in rows if "label" in r]
    if num_labels < 2 or not scores:
        return []
    if all(p <= 1 / num_labels + PROBABILITY_MARGIN for p in scores):
        return [f"every prediction is within {PROBABILITY_MARGIN} of chance (1/{num_labels}): the model does not "
                "tell these inputs apart; was it fine-tuned long enough?"]
    return []
