"""Distil a MobileBERT student from a teacher: read config -> build teacher, student, schedule -> fit -> export.

``distill(cfg)`` is what ``mobilebert distill CONFIG.yaml key=value ...`` runs; the same code runs under
``torchrun`` for DDP. Strategy ``none`` trains the student from scratch with MLM + NSP (the baseline).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..atomic import atomic_write_text
from ..config import MobileBertConfig
from ..distill.losses import (
    TRANSFER_TERMS,
    TransferLoss,
    TransferMap,
    mlm_loss,
    nsp_loss,
    pretraining_distillation_loss,
)
from ..distill.strategies import STRATEGIES, Stage, build_schedule
from ..modeling import MobileBertForPreTraining, extended_attention_mask
from ..train.trainer import Dist, Loader, TrainConfig, fit, init_distributed
from .yaml_config import read_yaml_mapping

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- config
@dataclass
class DistillConfig:
    """Everything one distillation run needs; YAML files in configs/ fill it, ``key=value`` overrides it."""

    strategy: str = "progressive"  # progressive | joint | auxiliary | none
    teacher: str | None = None  # a from_pretrained directory (not needed for strategy none)
    student_preset: str = "mobilebert"
    student: dict[str, Any] = field(default_factory=dict)  # MobileBertConfig overrides for the student
    data: str | None = None  # a directory written by prepare_pretraining (mobilebert.data.pretraining)
    transfer_steps: int = 240_000  # layer-wise transfer, all phases together
    distill_steps: int = 500_000  # pre-training distillation afterwards
    lower_layers: str = "slow"  # progressive: lower layers "slow" (lower_lr x) or "frozen"
    lower_lr: float = 0.1
    layer_map: list[int] | None = None  # student layer i learns from teacher block layer_map[i]; None: uniform
    transfer_weights: dict[str, float] = field(default_factory=dict)  # override SPEC §3 factors (fmt, mean, var, att)
    alpha: float = 0.5  # weight of the one-hot label in the distillation target
    temperature: float = 1.0
    teacher_bf16: bool = False  # run the teacher in bf16 (halves its memory and time on GPUs)
    teacher_chunk: int = 0  # teacher sequences per pass (0: whole micro-batch); small values cut peak memory on CPU
    recompute: bool = False  # student blocks keep only their input for backward and run again there (less memory)
    copy_from_teacher: bool = True  # copy embeddings and heads whose shapes match, frozen during transfer
    no_dropout: bool = True  # SPEC §3: no dropout while distilling
    warmup_fraction: float = 0.1  # of each stage
    train: TrainConfig = field(default_factory=TrainConfig)


def load_config(cls: type, path: str | Path | None, overrides: list[str] = ()) -> Any:
    """Read a YAML recipe config, apply ``a.b=value`` overrides (values parsed as YAML), reject unknown keys."""
    import yaml

    raw: dict[str, Any] = read_yaml_mapping(path) if path is not None else {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not key=value")
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {p} is not a section")
        node[leaf] = yaml.safe_load(value)
    return _build(cls, raw, str(path or "config"))


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})")
    values = dict(raw)
    for name, f in known.items():
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        if dataclasses.is_dataclass(default) and name in values:
            values[name] = _build(type(default), values[name] or {}, f"{where}: {name}")
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    return cls(**values)


def to_plain(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def write_resolved(cfg: Any, out_dir: str | Path) -> Path:
    """The fully resolved config, next to the checkpoints, so a run can be repeated exactly."""
    import yaml

    path = Path(out_dir) / "config.yaml"
    atomic_write_text(path, yaml.safe_dump(to_plain(cfg), sort_keys=False))
    return path


# ----------------------------------------------------------------------------- the distillation module
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


class DistillModule(nn.Module):
    """Student + transfer projections (what trains and is checkpointed); the teacher is held outside the
    module tree so it is never saved, never handed to the optimizer and never wrapped in DDP.

    ``forward(batch, stage, counts)`` returns the unweighted loss terms the stage asks for. Student and teacher
    advance layer by layer together, so only one teacher layer's activations are alive at a time, and neither
    runs past the deepest layer the stage needs; attention maps are materialised only where transferred.
    """

    def __init__(self, student: MobileBertForPreTraining, teacher: MobileBertForPreTraining | None,
                 tmap: TransferMap | None, alpha: float = 0.5, temperature: float = 1.0,
                 teacher_chunk: int = 0, recompute: bool = False) -> None:
        super().__init__()
        self.teacher_chunk = teacher_chunk  # sequences per teacher pass (0: the whole micro-batch at once)
        self.recompute = recompute  # activation checkpointing of the student's blocks
        self.student = student
        self.transfer = TransferLoss(tmap, student.config.hidden_size, teacher.config.hidden_size) if tmap else None
        self.tmap = tmap
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []
        self.alpha, self.temperature = alpha, temperature

    @property
    def teacher(self) -> MobileBertForPreTraining | None:
        return self._teacher[0] if self._teacher else None

    def _apply(self, fn, recurse=True):  # keep the teacher on the student's device
        super()._apply(fn, recurse)
        if self._teacher:
            t = self._teacher[0]
            dev = next(self.student.parameters()).device
            self._teacher[0] = t.to(dev)
        return self

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        s, L = self.student, self.student.config.num_hidden_layers
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {"embeddings": list(s.mobilebert.embeddings.named_parameters())}
        for i in range(L):
            groups[f"layer.{i}"] = list(s.mobilebert.encoder.layer[i].named_parameters())
        for i in range(L):
            proj = self.transfer.proj[i] if self.transfer is not None and self.transfer.proj is not None else None
            groups[f"proj.{i}"] = list(proj.named_parameters()) if proj is not None else []
        heads = list(s.cls.named_parameters(prefix="cls"))
        if s.mobilebert.pooler is not None:
            heads += list(s.mobilebert.pooler.named_parameters(prefix="pooler"))
        groups["heads"] = heads
        n_grouped = sum(len(v) for v in groups.values())
        assert n_grouped == len(list(self.parameters())), "every trainable parameter belongs to exactly one group"
        return groups

    def forward(self, batch: dict[str, Tensor], stage: Stage, counts: dict[str, Tensor]) -> dict[str, Tensor]:
        ids, am = batch["input_ids"], batch["attention_mask"]
        tt = batch.get("token_type_ids")
        tt = torch.zeros_like(ids) if tt is None else tt
        s, t = self.student, self.teacher
        transfer = {k for k in TRANSFER_TERMS if stage.terms.get(k)}
        layers = sorted(stage.layers) if transfer else []
        heads = any(stage.terms.get(k) for k in ("mlm", "mlm_kd", "nsp"))
        use_teacher = bool(layers) or bool(stage.terms.get("mlm_kd"))
        if use_teacher and t is None:
            raise ValueError(f"stage {stage.name} needs a teacher but none was given")
        terms: dict[str, Tensor] = {}
        n_student = s.config.num_hidden_layers if heads else max(layers) + 1
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


def copy_from_teacher(student: MobileBertForPreTraining, teacher: MobileBertForPreTraining) -> list[str]:
    """Copy the embeddings and the pre-training heads when every shape matches; returns the groups copied."""
    copied = []
    pairs = {"embeddings": (student.mobilebert.embeddings, teacher.mobilebert.embeddings),
             "heads": (student.cls, teacher.cls)}
    for name, (s_mod, t_mod) in pairs.items():
        s_sd, t_sd = s_mod.state_dict(), t_mod.state_dict()
        if s_sd.keys() == t_sd.keys() and all(s_sd[k].shape == t_sd[k].shape for k in s_sd):
            s_mod.load_state_dict(t_sd)
            copied.append(name)
    return copied


class DistillTask:
    """What ``fit`` trains: the module, its parameter groups and the per-stage export."""

    def __init__(self, module: DistillModule) -> None:
        self.module = module

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        return self.module.param_groups()

    def export(self, stage: Stage, out_dir: Path) -> None:
        export_pretrained(self.module.student, out_dir)


def export_pretrained(model: nn.Module, out_dir: Path) -> None:
    """A from_pretrained-loadable directory: weights, config and (when available) the tokenizer."""
    model.save_pretrained(out_dir)
    try:
        from ..tokenizer import MobileBertTokenizer
    except ImportError:  # tokenizer module not present in this build
        return
    MobileBertTokenizer.default().save_pretrained(out_dir)


# ----------------------------------------------------------------------------- data
def pretraining_loaders(data_dir: str | Path, per_rank_batch: int, seed: int, d: Dist,
                        model_config: MobileBertConfig | None = None) -> Callable[[int], Loader]:
    """``epoch -> loader`` over a prepared pre-training directory (this rank's share). The loader is endless
    and reshuffles per epoch itself, so ``epoch`` stays 0; its cursor resumes exactly."""
    from ..data.pretraining import PretrainingDataset

    ds = PretrainingDataset(data_dir, rank=d.rank, world_size=d.world)
    if model_config is not None:
        ds.check_model(model_config)  # sequence length vs max_position_embeddings, vocabulary size
    return lambda epoch: ds.loader(per_rank_batch, shuffle=True, seed=seed + epoch, drop_last=True)


def check_data(path: str | None, what: str = "data") -> Path:
    if not path:
        raise ValueError(f"{what}: no pre-training data directory given (set data=DIR; prepare one with "
                         "mobilebert.data.pretraining.prepare_pretraining)")
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: pre-training data directory not found")
    return p


# ----------------------------------------------------------------------------- the recipe
def build_student(cfg: DistillConfig) -> MobileBertForPreTraining:
    overrides = dict(cfg.student)
    if cfg.no_dropout and cfg.strategy != "none":
        overrides.setdefault("hidden_dropout_prob", 0.0)
        overrides.setdefault("attention_probs_dropout_prob", 0.0)
    return MobileBertForPreTraining(MobileBertConfig.from_preset(cfg.student_preset, **overrides))


def setup(cfg: DistillConfig) -> tuple[DistillModule, list[Stage]]:
    """Validate everything and build module and schedule; every bad setting fails here, before training."""
    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {cfg.strategy!r}; choose from {', '.join(STRATEGIES)}")
    student = build_student(cfg)
    teacher, tmap, copied = None, None, []
    if cfg.strategy != "none":
        if not cfg.teacher:
            raise ValueError(f"strategy {cfg.strategy} needs a teacher (teacher=DIR, a from_pretrained directory)")
        teacher = MobileBertForPreTraining.from_pretrained(cfg.teacher)
        tmap = TransferMap.build(teacher.config, student.config, cfg.layer_map)
        for note in tmap.notes:
            log.info("teacher -> student: %s", note)
        if cfg.copy_from_teacher:
            copied = copy_from_teacher(student, teacher)
            log.info("copied from the teacher (frozen during transfer): %s", ", ".join(copied) or "nothing (shapes differ)")
        if cfg.teacher_bf16:
            teacher = teacher.to(torch.bfloat16)
    stages = build_schedule(cfg.strategy, student.config.num_hidden_layers, cfg.transfer_steps, cfg.distill_steps,
                            lower_layers=cfg.lower_layers, lower_lr=cfg.lower_lr, copied_groups=tuple(copied),
                            transfer_weights=cfg.transfer_weights, warmup_fraction=cfg.warmup_fraction)
    return DistillModule(student, teacher, tmap, cfg.alpha, cfg.temperature, cfg.teacher_chunk,
                         cfg.recompute), stages


def distill(cfg: DistillConfig, resume: bool = False, make_loader: Callable[[int], Loader] | None = None
            ) -> dict[str, Any]:
    """Run a whole distillation; returns fit's summary (exports per stage, final step, last loss terms)."""
    cfg.train.validate()
    d = init_distributed()
    if make_loader is None:
        data = check_data(cfg.data)
    torch.manual_seed(cfg.train.seed)
    module, stages = setup(cfg)
    if make_loader is None:
        per_rank = cfg.train.batch_size // (d.world * cfg.train.grad_accum)
        make_loader = pretraining_loaders(data, per_rank, cfg.train.seed, d, module.student.config)
    if d.main:
        write_resolved(cfg, cfg.train.out_dir)
    return fit(DistillTask(module), stages, make_loader, cfg.train, resume=resume, d=d)


@torch.no_grad()
def evaluate_mlm(model: MobileBertForPreTraining, batches: list[dict[str, Tensor]] | Loader) -> dict[str, float]:
    """Held-out MLM cross-entropy and accuracy over masked positions."""
    was = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for b in batches:
        h = model.mobilebert(b["input_ids"], b["attention_mask"], b.get("token_type_ids")).last_hidden_state
        sel = b["labels"] != -100
        logits = model.cls.predictions(h[sel]).float()
        labels = b["labels"][sel]
        loss_sum += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(-1) == labels).sum())
        n += labels.numel()
    model.train(was)
    return {"mlm_loss": loss_sum / max(n, 1), "mlm_accuracy": correct / max(n, 1), "masked_tokens": n}
