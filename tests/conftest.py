"""Shared test fixtures and helpers: where ../shared/data is (tests needing it skip when absent), tiny configs, the
tiny word-level checkpoint the fine-tuning tests train, and the perturbed small models the export tests compare."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from mobilebert import MobileBertConfig, MobileBertForPreTraining

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


# ----------------------------------------------------------------------------- fine-tuning
TINY = dict(hidden_size=64, embedding_size=32, intra_bottleneck_size=32, intermediate_size=64,
            num_attention_heads=2, num_feedforward_networks=1, max_position_embeddings=128)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A randomly initialised 2-layer MobileBERT with a word-level vocab of the SST-2 sample (fast)."""
    from tokenizers import pre_tokenizers

    from mobilebert.data.glue import SAMPLE_DIR, read_glue

    path = tmp_path_factory.mktemp("tiny")
    words = {w.lower() for e in read_glue("sst2", SAMPLE_DIR, "train", limit=300) + read_glue(
        "sst2", SAMPLE_DIR, "dev", limit=100) for w, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(e.text_a)}
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words)]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    MobileBertForPreTraining(tiny_config(vocab_size=len(vocab), **TINY)).save_pretrained(path)
    return path


# ----------------------------------------------------------------------------- optimized / exported models
SHRINK = {  # wide presets made small; architecture flags unchanged
    "ib-bert-large": dict(hidden_size=128, embedding_size=32, intra_bottleneck_size=64, intermediate_size=128),
    "bert-base": dict(hidden_size=96, embedding_size=96, intra_bottleneck_size=96, intermediate_size=192,
                      num_attention_heads=4),
}


def small_config(preset: str, **kw):
    return tiny_config(preset, **{**SHRINK.get(preset, {}), **kw})


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial norm weights and biases so that folding them is actually exercised."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


def inputs(config, B: int, T: int, pad: bool):
    ids = torch.randint(1, config.vocab_size, (B, T))
    mask = torch.ones_like(ids)
    if pad:
        for b in range(1, B):
            mask[b, T - 2 * b - 1:] = 0
        ids = ids * mask
    return dict(input_ids=ids, attention_mask=mask if pad else None,
                token_type_ids=torch.randint(0, 2, (B, T)) * mask)


def rel_max(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())


def assert_matches_eager(model, runner, names: list[str], tol: float = 1e-4) -> None:
    """An exported model (``runner``, called like ``model``) gives eager's outputs on shapes unlike the export
    example's (2, 16): one short unpadded row, and five padded rows of 40."""
    for B, T, pad in ((1, 3, False), (5, 40, True)):
        x = inputs(model.config, B, T, pad)
        with torch.no_grad():
            ref = model(**x)
        got = runner(**x)
        for name in names:
            assert rel_max(ref[name], got[name]) <= tol, (name, B, T, pad)


def write_squad_sample(folder) -> None:
    """Two questions on one context, as SQuAD v1.1 train and dev files (the same rows)."""
    context = "the film is a gripping story about a boy and his dog , told with wit and heart ."
    qas = [{"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": context.index(a)}]}
           for i, (q, a) in enumerate([("what is the film ?", "a gripping story"), ("who has a dog ?", "a boy")])]
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        (folder / name).write_text(json.dumps(data))
