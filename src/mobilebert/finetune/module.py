"""What ``train.trainer.fit`` trains when fine-tuning: the task loss (with a teacher's outputs mixed in, and
intermediate transfer from a teacher model) and the per-epoch evaluation that keeps the best epoch."""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.finetuning import Encoded
from ..data.tagging import IGNORE
from ..data.tasks import TaskSetup
from ..distill.losses import (
    TransferLoss,
    TransferMap,
    classification_distillation_loss,
    regression_distillation_loss,
    span_distillation_loss,
)
from ..distill.module import HoldsTeacher
from ..tokenizer import MobileBertTokenizer
from ..train.schedule import Stage
from .evaluate import evaluate_loaded, run_model, write_details
from .load import save_finetuned

log = logging.getLogger(__name__)

TARGETS = ("labels", "start_positions", "end_positions")


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's generators, so a seed's run (model init, dropout, order) repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def teacher_logits(teacher: nn.Module, enc: Encoded, batch_size: int, pad_id: int = 0) -> Sequence[torch.Tensor]:
    """The teacher's outputs for every training row, computed once (eval mode, no grad) and kept in memory:
    (C,) logits / a (1,) score per row (one (N, C) tensor: a million rows cost N x C floats, not a million
    tensors), (n, C) per-piece logits for token classification, or (2, n) start/end logits over the row's n real
    tokens for SQuAD. The student sees the same rows every epoch, so these never change."""
    outs = run_model(teacher, enc, batch_size, pad_id, desc="teacher")
    if isinstance(outs[0], tuple):
        return [torch.from_numpy(np.stack([s[:len(ids)], e[:len(ids)]]))
                for (s, e), ids in zip(outs, enc.input_ids, strict=True)]
    if outs[0].ndim == 1:
        return torch.from_numpy(np.stack(outs))
    return [torch.from_numpy(o) for o in outs]


def multilabel_distillation_loss(logits: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor,
                                  alpha: float = 0.5, temperature: float = 1.0,
                                  n_sequences: float | torch.Tensor | None = None) -> torch.Tensor:
    """``alpha * BCE(sigmoid(s), labels) + (1 - alpha) * T^2 * BCE(sigmoid(s/T), sigmoid(t/T))``: each label is its
    own yes/no question, so the teacher's soft target is its per-label probability, never a softmax over labels.

    logits, teacher: (B, L); labels: (B, L) 0/1 floats. Mean over the B x L entries (or their sum / (``n_sequences``
    x L)); with ``alpha == 1`` (or no teacher) exactly the model's own loss (transformers' BCEWithLogitsLoss)."""
    def mean(x: torch.Tensor) -> torch.Tensor:
        return x.mean() if n_sequences is None else x.sum() / (n_sequences * x.shape[-1])

    logits = logits.float()
    hard = mean(F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none"))
    if teacher is None or alpha == 1.0:
        return hard
    soft = torch.sigmoid(teacher.detach().float() / temperature)
    kd = mean(F.binary_cross_entropy_with_logits(logits / temperature, soft, reduction="none"))
    return alpha * hard + (1.0 - alpha) * temperature ** 2 * kd


def token_distillation_loss(logits: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor,
                            alpha: float = 0.5, temperature: float = 1.0,
                            n_sequences: float | torch.Tensor | None = None) -> torch.Tensor:
    """Per-token ``alpha * CE + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))`` over the scored pieces only
    (labels != -100: each word's first piece), averaged over them.

    logits, teacher: (B, T, C); labels: (B, T). With ``n_sequences`` the micro-batch's mean is weighted by its
    share of the global batch (B / n_sequences), so accumulation and DDP add up to the one-batch loss when every
    micro-batch scores as many pieces per row. With ``alpha == 1`` (or no teacher) exactly the model's own loss."""
    keep = labels != IGNORE  # (B, T)
    n = keep.sum().clamp_min(1)
    share = 1.0 if n_sequences is None else labels.shape[0] / n_sequences
    s = logits.float()[keep]  # (N, C)
    hard = F.cross_entropy(s, labels[keep], reduction="sum") / n
    if teacher is None or alpha == 1.0:
        return hard * share
    t = teacher.detach().float()[keep]
    kd = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1), log_target=True,
                  reduction="sum") / n
    return (alpha * hard + (1.0 - alpha) * temperature ** 2 * kd) * share


def task_loss(out: Any, targets: dict[str, torch.Tensor], teacher: torch.Tensor | None, mask: torch.Tensor,
              regression: bool, alpha: float, temperature: float,
              n_sequences: float | torch.Tensor | None = None) -> torch.Tensor:
    """The fine-tuning loss with a teacher's outputs mixed in (distill/losses.py); with ``alpha == 1`` (or no
    teacher) exactly the model's own loss. ``n_sequences``: the global batch's size (see ``FinetuneModule``).
    Multi-label (float (B, L) labels) and token classification (long (B, T) labels) have their own losses."""
    labels = targets.get("labels")
    if labels is not None and labels.ndim == 2:
        if labels.is_floating_point():
            return multilabel_distillation_loss(out.logits, teacher, labels, alpha, temperature, n_sequences)
        return token_distillation_loss(out.logits, teacher, labels, alpha, temperature, n_sequences)
    if "start_positions" in targets:
        t_start, t_end = (None, None) if teacher is None else teacher.unbind(1)
        return span_distillation_loss(out.start_logits, out.end_logits, t_start, t_end, targets["start_positions"],
                                      targets["end_positions"], mask, alpha, temperature, n_sequences)
    if regression:
        return regression_distillation_loss(out.logits, teacher, targets["labels"], alpha, n_sequences)
    return classification_distillation_loss(out.logits, teacher, targets["labels"], alpha, temperature, n_sequences)


class FinetuneModule(HoldsTeacher):
    """The task model and its loss in the trainer's calling convention: ``forward(batch, stage, counts)`` ->
    ``{"task": loss}``. The loss is a sum over the micro-batch divided by the *global* batch's sequence count,
    so gradient accumulation and DDP add up to exactly the single-process batch loss. A batch carrying
    ``teacher`` outputs (cached by ``teacher_logits``) mixes them in with weight ``1 - kd_alpha``.

    With ``teacher_model`` and a ``transfer`` map (intermediate task distillation, as TinyBERT's task stage) the
    teacher also runs on every batch and two more terms come back: ``hidden``, the feature-map loss of every
    student layer against its teacher layer, and ``att``, the attention KL; each averaged over layers, each
    computed only when the stage weighs it (all of them without a stage). The teacher is held as
    ``HoldsTeacher`` holds it; learned projections, present only when widths differ, train and are
    checkpointed with the model."""

    def __init__(self, model: nn.Module, regression: bool, kd_alpha: float = 1.0, kd_temperature: float = 1.0,
                 teacher_model: nn.Module | None = None, transfer: TransferMap | None = None) -> None:
        super().__init__()
        self.model = model
        self.regression, self.kd_alpha, self.kd_temperature = regression, kd_alpha, kd_temperature
        self._hold_teacher(teacher_model)
        self.transfer = (TransferLoss(transfer, model.config.hidden_size, teacher_model.config.hidden_size)
                         if transfer is not None and teacher_model is not None else None)

    def forward(self, batch: dict[str, torch.Tensor], stage: Stage | None = None,
                counts: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        want = {k for k in ("hidden", "att") if self.transfer is not None and (stage is None or stage.terms.get(k))}
        out = self.model(ids, mask, types, output_hidden_states=bool(want), output_attention_scores="att" in want)
        targets = {k: batch[k] for k in TARGETS if k in batch}
        n = None if counts is None else counts["sequences"]
        terms = {"task": task_loss(out, targets, batch.get("teacher"), mask, self.regression,
                                   self.kd_alpha, self.kd_temperature, n)}
        if want:
            with torch.no_grad():
                t = self.teacher(ids, mask, types, output_hidden_states=True, output_attention_scores="att" in want)
            tokens = None if counts is None else counts["tokens"]
            kinds, att = {"hidden": "fmt", "att": "att"}, "att" in want
            per_layer = [self.transfer.layer_terms(i, out.hidden_states[i + 1], t.hidden_states[j + 1],
                                                   out.attention_scores[i] if att else None,
                                                   t.attention_scores[j] if att else None, mask, tokens,
                                                   {kinds[k] for k in want})
                         for i, j in enumerate(self.transfer.map.layer_map)]
            for k in want:
                terms[k] = sum(x[kinds[k]] for x in per_layer) / len(per_layer)
        return terms


class FinetuneTask:
    """What ``fit`` trains, plus the per-epoch evaluation: dev metrics, the history, the best epoch saved to
    ``out_dir/best``. History and best epoch are task state, saved in every checkpoint, so a resumed run
    reports (and keeps) exactly what an uninterrupted one does."""

    def __init__(self, module: FinetuneModule, tokenizer: MobileBertTokenizer, spec: TaskSetup,
                 dev: dict[str, Any], out_dir: Path, eval_batch_size: int, steps_per_epoch: int,
                 rows_per_epoch: int, seed: int) -> None:
        self.module, self.tokenizer, self.spec, self.dev = module, tokenizer, spec, dev
        self.out_dir, self.eval_batch_size, self.seed = out_dir, eval_batch_size, seed
        self.steps_per_epoch, self.rows_per_epoch = steps_per_epoch, rows_per_epoch
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self._t0 = time.perf_counter()

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        groups = {"model": list(self.module.model.named_parameters())}
        if self.module.transfer is not None and self.module.transfer.proj is not None:
            groups["transfer"] = list(self.module.transfer.named_parameters())
        return groups

    def evaluate(self, train_loss: float) -> dict[str, float]:
        epoch_s = time.perf_counter() - self._t0
        epoch = len(self.history) + 1
        details: dict[str, Any] = {}
        metrics = evaluate_loaded(self.module.model, self.tokenizer, self.spec, self.dev, self.eval_batch_size,
                                  details, tune=self.spec.multi_label)
        self.history.append({"epoch": epoch, "step": epoch * self.steps_per_epoch, "train_loss": train_loss,
                             "epoch_seconds": epoch_s, "seconds_per_1k": 1000 * epoch_s / max(self.rows_per_epoch, 1),
                             **metrics})
        log.info("seed %d epoch %d: %s (%.0f s)", self.seed, epoch,
                 ", ".join(f"{s}: {m['score']:.4f}" for s, m in metrics.items()), epoch_s)
        score = next(iter(metrics.values()))["score"]
        if self.best is None or score > self.best["score"]:
            self.best = {"epoch": epoch, "score": score, "metrics": metrics}
            thresholds = next(iter(details.values()), {}).get("thresholds")
            if thresholds is not None:  # multi-label: the thresholds tuned on validation travel with the model
                self.spec = dataclasses.replace(self.spec, thresholds=thresholds)
            save_finetuned(self.module.model, self.tokenizer, self.spec, self.out_dir / "best")
            if details:
                write_details(details, self.out_dir, "best_")
        self._t0 = time.perf_counter()
        return {"epoch": epoch, "train_loss": train_loss, "epoch_seconds": epoch_s,
                **{f"{split}/{k}": v for split, m in metrics.items() for k, v in m.items()}}

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history, self.best = list(state["history"]), state["best"]


__all__ = ["FinetuneModule", "FinetuneTask", "seed_everything", "task_loss", "teacher_logits"]
