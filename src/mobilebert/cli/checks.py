"""The checks a config dataclass cannot make, run before any work: input paths are what their fields say
(``option(path=...)``), outputs follow the one rule for existing paths, and each command's files, folders and
checkpoints agree with its settings. Every failure is one line naming the setting as the user spelled it.
Types, ranges and choices were checked when the config was loaded (:mod:`mobilebert.options`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..validate import (
    UsageError,
    checkpoint_dir,
    existing_dir,
    existing_file,
    fresh_output,
    missing_packages,
    model_config,
    text_file,
)


def existing_path(path: str, name: str) -> Path:
    if not Path(path).exists():
        raise UsageError(f"{name} {path}: no such file or folder")
    return Path(path)


PATH_CHECKS: dict[str, Callable[[str, str], Any]] = {
    "file": existing_file, "text": text_file, "dir": existing_dir, "exists": existing_path, "model": model_config,
    "checkpoint": checkpoint_dir,
}


def walk(cfg: Any, prefix: str = ""):
    """(dotted key, field metadata, value) of every setting, nested sections included."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            yield from walk(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, f.metadata, value


def check_inputs(command: str, cfg: Any, names: Mapping[str, str], resume: bool = False,
                 overwrite: bool = False) -> None:
    """Every path field, every output, then the command's own relations (``COMMAND_CHECKS``)."""
    def n(key: str) -> str:
        return names.get(key, key)

    for key, meta, value in walk(cfg):
        if value and meta.get("path"):
            for v in value if isinstance(value, list) else [value]:
                PATH_CHECKS[meta["path"]](v, n(key))
    extra = COMMAND_CHECKS.get(command)
    if extra is not None:
        extra(cfg, n)
    for key, meta, value in walk(cfg):
        if value and meta.get("output"):
            fresh_output(value, n(key), overwrite=overwrite, resume=resume, resumable=meta["output"] == "run")


def seq_fits(flag: str, seq: int | None, model_dir: str | None) -> None:
    """A sequence length within the model's position table."""
    if seq is None or model_dir is None:
        return
    cfg = model_config(model_dir, "model")
    if seq > cfg.max_position_embeddings:
        raise UsageError(f"{flag} {seq} exceeds the model's max_position_embeddings {cfg.max_position_embeddings} "
                         f"({model_dir})")


def _export(cfg: Any, n: Callable[[str], str]) -> None:
    if cfg.format != "onnx":
        seq_fits(n("seq_len"), cfg.seq_len, cfg.model_dir)
    if cfg.format == "mediapipe":  # what the checkpoint is, before which packages it would need
        _mediapipe_checkpoint(cfg, n)
    _packages(cfg.format, f"{n('format')} {cfg.format}")


def _packages(fmt: str, what: str, optional: tuple[str, ...] = ()) -> None:
    """The packages export format ``fmt`` needs import here (``optional`` ones aside), else one line to install."""
    missing, install = missing_packages(fmt)
    missing = [m for m in missing if m not in optional]
    if missing:
        raise UsageError(f"{what} needs `pip install {install}` ({', '.join(missing)} missing)")


def _backend(cfg: Any, n: Callable[[str], str]) -> None:
    """evaluate / predict ``--backend``: its runtime imports here (nncf only for OpenVINO int8)."""
    runtime = cfg.backend.split("-")[0]
    if runtime != "pytorch":
        _packages(runtime, f"{n('backend')} {cfg.backend}", () if cfg.backend == "openvino-int8" else ("nncf",))


def _mediapipe_checkpoint(cfg: Any, n: Callable[[str], str]) -> None:
    """What MediaPipe's text tasks can run: a sequence classifier (TextClassifier) or an encoder (TextEmbedder),
    with its vocab; --labels one name per class."""
    from ..checkpoint import inspect

    info, where = inspect(cfg.model_dir), f"{n('model_dir')} {cfg.model_dir}"
    if info.head == "token":
        from ..deploy.mediapipe import TOKEN_ROUTE

        raise UsageError(f"{where}: {TOKEN_ROUTE}")
    if info.head not in ("classifier", "encoder"):
        raise UsageError(f"{where}: {info.architecture} is neither a sequence classifier nor an encoder "
                         "(MobileBertModel); MediaPipe's text tasks run only those")
    if info.head == "classifier" and info.num_labels < 2:
        raise UsageError(f"{where}: a regression head ({info.num_labels} output) is not a classifier; "
                         "TextClassifier needs at least 2 classes")
    if not info.vocab_files:
        raise UsageError(f"{where}: no vocab.txt or tokenizer.json; the MediaPipe file carries the checkpoint's vocab")
    if cfg.labels:
        if info.head != "classifier":
            raise UsageError(f"--labels: {cfg.model_dir} is an encoder (TextEmbedder); only classifiers have labels")
        labels = cfg.labels.split(",")
        if len(labels) != info.num_labels or not all(x.strip() for x in labels):
            raise UsageError(f"--labels {cfg.labels}: got {len(labels)} label names for {info.num_labels} classes "
                             "(comma-separated, none empty)")


def _bench(cfg: Any, n: Callable[[str], str]) -> None:
    for s in cfg.seqs:
        seq_fits(n("seqs"), s, cfg.model_dir)


def _prepare(cfg: Any, n: Callable[[str], str]) -> None:
    from ..data.shards import expand_inputs

    if cfg.inputs:
        expand_inputs(cfg.inputs)


def _teacher(cfg: Any, n: Callable[[str], str]) -> None:
    from ..recipes.pretrain_teacher import check_teacher_inputs

    check_teacher_inputs(cfg)


def _distill(cfg: Any, n: Callable[[str], str]) -> None:
    from ..recipes.distill import check_distill_inputs

    check_distill_inputs(cfg)


# ----------------------------------------------------------------------------- fine-tuning
def _task(name: str, n: Callable[[str], str]) -> str:
    from ..data.tasks import task_name

    try:
        return task_name(name)
    except ValueError as e:
        raise UsageError(f"{n('task')}: {e}") from None


def _glue_examples(task: Any, data: str, split: str, n: Callable[[str], str]) -> None:
    """The split's TSV exists, has the task's columns and at least one labelled example."""
    from ..data import glue
    from ..validate import looks_like_text

    try:
        path = glue.resolve_path(task, data, split)
    except FileNotFoundError:
        raise UsageError(f"{n('data')} {data}: no {task.name} {split} file (expected the GLUE layout, e.g. "
                         f"{task.files[split]})") from None
    if not looks_like_text(path):
        raise UsageError(f"{path}: not a text TSV file")
    try:
        rows = glue.read_glue(task, path, split, limit=1)
    except ValueError as e:  # e.g. a CSV of the user's own: the message points at --task text-classification
        raise UsageError(str(e)) from None
    if not rows:
        raise UsageError(f"{path}: no {split} examples (only a header?)")


def _squad_files(data: str, task: str, splits: tuple[str, ...], n: Callable[[str], str]) -> None:
    from ..data import squad
    from ..data.tasks import SQUAD_TASKS

    for split, name in zip(("train", "dev"), SQUAD_TASKS[task], strict=True):
        if split not in splits:
            continue
        path = Path(data) if Path(data).is_file() else Path(data) / name
        if not path.is_file():
            raise UsageError(f"{n('data')} {data}: no {name}")
        if not squad.read_squad(path)[:1]:
            raise UsageError(f"{path}: no questions")


def _task_data(task: str, data: str, splits: tuple[str, ...] | None, n: Callable[[str], str]) -> None:
    """The files a task reads from ``data``: SQuAD's JSON, or GLUE's TSV splits (None: train + first dev)."""
    from ..data import glue

    if task.startswith("squad"):
        _squad_files(data, task, splits or ("train", "dev"), n)
        return
    t = glue.get_task(task)
    for split in splits or ("train", t.dev_splits[0]):
        _glue_examples(t, data, split, n)


def _own_file(task: str, path: str | None, cfg: Any, n: Callable[[str], str], key: str) -> None:
    """A file of the user's own: readable, with the columns asked for (or detectable); the rows themselves are
    checked when read (``data/files.py``: one line naming the file and line)."""
    from ..data import files

    if path is None:
        return
    try:
        if task == "token-classification":
            if files.FORMATS.get(Path(path).suffix.lower(), "csv") == "csv" and Path(path).is_file():
                files.check_text_file(path)  # CoNLL text: columns are positions, checked line by line when read
            else:
                files.column_names(path)
            return
        present = files.column_names(path)
        files.choose_columns(path, present, cfg.text_column, cfg.text_pair_column, cfg.label_column,
                             need_label=True)
    except files.DataFileError as e:
        raise UsageError(f"{n(key)} {e}" if not str(e).startswith(str(path)) else str(e)) from None


def _finetune(cfg: Any, n: Callable[[str], str]) -> None:
    from ..data import glue
    from ..data.tasks import FILE_TASKS

    task = _task(cfg.task, n)
    seq_fits(n("max_seq_length"), cfg.max_seq_length, cfg.model)
    if task in FILE_TASKS:
        for key in ("train", "validation", "test"):
            _own_file(task, getattr(cfg, key), cfg, n, key)
    elif cfg.source != "datasets":
        _task_data(task, cfg.data, None, n)
        if not task.startswith("squad"):
            try:
                glue.check_distinct_splits(task, cfg.data)
            except ValueError as e:
                raise UsageError(f"{n('data')} {e}") from None


def _finetuned(cfg: Any, n: Callable[[str], str]) -> str:
    """The task a fine-tuned model is for; refuses a head that was never trained for it."""
    from ..checkpoint import inspect

    info = inspect(cfg.model)
    if info.task is not None:
        if cfg.task is not None and _task(cfg.task, n) != info.task:
            raise UsageError(f"{n('task')} {cfg.task}: {cfg.model} was fine-tuned for {info.task}")
        return info.task
    if cfg.task is None:
        raise UsageError(f"{n('model')} {cfg.model}: no finetune.json (not written by `mobilebert finetune`); say "
                         f"which task it is for with {n('task')}")
    task = _task(cfg.task, n)
    head = "qa" if task.startswith("squad") else "token" if task == "token-classification" else "classifier"
    if info.head != head and not cfg.allow_untrained_head:
        raise UsageError(f"{n('model')} {cfg.model}: has no trained {task} head, so its outputs would come from "
                         "random weights; fine-tune it first (mobilebert finetune), or add --allow-untrained-head "
                         "to run it anyway")
    return task


def _evaluate(cfg: Any, n: Callable[[str], str]) -> None:
    from ..data import glue
    from ..data.tasks import FILE_TASKS

    task = _finetuned(cfg, n)
    _backend(cfg, n)
    if (task in FILE_TASKS) != (cfg.validation is not None):
        raise UsageError(f"{n('model')} {cfg.model}: fine-tuned for {task}; score it with "
                         + (f"{n('validation')} FILE" if task in FILE_TASKS else f"{n('data')} (GLUE or SQuAD)"))
    if task in FILE_TASKS:
        from ..checkpoint import inspect

        trained = (inspect(cfg.model).finetune or {}).get("columns") or {}
        cols = SimpleNamespace(**{f"{k}_column": getattr(cfg, f"{k}_column") or trained.get(k)  # as trained
                                  for k in ("text", "text_pair", "label")})
        _own_file(task, cfg.validation, cols, n, "validation")
        return
    if task.startswith("squad"):
        _squad_files(cfg.data, task, ("dev",), n)
        return
    t = glue.get_task(task)
    for split in cfg.split or t.dev_splits:
        if split not in t.files:
            raise UsageError(f"{n('split')} {split}: {t.name} has splits {', '.join(t.files)}")
        if split in t.test_splits:
            if not cfg.out:
                raise UsageError(f"{n('split')} {split} is unlabelled: give {n('out')} for the GLUE-server files")
            continue
        _glue_examples(t, cfg.data, split, n)


def _predict_input(path: str, flag: str) -> None:
    """A file predict can read: a text file of lines (UTF-8, not empty) or a table format data.files reads."""
    from ..data.files import DataFileError, check_text_file, file_format
    from ..finetune.predict import LINE_FILES

    try:
        if Path(path).is_file() and Path(path).suffix.lower() in LINE_FILES:
            check_text_file(path)
        else:
            file_format(path)
    except DataFileError as e:
        raise UsageError(f"{flag} {e}") from None


def _predict(cfg: Any, n: Callable[[str], str]) -> None:
    from ..checkpoint import inspect
    from ..data import glue

    task = _finetuned(cfg, n)
    _backend(cfg, n)
    if cfg.input or cfg.file:
        _predict_input(cfg.input or cfg.file, n("input" if cfg.input else "file"))
    if task.startswith("squad"):
        if cfg.texts or cfg.pair:
            raise UsageError(f"{n('model')} {cfg.model} answers questions ({task}): give --question and --context")
        return
    if cfg.question:
        raise UsageError(f"--question: {cfg.model} is a {task} model, not a question-answering model")
    if task not in glue.TASKS:  # the user's own files: pairs are known from the columns it was trained on
        info = inspect(cfg.model)
        columns = (info.finetune or {}).get("columns") or {}
        if cfg.pair and (info.head == "token" or "text_pair" in columns and not columns["text_pair"]):
            raise UsageError(f"--pair: {cfg.model} reads single texts; give them as arguments")
        return
    pairs = len(glue.get_task(task).text) == 2
    if cfg.pair and not pairs:
        raise UsageError(f"--pair: {task} takes single sentences; give them as arguments")
    if cfg.texts and pairs:
        raise UsageError(f"{task} takes sentence pairs: give each as --pair A B (or a TAB-separated --input)")


def _build(cfg: Any, n: Callable[[str], str]) -> None:
    """The first stage's fine-tuning run passes finetune's own checks (task, data files, columns, sequence
    length), and the default teacher and student are where they should be."""
    import dataclasses

    from ..build import Plan, default_student, default_teacher, finetune_config

    try:
        teacher, student = cfg.teacher or str(default_teacher()), cfg.student or str(default_student())
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    plan = Plan(teacher, student, cfg.max_seq_length or 8, "", [cfg.seed])
    try:
        first = finetune_config(cfg, plan, Path(cfg.out), "teacher")
    except ValueError as e:
        raise UsageError(str(e)) from None
    first = dataclasses.replace(first, resume=False)
    for model, name in ((teacher, "teacher"), (student, "student")):
        _finetune(dataclasses.replace(first, model=model, max_seq_length=cfg.max_seq_length), lambda k, m=name: {
            "model": n(m), "max_seq_length": n("max_seq_length")}.get(k, n(k)))
    from ..tokenizer import MobileBertTokenizer

    t, s = MobileBertTokenizer.from_pretrained(teacher), MobileBertTokenizer.from_pretrained(student)
    if (t.vocab_sha256, t.lowercase) != (s.vocab_sha256, s.lowercase):  # the soft labels are per student token
        raise UsageError(f"{n('teacher')} {teacher} and {n('student')} {student} tokenize differently (vocabularies "
                         f"of {t.vocab_size} and {s.vocab_size} tokens, or casing); the teacher must share the "
                         "student's vocabulary")


COMMAND_CHECKS: dict[str, Callable[[Any, Callable[[str], str]], None]] = {
    "export": _export, "bench": _bench, "prepare-pretraining": _prepare,
    "pretrain-teacher": _teacher, "distill": _distill, "finetune": _finetune, "evaluate": _evaluate,
    "predict": _predict, "build": _build,
}
