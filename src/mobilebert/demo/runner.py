"""The demo runner: a recipe is a list of named steps; the runner runs them in order, times each, writes
``results.json`` and ``report.md``. The steps both recipes share (SST-2 fine-tuning, int8 ONNX export, latency
rows) live here; what differs lives in :mod:`.minilm` and :mod:`.ib_bert`."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..data import glue
from ..finetune.evaluate import onnx_glue_accuracy
from ..recipes.finetune import FinetuneConfig, train
from ..sanity import majority_baseline
from .report import markdown_table, write_report

log = logging.getLogger(__name__)

# Written on every plot title and after the summary of a fast run.
FAST_NOTE = "fast mode: tiny step counts, numbers not meaningful"
# A latency whose p90 exceeds this multiple of its median, or that rests on fewer timed calls, was taken on a
# busy machine: the report shows it but claims no speed-up from it (the demo runs wherever it is started).
SPREAD_LIMIT = 1.25
MIN_REPEATS = 5


@dataclass(kw_only=True)
class DemoSizes:
    """Step counts and sizes the shared steps read; each recipe adds its own, and its fast set is the full one
    shrunk (``dataclasses.replace``) so that the test suite runs every step in a minute or two."""

    seq: int
    batch_size: int
    finetune_epochs: int
    finetune_lr: float
    finetune_rows: int | None  # None: all 2,000 sample rows
    eval_rows: int | None  # None: all 872 dev rows
    bench_repeats: int


class StageTimes(dict):
    """Seconds per step, for the report's "time per stage" table: ``mark(name)`` closes a step."""

    def __init__(self) -> None:
        super().__init__()
        self._t0 = time.perf_counter()

    def mark(self, name: str) -> None:
        self[name] = round(time.perf_counter() - self._t0 - sum(self.values()), 1)
        log.info("demo: %s done (%.0f s)", name, self[name])


@dataclass
class Run:
    """What the steps share: each step reads what earlier ones left in ``paths`` and ``checkpoints`` and adds
    its numbers to ``results`` (which becomes results.json)."""

    out: Path
    sizes: Any  # the recipe's DemoSizes subclass
    fast: bool
    results: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)  # inputs and intermediate folders
    checkpoints: dict[str, str] = field(default_factory=dict)  # name -> folder, listed in the report


@dataclass(frozen=True)
class Step:
    name: str  # the "time per stage" column
    run: Callable[[Run], None]


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str  # report.md's heading
    full: DemoSizes
    fast: DemoSizes
    steps: tuple[Step, ...]
    summary: Callable[[dict[str, Any]], str]  # the report's first paragraph
    summary_rows: Callable[[dict[str, Any]], list[dict[str, Any]]]  # one row per model
    plots: Callable[[Path, dict[str, Any], str], dict[str, Path | None]]  # (out, results, note) -> images


def run_recipe(recipe: Recipe, out_dir: str | Path, fast: bool, paths: dict[str, Path] | None = None
               ) -> dict[str, Any]:
    """Every step of ``recipe`` in order; returns (and writes to ``out_dir/results.json``) the numbers the
    report shows. ``paths`` are inputs found before any work (e.g. the shipped model)."""
    sizes = recipe.fast if fast else recipe.full
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = Run(out, sizes, fast, {"recipe": recipe.name, "fast": fast, "sizes": asdict(sizes)}, dict(paths or {}))
    timings = StageTimes()
    for step in recipe.steps:
        step.run(run)
        timings.mark(step.name)
    results = {**run.results, "timings_s": dict(timings), "checkpoints": run.checkpoints}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    make_report(recipe, out, results)
    return results


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of a recipe's summary rows; the columns are the rows' keys, in order of appearance."""
    return markdown_table(rows, list(dict.fromkeys(k for r in rows for k in r)))


def make_report(recipe: Recipe, out: Path, results: dict[str, Any]) -> Path:
    """report.md + PNG plots, every number taken from ``results`` (which is results.json) or the metrics files."""
    note = FAST_NOTE if results["fast"] else ""
    images = recipe.plots(out, results, note)
    sections = [
        ("Summary", recipe.summary(results) + (f" ({note})" if note else "")),
        ("Results", summary_table(recipe.summary_rows(results))),
        ("Latency and size (batch 1, seq 128, 2 threads)",
         markdown_table(results["latency"], ["name", "latency_ms", "p90_ms", "size_mb", "reliable"])
         + f"\n\nreliable: False where the timed calls spread too much (p90 above {SPREAD_LIMIT}x the median) or "
         f"were fewer than {MIN_REPEATS}; no speed-up is claimed from those."),
        ("Plots", "\n\n".join(f"![{k}]({p.relative_to(out)})" for k, p in images.items() if p is not None)),
        ("Time per stage (s)", markdown_table([results["timings_s"]], list(results["timings_s"]))),
        ("Checkpoints", "\n".join(f"- {k}: `{v}`" for k, v in results["checkpoints"].items())),
    ]
    return write_report(out / "report.md", recipe.title, sections)


# ----------------------------------------------------------------------------- steps both recipes run
def finetune_sst2(run: Run, lrs: dict[str, float]) -> None:
    """Fine-tune each named checkpoint on the SST-2 sample (one seed); the dev accuracy goes to results, next
    to the accuracy of always answering the majority class."""
    sizes, out = run.sizes, run.out
    accuracy = {}
    for name, lr in lrs.items():
        res = train(FinetuneConfig(task="sst2", data=str(glue.SAMPLE_DIR), model=str(run.checkpoints[name]),
                                   out=str(out / "finetune" / name), lr=lr, batch_size=32,
                                   epochs=sizes.finetune_epochs, max_seq_length=64, seeds=[0],
                                   max_train_examples=sizes.finetune_rows, max_eval_examples=sizes.eval_rows))
        accuracy[name] = 100 * res["summary"]["dev"]["accuracy"]["mean"]
        run.checkpoints[f"{name}-sst2"] = str(out / "finetune" / name / "seed-0" / "best")
    run.results["sst2_dev_accuracy"] = accuracy
    run.results["sst2_majority_class_accuracy"] = majority_accuracy()


def majority_accuracy() -> float:
    """Accuracy (%) of always answering the commonest label of the SST-2 dev sample (all of it, also when a fast
    run scores fewer rows): the floor a fine-tuned model has to beat."""
    found = majority_baseline("sst2", glue.SAMPLE_DIR, "dev")
    assert found is not None, "the bundled SST-2 dev sample is labelled"
    return 100 * found[1]


def export_int8(run: Run, names: list[str]) -> dict[str, float]:
    """int8 ONNX of each named fine-tuned checkpoint, scored on the same dev rows: name -> accuracy (%)."""
    from ..deploy.onnx import export_checkpoint

    accuracy = {}
    for name in names:
        finetuned = run.checkpoints[f"{name}-sst2"]
        export_dir = run.out / "export" / f"{name}-onnx"
        export_checkpoint(finetuned, export_dir, int8=True, overwrite=True)
        accuracy[name] = onnx_glue_accuracy(export_dir, finetuned, "sst2", glue.SAMPLE_DIR, int8=True,
                                            limit=run.sizes.eval_rows)
        run.checkpoints[f"{name}-onnx"] = str(export_dir)
    return accuracy


def latency_rows(name: str, res: Any, repeats: int) -> list[dict[str, Any]]:
    """One report row per backend of a ``deploy.bench.BenchResult``; ``reliable`` is False where the timed
    calls spread too much (or were too few) to support a claim."""
    return [{"name": f"{name} {r['backend']}", "model": name, "backend": r["backend"],
             "latency_ms": r["median_ms"], "p90_ms": r["p90_ms"],
             "size_mb": res.sizes_mb.get(r["backend"], float("nan")),
             "reliable": repeats >= MIN_REPEATS and r["p90_ms"] <= SPREAD_LIMIT * r["median_ms"]}
            for r in res.rows]


def latency(results: dict[str, Any], model: str, backend: str) -> dict[str, Any] | None:
    """The latency row of ``model`` on ``backend``, if it was timed."""
    return next((r for r in results["latency"] if r["model"] == model and r["backend"] == backend), None)


def latency_cell(row: dict[str, Any] | None) -> float | str:
    """A summary-table cell: the median in ms, flagged when the row is not reliable."""
    if row is None:
        return "-"
    return row["latency_ms"] if row.get("reliable", True) else f"{row['latency_ms']:.4g} (noisy)"
