"""Bad invocations of every subcommand, run the way users run them (``python -m mobilebert`` in a subprocess):
each must exit 2 with one line naming the culprit, print no traceback, and leave no file or folder behind.

The table is the floor of issue 13 (mistakes seen in practice) plus the cases found while fixing them. Nearly
all fail in the pre-flight checks, before torch is imported, so the whole table runs in seconds, in parallel.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[1]
MINILM = ROOT / "models" / "mobilebert-minilm"
DISTILL = str(ROOT / "configs" / "distill_demo.yaml")
TEACHER = str(ROOT / "configs" / "teacher_demo.yaml")
SAMPLE = str(ROOT / "src" / "mobilebert" / "assets" / "sample")


def _checkpoint(path: Path, keys: tuple[str, ...], finetuned_for: str | None = None) -> None:
    """A folder the checks accept as a checkpoint: the shipped model's config.json and a (tiny) weights file
    holding ``keys`` (pre-flight reads names from the header, never the tensors)."""
    path.mkdir(parents=True)
    shutil.copy(MINILM / "config.json", path / "config.json")
    save_file({k: np.zeros((2, 2), np.float32) for k in keys}, str(path / "model.safetensors"))
    if finetuned_for:
        (path / "finetune.json").write_text(json.dumps({"task": finetuned_for}))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Inputs the bad invocations point at (W/...); cases refer to them by their names."""
    w = tmp_path_factory.mktemp("world")
    _checkpoint(w / "encoder", ("mobilebert.embeddings.word_embeddings.weight",))  # no task head
    _checkpoint(w / "finetuned", ("mobilebert.embeddings.word_embeddings.weight", "classifier.weight"), "sst2")
    (w / "header_only" / "SST-2").mkdir(parents=True)
    (w / "header_only" / "SST-2" / "train.tsv").write_text("sentence\tlabel\n")
    (w / "header_only" / "SST-2" / "dev.tsv").write_text("sentence\tlabel\na fine film .\t1\n")
    (w / "checkpoints_dir" / "model.safetensors").parent.mkdir()
    (w / "checkpoints_dir" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}\0\0\0\0\0\0")
    (w / "checkpoints_dir" / "notes.txt").write_text("a text file among weights\n")
    (w / "binary.bin").write_bytes(bytes(range(256)) * 64)
    (w / "blank.txt").write_text("\n  \n\n")
    (w / "text.txt").write_text("a gripping , moving film .\n")
    (w / "zero_width.txt").write_text("\u200b\n")  # text, but no token
    (w / "bad.yaml").write_text("train:\n  lr: [1e-3\n")
    (w / "list.yaml").write_text("- 1\n- 2\n")
    (w / "lr_abc.yaml").write_text("lr: abc\n")
    (w / "existing").mkdir()
    (w / "existing" / "keep.txt").write_text("an earlier result\n")
    (w / "existing.json").write_text("{}\n")
    (w / "no_manifest").mkdir()
    (w / "no_manifest" / "shard_00000.npy").write_bytes(b"")
    (w / "prepared").mkdir()  # what the checks read of a prepared folder: its manifest
    (w / "prepared" / "manifest.json").write_text(json.dumps({"arguments": {"max_seq_length": 64},
                                                              "counts": {"examples": 100}}))
    own = w / "own"  # the user's own files (issue 21): one good pair, then one fault per file
    own.mkdir()
    (own / "train.csv").write_text("text,label\na fine film,pos\na dull film,neg\n")
    (own / "dev.csv").write_text("text,label\na fine film,pos\n")
    (own / "dev_unseen.csv").write_text("text,label\na fine film,pos\nso so,meh\n")
    (own / "empty.csv").write_text("")
    (own / "header.csv").write_text("text,label\n")
    (own / "empty_text.csv").write_text("text,label\na fine film,pos\n  ,neg\n")
    (own / "no_label.csv").write_text("text,label\na fine film,pos\na dull film,\n")
    (own / "not_object.jsonl").write_text('{"text": "a fine film", "label": "pos"}\n["a dull film", "neg"]\n')
    (own / "latin1.csv").write_bytes("text,label\nun caf\u00e9,pos\n".encode("latin-1"))
    (own / "ml.csv").write_text("text,labels\na fine film,pos\n")
    (own / "train.conll").write_text("EU B-ORG\nrejects O\n\nPeter B-PER\n")
    (own / "dev.conll").write_text("Peter B-PER\nrejects O\n")
    (own / "columns.conll").write_text("EU NNP B-ORG\nrejects O\n")
    (own / "tag.conll").write_text("EU B-ORG\nrejects X-VERB\n")
    (w / "run" / "checkpoints" / "step-00000010").mkdir(parents=True)
    (w / "run" / "checkpoints" / "step-00000010" / "state.pt").write_bytes(b"")
    return w


D = [DISTILL, "teacher=W/encoder", "data=W/prepared", "distill_steps=0"]  # a distill call that passes the checks
T = [TEACHER, "data=W/prepared"]
FT = ["--task", "sst2", "--data", SAMPLE, "--model", "W/encoder", "--out", "ft"]  # a finetune call that passes
OWN = ["--task", "text-classification", "--model", "W/encoder", "--out", "ft", "--train"]  # + train, validation


def own(train: str, validation: str = "W/own/dev.csv", *more: str) -> list[str]:
    """A finetune call on the user's own files."""
    return ["finetune", *OWN, train, "--validation", validation, *more]

# (command line with W standing for the world folder, text the error must contain)
CASES: list[tuple[list[str], str]] = [
    # info
    (["info", "--preset", "nope"], "--preset"),
    (["info", "--seq", "0"], "--seq"),
    (["info", "--model", "missing"], "--model missing"),
    (["info", "--model", "W/encoder", "--layers", "2"], "--layers"),
    (["info", "--model", "W/existing"], "no config.json"),
    # demo
    (["demo", "--out", "W/existing"], "--overwrite"),
    # pretrain-teacher
    (["pretrain-teacher", *T, "steps=abc"], "steps must be an integer"),
    (["pretrain-teacher", *T, "steps=0"], "steps"),
    (["pretrain-teacher", *T, "train.lr=-1"], "train.lr"),
    (["pretrain-teacher", "W/bad.yaml"], "invalid YAML at line"),
    (["pretrain-teacher", "W/list.yaml"], "expected a mapping"),
    (["pretrain-teacher", TEACHER, "data=missing"], "data missing"),
    (["pretrain-teacher", TEACHER, "data=W/no_manifest"], "manifest.json"),
    (["pretrain-teacher", TEACHER], "data: no pre-training data directory given"),
    (["pretrain-teacher", *T, "preset=nope"], "preset"),
    (["pretrain-teacher", *T, "model.max_position_embeddings=32"], "max_position_embeddings"),
    (["pretrain-teacher", *T, "train.out_dir=W/run"], "--resume"),
    # distill
    (["distill", *D, "alpha=abc"], "alpha must be a number"),
    (["distill", *D, "alpha=1.5"], "alpha"),
    (["distill", *D, "transfer_steps=abc"], "transfer_steps must be an integer"),
    (["distill", *D, "transfer_steps=0"], "nothing to train"),
    (["distill", *D, "train.batch_size=abc"], "train.batch_size must be an integer"),
    (["distill", *D, "train.batch_size=0"], "train.batch_size"),
    (["distill", *D, "clean_inputs=abc"], "clean_inputs must be true or false or null"),
    (["distill", *D, "train.batch_size=10", "train.grad_accum=3"], "not divisible"),
    (["distill", *D, "train=5"], "train must be a mapping"),
    (["distill", *D, "strategy=nope"], "strategy"),
    (["distill", *D, "nokey=1"], "unknown key(s) nokey"),
    (["distill", *D, "train.nokey=1"], "unknown key(s) train.nokey"),
    (["distill", *D, "alpha"], "override 'alpha' is not key=value"),
    (["distill", *D, "alpha=[1"], "not valid YAML"),
    (["distill", "W/bad.yaml"], "invalid YAML"),
    (["distill", "missing.yaml"], "config missing.yaml: no such file"),
    (["distill", *D, "teacher=missing"], "teacher missing"),
    (["distill", *D, "teacher=W/existing"], "no config.json"),
    (["distill", *D, "student.max_position_embeddings=32"], "max_position_embeddings"),
    (["distill", *D, "init_from_teacher=[nope]"], "init_from_teacher"),
    (["distill", *D, "train.out_dir=W/run"], "--resume"),
    (["distill", *D, "train.out_dir=W/existing"], "--overwrite"),
    (["distill", *D, "train.out_dir=W/existing", "--resume"], "no checkpoint to resume"),
    # finetune
    (["finetune", *FT[:2], "--data", "W/header_only", *FT[4:]], "no train examples"),
    (["finetune", *FT[:2], "--data", "missing", *FT[4:]], "--data missing"),
    (["finetune", *FT[:4], "--model", "missing", *FT[6:]], "--model missing"),
    (["finetune", *FT[:4], "--model", "W/existing", *FT[6:]], "no config.json"),
    (["finetune", *FT, "--epochs", "0"], "--epochs"),
    (["finetune", *FT, "--lr", "0"], "--lr"),
    (["finetune", *FT, "--batch-size", "0"], "--batch-size"),
    (["finetune", *FT, "--max-train-examples", "0"], "--max-train-examples"),
    (["finetune", *FT, "--max-seq-length", "9999"], "max_position_embeddings"),
    (["finetune", *FT, "--seeds", "1,x"], "--seeds"),
    (["finetune", *FT, "--config", "W/bad.yaml"], "invalid YAML"),
    (["finetune", *FT, "--config", "W/lr_abc.yaml"], "lr must be a number"),
    (["finetune", *FT, "--config", "missing.yaml"], "missing.yaml"),
    (["finetune", *FT[:-1], "W/existing"], "--overwrite"),
    (["finetune", "--task", "nope", *FT[2:]], "unknown task 'nope'"),
    (["finetune", "--task", "squad", "--data", "W/existing", *FT[4:]], "train-v1.1.json"),
    (["finetune", *FT, "--epochs", "x"], "--epochs"),  # argparse's own message
    # finetune on the user's own files: one line naming the file (and line)
    (own("W/own/train.csv", "W/own/dev.csv", "--text-column", "review"), "no text column 'review'"),
    (own("W/own/empty.csv"), "empty.csv: the file is empty"),
    (own("W/own/header.csv"), "header.csv: no data rows"),
    (own("W/own/empty_text.csv"), "empty_text.csv:3: empty text"),
    (own("W/own/no_label.csv"), "no_label.csv:3: missing label"),
    (own("W/own/train.csv", "W/own/dev_unseen.csv"), "dev_unseen.csv:3: label 'meh' is not among the training"),
    (own("W/own/not_object.jsonl"), "not_object.jsonl:2"),
    (own("W/own/latin1.csv"), "latin1.csv:2: not UTF-8"),
    (own("W/own/ml.csv", "W/own/dev.csv", "--multi-label"), "ml.csv:2: multi-label value 'pos' is not a list"),
    (own("W/own/train.csv", "W/own/train.csv"), "the same file as --train"),
    (own("W/own/train.csv", "W/own/dev.csv", "--label-separator", "|"), "--label-separator: only with --multi-label"),
    (["finetune", *OWN[2:], "W/own/train.conll", "--task", "token-classification", "--validation",
      "W/own/columns.conll"], "columns.conll:2: 2 columns"),
    (["finetune", *OWN[2:], "W/own/tag.conll", "--task", "token-classification", "--validation",
      "W/own/train.conll"], "tag.conll:2: tag 'X-VERB' is not BIO"),
    (["finetune", *OWN[2:], "W/own/train.conll", "--task", "token-classification", "--validation",
      "W/own/dev.conll", "--text-pair-column", "b"], "--text-pair-column: token-classification"),
    (["finetune", *OWN[2:], "W/own/train.csv", "--task", "sst2"], "--train: for your own files"),
    (["finetune", *OWN[:-1], "--validation", "W/own/dev.csv"], "give the training file"),
    (["finetune", "--task", "sst2", "--data", "W/own/train.csv", *FT[4:]], "--task text-classification --train"),
    (["finetune", "--task", "sst2", "--data", f"{SAMPLE}/sst2_train.tsv", *FT[4:]], "the same file"),
    # evaluate
    (["evaluate", "--model", "missing", "--data", SAMPLE], "--model missing"),
    (["evaluate", "--model", "W/encoder", "--data", SAMPLE], "--task"),
    (["evaluate", "--model", "W/encoder", "--data", SAMPLE, "--task", "sst2"], "--allow-untrained-head"),
    (["evaluate", "--model", "W/finetuned", "--data", "missing"], "--data missing"),
    (["evaluate", "--model", "W/finetuned", "--data", SAMPLE, "--split", "nope"], "--split nope"),
    (["evaluate", "--model", "W/finetuned", "--data", SAMPLE, "--split", "test"], "--out"),
    (["evaluate", "--model", "W/finetuned", "--data", SAMPLE, "--task", "cola"], "--task cola"),
    (["evaluate", "--model", "W/finetuned", "--data", SAMPLE, "--batch-size", "0"], "--batch-size"),
    (["evaluate", "--model", "W/finetuned", "--data", SAMPLE, "--out", "W/existing"], "--overwrite"),
    (["evaluate", "--model", "W/finetuned", "--validation", "W/own/dev.csv"], "score it with --data"),
    (["evaluate", "--model", "W/finetuned", "--data", SAMPLE, "--validation", "W/own/dev.csv"], "one of them"),
    # predict
    (["predict", "--model", "missing", "a fine film ."], "--model missing"),
    (["predict", "--model", "W/encoder", "--task", "sst2", "a fine film ."], "--allow-untrained-head"),
    (["predict", "--model", "W/finetuned"], "nothing to predict"),
    (["predict", "--model", "W/finetuned", "--file", "W/binary.bin"], "--file"),
    (["predict", "--model", "W/finetuned", "--file", "W/blank.txt"], "empty"),
    (["predict", "--model", "W/finetuned", "--file", "missing.txt"], "--file missing.txt"),
    (["predict", "--model", "W/finetuned", "--question", "who?"], "--context"),
    (["predict", "--model", "W/finetuned", "--top-k", "0", "a"], "--top-k"),
    (["predict", "--model", "W/finetuned", "--pair", "a", "b"], "--pair: sst2 takes single sentences"),
    (["predict", "--model", "W/finetuned", "--question", "who?", "--context", "me."], "--question"),
    # prepare-pretraining
    (["prepare-pretraining", "W/checkpoints_dir", "--out", "data"], "model.safetensors"),
    (["prepare-pretraining", "W/binary.bin", "--out", "data"], "binary.bin"),
    (["prepare-pretraining", "W/blank.txt", "--out", "data"], "no text found"),
    (["prepare-pretraining", "missing.txt", "--out", "data"], "missing.txt"),
    (["prepare-pretraining", "W/text.txt", "--out", "W/existing"], "--overwrite"),
    (["prepare-pretraining", "W/text.txt", "--out", "data", "--max-predictions", "0"], "--max-predictions"),
    (["prepare-pretraining", "W/text.txt", "--out", "data", "--masked-lm-prob", "1.5"], "--masked-lm-prob"),
    (["prepare-pretraining", "W/text.txt", "--out", "data", "--workers", "0"], "--workers"),
    (["prepare-pretraining", "W/text.txt", "--out", "data", "--max-seq-length", "4"], "--max-seq-length"),
    (["prepare-pretraining", "W/text.txt", "--out", "data", "--vocab", "missing"], "--vocab missing"),
    (["prepare-pretraining", "W/zero_width.txt", "--out", "runs/data"], "no text found"),  # refused after work began
    # corpus
    (["corpus", "--data", "missing", "--out", "c"], "--data missing"),
    (["corpus", "--out", "W/existing"], "--overwrite"),
    (["corpus", "--out", "c", "--max-seq-length", "4"], "--max-seq-length"),
    # embed
    (["embed", "--model", "W/encoder"], "give texts"),
    (["embed", "--model", "missing", "a"], "--model missing"),
    (["embed", "--model", "W/encoder", "--file", "W/binary.bin"], "--file"),
    (["embed", "--model", "W/encoder", "a", "--out", "v.txt"], ".npy"),
    (["embed", "--model", "W/encoder", "a", "--batch-size", "0"], "--batch-size"),
    (["embed", "--model", "W/encoder", "a", "--threads", "0"], "--threads"),
    # sts
    (["sts", "--model", "missing"], "--model missing"),
    (["sts", "--model", "W/encoder", "--data", "missing"], "--data missing"),
    (["sts", "--model", "W/encoder", "--split", "nope"], "--split"),
    (["sts", "--model", "W/encoder", "--json", "W/existing.json"], "--overwrite"),
    # export
    (["export", "missing", "out"], "model_dir missing"),
    (["export", "W/encoder", "W/existing"], "--overwrite"),
    (["export", "W/encoder", "out", "--format", "executorch", "--seq-len", "0"], "--seq-len"),
    (["export", "W/encoder", "out", "--format", "litert", "--seq-len", "9999"], "max_position_embeddings"),
    (["export", "W/encoder", "out", "--labels", "a,b"], "--labels: only --format mediapipe"),
    (["export", "W/encoder", "out", "--precision", "bf16"], "--format openvino settings"),
    (["export", "W/encoder", "out", "--format", "openvino", "--calibration", "missing.txt"], "--calibration"),
    # bench
    (["bench", "W/encoder", "--threads", "0"], "--threads"),
    (["bench", "W/encoder", "--seqs", "9999"], "max_position_embeddings"),
    (["bench", "W/encoder", "--batches", "0"], "--batches"),
    (["bench", "W/encoder", "--repeats", "0"], "--repeats"),
    (["bench", "W/encoder", "--backends", "nope"], "--backends"),
    (["bench", "W/encoder", "--out", "W/existing"], "--overwrite"),
    (["bench", "missing"], "model_dir missing"),
]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# One interpreter imports the CLI (and torch) once, then forks a child per case that runs exactly what
# ``python -m mobilebert`` runs (``SystemExit(main())``; an uncaught exception prints its traceback and exits
# 1, as the interpreter would), in its own folder, with stderr to a file. Four children at a time.
DRIVER = r"""
import json, os, sys, traceback
import torch  # noqa: F401  (what most failing commands would import; loaded once, before forking)
from mobilebert.cli import main
running = 0
for argv, cwd in json.load(sys.stdin):
    if running == 4:
        os.wait()
        running -= 1
    if os.fork() == 0:
        os.chdir(cwd)
        os.dup2(os.open(cwd + ".stderr", os.O_WRONLY | os.O_CREAT), 2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        with open(cwd + ".rc", "w") as f:
            f.write(str(code))
        os._exit(code)
    running += 1
while running:
    os.wait()
    running -= 1
"""


def _run_all(cases: list[list[str]], world: Path, root: Path) -> list[tuple[int, str]]:
    """(exit status, stderr) per case; each case runs in its own empty folder root/caseN."""
    jobs = []
    for i, argv in enumerate(cases):
        (root / f"case{i}").mkdir()
        jobs.append(([a.replace("W/", f"{world}/") for a in argv], str(root / f"case{i}")))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(jobs), text=True, env=env, check=True,
                   timeout=600, cwd=root)
    out = []
    for i in range(len(cases)):
        rc, err = root / f"case{i}.rc", root / f"case{i}.stderr"
        out.append((int(rc.read_text()) if rc.is_file() else -1, err.read_text() if err.is_file() else ""))
    return out


def _problems(rc: int, err: str, culprit: str, left: set[str]) -> list[str]:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return [why for why, bad in (
        (f"exit {rc}", rc != 2), ("traceback", "Traceback" in err),
        (f"culprit {culprit!r} not named", culprit not in last), (f"left {sorted(left)}", left),
        ("error not on one line", sum("error" in line for line in lines) != 1)) if bad]


def test_every_bad_invocation_is_one_named_line_and_leaves_nothing(world, tmp_path):
    before = _tree(world)
    results = _run_all([argv for argv, _ in CASES], world, tmp_path)
    failures = []
    for i, ((argv, culprit), (rc, err)) in enumerate(zip(CASES, results, strict=True)):
        problems = _problems(rc, err, culprit, _tree(tmp_path / f"case{i}"))
        if problems:
            failures.append(f"{' '.join(argv)}: {', '.join(problems)}\n    stderr: {err.strip()[-400:]}")
    assert not failures, "\n".join(failures)
    assert _tree(world) == before, "a bad invocation changed the inputs folder"


@pytest.mark.parametrize("case", [0, 5, 16], ids=["before-torch", "yaml-config", "distill-override"])
def test_the_real_entry_point_behaves_the_same(world, tmp_path, case):
    """A few cases through ``python -m mobilebert`` itself, as users run it."""
    argv, culprit = CASES[case]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([sys.executable, "-m", "mobilebert", *[a.replace("W/", f"{world}/") for a in argv]],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert not _problems(r.returncode, r.stderr, culprit, _tree(tmp_path)), r.stderr


def test_every_subcommand_has_a_case():
    from mobilebert.cli import COMMANDS

    assert set(COMMANDS) == {argv[0] for argv, _ in CASES}


def test_help_has_a_line_for_every_option_and_shows_defaults():
    from mobilebert.cli import build_parser

    parser = build_parser()
    subparsers = parser._subparsers._group_actions[0].choices
    for name, sub in subparsers.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings or action.dest}: no help line"
    text = subparsers["bench"].format_help()
    assert "(default: 1 8)" in text and "(default: 10)" in text
    assert "(default: 5e-5)" in subparsers["finetune"].format_help()


@pytest.mark.slow  # subprocesses: data, a training run stopped by SIGTERM
def test_sigterm_stops_cleanly_and_says_how_to_resume(tmp_path):
    """SIGTERM (or Ctrl-C) mid-training: exit 130, no traceback, one line naming the checkpoint and the exact
    command that continues; that command then resumes from it."""
    import signal
    import time

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cli = [sys.executable, "-m", "mobilebert"]
    subprocess.run([*cli, "prepare-pretraining", "--out", "data", "--max-seq-length", "64", "--workers", "1"],
                   cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    args = ["pretrain-teacher", TEACHER, "data=data", "steps=100000", "train.save_every=1", "train.batch_size=4",
            "train.out_dir=run", "model.num_hidden_layers=1"]

    def start_and_stop(argv: list[str], ready: Callable[[], bool]) -> tuple[int, str]:
        proc = subprocess.Popen([*cli, *argv], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 240
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        return proc.returncode, err

    rc, err = start_and_stop(args, lambda: any((tmp_path / "run" / "checkpoints").glob("step-*/state.pt")))
    assert rc == 130 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert "interrupted; saved run/checkpoints/step-" in last and "resume with: mobilebert pretrain-teacher" in last
    again = shlex.split(last.split("resume with: mobilebert ", 1)[1])
    assert again == [*args, "--resume"]
    first = {p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*")}
    rc, err = start_and_stop(again, lambda: {p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*")}
                             - first != set())
    assert rc == 130 and "resumed from run/checkpoints/step-" in err and "Traceback" not in err, err


def test_the_one_rule_for_existing_outputs(tmp_path):
    from mobilebert.validate import UsageError, fresh_output

    run = tmp_path / "run"
    (run / "tensorboard").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("{}\n")
    assert fresh_output(run, "train.out_dir", resume=True, resumable=True) == run  # stopped before a checkpoint
    with pytest.raises(UsageError, match="--overwrite"):
        fresh_output(run, "train.out_dir", resumable=True)
    (run / "notes.txt").write_text("mine\n")  # not a run's own file: --resume does not claim the folder
    with pytest.raises(UsageError, match="no checkpoint to resume"):
        fresh_output(run, "train.out_dir", resume=True, resumable=True)
    (run / "checkpoints" / "step-00000004").mkdir(parents=True)
    (run / "checkpoints" / "step-00000004" / "state.pt").write_bytes(b"")
    with pytest.raises(UsageError, match="add --resume to continue it"):
        fresh_output(run, "train.out_dir", resumable=True)
    assert fresh_output(run, "train.out_dir", resume=True, resumable=True) == run
    assert fresh_output(run, "train.out_dir", overwrite=True) == run
    assert fresh_output(tmp_path / "new", "--out") == tmp_path / "new"
