"""MobileBertConfig: presets, Hugging Face and TF1 JSON, and rejection of inconsistent values."""

from __future__ import annotations

import json

import pytest

from mobilebert import ConfigError, MobileBertConfig
from mobilebert.config import PRESETS


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip_through_config_json(name, tmp_path):
    cfg = MobileBertConfig.from_preset(name)
    cfg.to_json(tmp_path / "config.json")
    again = MobileBertConfig.from_json(tmp_path)
    assert again == cfg


def test_preset_values_follow_spec():
    tiny = MobileBertConfig.from_preset("mobilebert-tiny")
    assert (tiny.num_feedforward_networks, tiny.use_bottleneck_attention, tiny.key_query_shared_bottleneck) == (2, True, False)
    teacher = MobileBertConfig.from_preset("ib-bert-large")
    assert (teacher.intra_bottleneck_size, teacher.intermediate_size, teacher.qk_input_size) == (1024, 4096, 512)
    assert teacher.head_dim == 256 and teacher.classifier_activation
    assert MobileBertConfig.from_preset("mobilebert").padding_invariant is True


def test_official_tf_configs(shared_data):
    d = shared_data / "mobilebert" / "config"
    student = MobileBertConfig.from_json(d / "uncased_L-24_H-128_B-512_A-4_F-4_OPT.json")
    assert student == MobileBertConfig.from_preset("mobilebert")
    tiny = MobileBertConfig.from_json(d / "uncased_L-24_H-128_B-512_A-4_F-2_tiny_OPT.json")
    assert tiny == MobileBertConfig.from_preset("mobilebert-tiny")
    teacher = MobileBertConfig.from_json(d / "uncased_L-24_H-1024_B-512_A-4.json")
    # TF defaults for absent keys: layer_norm, no shared bottleneck, one FFN, tanh pooler.
    assert teacher == MobileBertConfig.from_preset("ib-bert-large")


def test_hf_mobilebert_config_defaults_and_ignored_keys(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "mobilebert", "architectures": ["MobileBertForPreTraining"], "transformers_version": "4.0",
        "torch_dtype": "float32", "classifier_activation": False, "layer_norm_type": "no_norm",
        "num_hidden_layers": 24, "some_future_key": 3}))
    cfg = MobileBertConfig.from_json(tmp_path)
    assert cfg.normalization_type == "no_norm" and cfg.key_query_shared_bottleneck and cfg.num_feedforward_networks == 4
    assert cfg.padding_invariant is False and cfg.legacy_norm_eps is True  # exact reference behaviour
    assert cfg.extra == {"some_future_key": 3}
    assert cfg.to_dict()["some_future_key"] == 3


def test_hf_bert_config_maps_to_no_bottleneck(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "bert", "hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536,
        "num_hidden_layers": 6, "position_embedding_type": "absolute", "use_cache": True}))
    cfg = MobileBertConfig.from_json(tmp_path)
    assert cfg.model_type == "bert" and not cfg.use_bottleneck and not cfg.trigram_input
    assert cfg.embedding_size == cfg.true_hidden_size == 384 and cfg.normalization_type == "layer_norm"
    assert "use_bottleneck" not in cfg.to_dict()  # a plain BERT config.json


@pytest.mark.parametrize(("overrides", "message"), [
    ({"num_attention_heads": 5}, "not divisible"),
    ({"normalization_type": "batch_norm"}, "normalization_type"),
    ({"hidden_act": "swish"}, "hidden_act"),
    ({"use_bottleneck_attention": True}, "exclusive"),
    ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
    ({"num_hidden_layers": 0}, "num_hidden_layers"),
    ({"embedding_size": 1024}, "exceeds hidden_size"),
])
def test_inconsistent_values_are_rejected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        MobileBertConfig.from_preset("mobilebert", **overrides)


def test_unknown_field_and_preset_rejected():
    with pytest.raises(ConfigError, match="unknown MobileBertConfig field"):
        MobileBertConfig.from_preset("mobilebert", hiden_size=3)
    with pytest.raises(ConfigError, match="unknown preset"):
        MobileBertConfig.from_preset("mobilebert-huge")


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ('{"model_type": "gpt2"}', "not supported"),
    ('{"model_type": "bert", "position_embedding_type": "relative_key"}', "absolute only"),
    ('{"model_type": "mobilebert", "hidden_size": "512"}', "hidden_size"),
])
def test_bad_config_files_name_the_file(tmp_path, content, message):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ConfigError, match=message) as err:
        MobileBertConfig.from_json(tmp_path / "config.json")
    assert str(tmp_path) in str(err.value)
