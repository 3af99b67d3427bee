"""Distil a MobileBERT student from a teacher: read config -> build teacher, student, schedule -> fit -> export.

``distill(cfg)`` is what ``mobilebert distill CONFIG.yaml key=value ...`` runs; the same code runs under
``torchrun`` for DDP. Strategy ``none`` trains the student from scratch with MLM + NSP (the baseline).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
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
from ..distill.strategies import STRATEGIES, build_schedule
from ..modeling import MobileBertForPreTraining
from ..options import check, option, write_resolved
from ..train.schedule import Stage
from ..train.trainer import Loader, TrainConfig, check_batch, fit, init_distributed

log = logging.getLogger(__name__)

INIT_PARTS = ("position", "token_type", "word_svd")  # what init_from_teacher may start from the teacher


# ----------------------------------------------------------------------------- config
@dataclass
class DistillConfig:
    """Everything one distillation run needs; YAML files in configs/ fill it, ``key=value`` and flags override it."""

    strategy: str = option("progressive", help="progressive, joint, auxiliary, or none (the student from scratch: "
                           "the baseline)", choices=STRATEGIES)
    teacher: str | None = option(None, help="a from_pretrained directory (not needed for strategy none)",
                                 path="checkpoint")
    student_preset: str = option("mobilebert", help="the student's preset")
    student: dict[str, Any] = option(factory=dict, help="MobileBertConfig overrides for the student")
    data: str | None = option(None, help="a directory written by prepare-pretraining or corpus")
    transfer_steps: int = option(240_000, help="layer-wise transfer, all phases together", at_least=0)
    distill_steps: int = option(500_000, help="pre-training distillation afterwards", at_least=0)
    lower_layers: str = option("slow", help="progressive: lower layers train slow (lower_lr x) or frozen",
                               choices=("slow", "frozen"))
    lower_lr: float = option(0.1, help="progressive: learning-rate factor of the lower layers", at_least=0)
    layer_map: list[int] | None = option(None, help="student layer i learns from teacher block layer_map[i] "
                                         "(default: uniform)")
    transfer_weights: dict[str, float] = option(factory=dict, help="override SPEC §3 factors (fmt, mean, var, att)")
    alpha: float = option(0.5, help="weight of the one-hot label in the distillation target", at_least=0,
                          at_most=1)
    temperature: float = option(1.0, help="softmax temperature of the distillation target", above=0, at_most=1e3)
    teacher_bf16: bool = option(False, help="run the teacher in bf16 (halves its memory and time on GPUs)")
    teacher_chunk: int = option(0, help="teacher sequences per pass (0: whole micro-batch); small values cut peak "
                                "memory on CPU", at_least=0, affects_result=False)
    recompute: bool = option(False, help="student blocks keep only their input for backward and run again there "
                             "(less memory)", affects_result=False)
    copy_from_teacher: bool = option(True, help="copy embeddings and heads whose shapes match, frozen during "
                                     "transfer")
    init_from_teacher: list[str] = option(factory=list, help="parts started from the teacher", choices=INIT_PARTS)
    clean_inputs: bool | None = option(None, help="feed unmasked text (default: when no stage uses MLM, i.e. "
                                       "head-less teachers)")
    trim_padding: bool = option(False, help="cut each batch to its longest sequence (short-sentence corpora run "
                                "faster)")
    export: str = option("auto", help="pretraining (heads included) or encoder (+ tokenizer + pooling); auto: "
                         "encoder when the teacher has no trained heads", choices=("auto", *EXPORTS))
    pooling: str = option("mean", help="the exported encoder's sentence pooling", choices=("mean", "cls"))
    eval_sts: str | None = option(None, help="STS-B file or GLUE folder scored every train.eval_every steps "
                                  "(encoder runs)", path="exists", affects_result=False)
    no_dropout: bool = option(True, help="no dropout while distilling (SPEC §3)")
    warmup_fraction: float = option(0.1, help="warm-up, as a fraction of each stage", at_least=0, at_most=1)
    train: TrainConfig = option(factory=TrainConfig, help="optimisation and bookkeeping")

    def check(self) -> None:
        if self.transfer_steps + self.distill_steps == 0:
            raise ValueError("transfer_steps and distill_steps are both 0: nothing to train")
        if self.strategy != "none" and not self.teacher:
            raise ValueError(f"strategy {self.strategy} needs a teacher (teacher=DIR, a from_pretrained directory)")


def check_distill_inputs(cfg: DistillConfig) -> DistillConfig:
    """What the config's fields cannot say alone: the student builds, and the data fits its positions."""
    try:
        student = MobileBertConfig.from_preset(cfg.student_preset, **cfg.student)
    except (ValueError, TypeError) as e:
        raise ValueError(f"student_preset / student: {e}") from None
    seq = prepared_seq_length(cfg.data)
    if seq > student.max_position_embeddings:
        raise ValueError(f"data {cfg.data}: examples of {seq} tokens exceed the student's max_position_embeddings "
                         f"{student.max_position_embeddings}")
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


def build_distillation(cfg: DistillConfig) -> tuple[DistillModule, list[Stage]]:
    """The distillation module (teacher loaded, student built and started from it as configured) and the
    strategy's stages; every bad setting fails here, before training."""
    student = build_student(cfg)
    teacher, tmap, copied = None, None, []
    if cfg.strategy != "none":  # DistillConfig.check: a teacher is given
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
    check(cfg)  # fields and relations (the CLI also checked the files: check_distill_inputs)
    d = init_distributed()
    if make_loader is None:
        data = check_data(cfg.data)
    torch.manual_seed(cfg.train.seed)
    module, stages = build_distillation(cfg)
    if make_loader is None:
        per_rank = check_batch(cfg.train.batch_size, cfg.train.grad_accum, d.world)
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


def main(cfg: DistillConfig, resume: bool = False) -> int:
    """``mobilebert distill``: run, then name each stage's exported folder."""
    for stage, path in distill(cfg, resume=resume)["exports"].items():
        print(f"{stage}: {path}")
    return 0
