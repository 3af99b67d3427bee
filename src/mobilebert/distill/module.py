"""The distillation module: student and teacher advancing layer by layer, returning the loss terms a stage asks
for (``DistillModule``), and ``DistillTask``, what ``train.trainer.fit`` trains: parameter groups, the per-stage
export, the periodic STS-B score of a sentence encoder. (Plain MLM + NSP pre-training, without a teacher, is
``train.pretrain.PretrainModule``.)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..data.sts import StsPairs
from ..modeling import MobileBertForPreTraining, extended_attention_mask
from ..sentence import PoolingConfig, SentenceEncoder, sts_score
from ..tokenizer import MobileBertTokenizer
from ..train.pretrain import export_pretrained, mlm_loss, nsp_loss, pretraining_groups
from ..train.schedule import Stage
from .losses import (
    TRANSFER_TERMS,
    TransferLoss,
    TransferMap,
    pretraining_distillation_loss,
    sentence_embedding_loss,
)

EXPORTS = ("pretraining", "encoder")


def _run_layers(model: MobileBertForPreTraining, h: Tensor, mask: Tensor | None, start: int, stop: int,
                want_maps: set[int], recompute: bool = False) -> tuple[Tensor, Tensor | None]:
    """Blocks ``start..stop``; the attention scores of the last block in ``want_maps``. With ``recompute``
    (and grad on) each block saves only its input and runs again in backward (activation checkpointing)."""
    scores = None
    recompute = recompute and torch.is_grad_enabled()
    for i in range(start, stop):
        layer = model.mobilebert.encoder.layer[i]
        if recompute:
            h, _, s = checkpoint(layer, h, mask, i in want_maps, use_reentrant=False)
        else:
            h, _, s = layer(h, mask, i in want_maps)
        scores = s if s is not None else scores
    return h, scores


@torch.no_grad()
def _run_teacher(model: MobileBertForPreTraining, h: Tensor, mask: Tensor | None, start: int, stop: int,
                 want_maps: set[int], chunk: int) -> tuple[Tensor, Tensor | None]:
    """The teacher's layers ``start..stop`` a few sequences at a time (sequences are independent). Under
    no_grad nothing is kept for backward, so chunking only shrinks the teacher's working set (its 4x-wide
    FFN activations), which otherwise lands on top of the student's saved activations."""
    if chunk <= 0 or chunk >= h.shape[0]:
        return _run_layers(model, h, mask, start, stop, want_maps)
    outs = [_run_layers(model, hc, None if mask is None else mask[j:j + chunk], start, stop, want_maps)
            for j, hc in zip(range(0, h.shape[0], chunk), h.split(chunk), strict=True)]
    scores = torch.cat([o[1] for o in outs]) if outs[0][1] is not None else None
    return torch.cat([o[0] for o in outs]), scores


class HoldsTeacher(nn.Module):
    """A module with a frozen teacher held outside its module tree, so the teacher is never saved, never handed
    to the optimizer and never wrapped in DDP, yet moves to the module's device with it. Subclasses call
    ``_hold_teacher`` in ``__init__``."""

    def _hold_teacher(self, teacher: nn.Module | None) -> None:
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher[0] if self._teacher else None

    def _apply(self, fn, recurse=True):  # keep the teacher on the module's device
        super()._apply(fn, recurse)
        if self._teacher:
            self._teacher[0] = self._teacher[0].to(next(self.parameters()).device)
        return self


class DistillModule(HoldsTeacher):
    """Student + transfer projections (what trains and is checkpointed); the teacher is held outside the
    module tree so it is never saved, never handed to the optimizer and never wrapped in DDP.

    ``forward(batch, stage, counts)`` returns the unweighted loss terms the stage asks for. Student and teacher
    advance layer by layer together, so only one teacher layer's activations are alive at a time, and neither
    runs past the deepest layer the stage needs; attention maps are materialised only where transferred.
    """

    def __init__(self, student: MobileBertForPreTraining, teacher: MobileBertForPreTraining | None,
                 tmap: TransferMap | None, alpha: float = 0.5, temperature: float = 1.0,
                 teacher_chunk: int = 0, recompute: bool = False, clean_inputs: bool = False) -> None:
        super().__init__()
        self.clean_inputs = clean_inputs  # feed the uncorrupted text (labels put back) to student and teacher
        self.teacher_chunk = teacher_chunk  # sequences per teacher pass (0: the whole micro-batch at once)
        self.recompute = recompute  # activation checkpointing of the student's blocks
        self.student = student
        self.transfer = TransferLoss(tmap, student.config.hidden_size, teacher.config.hidden_size) if tmap else None
        self.tmap = tmap
        self._hold_teacher(teacher)
        self.alpha, self.temperature = alpha, temperature

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """The student's pre-training groups with ``proj.0`` .. ``proj.{L-1}`` before ``heads``."""
        groups = pretraining_groups(self.student)
        heads = groups.pop("heads")
        for i in range(self.student.config.num_hidden_layers):
            proj = self.transfer.proj[i] if self.transfer is not None and self.transfer.proj is not None else None
            groups[f"proj.{i}"] = list(proj.named_parameters()) if proj is not None else []
        groups["heads"] = heads
        n_grouped = sum(len(v) for v in groups.values())
        assert n_grouped == len(list(self.parameters())), "every trainable parameter belongs to exactly one group"
        return groups

    def forward(self, batch: dict[str, Tensor], stage: Stage, counts: dict[str, Tensor]) -> dict[str, Tensor]:
        ids, am = batch["input_ids"], batch["attention_mask"]
        if self.clean_inputs and "labels" in batch:  # undo the MLM corruption: transfer wants the real text
            ids = torch.where(batch["labels"] != -100, batch["labels"], ids)
        tt = batch.get("token_type_ids")
        tt = torch.zeros_like(ids) if tt is None else tt
        s, t = self.student, self.teacher
        transfer = {k for k in TRANSFER_TERMS if stage.terms.get(k)}
        layers = sorted(stage.layers) if transfer else []
        heads = any(stage.terms.get(k) for k in ("mlm", "mlm_kd", "nsp"))
        last = s.config.num_hidden_layers - 1
        sentence = bool(stage.terms.get("emb")) and last in stage.layers  # pooled last layer vs the teacher's
        use_teacher = bool(layers) or bool(stage.terms.get("mlm_kd"))
        if use_teacher and t is None:
            raise ValueError(f"stage {stage.name} needs a teacher but none was given")
        terms: dict[str, Tensor] = {}
        n_student = s.config.num_hidden_layers if heads or sentence else max(layers) + 1
        # -- embeddings
        h = s.mobilebert.embeddings(ids, tt, am)
        mask = extended_attention_mask(am, h.dtype)
        if use_teacher:
            with torch.no_grad():
                th = t.mobilebert.embeddings(ids, tt, am)
                tmask = extended_attention_mask(am, th.dtype)
            t_done, t_scores = 0, None
        # -- layers, student and teacher in step
        done = 0
        for i in layers:
            h, scores = _run_layers(s, h, mask, done, i + 1, {i} if "att" in transfer else set(), self.recompute)
            done = i + 1
            target = self.tmap.layer_map[i] + 1
            if target > t_done:
                th, t_scores = _run_teacher(t, th, tmask, t_done, target, {target - 1} if "att" in transfer else set(),
                                            self.teacher_chunk)
                t_done = target
            for name, v in self.transfer.layer_terms(i, h, th, scores, t_scores, am, counts["tokens"], transfer).items():
                terms[f"{name}/layer.{i}"] = v
        h, _ = _run_layers(s, h, mask, done, n_student, set(), self.recompute)
        if sentence:
            th, _ = _run_teacher(t, th, tmask, t_done, t.config.num_hidden_layers, set(), self.teacher_chunk)
            t_done = t.config.num_hidden_layers
            terms["emb"] = sentence_embedding_loss(h, th, am, counts["sequences"])
        if not heads:
            return terms
        # -- heads: MLM logits only at masked positions (15% of tokens), NSP on the pooled output
        labels = batch["labels"]
        sel = labels != -100
        logits = s.cls.predictions(h[sel])  # (N, V)
        if stage.terms.get("mlm"):
            terms["mlm"] = mlm_loss(logits, labels[sel], counts["masked"])
        if stage.terms.get("mlm_kd"):
            th, _ = _run_teacher(t, th, tmask, t_done, t.config.num_hidden_layers, set(), self.teacher_chunk)
            with torch.no_grad():
                t_logits = t.cls.predictions(th[sel])
            terms["mlm_kd"] = pretraining_distillation_loss(logits, t_logits, labels[sel], self.alpha,
                                                            self.temperature, counts["masked"])
        if stage.terms.get("nsp"):
            pooled = s.mobilebert.pooler(h) if s.mobilebert.pooler is not None else h[:, 0]
            terms["nsp"] = nsp_loss(s.cls.seq_relationship(pooled), batch["next_sentence_label"], counts["sequences"])
        return terms


class DistillTask:
    """What ``fit`` trains: the module, its parameter groups, the per-stage export and (for sentence encoders)
    the periodic STS-B score."""

    def __init__(self, module: DistillModule, export: str = "pretraining", tokenizer_dir: str | None = None,
                 pooling: str = "mean", sts: StsPairs | None = None) -> None:
        if export not in EXPORTS:
            raise ValueError(f"export must be one of {', '.join(EXPORTS)}, got {export!r}")
        self.module, self.export_kind, self.sts = module, export, sts
        self.tokenizer = MobileBertTokenizer.from_pretrained(tokenizer_dir)  # the teacher's, else the bundled
        limit = module.student.config.max_position_embeddings
        self.pooling = PoolingConfig(pooling=pooling, max_seq_length=min(256, limit))

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        return self.module.param_groups()

    def encoder(self) -> SentenceEncoder:
        return SentenceEncoder(self.module.student.mobilebert, self.tokenizer, self.pooling)

    def export(self, stage: Stage, out_dir: Path) -> None:
        if self.export_kind == "encoder":
            self.encoder().save_pretrained(out_dir)  # MobileBertModel + tokenizer + pooling files
            self.module.student.train()
        else:
            export_pretrained(self.module.student, out_dir, self.tokenizer)

    def evaluate(self) -> dict[str, float]:
        """STS-B Spearman x100 of the student's current embeddings (empty without ``eval_sts``)."""
        if self.sts is None:
            return {}
        was = self.module.student.training
        try:
            return {"eval/sts_spearman": sts_score(self.encoder(), self.sts)}
        finally:
            self.module.student.train(was)
