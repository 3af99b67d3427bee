"""Checks that run before any work: arguments, config values and input files.

A command calls these first, so a mistake costs a second, not a training run. Each failure raises
:class:`UsageError` with one line that names the flag, key or file as the user wrote it and says what would be
right; the CLI prints it and exits 2. The module imports nothing heavy (no torch), so a bad invocation fails
fast; project modules are imported inside the functions that need them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .checkpoint import WEIGHT_FILES
from .options import UsageError  # one home; re-exported for the checks below

# What a training run writes into its folder; --overwrite removes these (never other files).
RUN_ARTIFACTS = ("checkpoints", "stages", "tensorboard", "metrics.jsonl", "config.yaml", "results.json", "seed-*")
TEXT_PROBE_BYTES = 1 << 16
# Export format -> (modules its exporter and runtime import, what to pip install). Export preflight and the
# phone bench backends both read it, so a format's requirements are stated once.
FORMAT_PACKAGES = {"onnx": (("onnxruntime",), "onnxruntime"),
                   "executorch": (("executorch",), "executorch"),
                   "litert": (("litert_torch", "ai_edge_litert"), "litert-torch"),
                   "mediapipe": (("litert_torch", "mediapipe"), "litert-torch mediapipe"),
                   "openvino": (("openvino", "nncf"), "openvino nncf")}



# ----------------------------------------------------------------------------- numbers
def at_least(name: str, value: float | None, low: float) -> None:
    """``value >= low`` (None passes: the option was not given)."""
    if value is not None and value < low:
        raise UsageError(f"{name} must be >= {low}, got {value}")


def in_range(name: str, value: float | None, low: float, high: float, *, low_open: bool = False,
             high_open: bool = False) -> None:
    """``low <= value <= high``, each end optionally open."""
    if value is None:
        return
    if (value <= low if low_open else value < low) or (value >= high if high_open else value > high):
        if high == float("inf"):
            raise UsageError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise UsageError(f"{name} must be in {lo}{low}, {high}{hi}, got {value}")


def one_of(name: str, value: Any, choices: Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        raise UsageError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


# ----------------------------------------------------------------------------- files and folders
def looks_like_text(path: str | os.PathLike) -> bool:
    """True when the file's first 64 KiB hold no NUL byte and at most 10% of them are invalid UTF-8 (a stray
    Latin-1 byte in a corpus is replaced and counted downstream). Model weights, archives, event logs and
    executables fail this."""
    with open(path, "rb") as f:
        head = f.read(TEXT_PROBE_BYTES)
    if b"\0" in head:
        return False
    bad = head.decode("utf-8", "replace").count("\ufffd") - head.count("\ufffd".encode())
    return bad <= 0.1 * len(head)


def existing_file(path: str | os.PathLike, name: str) -> Path:
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{name} {p}: is a folder, expected a file")
    if not p.is_file():
        raise UsageError(f"{name} {p}: no such file")
    return p


def existing_dir(path: str | os.PathLike, name: str, what: str = "folder") -> Path:
    p = Path(path)
    if p.is_file():
        raise UsageError(f"{name} {p}: is a file, expected a {what}")
    if not p.is_dir():
        raise UsageError(f"{name} {p}: no such {what}")
    return p


def text_file(path: str | os.PathLike, name: str) -> Path:
    """An existing UTF-8 text file holding at least one non-blank line."""
    p = existing_file(path, name)
    if not looks_like_text(p):
        raise UsageError(f"{name} {p}: not a UTF-8 text file (binary content)")
    with open(p, encoding="utf-8", errors="replace") as f:
        if not any(line.strip() for line in f):
            raise UsageError(f"{name} {p}: empty (no non-blank line)")
    return p


def checkpoint_dir(path: str | os.PathLike, name: str) -> Path:
    """A ``from_pretrained`` folder: config.json and a weights file."""
    p = existing_dir(path, name, "checkpoint folder")
    if not (p / "config.json").is_file():
        raise UsageError(f"{name} {p}: no config.json (not a checkpoint folder)")
    if not any((p / w).is_file() for w in WEIGHT_FILES):
        raise UsageError(f"{name} {p}: no weights ({' or '.join(WEIGHT_FILES)})")
    return p


def model_config(path: str | os.PathLike, name: str) -> Any:
    """The MobileBertConfig of a checkpoint folder, as a UsageError when unreadable."""
    from .config import MobileBertConfig

    p = checkpoint_dir(path, name)
    try:
        return MobileBertConfig.from_json(p)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{name} {p}: unreadable config.json ({str(e).splitlines()[0]})") from None


def missing_packages(fmt: str) -> tuple[list[str], str]:
    """The modules export format ``fmt`` needs that do not import here, and the pip line that installs them."""
    import importlib.util

    modules, install = FORMAT_PACKAGES.get(fmt, ((), ""))
    return [m for m in modules if importlib.util.find_spec(m) is None], install


def has_checkpoints(path: str | os.PathLike) -> bool:
    """True when a training folder holds a resumable checkpoint (``step-*/state.pt`` anywhere below)."""
    p = Path(path)
    return p.is_dir() and any(p.rglob("step-*/state.pt"))


def fresh_output(path: str | os.PathLike, name: str, overwrite: bool = False, resume: bool = False,
                 resumable: bool = False) -> Path:
    """The one rule for outputs: an existing, non-empty target is refused unless the user says what to do
    with it, ``--resume`` (where it holds checkpoints and the command can continue them) or ``--overwrite``."""
    p = Path(path)
    if not p.exists() or (p.is_dir() and not any(p.iterdir())) or overwrite:
        return p
    if resumable and has_checkpoints(p):
        if resume:
            return p
        raise UsageError(f"{name} {p}: holds checkpoints of an earlier run; add --resume to continue it, or "
                         "--overwrite to start over")
    if resume and p.is_dir() and all(any(q.match(pattern) for pattern in RUN_ARTIFACTS) for q in p.iterdir()):
        return p  # a run stopped before its first checkpoint (a requeued job): --resume starts it again
    if resume:
        raise UsageError(f"{name} {p}: already exists but holds no checkpoint to resume; use --overwrite to "
                         "start over, or another folder")
    raise UsageError(f"{name} {p}: already exists; choose another path or add --overwrite to replace it")
