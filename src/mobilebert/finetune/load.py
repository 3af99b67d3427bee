"""The models fine-tuning reads and writes: task model, fine-tuned folder, teacher (all via ``checkpoint``)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from torch import nn

from ..atomic import atomic_write_text
from ..checkpoint import FINETUNE_FILE, inspect
from ..config import MobileBertConfig
from ..data.tasks import TaskSetup, task_name
from ..load import load_model
from ..modeling import (
    MobileBertForQuestionAnswering,
    MobileBertForSequenceClassification,
    MobileBertForTokenClassification,
)
from ..tokenizer import MobileBertTokenizer

log = logging.getLogger(__name__)


def dropout_overrides(dropout: float | None) -> dict[str, float]:
    """Config fields that set hidden, attention and classifier dropout to ``dropout`` (None: keep the saved)."""
    if dropout is None:
        return {}
    return {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout, "classifier_dropout": dropout}


def load_task_model(spec: TaskSetup, model_dir: str | Path, random_init: bool = False,
                    dropout: float | None = None) -> nn.Module:
    """The task model from any checkpoint ``from_pretrained`` reads (ours, HF MobileBERT, HF BERT).

    The classifier head is kept only when the checkpoint was fine-tuned on the same label set; otherwise it
    is initialised fresh (a pre-training checkpoint, or another task). ``random_init`` builds the same
    architecture with fresh weights: the baseline that shows what pre-training is worth. ``dropout``
    overrides every dropout probability of the saved config (and is saved with the fine-tuned model)."""
    over = dropout_overrides(dropout)
    if spec.is_token:
        return _token_model(spec, model_dir, random_init, over)
    if spec.problem_type is not None and spec.is_file_task:
        over["problem_type"] = spec.problem_type  # multi-label: BCE in the model's own loss, saved in config.json
    if spec.is_squad:
        if random_init:
            return MobileBertForQuestionAnswering(MobileBertConfig.from_json(model_dir, **over))
        return load_model(model_dir, "qa", **over)
    if random_init:
        saved = MobileBertConfig.from_json(model_dir, **over)
        return MobileBertForSequenceClassification(saved.replace(num_labels=len(spec.labels),
                                                                 id2label=dict(enumerate(spec.labels))))
    return load_model(model_dir, "classifier", spec.labels, **over)


def _token_model(spec: TaskSetup, model_dir: str | Path, random_init: bool, over: dict) -> nn.Module:
    """The token classifier; the checkpoint's head is kept only when it was trained on the same tags."""
    labels = dict(enumerate(spec.labels))
    if random_init:
        saved = MobileBertConfig.from_json(model_dir, **over)
        return MobileBertForTokenClassification(saved.replace(num_labels=len(labels), id2label=labels))
    info = inspect(model_dir)
    if info.task == spec.task and info.id2label == labels:
        log.info("%s: keeping the checkpoint's token-classification head (tags %s)", model_dir, list(spec.labels))
        return MobileBertForTokenClassification.from_pretrained(model_dir, **over)
    model = MobileBertForTokenClassification.from_pretrained(model_dir, num_labels=len(labels), id2label=labels,
                                                             **over)
    if not any(k.startswith("classifier.") for k in model.loading_info["missing_keys"]):
        model.classifier = nn.Linear(model.config.hidden_size, len(labels))  # another task's head: start afresh
        model._init_module(model.classifier)
    return model


def finetuned_spec(model_dir: str | Path, task: str | None = None) -> TaskSetup:
    """What a folder was fine-tuned for (its finetune.json), or ``task`` for a checkpoint without one."""
    meta = inspect(model_dir).finetune
    if meta is not None:
        spec = TaskSetup(**meta)
        if task is not None and task_name(task) != spec.task:
            raise ValueError(f"{model_dir}: fine-tuned for {spec.task}, not {task}")
        return spec
    if task is None:
        raise ValueError(f"{model_dir}: no {FINETUNE_FILE}; say which task the model is for (--task)")
    return TaskSetup(task_name(task))


def load_finetuned(model_dir: str | Path, task: str | None = None) -> tuple[nn.Module, MobileBertTokenizer, TaskSetup]:
    """A folder written by ``finetune`` (or any checkpoint plus ``task``), in eval mode, with its tokenizer."""
    spec = finetuned_spec(model_dir, task)
    return load_task_model(spec, model_dir).eval(), MobileBertTokenizer.from_pretrained(model_dir), spec


def save_finetuned(model: nn.Module, tokenizer: MobileBertTokenizer, spec: TaskSetup, path: Path) -> None:
    """A from_pretrained folder: weights + config, tokenizer files, and finetune.json."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    atomic_write_text(path / FINETUNE_FILE, json.dumps(asdict(spec), indent=2) + "\n")


def load_teacher(spec: TaskSetup, teacher_dir: str | Path, tokenizer: MobileBertTokenizer) -> nn.Module:
    """A teacher already fine-tuned on ``spec.task`` (any architecture ``from_pretrained`` reads), in eval mode.

    Refused (one line) when it was fine-tuned for another task, has no trained head for this one, tokenizes
    differently from the student (the cached logits are per student token), or is shorter than the sequences."""
    teacher_dir = Path(teacher_dir)
    if not (teacher_dir / "config.json").is_file():
        raise FileNotFoundError(f"--teacher {teacher_dir}: not a checkpoint folder (no config.json)")
    info = inspect(teacher_dir)
    if info.finetune is not None and info.task != spec.task:
        raise ValueError(f"--teacher {teacher_dir}: fine-tuned for {info.task}, not {spec.task}")
    theirs = MobileBertTokenizer.from_pretrained(teacher_dir)
    if theirs.vocab_sha256 != tokenizer.vocab_sha256 or theirs.lowercase != tokenizer.lowercase:
        raise ValueError(f"--teacher {teacher_dir}: its tokenizer differs from the student's (vocabulary of "
                         f"{theirs.vocab_size} vs {tokenizer.vocab_size} tokens, or casing); they must match")
    if info.max_position_embeddings < spec.max_seq_length:
        raise ValueError(f"--teacher {teacher_dir}: reads at most {info.max_position_embeddings} tokens, "
                         f"less than max_seq_length {spec.max_seq_length}")
    head = "qa" if spec.is_squad else "classifier"
    if not spec.is_squad and info.num_labels != len(spec.labels):
        raise ValueError(f"--teacher {teacher_dir}: has {info.num_labels} output(s), {spec.task} needs "
                         f"{len(spec.labels)}")
    if spec.is_file_task and not spec.is_regression and info.id2label != dict(enumerate(spec.labels)):
        raise ValueError(f"--teacher {teacher_dir}: labels {list((info.id2label or {}).values())} differ from the "
                         f"training file's {list(spec.labels)}")
    if info.head not in (head, "token"):
        raise ValueError(f"--teacher {teacher_dir}: no trained {spec.task} head; fine-tune it on {spec.task} first")
    if spec.is_token:
        return MobileBertForTokenClassification.from_pretrained(teacher_dir).eval().requires_grad_(False)
    return load_model(teacher_dir, head).eval().requires_grad_(False)
