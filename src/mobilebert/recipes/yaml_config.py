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
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of {what}")
    return raw
