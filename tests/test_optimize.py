"""The optimized inference module reproduces eager outputs for every preset, head, shape and padding."""

from __future__ import annotations

import pytest
import torch
from conftest import inputs, perturbed, rel_max, small_config

from mobilebert.deploy.optimize import FastMobileBert, optimize_for_inference
from mobilebert.modeling import (
    MobileBertForMaskedLM,
    MobileBertForPreTraining,
    MobileBertForQuestionAnswering,
    MobileBertForSequenceClassification,
    MobileBertForTokenClassification,
    MobileBertModel,
)

FP32_TOL = 1e-4  # max |fast - eager| / max |eager|
BF16_TOL = 3e-2  # ||fast - eager|| / ||eager|| (bf16 keeps 8 bits of mantissa)
PRESETS = ["mobilebert", "mobilebert-tiny", "mobilebert-no-opt", "ib-bert-large", "bert-base"]
HEADS = [MobileBertModel, MobileBertForSequenceClassification, MobileBertForQuestionAnswering,
         MobileBertForMaskedLM, MobileBertForPreTraining, MobileBertForTokenClassification]
# Every head on the student; the encoder and one per-token head on the other presets (keeps the suite fast).
CASES = [("mobilebert", h) for h in HEADS] + [(p, h) for p in PRESETS[1:] for h in (HEADS[0], HEADS[2])]


@pytest.mark.parametrize(("preset", "head"), CASES, ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_fp32_matches_eager(preset, head):
    model = perturbed(head(small_config(preset)))
    fast = optimize_for_inference(model)
    assert isinstance(fast, FastMobileBert)
    for B, T, pad in ((1, 7, False), (3, 20, True)):
        x = inputs(model.config, B, T, pad)
        with torch.no_grad():
            ref = model(**x, output_hidden_states=True)
        got = fast(**x, output_hidden_states=True)
        for name in fast.output_names():
            assert got[name].shape == ref[name].shape
            assert rel_max(ref[name], got[name]) <= FP32_TOL, (name, B, T, pad)
        for r, g in zip(ref.hidden_states, got.hidden_states, strict=True):
            assert rel_max(r, g) <= FP32_TOL


@pytest.mark.parametrize("preset", PRESETS)
def test_bf16_error_is_small(preset):
    model = perturbed(MobileBertForSequenceClassification(small_config(preset)))
    fast = optimize_for_inference(model.mobilebert, dtype=torch.bfloat16)
    assert fast.blocks[0].Wx_t.dtype == torch.bfloat16
    for pad in (False, True):
        x = inputs(model.config, 3, 24, pad)
        with torch.no_grad():
            ref = model.mobilebert(**x).last_hidden_state
        got = fast(**x).last_hidden_state
        assert got.dtype == torch.float32
        assert float((ref - got).norm() / ref.norm()) <= BF16_TOL


def test_student_blocks_are_folded_and_layernorm_blocks_are_not():
    fast = optimize_for_inference(MobileBertModel(small_config("mobilebert")))
    assert type(fast.blocks[0]).__name__ == "FoldedBlock"
    assert not any("LayerNorm" in n for n, _ in fast.named_buffers())
    # One x-GEMM yields residual | Q | K | V (4 x 128 wide) for the student.
    assert fast.blocks[0].Wx_t.shape == (512, 4 * 128)
    fast_noopt = optimize_for_inference(MobileBertModel(small_config("mobilebert-no-opt")))
    assert type(fast_noopt.blocks[0]).__name__ == "FusedBlock"


def test_trigram_tables_match_matmul():
    model = perturbed(MobileBertModel(small_config("mobilebert")))
    x = inputs(model.config, 2, 16, True)
    a = optimize_for_inference(model)(**x).last_hidden_state
    b = optimize_for_inference(model, trigram_tables=True)(**x).last_hidden_state
    assert rel_max(a, b) <= FP32_TOL


@pytest.mark.parametrize("invariant", [True, False])
def test_padding_semantics_follow_config(invariant):
    model = perturbed(MobileBertModel(small_config("mobilebert", padding_invariant=invariant)))
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[0] = 1.0  # a non-zero [PAD] row, like the released checkpoint
    fast = optimize_for_inference(model)
    ids = torch.randint(1, 1000, (1, 10))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 10, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long)], 1)
    alone = fast(ids).last_hidden_state
    with_pad = fast(padded, mask).last_hidden_state[:, :10]
    assert (rel_max(alone, with_pad) <= FP32_TOL) == invariant


def test_unsupported_requests_fail_clearly():
    fast = optimize_for_inference(MobileBertModel(small_config("mobilebert")))
    ids = torch.randint(1, 1000, (1, 5))
    with pytest.raises(ValueError, match="output_attentions"):
        fast(ids, output_attentions=True)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        fast(torch.ones(1, 200, dtype=torch.long))
    with pytest.raises(TypeError, match="MobileBERT model"):
        optimize_for_inference(torch.nn.Linear(2, 2))
