"""Predictions of a fine-tuned model, for texts in memory or for a file of any size streamed to another file.

One :class:`Predictor` per model turns texts (and second texts) into the columns a prediction adds to a row:

* classification: ``prediction`` (the label name) and ``score`` (its probability);
* multi-label: ``prediction`` (the list of labels whose probability reaches their saved threshold) and ``score``
  (their probabilities, same order);
* regression: ``prediction`` (the score);
* token classification: ``entities``, each ``{"type", "start", "end", "text", "score"}`` with character offsets
  into the original text (``data.tagging``);
* question answering (SQuAD): ``prediction`` (the answer text) and ``score``.

Label names are the checkpoint's own (``CheckpointInfo.label_names``: readable for GLUE tasks), the same names
every export carries. The model may be any callable (``evaluate.run_model``): PyTorch, ONNX Runtime, ...

A file (:func:`predict_file`) is read as what it is: a table (CSV, TSV, JSON lines / records, Parquet, a
``save_to_disk`` folder; ``data.files``, memory-mapped) by its columns, or a ``.txt`` file as one input per
line. Rows go through the model ``chunk`` at a time and are written as they come, into a temp file renamed into
place at the end, so memory stays constant whatever the file's size; the output format follows the output
file's suffix.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_path
from ..checkpoint import inspect
from ..data import files, glue, squad
from ..data.finetuning import Encoded, encode_squad
from ..data.glue import readable_labels
from ..data.tagging import encode_text, entities, merge_windows
from ..data.tasks import TaskSetup, task_name
from ..deploy.runtime import runtime_model
from ..load import load_model
from ..progress import Progress
from ..tokenizer import MobileBertTokenizer
from .evaluate import decode_squad, run_model
from .load import load_task_model

log = logging.getLogger(__name__)

Input = str | tuple[str, str]  # a sentence, a sentence pair, or (question, context)
KINDS = ("classification", "multi-label", "regression", "token", "qa")
OUTPUT_FORMATS = (".csv", ".tsv", ".jsonl", ".parquet")  # what --output may end in
LINE_FILES = ("", ".txt", ".text")  # read as one input per line (a TAB between the two texts of a pair)
CHUNK = 1024  # rows read, predicted and written at a time by predict_file


@dataclass
class Predictor:
    """A model with what it takes to turn texts into prediction columns (build one with :func:`load_predictor`)."""

    model: Callable[..., Any]
    tokenizer: MobileBertTokenizer
    kind: str  # one of KINDS
    labels: tuple[str, ...]  # class / tag names in id order (readable); () for regression and QA
    max_seq_length: int = 128
    pairs: bool | None = None  # the model reads text pairs; None: not known (either is accepted)
    columns: dict[str, str | None] = field(default_factory=dict)  # the columns it was trained on (role -> name)
    thresholds: np.ndarray | None = None  # multi-label: per-label decision thresholds
    spec: TaskSetup | None = None  # QA decoding settings
    batch_size: int = 32

    @property
    def added_columns(self) -> list[str]:
        """The columns a prediction adds to each row."""
        return {"token": ["entities"], "regression": ["prediction"]}.get(self.kind, ["prediction", "score"])

    def __call__(self, texts: Sequence[str], pairs: Sequence[str] | None = None, top_k: int = 1
                 ) -> list[dict[str, Any]]:
        """The added columns of each row (``top`` too, the ``top_k`` best (label, probability), when
        ``top_k`` > 1 for classifiers; ``alternatives`` for QA)."""
        if not texts:
            return []
        if self.kind == "qa":
            return self._qa(texts, pairs, top_k)
        if pairs is not None and self.kind == "token":
            raise ValueError("a token classifier tags single texts; it takes no second text")
        if self.kind == "token":
            return self._token(texts)
        enc = self.tokenizer(list(texts), list(pairs) if pairs is not None else None,
                             max_length=self.max_seq_length, truncation=True)
        outs = self._run(Encoded(enc["input_ids"], enc["token_type_ids"], [None] * len(texts)))
        logits = np.stack(outs)  # (N, C)
        if self.kind == "regression":
            return [{"prediction": float(o[0])} for o in logits]
        if self.kind == "multi-label":
            probs = 1 / (1 + np.exp(-logits))
            thr = self.thresholds if self.thresholds is not None else 0.5
            rows = []
            for p, keep in zip(probs, probs >= thr, strict=True):
                ids = [i for i in np.argsort(-p) if keep[i]]
                rows.append({"prediction": [self.labels[i] for i in ids], "score": [float(p[i]) for i in ids]})
            return rows
        probs = torch.softmax(torch.from_numpy(logits), -1).numpy()
        rows = []
        for p in probs:
            ranked = np.argsort(-p)[:max(1, top_k)]
            row: dict[str, Any] = {"prediction": self.labels[ranked[0]], "score": float(p[ranked[0]])}
            if top_k > 1:
                row["top"] = [(self.labels[i], float(p[i])) for i in ranked]
            rows.append(row)
        return rows

    def _run(self, enc: Encoded) -> list:
        return run_model(self.model, enc, self.batch_size, self.tokenizer.pad_token_id, desc="predict")

    def _token(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        windows = encode_text(self.tokenizer, texts, self.max_seq_length)  # long texts: overlapping windows
        rows = windows.rows
        outs = self._run(Encoded(rows.input_ids, rows.token_type_ids, [None] * len(rows)))
        preds, scores = [], []
        for i, o in enumerate(outs):
            probs = torch.softmax(torch.from_numpy(o[:len(rows.input_ids[i])]), -1).numpy()  # (T, C) real pieces
            preds.append(probs.argmax(-1))
            scores.append(probs.max(-1))
        outside = self.labels.index("O") if "O" in self.labels else 0
        return [{"entities": entities(text, spans, [self.labels[t] for t in ids], word_scores)}
                for text, spans, (ids, word_scores) in zip(texts, windows.spans,
                                                           merge_windows(windows, preds, scores, outside), strict=True)]

    def _qa(self, questions: Sequence[str], contexts: Sequence[str] | None, top_k: int) -> list[dict[str, Any]]:
        if contexts is None:
            raise ValueError("a question-answering model needs question and context pairs")
        examples = squad.examples_from_pairs(zip(questions, contexts, strict=True))
        spec = self.spec or TaskSetup("squad")
        features = squad.build_features(examples, self.tokenizer, spec.max_seq_length, spec.doc_stride,
                                        spec.max_query_length)
        preds = decode_squad(examples, features, self._run(encode_squad(features)), spec)
        return [{"prediction": p.text, "score": p.probability,
                 "alternatives": [(c["text"], c["probability"]) for c in p.nbest[1:top_k]]}
                for p in preds.values()]


def _task_setup(meta: dict[str, Any]) -> TaskSetup:
    """finetune.json as a TaskSetup, keeping only the fields this version knows."""
    known = {f.name for f in fields(TaskSetup)}
    return TaskSetup(**{k: v for k, v in meta.items() if k in known})


def load_predictor(model_dir: str | os.PathLike, task: str | None = None, batch_size: int = 32,
                   allow_untrained_head: bool = False, backend: str = "pytorch") -> Predictor:
    """The model of a fine-tuned folder as a :class:`Predictor`: what kind of prediction, which labels,
    columns, sequence length and thresholds, all read from the folder (config.json, finetune.json); ``task``
    only for folders without finetune.json. ``allow_untrained_head`` builds a GLUE / SQuAD head on a checkpoint
    without one (its outputs are random). ``backend``: the runtime that runs it (``deploy.runtime.BACKENDS``)."""
    info = inspect(model_dir)
    meta = dict(info.finetune or {})
    name = meta.get("task") or (task_name(task) if task else None)
    if name is not None:
        meta["task"] = name
    trained = info.head in ("classifier", "qa", "token")
    if trained:
        model = load_model(model_dir)  # its own head, every weight required
    elif allow_untrained_head and name is not None:
        model = load_task_model(_task_setup(meta), model_dir).eval()
    else:
        raise ValueError(f"{model_dir}: {info.architecture or 'the checkpoint'} has no trained task head "
                         "(fine-tune it first)")
    config = model.config
    head = "classifier" if not trained and name not in ("squad", "squad2") else info.head
    if not trained and head == "classifier":
        labels = readable_labels(name, glue.get_task(name).labels or ("score",))
    else:
        labels = info.label_names
    if head == "qa":
        kind = "qa"
    elif head == "token":
        kind = "token"
    elif config.num_labels == 1:
        kind = "regression"
    elif getattr(config, "problem_type", None) == "multi_label_classification" or meta.get("multi_label"):
        kind = "multi-label"
    else:
        kind = "classification"
    columns = dict(meta.get("columns") or {})
    pairs: bool | None = None
    if name in glue.TASKS:
        t = glue.get_task(name)
        pairs = len(t.text) == 2
        columns = {"text": t.text[0], "text_pair": t.text[1] if pairs else None, **columns}
    elif kind == "qa":
        pairs, columns = True, {"text": "question", "text_pair": "context", **columns}
    elif kind == "token":
        pairs = False
    elif meta.get("columns") is not None:
        pairs = columns.get("text_pair") is not None
    thresholds = meta.get("thresholds")
    if isinstance(thresholds, dict):
        thresholds = [thresholds[x] for x in labels]
    seq = min(int(meta.get("max_seq_length") or 128), config.max_position_embeddings)
    tokenizer = MobileBertTokenizer.from_pretrained(model_dir)
    model = runtime_model(model, backend, tokenizer, seq)
    return Predictor(model, tokenizer, kind, tuple(labels) if kind != "qa" else (), seq, pairs, columns,
                     np.asarray(thresholds, dtype=np.float32) if thresholds else None,
                     _task_setup(meta) if kind == "qa" else None, batch_size)


def predict_rows(predictor: Predictor, inputs: Sequence[Input], top_k: int = 1) -> list[dict[str, Any]]:
    """Rows for inputs in memory: ``text`` (and ``text_pair``; for QA ``question``, ``context``) plus the
    prediction's columns."""
    if not inputs:
        return []
    pairs = [x if isinstance(x, tuple) else (x, None) for x in inputs]
    has_pair = pairs[0][1] is not None
    if any((b is not None) != has_pair for _, b in pairs):
        raise ValueError("give all inputs as single sentences or all as pairs, not a mix")
    if predictor.pairs is not None and has_pair != predictor.pairs and predictor.kind != "qa":
        raise ValueError(f"the model takes {'pairs' if predictor.pairs else 'single sentences'}")
    a = [x for x, _ in pairs]
    b = [y for _, y in pairs] if has_pair else None
    keys = ("question", "context") if predictor.kind == "qa" else ("text", "text_pair")
    return [{keys[0]: x, **({keys[1]: y} if y is not None else {}), **out}
            for (x, y), out in zip(pairs, predictor(a, b, top_k), strict=True)]


def predict(model_dir: str | Path, inputs: Sequence[Input], task: str | None = None, batch_size: int = 32,
            top_k: int = 1) -> list[dict[str, Any]]:
    """``predict_rows`` of the PyTorch model in a fine-tuned folder (``task`` for folders without finetune.json)."""
    return predict_rows(load_predictor(model_dir, task, batch_size), inputs, top_k)


# ----------------------------------------------------------------------------- files in
@dataclass
class InputFile:
    """A file of inputs: its columns (all kept in the output), the text column(s) used, and its rows in batches."""

    path: Path
    columns: list[str]
    text: str
    text_pair: str | None
    rows: int
    schema: Any = None  # pyarrow schema of the columns (tables); None: every column is text
    _table: Any = None  # datasets.Dataset (memory-mapped) of a table file
    _pairs: bool = False

    def batches(self, size: int) -> Iterator[dict[str, list]]:
        """Column -> values, ``size`` rows at a time, in file order (constant memory)."""
        if self._table is not None:
            yield from self._table.iter(batch_size=size)
            return
        batch: dict[str, list] = {c: [] for c in self.columns}
        with self.path.open(encoding="utf-8-sig") as f:
            for n, line in enumerate(f, 1):
                parts = line.rstrip("\r\n").split("\t")
                want = 2 if self._pairs else 1
                if len(parts) != want and line.strip():
                    raise files.DataFileError(f"{self.path}:{n}: {len(parts)} TAB-separated fields, expected "
                                              f"{want} ({'a pair: A TAB B' if self._pairs else 'one text'})")
                parts = (parts + [""])[:want]
                for c, v in zip(self.columns, parts, strict=True):
                    batch[c].append(v)
                if len(batch[self.text]) == size:
                    yield batch
                    batch = {c: [] for c in self.columns}
        if batch[self.text]:
            yield batch


def _count_lines(path: Path) -> int:
    n, last = 0, b"\n"
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def open_input(path: str | os.PathLike, predictor: Predictor, text: str | None = None,
               text_pair: str | None = None, delimiter: str | None = None) -> InputFile:
    """The file ``path`` read as what it is: a table by its columns (the ones given, else the ones the model
    was trained on when the file has them, else the usual names, ``data.files.choose_columns``), or a text
    file as one input per line. One-line errors name the file (and the line)."""
    path = Path(path)
    pairs = predictor.pairs
    if path.is_file() and path.suffix.lower() in LINE_FILES:
        files.check_text_file(path)
        if text or text_pair:
            raise files.DataFileError(f"{path}: a text file has no columns; --text-column and "
                                      "--text-pair-column are for tables (.csv, .tsv, .jsonl, .parquet)")
        if pairs is None:  # not known from the model: the first line says
            with path.open(encoding="utf-8-sig") as f:
                pairs = "\t" in next((x for x in f if x.strip()), "")
        cols = ["text", "text_pair"] if pairs else ["text"]
        return InputFile(path, cols, "text", "text_pair" if pairs else None, _count_lines(path), _pairs=pairs)
    present = files.column_names(path, delimiter)
    trained = predictor.columns
    if text is None and trained.get("text") in present:
        text = trained["text"]
        if text_pair is None and pairs and trained.get("text_pair") in present:
            text_pair = trained["text_pair"]
    if text_pair is not None and pairs is False:
        raise files.DataFileError(f"{path}: --text-pair-column {text_pair}: the model reads single texts")
    cols = files.choose_columns(path, present, text, text_pair, None, need_label=False)
    pair = cols.text_pair if pairs is not False else None
    if pairs and pair is None:
        raise files.DataFileError(f"{path}: the model reads text pairs; name the second text's column with "
                                  f"--text-pair-column (the file has {', '.join(map(repr, present))})")
    taken = [c for c in present if c in ("prediction", "score", "entities")]
    if taken:
        raise files.DataFileError(f"{path}: already has a column {taken[0]!r}, which predict adds; rename it")
    table = files.read_table(path, None, delimiter)
    log.info("%s: %d rows; text column %r%s", path, len(table), cols.text,
             f", text pair column {pair!r}" if pair else "")
    return InputFile(path, list(table.column_names), cols.text, pair, len(table), table.data.schema, table)


# ----------------------------------------------------------------------------- files out
class RowWriter:
    """Rows appended to ``path`` as they come, in the format its suffix names; the file appears (renamed from a
    temp file) only when :meth:`close` is reached without error."""

    def __init__(self, path: str | os.PathLike, columns: list[str], added: list[str], predictor: Predictor,
                 schema: Any = None) -> None:
        self.path = Path(path)
        self.fmt = self.path.suffix.lower()
        if self.fmt not in OUTPUT_FORMATS:
            raise ValueError(f"{self.path}: unknown output format {self.fmt or '(no suffix)'!r}; use "
                             f"{', '.join(OUTPUT_FORMATS)}")
        self.columns, self.added = columns, added
        self._ctx = atomic_path(self.path)
        self.tmp = self._ctx.__enter__()
        self._f: Any = None
        self._writer: Any = None
        if self.fmt == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            base = schema if schema is not None else pa.schema([(c, pa.string()) for c in columns])
            self.schema = pa.schema([*base, *(pa.field(c, _arrow_type(predictor, c)) for c in added)])
            self._writer = pq.ParquetWriter(str(self.tmp), self.schema)
        else:
            self._f = self.tmp.open("w", encoding="utf-8", newline="")
            if self.fmt == ".csv":
                self._writer = csv.writer(self._f)
            if self.fmt != ".jsonl":
                self._line(columns + added)

    def write(self, batch: dict[str, list], predictions: list[dict[str, Any]]) -> None:
        if self.fmt == ".parquet":
            import pyarrow as pa

            data = {**{c: batch[c] for c in self.columns},
                    **{c: [p[c] for p in predictions] for c in self.added}}
            self._writer.write_table(pa.Table.from_pydict(data, schema=self.schema))
            return
        n = len(predictions)
        for i in range(n):
            row = {**{c: batch[c][i] for c in self.columns}, **{c: predictions[i][c] for c in self.added}}
            if self.fmt == ".jsonl":
                self._f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            else:
                self._line([_cell(row[c], self.fmt == ".tsv") for c in self.columns + self.added])

    def _line(self, cells: list[str]) -> None:
        """A CSV record (quoted where needed), or a TSV line (TSV has no quoting: ``_cell`` removed tabs)."""
        if self.fmt == ".csv":
            self._writer.writerow(cells)
        else:
            self._f.write("\t".join(cells) + "\n")

    def close(self, error: BaseException | None = None) -> None:
        try:
            if self._f is not None:
                self._f.close()
            elif self._writer is not None:
                self._writer.close()
        finally:
            if error is None:
                self._ctx.__exit__(None, None, None)
            else:
                self._ctx.__exit__(type(error), error, error.__traceback__)


def _cell(value: Any, tsv: bool) -> str:
    """A CSV/TSV cell: text as is (TSV: tabs and line breaks become spaces, as TSV has no quoting), numbers as
    Python prints them, lists and objects as JSON."""
    if value is None:
        return ""
    if isinstance(value, list | dict | tuple):
        value = json.dumps(value, ensure_ascii=False)
    value = str(value)
    return value.replace("\t", " ").replace("\r", " ").replace("\n", " ") if tsv else value


def _arrow_type(predictor: Predictor, column: str) -> Any:
    import pyarrow as pa

    if column == "entities":
        return pa.list_(pa.struct([("type", pa.string()), ("start", pa.int64()), ("end", pa.int64()),
                                   ("text", pa.string()), ("score", pa.float64())]))
    if predictor.kind == "multi-label":
        return pa.list_(pa.string()) if column == "prediction" else pa.list_(pa.float64())
    if column == "score" or predictor.kind == "regression":
        return pa.float64()
    return pa.string()


@dataclass
class FileSummary:
    """What :func:`predict_file` did."""

    rows: int = 0
    empty: int = 0  # rows whose text (or second text) was empty: predicted as empty text
    first_empty: int | None = None  # 0-based row of the first one
    max_score: float = 0.0  # classification: the highest probability seen (all near chance -> a note)


def predict_file(predictor: Predictor, source: InputFile, output: str | os.PathLike | None = None,
                 chunk: int = CHUNK, on_rows: Callable[[dict[str, list], list[dict[str, Any]]], None] | None = None,
                 top_k: int = 1) -> FileSummary:
    """Every row of ``source`` with the prediction's columns added, ``chunk`` rows at a time: written to
    ``output`` (atomically; format by suffix) and/or handed to ``on_rows(batch, predictions)``. Empty texts are
    predicted (as empty text) and counted. Memory: one chunk of rows, whatever the file's size."""
    writer = RowWriter(output, source.columns, predictor.added_columns, predictor, source.schema) \
        if output is not None else None
    summary = FileSummary()
    error: BaseException | None = None
    try:
        with Progress(total=source.rows, desc="predict", unit="row") as bar:
            for batch in source.batches(chunk):
                texts = [_text(v) for v in batch[source.text]]
                pairs = [_text(v) for v in batch[source.text_pair]] if source.text_pair else None
                blank = [i for i, t in enumerate(texts) if not t.strip()] + \
                    ([i for i, t in enumerate(pairs) if not t.strip()] if pairs else [])
                if blank and summary.first_empty is None:
                    summary.first_empty = summary.rows + min(blank)
                summary.empty += len(set(blank))
                preds = predictor(texts, pairs, top_k)
                if predictor.kind == "classification" and preds:
                    summary.max_score = max(summary.max_score, max(p["score"] for p in preds))
                if writer is not None:
                    writer.write(batch, preds)
                if on_rows is not None:
                    on_rows(batch, preds)
                summary.rows += len(texts)
                bar.update(len(texts))
    except BaseException as e:
        error = e
        raise
    finally:
        if writer is not None:
            writer.close(error)
    return summary


def _text(value: Any) -> str:
    return "" if value is None else str(value)


__all__ = ["CHUNK", "KINDS", "OUTPUT_FORMATS", "FileSummary", "InputFile", "Predictor", "RowWriter", "load_predictor",
           "open_input", "predict", "predict_file", "predict_rows"]
