"""Fine-tuning on the shared trainer: 2 gloo processes follow 1 (SST-2 sample and SQuAD-shaped), SIGKILL + resume
is bitwise equal, accumulation 4 x 8 equals batch 32, bf16 runs, the loader shards and resumes exactly.

This file is also the subprocess worker of the kill test: ``python tests/test_finetune_fit.py KILL_AFTER ARGS...``
runs ``mobilebert finetune ARGS`` and SIGKILLs itself while fetching micro-batch KILL_AFTER (0: never).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

from mobilebert.data.finetuning import Encoded, FinetuneLoader, epoch_order, steps_per_epoch  # noqa: E402
from mobilebert.data.glue import SAMPLE_DIR  # noqa: E402
from mobilebert.recipes.finetune import FinetuneConfig, train  # noqa: E402
from mobilebert.train.metrics import read_metrics  # noqa: E402
from mobilebert.train.state import checkpoints, load_checkpoint  # noqa: E402

SST2 = ["--task", "sst2", "--data", str(SAMPLE_DIR), "--lr", "1e-3", "--max-seq-length", "48", "--seeds", "3",
        "--max-eval-examples", "64"]


def _spawn(args: list[str], torchrun: int = 0, kill_after: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(torchrun), "--master_port",
               "29541", "-m", "mobilebert", "finetune", *args]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), str(kill_after), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def _config(tmp_path: Path, **values) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in values.items()))
    return str(path)


def _losses(run: Path, seed: int = 3) -> list[float]:
    return [r["loss"] for r in read_metrics(run / f"seed-{seed}" / "metrics.jsonl") if "loss" in r]


def _final(run: Path, seed: int = 3) -> dict[str, torch.Tensor]:
    return load_checkpoint(checkpoints(run / f"seed-{seed}" / "checkpoints")[-1])["model"]


# ----------------------------------------------------------------------------- the loader
def test_loader_splits_each_global_batch_across_ranks_and_micro_batches():
    enc = Encoded([[2, 5 + i % 7, 3] for i in range(30)], [[0, 0, 0]] * 30, list(range(30)))
    assert steps_per_epoch(30, 8, 1) == 4 and steps_per_epoch(30, 8, 4) == 4 and steps_per_epoch(30, 8, 8) == 3
    one = [b["labels"].tolist() for b in FinetuneLoader(enc, seed=5, epoch=1, batch_size=8)]
    assert sum(one, []) == epoch_order(30, 5, 1).tolist() and [len(b) for b in one] == [8, 8, 8, 6]
    parts = [list(FinetuneLoader(enc, seed=5, epoch=1, batch_size=8, grad_accum=2, rank=r, world=2))
             for r in range(2)]
    for step in range(4):  # global batch = rank 0's two micro-batches + rank 1's two, in order
        rows = sum((parts[r][step * 2 + m]["labels"].tolist() for r in range(2) for m in range(2)), [])
        assert rows == one[step]
    assert [len(b["labels"]) for b in parts[0][-2:]] == [1, 2]  # the last 6 rows: slots of 1, 2, 1, 2
    cut = FinetuneLoader(enc, seed=5, epoch=1, batch_size=8)
    it = iter(cut)
    next(it)
    again = FinetuneLoader(enc, seed=5, epoch=1, batch_size=8)
    again.load_state_dict(cut.state_dict())
    assert [b["labels"].tolist() for b in again] == one[1:]


# ----------------------------------------------------------------------------- one process
def test_accumulation_4x8_equals_batch_32(tiny_ckpt, tmp_path):  # noqa: F811
    common = dict(lr=1e-3, batch_size=32, epochs=1, max_seq_length=48, seeds=[3], max_train_examples=256,
                  max_eval_examples=32, dropout=0.0, log_every=1)
    train(FinetuneConfig(task="sst2", data=str(SAMPLE_DIR), model=str(tiny_ckpt), out=str(tmp_path / "full"), **common))
    train(FinetuneConfig(task="sst2", data=str(SAMPLE_DIR), model=str(tiny_ckpt),
                         out=str(tmp_path / "accum"), grad_accum=4, **common))
    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "accum")
    assert len(a) == len(b) == 8
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5, (a, b)


def test_bf16_runs_and_a_finished_run_resumes_to_the_same_results(tiny_ckpt, tmp_path):  # noqa: F811
    kw = dict(lr=1e-3, batch_size=16, epochs=2, max_seq_length=48, seeds=[3], max_train_examples=64,
              max_eval_examples=32, precision="bf16")
    first = train(FinetuneConfig(task="sst2", data=str(SAMPLE_DIR), model=str(tiny_ckpt), out=str(tmp_path), **kw))
    history = first["runs"][0]["history"]
    assert [h["epoch"] for h in history] == [1, 2] and all(h["train_loss"] > 0 for h in history)
    assert first["hparams"]["precision"] == "bf16"
    n_records = len(read_metrics(tmp_path / "seed-3" / "metrics.jsonl"))
    again = train(FinetuneConfig(task="sst2", data=str(SAMPLE_DIR), model=str(tiny_ckpt),
                                 out=str(tmp_path), resume=True, **kw))
    assert again["runs"] == first["runs"]  # restored from the last checkpoint, nothing trained again
    assert len(read_metrics(tmp_path / "seed-3" / "metrics.jsonl")) == n_records
    assert len(checkpoints(tmp_path / "seed-3" / "checkpoints")) == 1  # keep_last 1


@pytest.mark.slow  # subprocesses: a run, a SIGKILLed run, its resume
def test_sigkill_mid_epoch_then_resume_is_bitwise_equal(tiny_ckpt, tmp_path):  # noqa: F811
    """Dropout on, so the RNG state must come back too; killed in epoch 2 of 3 (6 steps each, saves every 4)."""
    args = [*SST2, "--model", str(tiny_ckpt), "--batch-size", "16", "--epochs", "3", "--max-train-examples", "96",
            "--save-every", "4"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    r = _spawn([*args, "--out", str(ref)])
    assert r.returncode == 0, r.stderr[-3000:]
    r = _spawn([*args, "--out", str(cut)], kill_after=10)  # killed fetching step 10's batch
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert [c.name for c in checkpoints(cut / "seed-3" / "checkpoints")] == ["step-00000008"]  # saved at 8
    r = _spawn([*args, "--out", str(cut), "--resume"])
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _final(ref), _final(cut)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((p / "results.json").read_text())["runs"][0] for p in (ref, cut))
    assert ra["best"] == rb["best"] and ra["best_epoch"] == rb["best_epoch"]
    assert [h["train_loss"] for h in ra["history"]] == [h["train_loss"] for h in rb["history"]]


# ----------------------------------------------------------------------------- two processes
@pytest.mark.slow  # torchrun subprocesses
def test_torchrun_two_gloo_processes_follow_one_process_sst2(tiny_ckpt, tmp_path):  # noqa: F811
    cfg = _config(tmp_path, log_every=1, dropout=0.0)
    args = [*SST2, "--model", str(tiny_ckpt), "--batch-size", "8", "--epochs", "1", "--max-train-examples", "160",
            "--config", cfg]
    r = _spawn([*args, "--out", str(tmp_path / "one")])
    assert r.returncode == 0, r.stderr[-3000:]
    r = _spawn([*args, "--out", str(tmp_path / "two")], torchrun=2)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) == 20
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-4, (a, b)
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert results["hparams"]["world_size"] == 2 and (tmp_path / "two" / "seed-3" / "best" / "finetune.json").is_file()


def _squad_shaped(path: Path) -> None:
    """40 questions over 8 contexts in the tiny checkpoint's vocabulary (SST-2 sample words)."""
    from mobilebert.data.glue import read_glue

    sentences = [e.text_a for e in read_glue("sst2", SAMPLE_DIR, "dev", limit=100) if len(e.text_a.split()) > 12]
    paragraphs = []
    for c in range(8):
        context = sentences[c]
        words = context.split()
        qas = []
        for q in range(5):
            answer = " ".join(words[2 + q:4 + q])
            qas.append({"id": f"c{c}q{q}", "question": " ".join(words[q:q + 3]),
                        "answers": [{"text": answer, "answer_start": context.index(answer)}]})
        paragraphs.append({"context": context, "qas": qas})
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        (path / name).write_text(json.dumps(data))


@pytest.mark.slow  # torchrun subprocesses
def test_torchrun_two_gloo_processes_follow_one_process_squad(tiny_ckpt, tmp_path):  # noqa: F811
    _squad_shaped(tmp_path)
    cfg = _config(tmp_path, log_every=1, dropout=0.0)
    args = ["--task", "squad", "--data", str(tmp_path), "--model", str(tiny_ckpt), "--lr", "1e-3", "--batch-size",
            "4", "--epochs", "2", "--max-seq-length", "32", "--doc-stride", "8", "--max-query-length", "8",
            "--seeds", "3", "--config", cfg]
    r = _spawn([*args, "--out", str(tmp_path / "one")])
    assert r.returncode == 0, r.stderr[-3000:]
    r = _spawn([*args, "--out", str(tmp_path / "two")], torchrun=2)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) >= 20
    assert max(abs(x - y) for x, y in zip(a[:20], b[:20], strict=True)) < 1e-4, (a, b)


if __name__ == "__main__":  # the kill-test worker
    kill_after = int(sys.argv[1])
    torch.set_num_threads(1)
    if kill_after:
        inner = FinetuneLoader.__iter__
        fetched = [0]

        def counting(self):
            for batch in inner(self):
                fetched[0] += 1
                if fetched[0] == kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield batch

        FinetuneLoader.__iter__ = counting  # type: ignore[method-assign]
    from mobilebert.cli import main

    sys.exit(main(["finetune", *sys.argv[2:]]))
