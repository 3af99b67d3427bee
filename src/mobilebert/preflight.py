"""Pre-flight checks of every subcommand, run by the CLI before the command's own code.

Each ``check_<command>(a)`` reads the parsed arguments and every file the command will read, and raises
:class:`~mobilebert.validate.UsageError` naming the flag or file as the user wrote it. Attributes that other
flags may add later are read with ``getattr``, so a check never breaks a command it does not fully know.
Heavy modules (torch, recipes) are imported only by the checks that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .validate import (
    UsageError,
    at_least,
    checkpoint_dir,
    existing_dir,
    existing_file,
    fresh_output,
    in_range,
    looks_like_text,
    missing_packages,
    model_config,
    one_of,
    text_file,
    type_name,
    weight_names,
)


def _threads(a: Any) -> None:
    t = getattr(a, "threads", None)
    for v in t if isinstance(t, list) else [t]:
        at_least("--threads", v, 1)


def _seq_fits(flag: str, seq: int | None, cfg: Any, where: str) -> None:
    if seq is not None and cfg is not None and seq > cfg.max_position_embeddings:
        raise UsageError(f"{flag} {seq} exceeds the model's max_position_embeddings "
                         f"{cfg.max_position_embeddings} ({where})")


def check_info(a: Any) -> None:
    from .config import PRESETS

    at_least("--layers", a.layers, 1)
    at_least("--seq", a.seq, 1)
    if a.model:  # a --seq beyond the model's positions is cut to them (model_info), not refused
        if a.layers:
            raise UsageError("--layers overrides presets only; it cannot change a --model checkpoint")
        model_config(a.model, "--model")
    else:
        one_of("--preset", a.preset, PRESETS)


def check_demo(a: Any) -> None:
    fresh_output(a.out, "--out", overwrite=getattr(a, "overwrite", False))


def check_yaml_recipe(a: Any) -> None:
    """pretrain-teacher / distill: the config file is read by the recipe (types, ranges and files are checked
    there, before anything is built); here only what the command line itself says."""
    config = a.config if a.config and "=" not in a.config else None
    if config is not None:
        p = existing_file(config, "config")
        if p.suffix not in (".yaml", ".yml"):
            raise UsageError(f"config {p}: expected a .yaml file (overrides are key=value)")
    for item in a.overrides:
        if "=" not in item or item.startswith("="):
            raise UsageError(f"override {item!r} is not key=value")


# Fine-tuning settings, as flags (--max-seq-length) or --config keys (max_seq_length): (low, high, open ends).
INF = float("inf")
FINETUNE_LIMITS: dict[str, tuple[float, float, bool, bool]] = {
    "lr": (0, INF, True, True), "batch_size": (1, INF, False, True), "epochs": (1, INF, False, True),
    "max_seq_length": (8, INF, False, True), "warmup": (0, INF, False, True),
    "weight_decay": (0, INF, False, True), "max_grad_norm": (0, INF, False, True),
    "eval_batch_size": (1, INF, False, True), "max_train_examples": (1, INF, False, True),
    "max_eval_examples": (1, INF, False, True), "doc_stride": (1, INF, False, True),
    "max_query_length": (1, INF, False, True), "max_answer_length": (1, INF, False, True),
    "log_every": (1, INF, False, True), "dropout": (0, 1, False, True), "kd_alpha": (0, 1, False, False),
    "kd_temperature": (0, INF, True, True), "grad_accum": (1, INF, False, True), "save_every": (0, INF, False, True),
    "kd_hidden": (0, INF, False, True), "kd_attention": (0, INF, False, True),
}


def _finetune_value(name: str, key: str, value: Any) -> None:
    if key in FINETUNE_LIMITS and isinstance(value, int | float) and not isinstance(value, bool):
        low, high, low_open, high_open = FINETUNE_LIMITS[key]
        in_range(name, value, low, high, low_open=low_open, high_open=high_open)


def check_finetune(a: Any) -> None:
    from .data import glue

    task = _task(a.task)
    for key in FINETUNE_LIMITS:
        _finetune_value(f"--{key.replace('_', '-')}", key, getattr(a, key, None))
    if a.seeds is not None:
        try:
            seeds = [int(s) for s in a.seeds.split(",")]
        except ValueError:
            raise UsageError(f"--seeds must be comma-separated integers, e.g. 1,2,3; got {a.seeds!r}") from None
        if len(set(seeds)) != len(seeds):
            raise UsageError(f"--seeds {a.seeds}: a seed is repeated")
    raw = _finetune_config(a) if a.config else {}
    cfg = model_config(a.model, "--model")
    if getattr(a, "teacher", None):
        checkpoint_dir(a.teacher, "--teacher")
    elif not raw.get("teacher"):
        for key in ("kd_hidden", "kd_attention"):
            if (getattr(a, key, None) or raw.get(key) or 0) > 0:
                raise UsageError(f"--{key.replace('_', '-')} needs a --teacher to transfer from")
    _seq_fits("--max-seq-length", a.max_seq_length, cfg, a.model)
    if a.max_seq_length is None:
        _seq_fits(f"{a.config}: max_seq_length", raw.get("max_seq_length"), cfg, a.model)
    if not Path(a.data).is_file():
        existing_dir(a.data, "--data")
    if task.startswith("squad"):
        _squad_files(a.data, task, ("train", "dev"))
    elif a.source != "datasets":
        t = glue.get_task(task)
        for split in ("train", t.dev_splits[0]):
            _glue_examples(t, a.data, split)
    fresh_output(a.out, "--out", overwrite=getattr(a, "overwrite", False), resume=getattr(a, "resume", False),
                 resumable=True)


def _finetune_config(a: Any) -> dict[str, Any]:
    """The --config file's values: known keys (the recipe checks them), types and ranges."""
    import inspect

    from .recipes.finetune import finetune, load_finetune_config

    try:
        raw = load_finetune_config(a.config)
    except FileNotFoundError:
        raise UsageError(f"--config {a.config}: no such file") from None
    params = inspect.signature(finetune).parameters
    for key, value in raw.items():
        default = params[key].default
        if key == "seeds":
            if not (isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool)
                                                              for s in value)):
                raise UsageError(f"{a.config}: seeds must be a list of integers, got {value!r}")
            continue
        want = (int, float) if isinstance(default, float) else type(default) if default is not None else None
        if want is not None and (not isinstance(value, want) or isinstance(value, bool) != (want is bool)):
            raise UsageError(f"{a.config}: {key} must be {type_name(type(default))}, got {value!r}")
        _finetune_value(f"{a.config}: {key}", key, value)
    return raw


def _task(name: str) -> str:
    from .data import glue

    key = name.lower().replace("_", "").replace("-v2", "2").replace("v1.1", "")
    if key in ("squad", "squad2", "squadv2", "squad2.0"):
        return "squad2" if "2" in key else "squad"
    try:
        return glue.get_task(name).name
    except ValueError:
        raise UsageError(f"--task: unknown GLUE task {name!r}; choose from {', '.join(glue.TASKS)}, squad, "
                         "squad2") from None


def _glue_examples(task: Any, data: str, split: str) -> None:
    """The split's TSV exists, has the task's columns and at least one labelled example."""
    from .data import glue

    try:
        path = glue.resolve_path(task, data, split)
    except FileNotFoundError:
        raise UsageError(f"--data {data}: no {task.name} {split} file (expected the GLUE layout, e.g. "
                         f"{task.files[split]})") from None
    if not looks_like_text(path):
        raise UsageError(f"{path}: not a text TSV file")
    if not glue.read_glue(task, path, split, limit=1):
        raise UsageError(f"{path}: no {split} examples (only a header?)")


def _squad_files(data: str, task: str, splits: tuple[str, ...]) -> None:
    from .data import squad

    names = {"squad": ("train-v1.1.json", "dev-v1.1.json"), "squad2": ("train-v2.0.json", "dev-v2.0.json")}[task]
    for split, name in zip(("train", "dev"), names, strict=True):
        if split not in splits:
            continue
        p = Path(data)
        path = p if p.is_file() else p / name
        if not path.is_file():
            raise UsageError(f"--data {data}: no {name}")
        if not squad.read_squad(path)[:1]:
            raise UsageError(f"{path}: no questions")


def _finetuned(a: Any) -> tuple[Any, str]:
    """The model folder and the task it is for; refuses a head that was never trained for that task."""
    import json

    cfg = model_config(a.model, "--model")
    meta = Path(a.model) / "finetune.json"
    if meta.is_file():
        task = json.loads(meta.read_text(encoding="utf-8")).get("task")
        if a.task is not None and _task(a.task) != task:
            raise UsageError(f"--task {a.task}: {a.model} was fine-tuned for {task}")
        return cfg, task
    if a.task is None:
        raise UsageError(f"--model {a.model}: no finetune.json (not written by `mobilebert finetune`); say "
                         "which task it is for with --task")
    task = _task(a.task)
    head = "qa_outputs." if task.startswith("squad") else "classifier."
    names = weight_names(a.model)
    if names is not None and not any(n.startswith(head) for n in names) \
            and not getattr(a, "allow_untrained_head", False):
        raise UsageError(f"--model {a.model}: has no trained {task} head ({head}*), so its outputs would come "
                         "from random weights; fine-tune it first (mobilebert finetune), or add "
                         "--allow-untrained-head to run it anyway")
    return cfg, task


def check_evaluate(a: Any) -> None:
    from .data import glue

    at_least("--batch-size", a.batch_size, 1)
    at_least("--limit", a.limit, 1)
    _, task = _finetuned(a)
    if not Path(a.data).exists():
        raise UsageError(f"--data {a.data}: no such file or folder")
    if task.startswith("squad"):
        _squad_files(a.data, task, ("dev",))
    else:
        t = glue.get_task(task)
        for split in a.split or t.dev_splits:
            if split not in t.files:
                raise UsageError(f"--split {split}: {t.name} has splits {', '.join(t.files)}")
            if split in t.test_splits:
                if not a.out:
                    raise UsageError(f"--split {split} is unlabelled: give --out for the GLUE-server files")
                continue
            _glue_examples(t, a.data, split)
    if a.out:
        fresh_output(a.out, "--out", overwrite=getattr(a, "overwrite", False))


def check_predict(a: Any) -> None:
    at_least("--top-k", a.top_k, 1)
    if len(a.question or []) != len(a.context or []):
        raise UsageError(f"give one --context per --question ({len(a.question or [])} --question, "
                         f"{len(a.context or [])} --context)")
    if a.file:
        text_file(a.file, "--file")
    elif not (a.texts or a.pair or a.question):
        raise UsageError("nothing to predict: give sentences, --pair, --question/--context or --file")
    _, task = _finetuned(a)
    if task.startswith("squad"):
        if a.texts or a.pair:
            raise UsageError(f"--model {a.model} answers questions ({task}): give --question and --context")
        return
    from .data import glue

    pairs = len(glue.get_task(task).text) == 2
    if a.question:
        raise UsageError(f"--question: {a.model} is a {task} classifier, not a question-answering model")
    if a.pair and not pairs:
        raise UsageError(f"--pair: {task} takes single sentences; give them as arguments")
    if a.texts and pairs:
        raise UsageError(f"{task} takes sentence pairs: give each as --pair A B (or a TAB-separated --file)")


def check_prepare_pretraining(a: Any) -> None:
    in_range("--max-seq-length", a.max_seq_length, 8, 65535)
    in_range("--max-predictions", a.max_predictions, 1, min(255, a.max_seq_length))
    in_range("--masked-lm-prob", a.masked_lm_prob, 0, 1, low_open=True, high_open=True)
    in_range("--short-seq-prob", a.short_seq_prob, 0, 1)
    at_least("--dupe-factor", a.dupe_factor, 1)
    at_least("--workers", a.workers, 1)
    at_least("--shard-size", a.shard_size, 1)
    if a.vocab is not None and not Path(a.vocab).exists():
        raise UsageError(f"--vocab {a.vocab}: no such file or folder")
    from .data.shards import expand_inputs

    if a.inputs:
        expand_inputs(a.inputs)
    out = Path(a.out)
    for item in a.inputs:
        if Path(item).resolve() == out.resolve() or out.resolve() in Path(item).resolve().parents:
            raise UsageError(f"--out {a.out}: is also an input ({item})")
    fresh_output(a.out, "--out", overwrite=getattr(a, "overwrite", False))


def check_corpus(a: Any) -> None:
    if a.data is not None:
        existing_dir(a.data, "--data")
    at_least("--max-seq-length", a.max_seq_length, 8)
    at_least("--dupe-factor", a.dupe_factor, 1)
    at_least("--workers", a.workers, 1)
    fresh_output(a.out, "--out", overwrite=getattr(a, "overwrite", False))


def check_embed(a: Any) -> None:
    if bool(a.texts) == bool(a.file):
        raise UsageError("give texts as arguments or --file, not both or neither")
    if a.file:
        text_file(a.file, "--file")
    at_least("--batch-size", a.batch_size, 1)
    _threads(a)
    checkpoint_dir(a.model, "--model")
    if a.out:
        if Path(a.out).suffix != ".npy":
            raise UsageError(f"--out {a.out}: the output file must end in .npy")
        fresh_output(a.out, "--out", overwrite=getattr(a, "overwrite", False))


def check_sts(a: Any) -> None:
    from .data.sts import read_sts

    one_of("--split", a.split, ("dev", "train"))
    _threads(a)
    checkpoint_dir(a.model, "--model")
    if a.data is not None and not Path(a.data).exists():
        raise UsageError(f"--data {a.data}: no such file or folder")
    try:
        read_sts(a.data, a.split)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"--data {a.data}: {e}") from None
    if a.json:
        fresh_output(a.json, "--json", overwrite=getattr(a, "overwrite", False))


def check_export(a: Any) -> None:
    cfg = model_config(a.model_dir, "model_dir")
    if a.format != "onnx":
        at_least("--seq-len", a.seq_len, 1)
        _seq_fits("--seq-len", a.seq_len, cfg, a.model_dir)
    missing, install = missing_packages(a.format)
    if missing:
        raise UsageError(f"--format {a.format} needs `pip install {install}` ({', '.join(missing)} missing)")
    if a.format == "mediapipe":
        _mediapipe_checkpoint(a, cfg)
    elif getattr(a, "labels", None):
        raise UsageError(f"--labels: only --format mediapipe writes class names (got --format {a.format})")
    fresh_output(a.out, "out", overwrite=a.overwrite)


def _mediapipe_checkpoint(a: Any, cfg: Any) -> None:
    """What MediaPipe's text tasks can run: a sequence classifier (TextClassifier) or an encoder (TextEmbedder),
    with its vocab; --labels one name per class."""
    import json

    folder = Path(a.model_dir)
    archs = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or ["Model"]
    head = archs[0].replace("MobileBert", "").replace("Bert", "")  # as deploy.onnx.load_for_export reads it
    if head in ("ForPreTraining", "ForMaskedLM", "ForQuestionAnswering"):
        raise UsageError(f"model_dir {a.model_dir}: {archs[0]} is neither a sequence classifier nor an encoder "
                         "(MobileBertModel); MediaPipe's text tasks run only those")
    classifier = head == "ForSequenceClassification"
    if classifier and cfg.num_labels < 2:
        raise UsageError(f"model_dir {a.model_dir}: a regression head ({cfg.num_labels} output) is not a "
                         "classifier; TextClassifier needs at least 2 classes")
    if not any((folder / n).is_file() for n in ("vocab.txt", "tokenizer.json")):
        raise UsageError(f"model_dir {a.model_dir}: no vocab.txt or tokenizer.json; the MediaPipe file carries "
                         "the checkpoint's vocab")
    if a.labels:
        if not classifier:
            raise UsageError(f"--labels: {a.model_dir} is an encoder (TextEmbedder); only classifiers have labels")
        names = a.labels.split(",")
        if len(names) != cfg.num_labels or not all(n.strip() for n in names):
            raise UsageError(f"--labels {a.labels}: got {len(names)} label names for {cfg.num_labels} classes "
                             "(comma-separated, none empty)")


def check_bench(a: Any) -> None:
    cfg = model_config(a.model_dir, "model_dir")
    for flag, values in (("--batches", a.batches), ("--seqs", a.seqs), ("--threads", a.threads)):
        for v in values:
            at_least(flag, v, 1)
    for s in a.seqs:
        _seq_fits("--seqs", s, cfg, a.model_dir)
    at_least("--repeats", a.repeats, 1)
    if a.backends:
        from .deploy.bench import ALL_BACKENDS

        for b in a.backends:
            one_of("--backends", b, ALL_BACKENDS)
    fresh_output(a.out, "--out", overwrite=getattr(a, "overwrite", False))


CHECKS = {"info": check_info, "demo": check_demo, "pretrain-teacher": check_yaml_recipe,
          "distill": check_yaml_recipe, "finetune": check_finetune, "evaluate": check_evaluate,
          "predict": check_predict, "prepare-pretraining": check_prepare_pretraining, "corpus": check_corpus,
          "embed": check_embed, "sts": check_sts, "export": check_export, "bench": check_bench}


def check_command(a: Any) -> None:
    """Run the checks of ``a.command`` (commands without an entry have nothing to check here)."""
    check = CHECKS.get(a.command)
    if check is not None:
        check(a)
