"""Sentence vectors for texts (``mobilebert embed``). Any folder ``from_pretrained`` loads works, teacher or
student."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path
from ..options import option
from ..sentence import SentenceEncoder


@dataclass
class EmbedConfig:
    model: str = option(help="checkpoint folder: a distilled student, MiniLM, any BERT", path="checkpoint")
    texts: list[str] = option(factory=list, help="texts to embed (or use --file)", positional=True)
    file: str | None = option(None, help="UTF-8 text file, one text per line; every line is a row of the output, "
                              "blank lines too (embedded as empty text, with a note)", path="text")
    out: str | None = option(None, help="write the (N, H) float32 array here (.npy) instead of printing",
                             output="file")
    normalize: bool | None = option(None, help="L2-normalise each vector (default: as the checkpoint's "
                                    "modules.json says)")
    batch_size: int = option(32, help="texts per forward pass", at_least=1, affects_result=False)
    threads: int | None = option(None, help="torch threads (default: torch's choice)", at_least=1,
                                 affects_result=False)

    def check(self) -> None:
        if bool(self.texts) == bool(self.file):
            raise ValueError("give texts as arguments or --file, not both or neither")
        if self.out and Path(self.out).suffix != ".npy":
            raise ValueError(f"--out {self.out}: the output file must end in .npy")


def read_lines(path: str | Path) -> list[str]:
    """Every line of a UTF-8 text file, one text each: row i of the vectors is line i + 1, always. Blank lines
    are kept (embedded as empty text; ``main`` notes how many), so the rows stay aligned with the lines."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such text file")
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not any(line.strip() for line in lines):
        raise ValueError(f"{p}: no text (every line is empty)")
    return lines


def empty_note(texts: list[str], where: str) -> str | None:
    """The note for empty texts: they are embedded (the vector of no text), which is rarely what was meant."""
    empty = [i + 1 for i, t in enumerate(texts) if not t.strip()]
    if not empty:
        return None
    shown = ", ".join(map(str, empty[:5])) + (", ..." if len(empty) > 5 else "")
    return (f"{len(empty)} empty text(s) ({where} {shown}) embedded as empty text: their rows are the vector of "
            "no text, kept so that row i stays input i")


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


def main(cfg: EmbedConfig) -> int:
    texts = read_lines(cfg.file) if cfg.file else cfg.texts
    vectors = embed(cfg.model, texts, cfg.out, cfg.normalize, cfg.batch_size, cfg.threads)
    if cfg.out:
        print(f"{cfg.out}: {vectors.shape[0]} x {vectors.shape[1]} float32 (row i: "
              f"{'line' if cfg.file else 'text'} i + 1)")
    else:
        for text, v in zip(texts, vectors, strict=True):
            print(f"{text}\t" + " ".join(f"{x:.6g}" for x in v))
    note = empty_note(texts, f"{cfg.file}: line" if cfg.file else "argument")
    if note:
        print(f"note: {note}")
    return 0
