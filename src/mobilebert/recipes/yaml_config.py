"""Reading the YAML recipe configs in configs/: one mapping per file, clear errors naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
