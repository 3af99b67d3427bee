"""Scores for the user's tasks (data/metrics.py), checked against hand-computed values; entity scores with
seqeval's default-mode semantics on the cases where schemes disagree."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mobilebert.data import metrics as M


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # undefined precision etc. are scored 0, never warned about
        yield


def test_classification_by_hand():
    out = M.classification_metrics([0, 0, 1, 2], [0, 1, 1, 1], ["a", "b", "c", "d"])
    assert out["accuracy"] == 0.5 and out["micro_f1"] == 0.5
    pc = out["per_class"]
    assert pc["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert pc["b"] == {"precision": pytest.approx(1 / 3), "recall": 1.0, "f1": 0.5, "support": 1}
    assert pc["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert pc["d"]["support"] == 0  # a label with no rows is listed, scored 0
    assert out["macro_f1"] == pytest.approx((2 / 3 + 0.5) / 4)
    assert out["confusion_matrix"] == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert out["labels"] == ["a", "b", "c", "d"]


def test_majority_baseline():
    assert M.majority_baseline([1, 0, 1, 1]) == (1, 0.75)
    with pytest.raises(ValueError):
        M.majority_baseline([])


def test_multilabel_by_hand():
    ref = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    pred = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]])
    out = M.multilabel_metrics(ref, pred, ["x", "y", "z"])
    # tp 3 (x twice, y once), fp 1 (z), fn 2 (z, y): P 3/4, R 3/5
    assert out["micro_f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert out["per_label"]["x"]["f1"] == 1.0 and out["per_label"]["y"]["f1"] == pytest.approx(2 / 3)
    assert out["per_label"]["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert out["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert out["exact_match"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"must be \(N, 2\)"):
        M.multilabel_metrics(ref, pred, ["x", "y"])


def test_thresholds_tuned_per_label():
    ref = np.array([[1, 0, 0], [1, 0, 1], [0, 0, 1], [0, 0, 0]])
    prob = np.array([[0.32, 0.9, 0.6], [0.41, 0.1, 0.7], [0.12, 0.8, 0.62], [0.2, 0.3, 0.1]])
    t = M.tune_thresholds(ref, prob)
    assert t[0] == 0.3  # the only grid value above every negative (0.12, 0.2) and below every positive
    assert t[1] == 0.5  # no positives: kept at 0.5
    assert t[2] == 0.5  # every threshold in (0.1, 0.6] is perfect; the one nearest 0.5 wins
    np.testing.assert_array_equal(M.apply_thresholds(prob, t)[:, 0], ref[:, 0])


# Cases where tagging schemes disagree: an I- after O, a type change inside a run, entities at sentence ends
# and starts (they must not join across sentences), IOB1-style runs in both reference and prediction.
REFS = [["B-PER", "I-PER", "O"], ["B-PER", "I-PER"], ["O", "B-LOC"], ["B-LOC", "O"], ["O", "I-MISC", "I-MISC"]]
PREDS = [["O", "I-PER", "O"], ["B-PER", "I-LOC"], ["O", "B-LOC"], ["I-LOC", "O"], ["O", "I-MISC", "I-MISC"]]


def test_entity_scores_by_hand():
    """5 true entities (PER 2, LOC 2, MISC 1); 6 predicted: PER[1], PER[0] + LOC[1] (type change), LOC, LOC
    (I- at a sentence start opens one), MISC; 3 match exactly (both LOCs and MISC)."""
    out = M.entity_metrics(REFS, PREDS)
    assert (out["precision"], out["recall"], out["support"]) == (0.5, 0.6, 5)
    assert out["f1"] == pytest.approx(2 * 0.5 * 0.6 / 1.1)
    assert out["accuracy"] == 0.75  # 9 of 12 word tags
    assert out["per_type"]["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert out["per_type"]["LOC"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8),
                                      "support": 2}
    assert out["per_type"]["MISC"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}


def test_entity_scores_are_seqeval_default_mode_not_strict():
    seqeval = pytest.importorskip("seqeval.metrics")
    from seqeval.scheme import IOB2

    out = M.entity_metrics(REFS, PREDS)
    assert out["f1"] == pytest.approx(seqeval.f1_score(REFS, PREDS))
    assert out["f1"] != pytest.approx(seqeval.f1_score(REFS, PREDS, mode="strict", scheme=IOB2))


def test_entity_spans_chunking():
    assert M.entity_spans(["I-PER", "I-PER", "B-PER", "I-LOC", "O", "B-ORG"]) == [
        ("PER", 0, 1), ("PER", 2, 2), ("LOC", 3, 3), ("ORG", 5, 5)]


def test_entity_metrics_bad_shapes():
    with pytest.raises(ValueError, match="sentence 0: 1 predicted tags for 2 words"):
        M.entity_metrics([["O", "O"]], [["O"]])
    with pytest.raises(ValueError):
        M.entity_metrics([], [])


def test_confusion_matrix_png_with_20_classes(tmp_path):
    names = [f"class_{i:02d}_with_a_long_name" for i in range(20)]
    rng = np.random.default_rng(0)
    m = rng.integers(0, 30, (20, 20))
    path = M.plot_confusion_matrix(m, names, tmp_path / "out" / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["cm.png"]  # no temp file left behind
    from PIL import Image

    with Image.open(path) as im:
        width, height = im.size
    assert width >= 1000 and height >= 1000  # grows with the classes: about 50 px per row
    small = M.plot_confusion_matrix([[3, 1], [0, 4]], ["neg", "pos"], tmp_path / "small.png")
    with Image.open(small) as im:
        assert im.size[1] < height
    with pytest.raises(ValueError, match="does not match 3 label names"):
        M.plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b", "c"], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
