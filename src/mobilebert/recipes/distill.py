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
from ..data.sts import StsPairs, read_sts
from ..distill.losses import (
    TRANSFER_TERMS,
    TransferLoss,
    TransferMap,
    mlm_loss,
    nsp_loss,
    pretraining_distillation_loss,
    sentence_embedding_loss,
)
from ..distill.strategies import STRATEGIES, Stage, build_schedule
from ..modeling import MobileBertForPreTraining, extended_attention_mask
from ..sentence import PoolingConfig, SentenceEncoder, sts_score
from ..tokenizer import MobileBertTokenizer
from ..train.trainer import Dist, Loader, TrainConfig, fit, init_distributed
from ..validate import at_least, check_fields, checkpoint_dir, in_range, one_of
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
    init_from_teacher: list[str] = field(default_factory=list)  # parts of INIT_PARTS started from the teacher
    clean_inputs: bool | None = None  # feed unmasked text; None: when no stage uses MLM (head-less teachers)
    trim_padding: bool = False  # cut each batch to its longest sequence (short-sentence corpora run faster)
    export: str = "auto"  # pretraining (heads included) | encoder (+ tokenizer + pooling); auto: encoder when
    #                       the teacher has no trained heads
    pooling: str = "mean"  # the exported encoder's sentence pooling (mean | cls)
    eval_sts: str | None = None  # STS-B file or GLUE folder scored every train.eval_every steps (encoder runs)
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
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueError(f"override {item!r}: the value is not valid YAML") from None
    return _build(cls, raw, str(path or "config"))


def _build(cls: type, raw: dict[str, Any], where: str, prefix: str = "") -> Any:
    """The dataclass from a mapping: unknown keys refused, every value type-checked (``a.b`` named as written)."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(prefix + k for k in unknown)} "
                         f"(known: {', '.join(prefix + k for k in known)})")
    values = check_fields(cls, raw, where, prefix)
    for name, f in known.items():
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        if dataclasses.is_dataclass(default) and name in values:
            if not isinstance(values[name] or {}, dict):
                raise ValueError(f"{where}: {prefix}{name} must be a mapping of settings, got {values[name]!r}")
            values[name] = _build(type(default), values[name] or {}, where, f"{prefix}{name}.")
    return cls(**values)


def check_train_config(t: TrainConfig, prefix: str = "train.") -> None:
    """Ranges of the optimisation settings (types were checked when the config was read)."""
    one_of(f"{prefix}optimizer", t.optimizer, ("lamb", "adamw"))
    for key in ("lr", "eps"):
        if getattr(t, key) <= 0:
            raise ValueError(f"{prefix}{key} must be > 0, got {getattr(t, key)}")
    if len(t.betas) != 2:
        raise ValueError(f"{prefix}betas must be two numbers, got {list(t.betas)}")
    for b in t.betas:
        in_range(f"{prefix}betas", b, 0, 1, high_open=True)
    for key, low in (("batch_size", 1), ("grad_accum", 1), ("log_every", 1), ("weight_decay", 0),
                     ("max_grad_norm", 0), ("save_every", 0), ("keep_last", 0), ("eval_every", 0)):
        at_least(f"{prefix}{key}", getattr(t, key), low)
    if t.batch_size % t.grad_accum:
        raise ValueError(f"{prefix}batch_size {t.batch_size} is not divisible by {prefix}grad_accum {t.grad_accum}")
    t.validate()


def check_distill_config(cfg: DistillConfig) -> DistillConfig:
    """Every value and every input path of a distillation config, before a model is built."""
    one_of("strategy", cfg.strategy, STRATEGIES)
    at_least("transfer_steps", cfg.transfer_steps, 0)
    at_least("distill_steps", cfg.distill_steps, 0)
    if cfg.transfer_steps + cfg.distill_steps == 0:
        raise ValueError("transfer_steps and distill_steps are both 0: nothing to train")
    one_of("lower_layers", cfg.lower_layers, ("slow", "frozen"))
    at_least("lower_lr", cfg.lower_lr, 0)
    in_range("alpha", cfg.alpha, 0, 1)
    in_range("temperature", cfg.temperature, 0, 1e3, low_open=True)
    at_least("teacher_chunk", cfg.teacher_chunk, 0)
    in_range("warmup_fraction", cfg.warmup_fraction, 0, 1)
    one_of("export", cfg.export, ("auto", *EXPORTS))
    one_of("pooling", cfg.pooling, ("mean", "cls"))
    for part in cfg.init_from_teacher:
        one_of("init_from_teacher", part, INIT_PARTS)
    try:
        student = MobileBertConfig.from_preset(cfg.student_preset, **cfg.student)
    except (ValueError, TypeError) as e:
        raise ValueError(f"student_preset / student: {e}") from None
    if cfg.strategy != "none":
        if not cfg.teacher:
            raise ValueError(f"strategy {cfg.strategy} needs a teacher (teacher=DIR, a from_pretrained directory)")
        checkpoint_dir(cfg.teacher, "teacher")
    seq = prepared_seq_length(cfg.data)
    if seq > student.max_position_embeddings:
        raise ValueError(f"data {cfg.data}: examples of {seq} tokens exceed the student's max_position_embeddings "
                         f"{student.max_position_embeddings}")
    if cfg.eval_sts is not None and not Path(cfg.eval_sts).exists():
        raise ValueError(f"eval_sts {cfg.eval_sts}: no such file or folder")
    check_train_config(cfg.train)
    return cfg


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
                 teacher_chunk: int = 0, recompute: bool = False, clean_inputs: bool = False) -> None:
        super().__init__()
        self.clean_inputs = clean_inputs  # feed the uncorrupted text (labels put back) to student and teacher
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


def has_untrained_heads(teacher: MobileBertForPreTraining) -> bool:
    """True when the checkpoint held no MLM/NSP head (an encoder such as all-MiniLM-L6-v2): loading it left
    the heads randomly initialised, so they must never teach."""
    missing = getattr(teacher, "loading_info", {}).get("missing_keys", [])
    return any(k.startswith("cls.") for k in missing)


def check_headless(cfg: DistillConfig, headless: bool) -> None:
    """Refuse, before any training, to distil from heads the teacher never trained."""
    if not headless:
        return
    asks = [what for what, on in (("pre-training distillation (distill_steps > 0)",
                                   cfg.distill_steps > 0 and cfg.strategy in ("progressive", "joint")),
                                  ("pre-training distillation and NSP (strategy auxiliary)",
                                   cfg.strategy == "auxiliary")) if on]
    if asks:
        raise ValueError(f"{cfg.teacher}: the teacher has no trained MLM/NSP heads (an encoder-only checkpoint), "
                         f"so {asks[0]} would teach random targets; use strategy=joint or progressive with "
                         "distill_steps=0 (layer-wise transfer only)")


INIT_PARTS = ("position", "token_type", "word_svd")


def init_from_teacher(student: MobileBertForPreTraining, teacher: MobileBertForPreTraining,
                      parts: list[str]) -> list[str]:
    """Start student embeddings from the teacher's; returns one note per part done.

    position / token_type: copied when the widths agree (student hidden == teacher hidden).
    word_svd: the teacher's word embeddings W (V x H) factorised by truncated SVD, W ~ (U S)(V^T): the student's
    narrow table gets U S (V x E), and the trigram projection's middle block (the current token) gets V^T, so
    before training the student's embedding sum reproduces the teacher's best rank-E approximation."""
    unknown = sorted(set(parts) - set(INIT_PARTS))
    if unknown:
        raise ValueError(f"init_from_teacher: unknown part(s) {', '.join(unknown)}; choose from {', '.join(INIT_PARTS)}")
    se, te = student.mobilebert.embeddings, teacher.mobilebert.embeddings
    notes = []
    with torch.no_grad():
        for part, attr in (("position", "position_embeddings"), ("token_type", "token_type_embeddings")):
            if part not in parts:
                continue
            s_w, t_w = getattr(se, attr).weight, getattr(te, attr).weight
            if s_w.shape[1] != t_w.shape[1]:
                raise ValueError(f"init_from_teacher {part}: student width {s_w.shape[1]} != teacher {t_w.shape[1]}")
            n = min(s_w.shape[0], t_w.shape[0])
            s_w[:n] = t_w[:n]
            notes.append(f"{attr} copied ({n} x {s_w.shape[1]})")
        if "word_svd" in parts:
            W = te.word_embeddings.weight.float()  # (V, H_t)
            E = se.word_embeddings.weight.shape[1]
            proj = se.embedding_transformation
            if proj is None or proj.weight.shape[0] != W.shape[1]:
                raise ValueError("init_from_teacher word_svd needs a student embedding projection onto the "
                                 f"teacher's width {W.shape[1]}")
            U, S, Vh = torch.linalg.svd(W, full_matrices=False)
            kept = float(S[:E].pow(2).sum() / S.pow(2).sum())
            se.word_embeddings.weight.copy_(U[:, :E] * S[:E])
            pad = student.config.pad_token_id
            se.word_embeddings.weight[pad].zero_()  # padding_idx: stays zero, so padding never leaks in
            centre = 1 if student.config.trigram_input else 0  # the trigram concatenates [next, this, previous]
            proj.weight.zero_()
            proj.weight[:, centre * E:(centre + 1) * E] = Vh[:E].T
            proj.bias.zero_()
            notes.append(f"word_embeddings from a rank-{E} SVD of the teacher's ({kept:.1%} of its energy), "
                         "trigram projection's centre block = V^T")
    return notes


def copy_from_teacher(student: MobileBertForPreTraining, teacher: MobileBertForPreTraining,
                      heads: bool = True) -> list[str]:
    """Copy the embeddings and (``heads``) the pre-training heads when every shape matches; returns the groups
    copied."""
    copied = []
    pairs = {"embeddings": (student.mobilebert.embeddings, teacher.mobilebert.embeddings)}
    if heads:
        pairs["heads"] = (student.cls, teacher.cls)
    for name, (s_mod, t_mod) in pairs.items():
        s_sd, t_sd = s_mod.state_dict(), t_mod.state_dict()
        if s_sd.keys() == t_sd.keys() and all(s_sd[k].shape == t_sd[k].shape for k in s_sd):
            s_mod.load_state_dict(t_sd)
            copied.append(name)
    return copied


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


EXPORTS = ("pretraining", "encoder")




def export_pretrained(model: nn.Module, out_dir: Path, tokenizer: MobileBertTokenizer | None = None) -> None:
    """A from_pretrained-loadable directory: weights, config and the tokenizer (the bundled one by default)."""
    model.save_pretrained(out_dir)
    (tokenizer or MobileBertTokenizer.default()).save_pretrained(out_dir)


# ----------------------------------------------------------------------------- data
def pretraining_loaders(data_dir: str | Path, per_rank_batch: int, seed: int, d: Dist,
                        model_config: MobileBertConfig | None = None, trim: bool = False) -> Callable[[int], Loader]:
    """``epoch -> loader`` over a prepared pre-training directory (this rank's share). The loader is endless
    and reshuffles per epoch itself, so ``epoch`` stays 0; its cursor resumes exactly."""
    from ..data.pretraining import PretrainingDataset

    ds = PretrainingDataset(data_dir, rank=d.rank, world_size=d.world)
    if model_config is not None:
        ds.check_model(model_config)  # sequence length vs max_position_embeddings, vocabulary size
    return lambda epoch: ds.loader(per_rank_batch, shuffle=True, seed=seed + epoch, drop_last=True, trim=trim)


def check_data(path: str | None, what: str = "data") -> Path:
    if not path:
        raise ValueError(f"{what}: no pre-training data directory given (set data=DIR; prepare one with "
                         "mobilebert prepare-pretraining or mobilebert corpus)")
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"{what} {p}: pre-training data directory not found")
    return p


def prepared_seq_length(path: str | None, what: str = "data") -> int:
    """The sequence length of a prepared folder, read from its manifest (which also proves it is complete and
    holds examples); the reader checks the shards themselves when training starts."""
    import json

    from ..data.shards import MANIFEST

    p = check_data(path, what)
    manifest = p / MANIFEST
    if not manifest.is_file():
        raise ValueError(f"{what} {p}: no {MANIFEST} (not a folder written by prepare-pretraining / corpus, or "
                         "preparation was interrupted)")
    try:
        m = json.loads(manifest.read_text(encoding="utf-8"))
        seq, examples = int(m["arguments"]["max_seq_length"]), int(m["counts"]["examples"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{manifest}: not a pre-training manifest") from None
    if examples < 1:
        raise ValueError(f"{what} {p}: holds no examples")
    return seq


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
        headless = has_untrained_heads(teacher)
        check_headless(cfg, headless)
        tmap = TransferMap.build(teacher.config, student.config, cfg.layer_map)
        for note in tmap.notes:
            log.info("teacher -> student: %s", note)
        if cfg.copy_from_teacher:
            copied = copy_from_teacher(student, teacher, heads=not headless)
            log.info("copied from the teacher (frozen during transfer): %s", ", ".join(copied) or "nothing (shapes differ)")
        for note in init_from_teacher(student, teacher, cfg.init_from_teacher):
            log.info("initialised from the teacher: %s", note)
        if cfg.teacher_bf16:
            teacher = teacher.to(torch.bfloat16)
    stages = build_schedule(cfg.strategy, student.config.num_hidden_layers, cfg.transfer_steps, cfg.distill_steps,
                            lower_layers=cfg.lower_layers, lower_lr=cfg.lower_lr, copied_groups=tuple(copied),
                            transfer_weights=cfg.transfer_weights, warmup_fraction=cfg.warmup_fraction)
    uses_mlm = any(st.terms.get(k) for st in stages for k in ("mlm", "mlm_kd"))
    clean = (not uses_mlm) if cfg.clean_inputs is None else cfg.clean_inputs
    return DistillModule(student, teacher, tmap, cfg.alpha, cfg.temperature, cfg.teacher_chunk,
                         cfg.recompute, clean), stages


def distill(cfg: DistillConfig, resume: bool = False, make_loader: Callable[[int], Loader] | None = None
            ) -> dict[str, Any]:
    """Run a whole distillation; returns fit's summary (exports per stage, final step, last loss terms)."""
    cfg.train.validate()
    if cfg.export not in ("auto", *EXPORTS):
        raise ValueError(f"export must be auto, {' or '.join(EXPORTS)}; got {cfg.export!r}")
    d = init_distributed()
    if make_loader is None:
        data = check_data(cfg.data)
    torch.manual_seed(cfg.train.seed)
    module, stages = setup(cfg)
    if make_loader is None:
        per_rank = cfg.train.batch_size // (d.world * cfg.train.grad_accum)
        make_loader = pretraining_loaders(data, per_rank, cfg.train.seed, d, module.student.config,
                                          trim=cfg.trim_padding)
    export = cfg.export
    if export == "auto":
        export = "encoder" if module.teacher is not None and has_untrained_heads(module.teacher) else "pretraining"
    sts = read_sts(cfg.eval_sts) if cfg.eval_sts else None
    task = DistillTask(module, export, cfg.teacher, cfg.pooling, sts)
    if d.main:
        write_resolved(cfg, cfg.train.out_dir)
    return fit(task, stages, make_loader, cfg.train, resume=resume, d=d)


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
