"""Token ids of a whole file in one flat array: what a million-row training file costs in memory.

A list of Python int lists spends ~36 bytes per token (pointer + int object + list overhead); ``PackedIds``
spends 2 (uint16 while the vocabulary has at most 65,536 entries, else 4) plus 12 bytes per row, so the token
ids are the memory. Rows are encoded ``batch_size`` at a time from a ``files.TextFile`` (memory-mapped), so the
texts are never all in memory either, and each batch's ids go to a scratch file until the end (read back once),
so no moment holds the ids twice. ``PackedIds.input_rows`` / ``type_rows`` are what the training loader indexes
in place of id lists.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
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
        return self.input_ids(i), self.token_types(i)

    def input_ids(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]:self.offsets[i + 1]].astype(np.int64)

    def token_types(self, i: int) -> np.ndarray:
        return (np.arange(self.offsets[i + 1] - self.offsets[i]) >= self.pair_start[i]).astype(np.int64)

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.offsets.nbytes + self.pair_start.nbytes

    def select(self, rows: Sequence[int]) -> PackedIds:
        """The given rows, in that order, packed anew."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = (np.concatenate([self.ids[self.offsets[i]:self.offsets[i + 1]] for i in rows]) if len(rows)
               else self.ids[:0].copy())
        return PackedIds(ids, offsets, self.pair_start[rows])

    def input_rows(self) -> PackedRows:
        """A read-only sequence whose item i is row i's input ids (int64), as a list of lists would be indexed."""
        return PackedRows(self, self.input_ids)

    def type_rows(self) -> PackedRows:
        """The same for the token type ids."""
        return PackedRows(self, self.token_types)


class PackedRows(Sequence):
    """Row ``i`` of a ``PackedIds`` as ``get`` builds it (its ids or its token types), built when asked."""

    def __init__(self, packed: PackedIds, get: Callable[[int], np.ndarray]) -> None:
        self.packed, self.get = packed, get

    def __len__(self) -> int:
        return len(self.packed)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self.get(j) for j in range(*i.indices(len(self)))]
        return self.get(i)


def encode_text_file(tokenizer: MobileBertTokenizer, f: TextFile, max_length: int = 128,
                     batch_size: int = 1000) -> PackedIds:
    """``[CLS] text [SEP] (pair [SEP])`` per row, pairs truncated longest-first to ``max_length``, as
    ``finetuning.encode_texts`` encodes GLUE (the same ids for the same texts)."""
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.int32
    offsets = np.zeros(len(f) + 1, dtype=np.int64)
    pair_start = np.zeros(len(f), dtype=np.int32)
    row = full = 0
    with tempfile.TemporaryFile(prefix="mobilebert-ids-") as spill:
        for texts, pairs in f.batches(batch_size):
            enc = tokenizer(texts, pairs, max_length=max_length, truncation=True)
            n = np.fromiter(map(len, enc["input_ids"]), dtype=np.int64, count=len(texts))
            offsets[row + 1:row + 1 + len(n)] = offsets[row] + np.cumsum(n)
            pair_start[row:row + len(n)] = np.fromiter((len(t) - sum(t) for t in enc["token_type_ids"]),
                                                       dtype=np.int32, count=len(texts))
            spill.write(np.fromiter((i for ids in enc["input_ids"] for i in ids), dtype=dtype,
                                    count=int(n.sum())).tobytes())
            full += int((n >= max_length).sum())
            row += len(n)
        spill.seek(0)
        ids = np.fromfile(spill, dtype=dtype, count=int(offsets[-1]))
    return PackedIds(ids, offsets, pair_start, full)
