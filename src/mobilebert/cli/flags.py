"""One dialect for every command: flags generated from the command's config dataclass, plus positional
``CONFIG.yaml`` and ``key=value`` overrides, all loaded into that dataclass by :func:`mobilebert.options.load`.

``mobilebert finetune configs/finetune_glue.yaml lr=1e-4 --epochs 2`` and ``mobilebert distill
configs/distill_demo.yaml train.lr=1e-3 --train.batch-size 64`` read the same way: defaults < YAML < key=value
< flags. Every message names a setting as the user spelled it (``--max-seq-length``, ``train.lr``).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

from ..options import UsageError, merge, nest, nested

OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")  # a key=value override, not a sentence that holds '='


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written."""


def flag_of(key: str, meta: typing.Mapping[str, Any]) -> str:
    return meta.get("flag") or "--" + key.replace("_", "-")


def shown(value: Any) -> str:
    """A default as the help shows it: ``5e-5`` (not 5e-05), lists space-separated."""
    if isinstance(value, list | tuple):
        return " ".join(map(shown, value))
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", lambda m: f"e{m.group(1).replace('+', '')}{m.group(2)}", f"{value:g}")
    return str(value)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _base(tp: Any) -> tuple[Any, bool]:
    """(the type without ``| None``, whether it is a list)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType) and len(args) == 1:
        tp = args[0]
    origin = typing.get_origin(tp)
    return tp, origin in (list, tuple)


def positional_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("positional")]


def add_fields(p: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """One flag per field (nested sections as ``--train.lr``), its help ending with the default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        sub = nested(cls, f.name)
        if sub is not None:
            add_fields(p, sub, f"{key}.")
            continue
        if f.metadata.get("positional"):
            continue
        meta, default = f.metadata, _default(f)
        text = meta.get("help", "")
        if "default" not in text and default not in (None, False, [], (), ""):
            text = f"{text} (default: {shown(default)})"
        kw: dict[str, Any] = {"dest": "opt:" + key, "default": argparse.SUPPRESS, "help": text}
        tp, many = _base(hints[f.name])
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif many:
            item = typing.get_args(tp)[0] if typing.get_args(tp) else str
            if typing.get_origin(item) in (list, tuple):  # pairs: --pair A B (repeatable)
                kw.update(nargs=2, action="append", metavar=("A", "B"))
            else:
                kw.update(nargs="+", action="extend", type=str, metavar=f.name.upper())
        else:
            kw["type"] = tp if tp in (int, float, str) else str
            if meta.get("choices"):
                kw["choices"] = list(meta["choices"])
            else:
                kw["metavar"] = f.name.upper()
        p.add_argument(flag_of(key, meta), **kw)


def fill(p: argparse.ArgumentParser, cls: type, resumable: bool) -> argparse.ArgumentParser:
    """The arguments of a command whose settings are ``cls``."""
    pos = positional_fields(cls)
    words = " ".join(f.name.upper() for f in pos)
    p.add_argument("args", nargs="*", metavar="ARG", help=(f"{words}; " if words else "") +
                   "optionally a YAML config (CONFIG.yaml) and key=value overrides, e.g. lr=1e-4 train.batch_size=64 "
                   "(flags win over both)")
    p.add_argument("--config", dest="opt_config", metavar="FILE", help="YAML settings file (same keys as the flags, with _ )")
    add_fields(p, cls)
    if resumable and "resume" not in {f.name for f in dataclasses.fields(cls)}:  # else the config's own field
        p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the output "
                       "folder (same settings)")
    if _writes(cls):
        p.add_argument("--overwrite", action="store_true", help="replace an existing output (refused without)")
    return p


def _writes(cls: type) -> bool:
    return any(f.metadata.get("output") for f in dataclasses.fields(cls))


def _split_items(value: Any, tp: Any) -> Any:
    """``--seeds 1,2,3`` and ``--seeds 1 2 3`` both give a list; items parsed as numbers where the type says."""
    tp, many = _base(tp)
    if not many or not isinstance(value, list) or (value and isinstance(value[0], list)):
        return value
    item = (typing.get_args(tp) or (str,))[0]
    out = []
    for v in value:
        for part in (v.split(",") if isinstance(v, str) and item is not str else [v]):
            try:
                out.append(item(part) if item in (int, float) else part)
            except ValueError:
                raise ValueError(part) from None
    return out


def config_from_args(cls: type, ns: argparse.Namespace) -> tuple[Path | None, list[str], dict[str, Any],
                                                                 dict[str, str]]:
    """(YAML path, key=value overrides, flag values as a nested mapping, spelling of each key) from parsed args."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    for dest, value in vars(ns).items():
        if not dest.startswith("opt:"):
            continue
        key = dest[4:]
        meta, tp = _field(cls, key)
        try:
            value = _split_items(value, tp)
        except ValueError as e:
            raise UsageError(f"{flag_of(key, meta)} must be a comma-separated list of numbers, e.g. 1,2,3; got "
                             f"{e}") from None
        merge(values, nest(key, value))
        names[key] = flag_of(key, meta)
    path = Path(ns.opt_config) if getattr(ns, "opt_config", None) else None
    pos = positional_fields(cls)
    overrides, rest = [], []
    for item in ns.args:
        if OVERRIDE.match(item):
            overrides.append(item)
            names.setdefault(item.split("=", 1)[0], item.split("=", 1)[0])
        elif path is None and item.endswith((".yaml", ".yml")) and (not pos or Path(item).is_file()):
            path = Path(item)  # a command that takes texts takes a .yaml name as text unless the file exists
        else:
            rest.append(item)
    for i, f in enumerate(pos):
        _, many = _base(typing.get_type_hints(cls)[f.name])
        if many:
            if rest[i:]:
                values[f.name] = rest[i:]
            rest = rest[:i]
            break
        if i < len(rest):
            values[f.name] = rest[i]
        names.setdefault(f.name, f.name)
    if len(rest) > len(pos):
        extra = rest[len(pos)]
        raise UsageError(f"override {extra!r} is not key=value" if not pos else f"unexpected argument {extra!r}")
    if path is not None:
        for key in _keys(path):
            names.setdefault(key, f"{path}: {key}")
    for f in dataclasses.fields(cls):  # keys never given read as the flag a user would type
        if nested(cls, f.name) is None:
            names.setdefault(f.name, f.name if f.metadata.get("positional") else flag_of(f.name, f.metadata))
    return path, overrides, values, names


def _keys(path: Path) -> list[str]:
    from ..options import read_yaml

    try:
        raw = read_yaml(path)
    except UsageError:
        return []

    def walk(d: dict, prefix: str) -> list[str]:
        return [k for key, v in d.items()
                for k in (walk(v, f"{prefix}{key}.") if isinstance(v, dict) else [f"{prefix}{key}"])]

    return walk(raw, "")


def _field(cls: type, key: str) -> tuple[typing.Mapping[str, Any], Any]:
    """(metadata, type annotation) of the setting at dotted ``key``."""
    *parents, leaf = key.split(".")
    for part in parents:
        cls = typing.get_type_hints(cls)[part]
    return next(f.metadata for f in dataclasses.fields(cls) if f.name == leaf), typing.get_type_hints(cls)[leaf]
