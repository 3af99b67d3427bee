"""The demo's plots, report and inputs without running a demo: titles say fast mode, the accuracy axis is not
zoomed and shows the majority class, stage boundaries are promised only where drawn, noisy latencies claim no
speed-up, and the shipped model is found (or missing in one line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mobilebert import shipped
from mobilebert.demo import minilm, report, run_demo, runner

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def figures(monkeypatch) -> list:
    """The figures the plot functions save, kept open for inspection."""
    kept = []

    def keep(fig, out_png: Path) -> Path:
        kept.append(fig)
        return out_png

    monkeypatch.setattr(report, "_save", keep)
    yield kept
    import matplotlib.pyplot as plt

    for fig in kept:
        plt.close(fig)


def _metrics(path: Path, stages: list[str]) -> Path:
    recs = [{"step": s, "stage": stage, "loss": 10.0 / s, "loss/fmt/layer.0": 1.0 / s, "eval/sts_spearman": 10.0 * s}
            for s, stage in enumerate(stages, start=1)]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_every_plot_title_says_fast_mode(tmp_path, figures):
    m = _metrics(tmp_path / "m.jsonl", ["joint"] * 4)
    note = runner.FAST_NOTE
    report.plot_losses({"student": m}, tmp_path / "a.png", note=note)
    report.plot_layer_losses(m, tmp_path / "b.png", note=note)
    report.plot_curves({"student": m}, tmp_path / "c.png", "eval/sts_spearman", "Spearman", note=note)
    report.plot_bars({"a": 50.0}, tmp_path / "d.png", "accuracy %", "acc", note=note)
    report.plot_latency_vs_size([{"name": "s optimized", "latency_ms": 3.0, "size_mb": 9.0, "reliable": False}],
                                tmp_path / "e.png", note=note)
    titles = [ax.get_title() for fig in figures for ax in fig.axes]
    assert len(figures) == 5 and titles and all("fast mode" in t for t in titles)
    report.plot_bars({"a": 50.0}, tmp_path / "f.png", "accuracy %", "acc")
    assert "fast" not in figures[-1].axes[0].get_title()


def test_accuracy_plot_spans_the_whole_scale_and_draws_the_majority_class(tmp_path, figures):
    report.plot_bars({"student": 47.9, "baseline": 46.0}, tmp_path / "acc.png", "accuracy %", "SST-2",
                     limits=(0, 100), baseline=("majority class", 50.9))
    (ax,) = figures[0].axes
    assert ax.get_ylim() == (0, 100)  # not zoomed onto 46-48
    (line,) = ax.get_lines()
    assert list(line.get_ydata()) == [50.9, 50.9]
    assert "majority class (50.9)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_stage_boundaries_are_promised_only_where_drawn(tmp_path, figures):
    one = _metrics(tmp_path / "one.jsonl", ["joint"] * 4)
    layered = _metrics(tmp_path / "layered.jsonl", ["progressive.0"] * 3 + ["progressive.1"] * 3)
    report.plot_losses({"a": one}, tmp_path / "one.png")
    report.plot_losses({"a": layered}, tmp_path / "layered.png")
    (plain,), (drawn,) = figures[0].axes, figures[1].axes
    assert plain.get_xlabel() == "step" and not plain.get_lines()[1:]
    assert "dotted: stage boundaries" in drawn.get_xlabel()
    assert [list(v.get_xdata()) for v in drawn.get_lines()[1:]] == [[4, 4]]  # the dotted line at progressive.1


def test_loss_plot_gives_each_kind_of_stage_its_own_axis(tmp_path):
    import matplotlib.pyplot as plt

    recs = [{"step": s, "stage": "progressive.0" if s < 5 else "distill", "loss": 10.0 / s} for s in range(1, 10)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    png = report.plot_losses({"student": tmp_path / "m.jsonl"}, tmp_path / "loss.png")
    assert plt.imread(png).shape[0] == round(2 * 2.6 * 110)  # two panels: transfer, then distillation


def test_majority_class_is_the_bundled_dev_samples():
    assert runner.majority_accuracy() == pytest.approx(100 * 444 / 872)  # 444 positive of 872 rows


class _Bench:
    sizes_mb = {"optimized": 20.0}

    def __init__(self, median: float, p90: float) -> None:
        self.rows = [{"backend": "optimized", "median_ms": median, "p90_ms": p90}]


def _latency_results(teacher: tuple[float, float], student: tuple[float, float], repeats: int) -> dict:
    rows = (runner.latency_rows("teacher", _Bench(*teacher), repeats)
            + runner.latency_rows("student", _Bench(*student), repeats))
    return {"latency": rows}


def test_a_noisy_latency_claims_no_speed_up():
    steady = _latency_results((30.0, 33.0), (10.0, 11.0), repeats=20)
    assert [r["reliable"] for r in steady["latency"]] == [True, True]
    assert "3.0x faster than the teacher" in minilm._speed(steady)
    assert runner.latency_cell(runner.latency(steady, "student", "optimized")) == 10.0
    noisy = _latency_results((30.0, 33.0), (10.0, 19.0), repeats=20)  # p90 1.9x the median
    assert [r["reliable"] for r in noisy["latency"]] == [True, False]
    assert "faster" not in minilm._speed(noisy) and "not claimed" in minilm._speed(noisy)
    assert runner.latency_cell(runner.latency(noisy, "student", "optimized")) == "10 (noisy)"
    few = _latency_results((30.0, 30.0), (10.0, 10.0), repeats=2)  # the fast demo's two calls
    assert not any(r["reliable"] for r in few["latency"])


def test_the_shipped_model_is_package_data_of_the_one_copy_in_models():
    assert shipped.SHIPPED.resolve() == (REPO / "models" / "mobilebert-minilm").resolve()
    assert shipped.shipped_model() == shipped.SHIPPED


def test_a_missing_shipped_model_is_one_line_naming_the_way_out(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=rf"^{tmp_path}: the shipped model .* \(this path\); set "
                                                "MOBILEBERT_SHIPPED_MODEL") as e:
        shipped.shipped_model(tmp_path)
    assert "\n" not in str(e.value)
    monkeypatch.setenv(shipped.SHIPPED_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"\$MOBILEBERT_SHIPPED_MODEL"):
        shipped.shipped_model()
    monkeypatch.setenv(shipped.SHIPPED_ENV, str(REPO / "models" / "mobilebert-minilm"))
    assert shipped.shipped_model() == REPO / "models" / "mobilebert-minilm"


def test_a_missing_shipped_model_stops_the_demo_before_any_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="the shipped model"):
        run_demo(tmp_path / "out", fast=True, shipped_model=tmp_path)
    assert not (tmp_path / "out" / "data").exists()
    with pytest.raises(ValueError, match="unknown demo recipe 'bert'; choose minilm or ib-bert"):
        run_demo(tmp_path / "out", recipe="bert")
