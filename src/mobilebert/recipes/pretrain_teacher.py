"""Pre-train a teacher (IB-BERT or any preset/config) with MLM + NSP, or continue from a checkpoint.

No IB-BERT teacher has ever been released; this trains one. Any ``from_pretrained`` directory (for example
a BERT checkpoint) can instead be given straight to ``mobilebert distill teacher=DIR``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..config import PRESETS, MobileBertConfig
from ..data.pretraining import check_data, prepared_seq_length, pretraining_loaders
from ..modeling import MobileBertForPreTraining
from ..options import check, option, write_resolved
from ..train.pretrain import PretrainModule, PretrainTask, pretrain_stage
from ..train.trainer import TrainConfig, check_batch, fit, init_distributed


@dataclass
class TeacherConfig:
    """One teacher pre-training run; YAML files in configs/ fill it, ``key=value`` and flags override it."""

    preset: str = option("ib-bert-large", help="the teacher's preset", choices=PRESETS)
    model: dict[str, Any] = option(factory=dict, help="MobileBertConfig overrides")
    config_json: str | None = option(None, help="a config.json (HF or official TF) instead of a preset",
                                     path="file")
    init: str | None = option(None, help="continue from a from_pretrained directory", path="model")
    data: str | None = option(None, help="a directory written by prepare-pretraining")
    steps: int = option(1_000_000, help="optimizer steps", at_least=1)
    warmup_fraction: float = option(0.01, help="warm-up, as a fraction of the steps", at_least=0, at_most=1)
    train: TrainConfig = option(factory=lambda: TrainConfig(out_dir="runs/teacher", lr=1e-3),
                                help="optimisation and bookkeeping")


def check_teacher_inputs(cfg: TeacherConfig) -> TeacherConfig:
    """What the fields cannot say alone: the model builds, and the data fits its positions."""
    try:
        model = build_config(cfg)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{'init' if cfg.init else 'config_json' if cfg.config_json else 'preset'} / model: "
                         f"{e}") from None
    seq = prepared_seq_length(cfg.data)
    if seq > model.max_position_embeddings:
        raise ValueError(f"data {cfg.data}: examples of {seq} tokens exceed the model's max_position_embeddings "
                         f"{model.max_position_embeddings}")
    return cfg


def build_config(cfg: TeacherConfig) -> MobileBertConfig:
    if cfg.init:
        return MobileBertConfig.from_json(cfg.init).replace(**cfg.model)
    if cfg.config_json:
        return MobileBertConfig.from_json(cfg.config_json, **cfg.model)
    return MobileBertConfig.from_preset(cfg.preset, **cfg.model)


def build_teacher(cfg: TeacherConfig) -> MobileBertForPreTraining:
    if cfg.init:
        return MobileBertForPreTraining.from_pretrained(cfg.init, **cfg.model)
    if cfg.config_json:
        return MobileBertForPreTraining(MobileBertConfig.from_json(cfg.config_json, **cfg.model))
    return MobileBertForPreTraining(MobileBertConfig.from_preset(cfg.preset, **cfg.model))


def pretrain_teacher(cfg: TeacherConfig, resume: bool = False, make_loader=None) -> dict[str, Any]:
    """Train with MLM + NSP; the result (``out_dir/stages/pretrain``) is a from_pretrained directory."""
    check(cfg)  # fields and relations (the CLI also checked the files: check_teacher_inputs)
    d = init_distributed()
    data = check_data(cfg.data) if make_loader is None else None
    torch.manual_seed(cfg.train.seed)
    model = build_teacher(cfg)
    module = PretrainModule(model)
    if make_loader is None:
        per_rank = check_batch(cfg.train.batch_size, cfg.train.grad_accum, d.world)
        make_loader = pretraining_loaders(data, per_rank, cfg.train.seed, d.rank, d.world, model.config)
    if d.main:
        write_resolved(cfg, cfg.train.out_dir)
    stage = pretrain_stage(module, cfg.steps, cfg.warmup_fraction)
    return fit(PretrainTask(module), [stage], make_loader, cfg.train, resume=resume, d=d)


def main(cfg: TeacherConfig, resume: bool = False) -> int:
    """``mobilebert pretrain-teacher``: run, then name the exported folder."""
    for stage, path in pretrain_teacher(cfg, resume=resume)["exports"].items():
        print(f"{stage}: {path}")
    return 0
