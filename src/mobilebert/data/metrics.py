"""Scores for the user's tasks: classification, multi-label, token classification (entities), and the
confusion-matrix picture. GLUE's own metrics stay in ``glue.compute_metrics``; SQuAD's in ``squad``.

Classification and multi-label scores come from scikit-learn; entity scores from seqeval in its default mode
(not ``strict``), the scores people quote for CoNLL-2003: an entity is a maximal run of B-/I- tags of one type,
an ``I-X`` after ``O`` or after another type starts a new entity, and a prediction counts only when type, start
and end all match. ``entity_spans`` is that same chunking, used to turn predicted tags into entities.

Every function returns plain dicts of floats / lists, ready for results.json; a label with no examples and no
predictions scores 0 (never a warning or NaN).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path

THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)  # candidate per-label multi-label thresholds


def _check(references: np.ndarray, predictions: np.ndarray) -> None:
    if references.shape != predictions.shape or len(references) == 0:
        raise ValueError(f"predictions {predictions.shape} and references {references.shape} must be the same, "
                         "non-empty shape")


# ----------------------------------------------------------------------------- single-label classification
def classification_metrics(references: Sequence[int], predictions: Sequence[int], names: Sequence[str]
                           ) -> dict[str, Any]:
    """Accuracy, macro and micro F1, per-class precision / recall / F1 / support and the confusion matrix
    (rows: true label, columns: predicted label; ids index ``names``)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    r, p = np.asarray(references), np.asarray(predictions)
    _check(r, p)
    ids = list(range(len(names)))
    prec, rec, f1, support = precision_recall_fscore_support(r, p, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(r, p)),
        "macro_f1": float(f1_score(r, p, labels=ids, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(r, p, labels=ids, average="micro", zero_division=0)),
        "per_class": {n: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                          "support": int(support[i])} for i, n in enumerate(names)},
        "labels": list(names),
        "confusion_matrix": confusion_matrix(r, p, labels=ids).tolist(),
    }


def majority_baseline(references: Sequence[Any]) -> tuple[Any, float]:
    """(most common label, its share): the accuracy of always answering it."""
    if not len(references):
        raise ValueError("no references")
    label, count = Counter(np.asarray(references).tolist()).most_common(1)[0]
    return label, count / len(references)


# ----------------------------------------------------------------------------- multi-label
def multilabel_metrics(references: np.ndarray, predictions: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """(N, L) 0/1 arrays -> micro / macro F1, exact-match accuracy (every label of a row right) and per-label
    precision / recall / F1 / support."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    r, p = np.asarray(references).astype(int), np.asarray(predictions).astype(int)
    _check(r, p)
    if r.ndim != 2 or r.shape[1] != len(names):
        raise ValueError(f"multi-label arrays must be (N, {len(names)}), got {r.shape}")
    prec, rec, f1, support = precision_recall_fscore_support(r, p, zero_division=0)
    return {
        "micro_f1": float(f1_score(r, p, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(r, p, average="macro", zero_division=0)),
        "exact_match": float(accuracy_score(r, p)),
        "per_label": {n: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                          "support": int(support[i])} for i, n in enumerate(names)},
        "labels": list(names),
    }


def tune_thresholds(references: np.ndarray, probabilities: np.ndarray,
                    grid: Sequence[float] = THRESHOLD_GRID) -> np.ndarray:
    """(L,) per-label decision thresholds, each the grid value with the best F1 of that label on these
    (validation) rows; ties go to the value nearest 0.5, and a label without positives keeps 0.5."""
    from sklearn.metrics import f1_score

    r, pr = np.asarray(references).astype(int), np.asarray(probabilities, dtype=np.float64)
    _check(r, pr)
    grid = sorted(grid, key=lambda t: (abs(t - 0.5), t))  # the first best wins: nearest 0.5
    out = np.full(r.shape[1], 0.5)
    for j in range(r.shape[1]):
        if not r[:, j].any():
            continue
        scores = [f1_score(r[:, j], pr[:, j] >= t, zero_division=0) for t in grid]
        out[j] = grid[int(np.argmax(scores))]
    return out


def apply_thresholds(probabilities: np.ndarray, thresholds: np.ndarray | float = 0.5) -> np.ndarray:
    """(N, L) probabilities -> (N, L) 0/1 int predictions."""
    return (np.asarray(probabilities) >= np.asarray(thresholds)).astype(int)


# ----------------------------------------------------------------------------- entities
def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word) of each entity in one sentence's tags, seqeval's default chunking."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, first, last) for kind, first, last in get_entities(list(tags))]


def entity_metrics(references: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level precision / recall / F1 (micro over entities) overall and per type, seqeval's default mode;
    plus word-level tag accuracy. Sentences are lists of tags, one per word."""
    from seqeval.metrics import accuracy_score, classification_report

    refs, preds = [list(s) for s in references], [list(s) for s in predictions]
    if len(refs) != len(preds) or not refs:
        raise ValueError(f"{len(preds)} predicted and {len(refs)} reference sentences; need equal, non-zero")
    for i, (a, b) in enumerate(zip(refs, preds, strict=True)):
        if len(a) != len(b):
            raise ValueError(f"sentence {i}: {len(b)} predicted tags for {len(a)} words")
    report = classification_report(refs, preds, output_dict=True, zero_division=0)
    micro = report.pop("micro avg")
    for key in ("macro avg", "weighted avg"):
        report.pop(key, None)
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "support": int(micro["support"]),
        "accuracy": float(accuracy_score(refs, preds)),
        "per_type": {k: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                         "f1": float(v["f1-score"]), "support": int(v["support"])} for k, v in sorted(report.items())},
    }


# ----------------------------------------------------------------------------- pictures
def plot_confusion_matrix(matrix: Sequence[Sequence[int]], names: Sequence[str], path: str | os.PathLike,
                          title: str = "Confusion matrix") -> Path:
    """A PNG a person can read with tens of classes: cells coloured by the share of their true label (row),
    counts written in, the figure growing with the number of classes; written atomically."""
    from matplotlib.figure import Figure

    m = np.asarray(matrix, dtype=np.int64)
    n = len(names)
    if m.shape != (n, n):
        raise ValueError(f"confusion matrix {m.shape} does not match {n} label names")
    shares = m / np.maximum(m.sum(1, keepdims=True), 1)
    side = max(4.0, 0.45 * n + 2.5)
    font = 9 if n <= 12 else 8 if n <= 25 else 6
    short = [s if len(s) <= 18 else s[:17] + "…" for s in names]
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true label")
    ax.set_xticks(range(n), short, rotation=45, ha="right", rotation_mode="anchor", fontsize=font)
    ax.set_yticks(range(n), short, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 40:
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=font,
                            color="white" if shares[i, j] > 0.5 else "black")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path
