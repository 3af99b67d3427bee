"""The shipped sentence encoder (models/mobilebert-minilm): complete, small, loads from a fresh clone here and in
transformers, and still scores what its model card says (STS-B dev, skipped without ../shared)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilebert import MobileBertModel
from mobilebert.data.sts import read_sts
from mobilebert.sentence import SentenceEncoder, sts_score

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "mobilebert-minilm"
MINILM_PARAMS = 22_713_216


def card_score(what: str) -> float:
    """The bold number on the model card's line for ``what`` (e.g. "STS-B dev")."""
    card = (SHIPPED / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"^\| {re.escape(what)} [^|]*\| \*\*([0-9.]+)\*\*", card, re.M)
    assert m, f"model card has no line for {what}"
    return float(m.group(1))


def test_every_file_is_there_and_small():
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "1_Pooling/config.json", "modules.json", "sentence_bert_config.json", "README.md", "LICENSE"):
        assert (SHIPPED / name).is_file(), name
    size = sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file())
    assert size < 20 * 2**20, f"{size / 2**20:.1f} MB"
    assert "Apache" in (SHIPPED / "LICENSE").read_text(encoding="utf-8")


def test_loads_as_fp32_and_embeds_sensibly():
    enc = SentenceEncoder.from_pretrained(SHIPPED)
    assert {p.dtype for p in enc.model.parameters()} == {torch.float32}
    assert enc.model.loading_info == {"missing_keys": [], "unexpected_keys": []}
    assert enc.model.num_parameters() <= MINILM_PARAMS / 3
    c = enc.model.config
    assert c.normalization_type == "no_norm" and c.trigram_input and c.num_feedforward_networks > 1
    v = enc.encode(["A man is playing a guitar.", "A person plays an instrument.", "The stock market fell today."],
                   normalize=True)
    assert v.shape == (3, 384) and v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_transformers_loads_it_with_the_same_outputs():
    transformers = pytest.importorskip("transformers")
    ref, info = transformers.MobileBertModel.from_pretrained(str(SHIPPED), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ours = MobileBertModel.from_pretrained(SHIPPED)
    ids = torch.tensor([[101, 1037, 2158, 2003, 2652, 1037, 2858, 1012, 102]])
    with torch.no_grad():
        torch.testing.assert_close(ref.eval()(ids).last_hidden_state, ours(ids).last_hidden_state,
                                   atol=1e-4, rtol=1e-4)


def test_bundled_sts_sample_matches_the_card():
    score = sts_score(SentenceEncoder.from_pretrained(SHIPPED), read_sts())
    assert score == pytest.approx(card_score("STS-B sample"), abs=0.05)


def test_sts_dev_has_not_regressed(shared_data):
    score = sts_score(SentenceEncoder.from_pretrained(SHIPPED), read_sts(shared_data / "glue"))
    assert score >= card_score("STS-B dev") - 0.5, score
    assert np.isfinite(score)
