"""``mobilebert predict``: run a fine-tuned model on texts, pairs, questions, or a file of any size.

Texts given on the command line are printed with their predictions. A file (``--input``) is read as what it is:
a table (CSV, TSV, JSON lines, Parquet, a ``save_to_disk`` folder) by its columns, a ``.txt`` file as one input
per line. With ``--output`` every input row is written with the prediction's columns added, streamed in
constant memory (``finetune.predict.predict_file``); without it the rows are printed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.tasks import task_name
from ..deploy.runtime import BACKENDS
from ..finetune.predict import (
    OUTPUT_FORMATS,
    Input,
    Predictor,
    load_predictor,
    open_input,
    predict_file,
    predict_rows,
)
from ..options import option
from ..sanity import prediction_notes

log = logging.getLogger(__name__)


@dataclass
class PredictConfig:
    """Every setting of ``mobilebert predict``."""

    model: str = option(help="a folder written by `mobilebert finetune`", path="model")
    texts: list[str] = option(factory=list, help="sentences to classify", positional=True)
    pair: list[list[str]] = option(factory=list, help="a sentence pair A B (repeatable)")
    question: list[str] = option(factory=list, help="a question (with --context; repeatable)")
    context: list[str] = option(factory=list, help="the context of each --question")
    input: str | None = option(None, help="a file of inputs, read as what it is: a table (.csv, .tsv, .jsonl, "
                               ".json, .parquet, a save_to_disk folder) by its columns, or a .txt file as one "
                               "input per line (a TAB between the two texts of a pair)", path="exists")
    file: str | None = option(None, help="the same as --input", path="exists")
    output: str | None = option(None, help="write every input row with the prediction's columns added "
                                "(prediction, score; entities for token classification) to this file, streamed "
                                f"in constant memory; the format follows its suffix ({', '.join(OUTPUT_FORMATS)})",
                                output="file")
    text_column: str | None = option(None, help="the input's text column (default: the column the model was "
                                     "trained on if the file has it, else text / sentence / question / sentence1)")
    text_pair_column: str | None = option(None, help="the second text's column, for models trained on pairs "
                                          "(default: as the model was trained, else detected)")
    task: str | None = option(None, help="only needed for checkpoints without finetune.json")
    top_k: int = option(1, help="also print the next best labels / answers", at_least=1)
    batch_size: int = option(32, help="inputs per forward pass", at_least=1, affects_result=False)
    allow_untrained_head: bool = option(False, help="run a checkpoint whose task head was never trained (its "
                                        "outputs are random; refused without this flag)")
    backend: str = option("pytorch", choices=BACKENDS, help="the runtime that runs the model, converted as "
                          "`mobilebert export` converts it (same parity gates): pytorch, onnx-fp32/-int8, "
                          "openvino-f32/-bf16/-int8 (needs openvino; int8 also nncf)")

    def check(self) -> None:
        if self.task is not None:
            self.task = task_name(self.task)
        if len(self.question) != len(self.context):
            raise ValueError(f"give one --context per --question ({len(self.question)} --question, "
                             f"{len(self.context)} --context)")
        if self.input and self.file:
            raise ValueError("give the file once: --input or --file")
        if not (self.texts or self.pair or self.question or self.source):
            raise ValueError("nothing to predict: give sentences, --pair, --question/--context or --input")
        if any(len(p) != 2 for p in self.pair):
            raise ValueError("--pair takes two texts, A and B")
        if self.output is not None:
            if not self.source:
                raise ValueError("--output needs --input: the file whose rows get predictions")
            if Path(self.output).suffix.lower() not in OUTPUT_FORMATS:
                raise ValueError(f"--output {self.output}: use a file ending in {', '.join(OUTPUT_FORMATS)}")
        if (self.text_column or self.text_pair_column) and not self.source:
            raise ValueError("--text-column / --text-pair-column name columns of --input")

    @property
    def source(self) -> str | None:
        return self.input or self.file


def format_row(row: dict[str, Any]) -> list[str]:
    """The console lines of one prediction (TAB-separated): label / score / text, labels of a multi-label
    model, a score, entities, or an answer and its alternatives."""
    if "question" in row:
        return [f"{row['prediction']!r}\t{row['score']:.4f}\t{row['question']}",
                *(f"  {text!r}\t{prob:.4f}" for text, prob in row.get("alternatives", []))]
    shown = row["text"] + (f" ||| {row['text_pair']}" if row.get("text_pair") is not None else "")
    if "entities" in row:
        found = "  ".join(f"{e['type']} {e['text']!r} [{e['start']}:{e['end']}]" for e in row["entities"])
        return [f"{found or '(no entity)'}\t{shown}"]
    if "score" not in row:
        return [f"{row['prediction']:.4f}\t{shown}"]
    if isinstance(row["prediction"], list):
        labels = ", ".join(f"{lab} {p:.4f}" for lab, p in zip(row["prediction"], row["score"], strict=True))
        return [f"{labels or '(no label)'}\t{shown}"]
    others = "  ".join(f"{lab} {pr:.4f}" for lab, pr in row.get("top", [])[1:])
    return [f"{row['prediction']}\t{row['score']:.4f}\t{shown}" + (f"\t({others})" if others else "")]


def _notes(predictor: Predictor, scores: list[float], empty: int, where: str) -> list[str]:
    notes = []
    if empty:
        notes.append(f"{empty} empty input(s) ({where}): predicted as empty text, which says nothing about any "
                     "text; check the input")
    if predictor.kind == "classification" and scores:
        notes += prediction_notes([{"label": "", "score": max(scores)}], len(predictor.labels))
    return notes


def run(cfg: PredictConfig) -> Any:
    """Predict the inputs given (arguments, pairs, questions, then the file); print them, or stream the file's
    rows to ``--output``; print notes (empty inputs, every classification at chance). Returns the printed rows,
    or with ``--output`` a summary (rows, output, empty)."""
    predictor = load_predictor(cfg.model, cfg.task, cfg.batch_size, cfg.allow_untrained_head, cfg.backend)
    inputs: list[Input] = [*cfg.texts, *((a, b) for a, b in cfg.pair), *zip(cfg.question, cfg.context, strict=True)]
    rows = predict_rows(predictor, inputs, cfg.top_k)
    for row in rows:
        print("\n".join(format_row(row)))
    empty = [i + 1 for i, x in enumerate(inputs) if any(not t.strip() for t in (x if isinstance(x, tuple) else (x,)))]
    scores = [r["score"] for r in rows if predictor.kind == "classification"]
    notes = _notes(predictor, scores, len(empty), "argument " + ", ".join(map(str, empty[:5])))
    result: Any = rows
    if cfg.source:
        source = open_input(cfg.source, predictor, cfg.text_column, cfg.text_pair_column)
        keys = ("question", "context") if predictor.kind == "qa" else ("text", "text_pair")

        def show(batch: dict[str, list], preds: list[dict[str, Any]]) -> None:
            for i, p in enumerate(preds):
                row = {keys[0]: batch[source.text][i],
                       **({keys[1]: batch[source.text_pair][i]} if source.text_pair else {}), **p}
                rows.append(row)
                print("\n".join(format_row(row)))

        summary = predict_file(predictor, source, cfg.output, on_rows=None if cfg.output else show, top_k=cfg.top_k)
        if summary.first_empty is not None:
            notes += _notes(predictor, [], summary.empty, f"first at data row {summary.first_empty + 1} of {source.path}")
        if predictor.kind == "classification" and summary.rows:
            notes += _notes(predictor, [summary.max_score], 0, "")
        if cfg.output:
            print(f"{cfg.output}: {summary.rows} rows, each with {', '.join(predictor.added_columns)} added")
            result = {"rows": summary.rows, "output": cfg.output, "empty": summary.empty}
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
    return result
