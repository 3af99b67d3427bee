"""GLUE readers, metrics (hand-computed values), bad input and submission files."""

from __future__ import annotations

import logging
import math
import sys
import types

import pytest

from mobilebert.data.glue import (
    SAMPLE_DIR,
    TASKS,
    compute_metrics,
    get_task,
    read_glue,
    read_glue_datasets,
    write_submission,
)


def write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------- metrics
def test_matthews_hand_computed():
    # TP=2 TN=2 FP=1 FN=1: (2*2 - 1*1) / sqrt(3*3*3*3) = 1/3
    m = compute_metrics("cola", [1, 1, 0, 0, 0, 1], [1, 1, 1, 0, 0, 0])
    assert m["mcc"] == pytest.approx(1 / 3)
    assert m["score"] == pytest.approx(1 / 3)


def test_f1_and_accuracy_hand_computed():
    # TP=2 FP=1 FN=1 -> P=R=F1=2/3; 3 of 5 right
    m = compute_metrics("mrpc", [1, 1, 0, 1, 0], [1, 1, 1, 0, 0])
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["score"] == pytest.approx((2 / 3 + 0.6) / 2)


def test_pearson_spearman_hand_computed():
    # deviations (-1,0,1) and (-4/3,-1/3,5/3): cov 3, var 2 and 14/3 -> r = 3 / sqrt(28/3); ranks agree
    m = compute_metrics("stsb", [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert m["pearson"] == pytest.approx(3 / math.sqrt(28 / 3))
    assert m["spearmanr"] == pytest.approx(1.0)
    # rank differences (1,1,1,1): rho = 1 - 6*4 / (4*15) = 0.6
    m = compute_metrics("stsb", [1, 2, 3, 4], [2, 1, 4, 3])
    assert m["spearmanr"] == pytest.approx(0.6)


def test_accuracy_and_constant_predictions():
    assert compute_metrics("rte", [0, 1, 1, 1], [0, 1, 0, 1])["accuracy"] == pytest.approx(0.75)
    assert compute_metrics("stsb", [2.0, 2.0, 2.0], [1.0, 2.0, 3.0])["pearson"] == 0.0
    with pytest.raises(ValueError, match="equal-length"):
        compute_metrics("sst2", [0, 1], [0])


def test_task_table():
    assert get_task("SST-2") is TASKS["sst2"] and get_task("sts_b").is_regression
    assert get_task("mnli").dev_splits == ["dev_matched", "dev_mismatched"]
    assert get_task("mnli").num_labels == 3 and get_task("wnli").num_labels == 2
    with pytest.raises(ValueError, match="unknown GLUE task"):
        get_task("squad")


# ----------------------------------------------------------------------------- readers
def test_cola_without_header_and_quotes_kept(tmp_path):
    write(tmp_path / "CoLA" / "train.tsv", 'gj04\t1\t\tHe said "hi.\nclc95\t0\t*\tthe the ."\n')
    write(tmp_path / "CoLA" / "test.tsv", "index\tsentence\n0\tA test.\n1\tAnother.\n")
    ex = read_glue("cola", tmp_path, "train")
    assert [(e.text_a, e.label) for e in ex] == [('He said "hi.', 1), ('the the ."', 0)]
    test = read_glue("cola", tmp_path / "CoLA", "test")  # the task folder itself works too
    assert [e.text_a for e in test] == ["A test.", "Another."] and test[0].label is None


def test_mrpc_bom_header_and_stsb_scores(tmp_path):
    write(tmp_path / "MRPC" / "dev.tsv", "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA a\tB b\n")
    assert read_glue("mrpc", tmp_path, "dev")[0].text_b == "B b"
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    write(tmp_path / "STS-B" / "dev.tsv", head + "0\tg\tf\ty\t0\tn\tn\tA\tB\t3.800\n")
    assert read_glue("stsb", tmp_path, "dev")[0].label == pytest.approx(3.8)


def test_bad_input_is_reported(tmp_path, caplog):
    sst = tmp_path / "SST-2"
    write(sst / "dev.tsv", "sentence\tlabel\ngood .\t1\n\nbad .\t2\n")
    with pytest.raises(ValueError, match=r"dev.tsv:4: label '2' is not one of 0, 1"):
        read_glue("sst2", tmp_path, "dev")
    with caplog.at_level(logging.WARNING):
        ex = read_glue("sst2", tmp_path, "dev", on_bad_label="skip")
    assert len(ex) == 1
    assert "skipped 1 empty line" in caplog.text and "skipped 1 row(s) whose label" in caplog.text
    write(sst / "train.tsv", "text\tlabel\nx\t1\n")
    with pytest.raises(ValueError, match="missing column.*sentence"):
        read_glue("sst2", tmp_path, "train")
    write(sst / "test.tsv", "index\tsentence\n0\n")
    with pytest.raises(ValueError, match=r"test.tsv:2: 1 field\(s\), expected at least 2"):
        read_glue("sst2", tmp_path, "test")
    write(tmp_path / "STS-B" / "dev.tsv", "sentence1\tsentence2\tscore\nA\tB\thigh\n")
    with pytest.raises(ValueError, match="score 'high' is not a number"):
        read_glue("stsb", tmp_path, "dev")
    with pytest.raises(FileNotFoundError, match="no rte dev file"):
        read_glue("rte", tmp_path, "dev")


def test_datasets_library_mapping(monkeypatch):
    """MNLI ids are mapped by name (the library orders them entailment, neutral, contradiction)."""
    class Label:
        names = ["entailment", "neutral", "contradiction"]

    class Fake(list):
        features = {"label": Label()}

    rows = [{"premise": "p", "hypothesis": "h", "label": 2}, {"premise": "q", "hypothesis": "i", "label": -1}]
    fake = types.SimpleNamespace(load_dataset=lambda name, config, split: Fake(rows))
    monkeypatch.setitem(sys.modules, "datasets", fake)
    ex = read_glue_datasets("mnli", "dev_matched")
    assert TASKS["mnli"].labels[ex[0].label] == "contradiction" and ex[1].label is None


def test_submission_files(tmp_path):
    path = write_submission("mnli", "test_matched", [0, 2, 1], tmp_path)
    assert path.name == "MNLI-m.tsv"
    assert path.read_text().splitlines() == ["index\tprediction", "0\tcontradiction", "1\tneutral", "2\tentailment"]
    path = write_submission("stsb", "test", [5.7, -0.2, 2.25], tmp_path)
    assert path.read_text().splitlines()[1:] == ["0\t5.000", "1\t0.000", "2\t2.250"]
    assert write_submission("cola", "test", [1], tmp_path).read_text() == "index\tprediction\n0\t1\n"


# ----------------------------------------------------------------------------- the real files
PUBLISHED = {("cola", "train"): 8551, ("cola", "dev"): 1043, ("cola", "test"): 1063, ("sst2", "train"): 67349,
             ("sst2", "dev"): 872, ("sst2", "test"): 1821, ("mrpc", "train"): 3668, ("mrpc", "dev"): 408,
             ("mrpc", "test"): 1725, ("stsb", "train"): 5749, ("stsb", "dev"): 1500, ("stsb", "test"): 1379,
             ("qnli", "dev"): 5463, ("qnli", "test"): 5463, ("rte", "train"): 2490, ("rte", "dev"): 277,
             ("rte", "test"): 3000, ("wnli", "train"): 635, ("wnli", "dev"): 71, ("wnli", "test"): 146}


@pytest.mark.parametrize(("task", "split"), sorted(PUBLISHED))
def test_published_row_counts(shared_data, task, split):
    examples = read_glue(task, shared_data / "glue", split)
    assert len(examples) == PUBLISHED[task, split]
    if split != "test":
        assert all(e.label is not None for e in examples)


def test_a_limited_read_logs_no_example_count(caplog):
    """A probe of the file (the pre-flight reads one row) must not print "train.tsv: 1 sst2 examples"."""
    with caplog.at_level(logging.INFO, logger="mobilebert.data.glue"):
        read_glue("sst2", SAMPLE_DIR, "train", limit=1)
    assert not [r for r in caplog.records if "sst2 examples" in r.getMessage()]
    with caplog.at_level(logging.INFO, logger="mobilebert.data.glue"):
        read_glue("sst2", SAMPLE_DIR, "dev")
    assert [r for r in caplog.records if "sst2 examples" in r.getMessage()]
