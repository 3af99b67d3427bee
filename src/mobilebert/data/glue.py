"""GLUE: task table, readers for the standard folder layout (or the ``datasets`` library), metrics, and
GLUE-server submission files.

The TSVs are read with quoting off (``csv.QUOTE_NONE``): some sentences contain ``"`` and quoting would merge
lines. Handling of bad input, so nothing is dropped silently:

- a missing column, a row with too few fields, a label outside the task's label set or a score that is not a
  number: ``ValueError`` naming the file and line (``on_bad_label="skip"`` skips bad labels instead, counted
  in the log);
- empty lines: skipped and counted in the log.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..atomic import atomic_write_text

log = logging.getLogger(__name__)

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "assets" / "sample"  # sst2_train.tsv, sst2_dev.tsv
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # QNLI/WNLI have long fields


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: where its files are, which columns hold text and label, and how it is scored."""

    name: str  # our key, e.g. "sst2"
    files: dict[str, str]  # split -> path under the GLUE root, e.g. {"dev": "SST-2/dev.tsv"}
    text: tuple[str, ...]  # header names of the one or two text columns
    label: str | None  # header name of the label column (labelled splits)
    labels: tuple[str, ...] | None  # label set as written in the files; None = regression
    metric: Literal["mcc", "corr", "f1_acc", "acc"]
    submission: dict[str, str] = field(default_factory=dict)  # test split -> GLUE-server file name
    no_header: tuple[str, ...] | None = None  # column names for files without a header line (CoLA)
    hf: tuple[str, dict[str, str], tuple[str, ...]] | None = None  # datasets: config, split map, columns
    test_text: tuple[str, ...] | None = None  # text columns of the test file when named differently

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def dev_splits(self) -> list[str]:
        return [s for s in self.files if s.startswith("dev")]

    @property
    def test_splits(self) -> list[str]:
        return [s for s in self.files if s.startswith("test")]


def _std(folder: str) -> dict[str, str]:
    return {s: f"{folder}/{s}.tsv" for s in ("train", "dev", "test")}


_HF_STD = {"train": "train", "dev": "validation", "test": "test"}
_MNLI_FILES = {"train": "MNLI/train.tsv", "dev_matched": "MNLI/dev_matched.tsv",
               "dev_mismatched": "MNLI/dev_mismatched.tsv", "test_matched": "MNLI/test_matched.tsv",
               "test_mismatched": "MNLI/test_mismatched.tsv"}
_MNLI_HF = {"train": "train", "dev_matched": "validation_matched", "dev_mismatched": "validation_mismatched",
            "test_matched": "test_matched", "test_mismatched": "test_mismatched"}
_NLI3 = ("contradiction", "entailment", "neutral")
_NLI2 = ("entailment", "not_entailment")
_BIN = ("0", "1")

TASKS: dict[str, GlueTask] = {t.name: t for t in [
    GlueTask("cola", _std("CoLA"), ("sentence",), "label", _BIN, "mcc", {"test": "CoLA.tsv"},
             no_header=("source", "label", "original_label", "sentence"),
             hf=("cola", _HF_STD, ("sentence",))),
    GlueTask("sst2", _std("SST-2"), ("sentence",), "label", _BIN, "acc", {"test": "SST-2.tsv"},
             hf=("sst2", _HF_STD, ("sentence",))),
    GlueTask("mrpc", _std("MRPC"), ("#1 String", "#2 String"), "Quality", _BIN, "f1_acc", {"test": "MRPC.tsv"},
             hf=("mrpc", _HF_STD, ("sentence1", "sentence2"))),
    GlueTask("stsb", _std("STS-B"), ("sentence1", "sentence2"), "score", None, "corr", {"test": "STS-B.tsv"},
             hf=("stsb", _HF_STD, ("sentence1", "sentence2"))),
    GlueTask("qqp", _std("QQP"), ("question1", "question2"), "is_duplicate", _BIN, "f1_acc", {"test": "QQP.tsv"},
             hf=("qqp", _HF_STD, ("question1", "question2"))),
    GlueTask("mnli", {**_MNLI_FILES, "test_ax": "diagnostic/diagnostic.tsv"}, ("sentence1", "sentence2"),
             "gold_label", _NLI3, "acc",
             {"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv", "test_ax": "AX.tsv"},
             hf=("mnli", {**_MNLI_HF, "test_ax": "ax:test"}, ("premise", "hypothesis"))),
    GlueTask("mnli-mm", {"train": "MNLI/train.tsv", "dev_mismatched": "MNLI/dev_mismatched.tsv",
                         "test_mismatched": "MNLI/test_mismatched.tsv"}, ("sentence1", "sentence2"),
             "gold_label", _NLI3, "acc", {"test_mismatched": "MNLI-mm.tsv"},
             hf=("mnli", _MNLI_HF, ("premise", "hypothesis"))),
    GlueTask("ax", {"test": "diagnostic/diagnostic.tsv"}, ("sentence1", "sentence2"), None, _NLI3, "acc",
             {"test": "AX.tsv"}, hf=("ax", {"test": "test"}, ("premise", "hypothesis"))),
    GlueTask("qnli", _std("QNLI"), ("question", "sentence"), "label", _NLI2, "acc", {"test": "QNLI.tsv"},
             hf=("qnli", _HF_STD, ("question", "sentence"))),
    GlueTask("rte", _std("RTE"), ("sentence1", "sentence2"), "label", _NLI2, "acc", {"test": "RTE.tsv"},
             hf=("rte", _HF_STD, ("sentence1", "sentence2"))),
    GlueTask("wnli", _std("WNLI"), ("sentence1", "sentence2"), "label", _BIN, "acc", {"test": "WNLI.tsv"},
             hf=("wnli", _HF_STD, ("sentence1", "sentence2"))),
]}
# Readable class names for tasks whose files label classes "0"/"1": what predict prints and every export
# (MediaPipe labels.txt, ONNX/LiteRT labels) carries when a checkpoint's id2label holds only those digits.
READABLE_LABELS = {"sst2": ("negative", "positive"), "cola": ("unacceptable", "acceptable"),
                   "mrpc": ("not_equivalent", "equivalent"), "qqp": ("not_duplicate", "duplicate"),
                   "wnli": ("not_entailment", "entailment")}
ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "diagnostic": "ax"}


def readable_labels(task: str | None, names: Sequence[str]) -> tuple[str, ...]:
    """``names`` (a checkpoint's labels in id order), with ``READABLE_LABELS`` in place of bare digits or
    ``LABEL_i`` when ``task`` is a GLUE task that has them (SST-2: ``0``, ``1`` -> negative, positive)."""
    readable = READABLE_LABELS.get(ALIASES.get((task or "").lower(), (task or "").lower()), ())
    if len(readable) == len(names) and all(x.isdigit() or x.startswith("LABEL_") for x in names):
        return readable
    return tuple(names)


def get_task(name: str) -> GlueTask:
    key = name.lower().replace("_", "-")
    key = ALIASES.get(key, key)
    if key not in TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[key]


@dataclass
class GlueExample:
    guid: str  # "<split>-<row>", row counted from 0 as in the GLUE-server index
    text_a: str
    text_b: str | None
    label: int | float | None  # index into task.labels, a float score (STS-B), or None (test)


# ----------------------------------------------------------------------------- reading
def resolve_path(task: GlueTask, data_dir: str | os.PathLike, split: str) -> Path:
    """The file for ``split``; ``data_dir`` may be the GLUE root, the task's own folder, a folder of
    ``<task>_<split>.tsv`` files like the bundled sample (``SAMPLE_DIR``), or the file itself."""
    if split not in task.files:
        raise ValueError(f"task {task.name} has no split {split!r}; splits: {', '.join(task.files)}")
    rel = Path(task.files[split])
    root = Path(data_dir)
    if root.is_file():  # the split's file itself
        return root
    for candidate in (root / rel, root / rel.name, root.parent / rel, root / f"{task.name}_{split}.tsv"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{root / rel}: no {task.name} {split} file (expected the GLUE folder layout)")


OWN_FILE_SUFFIXES = (".csv", ".json", ".jsonl", ".parquet")  # a user's own file, not GLUE's TSV layout


def check_distinct_splits(task: GlueTask | str, data_dir: str | os.PathLike) -> None:
    """Validation is never the training set: refuse a ``data_dir`` (e.g. one ``train.tsv``) from which training
    and a dev split would read the same file (one line pointing at the own-files route)."""
    task = get_task(task) if isinstance(task, str) else task
    train = resolve_path(task, data_dir, "train").resolve()
    for split in task.dev_splits:
        try:
            dev = resolve_path(task, data_dir, split).resolve()
        except FileNotFoundError:
            continue
        if dev == train:
            raise ValueError(f"{data_dir}: {task.name} would train and validate on the same file {train.name}; "
                             f"give the GLUE folder (train.tsv and dev.tsv), or your own split: --task "
                             "text-classification --train FILE --validation FILE")


def read_glue(task: GlueTask | str, data_dir: str | os.PathLike, split: str,
              on_bad_label: Literal["error", "skip"] = "error", limit: int | None = None) -> list[GlueExample]:
    """Examples of one split from the GLUE TSV layout (``limit``: only the first N data rows)."""
    task = get_task(task) if isinstance(task, str) else task
    path = resolve_path(task, data_dir, split)
    if path.suffix.lower() in OWN_FILE_SUFFIXES:
        raise ValueError(f"{path}: a {path.suffix} file, not GLUE's TSV layout; for a file of your own use --task "
                         f"text-classification --train {path} --validation FILE (columns are detected, or name "
                         "them with --text-column / --label-column)")
    labelled = not split.startswith("test") and task.label is not None
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    text_cols = task.test_text if (not labelled and task.test_text) else task.text
    needed = [*text_cols, *([task.label] if labelled else [])]
    first = 0
    if rows and all(c in rows[0] for c in needed):
        names, first = rows[0], 1
    elif task.no_header and (not rows or "index" not in rows[0]):
        names = list(task.no_header)
    else:
        header = rows[0] if rows else []
        missing = [c for c in needed if c not in header]
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (header: {' | '.join(header)})")
    cols = [names.index(c) for c in text_cols]
    label_col = names.index(task.label) if labelled else None
    width = max(cols + ([label_col] if label_col is not None else []))
    examples: list[GlueExample] = []
    empty = bad = 0
    for line_no, row in enumerate(rows[first:], start=first + 1):
        if limit is not None and len(examples) >= limit:
            break
        if not row or all(not c.strip() for c in row):
            empty += 1
            continue
        if len(row) <= width:
            raise ValueError(f"{path}:{line_no}: {len(row)} field(s), expected at least {width + 1}")
        label: int | float | None = None
        if label_col is not None:
            try:
                label = parse_label(task, row[label_col])
            except ValueError as e:
                if on_bad_label == "error":
                    raise ValueError(f"{path}:{line_no}: {e}") from None
                bad += 1
                continue
        texts = [row[c] for c in cols]
        examples.append(GlueExample(f"{split}-{line_no - first - 1}", texts[0],
                                    texts[1] if len(texts) > 1 else None, label))
    if empty:
        log.warning("%s: skipped %d empty line(s)", path, empty)
    if bad:
        log.warning("%s: skipped %d row(s) whose label is outside %s", path, bad, task.labels or "a number")
    if limit is None:  # a limited read (a probe of the file, a --max-eval-examples subset) is said by its caller
        log.info("%s: %d %s examples", path, len(examples), task.name)
    return examples


def parse_label(task: GlueTask, value: str) -> int | float:
    """A label as written in the file -> class index, or a float score for regression."""
    value = value.strip()
    if task.labels is None:
        try:
            score = float(value)
        except ValueError:
            raise ValueError(f"score {value!r} is not a number") from None
        if not math.isfinite(score):
            raise ValueError(f"score {value!r} is not finite")
        return score
    if value not in task.labels:
        raise ValueError(f"label {value!r} is not one of {', '.join(task.labels)}")
    return task.labels.index(value)


def read_glue_datasets(task: GlueTask | str, split: str, limit: int | None = None) -> list[GlueExample]:
    """The same examples through the Hugging Face ``datasets`` library (optional; needs the hub or its cache).

    Class ids are mapped by name for the NLI tasks (the library orders MNLI labels differently) and by
    number for the 0/1 tasks; test rows (label -1) get ``label=None``.
    """
    task = get_task(task) if isinstance(task, str) else task
    try:
        import datasets
    except ImportError:
        raise ValueError("the `datasets` library is not installed (pip install datasets), "
                         "or read the GLUE TSV folder instead") from None
    if task.hf is None or split not in task.hf[1]:
        raise ValueError(f"task {task.name} has no split {split!r} in the datasets library")
    config, splits, columns = task.hf
    hf_split = splits[split]
    if ":" in hf_split:
        config, hf_split = hf_split.split(":")
    ds = datasets.load_dataset("glue", config, split=hf_split)
    names = getattr(ds.features.get("label"), "names", None)
    examples = []
    for i, row in enumerate(ds):
        if limit is not None and i >= limit:
            break
        raw = row.get("label", -1)
        if task.is_regression:
            label = float(raw) if raw is not None and raw >= 0 else None
        elif raw is None or raw < 0:
            label = None
        else:
            label = parse_label(task, str(raw) if task.labels == _BIN or not names else names[raw])
        texts = [row[c] for c in columns]
        examples.append(GlueExample(f"{split}-{i}", texts[0], texts[1] if len(texts) > 1 else None, label))
    return examples


def load_examples(task: GlueTask | str, split: str, data_dir: str | os.PathLike | None = None,
                  source: Literal["tsv", "datasets"] = "tsv", **kw) -> list[GlueExample]:
    """One entry point for both sources; ``data_dir`` is required for TSV."""
    if source == "datasets":
        return read_glue_datasets(task, split, limit=kw.get("limit"))
    if data_dir is None:
        raise ValueError("a GLUE data directory is required (or source='datasets')")
    return read_glue(task, data_dir, split, **kw)


# ----------------------------------------------------------------------------- metrics
def compute_metrics(task: GlueTask | str, predictions: Sequence, references: Sequence) -> dict[str, float]:
    """GLUE's metrics for ``task`` plus ``score``: the mean of them, as the GLUE leaderboard averages.

    Predictions are class indices (or floats for STS-B). Correlations of constant predictions are
    undefined; they are reported as 0.0 (as scikit-learn does for Matthews) with a warning.
    """
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    task = get_task(task) if isinstance(task, str) else task
    p, r = np.asarray(predictions), np.asarray(references)
    if p.shape != r.shape or p.ndim != 1 or len(p) == 0:
        raise ValueError(f"predictions {p.shape} and references {r.shape} must be equal-length, non-empty 1-D")
    if task.metric == "corr":
        p, r = p.astype(np.float64), r.astype(np.float64)
        if np.ptp(p) == 0 or np.ptp(r) == 0:
            log.warning("%s: constant predictions or references; correlations reported as 0", task.name)
            out = {"pearson": 0.0, "spearmanr": 0.0}
        else:
            out = {"pearson": float(pearsonr(p, r)[0]), "spearmanr": float(spearmanr(p, r)[0])}
    elif task.metric == "mcc":
        out = {"mcc": float(matthews_corrcoef(r, p))}
    elif task.metric == "f1_acc":
        out = {"f1": float(f1_score(r, p, pos_label=1, zero_division=0.0)),
               "accuracy": float(accuracy_score(r, p))}
    else:
        out = {"accuracy": float(accuracy_score(r, p))}
    out["score"] = float(np.mean(list(out.values())))
    return out


# ----------------------------------------------------------------------------- submission
def write_submission(task: GlueTask | str, split: str, predictions: Sequence, out_dir: str | os.PathLike) -> Path:
    """A GLUE-server file (``index<TAB>prediction``), e.g. ``SST-2.tsv``; written atomically.

    Predictions are class indices (written as the label string: 0/1 or entailment/...) or STS-B scores
    (clipped to 0..5, three decimals)."""
    task = get_task(task) if isinstance(task, str) else task
    if split not in task.submission:
        raise ValueError(f"task {task.name}: no GLUE-server file for split {split!r}")
    lines = ["index\tprediction"]
    for i, pred in enumerate(predictions):
        if task.is_regression:
            lines.append(f"{i}\t{min(5.0, max(0.0, float(pred))):.3f}")
        else:
            lines.append(f"{i}\t{task.labels[int(pred)]}")
    path = Path(out_dir) / task.submission[split]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path

