"""Model behaviour without an oracle: SPEC §1 parameter counts, the IB-BERT teacher built by hand,
padding invariance, the SDPA path, and clear errors on bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

from mobilebert import (
    MobileBertConfig,
    MobileBertForMaskedLM,
    MobileBertForPreTraining,
    MobileBertModel,
)


@pytest.mark.parametrize(("preset", "overrides", "pooler", "expected"), [
    ("mobilebert", {}, False, 24_581_888),
    ("mobilebert", {"classifier_activation": True}, True, 24_844_544),
    ("mobilebert-tiny", {}, False, 15_485_696),
    ("ib-bert-large", {}, False, 294_205_184),
])
def test_parameter_counts_match_spec(preset, overrides, pooler, expected):
    cfg = MobileBertConfig.from_preset(preset, **overrides)
    assert MobileBertModel(cfg, add_pooling_layer=pooler).num_parameters() == expected


def test_pretraining_parameter_count_matches_spec():
    assert MobileBertForPreTraining(MobileBertConfig.from_preset("mobilebert")).num_parameters() == 36_597_564


def test_mlm_decoder_is_tied_to_word_embeddings():
    m = MobileBertForMaskedLM(tiny_config()).eval()
    ids = torch.tensor([[1, 2, 3]])
    before = m(ids).logits
    with torch.no_grad():
        m.mobilebert.embeddings.word_embeddings.weight[5].add_(1.0)
    after = m(ids).logits
    assert not torch.equal(before[..., 5], after[..., 5])  # the decoder reads the embedding matrix itself
    assert "cls.predictions.decoder.weight" not in m.state_dict()


def _ln(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps)


def test_ib_bert_teacher_matches_spec_by_hand():
    """SPEC §2 for the teacher: Q, K, V are Linear 512->1024 on the block input, 4 heads of 256."""
    cfg = MobileBertConfig.from_preset("ib-bert-large", num_hidden_layers=1, vocab_size=200, hidden_dropout_prob=0.0,
                                       attention_probs_dropout_prob=0.0, padding_invariant=False)
    model = MobileBertModel(cfg).eval()
    layer = model.encoder.layer[0]
    sa = layer.attention.self
    assert (sa.query.in_features, sa.query.out_features) == (512, 1024)
    assert (sa.key.in_features, sa.value.in_features) == (512, 512)
    assert (sa.n_head, sa.head_dim) == (4, 256)
    assert layer.bottleneck.attention is None and len(layer.ffn) == 0
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    ids = torch.randint(0, 200, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    types = torch.zeros_like(ids)

    # The same forward pass written out from the formulas.
    emb = model.embeddings
    e = emb.word_embeddings.weight[ids]
    tri = torch.cat([F.pad(e[:, 1:], (0, 0, 0, 1)), e, F.pad(e[:, :-1], (0, 0, 1, 0))], -1)
    x = emb.embedding_transformation(tri) + emb.position_embeddings.weight[:7] + emb.token_type_embeddings(types)
    x = _ln(x, emb.LayerNorm)
    b = layer.bottleneck.input
    layer_input = _ln(b.dense(x), b.LayerNorm)  # (B, T, 1024)
    heads = lambda t: t.view(2, 7, 4, 256).transpose(1, 2)  # noqa: E731
    q, k, v = heads(sa.query(x)), heads(sa.key(x)), heads(sa.value(x))
    scores = q @ k.transpose(-1, -2) / math.sqrt(256) + (1 - mask[:, None, None, :].float()) * -1e30
    ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 7, 1024)
    ao = layer.attention.output
    a = _ln(ao.dense(ctx) + layer_input, ao.LayerNorm)
    inter = F.gelu(layer.intermediate.dense(a))
    out = layer.output
    o = _ln(out.dense(inter) + a, out.LayerNorm)
    expected = _ln(out.bottleneck.dense(o) + x, out.bottleneck.LayerNorm)
    pooled = torch.tanh(model.pooler.dense(expected[:, 0]))

    with torch.no_grad():
        got = model(ids, mask, types, output_attentions=True)
        torch.testing.assert_close(got.last_hidden_state, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got.pooler_output, pooled, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got.attentions[0], scores.softmax(-1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("preset", ["mobilebert", "mobilebert-tiny", "ib-bert-large", "bert-base"])
def test_sdpa_path_equals_explicit_attention(preset):
    """The fast path (scaled_dot_product_attention) and the path that returns maps give the same output."""
    model = MobileBertModel(tiny_config(preset)).eval()
    ids = torch.randint(0, 1000, (2, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        fast = model(ids, mask).last_hidden_state
        slow = model(ids, mask, output_attentions=True).last_hidden_state
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def _real_token_outputs(model: MobileBertModel, ids: list[int], pad_to: int) -> torch.Tensor:
    x = torch.zeros(1, pad_to, dtype=torch.long)
    x[0, : len(ids)] = torch.tensor(ids)
    mask = torch.zeros_like(x)
    mask[0, : len(ids)] = 1
    with torch.no_grad():
        return model(x, mask).last_hidden_state[0, : len(ids)]


def test_padding_invariant_outputs_do_not_depend_on_padding():
    model = MobileBertModel(tiny_config(padding_invariant=True)).eval()
    with torch.no_grad():  # a non-zero [PAD] row, as in the released checkpoint
        model.embeddings.word_embeddings.weight[0].normal_()
    ids = [101, 7, 99, 512, 42, 102]
    outs = [_real_token_outputs(model, ids, n) for n in (16, 64, 128)]
    unpadded = _real_token_outputs(model, ids, len(ids))
    scale = unpadded.abs().max()
    for o in outs:
        assert ((o - unpadded).abs().max() / scale).item() <= 1e-5


def test_reference_mode_reproduces_the_trigram_padding_defect():
    """padding_invariant=False: the last real token's trigram reads the [PAD] row, as in the reference."""
    model = MobileBertModel(tiny_config(padding_invariant=False)).eval()
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[0].normal_()
    ids = [101, 7, 99, 512, 42, 102]
    a, b = _real_token_outputs(model, ids, 16), _real_token_outputs(model, ids, len(ids))
    # The last real token reads the pad row, and attention spreads that to every token.
    assert ((a - b).abs().max() / b.abs().max()).item() > 1e-3


def test_hidden_states_and_attention_counts():
    cfg = tiny_config(num_hidden_layers=3)
    out = MobileBertModel(cfg)(torch.randint(0, 1000, (1, 5)), output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 4 and len(out.attentions) == 3
    assert out.attentions[0].shape == (1, 4, 5, 5)
    assert out.attention_scores is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"input_ids": torch.tensor([[1, 2, 1000]])}, "outside the vocabulary"),
    ({"input_ids": torch.tensor([[1, -1]])}, "outside the vocabulary"),
    ({"input_ids": torch.ones(1, 129, dtype=torch.long)}, "exceeds max_position_embeddings"),
    ({"input_ids": torch.ones(2, 4, dtype=torch.long), "attention_mask": torch.ones(2, 5)}, "attention_mask has shape"),
    ({"input_ids": torch.ones(2, 4, dtype=torch.long), "token_type_ids": torch.full((2, 4), 2)}, "token_type_ids"),
    ({"input_ids": torch.ones(4, dtype=torch.long)}, "must be (batch, seq)"),
])
def test_bad_inputs_raise_clear_errors(kwargs, message):
    model = MobileBertModel(tiny_config())
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        model(**kwargs)


def test_no_norm_and_activation_choices_are_built_once():
    m = MobileBertModel(tiny_config("mobilebert-no-opt", hidden_act="relu6"))
    layer = m.encoder.layer[0]
    assert isinstance(layer.attention.output.LayerNorm, torch.nn.LayerNorm)
    assert isinstance(layer.intermediate.act, torch.nn.ReLU6)


def test_padding_invariance_property():
    """Any sentence, any amount of right padding: real-token outputs unchanged (hypothesis-driven)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    model = MobileBertModel(tiny_config(padding_invariant=True)).eval()
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[0].normal_()

    @settings(max_examples=25, deadline=None)
    @given(ids=st.lists(st.integers(1, 999), min_size=1, max_size=20), pad=st.integers(1, 40))
    def check(ids: list[int], pad: int) -> None:
        a = _real_token_outputs(model, ids, len(ids) + pad)
        b = _real_token_outputs(model, ids, len(ids))
        assert ((a - b).abs().max() / b.abs().max()).item() <= 1e-5

    check()
