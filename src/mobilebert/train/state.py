"""Training state on disk, what ``--resume`` continues from: atomic folders, RNG states of every rank,
keep-last-K.

(Not to be confused with a model folder, ``from_pretrained`` weights + config, read and written by
``mobilebert.checkpoint``.) A training state is a folder ``OUT/checkpoints/step-XXXXXXXX`` holding one
``state.pt``: model and optimizer, stage and step, RNG states and data cursors of every rank, the task's own
state. It is written under a temporary name and renamed into place, so a folder with the final name is always
complete, even if the process is killed mid-write. The functions keep the word "checkpoint" of the folder name.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

PREFIX = "step-"


def rng_snapshot() -> tuple[Any, ...]:
    """The states of every generator a training step may draw from, as the generators give them: cheap enough to
    take before every step (``rng_state`` turns one into what is saved)."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def rng_state(snapshot: tuple[Any, ...] | None = None) -> dict[str, Any]:
    """The generators' states (now, or those of an ``rng_snapshot``) in a form ``torch.load(weights_only=True)``
    reads."""
    python, (kind, keys, pos, has_gauss, cached), cpu, cuda = snapshot or rng_snapshot()
    state: dict[str, Any] = {
        "python": list(_to_lists(python)),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": cpu,
    }
    if cuda is not None:
        state["cuda"] = cuda
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def checkpoints(root: str | Path) -> list[Path]:
    """Complete training-state folders under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.pt").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(root: str | Path) -> Path | None:
    found = checkpoints(root)
    return found[-1] if found else None


def save_checkpoint(root: str | Path, step: int, state: dict[str, Any], keep_last: int = 3) -> Path:
    """Write the training ``state`` as ``root/step-XXXXXXXX/state.pt`` atomically; then delete all but the
    newest ``keep_last`` of them (0 keeps all)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{final.name}-"))
    try:
        torch.save(state, tmp / "state.pt")
        if final.exists():  # re-saving the same step after a resume: replace it
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep_last > 0:
        for old in checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training-state folder (or its state.pt) -> the saved dict; nothing but tensors and plain data unpickled."""
    path = Path(path)
    if path.is_dir():
        path = path / "state.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such training state")
    return torch.load(path, map_location="cpu", weights_only=True)
