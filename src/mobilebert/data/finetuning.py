"""Fine-tuning data: GLUE / SQuAD examples or the user's own files -> token ids -> padded batches, and the
resumable training loader.

The user's files (``tasks.FILE_TASKS``) are read and checked by ``files.py`` (one-line errors naming file and
line); here they become the same ``Encoded`` rows as GLUE: a text file's rows are encoded exactly as
``encode_glue`` encodes GLUE's (so the same texts give the same ids), labels become ids in the training file's
label order (``files.LabelMap``), multi-label rows become (L,) multi-hot float vectors, and token-tag sentences
get each word's tag on its first word piece and -100 elsewhere (``tagging.encode_tagged``).

``TaskSetup`` (data/tasks.py) is what a fine-tuned model remembers about its data. ``FinetuneLoader``
gives one rank its micro-batches of one epoch: the epoch's order is a permutation drawn from ``seed`` (the
same order for every rank), each global batch is split across ranks and accumulation steps, and a cursor makes
it resume exactly where a checkpoint left off.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..tokenizer import MobileBertTokenizer
from . import files, glue, squad
from .packed import PackedRows, encode_text_file
from .tagging import IGNORE, encode_tagged
from .tasks import SQUAD_TASKS, TaskSetup

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- examples -> ids
@dataclass
class Encoded:
    """Model inputs (unpadded id lists) plus targets: class ids / scores, or span positions."""

    input_ids: Sequence[Sequence[int]]  # lists, or a text file's PackedRows (int64 arrays from one flat array)
    token_type_ids: Sequence[Sequence[int]]
    # label per row (None for test): a class id, a score, an (L,) multi-hot float vector, a list of per-piece tag
    # ids (-100: not scored) for token classification, or (start, end) for SQuAD
    targets: list[Any]
    word_ids: list[list[int | None]] | None = None  # token classification: each piece's word (None: [CLS]/[SEP])
    n_words: list[int] | None = None  # token classification: words per sentence

    def __len__(self) -> int:
        return len(self.input_ids)

    def select(self, rows: Sequence[int]) -> Encoded:
        def pick(xs: list | None) -> list | None:
            return None if xs is None else [xs[i] for i in rows]

        if isinstance(self.input_ids, PackedRows):  # a file's rows stay packed
            packed = self.input_ids.packed.select(rows)
            return Encoded(packed.input_rows(), packed.type_rows(), pick(self.targets))
        return Encoded(pick(self.input_ids), pick(self.token_type_ids), pick(self.targets), pick(self.word_ids),
                       pick(self.n_words))


def encode_texts(a: Sequence[str], b: Sequence[str] | None, targets: Sequence[Any], tokenizer: MobileBertTokenizer,
                 max_len: int) -> Encoded:
    """``[CLS] a [SEP] (b [SEP])`` per row, pairs truncated longest-first to ``max_len`` (counted in the log)."""
    enc = tokenizer(list(a), None if b is None else list(b), max_length=max_len, truncation=True)
    cut = sum(len(ids) >= max_len for ids in enc["input_ids"])
    if cut:
        log.info("%d of %d examples reach max_seq_length %d (truncated)", cut, len(a), max_len)
    return Encoded(enc["input_ids"], enc["token_type_ids"], list(targets))


def encode_glue(examples: Sequence[glue.GlueExample], tokenizer: MobileBertTokenizer, max_len: int) -> Encoded:
    """Pairs truncated longest-first to ``max_len`` (GLUE sentences rarely reach it; counted in the log)."""
    a = [e.text_a for e in examples]
    b = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
    return encode_texts(a, b, [e.label for e in examples], tokenizer, max_len)


# ----------------------------------------------------------------------------- the user's own files
def read_file(setup: TaskSetup, path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
              need_label: bool = True) -> files.TextFile | files.TaggedFile:
    """A training / validation file of a ``FILE_TASKS`` task, with the columns ``setup.columns`` names (unnamed
    ones detected). ``cache_dir``: where ``datasets`` may write its Arrow copy (an output or temporary folder)."""
    cols = setup.columns or {}
    if setup.is_token:
        return files.read_tagged_file(path, cols.get("text"), cols.get("label"), cache_dir=cache_dir)
    return files.read_text_file(path, cols.get("text"), cols.get("text_pair"), cols.get("label"),
                                need_label=need_label, cache_dir=cache_dir)


def with_training_file(setup: TaskSetup, f: files.TextFile | files.TaggedFile) -> TaskSetup:
    """``setup`` with what the training file decides: its label set (stable order, ``files.LabelMap``) and
    the columns used (detected ones written down, so evaluate and predict read the same columns)."""
    if setup.is_token:
        labels = files.LabelMap.from_values(f.tag_set(), tags=True)
        return dataclasses.replace(setup, label_names=list(labels.names), columns=setup.columns or {})
    cols = {"text": f.columns.text, "text_pair": f.columns.text_pair, "label": f.columns.label}
    if setup.is_regression:
        return dataclasses.replace(setup, label_names=None, columns=cols)
    labels = files.multilabel_map(f, setup.label_separator) if setup.multi_label else files.LabelMap.from_file(f)
    if len(labels) < 2 and not setup.multi_label:
        raise files.DataFileError(f"{f.path}: every row has the label {labels.names[0]!r}; a classifier needs at "
                                  "least two labels")
    return dataclasses.replace(setup, label_names=list(labels.names), columns=cols)


def file_references(setup: TaskSetup, f: files.TextFile | files.TaggedFile) -> list[Any]:
    """What a file's rows are scored against: class ids, scores, (L,) multi-hot vectors, or word tag names."""
    if setup.is_token:
        files.encode_tags(f, files.LabelMap(tuple(setup.labels)))  # a tag the training file never had: refused
        return list(f.tags)
    if setup.is_regression:
        return files.regression_targets(f).tolist()
    labels = files.LabelMap(tuple(setup.labels))
    if setup.multi_label:
        return list(labels.encode_multi(f, setup.label_separator))
    return labels.encode(f).tolist()


def encode_file(setup: TaskSetup, f: files.TextFile | files.TaggedFile, tokenizer: MobileBertTokenizer,
                targets: Sequence[Any]) -> Encoded:
    """Model inputs of a read file plus ``targets`` (from ``file_references``)."""
    if setup.is_token:
        tag_ids = files.encode_tags(f, files.LabelMap(tuple(setup.labels)))
        enc = encode_tagged(tokenizer, f.words, tag_ids, setup.max_seq_length)
        if enc.truncated:
            log.info("%s: %d of %d sentences do not fit max_seq_length %d (their last words count as O)", f.path,
                     enc.truncated, len(enc), setup.max_seq_length)
        return Encoded(enc.input_ids, enc.token_type_ids, enc.labels, enc.word_ids, enc.n_words)
    packed = encode_text_file(tokenizer, f, setup.max_seq_length)  # the ids of any size of file, packed
    if packed.at_max_length:
        log.info("%s: %d of %d examples reach max_seq_length %d (truncated)", f.path, packed.at_max_length,
                 len(packed), setup.max_seq_length)
    return Encoded(packed.input_rows(), packed.type_rows(), list(targets))


def load_file_split(setup: TaskSetup, path: str | os.PathLike, tokenizer: MobileBertTokenizer,
                    limit: int | None = None, cache_dir: str | os.PathLike | None = None
                    ) -> tuple[list[Any], Encoded]:
    """(references, encoded rows) of a labelled validation / test file (its first ``limit`` rows)."""
    f = read_file(setup, path, cache_dir)
    refs = file_references(setup, f)
    enc = encode_file(setup, f, tokenizer, refs)
    if limit is not None and limit < len(enc):
        return refs[:limit], enc.select(range(limit))
    return refs, enc


def encode_squad(features: Sequence[squad.SquadFeature]) -> Encoded:
    return Encoded([f.input_ids for f in features], [f.token_type_ids for f in features],
                   [(f.start_position, f.end_position) for f in features])


def load_train_data(setup: TaskSetup, data_dir: str | Path, tokenizer: MobileBertTokenizer,
                    limit: int | None = None, source: str = "tsv", cache_dir: str | os.PathLike | None = None
                    ) -> Encoded:
    """Training inputs; ``limit`` keeps a random subset (fixed seed 0, so every run sees the same rows).
    A ``FILE_TASKS`` task reads ``data_dir`` as the training file (``setup`` from ``with_training_file``)."""
    if setup.is_file_task:
        f = read_file(setup, data_dir, cache_dir)
        enc = encode_file(setup, f, tokenizer, file_references(setup, f))
        if limit is not None and limit < len(enc):
            log.info("training on a random subset of %d examples", limit)
            return enc.select(sorted(random.Random(0).sample(range(len(enc)), limit)))
        return enc
    if setup.is_squad:
        path = Path(data_dir) / SQUAD_TASKS[setup.task][0]
        examples = squad.read_squad(path, training=True)
    else:
        examples = glue.load_examples(setup.task, "train", data_dir, source=source)
    if limit is not None and limit < len(examples):
        keep = sorted(random.Random(0).sample(range(len(examples)), limit))
        examples = [examples[i] for i in keep]
        log.info("training on a random subset of %d examples", limit)
    if setup.is_squad:
        return encode_squad(squad.build_features(examples, tokenizer, setup.max_seq_length, setup.doc_stride,
                                                 setup.max_query_length))
    return encode_glue(examples, tokenizer, setup.max_seq_length)


def load_eval_data(setup: TaskSetup, data_dir: str | Path, tokenizer: MobileBertTokenizer,
                   splits: Sequence[str] | None = None, limit: int | None = None,
                   source: str = "tsv", cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Evaluation splits (default: every dev split) as examples plus encoded inputs; a ``FILE_TASKS`` task reads
    ``data_dir`` as its validation file: ``{"validation": (references, encoded)}``."""
    if setup.is_file_task:
        return {"validation": load_file_split(setup, data_dir, tokenizer, limit, cache_dir)}
    if setup.is_squad:
        path = Path(data_dir)
        path = path if path.is_file() else path / SQUAD_TASKS[setup.task][1]
        examples = squad.read_squad(path)[:limit]
        return {"dev": (examples, squad.build_features(examples, tokenizer, setup.max_seq_length,
                                                       setup.doc_stride, setup.max_query_length))}
    task = glue.get_task(setup.task)
    out = {}
    for split in splits or task.dev_splits:
        examples = glue.load_examples(task, split, data_dir, source=source, limit=limit)
        out[split] = (examples, encode_glue(examples, tokenizer, setup.max_seq_length))
    return out


# ----------------------------------------------------------------------------- ids -> padded batches
def pad(enc: Encoded, chunk: Sequence[int], pad_id: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """(input_ids, attention_mask, token_type_ids) of ``chunk``'s rows, right-padded to the longest: (B, T)."""
    rows = [enc.input_ids[i] for i in chunk]  # read once: a packed row is built on each access
    ids = torch.full((len(chunk), max(map(len, rows))), pad_id, dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for r, (i, row) in enumerate(zip(chunk, rows, strict=True)):
        n = len(row)
        ids[r, :n] = torch.as_tensor(row)
        types[r, :n] = torch.as_tensor(enc.token_type_ids[i])
        mask[r, :n] = 1
    return ids, mask, types


def batches(enc: Encoded, rows: Sequence[int], batch_size: int, pad_id: int = 0):
    """Padded tensors for ``rows`` in the given order: (input_ids, attention_mask, token_type_ids, rows)."""
    for k in range(0, len(rows), batch_size):
        chunk = rows[k:k + batch_size]
        yield (*pad(enc, chunk, pad_id), chunk)


def targets(enc: Encoded, chunk: Sequence[int], regression: bool, is_squad: bool,
            width: int | None = None) -> dict[str, Tensor]:
    """The loss targets of ``chunk``: ``labels`` (class ids (B,), float scores (B,), multi-hot floats (B, L), or
    per-piece tag ids (B, width) padded with -100) or start/end positions."""
    if is_squad:
        pos = torch.tensor([enc.targets[i] for i in chunk])
        return {"start_positions": pos[:, 0], "end_positions": pos[:, 1]}
    first = enc.targets[chunk[0]]
    if isinstance(first, np.ndarray):  # multi-label
        return {"labels": torch.from_numpy(np.stack([enc.targets[i] for i in chunk])).float()}
    if isinstance(first, list):  # token classification
        width = width or max(len(enc.targets[i]) for i in chunk)
        labels = torch.full((len(chunk), width), IGNORE, dtype=torch.long)
        for r, i in enumerate(chunk):
            labels[r, :len(enc.targets[i])] = torch.tensor(enc.targets[i])
        return {"labels": labels}
    dtype = torch.float32 if regression else torch.long
    return {"labels": torch.tensor([enc.targets[i] for i in chunk], dtype=dtype)}


def teacher_rows(cached: Sequence[Tensor], chunk: Sequence[int], width: int, token: bool = False) -> Tensor:
    """(B, C) cached teacher logits for the rows of a batch, (B, 2, width) span logits, or with ``token``
    (B, width, C) per-piece logits (zero past each row's end; the losses mask those positions)."""
    if cached[chunk[0]].ndim == 1:
        return torch.stack([cached[i] for i in chunk])
    if token:
        out = torch.zeros(len(chunk), width, cached[chunk[0]].shape[1])
        for r, i in enumerate(chunk):
            out[r, :cached[i].shape[0]] = cached[i]
        return out
    out = torch.zeros(len(chunk), 2, width)
    for r, i in enumerate(chunk):
        out[r, :, :cached[i].shape[1]] = cached[i]
    return out


# ----------------------------------------------------------------------------- the training loader
def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """Epoch ``epoch`` (0-based) visits the rows in the ``epoch + 1``-th permutation drawn from ``seed``; an
    (n,) int64 array (8 bytes a row: a million-row file's order is not a list of a million ints)."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epoch):
        torch.randperm(n, generator=gen)
    return torch.randperm(n, generator=gen).numpy()


def steps_per_epoch(n: int, batch_size: int, slots: int = 1) -> int:
    """Optimizer steps per epoch: the last, smaller batch is kept when every one of the ``slots`` (ranks x
    accumulation steps) still gets a row of it, else dropped."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= slots else 0)


class FinetuneLoader:
    """One rank's micro-batches of one epoch; global batch k is rows ``order[k*B:(k+1)*B]``, split into
    ``world * grad_accum`` near-equal slots (rank-major), each padded to its own longest row.

    A batch is a dict: input_ids, attention_mask, token_type_ids (B, T); labels (B,) or start_positions /
    end_positions (B,); ``teacher`` (B, C) or (B, 2, T) when teacher outputs are cached. ``state_dict`` is the
    count of micro-batches handed out, so a resumed loader continues with the next one."""

    def __init__(self, enc: Encoded, *, seed: int, epoch: int, batch_size: int, grad_accum: int = 1, rank: int = 0,
                 world: int = 1, pad_id: int = 0, regression: bool = False, is_squad: bool = False,
                 teacher: Sequence[Tensor] | None = None) -> None:
        self.token = enc.word_ids is not None
        self.enc, self.teacher = enc, teacher
        self.order = epoch_order(len(enc), seed, epoch)
        self.batch_size, self.grad_accum, self.rank, self.world = batch_size, grad_accum, rank, world
        self.pad_id, self.regression, self.is_squad = pad_id, regression, is_squad
        self.steps = steps_per_epoch(len(enc), batch_size, world * grad_accum)
        self.position = 0

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        slots = self.world * self.grad_accum
        while self.position < self.steps * self.grad_accum:
            step, micro = divmod(self.position, self.grad_accum)
            rows = self.order[step * self.batch_size:(step + 1) * self.batch_size].tolist()
            slot = self.rank * self.grad_accum + micro
            chunk = rows[slot * len(rows) // slots:(slot + 1) * len(rows) // slots]
            self.position += 1
            ids, mask, types = pad(self.enc, chunk, self.pad_id)
            batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
                     **targets(self.enc, chunk, self.regression, self.is_squad, ids.shape[1])}
            if self.teacher is not None:
                batch["teacher"] = teacher_rows(self.teacher, chunk, ids.shape[1], self.token)
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])
