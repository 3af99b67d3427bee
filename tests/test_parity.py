"""Numerical parity with transformers (the oracle) in both directions, on the same random weights."""

from __future__ import annotations

import pytest
import torch

from mobilebert import (
    MobileBertConfig,
    MobileBertForPreTraining,
    MobileBertForQuestionAnswering,
    MobileBertForSequenceClassification,
    MobileBertForTokenClassification,
    MobileBertModel,
)
from mobilebert.checkpoint import read_state_dict

transformers = pytest.importorskip("transformers")

PRESETS = ["mobilebert", "mobilebert-tiny", "mobilebert-no-opt", "bert-base"]
TOL = 1e-5


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Max abs difference relative to the largest magnitude of the reference output."""
    return ((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def hf_config(preset: str, **kw):
    """A transformers config for a shrunk preset (2 layers, small vocab; widths unchanged)."""
    ours = MobileBertConfig.from_preset(preset, num_hidden_layers=2, vocab_size=300, classifier_activation=True,
                                        **kw)
    d = {k: v for k, v in ours.to_dict().items()
         if k not in ("architectures", "model_type", "padding_invariant", "legacy_norm_eps")}
    cls = transformers.BertConfig if ours.model_type == "bert" else transformers.MobileBertConfig
    cfg = cls(**d)
    cfg._attn_implementation = "eager"  # attention probabilities are compared too
    return cfg


def hf_class(preset: str, head: str):
    prefix = "Bert" if preset == "bert-base" else "MobileBert"
    return getattr(transformers, prefix + head)


def perturb(model: torch.nn.Module) -> None:
    """Random init leaves norms at 1/0 and biases at 0; move them so a mapping mistake cannot hide."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


def batch(vocab: int = 300):
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, vocab, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # right padding on the second row
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    return ids, mask, types


@pytest.fixture(params=PRESETS)
def preset(request) -> str:
    return request.param


def hf_to_ours(preset, head, our_cls, tmp_path, **cfg_kw):
    torch.manual_seed(0)
    ref = hf_class(preset, head)(hf_config(preset, **cfg_kw)).eval()
    perturb(ref)
    ref.save_pretrained(tmp_path / "hf")
    ours = our_cls.from_pretrained(tmp_path / "hf")
    assert ours.loading_info == {"missing_keys": [], "unexpected_keys": []}
    return ref, ours


def test_pretraining_parity_hidden_states_attentions_mlm_nsp(preset, tmp_path):
    ref, ours = hf_to_ours(preset, "ForPreTraining", MobileBertForPreTraining, tmp_path)
    assert ours.config.padding_invariant is False  # HF checkpoints reproduce the reference exactly
    ids, mask, types = batch()
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True,
                output_attentions=True)
        o = ours(ids, mask, types, output_hidden_states=True, output_attentions=True, output_attention_scores=True)
    assert len(o.hidden_states) == len(r.hidden_states) == 3
    for a, b in zip(o.hidden_states, r.hidden_states, strict=True):
        assert rel_err(a, b) < TOL
    assert len(o.attentions) == 2
    for a, b in zip(o.attentions, r.attentions, strict=True):
        assert rel_err(a, b) < TOL
    assert rel_err(o.prediction_logits, r.prediction_logits) < TOL
    assert rel_err(o.seq_relationship_logits, r.seq_relationship_logits) < TOL
    # Pre-softmax scores come from the same pass and give back the probabilities.
    for s, p in zip(o.attention_scores, o.attentions, strict=True):
        torch.testing.assert_close(s.softmax(-1), p)


@pytest.mark.parametrize("num_labels", [3, 1])
def test_sequence_classification_parity(preset, num_labels, tmp_path):
    ref, ours = hf_to_ours(preset, "ForSequenceClassification", MobileBertForSequenceClassification, tmp_path,
                           num_labels=num_labels)
    ids, mask, types = batch()
    labels = torch.tensor([0.5, 2.0]) if num_labels == 1 else torch.tensor([0, 2])
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels)
        o = ours(ids, mask, types, labels=labels)
    assert o.logits.shape == (2, num_labels)
    assert rel_err(o.logits, r.logits) < TOL
    assert abs(o.loss.item() - r.loss.item()) <= TOL * max(1.0, abs(r.loss.item()))


def test_question_answering_parity(preset, tmp_path):
    ref, ours = hf_to_ours(preset, "ForQuestionAnswering", MobileBertForQuestionAnswering, tmp_path)
    ids, mask, types = batch()
    starts, ends = torch.tensor([3, 7]), torch.tensor([5, 30])  # 30 is outside: ignored like transformers
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask, token_type_ids=types, start_positions=starts, end_positions=ends)
        o = ours(ids, mask, types, start_positions=starts, end_positions=ends)
    assert rel_err(o.start_logits, r.start_logits) < TOL
    assert rel_err(o.end_logits, r.end_logits) < TOL
    assert abs(o.loss.item() - r.loss.item()) < 1e-4


def test_ours_to_transformers(preset, tmp_path):
    """Reverse direction: save here, load in transformers with no missing or unexpected keys, same outputs."""
    cfg = MobileBertConfig.from_preset(preset, num_hidden_layers=2, vocab_size=300, padding_invariant=False,
                                       legacy_norm_eps=preset != "bert-base")
    torch.manual_seed(0)
    ours = MobileBertForPreTraining(cfg).eval()
    perturb(ours)
    ours.save_pretrained(tmp_path / "ours")
    ref, info = hf_class(preset, "ForPreTraining").from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids, mask, types = batch()
    with torch.no_grad():
        r = ref.eval()(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        o = ours(ids, mask, types, output_hidden_states=True)
    for a, b in zip(o.hidden_states, r.hidden_states, strict=True):
        assert rel_err(a, b) < TOL
    assert rel_err(o.prediction_logits, r.prediction_logits) < TOL
    assert rel_err(o.seq_relationship_logits, r.seq_relationship_logits) < TOL


def test_base_model_loads_from_headed_checkpoint_and_back(tmp_path):
    """A pre-training checkpoint loads into the bare encoder (prefix stripped; heads reported unused)."""
    ref, _ = hf_to_ours("mobilebert", "ForPreTraining", MobileBertForPreTraining, tmp_path)
    enc = MobileBertModel.from_pretrained(tmp_path / "hf")
    assert any(k.startswith("cls.") for k in enc.loading_info["unexpected_keys"])
    ids, mask, types = batch()
    with torch.no_grad():
        r = ref.mobilebert(input_ids=ids, attention_mask=mask, token_type_ids=types)
        o = enc(ids, mask, types)
    assert rel_err(o.last_hidden_state, r.last_hidden_state) < TOL
    enc.save_pretrained(tmp_path / "enc")
    assert not any(k.startswith("mobilebert.") for k in read_state_dict(tmp_path / "enc"))
    again = MobileBertForSequenceClassification.from_pretrained(tmp_path / "enc", num_labels=2)
    assert again.loading_info["missing_keys"] == ["classifier.bias", "classifier.weight"]


def test_pytorch_bin_checkpoint_loads(tmp_path):
    """A legacy pytorch_model.bin (read with weights_only=True) gives the same numbers as safetensors."""
    ref = transformers.MobileBertModel(hf_config("mobilebert")).eval()
    ref.save_pretrained(tmp_path / "bin")
    (tmp_path / "bin" / "model.safetensors").unlink()
    torch.save(ref.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    ours = MobileBertModel.from_pretrained(tmp_path / "bin")
    ids, mask, types = batch()
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        assert rel_err(ours(ids, mask, types).last_hidden_state, r) < TOL


@pytest.mark.parametrize("num_labels", [5, 1])
def test_token_classification_parity(preset, num_labels, tmp_path):
    """Transformers' checkpoint -> ours: same per-token logits and loss, -100 labels ignored in both."""
    ref, ours = hf_to_ours(preset, "ForTokenClassification", MobileBertForTokenClassification, tmp_path,
                           num_labels=num_labels)
    ids, mask, types = batch()
    labels = torch.randint(0, num_labels, ids.shape, generator=torch.Generator().manual_seed(3))
    labels[:, 0] = -100  # [CLS]
    labels[0, 3:5] = -100  # word-piece continuations
    labels[1, 8:] = -100  # padding
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels)
        o = ours(ids, mask, types, labels=labels)
    assert o.logits.shape == (2, 12, num_labels)
    assert rel_err(o.logits, r.logits) < TOL
    assert abs(o.loss.item() - r.loss.item()) <= TOL * max(1.0, abs(r.loss.item()))
    # The loss is the mean over the scored positions only.
    kept = labels != -100
    assert abs(o.loss.item() - torch.nn.functional.cross_entropy(o.logits[kept], labels[kept]).item()) < 1e-6


def test_token_classification_ours_to_transformers(preset, tmp_path):
    """Ours -> transformers: the saved folder loads as (Mobile)BertForTokenClassification with no missing or
    unexpected keys, the label names travel, and the logits agree."""
    labels = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
    cfg = MobileBertConfig.from_preset(preset, num_hidden_layers=2, vocab_size=300, padding_invariant=False,
                                       legacy_norm_eps=preset != "bert-base", num_labels=5, id2label=labels)
    torch.manual_seed(0)
    ours = MobileBertForTokenClassification(cfg).eval()
    perturb(ours)
    ours.save_pretrained(tmp_path / "ours")
    ref, info = hf_class(preset, "ForTokenClassification").from_pretrained(tmp_path / "ours",
                                                                           output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert ref.config.architectures == [hf_class(preset, "ForTokenClassification").__name__]
    assert ref.config.id2label == labels and ref.config.label2id == {v: k for k, v in labels.items()}
    ids, mask, types = batch()
    with torch.no_grad():
        r = ref.eval()(input_ids=ids, attention_mask=mask, token_type_ids=types)
        o = ours(ids, mask, types)
    assert rel_err(o.logits, r.logits) < TOL
    again = MobileBertForTokenClassification.from_pretrained(tmp_path / "ours")
    assert again.loading_info == {"missing_keys": [], "unexpected_keys": []}
    assert again.config.id2label == labels
    with torch.no_grad():
        torch.testing.assert_close(again(ids, mask, types).logits, o.logits)


def test_token_head_added_to_an_encoder_checkpoint(tmp_path):
    """A bare encoder (or a sequence classifier) loads into the token head: only the classifier is new."""
    ref, _ = hf_to_ours("mobilebert", "ForPreTraining", MobileBertForPreTraining, tmp_path)
    tok = MobileBertForTokenClassification.from_pretrained(tmp_path / "hf", num_labels=3)
    assert tok.loading_info["missing_keys"] == ["classifier.bias", "classifier.weight"]
    ids, mask, types = batch()
    with torch.no_grad():
        r = ref.mobilebert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        o = tok.mobilebert(ids, mask, types).last_hidden_state
    assert rel_err(o, r) < TOL
