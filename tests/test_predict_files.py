"""`predict` on the user's files: tables read by their columns (never a header as a sentence), one row out per row
in, in every output format, streamed in constant memory and written atomically; every head (classification,
multi-label, regression, token entities with character offsets); readable label names from the checkpoint;
notes for empty inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY, tiny_config

from mobilebert.checkpoint import inspect
from mobilebert.cli import main
from mobilebert.data.tagging import split_words
from mobilebert.finetune import predict as pred
from mobilebert.modeling import MobileBertForSequenceClassification, MobileBertForTokenClassification
from mobilebert.recipes.predict import PredictConfig, run

WORDS = ["the", "a", "film", "is", "good", "bad", "boring", "great", "movie", "john", "smith", "lives", "in", "paris",
         ",", ".", "!", "and"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]


def _save(model, path, finetune: dict | None) -> str:
    model.save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    if finetune is not None:
        (path / "finetune.json").write_text(json.dumps(finetune))
    return str(path)


def _classifier(path, labels=("neg", "pos"), finetune=None, bias=None, **config) -> str:
    model = MobileBertForSequenceClassification(tiny_config(vocab_size=len(VOCAB), num_labels=len(labels),
                                                            id2label=dict(enumerate(labels)), **TINY, **config))
    if bias is not None:
        with torch.no_grad():
            model.classifier.bias.copy_(torch.tensor(bias))
    return _save(model, path, {"task": "text-classification", "max_seq_length": 32,
                               "columns": {"text": "review", "text_pair": None, "label": "label"}}
                 if finetune is None else finetune)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> str:
    return _classifier(tmp_path_factory.mktemp("cls") / "m")


def _csv(path, n: int = 3) -> None:
    rows = ["1,the film is good,pos", '2,"boring , bad movie",neg', "3,great great film !,pos"]
    path.write_text("id,review,label\n" + "\n".join((rows * n)[:n]) + "\n")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_each_row_comes_out_with_its_prediction(classifier, tmp_path, suffix):
    """Every input column kept, prediction + score added, the same values as predicting the texts directly."""
    _csv(tmp_path / "in.csv")
    out = tmp_path / f"out{suffix}"
    assert main(["predict", "--model", classifier, "--input", str(tmp_path / "in.csv"), "--output", str(out)]) == 0
    import pandas as pd

    got = (pd.read_parquet(out) if suffix == ".parquet" else pd.read_json(out, lines=True, dtype=False)
           if suffix == ".jsonl" else pd.read_csv(out, sep="\t" if suffix == ".tsv" else ",", dtype=str))
    assert list(got.columns) == ["id", "review", "label", "prediction", "score"]
    texts = ["the film is good", "boring , bad movie", "great great film !"]
    assert list(got["review"]) == texts  # the header was not read as a sentence
    direct = pred.predict(classifier, texts)
    assert list(got["prediction"]) == [r["prediction"] for r in direct]
    assert np.allclose(got["score"].astype(float), [r["score"] for r in direct], atol=1e-6)
    assert set(got["prediction"]) <= {"neg", "pos"}


def test_file_flag_on_a_csv_reads_columns(classifier, tmp_path, capsys):
    _csv(tmp_path / "p.csv")
    assert main(["predict", "--model", classifier, "--file", str(tmp_path / "p.csv")]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if not x.startswith("note:")]
    assert len(lines) == 3 and all(x.split("\t")[0] in ("neg", "pos") for x in lines)
    assert not any("review" in x or ",pos" in x for x in lines)  # neither the header nor the label column


def test_columns_default_to_the_trained_ones_and_flags_override(classifier, tmp_path):
    (tmp_path / "in.csv").write_text("text,review\nignored here,the film is good\n")
    rows = run(PredictConfig(model=classifier, input=str(tmp_path / "in.csv")))
    assert rows[0]["text"] == "the film is good"  # 'review', as trained, beats the detected 'text'
    rows = run(PredictConfig(model=classifier, input=str(tmp_path / "in.csv"), text_column="text"))
    assert rows[0]["text"] == "ignored here"
    with pytest.raises(ValueError, match=r"in\.csv: no text column 'nope'; the file has 'text', 'review'"):
        run(PredictConfig(model=classifier, input=str(tmp_path / "in.csv"), text_column="nope"))


def test_streams_in_constant_memory(classifier, tmp_path, monkeypatch):
    """Rows are read, predicted and written a chunk at a time: never more than one chunk is held."""
    _csv(tmp_path / "big.csv", n=250)
    held = {"read": 0, "written": 0, "most": 0}
    batches = pred.InputFile.batches

    def counting_batches(self, size):
        for b in batches(self, size):
            held["read"] += len(b[self.text])
            held["most"] = max(held["most"], held["read"] - held["written"])
            yield b

    write = pred.RowWriter.write

    def counting_write(self, batch, predictions):
        write(self, batch, predictions)
        held["written"] += len(predictions)

    monkeypatch.setattr(pred.InputFile, "batches", counting_batches)
    monkeypatch.setattr(pred.RowWriter, "write", counting_write)
    predictor = pred.load_predictor(classifier)
    summary = pred.predict_file(predictor, pred.open_input(tmp_path / "big.csv", predictor), tmp_path / "o.jsonl",
                                chunk=16)
    assert summary.rows == held["written"] == 250 and held["most"] <= 16
    assert sum(1 for _ in (tmp_path / "o.jsonl").open()) == 250


def test_a_failure_midway_leaves_no_output(classifier, tmp_path, monkeypatch):
    _csv(tmp_path / "in.csv", n=40)
    predictor = pred.load_predictor(classifier)
    calls = {"n": 0}
    real = pred.Predictor.__call__

    def failing(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return real(self, *a, **k)

    monkeypatch.setattr(pred.Predictor, "__call__", failing)
    with pytest.raises(RuntimeError, match="boom"):
        pred.predict_file(predictor, pred.open_input(tmp_path / "in.csv", predictor), tmp_path / "o.csv", chunk=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_readable_glue_names_in_predict_and_exports(tmp_path, capsys):
    """A GLUE checkpoint whose config says 0/1: predict, labels.txt of the exports and MediaPipe say the same."""
    model = _classifier(tmp_path / "sst2", labels=("0", "1"), finetune={"task": "sst2", "max_seq_length": 32})
    assert inspect(model).label_names == ("negative", "positive")
    assert run(PredictConfig(model=model, texts=["a good film"]))[0]["prediction"] in ("negative", "positive")
    from mobilebert.deploy.mediapipe import label_names
    from mobilebert.deploy.onnx import label_file_names

    assert label_names(model) == label_file_names(model) == ["negative", "positive"]


def test_multi_label_regression_and_chance_notes(tmp_path, capsys):
    ml = _classifier(tmp_path / "ml", labels=("a", "b", "c"), bias=[8.0, -8.0, 8.0],
                     finetune={"task": "text-classification", "multi_label": True, "thresholds": [0.5, 0.5, 0.99999],
                               "columns": {"text": "text", "text_pair": None, "label": "labels"}})
    (row,) = run(PredictConfig(model=ml, texts=["the film"]))
    assert row["prediction"] == ["a"] and len(row["score"]) == 1 and row["score"][0] > 0.99  # c misses its threshold
    (tmp_path / "in.csv").write_text("text\nthe film\n")
    run(PredictConfig(model=ml, input=str(tmp_path / "in.csv"), output=str(tmp_path / "o.parquet")))
    import pandas as pd

    got = pd.read_parquet(tmp_path / "o.parquet")
    assert list(got["prediction"][0]) == ["a"]
    reg = _classifier(tmp_path / "reg", labels=("score",), finetune={"task": "regression"})
    (row,) = run(PredictConfig(model=reg, texts=["good"]))
    assert isinstance(row["prediction"], float) and "score" not in row
    capsys.readouterr()
    run(PredictConfig(model=reg, texts=[""]))
    assert "note: 1 empty input(s) (argument 1)" in capsys.readouterr().out


def test_empty_text_answers_with_a_note(classifier, capsys):
    assert main(["predict", "--model", classifier, ""]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split("\t")[0] in ("neg", "pos") and "note: 1 empty input(s) (argument 1)" in out


@pytest.fixture(scope="module")
def tagger(tmp_path_factory) -> str:
    """A token classifier with BIO tags (its head's bias is set by hand in the tests)."""
    labels = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    model = MobileBertForTokenClassification(tiny_config(vocab_size=len(VOCAB), num_labels=len(labels),
                                                         id2label=dict(enumerate(labels)), **TINY)).eval()
    path = tmp_path_factory.mktemp("tok") / "m"
    return _save(model, path, {"task": "token-classification", "max_seq_length": 32,
                               "columns": {"tokens": "tokens", "tags": "tags"}})


def test_token_classification_entities_point_into_the_text(tagger, tmp_path):
    text = "John Smith lives in Paris, and  the film is good!"
    predictor = pred.load_predictor(tagger)
    assert predictor.kind == "token" and predictor.added_columns == ["entities"]
    # Force every word to B-PER: each word becomes its own entity, with the word's character span.
    with torch.no_grad():
        predictor.model.classifier.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 50.0, 0.0]))
    (row,) = pred.predict_rows(predictor, [text])
    spans = split_words(text)
    assert [(e["start"], e["end"]) for e in row["entities"]] == spans
    assert all(e["type"] == "PER" and e["text"] == text[e["start"]:e["end"]] for e in row["entities"])
    # B-PER then I-PER on every later word: one entity spanning the text's words.
    with torch.no_grad():
        predictor.model.classifier.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 50.0]))
    (row,) = pred.predict_rows(predictor, [text])
    assert [(e["type"], e["start"], e["end"]) for e in row["entities"]] == [("PER", 0, len(text))]
    with pytest.raises(ValueError, match="takes single sentences"):
        pred.predict_rows(predictor, [("a", "b")])


def test_token_classification_file_to_jsonl(tagger, tmp_path):
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": "John lives in Paris."}) + "\n"
                                       + json.dumps({"text": "the film"}) + "\n")
    run(PredictConfig(model=tagger, input=str(tmp_path / "in.jsonl"), output=str(tmp_path / "o.jsonl")))
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["John lives in Paris.", "the film"]
    for r in rows:
        assert all(r["text"][e["start"]:e["end"]] == e["text"] for e in r["entities"])


def test_pairs_model_needs_the_second_column(tmp_path):
    pair = _classifier(tmp_path / "pair", finetune={"task": "text-classification",
                                                    "columns": {"text": "a", "text_pair": "b", "label": "label"}})
    (tmp_path / "in.csv").write_text("a\nthe film\n")
    with pytest.raises(ValueError, match=r"in\.csv: the model reads text pairs; name the second text's column"):
        run(PredictConfig(model=pair, input=str(tmp_path / "in.csv")))
    (tmp_path / "in.csv").write_text("a,b\nthe film,a movie\n")
    assert run(PredictConfig(model=pair, input=str(tmp_path / "in.csv")))[0]["text_pair"] == "a movie"


@pytest.mark.parametrize(("args", "words"), [
    (["--output", "o.csv", "x"], "--output needs --input"),
    (["--input", "IN", "--output", "o.xlsx"], "--output o.xlsx: use a file ending in .csv, .tsv, .jsonl, .parquet"),
    (["--input", "IN", "--file", "IN"], "--input or --file"),
    (["--input", "in.bin"], "--input in.bin: no such file"),
])
def test_bad_predict_settings_one_line(classifier, tmp_path, capsys, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    _csv(tmp_path / "in.csv")
    args = [str(tmp_path / "in.csv") if a == "IN" else a for a in args]
    assert main(["predict", "--model", classifier, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "o.csv").exists()


def test_after_finetune_on_a_csv_predict_uses_its_columns_and_label_names(tiny_ckpt, tmp_path):
    """finetune --task text-classification on a CSV (columns review, sentiment; string labels), then predict the
    validation file: the trained text column is used, the label names are the file's, one row out per row in."""
    from mobilebert.data.glue import SAMPLE_DIR, read_glue

    rows = [(e.text_a, "positive" if e.label else "negative") for e in read_glue("sst2", SAMPLE_DIR, "train", limit=64)]
    for name, part in (("train.csv", rows[:48]), ("dev.csv", rows[48:])):
        (tmp_path / name).write_text("id,review,sentiment\n" + "".join(
            f'{i},"{t.replace(chr(34), chr(39))}",{y}\n' for i, (t, y) in enumerate(part)))
    assert main(["finetune", "--task", "text-classification", "--train", str(tmp_path / "train.csv"),
                 "--validation", str(tmp_path / "dev.csv"), "--model", str(tiny_ckpt), "--out", str(tmp_path / "run"),
                 "--text-column", "review", "--label-column", "sentiment", "--epochs", "1", "--batch-size", "16", "--max-seq-length", "32", "--seeds", "1"]) == 0
    best = tmp_path / "run" / "seed-1" / "best"
    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(best), "--input", str(tmp_path / "dev.csv"), "--output", str(out)]) == 0
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert [g["review"] for g in got] == [t.replace('"', "'") for t, _ in rows[48:]]
    assert {g["prediction"] for g in got} <= {"negative", "positive"}
    assert [g["prediction"] for g in got] == [r["prediction"] for r in pred.predict(best, [g["review"] for g in got])]


def test_after_finetune_on_conll_predict_tags_raw_text(tiny_ckpt, tmp_path):
    """finetune --task token-classification on CoNLL lines, then predict raw sentences of a .txt file: entities
    with types from the training tags and offsets into each line."""
    lines = ["Alice went to Paris in 2019 .", "the film was good .", "Bob met Alice in Rome ."] * 12
    conll = "".join("".join(f"{w} {'B-NUM' if w.isdigit() else 'B-CAP' if w[0].isupper() else 'O'}\n"
                            for w in s.split()) + "\n" for s in lines)
    (tmp_path / "train.conll").write_text(conll)
    (tmp_path / "dev.conll").write_text(conll)
    assert main(["finetune", "--task", "token-classification", "--train", str(tmp_path / "train.conll"),
                 "--validation", str(tmp_path / "dev.conll"), "--model", str(tiny_ckpt), "--out",
                 str(tmp_path / "run"), "--epochs", "1", "--batch-size", "8", "--max-seq-length", "32",
                 "--seeds", "1", "--lr", "1e-3"]) == 0
    best = tmp_path / "run" / "seed-1" / "best"
    (tmp_path / "in.txt").write_text("Alice went to Rome in 2019.\n\nthe film\n")
    out = tmp_path / "tags.csv"
    assert main(["predict", "--model", str(best), "--input", str(tmp_path / "in.txt"), "--output", str(out)]) == 0
    import csv

    got = list(csv.DictReader(out.open()))
    assert [g["text"] for g in got] == ["Alice went to Rome in 2019.", "", "the film"]  # one row per line
    for g in got:
        for e in json.loads(g["entities"]):
            assert e["type"] in ("CAP", "NUM") and g["text"][e["start"]:e["end"]] == e["text"]
