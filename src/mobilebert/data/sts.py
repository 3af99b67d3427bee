"""STS-B for sentence embeddings: the sentence pairs with gold scores, and the Spearman correlation x100 that
the sentence-embedding literature reports (SBERT; all-MiniLM-L6-v2's own card), computed with scipy.

Scores here are the cosine similarities of two embeddings, never a trained regressor: the zero-shot quality of
the embedding space itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .glue import get_task, read_glue, resolve_path

BUNDLED_SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "sample" / "stsb_dev.tsv"


@dataclass
class StsPairs:
    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray  # (N,) gold similarity, 0-5
    source: str


def read_sts(path: str | os.PathLike | None = None, split: str = "dev") -> StsPairs:
    """STS-B pairs from a GLUE folder (``glue/`` or ``glue/STS-B``), a single STS-B TSV file, or (None) the
    bundled dev sample."""
    task = get_task("stsb")
    p = Path(path) if path is not None else BUNDLED_SAMPLE
    if not p.exists():
        raise FileNotFoundError(f"{p}: no STS-B file or GLUE folder")
    file = resolve_path(task, p, split)
    examples = read_glue(task, p, split)
    if not examples:
        raise ValueError(f"{file}: no STS-B pairs")
    if any(ex.label is None or ex.text_b is None for ex in examples):
        raise ValueError(f"{file}: STS-B pairs need sentence1, sentence2 and score")
    return StsPairs([ex.text_a for ex in examples], [ex.text_b for ex in examples],
                    np.array([ex.label for ex in examples], dtype=np.float64), str(file))


def cosine_similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (N, H) arrays; a zero vector has no direction and is refused."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two (N, H) arrays of one shape, got {a.shape} and {b.shape}")
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    if (na == 0).any() or (nb == 0).any():
        raise ValueError("an embedding is all zeros: cosine similarity is undefined")
    return (a * b).sum(1) / (na * nb)


def spearman_x100(predicted: Sequence[float], gold: Sequence[float]) -> float:
    """Spearman rank correlation x100 (ties get their average rank). A constant input has no ranking and is
    refused rather than reported as 0 or NaN."""
    from scipy.stats import spearmanr

    p, g = np.asarray(predicted, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if p.shape != g.shape or p.ndim != 1 or len(p) < 2:
        raise ValueError(f"need two 1-D sequences of one length >= 2, got {p.shape} and {g.shape}")
    if not (np.isfinite(p).all() and np.isfinite(g).all()):
        raise ValueError("scores must be finite")
    if np.ptp(p) == 0 or np.ptp(g) == 0:
        raise ValueError("a constant score vector has no ranking: Spearman correlation is undefined")
    return float(spearmanr(p, g).statistic) * 100.0
