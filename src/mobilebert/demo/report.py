"""The demo's plots and ``report.md``: loss curves per stage and per layer, scores, latency against size.

Every number in the report is read from the run's metrics files or results.json, so the report and the files
cannot disagree. matplotlib is an optional extra; without it the report is written with tables only. Every plot
takes a ``note`` that its title carries (the fast mode says so on each image, not only in the text).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..atomic import atomic_path, atomic_write_text
from ..markdown import table
from ..train.metrics import read_metrics

log = logging.getLogger(__name__)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib not installed: report.md without plots")
        return None
    return plt


def _title(text: str, note: str) -> str:
    return f"{text}\n({note})" if note else text  # a line of its own: one long line ran off the figure


# A run's ``loss`` changes meaning from stage to stage (transfer terms, then MLM distillation); each kind gets
# its own axis so that no axis mixes two quantities.
STAGE_KINDS = (("progressive", "layer-wise transfer"), ("joint", "layer-wise transfer"),
               ("auxiliary", "transfer + distillation"), ("distill", "pre-training distillation"),
               ("scratch", "MLM + NSP"), ("pretrain", "MLM + NSP"))


def _stage_kind(stage: Any) -> str:
    name = str(stage or "")
    return next((kind for prefix, kind in STAGE_KINDS if name.startswith(prefix)), name or "loss")


def _readable_y(ax: Any, values: list[float]) -> None:
    """Log scale only when the values span more than a decade, with a labelled tick at 1, 2 and 5 of each
    decade (a bare log axis over one decade shows a single label)."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3)


def plot_losses(runs: dict[str, Path], out_png: Path, key: str = "loss", note: str = "") -> Path | None:
    """``key`` against step: one panel per run and kind of stage (transfer, distillation, MLM + NSP), each with
    its own y axis; stage boundaries inside a panel (progressive transfer's layers) as dotted lines, and the x
    label says so only on a panel that has them."""
    plt = _pyplot()
    if plt is None:
        return None
    panels: list[tuple[str, list[dict]]] = []
    for name, path in runs.items():
        by_kind: dict[str, list[dict]] = defaultdict(list)
        for r in read_metrics(path):
            if isinstance(r.get(key), (int, float)):
                by_kind[_stage_kind(r.get("stage"))].append(r)
        panels += [(f"{name}: {kind}" if len(runs) > 1 or len(by_kind) > 1 else name, recs)
                   for kind, recs in by_kind.items()]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), squeeze=False)
    for ax, (title, recs) in zip(axes[:, 0], panels, strict=True):
        ax.plot([r["step"] for r in recs], [r[key] for r in recs])
        boundaries = [b["step"] for a, b in zip(recs, recs[1:], strict=False) if a.get("stage") != b.get("stage")]
        for step in boundaries:
            ax.axvline(step, color="grey", linestyle=":", linewidth=0.8)
        _readable_y(ax, [r[key] for r in recs])
        ax.set(ylabel=key, title=_title(title, note),
               xlabel="step (dotted: stage boundaries)" if boundaries else "step")
    return _save(fig, out_png)


def plot_layer_losses(metrics: Path, out_png: Path, term: str = "fmt", note: str = "") -> Path | None:
    """Per-layer transfer loss (keys ``loss/<term>/layer_<i>``) against step: each falls during its phase."""
    plt = _pyplot()
    if plt is None:
        return None
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in read_metrics(metrics):
        for k, v in r.items():
            if k.startswith(f"loss/{term}") and isinstance(v, (int, float)):
                series[k].append((r["step"], v))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in sorted(series):
        steps, vals = zip(*series[k], strict=True)
        ax.plot(steps, vals, label=k.split("/")[-1])
    _readable_y(ax, [v for pts in series.values() for _, v in pts])
    ax.set(xlabel="step", ylabel=f"{term} loss", title=_title(f"{term} transfer loss per layer", note))
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out_png)


def plot_curves(runs: dict[str, Path], out_png: Path, key: str, ylabel: str,
                reference: tuple[str, float] | None = None, note: str = "") -> Path | None:
    """One evaluation metric (``key``) against step per run, on a linear axis; ``reference`` adds a labelled
    horizontal line (e.g. the teacher's score)."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = 0
    for name, path in runs.items():
        recs = [r for r in read_metrics(path) if isinstance(r.get(key), (int, float))]
        if recs:
            ax.plot([r["step"] for r in recs], [r[key] for r in recs], marker="o", markersize=3, label=name)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    if reference is not None:
        ax.axhline(reference[1], color="grey", linestyle="--", linewidth=1, label=f"{reference[0]} ({reference[1]:.1f})")
    ax.set(xlabel="step", ylabel=ylabel, title=_title(f"{ylabel} during training", note))
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out_png)


def plot_bars(values: dict[str, float], out_png: Path, ylabel: str, title: str, note: str = "",
              limits: tuple[float, float] | None = None, baseline: tuple[str, float] | None = None) -> Path | None:
    """One bar per entry, each labelled with its value. The axis is not zoomed onto the bars (a zoom made
    46-49% look like a spread); ``limits`` fixes it (0-100 for an accuracy) and ``baseline`` draws a labelled
    reference line, e.g. the accuracy of always answering the majority class."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(values)), 3.5))
    names = list(values)
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3"]
    bars = ax.bar(names, [values[n] for n in names], color=[colours[i % len(colours)] for i in range(len(names))])
    for b, n in zip(bars, names, strict=True):
        ax.annotate(f"{values[n]:.1f}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom")
    if baseline is not None:
        ax.axhline(baseline[1], color="black", linestyle="--", linewidth=1,
                   label=f"{baseline[0]} ({baseline[1]:.1f})")
        ax.legend(fontsize=8, loc="lower right")
    if limits is not None:
        ax.set_ylim(*limits)
    ax.set(ylabel=ylabel, title=_title(title, note))
    ax.tick_params(axis="x", labelsize=8, rotation=15)
    return _save(fig, out_png)


def plot_latency_vs_size(rows: list[dict[str, Any]], out_png: Path, note: str = "") -> Path | None:
    """Latency (ms) against size on disk (MB), one point per model/backend, named in a legend (labels written
    next to the points overlapped where models are close); a latency whose row is not ``reliable`` is drawn
    hollow and named so."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    markers = "osD^v<>Ph*X"
    for k, r in enumerate(rows):
        steady = r.get("reliable", True)
        colour = f"C{k % 10}"
        ax.scatter(r["size_mb"], r["latency_ms"], marker=markers[k % len(markers)], s=45,
                   facecolors=colour if steady else "none", edgecolors=colour,
                   label=f"{r['name']} ({r['latency_ms']:.1f} ms{'' if steady else ', unreliable'}, "
                         f"{r['size_mb']:.1f} MB)")
    ax.set(xlabel="size on disk (MB)", ylabel="latency (ms, median)", title=_title("latency against size", note))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, out_png)


def accuracy_and_latency(results: dict[str, Any], accuracy: dict[str, float], folder: Path,
                         note: str) -> dict[str, Path | None]:
    """The two plots every demo ends with: SST-2 accuracy (0-100, the majority class drawn) and latency vs size."""
    return {
        "accuracy": plot_bars(accuracy, folder / "accuracy.png", "accuracy %", "SST-2 sample dev accuracy", note=note,
                              limits=(0, 100), baseline=("majority class", results["sst2_majority_class_accuracy"])),
        "latency against size": plot_latency_vs_size(results["latency"], folder / "latency_size.png", note=note),
    }


def _save(fig, out_png: Path) -> Path:
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out_png


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """``rows`` (dicts) as a markdown table of ``columns``; a missing key is an empty cell."""
    return table(columns, ([r.get(c, "") for c in columns] for r in rows), floats=".4g")


def write_report(path: Path, title: str, sections: list[tuple[str, str]]) -> Path:
    """``sections`` are (heading, markdown body) pairs; written atomically."""
    body = [f"# {title}", ""]
    for heading, text in sections:
        body += [f"## {heading}", "", text.strip(), ""]
    atomic_write_text(path, "\n".join(body))
    return path
