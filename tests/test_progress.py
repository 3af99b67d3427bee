"""One progress mechanism: off a terminal, every bar (data preparation, training) is a few log lines, never a
carriage-return redraw; on a terminal it is tqdm's bar."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

from mobilebert.progress import Progress

REPO = Path(__file__).resolve().parents[1]


def _bar_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mobilebert.progress"]


def test_postfix_updates_off_a_terminal_are_throttled_like_updates(caplog):
    """The trainer sets a postfix every log_every steps; each refresh must not become a line of its own."""
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="mobilebert.progress"):
        bar = Progress(total=50, desc="joint", file=stream, interval=3600)
        for i in range(50):
            bar.set_postfix(loss=f"{1 / (i + 1):.4g}")
            bar.update(1)
        bar.close()
    (line,) = _bar_lines(caplog)  # only the final one
    assert line.startswith("joint: 50/50") and "loss=0.02" in line
    assert stream.getvalue() == ""


def test_a_resumed_bar_logs_nothing_until_it_moves(caplog):
    with caplog.at_level(logging.INFO, logger="mobilebert.progress"):
        bar = Progress(total=10, initial=10, desc="s", file=io.StringIO(), interval=0)
        bar.close()
        hidden = Progress(range(3), desc="eval", leave=False, file=io.StringIO(), interval=3600)
        assert list(hidden) == [0, 1, 2]
    assert _bar_lines(caplog) == []  # nothing new, and a leave=False bar vanishes as on a terminal


def test_periodic_lines_when_the_interval_passes(caplog):
    with caplog.at_level(logging.INFO, logger="mobilebert.progress"):
        bar = Progress(total=3, desc="tokenize", file=io.StringIO(), interval=0)
        for _ in range(3):
            bar.update(1)
        bar.close()
    assert [x.split(" ")[1] for x in _bar_lines(caplog)] == ["1/3", "2/3", "3/3"]


def _run(args: list[str], log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"), "TQDM_MININTERVAL": "0"}
    with log.open("w") as err:
        r = subprocess.run([sys.executable, "-m", "mobilebert", *args], stdout=subprocess.DEVNULL, stderr=err,
                           env=env, timeout=300)
    assert r.returncode == 0, log.read_text()[-2000:]


def test_commands_logging_to_a_file_write_no_carriage_returns(tmp_path):
    """`mobilebert prepare-pretraining` and `mobilebert pretrain-teacher` with stderr to a file (as `make demo >
    log` runs them): the bars of data preparation and of the training loop leave plain lines only."""
    data, out = tmp_path / "data", tmp_path / "teacher"
    prep_log, train_log = tmp_path / "prepare.log", tmp_path / "train.log"
    _run(["prepare-pretraining", "--out", str(data), "--max-seq-length", "32", "--max-predictions", "5",
          "--workers", "1"], prep_log)
    tiny = {"num_hidden_layers": 2, "hidden_size": 32, "embedding_size": 16, "intra_bottleneck_size": 32,
            "intermediate_size": 64, "num_attention_heads": 2, "max_position_embeddings": 32}
    _run(["pretrain-teacher", f"data={data}", "steps=4", f"train.out_dir={out}", "train.batch_size=4",
          "train.log_every=1", "train.tensorboard=false", *(f"model.{k}={v}" for k, v in tiny.items())], train_log)
    for log in (prep_log, train_log):
        assert "\r" not in log.read_bytes().decode(), log.name
    text = train_log.read_text()
    assert "mobilebert.progress: pretrain: 4/4" in text  # the bar's final line
    assert (out / "stages" / "pretrain" / "config.json").is_file()
