"""``mobilebert predict``: run a fine-tuned model on sentences, sentence pairs or question + context."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoint import inspect
from ..data.tasks import task_name
from ..finetune.predict import Input, predict
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
    file: str | None = option(None, help="inputs, one per line: a sentence, or two texts separated by a TAB "
                              "(sentence pair, or question TAB context)", path="text")
    task: str | None = option(None, help="only needed for checkpoints without finetune.json")
    top_k: int = option(1, help="also print the next best labels / answers", at_least=1)
    allow_untrained_head: bool = option(False, help="run a checkpoint whose task head was never trained (its "
                                        "outputs are random; refused without this flag)")

    def check(self) -> None:
        if self.task is not None:
            self.task = task_name(self.task)
        if len(self.question) != len(self.context):
            raise ValueError(f"give one --context per --question ({len(self.question)} --question, "
                             f"{len(self.context)} --context)")
        if not (self.texts or self.pair or self.question or self.file):
            raise ValueError("nothing to predict: give sentences, --pair, --question/--context or --file")
        if any(len(p) != 2 for p in self.pair):
            raise ValueError("--pair takes two texts, A and B")


def read_inputs(path: str | Path) -> list[Input]:
    """One input per non-empty line: a sentence, or a pair as two TAB-separated texts (one-line errors naming
    the line)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    inputs: list[Input] = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            parts = line.split("\t")
            if len(parts) > 2:
                raise ValueError(f"{path}:{n}: {len(parts)} TAB-separated fields, expected 1 or 2")
            inputs.append((parts[0], parts[1]) if len(parts) == 2 else parts[0])
    empty = sum(not line.strip() for line in lines)
    if empty:
        log.warning("%s: skipped %d empty line(s)", path, empty)
    return inputs


def format_row(row: dict[str, Any]) -> list[str]:
    """The console lines of one prediction: label / score / text (TAB-separated), or an answer and alternatives."""
    if "answer" in row:
        return [f"{row['answer']!r}\t{row['score']:.4f}\t{row['question']}",
                *(f"  {text!r}\t{prob:.4f}" for text, prob in row["alternatives"])]
    shown = row["text"] + (f" ||| {row['text_pair']}" if "text_pair" in row else "")
    if "label" in row:
        others = "  ".join(f"{lab} {pr:.4f}" for lab, pr in row["top"][1:])
        return [f"{row['label']}\t{row['score']:.4f}\t{shown}" + (f"\t({others})" if others else "")]
    return [f"{row['score']:.4f}\t{shown}"]


def run(cfg: PredictConfig) -> list[dict[str, Any]]:
    """Predict every input given (arguments, pairs, questions, then the file's lines), print the rows and a note
    when every classification is at chance; return the rows."""
    inputs: list[Input] = [*cfg.texts, *((a, b) for a, b in cfg.pair),
                           *zip(cfg.question, cfg.context, strict=True)]
    if cfg.file:
        inputs += read_inputs(cfg.file)
    if not inputs:
        raise ValueError("nothing to predict: give sentences, --pair, --question/--context or --file")
    rows = predict(cfg.model, inputs, task=cfg.task, top_k=cfg.top_k)
    for row in rows:
        print("\n".join(format_row(row)))
    for note in prediction_notes(rows, inspect(cfg.model).num_labels):
        print(f"note: {note}")
    return rows
