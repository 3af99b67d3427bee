"""Sentence embeddings from the command line: vectors for texts (``mobilebert embed``) and the zero-shot STS-B
score of a checkpoint (``mobilebert sts``). Any folder ``from_pretrained`` loads works, teacher or student."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_path
from ..data.sts import read_sts
from ..sentence import SentenceEncoder, sts_score


def read_lines(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file, one text each."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such text file")
    try:
        lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError(f"{p}: no text (every line is empty)")
    return lines


def embed(model_dir: str | Path, texts: list[str], out: str | Path | None = None, normalize: bool | None = None,
          batch_size: int = 32, threads: int | None = None) -> np.ndarray:
    """(N, H) embeddings of ``texts``; written to ``out`` (.npy, atomically) when given."""
    if threads:
        torch.set_num_threads(threads)
    if not texts:
        raise ValueError("no text to embed")
    vectors = SentenceEncoder.from_pretrained(model_dir).encode(texts, batch_size=batch_size, normalize=normalize)
    if out is not None:
        out = Path(out)
        if out.suffix != ".npy":
            raise ValueError(f"{out}: the output file must end in .npy")
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.save(f, vectors)
    return vectors


def evaluate_sts(model_dir: str | Path, data: str | Path | None = None, split: str = "dev",
                 batch_size: int = 64, threads: int | None = None) -> dict[str, Any]:
    """Spearman x100 of cosine similarities against the STS-B gold scores (``data``: a GLUE folder, an STS-B
    TSV, or None for the bundled 300-pair dev sample)."""
    if threads:
        torch.set_num_threads(threads)
    pairs = read_sts(data, split)
    encoder = SentenceEncoder.from_pretrained(model_dir)
    t0 = time.perf_counter()
    score = sts_score(encoder, pairs, batch_size)
    return {"model": str(model_dir), "data": pairs.source, "pairs": len(pairs.scores), "spearman_x100": score,
            "pooling": encoder.pooling.pooling, "seconds": time.perf_counter() - t0}
