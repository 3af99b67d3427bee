"""The checks a config dataclass cannot make, run before any work: input paths are what their fields say
(``option(path=...)``), outputs follow the one rule for existing paths, and each command's files, folders and
checkpoints agree with its settings. Every failure is one line naming the setting as the user spelled it.
Types, ranges and choices were checked when the config was loaded (:mod:`mobilebert.options`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from ..validate import (
    UsageError,
    checkpoint_dir,
    existing_dir,
    existing_file,
    fresh_output,
    missing_packages,
    model_config,
    text_file,
)


def existing_path(path: str, name: str) -> Path:
    if not Path(path).exists():
        raise UsageError(f"{name} {path}: no such file or folder")
    return Path(path)


PATH_CHECKS: dict[str, Callable[[str, str], Any]] = {
    "file": existing_file, "text": text_file, "dir": existing_dir, "exists": existing_path, "model": model_config,
    "checkpoint": checkpoint_dir,
}


def _walk(cfg: Any, prefix: str = ""):
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            yield from _walk(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, f.metadata, value


def check_inputs(command: str, cfg: Any, names: Mapping[str, str], resume: bool = False,
                 overwrite: bool = False) -> None:
    """Every path field, every output, then the command's own relations (``COMMAND_CHECKS``)."""
    def n(key: str) -> str:
        return names.get(key, key)

    for key, meta, value in _walk(cfg):
        if value and meta.get("path"):
            for v in value if isinstance(value, list) else [value]:
                PATH_CHECKS[meta["path"]](v, n(key))
    extra = COMMAND_CHECKS.get(command)
    if extra is not None:
        extra(cfg, n)
    for key, meta, value in _walk(cfg):
        if value and meta.get("output"):
            fresh_output(value, n(key), overwrite=overwrite, resume=resume, resumable=meta["output"] == "run")


def seq_fits(flag: str, seq: int | None, model_dir: str | None) -> None:
    """A sequence length within the model's position table."""
    if seq is None or model_dir is None:
        return
    cfg = model_config(model_dir, "model")
    if seq > cfg.max_position_embeddings:
        raise UsageError(f"{flag} {seq} exceeds the model's max_position_embeddings {cfg.max_position_embeddings} "
                         f"({model_dir})")


def _export(cfg: Any, n: Callable[[str], str]) -> None:
    if cfg.format != "onnx":
        seq_fits(n("seq_len"), cfg.seq_len, cfg.model_dir)
    missing, install = missing_packages(cfg.format)
    if missing:
        raise UsageError(f"--format {cfg.format} needs `pip install {install}` ({', '.join(missing)} missing)")
    if cfg.format == "mediapipe":
        _mediapipe_checkpoint(cfg, n)


def _mediapipe_checkpoint(cfg: Any, n: Callable[[str], str]) -> None:
    """What MediaPipe's text tasks can run: a sequence classifier (TextClassifier) or an encoder (TextEmbedder),
    with its vocab; --labels one name per class."""
    from ..checkpoint import inspect

    info, where = inspect(cfg.model_dir), f"{n('model_dir')} {cfg.model_dir}"
    if info.head not in ("classifier", "encoder"):
        raise UsageError(f"{where}: {info.architecture} is neither a sequence classifier nor an encoder "
                         "(MobileBertModel); MediaPipe's text tasks run only those")
    if info.head == "classifier" and info.num_labels < 2:
        raise UsageError(f"{where}: a regression head ({info.num_labels} output) is not a classifier; "
                         "TextClassifier needs at least 2 classes")
    if not info.vocab:
        raise UsageError(f"{where}: no vocab.txt or tokenizer.json; the MediaPipe file carries the checkpoint's vocab")
    if cfg.labels:
        if info.head != "classifier":
            raise UsageError(f"--labels: {cfg.model_dir} is an encoder (TextEmbedder); only classifiers have labels")
        labels = cfg.labels.split(",")
        if len(labels) != info.num_labels or not all(x.strip() for x in labels):
            raise UsageError(f"--labels {cfg.labels}: got {len(labels)} label names for {info.num_labels} classes "
                             "(comma-separated, none empty)")


def _bench(cfg: Any, n: Callable[[str], str]) -> None:
    for s in cfg.seqs:
        seq_fits(n("seqs"), s, cfg.model_dir)


def _prepare(cfg: Any, n: Callable[[str], str]) -> None:
    from ..data.shards import expand_inputs

    if cfg.inputs:
        expand_inputs(cfg.inputs)


def _sts(cfg: Any, n: Callable[[str], str]) -> None:
    from ..data.sts import read_sts

    try:
        read_sts(cfg.data, cfg.split)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"{n('data')} {cfg.data}: {e}") from None


def _teacher(cfg: Any, n: Callable[[str], str]) -> None:
    from ..recipes.pretrain_teacher import check_teacher_config

    check_teacher_config(cfg)


def _distill(cfg: Any, n: Callable[[str], str]) -> None:
    from ..recipes.distill import check_distill_config

    check_distill_config(cfg)


COMMAND_CHECKS: dict[str, Callable[[Any, Callable[[str], str]], None]] = {
    "export": _export, "bench": _bench, "prepare-pretraining": _prepare, "sts": _sts,
    "pretrain-teacher": _teacher, "distill": _distill,
}
