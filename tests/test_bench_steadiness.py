"""The bench says when a timing cannot be trusted (issue 22, item 6): rows whose repeated calls disagree, a GEMM
rate that moved during the run, or threads that do not scale (another job on a core) are marked noise and
printed without a speed-up, with the advice to time at 1 thread. All timings here come from a fake clock; no
real timing is asserted."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from mobilebert.deploy import bench
from mobilebert.deploy.bench import BenchConfig, assess_steadiness, compare_models, format_table
from mobilebert.modeling import MobileBertModel


def _row(backend: str, median: float, p90: float, threads: int = 2) -> dict:
    return {"backend": backend, "threads": threads, "batch": 1, "seq": 128, "median_ms": median, "p90_ms": p90}


def test_steady_machine_marks_nothing():
    rows = [_row("eager", 10.0, 11.0), _row("optimized", 5.0, 5.5)]
    verdict = assess_steadiness(rows, before={1: 100.0, 2: 190.0}, after={1: 98.0, 2: 185.0})
    assert verdict["verdict"] == "steady" and verdict["advice"] == ""
    assert [r["noise"] for r in rows] == [False, False] and rows[0]["spread"] == pytest.approx(1.1)


def test_wide_spread_marks_the_row():
    rows = [_row("eager", 576.0, 576.0 * 28), _row("transformers", 20.0, 21.0)]  # the "0.04x" run
    verdict = assess_steadiness(rows, before={1: 100.0, 2: 190.0}, after={1: 100.0, 2: 190.0})
    assert [r["noise"] for r in rows] == [True, False] and verdict["verdict"] == "noisy"
    assert "1 of 2 rows vary" in verdict["advice"]


def test_gemm_drift_marks_every_row_at_that_thread_count():
    rows = [_row("eager", 10.0, 10.5, threads=1), _row("eager", 6.0, 6.2, threads=2)]
    verdict = assess_steadiness(rows, before={1: 100.0, 2: 190.0}, after={1: 100.0, 2: 120.0})
    assert [r["noise"] for r in rows] == [False, True]
    assert verdict["gemm_drift"][2] == pytest.approx(120 / 190) and "changed" in verdict["advice"]


def test_busy_core_suggests_one_thread():
    rows = [_row("eager", 10.0, 10.5)]
    verdict = assess_steadiness(rows, before={1: 100.0, 2: 105.0}, after={1: 100.0, 2: 104.0})
    assert verdict["verdict"] == "noisy" and verdict["scaling"][2] == pytest.approx(105 / 200)
    assert "another job holds a core" in verdict["advice"] and "--threads 1" in verdict["advice"]


class _FakeClock:
    """Each timed call of the model named ``slow_every``-th takes 100 ms instead of 1 ms: a core stolen now and
    then. Time only advances when read, by the step of whoever is calling."""

    def __init__(self) -> None:
        self.now, self.reads = 0.0, 0

    def __call__(self) -> float:
        self.reads += 1
        if self.reads % 2 == 0:  # the end of a timed interval
            self.now += 0.1 if (self.reads // 2) % 3 == 0 else 0.001
        return self.now


def test_compare_models_marks_noise_from_a_fake_clock(monkeypatch):
    """Through compare_models (what the demo calls): a fake clock makes one call in three 100x slower and a
    fake GEMM rate that does not scale with threads; rows come back marked, the table prints no speed-up."""
    monkeypatch.setattr(bench, "_clock", _FakeClock())
    monkeypatch.setattr(bench, "gemm_rate", lambda kind, threads, *shape: 100.0)  # 2 threads == 1 thread
    monkeypatch.setattr(bench, "SETTLE_S", 0.0)
    torch.manual_seed(0)
    models = {m: MobileBertModel(tiny_config(num_hidden_layers=1)) for m in ("teacher", "student")}
    cfg = BenchConfig(batches=(1,), seqs=(8,), threads=(2,), backends=("eager", "optimized"), repeats=6)
    res = compare_models(models, cfg, progress=False)
    for r in res.values():
        assert r.steadiness["verdict"] == "noisy" and "--threads 1" in r.steadiness["advice"]
        assert all(row["spread"] > bench.SPREAD_LIMIT and row["noise"] for row in r.rows)
    table = format_table(res["student"], baseline="eager")
    assert "noise" in table and "rows marked noise are not results" in table
