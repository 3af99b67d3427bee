"""Commands as data: every command's settings are one dataclass, and each setting says once what it accepts.

A field made with :func:`option` carries its help line and its range or choices in ``metadata``. YAML files,
``a.b=value`` overrides and command-line flags (generated from the same fields by ``mobilebert.cli``) all load
into the dataclass through :func:`load`, which checks every key, type, range and choice in one pass, with the
one-line messages users know (``train.lr must be > 0, got -1``). Rules that tie two fields together live in the
dataclass's own ``check()`` method, called by :func:`check` after the fields; rules that need files, folders or
checkpoints live in ``mobilebert.cli.checks``.

No torch here: loading a config must be cheap and must fail before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text

MISSING: Any = dataclasses.MISSING


class UsageError(ValueError):
    """Bad input from the user: the message is one line naming the flag, key or file."""


def option(default: Any = MISSING, *, help: str, factory: Any = MISSING, choices: Iterable[Any] | None = None,
           at_least: float | None = None, above: float | None = None, at_most: float | None = None,
           below: float | None = None, flag: str | None = None, positional: bool = False,
           output: str | None = None, path: str | None = None, affects_result: bool = True) -> Any:
    """A dataclass field with its help line and accepted values.

    ``flag`` overrides the generated ``--name-with-dashes``; ``positional`` makes it the command's positional
    argument(s); ``output`` marks a path the command writes ("file", or "run" for a resumable training folder):
    the one rule for existing outputs applies to it; ``path`` says what an input path must be ("file", "text",
    "dir", "exists" for either, "model" for a folder with config.json, "checkpoint" for one with weights too), checked
    by ``mobilebert.cli.checks`` before any work; ``affects_result=False`` marks settings that do not change
    what a run computes (threads, logging, save cadence), so ``--resume`` may change them."""
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "at_least": at_least,
            "above": above, "at_most": at_most, "below": below, "flag": flag, "positional": positional,
            "output": output, "path": path, "affects_result": affects_result}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ----------------------------------------------------------------------------- types
def type_name(tp: Any) -> str:
    """How a type reads in a message: ``int | None`` -> 'an integer or null'."""
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
             dict: "a mapping", tuple: "a list"}
    origin = typing.get_origin(tp) or tp
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    return names.get(origin, getattr(origin, "__name__", str(origin)))


def coerce(tp: Any, value: Any) -> tuple[bool, Any]:
    """(ok, value) for ``value`` against the annotation ``tp``; YAML's ``1e-4`` (read as a string) becomes a float,
    an integer where a number is asked becomes a float."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return type(None) in args, None
        for arg in args:
            if arg is not type(None):
                ok, v = coerce(arg, value)
                if ok:
                    return True, v
        return False, value
    if value is None:
        return False, value
    base = origin or tp
    if base is bool:
        return isinstance(value, bool), value
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if base is float:
        if isinstance(value, bool):
            return False, value
        try:
            return True, float(value)
        except (TypeError, ValueError):
            return False, value
    if base is str:
        return isinstance(value, str), value
    if base in (list, tuple):
        if not isinstance(value, list | tuple):
            return False, value
        item = args[0] if args else Any
        out = []
        for v in value:
            ok, v = coerce(item, v)
            if not ok:
                return False, value
            out.append(v)
        return True, tuple(out) if base is tuple else out
    if base is dict:
        return isinstance(value, dict), value
    return True, value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def nested(cls: type, name: str) -> type | None:
    """The dataclass type of field ``name`` when it is a nested section, else None."""
    tp = _hints(cls)[name]
    return tp if dataclasses.is_dataclass(tp) else None


# ----------------------------------------------------------------------------- checks
# A range's ends, lower first: metadata key -> (test, how a message says it).
BOUNDS: dict[str, tuple[Any, str]] = {"at_least": (lambda v, x: v >= x, ">="), "above": (lambda v, x: v > x, ">"),
                                      "at_most": (lambda v, x: v <= x, "<="), "below": (lambda v, x: v < x, "<")}


def _bound(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise UsageError(f"{name} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    bounds = [(key, meta[key]) for key in BOUNDS if meta.get(key) is not None]
    failed = [key for key, limit in bounds if not BOUNDS[key][0](value, limit)]
    if not failed:
        return
    if len(bounds) == 2:  # both ends: one interval, whichever end failed
        (low, lo), (high, hi) = bounds
        raise UsageError(f"{name} must be in {'[' if low == 'at_least' else '('}{lo:g}, {hi:g}"
                         f"{']' if high == 'at_most' else ')'}, got {value:g}")
    raise UsageError(f"{name} must be {BOUNDS[failed[0]][1]} {meta[failed[0]]:g}, got {value:g}")


def check(cfg: Any, where: str = "", prefix: str = "", names: Mapping[str, str] | None = None) -> Any:
    """Every field's type, range and choices, then the dataclass's own ``check()`` (relations between fields);
    nested sections recursively. ``where`` (a file) starts each message when given; ``names`` maps a dotted key
    to the spelling the user typed (``--max-seq-length``). Returns ``cfg``."""
    head = f"{where}: " if where else ""
    names = names or {}
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        name = names.get(key, key)
        if dataclasses.is_dataclass(hints[f.name]):
            check(value, where, f"{key}.", names)
            continue
        ok, value = coerce(hints[f.name], value)
        if not ok:
            raise UsageError(f"{head}{name} must be {type_name(hints[f.name])}, got {getattr(cfg, f.name)!r}")
        object.__setattr__(cfg, f.name, value)
        for item in value if isinstance(value, list | tuple) else (value,):
            if item is not None:
                try:
                    _bound(name, item, f.metadata)
                except UsageError as e:
                    raise UsageError(f"{head}{e}") from None
    own = getattr(cfg, "check", None)
    if callable(own):
        try:
            own()
        except ValueError as e:  # {key} in a relation's message reads as the user spelled that setting
            text = re.sub(r"\{(\w+)\}", lambda m: names.get(prefix + m.group(1), prefix + m.group(1)).split(": ")[-1],
                          str(e))
            raise UsageError(f"{head}{prefix}{text}" if prefix and not text.startswith(prefix) else f"{head}{text}") \
                from None
    return cfg


# ----------------------------------------------------------------------------- loading
def read_yaml(path: str | Path, what: str = "settings") -> dict[str, Any]:
    """The top-level mapping of a YAML file (an empty file is ``{}``); one-line errors naming the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a UTF-8 text file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UsageError(f"{path}: invalid YAML{at} ({getattr(e, 'problem', None) or type(e).__name__})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a mapping of {what}")
    return raw


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``a.b=value`` strings -> a nested mapping; values are read as YAML (``lr=1e-4``, ``seeds=[1,2]``)."""
    import yaml

    raw: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"override {item!r} is not key=value")
        try:
            parsed = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            raise UsageError(f"override {item!r}: the value is not valid YAML") from None
        merge(raw, nest(key, parsed))
    return raw


def nest(key: str, value: Any) -> dict[str, Any]:
    """``"train.lr", 1e-4`` -> ``{"train": {"lr": 1e-4}}``."""
    *parents, leaf = key.split(".")
    out: dict[str, Any] = {leaf: value}
    for p in reversed(parents):
        out = {p: out}
    return out


def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into ``base`` (later sources win, key by key)."""
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = dict(v) if isinstance(v, Mapping) else v
    return base


def build(cls: type, raw: Mapping[str, Any], where: str = "", prefix: str = "",
          names: Mapping[str, str] | None = None) -> Any:
    """The dataclass from a mapping: unknown keys refused (the known ones listed), nested sections built, every
    value type-checked; required fields that are missing named. Ranges are left to :func:`check`."""
    head = f"{where}: " if where else ""
    names = names or {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise UsageError(f"{head}unknown key(s) {', '.join(prefix + k for k in unknown)} "
                         f"(known: {', '.join(prefix + k for k in fields)})")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        sub = nested(cls, name)
        if sub is not None:
            part = raw.get(name) or {}
            if not isinstance(part, Mapping):
                raise UsageError(f"{head}{prefix}{name} must be a mapping of settings, got {part!r}")
            if f.default_factory is not MISSING:  # the section's own defaults, e.g. a teacher's out_dir
                base = f.default_factory()
                part = {**{g.name: getattr(base, g.name) for g in dataclasses.fields(base)}, **part}
            values[name] = build(sub, part, where, f"{prefix}{name}.", names)
        elif name in raw:
            ok, values[name] = coerce(hints[name], raw[name])
            if not ok:
                shown = names.get(prefix + name, prefix + name)
                raise UsageError(f"{head}{shown} must be {type_name(hints[name])}, got {raw[name]!r}")
        elif f.default is MISSING and f.default_factory is MISSING:
            raise UsageError(f"{head}{names.get(prefix + name, prefix + name)} is required")
    return cls(**values)


def load(cls: type, path: str | Path | None = None, overrides: Iterable[str] = (),
         values: Mapping[str, Any] | None = None, names: Mapping[str, str] | None = None) -> Any:
    """YAML file, then ``key=value`` overrides, then ``values`` (already-typed flags) -> a checked ``cls``.
    ``names``: how each dotted key was spelled by the user, for the messages."""
    raw: dict[str, Any] = read_yaml(path) if path is not None else {}
    merge(raw, parse_overrides(overrides))
    merge(raw, values or {})
    return check(build(cls, raw, "", "", names), "", "", names)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def write_resolved(cfg: Any, out_dir: str | Path, name: str = "config.yaml") -> Path:
    """The fully resolved config next to the run's checkpoints, so a run can be repeated (and resumed) exactly."""
    import yaml

    path = Path(out_dir) / name
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


def result_keys(cls: type, prefix: str = "") -> list[str]:
    """Dotted names of the settings that change what a run computes (compared on ``--resume``)."""
    keys = []
    for f in dataclasses.fields(cls):
        sub = nested(cls, f.name)
        if sub is not None:
            keys += result_keys(sub, f"{prefix}{f.name}.")
        elif f.metadata.get("affects_result", True):
            keys.append(prefix + f.name)
    return keys


def changed(cls: type, before: Mapping[str, Any], now: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """The result-changing keys whose values differ between two resolved configs (``--resume`` refuses them)."""
    def get(d: Mapping[str, Any], key: str) -> Any:
        for part in key.split("."):
            d = d.get(part, MISSING) if isinstance(d, Mapping) else MISSING
        return d

    skip = set(ignore)
    return [k for k in result_keys(cls) if k not in skip and get(before, k) != get(now, k)]
