"""Every head through every export: the token-classification head in ONNX (and LiteRT / ExecuTorch in the mobile
venv), export folders that go from text to labels by themselves (vocab + labels.txt), MediaPipe's one-line refusal
of a token classifier, and bench on such a checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY, perturbed, tiny_config

from mobilebert.checkpoint import inspect
from mobilebert.cli import main
from mobilebert.finetune import predict as pred
from mobilebert.modeling import MobileBertForSequenceClassification, MobileBertForTokenClassification
from mobilebert.tokenizer import MobileBertTokenizer

TAGS = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "john", "smith", "lives", "in", "paris", "the", "film", "."]
TEXTS = ["John Smith lives in Paris.", "the film", "Paris"]


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    path = tmp_path_factory.mktemp("tagger")
    model = perturbed(MobileBertForTokenClassification(tiny_config(vocab_size=len(VOCAB), num_labels=len(TAGS),
                                                                   id2label=dict(enumerate(TAGS)), **TINY)))
    with torch.no_grad():  # a head whose argmax varies from word to word, never O: entities to compare
        model.classifier.weight.mul_(40)
        model.classifier.bias[0] = -1e3
    model.save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (path / "finetune.json").write_text(json.dumps({"task": "token-classification", "max_seq_length": 32}))
    return path


def test_inspect_tells_a_token_head_from_a_sequence_head(tagger, tmp_path):
    assert inspect(tagger).head == "token" and inspect(tagger).label_names == TAGS
    MobileBertForSequenceClassification(tiny_config(**TINY)).save_pretrained(tmp_path / "cls")
    assert inspect(tmp_path / "cls").head == "classifier"


def test_onnx_folder_goes_from_text_to_entities_by_itself(tagger, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from mobilebert.deploy.onnx import OnnxModel, export_checkpoint

    report = export_checkpoint(tagger, tmp_path / "onnx")
    files = sorted(p.name for p in (tmp_path / "onnx").iterdir())
    assert files == ["config.json", "export.json", "finetune.json", "labels.txt", "model.onnx", "tokenizer.json",
                     "tokenizer_config.json", "vocab.txt"]
    assert report.head == "token" and report.outputs == ["logits"] and report.labels == list(TAGS)
    assert (tmp_path / "onnx" / "labels.txt").read_text().split() == list(TAGS)
    ours = pred.load_predictor(tagger)
    # Only the export folder: its tokenizer, its labels, ONNX Runtime; the same entities as PyTorch.
    folder = tmp_path / "onnx"
    onnx = pred.Predictor(OnnxModel(folder), MobileBertTokenizer.from_pretrained(folder), "token",
                          tuple((folder / "labels.txt").read_text().split()), 32)
    want, got = pred.predict_rows(ours, TEXTS), pred.predict_rows(onnx, TEXTS)
    assert any(r["entities"] for r in want)

    def spans(rows):
        return [[(e["type"], e["start"], e["end"], e["text"]) for e in r["entities"]] for r in rows]

    def scores(rows):
        return [e["score"] for r in rows for e in r["entities"]]

    assert spans(got) == spans(want) and scores(got) == pytest.approx(scores(want), abs=1e-5)


def test_a_text_longer_than_the_sequence_is_tagged_to_its_end(tagger):
    p = pred.load_predictor(tagger)
    p.max_seq_length = 12  # 10 pieces a window: the text below needs many
    text = " ".join(["Ann Lee visited Paris ."] * 10)
    ents = pred.predict_rows(p, [text])[0]["entities"]
    assert max(e["end"] for e in ents) >= len(text) - 1  # the head never says O: entities up to the last word
    assert all(text[e["start"]:e["end"]] == e["text"] for e in ents)


def test_mediapipe_refuses_a_token_classifier_in_one_line(tagger, tmp_path, capsys):
    assert main(["export", "--format", "mediapipe", str(tagger), str(tmp_path / "t.tflite")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "MediaPipe has no token-classification task" in err
    assert "--format onnx or --format litert" in err and not (tmp_path / "t.tflite").exists()
    from mobilebert.deploy.mediapipe import task_of
    from mobilebert.load import load_model

    with pytest.raises(ValueError, match="no token-classification task"):
        task_of(load_model(tagger))


def test_bench_runs_on_a_token_classifier(tagger, tmp_path):
    assert main(["bench", str(tagger), "--out", str(tmp_path / "b"), "--batches", "1", "--seqs", "16", "--threads",
                 "1", "--repeats", "1", "--backends", "eager", "optimized"]) == 0
    rows = json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]
    assert {r["backend"] for r in rows} == {"eager", "optimized"}


@pytest.mark.mobile
@pytest.mark.parametrize("fmt", ["litert", "executorch"])
def test_phone_files_of_a_token_classifier_carry_vocab_and_labels(tagger, tmp_path, fmt):
    from mobilebert.deploy import mobile

    if fmt == "executorch":
        pytest.importorskip("executorch.runtime")
    else:
        pytest.importorskip("litert_torch")
    suffix = ".tflite" if fmt == "litert" else ".pte"
    export = mobile.export_litert if fmt == "litert" else mobile.export_executorch
    runner = mobile.LiteRTModel if fmt == "litert" else mobile.ExecuTorchModel
    from mobilebert.load import load_model

    model = load_model(tagger)
    path = export(model, tmp_path / f"tags{suffix}", seq_len=16, source=tagger)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"tags{suffix}", "tags.labels.txt",
                                                                 "tags.vocab.txt"])
    assert (tmp_path / "tags.labels.txt").read_text().split() == list(TAGS)
    tok = MobileBertTokenizer.from_pretrained(tagger)
    enc = tok(TEXTS[:1], max_length=16, truncation=True, padding="max_length", return_tensors="pt")
    x = (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    got = runner(path, ["logits"])(*x).logits
    with torch.no_grad():
        ref = model(*x).logits
    assert got.shape == ref.shape == (1, 16, len(TAGS))
    assert float((got - ref).abs().max() / ref.abs().max()) <= 1e-4


def test_openvino_folder_carries_tokenizer_and_labels(tmp_path):
    pytest.importorskip("openvino")
    ckpt = tmp_path / "cls"
    model = MobileBertForSequenceClassification(tiny_config(vocab_size=len(VOCAB), num_labels=2,
                                                            id2label={0: "0", 1: "1"}, **TINY))
    model.save_pretrained(ckpt)
    (ckpt / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (ckpt / "finetune.json").write_text(json.dumps({"task": "sst2", "max_seq_length": 32}))
    assert main(["export", "--format", "openvino", str(ckpt), str(tmp_path / "ov")]) == 0
    names = {p.name for p in (tmp_path / "ov").iterdir()}
    assert {"model.xml", "vocab.txt", "tokenizer.json", "labels.txt", "finetune.json"} <= names
    assert (tmp_path / "ov" / "labels.txt").read_text().split() == ["negative", "positive"]
