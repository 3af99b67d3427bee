"""`mobilebert demo --fast` end to end: every artefact exists and loads, and the report shows the metrics files' numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from mobilebert import MobileBertForPreTraining, MobileBertForSequenceClassification
from mobilebert.cli import main
from mobilebert.train.metrics import read_metrics


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--fast", "--out", str(out)]) == 0
    return out


def test_every_stage_checkpoint_loads(demo_dir):
    results = json.loads((demo_dir / "results.json").read_text())
    ids = torch.tensor([[101, 2023, 3185, 2003, 2307, 102]])
    for name in ("teacher", "student", "baseline"):
        model = MobileBertForPreTraining.from_pretrained(results["checkpoints"][name])
        assert model.loading_info["missing_keys"] == []
        assert (Path(results["checkpoints"][name]) / "vocab.txt").is_file()  # tokenizer beside the weights
        clf = MobileBertForSequenceClassification.from_pretrained(results["checkpoints"][f"{name}-sst2"])
        assert clf.loading_info["missing_keys"] == [] and clf(ids).logits.shape == (1, 2)
    assert (Path(results["checkpoints"]["student-onnx"]) / "model.int8.onnx").is_file()


def test_student_is_a_mobilebert_and_teacher_an_ib_bert(demo_dir):
    results = json.loads((demo_dir / "results.json").read_text())
    student = MobileBertForPreTraining.from_pretrained(results["checkpoints"]["student"]).config
    teacher = MobileBertForPreTraining.from_pretrained(results["checkpoints"]["teacher"]).config
    assert student.normalization_type == "no_norm" and student.intra_bottleneck_size < student.hidden_size
    assert teacher.normalization_type == "layer_norm" and teacher.intra_bottleneck_size > teacher.hidden_size
    assert student.hidden_size == teacher.hidden_size


def test_report_numbers_come_from_the_metrics_files(demo_dir):
    results = json.loads((demo_dir / "results.json").read_text())
    report = (demo_dir / "report.md").read_text()
    for name in ("teacher", "student", "baseline"):
        finetune = json.loads((demo_dir / "finetune" / name / "results.json").read_text())
        acc = 100 * finetune["summary"]["dev"]["accuracy"]["mean"]
        assert results["sst2_dev_accuracy"][name] == pytest.approx(acc)
        row = re.search(rf"^\| {name} \|.*$", report, re.M).group(0)
        assert f"{acc:.4g}" in row
    # The distillation run's metrics hold a feature-map loss for every student layer.
    keys = {k for r in read_metrics(demo_dir / "student" / "metrics.jsonl") for k in r}
    assert {f"loss/fmt/layer.{i}" for i in range(4)} <= keys
    for png in ("loss.png", "fmt_per_layer.png", "accuracy.png", "latency_size.png"):
        assert (demo_dir / "plots" / png).stat().st_size > 1000
        assert f"plots/{png}" in report
