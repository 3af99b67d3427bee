"""Token ids of a whole file in one flat array: what a million-row training file costs in memory.

A list of Python int lists spends ~36 bytes per token (pointer + int object + list overhead); ``PackedIds``
spends 2 (uint16 while the vocabulary has at most 65,536 entries, else 4) plus 12 bytes per row, so the token
ids are the memory. Rows are encoded ``batch_size`` at a time from a ``files.TextFile`` (memory-mapped), so the
texts are never all in memory either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..tokenizer import MobileBertTokenizer
from .files import TextFile


@dataclass
class PackedIds:
    """Row i's ids are ``ids[offsets[i]:offsets[i + 1]]``; its token types are 0 before ``pair_start[i]`` and 1
    from there (``pair_start == length`` for a single text)."""

    ids: np.ndarray  # (total tokens,) uint16 or int32
    offsets: np.ndarray  # (N + 1,) int64
    pair_start: np.ndarray  # (N,) int32
    at_max_length: int = 0  # rows that reached max_length (truncated, or exactly that long)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, token_type_ids) of row ``i`` as int64 arrays."""
        ids = self.ids[self.offsets[i]:self.offsets[i + 1]].astype(np.int64)
        types = (np.arange(len(ids)) >= self.pair_start[i]).astype(np.int64)
        return ids, types

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.offsets.nbytes + self.pair_start.nbytes


def encode_text_file(tokenizer: MobileBertTokenizer, f: TextFile, max_length: int = 128,
                     batch_size: int = 1000) -> PackedIds:
    """``[CLS] text [SEP] (pair [SEP])`` per row, pairs truncated longest-first to ``max_length``, as
    ``finetuning.encode_glue`` encodes GLUE (the same ids for the same texts)."""
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.int32
    chunks: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    full = 0
    for texts, pairs in f.batches(batch_size):
        enc = tokenizer(texts, pairs, max_length=max_length, truncation=True)
        n = np.fromiter(map(len, enc["input_ids"]), dtype=np.int64, count=len(texts))
        lengths.append(n)
        starts.append(np.fromiter((len(t) - sum(t) for t in enc["token_type_ids"]), dtype=np.int32,
                                  count=len(texts)))
        chunks.append(np.fromiter((i for ids in enc["input_ids"] for i in ids), dtype=dtype, count=int(n.sum())))
        full += int((n >= max_length).sum())
    offsets = np.zeros(len(f) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lengths) if lengths else [], out=offsets[1:])
    ids = np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)
    pair_start = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int32)
    return PackedIds(ids, offsets, pair_start, full)
