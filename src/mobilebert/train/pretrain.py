"""Plain pre-training (masked LM + next-sentence prediction) in the trainer's calling convention: what
``mobilebert pretrain-teacher`` trains, with no teacher and no transfer terms.

``PretrainModule(model)(batch, stage, counts)`` returns the unweighted terms ``mlm`` and ``nsp`` the stage weighs,
each a sum over the micro-batch divided by the global batch's count (masked tokens, sequences), so
accumulation and DDP add up to the single-process loss. ``PretrainTask`` is what ``fit`` trains: the module,
its parameter groups and a ``from_pretrained`` export per stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..modeling import MobileBertForPreTraining, extended_attention_mask
from ..tokenizer import MobileBertTokenizer
from .schedule import Stage

TERMS = ("mlm", "nsp")


def mlm_loss(logits: Tensor, labels: Tensor, n_masked: float | Tensor | None = None) -> Tensor:
    """Masked-LM cross-entropy at masked positions; logits (N, V), labels (N,); divided by ``n_masked``
    (the global batch's count) or, left out, by N."""
    ce = F.cross_entropy(logits.float(), labels, reduction="sum")
    return ce / (labels.numel() if n_masked is None else n_masked)


def nsp_loss(logits: Tensor, labels: Tensor, n_sequences: float | Tensor | None = None) -> Tensor:
    """Next-sentence cross-entropy on ground truth; logits (B, 2), labels (B,); divided by ``n_sequences`` or,
    left out, by B."""
    ce = F.cross_entropy(logits.float(), labels.view(-1), reduction="sum")
    return ce / (labels.numel() if n_sequences is None else n_sequences)


def pretraining_groups(model: MobileBertForPreTraining) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Named parameter groups of a pre-training model: ``embeddings``, ``layer.0`` .. ``layer.{L-1}``, ``heads``
    (MLM, NSP, pooler); the names stages give lr multipliers to."""
    bert = model.mobilebert
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {"embeddings": list(bert.embeddings.named_parameters())}
    for i, layer in enumerate(bert.encoder.layer):
        groups[f"layer.{i}"] = list(layer.named_parameters())
    heads = list(model.cls.named_parameters(prefix="cls"))
    if bert.pooler is not None:
        heads += list(bert.pooler.named_parameters(prefix="pooler"))
    groups["heads"] = heads
    return groups


class PretrainModule(nn.Module):
    """A ``MobileBertForPreTraining`` returning the MLM and NSP terms a stage weighs. MLM logits are computed
    only at masked positions (15% of tokens), not over the whole sequence as the model's own ``forward``."""

    def __init__(self, model: MobileBertForPreTraining) -> None:
        super().__init__()
        self.model = model

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        return pretraining_groups(self.model)

    def forward(self, batch: dict[str, Tensor], stage: Stage, counts: dict[str, Tensor]) -> dict[str, Tensor]:
        ids, am = batch["input_ids"], batch["attention_mask"]
        tt = batch.get("token_type_ids")
        tt = torch.zeros_like(ids) if tt is None else tt
        bert = self.model.mobilebert
        h = bert.embeddings(ids, tt, am)  # (B, T, H)
        mask = extended_attention_mask(am, h.dtype)
        for layer in bert.encoder.layer:
            h, _, _ = layer(h, mask, False)
        terms: dict[str, Tensor] = {}
        if stage.terms.get("mlm"):
            labels = batch["labels"]
            sel = labels != -100
            terms["mlm"] = mlm_loss(self.model.cls.predictions(h[sel]), labels[sel], counts["masked"])  # (N, V)
        if stage.terms.get("nsp"):
            pooled = bert.pooler(h) if bert.pooler is not None else h[:, 0]
            terms["nsp"] = nsp_loss(self.model.cls.seq_relationship(pooled), batch["next_sentence_label"],
                                    counts["sequences"])
        return terms

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        # training state saved before this module existed held the model as ``student.`` (teacher pre-training
        # ran as a teacher-less DistillModule); resuming such a run must still work
        state_dict = {f"model.{k[8:]}" if k.startswith("student.") else k: v for k, v in state_dict.items()}
        return super().load_state_dict(state_dict, strict, assign)


class PretrainTask:
    """What ``fit`` trains for plain pre-training: the module, its groups, a ``from_pretrained`` folder per stage."""

    def __init__(self, module: PretrainModule, tokenizer: MobileBertTokenizer | None = None) -> None:
        self.module, self.tokenizer = module, tokenizer

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        return self.module.param_groups()

    def export(self, stage: Stage, out_dir: Path) -> None:
        export_pretrained(self.module.model, out_dir, self.tokenizer)


def pretrain_stage(module: PretrainModule, steps: int, warmup_fraction: float) -> Stage:
    """The one stage of pre-training: MLM + NSP, every group trained at the base lr."""
    return Stage("pretrain", steps, {t: 1.0 for t in TERMS}, [], {g: 1.0 for g in module.param_groups()},
                 warmup_fraction)


def export_pretrained(model: nn.Module, out_dir: Path, tokenizer: MobileBertTokenizer | None = None) -> None:
    """A from_pretrained-loadable directory: weights, config and the tokenizer (the bundled one by default)."""
    model.save_pretrained(out_dir)
    (tokenizer or MobileBertTokenizer.default()).save_pretrained(out_dir)
