"""``mobilebert build``: the stages end to end on the bundled SST-2 sample with tiny models, resume after a stop
in each stage, the sequence-length default, and bad input in one line."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest
from conftest import TINY, small_config, tiny_ckpt  # noqa: F401

from mobilebert.build import STAGES, choose_seq_length, run_build
from mobilebert.cli import main
from mobilebert.data.glue import SAMPLE_DIR
from mobilebert.modeling import MobileBertForPreTraining
from mobilebert.recipes.build import BuildConfig

README = Path(__file__).resolve().parents[1] / "README.md"
SMALL = dict(teacher_epochs=1, student_epochs=1, batch_size=16, max_train_examples=64, max_eval_examples=48,
             max_seq_length=32, bench_repeats=2, threads=1, mediapipe=False)


@pytest.fixture(scope="module")
def tiny_teacher(tiny_ckpt, tmp_path_factory):  # noqa: F811
    """A 2-layer BERT with the tiny student's vocabulary (wider, so transfer projects)."""
    path = tmp_path_factory.mktemp("teacher")
    vocab = (tiny_ckpt / "vocab.txt").read_text()
    (path / "vocab.txt").write_text(vocab)
    MobileBertForPreTraining(small_config("bert-base", vocab_size=len(vocab.split()), hidden_size=64,
                                          embedding_size=64, intra_bottleneck_size=64, intermediate_size=128,
                                          num_attention_heads=2)).save_pretrained(path)
    return path


def config(out: Path, teacher: Path, student: Path, **kw) -> BuildConfig:
    from mobilebert import options

    return options.check(BuildConfig(out=str(out), task="sst2", data=str(SAMPLE_DIR), teacher=str(teacher),
                                     student=str(student), **{**SMALL, **kw}))


@pytest.mark.slow
def test_build_writes_every_file_and_a_report(tiny_ckpt, tiny_teacher, tmp_path):  # noqa: F811
    done = run_build(config(tmp_path / "b", tiny_teacher, tiny_ckpt))
    out = tmp_path / "b"
    assert all((out / s / "stage.json").is_file() for s in STAGES)
    ev = done["evaluate"]
    for key in ("teacher pytorch", "teacher onnx-fp32", "teacher onnx-int8", "student pytorch", "student onnx-fp32",
                "student onnx-int8"):
        assert 0 <= ev["scores"][key]["score"] <= 100
    # the ONNX fp32 file scores what PyTorch scores (same rows, same tokenizer)
    assert abs(ev["scores"]["student onnx-fp32"]["score"] - ev["scores"]["student pytorch"]["score"]) <= 100 / 48
    app = out / "app"
    assert (app / "model" / "config.json").is_file() and (app / "onnx" / "model.onnx").is_file()
    assert (app / "onnx" / "vocab.txt").is_file()  # the ONNX folder turns text into inputs by itself
    assert (app / "onnx" / "model.int8.onnx").is_file() == ev["int8_kept"]
    assert "not installed" in done["app"]["mediapipe"]["note"] or "mediapipe=false" in done["app"]["mediapipe"]["note"]
    report = (out / "report.md").read_text()
    for needle in ("Teacher vs student", "Per class", "Latency and size", "max_seq_length", "int8"):
        assert needle in report
    assert (out / "report" / "confusion_matrix.png").stat().st_size > 1000
    assert (out / "report" / "learning_curves.png").stat().st_size > 1000
    labels = ev["labels"]
    assert sum(map(sum, ev["scores"]["student pytorch"]["confusion_matrix"])) == 48 and len(labels) == 2


class Stop(RuntimeError):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_resume_after_a_stop_in_each_stage_skips_the_done_ones(stage, tiny_ckpt, tiny_teacher, tmp_path):  # noqa: F811
    cfg = config(tmp_path / "b", tiny_teacher, tiny_ckpt)

    def stop(name: str) -> None:
        if name == stage:
            raise Stop(name)

    with pytest.raises(Stop):
        run_build(cfg, hook=stop)
    out = tmp_path / "b"
    before = {s: (out / s / "stage.json").read_text() for s in STAGES if (out / s / "stage.json").is_file()}
    assert set(before) == set(STAGES[:STAGES.index(stage)])  # the stopped stage is not marked done
    ran: list[str] = []
    done = run_build(dataclasses.replace(cfg, resume=True), hook=ran.append)
    assert ran == list(STAGES[STAGES.index(stage):])  # done stages skipped, the rest run
    assert {s: (out / s / "stage.json").read_text() for s in before} == before
    assert (out / "report.md").is_file() and done["report"]["report"] == str(out / "report.md")


def test_resume_refuses_changed_settings(tiny_ckpt, tiny_teacher, tmp_path):  # noqa: F811
    from mobilebert import options
    from mobilebert.build import CONFIG_FILE

    cfg = config(tmp_path / "b", tiny_teacher, tiny_ckpt)
    (tmp_path / "b").mkdir()
    options.write_resolved(cfg, tmp_path / "b", CONFIG_FILE)
    with pytest.raises(options.UsageError, match=r"settings differ .*student_lr 0\.0003 -> 0\.001"):
        run_build(dataclasses.replace(cfg, resume=True, student_lr=1e-3))


@pytest.mark.parametrize("lengths, expected", [([10] * 100, 16), ([17] * 100, 32), ([500] * 100, 128),
                                               (list(range(1, 101)), 96), ([], 128)])
def test_sequence_length_is_the_95th_percentile_rounded_up_to_16_capped_at_128(lengths, expected):
    assert choose_seq_length(lengths) == expected


def test_the_default_sequence_length_comes_from_the_training_rows(tiny_ckpt, tiny_teacher, tmp_path):  # noqa: F811
    from mobilebert.build import make_plan

    plan = make_plan(dataclasses.replace(config(tmp_path / "b", tiny_teacher, tiny_ckpt), max_seq_length=None))
    assert plan.max_seq_length % 16 == 0 and 16 <= plan.max_seq_length <= 128
    assert "95th percentile of 2000 training rows" in plan.seq_reason


@pytest.mark.parametrize("args, message", [
    (["--data", str(SAMPLE_DIR), "--train", "x.csv", "--validation", "y.csv"], "not both"),
    (["--train", "{train}"], "--train and --validation go together"),
    ([], "no data: give --train FILE --validation FILE"),
    (["--data", str(SAMPLE_DIR), "--task", "sst2", "--kd-alpha", "2"], "--kd-alpha must be in [0, 1], got 2"),
    (["--data", str(SAMPLE_DIR), "--task", "nope"], "--task: unknown task 'nope'"),
    (["--data", str(SAMPLE_DIR), "--task", "sst2", "--teacher", "{missing}"], "no-such-teacher"),
    (["--data", "{missing}", "--task", "sst2"], "no-such-teacher: no such file or folder"),
    (["--data", str(SAMPLE_DIR), "--task", "sst2", "--student", "models/mobilebert-minilm"], "tokenize differently"),
    (["--train", "{train}", "--validation", "{train}", "--task", "token-classification", "--text-pair-column", "b"],
     "--text-pair-column: token classification tags single sentences"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(args, message, tmp_path, capsys, tiny_ckpt):  # noqa: F811
    (tmp_path / "t.csv").write_text("text,label\ngood,pos\n")
    subs = {"{train}": str(tmp_path / "t.csv"), "{missing}": str(tmp_path / "no-such-teacher")}
    subs["models/mobilebert-minilm"] = str(Path(__file__).resolve().parents[1] / "models" / "mobilebert-minilm")
    argv = ["build", "--out", str(tmp_path / "out"), "--student", str(tiny_ckpt), *[subs.get(a, a) for a in args]]
    if "--teacher" not in argv:
        argv += ["--teacher", str(tiny_ckpt)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


def readme_commands(section: str = "## Your own data") -> list[str]:
    """The shell commands of the README's own-data section, as written (``$`` lines of its ```bash blocks)."""
    text = README.read_text()
    body = text[text.index(section):]
    body = body[:body.index("\n## ", 1)] if "\n## " in body[1:] else body
    blocks = re.findall(r"```bash\n(.*?)```", body, re.S)
    return [line for block in blocks for line in block.replace("\\\n", " ").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_readme_section_has_build_commands():
    cmds = readme_commands()
    assert any(c.startswith("mobilebert build ") for c in cmds)
    assert any("reviews_train.csv" in c for c in cmds)


@pytest.mark.slow
def test_the_readme_own_data_commands_run_as_written(tiny_ckpt, tiny_teacher, tmp_path, monkeypatch):  # noqa: F811
    """From a CSV (the SST-2 sample as text,label with string labels) to report.md, with the README's commands;
    the test only adds tiny sizes (the README's own defaults would take minutes)."""
    from mobilebert.data import glue

    monkeypatch.chdir(tmp_path)
    names = {0: "negative", 1: "positive"}
    for split, name in (("train", "reviews_train.csv"), ("dev", "reviews_dev.csv")):
        with open(name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for e in glue.read_glue("sst2", SAMPLE_DIR, split):
                w.writerow([e.text_a, names[e.label]])
    tiny = ["--teacher", str(tiny_teacher), "--student", str(tiny_ckpt), "--teacher-epochs", "1",
            "--student-epochs", "1", "--max-train-examples", "64", "--max-eval-examples", "48", "--bench-repeats", "2",
            "--max-seq-length", "32", "--no-mediapipe"]
    for cmd in readme_commands():
        argv = shlex.split(cmd)
        assert argv[0] == "mobilebert"
        if argv[1] == "build":
            argv += tiny
        assert main(argv[1:]) == 0, cmd
    report = Path("runs/reviews/report.md").read_text()
    assert "negative" in report and "positive" in report
    assert json.loads(Path("runs/reviews/evaluate/stage.json").read_text())["labels"] == ["negative", "positive"]


@pytest.mark.slow
@pytest.mark.mobile
def test_the_mediapipe_file_runs_in_mediapipe_and_answers_with_the_label_names(tiny_ckpt, tiny_teacher,  # noqa: F811
                                                                               tmp_path):
    """In .venv-mobile: build writes model.tflite; MediaPipe's own TextClassifier runs it on raw strings and
    answers with the checkpoint's label names, as the PyTorch model does."""
    pytest.importorskip("litert_torch")
    pytest.importorskip("mediapipe")
    from mobilebert.deploy.mediapipe import MediaPipeText
    from mobilebert.finetune.predict import predict

    done = run_build(config(tmp_path / "b", tiny_teacher, tiny_ckpt, mediapipe=True))
    path = Path(done["app"]["files"]["mediapipe"])
    assert path.name == "model.tflite" and done["app"]["mediapipe"]["labels"] == done["evaluate"]["labels"]
    texts = ["a gripping , moving film .", "a dull , lifeless mess .", "it is what it is ."]
    with MediaPipeText(path, "classifier") as mp:
        got = mp.labels(texts)
    assert set(got) <= set(done["evaluate"]["labels"])
    if not done["app"]["int8_kept"]:  # fp32 file: the same answers as PyTorch
        assert got == [r["label"] for r in predict(done["app"]["files"]["model"], texts)]
    assert any(r["format"].startswith("litert") for r in done["evaluate"]["latency"])


def _cli_args(out: Path, teacher: Path, student: Path) -> list[str]:
    return ["build", "--task", "sst2", "--data", str(SAMPLE_DIR), "--teacher", str(teacher), "--student",
            str(student), "--out", str(out), "--teacher-epochs", "1", "--student-epochs", "6", "--batch-size", "16",
            "--max-train-examples", "256", "--max-eval-examples", "48", "--max-seq-length", "32", "--bench-repeats",
            "2", "--threads", "1", "--no-mediapipe"]


@pytest.mark.slow
def test_a_build_killed_in_training_resumes_from_the_command_line(tiny_ckpt, tiny_teacher, tmp_path):  # noqa: F811
    """SIGKILL in the student stage, after its first checkpoint: ``--resume`` keeps the teacher, continues the
    student from that checkpoint and finishes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "b"
    args = _cli_args(out, tiny_teacher, tiny_ckpt)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "mobilebert", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not list(out.glob("student/seed-*/checkpoints/step-*/state.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, "the build ended before a student checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "teacher" / "stage.json").is_file() and not (out / "student" / "stage.json").exists()
    teacher = (out / "teacher" / "stage.json").read_text()
    assert main([*args, "--resume"]) == 0
    assert (out / "teacher" / "stage.json").read_text() == teacher  # not trained again
    student = json.loads((out / "student" / "stage.json").read_text())
    assert [h["epoch"] for h in student["history"]] == list(range(1, 7))  # every epoch, once
    assert (out / "report.md").is_file()


def test_scores_per_kind_on_known_outputs():
    """The number int8 is judged on: accuracy, entity F1 over each word's first piece, micro F1, Pearson."""
    import numpy as np

    from mobilebert.build import score_outputs

    one_hot = np.eye(3, dtype=np.float32)
    cls = score_outputs("classification", [one_hot[0][:2], one_hot[1][:2], one_hot[1][:2]], [0, 1, 0], ["a", "b"])
    assert cls["score"] == pytest.approx(100 * 2 / 3) and cls["confusion_matrix"] == [[1, 1], [0, 1]]
    # token rows: [CLS] w1 w1-piece w2 [SEP]; -100 marks what is not scored; tags O, B-PER, I-PER
    ref = [-100, 1, -100, 2, -100]
    right = np.stack([one_hot[0], one_hot[1], one_hot[0], one_hot[2], one_hot[0]])
    wrong = np.stack([one_hot[0], one_hot[1], one_hot[2], one_hot[0], one_hot[0]])  # the entity ends early
    tok = score_outputs("token", [right, wrong], [ref, ref], ["O", "B-PER", "I-PER"])
    assert tok["score"] == pytest.approx(100 * 0.5)  # precision 1/2 recall 1/2
    ml = score_outputs("multi-label", [np.array([5.0, -5.0]), np.array([5.0, 5.0])], [[1, 0], [1, 0]], ["x", "y"])
    assert ml["score"] == pytest.approx(80.0)  # micro F1 = 2tp / (2tp + fp + fn) = 4 / 5
    reg = score_outputs("regression", [np.array([1.0]), np.array([2.0]), np.array([3.0])], [2.0, 4.0, 6.0], [])
    assert reg["score"] == pytest.approx(100.0)


@pytest.mark.slow
def test_token_classification_builds_without_a_mediapipe_file(tiny_ckpt, tiny_teacher, tmp_path):  # noqa: F811
    """CoNLL files (the SST-2 sample's words, "film" / "movie" tagged as THING) -> entity F1 for every format,
    a per-type table, and the ONNX app with a note instead of the MediaPipe file."""
    pytest.importorskip("seqeval")  # entity scores (not in .venv-mobile)
    from mobilebert import options
    from mobilebert.data import glue

    def conll(split: str, n: int) -> Path:
        lines = []
        for e in glue.read_glue("sst2", SAMPLE_DIR, split, limit=n):
            lines += [f"{w} {'B-THING' if w in ('film', 'movie') else 'O'}" for w in e.text_a.split()] + [""]
        path = tmp_path / f"{split}.conll"
        path.write_text("\n".join(lines) + "\n")
        return path

    cfg = options.check(BuildConfig(out=str(tmp_path / "b"), task="token-classification", train=str(conll("train", 200)),
                                    validation=str(conll("dev", 48)), teacher=str(tiny_teacher),
                                    student=str(tiny_ckpt), **{**SMALL, "mediapipe": True}))
    done = run_build(cfg)
    ev = done["evaluate"]
    assert ev["kind"] == "token" and "B-THING" in ev["labels"]
    assert all(0 <= ev["scores"][k]["score"] <= 100 for k in ev["scores"])
    assert "MediaPipe's TextClassifier runs single-label classifiers only" in done["app"]["mediapipe"]["note"]
    assert "Per entity type" in (tmp_path / "b" / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["regression", "multi-label"])
def test_regression_and_multi_label_build_an_onnx_app(kind, tiny_ckpt, tiny_teacher, tmp_path):  # noqa: F811
    from mobilebert import options
    from mobilebert.data import glue

    def table(split: str, n: int) -> Path:
        path = tmp_path / f"{split}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for e in glue.read_glue("sst2", SAMPLE_DIR, split, limit=n):
                short = "short" if len(e.text_a.split()) < 12 else "long"
                w.writerow([e.text_a, f"{e.label}.5" if kind == "regression" else f"{'pos' if e.label else 'neg'}|{short}"])
        return path

    extra = {"task": "regression"} if kind == "regression" else {"multi_label": True, "label_separator": "|"}
    cfg = options.check(BuildConfig(out=str(tmp_path / "b"), train=str(table("train", 200)),
                                    validation=str(table("dev", 48)), teacher=str(tiny_teacher),
                                    student=str(tiny_ckpt), **{**SMALL, "mediapipe": True}, **extra))
    done = run_build(cfg)
    assert done["evaluate"]["kind"] == kind
    assert all(k in done["evaluate"]["scores"] for k in ("student onnx-fp32", "student onnx-int8"))
    assert "single-label classifiers only" in done["app"]["mediapipe"]["note"]
    assert (tmp_path / "b" / "app" / "onnx" / "model.onnx").is_file() and (tmp_path / "b" / "report.md").is_file()
