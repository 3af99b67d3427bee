"""Run configs as data: YAML files (configs/*.yaml) plus ``a.b=value`` overrides -> dataclasses, every key and
type checked; the resolved config written next to the checkpoints; the ranges of ``TrainConfig``.

Shared by every recipe that trains through ``fit`` (teacher pre-training, distillation) and by the fine-tuning
hyper-parameter files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..validate import at_least, check_fields, in_range, one_of
from .trainer import TrainConfig


def read_yaml_mapping(path: str | Path, what: str = "settings") -> dict[str, Any]:
    """The top-level mapping of a YAML file (empty file: ``{}``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{path}: invalid YAML{where} ({getattr(e, 'problem', None) or type(e).__name__})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of {what}")
    return raw


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


def to_plain(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def write_resolved(cfg: Any, out_dir: str | Path) -> Path:
    """The fully resolved config, next to the checkpoints, so a run can be repeated exactly."""
    import yaml

    path = Path(out_dir) / "config.yaml"
    atomic_write_text(path, yaml.safe_dump(to_plain(cfg), sort_keys=False))
    return path
