"""Shared test fixtures: where ../shared/data is (tests needing it skip when absent) and tiny configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mobilebert import MobileBertConfig

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MOBILEBERT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The ../shared/data folder; skips the test when it is absent (a fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


def tiny_config(preset: str = "mobilebert", **overrides) -> MobileBertConfig:
    """A preset shrunk for fast tests: 2 layers, small vocab; architecture flags unchanged."""
    base = dict(num_hidden_layers=2, vocab_size=1000, max_position_embeddings=128)
    return MobileBertConfig.from_preset(preset, **{**base, **overrides})


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
