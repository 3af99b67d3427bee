"""Pre-train a teacher (IB-BERT or any preset/config) with MLM + NSP, or continue from a checkpoint.

No IB-BERT teacher has ever been released; this trains one. Any ``from_pretrained`` directory (for example
a BERT checkpoint) can instead be given straight to ``mobilebert distill teacher=DIR``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import MobileBertConfig
from ..data.pretraining import check_data, prepared_seq_length, pretraining_loaders
from ..modeling import MobileBertForPreTraining
from ..train.config import check_train_config, write_resolved
from ..train.pretrain import PretrainModule, PretrainTask, pretrain_stage
from ..train.trainer import TrainConfig, fit, init_distributed
from ..validate import UsageError, at_least, existing_file, in_range, model_config


@dataclass
class TeacherConfig:
    preset: str = "ib-bert-large"
    model: dict[str, Any] = field(default_factory=dict)  # MobileBertConfig overrides
    config_json: str | None = None  # a config.json (HF or official TF) instead of a preset
    init: str | None = None  # continue from a from_pretrained directory
    data: str | None = None
    steps: int = 1_000_000
    warmup_fraction: float = 0.01
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out_dir="runs/teacher", lr=1e-3))


def check_teacher_config(cfg: TeacherConfig) -> TeacherConfig:
    """Every value and input path of a teacher config, before a model is built."""
    at_least("steps", cfg.steps, 1)
    in_range("warmup_fraction", cfg.warmup_fraction, 0, 1)
    try:
        if cfg.init:
            model = model_config(cfg.init, "init").replace(**cfg.model)
        elif cfg.config_json:
            model = MobileBertConfig.from_json(existing_file(cfg.config_json, "config_json"), **cfg.model)
        else:
            model = MobileBertConfig.from_preset(cfg.preset, **cfg.model)
    except UsageError:
        raise
    except (ValueError, TypeError) as e:
        raise ValueError(f"{'init' if cfg.init else 'config_json' if cfg.config_json else 'preset'} / model: "
                         f"{e}") from None
    seq = prepared_seq_length(cfg.data)
    if seq > model.max_position_embeddings:
        raise ValueError(f"data {cfg.data}: examples of {seq} tokens exceed the model's max_position_embeddings "
                         f"{model.max_position_embeddings}")
    check_train_config(cfg.train)
    return cfg


def build_teacher(cfg: TeacherConfig) -> MobileBertForPreTraining:
    if cfg.init:
        return MobileBertForPreTraining.from_pretrained(cfg.init, **cfg.model)
    if cfg.config_json:
        return MobileBertForPreTraining(MobileBertConfig.from_json(cfg.config_json, **cfg.model))
    return MobileBertForPreTraining(MobileBertConfig.from_preset(cfg.preset, **cfg.model))


def pretrain_teacher(cfg: TeacherConfig, resume: bool = False, make_loader=None) -> dict[str, Any]:
    """Train with MLM + NSP; the result (``out_dir/stages/pretrain``) is a from_pretrained directory."""
    cfg.train.validate()
    d = init_distributed()
    data = check_data(cfg.data) if make_loader is None else None
    torch.manual_seed(cfg.train.seed)
    model = build_teacher(cfg)
    module = PretrainModule(model)
    if make_loader is None:
        per_rank = cfg.train.batch_size // (d.world * cfg.train.grad_accum)
        make_loader = pretraining_loaders(data, per_rank, cfg.train.seed, d.rank, d.world, model.config)
    if d.main:
        write_resolved(cfg, cfg.train.out_dir)
    stage = pretrain_stage(module, cfg.steps, cfg.warmup_fraction)
    return fit(PretrainTask(module), [stage], make_loader, cfg.train, resume=resume, d=d)
