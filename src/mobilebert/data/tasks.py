"""The fine-tuning tasks: their canonical names, SQuAD's file names, and what a fine-tuned model remembers.

No torch here: settings (``recipes/*Config.check``) and the command-line checks ask these before anything heavy
is imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import glue

SQUAD_TASKS = {"squad": ("train-v1.1.json", "dev-v1.1.json"), "squad2": ("train-v2.0.json", "dev-v2.0.json")}


SQUAD_TASKS = {"squad": ("train-v1.1.json", "dev-v1.1.json"), "squad2": ("train-v2.0.json", "dev-v2.0.json")}


@dataclass
class TaskSetup:
    """What evaluation and prediction need to know about a fine-tuned model (saved as finetune.json)."""

    task: str
    max_seq_length: int = 128
    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = 30
    null_threshold: float = 0.0

    @property
    def is_squad(self) -> bool:
        return self.task in SQUAD_TASKS

    @property
    def version_2(self) -> bool:
        return self.task == "squad2"

    @property
    def is_regression(self) -> bool:
        return not self.is_squad and glue.get_task(self.task).is_regression

    @property
    def labels(self) -> tuple[str, ...]:
        """The classifier's label names in id order (``("score",)`` for regression; none for SQuAD)."""
        return () if self.is_squad else tuple(glue.get_task(self.task).labels or ("score",))


def task_name(task: str) -> str:
    """The canonical name of a fine-tuning task (``SST-2`` -> ``sst2``, ``squad-v2`` -> ``squad2``); one line
    naming the choices for an unknown one."""
    key = task.lower().replace("_", "").replace("-v2", "2").replace("v1.1", "")
    if key in ("squad", "squad2", "squadv2", "squad2.0"):
        return "squad2" if "2" in key else "squad"
    try:
        return glue.get_task(task).name
    except ValueError:
        raise ValueError(f"unknown GLUE task {task!r}; choose from {', '.join(glue.TASKS)}, squad, squad2") from None
