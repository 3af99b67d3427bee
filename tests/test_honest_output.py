"""Output that tells the truth: notes for results at chance level, progress as log lines off a terminal."""

from __future__ import annotations

import io
import logging

from mobilebert.data.glue import SAMPLE_DIR
from mobilebert.progress import Progress
from mobilebert.sanity import finetune_notes, majority_baseline, prediction_notes, score_notes


def test_majority_baseline_of_the_bundled_sst2_dev():
    label, share = majority_baseline("sst2", SAMPLE_DIR, "dev")
    assert label == "1" and share == 444 / 872  # 444 positive of 872 rows


def _results(accuracy: float, task: str = "sst2") -> dict:
    return {"hparams": {"task": task}, "summary": {"dev": {"accuracy": {"mean": accuracy, "std": 0.0}}}}


def test_a_finetune_at_the_majority_class_says_so():
    (note,) = finetune_notes(_results(0.4897), SAMPLE_DIR)  # the README recipe's old result
    assert "no better than always answering '1' (0.5092)" in note and "has not learned sst2" in note
    assert finetune_notes(_results(0.81), SAMPLE_DIR) == []


def test_correlations_at_chance_say_so():
    (note,) = score_notes("cola", {"dev": {"mcc": 0.0, "score": 0.0}}, None)
    assert "mcc 0.0000 is at chance level" in note
    assert score_notes("stsb", {"dev": {"pearson": 0.8, "spearmanr": 0.79}}, None) == []
    assert score_notes("squad", {"dev": {"f1": 1.0}}, None) == []


def test_predictions_at_chance_say_so():
    rows = [{"text": "a", "label": "1", "score": 0.502, "top": [("1", 0.502)]},
            {"text": "b", "label": "1", "score": 0.51, "top": [("1", 0.51)]}]
    assert "within 0.05 of chance (1/2)" in prediction_notes(rows, 2)[0]
    assert prediction_notes([{**rows[0], "score": 0.9}, rows[1]], 2) == []
    assert prediction_notes([{"text": "a", "score": 3.2}], 1) == []  # regression: no classes


def test_progress_off_a_terminal_logs_lines_not_redraws(caplog):
    stream = io.StringIO()  # not a terminal
    with caplog.at_level(logging.INFO, logger="mobilebert.progress"):
        bar = Progress(total=1000, desc="tokenize", file=stream, interval=3600)
        for _ in range(1000):
            bar.update(1)
        bar.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "mobilebert.progress"]
    assert lines == [lines[-1]] and lines[-1].startswith("tokenize: 1000/1000")  # one line at the end
    assert stream.getvalue() == ""  # nothing drawn


def test_a_subset_is_compared_with_its_own_majority_class(tmp_path):
    """--max-eval-examples N: the baseline is the first N rows' majority, not the whole split's."""
    rows = [f"s{i}\t{int(i < 10)}" for i in range(100)]  # the first 10 positive, the other 90 negative
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    assert majority_baseline("sst2", tmp_path, "dev") == ("0", 0.9)
    assert majority_baseline("sst2", tmp_path, "dev", limit=10) == ("1", 1.0)
    results = _results(1.0)
    assert finetune_notes(results, tmp_path) == []  # 1.0 beats the whole split's 0.9
    results["hparams"].update(eval_examples={"dev": 10}, eval_subset=True)
    (note,) = finetune_notes(results, tmp_path)  # but not the scored subset's 1.0
    assert "always answering '1'" in note
