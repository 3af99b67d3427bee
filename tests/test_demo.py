"""`mobilebert demo --fast` end to end (the real MiniLM teacher, and the paper's IB-BERT recipe): every artefact
exists and loads, and the report shows the metrics files' numbers; the README's commands run as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from mobilebert import MobileBertForPreTraining, MobileBertForSequenceClassification, MobileBertModel
from mobilebert.cli import main
from mobilebert.train.metrics import read_metrics


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--fast", "--out", str(out)]) == 0
    return out


@pytest.mark.slow  # demo_dir: a fast demo run
def test_every_stage_checkpoint_loads(demo_dir):
    results = json.loads((demo_dir / "results.json").read_text())
    assert results["recipe"] == "minilm"
    ids = torch.tensor([[101, 2023, 3185, 2003, 2307, 102]])
    student = MobileBertModel.from_pretrained(results["checkpoints"]["student"])  # an encoder: no heads
    assert student.loading_info == {"missing_keys": [], "unexpected_keys": []}
    baseline = MobileBertForPreTraining.from_pretrained(results["checkpoints"]["baseline"])
    assert baseline.loading_info["missing_keys"] == []
    for name in ("student", "baseline"):
        assert (Path(results["checkpoints"][name]) / "vocab.txt").is_file()  # tokenizer beside the weights
        clf = MobileBertForSequenceClassification.from_pretrained(results["checkpoints"][f"{name}-sst2"])
        assert clf.loading_info["missing_keys"] == [] and clf(ids).logits.shape == (1, 2)
    assert (Path(results["checkpoints"]["student-onnx"]) / "model.int8.onnx").is_file()


@pytest.mark.slow  # demo_dir: a fast demo run
def test_student_is_a_mobilebert_taught_by_the_real_teacher(demo_dir):
    results = json.loads((demo_dir / "results.json").read_text())
    student = MobileBertModel.from_pretrained(results["checkpoints"]["student"]).config
    teacher = MobileBertModel.from_pretrained(results["checkpoints"]["teacher"]).config
    assert student.normalization_type == "no_norm" and student.trigram_input
    assert student.intra_bottleneck_size < student.hidden_size and student.num_feedforward_networks > 1
    assert teacher.model_type == "bert" and teacher.hidden_size == student.hidden_size == 384
    assert results["params"]["student"] <= results["params"]["teacher"] / 3


def test_demo_student_matches_the_shipped_recipe():
    from mobilebert.demo.minilm import STUDENT
    from mobilebert.options import read_yaml

    assert read_yaml(REPO / "configs" / "distill_minilm.yaml")["student"] == STUDENT  # (the YAML names no teacher)


@pytest.mark.slow  # demo_dir: a fast demo run
def test_report_numbers_come_from_the_metrics_files(demo_dir):
    results = json.loads((demo_dir / "results.json").read_text())
    report = (demo_dir / "report.md").read_text()
    for name in ("student", "baseline"):
        finetune = json.loads((demo_dir / "finetune" / name / "results.json").read_text())
        acc = 100 * finetune["summary"]["dev"]["accuracy"]["mean"]
        assert results["sst2_dev_accuracy"][name] == pytest.approx(acc)
        row = re.search(rf"^\| {name} \|.*$", report, re.M).group(0)
        assert f"{acc:.4g}" in row and f"{results['sts_sample_spearman'][name]:.4g}" in row
    # Both runs log the STS-B sample score as they train (the learning curve); the distillation every layer's
    # feature-map loss and the sentence-embedding term.
    for run in ("student", "baseline"):
        assert [r["eval/sts_spearman"] for r in read_metrics(demo_dir / run / "metrics.jsonl")
                if "eval/sts_spearman" in r]
    keys = {k for r in read_metrics(demo_dir / "student" / "metrics.jsonl") for k in r}
    assert {f"loss/fmt/layer.{i}" for i in range(6)} | {"loss/emb"} <= keys
    for png in ("sts_curve.png", "loss.png", "sts.png", "accuracy.png", "latency_size.png"):
        assert (demo_dir / "plots" / png).stat().st_size > 1000
        assert f"plots/{png}" in report
    # A fast run says so, draws the majority class, and claims no speed-up from two timed calls.
    assert "fast mode" in report and results["sst2_majority_class_accuracy"] == pytest.approx(100 * 444 / 872)
    assert not any(r["reliable"] for r in results["latency"]) and "faster than the teacher" not in report


@pytest.mark.slow  # a fast demo run of its own
def test_the_paper_recipe_stays_available(tmp_path):
    assert main(["demo", "--fast", "--recipe", "ib-bert", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["recipe"] == "ib-bert"
    teacher = MobileBertForPreTraining.from_pretrained(results["checkpoints"]["teacher"]).config
    assert teacher.normalization_type == "layer_norm" and teacher.intra_bottleneck_size > teacher.hidden_size
    report = (tmp_path / "report.md").read_text()
    assert "fast mode" in report and "student int8 ONNX" in report
    assert (tmp_path / "plots" / "accuracy.png").stat().st_size > 1000


# ----------------------------------------------------------------------------- the documented commands
REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *(REPO / "docs" / f"guide-{g}.md" for g in ("finetune", "distill", "deploy"))]
PLACEHOLDERS = ("path/to", "$", "../shared", "corpus/", "glue_data", "squad/", "runs/teacher_ib_bert_large",
                "runs/distill_mobilebert", "runs/mrpc", "reviews_")  # reviews_: tests/test_build.py runs those


def code_blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", path.read_text(), re.M | re.S)


def documented_commands() -> list[tuple[str, list[str], bool]]:
    """(doc, argv after `mobilebert`, runnable) for every mobilebert command line in the docs' bash blocks."""
    import shlex

    out = []
    for doc in DOCS:
        for block in code_blocks(doc, "bash"):
            for line in block.splitlines():
                line = line.split(" #")[0].strip()
                words = shlex.split(line) if line else []
                if "mobilebert" not in words or words[0] == "make":
                    continue
                argv = words[words.index("mobilebert") + 1:]
                runnable = words[0] == "mobilebert" and not any(p in line for p in PLACEHOLDERS)
                out.append((doc.name, argv, runnable))
    return out


def test_docs_have_commands_to_check():
    cmds = documented_commands()
    assert len(cmds) >= 12 and sum(r for _, _, r in cmds) >= 6


def test_every_documented_command_parses():
    from mobilebert.cli import build_parser

    for doc, argv, _ in documented_commands():
        try:
            build_parser().parse_args(argv)
        except SystemExit as e:  # argparse error
            raise AssertionError(f"{doc}: `mobilebert {' '.join(argv)}` does not parse") from e
        for word in argv:
            if word.endswith(".yaml"):
                assert (REPO / word).is_file(), f"{doc}: {word} does not exist"


@pytest.mark.slow  # demo_dir: a fast demo run
def test_readme_commands_run_as_written(demo_dir, tmp_path, monkeypatch):
    """The quick README commands and Python snippets, in order, from a folder laid out like the repository
    after `make demo` (demo_out is the fast demo's output)."""
    for name in ("src", "configs", "models"):
        (tmp_path / name).symlink_to(REPO / name)
    (tmp_path / "demo_out").symlink_to(demo_dir)
    monkeypatch.chdir(tmp_path)
    for doc, argv, runnable in documented_commands():
        if runnable and doc == "README.md":
            assert main(argv) == 0, f"`mobilebert {' '.join(argv)}` failed"
    for snippet in code_blocks(REPO / "README.md", "python"):
        exec(compile(snippet, "README.md", "exec"), {})
    assert (tmp_path / "runs" / "sst2-onnx" / "model.int8.onnx").is_file()
    # The README's fine-tuning recipe learns: its dev accuracy beats always answering the majority class.
    dev = [line.split("\t")[-1] for line in (REPO / "src/mobilebert/assets/sample/sst2_dev.tsv").read_text().split("\n")[1:]
           if line.strip()]
    majority = max(dev.count("0"), dev.count("1")) / len(dev)
    results = json.loads((tmp_path / "runs" / "sst2" / "results.json").read_text())
    assert results["summary"]["dev"]["accuracy"]["mean"] > majority + 0.02, (results["summary"], majority)
