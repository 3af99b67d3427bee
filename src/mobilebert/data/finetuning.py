"""Fine-tuning data: GLUE / SQuAD examples -> token ids -> padded batches, and the resumable training loader.

``TaskSetup`` (data/tasks.py) is what a fine-tuned model remembers about its data. ``FinetuneLoader``
gives one rank its micro-batches of one epoch: the epoch's order is a permutation drawn from ``seed`` (the
same order for every rank), each global batch is split across ranks and accumulation steps, and a cursor makes
it resume exactly where a checkpoint left off.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..tokenizer import MobileBertTokenizer
from . import glue, squad
from .tasks import SQUAD_TASKS, TaskSetup

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- examples -> ids
@dataclass
class Encoded:
    """Model inputs (unpadded id lists) plus targets: class ids / scores, or span positions."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    targets: list[Any]  # label per row (None for test), or (start, end) for SQuAD

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_glue(examples: Sequence[glue.GlueExample], tokenizer: MobileBertTokenizer, max_len: int) -> Encoded:
    """Pairs truncated longest-first to ``max_len`` (GLUE sentences rarely reach it; counted in the log)."""
    a = [e.text_a for e in examples]
    b = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
    enc = tokenizer(a, b, max_length=max_len, truncation=True)
    cut = sum(len(ids) >= max_len for ids in enc["input_ids"])
    if cut:
        log.info("%d of %d examples reach max_seq_length %d (truncated)", cut, len(examples), max_len)
    return Encoded(enc["input_ids"], enc["token_type_ids"], [e.label for e in examples])


def encode_squad(features: Sequence[squad.SquadFeature]) -> Encoded:
    return Encoded([f.input_ids for f in features], [f.token_type_ids for f in features],
                   [(f.start_position, f.end_position) for f in features])


def load_train_data(setup: TaskSetup, data_dir: str | Path, tokenizer: MobileBertTokenizer,
                    limit: int | None = None, source: str = "tsv") -> Encoded:
    """Training inputs; ``limit`` keeps a random subset (fixed seed 0, so every run sees the same rows)."""
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
                   source: str = "tsv") -> dict[str, Any]:
    """Evaluation splits (default: every dev split) as examples plus encoded inputs."""
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
    width = max(len(enc.input_ids[i]) for i in chunk)
    ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for r, i in enumerate(chunk):
        n = len(enc.input_ids[i])
        ids[r, :n] = torch.tensor(enc.input_ids[i])
        types[r, :n] = torch.tensor(enc.token_type_ids[i])
        mask[r, :n] = 1
    return ids, mask, types


def batches(enc: Encoded, rows: Sequence[int], batch_size: int, pad_id: int = 0):
    """Padded tensors for ``rows`` in the given order: (input_ids, attention_mask, token_type_ids, rows)."""
    for k in range(0, len(rows), batch_size):
        chunk = rows[k:k + batch_size]
        yield (*pad(enc, chunk, pad_id), chunk)


def targets(enc: Encoded, chunk: Sequence[int], regression: bool, is_squad: bool) -> dict[str, Tensor]:
    """The loss targets of ``chunk``: ``labels`` (class ids or float scores) or start/end positions."""
    if is_squad:
        pos = torch.tensor([enc.targets[i] for i in chunk])
        return {"start_positions": pos[:, 0], "end_positions": pos[:, 1]}
    dtype = torch.float32 if regression else torch.long
    return {"labels": torch.tensor([enc.targets[i] for i in chunk], dtype=dtype)}


def teacher_rows(cached: Sequence[Tensor], chunk: Sequence[int], width: int) -> Tensor:
    """(B, C) cached teacher logits for the rows of a batch, or (B, 2, width) span logits (zero past each row's
    end; the loss masks those positions)."""
    if cached[chunk[0]].ndim == 1:
        return torch.stack([cached[i] for i in chunk])
    out = torch.zeros(len(chunk), 2, width)
    for r, i in enumerate(chunk):
        out[r, :, :cached[i].shape[1]] = cached[i]
    return out


# ----------------------------------------------------------------------------- the training loader
def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """Epoch ``epoch`` (0-based) visits the rows in the ``epoch + 1``-th permutation drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epoch):
        torch.randperm(n, generator=gen)
    return torch.randperm(n, generator=gen).tolist()


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
            rows = self.order[step * self.batch_size:(step + 1) * self.batch_size]
            slot = self.rank * self.grad_accum + micro
            chunk = rows[slot * len(rows) // slots:(slot + 1) * len(rows) // slots]
            self.position += 1
            ids, mask, types = pad(self.enc, chunk, self.pad_id)
            batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
                     **targets(self.enc, chunk, self.regression, self.is_squad)}
            if self.teacher is not None:
                batch["teacher"] = teacher_rows(self.teacher, chunk, ids.shape[1])
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])
