"""Distil a MobileBERT student from a teacher: read config -> build teacher, student, schedule -> fit -> export.

``distill(cfg)`` is what ``mobilebert distill CONFIG.yaml key=value ...`` runs; the same code runs under
``torchrun`` for DDP. Strategy ``none`` trains the student from scratch with MLM + NSP (the baseline).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..checkpoint import inspect
from ..config import MobileBertConfig
from ..data.pretraining import check_data, prepared_seq_length, pretraining_loaders
from ..data.sts import read_sts
from ..distill.losses import TransferMap
from ..distill.module import EXPORTS, DistillModule, DistillTask
from ..distill.strategies import STRATEGIES, Stage, build_schedule
from ..modeling import MobileBertForPreTraining
from ..train.config import check_train_config, load_config, write_resolved  # noqa: F401  (load_config: public)
from ..train.trainer import Loader, TrainConfig, fit, init_distributed
from ..validate import at_least, checkpoint_dir, in_range, one_of

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


def has_untrained_heads(teacher_dir: str | Path) -> bool:
    """True when the checkpoint holds no MLM + NSP heads (an encoder such as all-MiniLM-L6-v2): loading it as
    ``MobileBertForPreTraining`` initialises them randomly, so they must never teach."""
    return inspect(teacher_dir).head != "pretraining"


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
        headless = has_untrained_heads(cfg.teacher)
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
        make_loader = pretraining_loaders(data, per_rank, cfg.train.seed, d.rank, d.world, module.student.config,
                                          trim=cfg.trim_padding)
    export = cfg.export
    if export == "auto":
        export = "encoder" if module.teacher is not None and has_untrained_heads(cfg.teacher) else "pretraining"
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
