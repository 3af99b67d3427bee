"""Distillation losses on small hand-computed tensors: values, zero at equality, gradients, padding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

from mobilebert.distill.losses import (
    MappingError,
    TransferLoss,
    TransferMap,
    attention_transfer_loss,
    default_transfer_weights,
    feature_map_loss,
    mean_variance_loss,
    pretraining_distillation_loss,
)
from mobilebert.train.pretrain import nsp_loss


def test_feature_map_loss_by_hand():
    # Rows normalise to +-1 patterns: s -> [-1, 1], t -> [1, -1]; squared diffs 4 and 4, mean over H=2 -> 4.
    s = torch.tensor([[[0.0, 2.0]]])
    t = torch.tensor([[[5.0, 1.0]]])
    assert feature_map_loss(s, t).item() == pytest.approx(4.0, rel=1e-5)
    # Scale and shift invariance: LN removes both.
    assert feature_map_loss(s * 7 + 3, s).item() == pytest.approx(0.0, abs=1e-8)


def test_mean_variance_by_hand():
    s = torch.tensor([[[1.0, 3.0]]])  # mean 2, var 1
    t = torch.tensor([[[0.0, 8.0]]])  # mean 4, var 16
    m, v = mean_variance_loss(s, t)
    assert m.item() == pytest.approx(4.0)
    assert v.item() == pytest.approx(15.0)


def test_attention_loss_by_hand():
    # One head, one real query over two keys: p_T = softmax([0, ln 3]) = [1/4, 3/4], p_S = [1/2, 1/2].
    t = torch.tensor([0.0, math.log(3.0)]).view(1, 1, 1, 2)
    s = torch.zeros(1, 1, 1, 2)
    want = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert attention_transfer_loss(s, t).item() == pytest.approx(want, rel=1e-6)


def test_attention_matches_autograd_reference():
    torch.manual_seed(0)
    s = torch.randn(2, 3, 5, 5, requires_grad=True)
    t = torch.randn(2, 3, 5, 5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    loss = attention_transfer_loss(s, t, mask)
    loss.backward()
    # Reference: plain autograd, padded keys removed by -inf, averaged over heads and real queries.
    s2 = s.detach().clone().requires_grad_(True)
    km = (mask == 0)[:, None, None, :]
    lp_s = s2.masked_fill(km, -1e30).log_softmax(-1)
    lp_t = t.masked_fill(km, -1e30).log_softmax(-1)
    kl = (lp_t.exp() * (lp_t - lp_s)).sum(-1)  # (B, nh, T)
    ref = (kl * mask[:, None, :]).sum() / (mask.sum() * 3)
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(s.grad, s2.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fn", ["fmt", "mv", "att"])
def test_zero_when_equal_and_padding_excluded(fn):
    torch.manual_seed(1)
    mask = torch.tensor([[1, 1, 1, 0]])
    if fn == "att":
        s = torch.randn(1, 2, 4, 4)
        call = lambda a, b: attention_transfer_loss(a, b, mask)  # noqa: E731
        other = s.clone()
        other[:, :, 3, :] += 5.0  # padded query row differs
        other[:, :, :, 3] += 9.0  # padded key column differs
    else:
        s = torch.randn(1, 4, 6)
        call = (lambda a, b: feature_map_loss(a, b, mask)) if fn == "fmt" else (
            lambda a, b: sum(mean_variance_loss(a, b, mask)))
        other = s.clone()
        other[:, 3] = torch.randn(6) * 10  # the padded position differs
    assert float(call(s, s)) == pytest.approx(0.0, abs=1e-6)
    assert float(call(s, other)) == pytest.approx(0.0, abs=1e-6)
    changed = s.clone()
    changed[:, 0] += torch.randn_like(changed[:, 0])  # a real position differs
    assert float(call(changed, s)) > 1e-4


@pytest.mark.parametrize("fn", ["fmt", "mv", "att", "pd"])
def test_gradient_reaches_student_only(fn):
    torch.manual_seed(2)
    if fn == "att":
        s, t = torch.randn(2, 2, 3, 3, requires_grad=True), torch.randn(2, 2, 3, 3, requires_grad=True)
        loss = attention_transfer_loss(s, t)
    elif fn == "pd":
        s, t = torch.randn(4, 7, requires_grad=True), torch.randn(4, 7, requires_grad=True)
        loss = pretraining_distillation_loss(s, t, torch.tensor([0, 3, 6, 2]))
    else:
        s, t = torch.randn(2, 3, 8, requires_grad=True), torch.randn(2, 3, 8, requires_grad=True)
        loss = feature_map_loss(s, t) if fn == "fmt" else sum(mean_variance_loss(s, t))
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_pretraining_distillation_by_hand():
    s = torch.tensor([[0.0, 0.0]])  # log p_S = [ln .5, ln .5]
    t = torch.tensor([[0.0, math.log(3.0)]])  # p_T = [.25, .75]
    # target = 0.5 * onehot(0) + 0.5 * p_T = [0.625, 0.375]; CE = -sum target * ln 0.5 = ln 2.
    assert pretraining_distillation_loss(s, t, torch.tensor([0])).item() == pytest.approx(math.log(2.0))
    s = torch.tensor([[1.0, 0.0]])
    target = torch.tensor([0.625, 0.375])
    want = -(target * F.log_softmax(s[0], -1)).sum()
    assert pretraining_distillation_loss(s, t, torch.tensor([0])).item() == pytest.approx(want.item(), rel=1e-6)
    # Temperature 2 softens the teacher: p_T = softmax([0, ln 3 / 2]).
    pt = F.softmax(t[0] / 2, -1)
    want = -((0.5 * torch.tensor([1.0, 0.0]) + 0.5 * pt) * F.log_softmax(s[0], -1)).sum()
    got = pretraining_distillation_loss(s, t, torch.tensor([0]), temperature=2.0)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_pretraining_distillation_minimum_at_teacher():
    # alpha 0: pure soft targets; the gradient vanishes when the student equals the teacher.
    t = torch.randn(3, 11)
    s = t.clone().requires_grad_(True)
    pretraining_distillation_loss(s, t, torch.tensor([1, 2, 3]), alpha=0.0).backward()
    assert s.grad.abs().max() < 1e-6


def test_nsp_and_explicit_denominator():
    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    ref = F.cross_entropy(logits, labels)
    assert nsp_loss(logits, labels).item() == pytest.approx(ref.item())
    # A global denominator (e.g. across two ranks) halves each rank's mean.
    assert nsp_loss(logits, labels, n_sequences=4).item() == pytest.approx(ref.item() / 2)


def test_head_averaged_attention_zero_when_same_average():
    torch.manual_seed(3)
    s = torch.randn(1, 1, 4, 4)
    t = s.expand(1, 4, 4, 4).clone()  # 4 identical heads average to the student's single head
    assert attention_transfer_loss(s, t).item() == pytest.approx(0.0, abs=1e-6)
    assert attention_transfer_loss(s, torch.randn(1, 4, 4, 4)).item() > 1e-3


def test_transfer_map_defaults_and_errors():
    teacher = tiny_config("ib-bert-large", num_hidden_layers=4)
    student = tiny_config("mobilebert", num_hidden_layers=2)
    m = TransferMap.build(teacher, student)
    assert m.layer_map == [1, 3] and not m.project and not m.head_average
    assert "uniform layer map" in m.notes[0]
    m = TransferMap.build(teacher, student.replace(hidden_size=256, num_attention_heads=2), layer_map=[0, 2])
    assert m.project and m.head_average and len(m.notes) == 3
    with pytest.raises(MappingError, match="explicit layer_map"):
        TransferMap.build(student, teacher)
    with pytest.raises(MappingError, match="must list 2"):
        TransferMap.build(teacher, student, layer_map=[0, 9])
    with pytest.raises(MappingError, match="vocabulary"):
        TransferMap.build(teacher, student.replace(vocab_size=500))


def test_projection_in_transfer_loss():
    tmap = TransferMap([0], project=True, head_average=False)
    tl = TransferLoss(tmap, 8, 16)
    s, t = torch.randn(2, 3, 8), torch.randn(2, 3, 16)
    terms = tl.layer_terms(0, s, t, None, None, None, None, {"fmt", "mean", "var", "att"})
    assert set(terms) == {"fmt", "mean", "var"}
    sum(terms.values()).backward()
    assert tl.proj[0].weight.grad is not None


def test_default_weights_divided_by_layers():
    assert default_transfer_weights(4) == {"att": 0.25, "fmt": 25.0, "mean": 1250.0, "var": 1.25}
