"""Zero-shot STS-B of a checkpoint's sentence embeddings (``mobilebert sts``)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text
from ..data.sts import read_sts
from ..options import option
from ..sentence import SentenceEncoder, sts_score


@dataclass
class StsConfig:
    model: str = option(help="checkpoint folder", path="checkpoint")
    data: str | None = option(None, help="GLUE folder, STS-B folder or TSV (default: the bundled dev sample)",
                              path="exists")
    split: str = option("dev", help="dev or train", choices=("dev", "train"))
    threads: int | None = option(None, help="torch threads (default: torch's choice)", at_least=1,
                                 affects_result=False)
    json: str | None = option(None, help="also write the result here", output="file")


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


def main(cfg: StsConfig) -> int:
    result = evaluate_sts(cfg.model, cfg.data, cfg.split, threads=cfg.threads)
    print(f"{result['model']}: STS-B {cfg.split} Spearman x100 = {result['spearman_x100']:.2f} "
          f"({result['pairs']} pairs, {result['pooling']} pooling, {result['data']})")
    if cfg.json:
        atomic_write_text(cfg.json, json.dumps(result, indent=2) + "\n")
    return 0
