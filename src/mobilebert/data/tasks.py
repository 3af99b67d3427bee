"""The fine-tuning tasks: their canonical names, SQuAD's file names, and what a fine-tuned model remembers.

Three kinds: GLUE tasks (``glue.TASKS``, read from GLUE's TSV layout), SQuAD (JSON), and the user's own files
(``FILE_TASKS``: ``--train`` / ``--validation`` files read by ``data/files.py``), whose label set, columns and
multi-label thresholds come from the training run and are remembered here (finetune.json) and in config.json.

No torch here: settings (``recipes/*Config.check``) and the command-line checks ask these before anything heavy
is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import glue

FILE_TASKS = ("text-classification", "regression", "token-classification")  # data from the user's own files
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
    # The user's own files (FILE_TASKS) only: what the training file gave, so evaluate / predict read alike.
    label_names: list[str] | None = None  # labels (tags) in id order, from the training file
    multi_label: bool = False  # text-classification: any number of labels per row (sigmoid + BCE)
    thresholds: list[float] | None = None  # multi-label: per-label decision thresholds tuned on validation
    columns: dict[str, str | None] | None = None  # role -> column: text, text_pair, label (tokens, tags)
    label_separator: str | None = None  # multi-label: the separator of a text label column

    @property
    def is_squad(self) -> bool:
        return self.task in SQUAD_TASKS

    @property
    def version_2(self) -> bool:
        return self.task == "squad2"

    @property
    def is_file_task(self) -> bool:
        return self.task in FILE_TASKS

    @property
    def is_token(self) -> bool:
        return self.task == "token-classification"

    @property
    def is_regression(self) -> bool:
        if self.is_file_task:
            return self.task == "regression"
        return not self.is_squad and glue.get_task(self.task).is_regression

    @property
    def problem_type(self) -> str | None:
        """config.json's ``problem_type`` as transformers writes it (None for token classification and SQuAD)."""
        if self.is_squad or self.is_token:
            return None
        if self.is_regression:
            return "regression"
        return "multi_label_classification" if self.multi_label else "single_label_classification"

    @property
    def labels(self) -> tuple[str, ...]:
        """The classifier's label names in id order (``("score",)`` for regression; none for SQuAD)."""
        if self.is_squad:
            return ()
        if self.is_file_task:
            return ("score",) if self.is_regression else tuple(self.label_names or ())
        return tuple(glue.get_task(self.task).labels or ("score",))


def task_name(task: str) -> str:
    """The canonical name of a fine-tuning task (``SST-2`` -> ``sst2``, ``squad-v2`` -> ``squad2``); one line
    naming the choices for an unknown one."""
    own = task.lower().replace("_", "-")
    if own in FILE_TASKS:
        return own
    key = task.lower().replace("_", "").replace("-v2", "2").replace("v1.1", "")
    if key in ("squad", "squad2", "squadv2", "squad2.0"):
        return "squad2" if "2" in key else "squad"
    try:
        return glue.get_task(task).name
    except ValueError:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASK_CHOICES)}") from None


TASK_CHOICES = (*FILE_TASKS, *glue.TASKS, *SQUAD_TASKS)  # every name task_name accepts, canonical spelling


FILE_SETTINGS = ("train", "validation", "test", "text_column", "text_pair_column", "label_column",
                 "label_separator")


def check_data_settings(cfg: Any) -> None:
    """Which data settings go with which task (``FinetuneConfig`` and ``EvaluateConfig`` alike): GLUE and SQuAD
    read ``data``; the user's own files (``FILE_TASKS``) read ``train`` / ``validation`` with the column settings.
    ``cfg.task`` is canonical or None (an evaluated model's own task). ``{key}`` in a message reads as the user
    spelled that setting (``options.check``)."""
    task, training, multi = cfg.task, hasattr(cfg, "train"), getattr(cfg, "multi_label", False)
    own = [k for k in FILE_SETTINGS if getattr(cfg, k, None) is not None]
    if task is not None and task not in FILE_TASKS:
        if own:
            kind = "GLUE's TSV files" if task in glue.TASKS else "SQuAD's JSON"
            raise ValueError(f"{{{own[0]}}}: for your own files; {task} reads {kind} from {{data}} (for a file of "
                             "yours: {task} text-classification, regression or token-classification)")
        if multi:
            raise ValueError(f"{{multi_label}}: only with {{task}} text-classification, not {task}")
        if training and cfg.data is None and getattr(cfg, "source", "tsv") != "datasets":
            raise ValueError(f"{{task}} {task} reads {{data}}: give the GLUE folder or SQuAD's JSON folder")
        return
    if task is None:
        return
    if cfg.data is not None:
        raise ValueError(f"{{data}}: {task} reads your own files; give {'{train} and ' if training else ''}"
                         "{validation} instead")
    if training and cfg.train is None:
        raise ValueError(f"{{task}} {task}: give the training file ({{train}})")
    if training and cfg.validation is None:
        raise ValueError(f"{{task}} {task}: give a validation file ({{validation}}): it picks the best epoch, and "
                         "is never the training set")
    if training and Path(cfg.validation).resolve() == Path(cfg.train).resolve():
        raise ValueError(f"{{validation}} {cfg.validation}: the same file as {{train}}; validation is never the "
                         "training set: hold out part of your data in a file of its own")
    if cfg.text_pair_column is not None and task == "token-classification":
        raise ValueError("{text_pair_column}: token-classification tags one sequence of tokens; it takes no pair")
    if multi and task != "text-classification":
        raise ValueError(f"{{multi_label}}: only with {{task}} text-classification, not {task}")
    if training and cfg.label_separator is not None and not multi:
        raise ValueError("{label_separator}: only with {multi_label}")
