"""Fine-tune, evaluate and predict: GLUE (sequence classification / regression) and SQuAD (span QA).

``finetune`` reads top to bottom: load data (and, with a teacher, its outputs on the training set, once) ->
for each seed: load the model (a task head added when the checkpoint has none for this task) -> the shared
trainer (``train.trainer.fit``: AdamW with warm-up and linear decay, DDP under torchrun, bf16, gradient
accumulation, clipping, checkpoints and exact ``resume``) with an evaluation every epoch that keeps the best
epoch as a ``from_pretrained`` folder with its tokenizer -> mean +- std over seeds in ``results.json``.

Each kept folder also holds ``finetune.json`` (task, labels, sequence settings), so ``evaluate`` and
``predict`` know what the model was trained for.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..atomic import atomic_write_text
from ..config import MobileBertConfig
from ..data import glue, squad
from ..data.finetuning import (  # noqa: F401  (Encoded, batches, encode_squad, load_eval_data: public here too)
    SQUAD_TASKS,
    Encoded,
    FinetuneLoader,
    TaskSetup,
    batches,
    encode_glue,
    encode_squad,
    load_eval_data,
    load_train_data,
    steps_per_epoch,
    task_name,
)
from ..distill.losses import (
    TransferLoss,
    TransferMap,
    classification_distillation_loss,
    regression_distillation_loss,
    span_distillation_loss,
)
from ..distill.module import HoldsTeacher
from ..modeling import MobileBertForQuestionAnswering, MobileBertForSequenceClassification
from ..progress import Progress
from ..tokenizer import MobileBertTokenizer
from ..train.config import read_yaml_mapping
from ..train.schedule import Stage
from ..train.trainer import Dist, TrainConfig, fit, init_distributed

log = logging.getLogger(__name__)

META_FILE = "finetune.json"


# ----------------------------------------------------------------------------- model
def dropout_overrides(dropout: float | None) -> dict[str, float]:
    """Config fields that set hidden, attention and classifier dropout to ``dropout`` (None: keep the saved)."""
    if dropout is None:
        return {}
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"--dropout must be in [0, 1), got {dropout}")
    return {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout, "classifier_dropout": dropout}


def load_model(setup: TaskSetup, model_dir: str | Path, random_init: bool = False,
               dropout: float | None = None) -> nn.Module:
    """The task model from any checkpoint ``from_pretrained`` reads (ours, HF MobileBERT, HF BERT).

    The classifier head is kept only when the checkpoint was fine-tuned on the same label set; otherwise it
    is initialised fresh (a pre-training checkpoint, or another task). ``random_init`` builds the same
    architecture with fresh weights: the baseline that shows what pre-training is worth. ``dropout``
    overrides every dropout probability of the saved config (and is saved with the fine-tuned model)."""
    over = dropout_overrides(dropout)
    if setup.is_squad:
        if random_init:
            return MobileBertForQuestionAnswering(MobileBertConfig.from_json(model_dir, **over))
        return MobileBertForQuestionAnswering.from_pretrained(model_dir, **over)
    task = glue.get_task(setup.task)
    id2label = {i: name for i, name in enumerate(task.labels or ("score",))}
    saved = MobileBertConfig.from_json(model_dir, **over)
    if random_init:
        return MobileBertForSequenceClassification(saved.replace(num_labels=task.num_labels, id2label=id2label))
    model = MobileBertForSequenceClassification.from_pretrained(
        model_dir, num_labels=saved.num_labels, id2label=saved.id2label, **over)
    had_head = not any(k.startswith("classifier.") for k in model.loading_info["missing_keys"])
    if had_head and saved.id2label == id2label:
        log.info("%s: keeping the checkpoint's %s head", model_dir, setup.task)
        return model
    if had_head:
        log.info("%s: the checkpoint's head (labels %s) is replaced by a fresh %s head", model_dir,
                 saved.id2label, setup.task)
    model.config = model.config.replace(num_labels=task.num_labels, id2label=id2label)
    model.classifier = nn.Linear(model.config.hidden_size, task.num_labels)
    model._init_module(model.classifier)
    return model


def load_finetuned(model_dir: str | Path, task: str | None = None) -> tuple[nn.Module, MobileBertTokenizer, TaskSetup]:
    """A folder written by ``finetune`` (or any checkpoint plus ``task``)."""
    model_dir = Path(model_dir)
    meta = model_dir / META_FILE
    if meta.is_file():
        setup = TaskSetup(**json.loads(meta.read_text(encoding="utf-8")))
        if task is not None and task_name(task) != setup.task:
            raise ValueError(f"{model_dir}: fine-tuned for {setup.task}, not {task}")
    elif task is not None:
        setup = TaskSetup(task_name(task))
    else:
        raise ValueError(f"{model_dir}: no {META_FILE}; say which task the model is for (--task)")
    return load_model(setup, model_dir).eval(), MobileBertTokenizer.from_pretrained(model_dir), setup


# ----------------------------------------------------------------------------- task-specific distillation
def load_teacher(setup: TaskSetup, teacher_dir: str | Path, tokenizer: MobileBertTokenizer) -> nn.Module:
    """A teacher already fine-tuned on ``setup.task`` (any architecture ``from_pretrained`` reads), in eval mode.

    Refused (one line) when it was fine-tuned for another task, has no trained head for this one, tokenizes
    differently from the student (the cached logits are per student token), or is shorter than the sequences."""
    teacher_dir = Path(teacher_dir)
    if not (teacher_dir / "config.json").is_file():
        raise FileNotFoundError(f"--teacher {teacher_dir}: not a checkpoint folder (no config.json)")
    meta = teacher_dir / META_FILE
    if meta.is_file():
        trained_for = json.loads(meta.read_text(encoding="utf-8")).get("task")
        if trained_for != setup.task:
            raise ValueError(f"--teacher {teacher_dir}: fine-tuned for {trained_for}, not {setup.task}")
    theirs = MobileBertTokenizer.from_pretrained(teacher_dir)
    if theirs.vocab_sha256 != tokenizer.vocab_sha256 or theirs.lowercase != tokenizer.lowercase:
        raise ValueError(f"--teacher {teacher_dir}: its tokenizer differs from the student's (vocabulary of "
                         f"{theirs.vocab_size} vs {tokenizer.vocab_size} tokens, or casing); they must match")
    saved = MobileBertConfig.from_json(teacher_dir)
    if saved.max_position_embeddings < setup.max_seq_length:
        raise ValueError(f"--teacher {teacher_dir}: reads at most {saved.max_position_embeddings} tokens, "
                         f"less than max_seq_length {setup.max_seq_length}")
    if setup.is_squad:
        model, head = MobileBertForQuestionAnswering.from_pretrained(teacher_dir), "qa_outputs."
    else:
        task = glue.get_task(setup.task)
        if saved.num_labels != task.num_labels:
            raise ValueError(f"--teacher {teacher_dir}: has {saved.num_labels} output(s), {setup.task} needs "
                             f"{task.num_labels}")
        model = MobileBertForSequenceClassification.from_pretrained(
            teacher_dir, num_labels=saved.num_labels, id2label=saved.id2label)
        head = "classifier."
    if any(k.startswith(head) for k in model.loading_info["missing_keys"]):
        raise ValueError(f"--teacher {teacher_dir}: no trained {setup.task} head; fine-tune it on {setup.task} first")
    return model.eval().requires_grad_(False)


def teacher_logits(teacher: nn.Module, enc: Encoded, batch_size: int, pad_id: int = 0) -> list[torch.Tensor]:
    """The teacher's outputs for every training row, computed once (eval mode, no grad) and kept in memory:
    (C,) logits / a (1,) score per row, or (2, n) start/end logits over the row's n real tokens for SQuAD.
    The student sees the same rows every epoch, so these never change."""
    outs = run_model(teacher, enc, batch_size, pad_id, desc="teacher")
    if isinstance(outs[0], tuple):
        return [torch.from_numpy(np.stack([s[:len(ids)], e[:len(ids)]]))
                for (s, e), ids in zip(outs, enc.input_ids, strict=True)]
    return [torch.from_numpy(o) for o in outs]


def task_loss(out: Any, targets: dict[str, torch.Tensor], teacher: torch.Tensor | None, mask: torch.Tensor,
              regression: bool, alpha: float, temperature: float,
              n_sequences: float | torch.Tensor | None = None) -> torch.Tensor:
    """The fine-tuning loss with a teacher's outputs mixed in (distill/losses.py); with ``alpha == 1`` (or no
    teacher) exactly the model's own loss. ``n_sequences``: the global batch's size (see ``FinetuneModule``)."""
    if "start_positions" in targets:
        t_start, t_end = (None, None) if teacher is None else teacher.unbind(1)
        return span_distillation_loss(out.start_logits, out.end_logits, t_start, t_end, targets["start_positions"],
                                      targets["end_positions"], mask, alpha, temperature, n_sequences)
    if regression:
        return regression_distillation_loss(out.logits, teacher, targets["labels"], alpha, n_sequences)
    return classification_distillation_loss(out.logits, teacher, targets["labels"], alpha, temperature, n_sequences)


# ----------------------------------------------------------------------------- evaluation
@torch.inference_mode()
def run_model(model: nn.Module, enc: Encoded, batch_size: int, pad_id: int = 0, desc: str = "eval") -> list:
    """Outputs per row, in row order: logits (classification), a score (regression) or (start, end) logits.
    Rows are batched by length, which on a CPU roughly halves the time spent on padding."""
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(enc.input_ids)), key=lambda i: len(enc.input_ids[i]))
    out: list = [None] * len(order)
    for ids, mask, types, chunk in Progress(batches(enc, order, batch_size, pad_id), desc=desc, leave=False,
                                            total=math.ceil(len(order) / batch_size)):
        res = model(ids.to(device), mask.to(device), types.to(device))
        if res.logits is not None:
            for r, i in enumerate(chunk):
                out[i] = res.logits[r].float().cpu().numpy()
        else:
            for r, i in enumerate(chunk):
                out[i] = (res.start_logits[r].float().cpu().numpy(), res.end_logits[r].float().cpu().numpy())
    return out


def score_glue(task: glue.GlueTask, outputs: list, labels: Sequence) -> tuple[dict[str, float], np.ndarray]:
    preds = _predict_ids(task, outputs)
    return glue.compute_metrics(task, preds, labels), preds


def evaluate_loaded(model: nn.Module, tokenizer: MobileBertTokenizer, setup: TaskSetup, data: dict[str, Any],
                    batch_size: int = 64) -> dict[str, dict[str, float]]:
    """Metrics per evaluation split of already-loaded data (``data`` from ``load_eval_data``)."""
    results = {}
    for split, item in data.items():
        if setup.is_squad:
            examples, features = item
            outs = run_model(model, encode_squad(features), batch_size, tokenizer.pad_token_id, desc=split)
            preds = squad.decode(examples, features, [o[0] for o in outs], [o[1] for o in outs],
                                 max_answer_length=setup.max_answer_length, version_2=setup.version_2,
                                 null_threshold=setup.null_threshold)
            na = {q: p.null_score_diff for q, p in preds.items()} if setup.version_2 else None
            results[split] = squad.squad_metrics(examples, {q: p.text for q, p in preds.items()}, na_probs=na,
                                                 version_2=setup.version_2)
            results[split]["score"] = results[split]["f1"]
        else:
            task = glue.get_task(setup.task)
            examples, enc = item
            outs = run_model(model, enc, batch_size, tokenizer.pad_token_id, desc=split)
            results[split], _ = score_glue(task, outs, [e.label for e in examples])
    return results


def evaluate(model_dir: str | Path, data_dir: str | Path, task: str | None = None,
             splits: Sequence[str] | None = None, batch_size: int = 64, out_dir: str | Path | None = None,
             limit: int | None = None, source: str = "tsv") -> dict[str, Any]:
    """Scores of a fine-tuned model on dev splits; test splits (GLUE) produce GLUE-server files in
    ``out_dir`` instead, SQuAD writes predictions.json (and null_odds.json for v2.0) there."""
    model, tokenizer, setup = load_finetuned(model_dir, task)
    out = Path(out_dir) if out_dir else None
    results: dict[str, Any] = {"task": setup.task, "model": str(model_dir)}
    if setup.is_squad:
        data = load_eval_data(setup, data_dir, tokenizer, limit=limit)
        examples, features = data["dev"]
        outs = run_model(model, encode_squad(features), batch_size, tokenizer.pad_token_id)
        preds = squad.decode(examples, features, [o[0] for o in outs], [o[1] for o in outs],
                             max_answer_length=setup.max_answer_length, version_2=setup.version_2,
                             null_threshold=setup.null_threshold)
        na = {q: p.null_score_diff for q, p in preds.items()} if setup.version_2 else None
        results["dev"] = squad.squad_metrics(examples, {q: p.text for q, p in preds.items()}, na_probs=na)
        if out:
            squad.write_predictions(preds, out, setup.version_2)
    else:
        task_ = glue.get_task(setup.task)
        wanted = list(splits or task_.dev_splits)
        for split in wanted:
            data = load_eval_data(setup, data_dir, tokenizer, [split], limit, source)
            examples, enc = data[split]
            outs = run_model(model, enc, batch_size, tokenizer.pad_token_id, desc=split)
            if split in task_.test_splits:
                if out is None:
                    raise ValueError("test splits are unlabelled: give an output folder for the GLUE-server files")
                path = glue.write_submission(task_, split, _predict_ids(task_, outs), out)
                results[split] = {"submission": str(path), "rows": len(outs)}
            else:
                results[split], _ = score_glue(task_, outs, [e.label for e in examples])
    if out:
        atomic_write_text(out / "eval_results.json", json.dumps(results, indent=2) + "\n")
    return results


def _predict_ids(task: glue.GlueTask, outputs: list) -> np.ndarray:
    return np.array([o[0] for o in outputs]) if task.is_regression else np.array([int(o.argmax()) for o in outputs])


# ----------------------------------------------------------------------------- training
TARGETS = ("labels", "start_positions", "end_positions")


class FinetuneModule(HoldsTeacher):
    """The task model and its loss in the trainer's calling convention: ``forward(batch, stage, counts)`` ->
    ``{"task": loss}``. The loss is a sum over the micro-batch divided by the *global* batch's sequence count,
    so gradient accumulation and DDP add up to exactly the single-process batch loss. A batch carrying
    ``teacher`` outputs (cached by ``teacher_logits``) mixes them in with weight ``1 - kd_alpha``.

    With ``teacher_model`` and a ``transfer`` map (intermediate task distillation, as TinyBERT's task stage) the
    teacher also runs on every batch and two more terms come back: ``hidden``, the feature-map loss of every
    student layer against its teacher layer, and ``att``, the attention KL; each averaged over layers, each
    computed only when the stage weighs it (all of them without a stage). The teacher is held as
    ``HoldsTeacher`` holds it; learned projections, present only when widths differ, train and are
    checkpointed with the model."""

    def __init__(self, model: nn.Module, regression: bool, kd_alpha: float = 1.0, kd_temperature: float = 1.0,
                 teacher_model: nn.Module | None = None, transfer: TransferMap | None = None) -> None:
        super().__init__()
        self.model = model
        self.regression, self.kd_alpha, self.kd_temperature = regression, kd_alpha, kd_temperature
        self._hold_teacher(teacher_model)
        self.transfer = (TransferLoss(transfer, model.config.hidden_size, teacher_model.config.hidden_size)
                         if transfer is not None and teacher_model is not None else None)

    def forward(self, batch: dict[str, torch.Tensor], stage: Stage | None = None,
                counts: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        want = {k for k in ("hidden", "att") if self.transfer is not None and (stage is None or stage.terms.get(k))}
        out = self.model(ids, mask, types, output_hidden_states=bool(want), output_attention_scores="att" in want)
        targets = {k: batch[k] for k in TARGETS if k in batch}
        n = None if counts is None else counts["sequences"]
        terms = {"task": task_loss(out, targets, batch.get("teacher"), mask, self.regression,
                                   self.kd_alpha, self.kd_temperature, n)}
        if want:
            with torch.no_grad():
                t = self.teacher(ids, mask, types, output_hidden_states=True, output_attention_scores="att" in want)
            tokens = None if counts is None else counts["tokens"]
            kinds, att = {"hidden": "fmt", "att": "att"}, "att" in want
            per_layer = [self.transfer.layer_terms(i, out.hidden_states[i + 1], t.hidden_states[j + 1],
                                                   out.attention_scores[i] if att else None,
                                                   t.attention_scores[j] if att else None, mask, tokens,
                                                   {kinds[k] for k in want})
                         for i, j in enumerate(self.transfer.map.layer_map)]
            for k in want:
                terms[k] = sum(x[kinds[k]] for x in per_layer) / len(per_layer)
        return terms


class FinetuneTask:
    """What ``fit`` trains, plus the per-epoch evaluation: dev metrics, the history, the best epoch saved to
    ``out_dir/best``. History and best epoch are task state, saved in every checkpoint, so a resumed run
    reports (and keeps) exactly what an uninterrupted one does."""

    def __init__(self, module: FinetuneModule, tokenizer: MobileBertTokenizer, setup: TaskSetup,
                 dev: dict[str, Any], out_dir: Path, eval_batch_size: int, steps_per_epoch: int,
                 rows_per_epoch: int, seed: int) -> None:
        self.module, self.tokenizer, self.setup, self.dev = module, tokenizer, setup, dev
        self.out_dir, self.eval_batch_size, self.seed = out_dir, eval_batch_size, seed
        self.steps_per_epoch, self.rows_per_epoch = steps_per_epoch, rows_per_epoch
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self._t0 = time.perf_counter()

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        groups = {"model": list(self.module.model.named_parameters())}
        if self.module.transfer is not None and self.module.transfer.proj is not None:
            groups["transfer"] = list(self.module.transfer.named_parameters())
        return groups

    def export(self, stage: Stage, out_dir: Path) -> None:
        """Nothing: the result is the best epoch, already saved by ``evaluate``."""

    def evaluate(self, train_loss: float) -> dict[str, float]:
        epoch_s = time.perf_counter() - self._t0
        epoch = len(self.history) + 1
        metrics = evaluate_loaded(self.module.model, self.tokenizer, self.setup, self.dev, self.eval_batch_size)
        self.history.append({"epoch": epoch, "step": epoch * self.steps_per_epoch, "train_loss": train_loss,
                             "epoch_seconds": epoch_s, "seconds_per_1k": 1000 * epoch_s / max(self.rows_per_epoch, 1),
                             **metrics})
        log.info("seed %d epoch %d: %s (%.0f s)", self.seed, epoch,
                 ", ".join(f"{s}: {m['score']:.4f}" for s, m in metrics.items()), epoch_s)
        score = next(iter(metrics.values()))["score"]
        if self.best is None or score > self.best["score"]:
            self.best = {"epoch": epoch, "score": score, "metrics": metrics}
            save_finetuned(self.module.model, self.tokenizer, self.setup, self.out_dir / "best")
        self._t0 = time.perf_counter()
        return {"epoch": epoch, "train_loss": train_loss, "epoch_seconds": epoch_s,
                **{f"{split}/{k}": v for split, m in metrics.items() for k, v in m.items()}}

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history, self.best = list(state["history"]), state["best"]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_one_seed(setup: TaskSetup, model_dir: str | Path, out_dir: Path, train: Encoded,
                   dev: dict[str, Any], tokenizer: MobileBertTokenizer, *, seed: int, lr: float,
                   batch_size: int, epochs: int, warmup: float, weight_decay: float, max_grad_norm: float,
                   eval_batch_size: int, random_init: bool, log_every: int, d: Dist,
                   teacher: Sequence[torch.Tensor] | None = None, kd_alpha: float = 0.5,
                   kd_temperature: float = 1.0, dropout: float | None = None, grad_accum: int = 1,
                   precision: str = "fp32", save_every: int = 0, keep_last: int = 1,
                   resume: bool = False, teacher_model: nn.Module | None = None,
                   transfer: TransferMap | None = None, kd_hidden: float = 0.0,
                   kd_attention: float = 0.0) -> dict[str, Any]:
    """One fine-tuning run through the shared trainer; the best epoch (first dev split's score) is saved to
    ``out_dir/best``, checkpoints to ``out_dir/checkpoints`` (after every epoch, and every ``save_every`` steps).

    ``teacher``: cached teacher outputs per training row (``teacher_logits``), mixed into the loss with
    weight ``1 - kd_alpha`` at temperature ``kd_temperature``. ``teacher_model`` and its ``transfer`` map:
    intermediate transfer on every batch, weighted ``kd_hidden`` and ``kd_attention`` (see ``FinetuneModule``)."""
    _seed_everything(seed)
    model = load_model(setup, model_dir, random_init=random_init, dropout=dropout)
    intermediate = teacher_model is not None and transfer is not None
    module = FinetuneModule(model, setup.is_regression, kd_alpha if teacher is not None else 1.0, kd_temperature,
                            teacher_model if intermediate else None, transfer if intermediate else None)
    slots = d.world * grad_accum
    if batch_size % slots:
        raise ValueError(f"--batch-size {batch_size} is not divisible by {d.world} process(es) x --grad-accum "
                         f"{grad_accum}")
    per_epoch = steps_per_epoch(len(train), batch_size, slots)
    if per_epoch == 0:
        raise ValueError(f"{len(train)} training examples are too few for one batch of {batch_size}")
    if len(train) % batch_size and per_epoch * batch_size < len(train):
        log.info("the last %d examples of each epoch are dropped: too few to give each of %d process(es) x %d "
                 "accumulation steps one", len(train) % batch_size, d.world, grad_accum)
    total = per_epoch * epochs
    warmup_steps = int(warmup * total) if warmup < 1 else int(warmup)
    kd = {"hidden": kd_hidden, "att": kd_attention} if intermediate else {}
    terms = {"task": 1.0, **{k: w for k, w in kd.items() if w > 0}}
    lr_groups = {"model": 1.0, **({"transfer": 1.0} if intermediate and transfer.project else {})}
    stage = Stage("finetune", total, terms, [], lr_groups, warmup_steps=warmup_steps)
    cfg = TrainConfig(out_dir=str(out_dir), optimizer="adamw", lr=lr, eps=1e-6, weight_decay=weight_decay,
                      batch_size=batch_size, grad_accum=grad_accum, max_grad_norm=max_grad_norm,
                      precision=precision, save_every=save_every, keep_last=keep_last, log_every=log_every,
                      eval_every=per_epoch, save_on_eval=True, seed=None)  # seeded above, before the model
    task = FinetuneTask(module, tokenizer, setup, dev, out_dir, eval_batch_size, per_epoch,
                        min(len(train), per_epoch * batch_size), seed)

    def make_loader(epoch: int) -> FinetuneLoader:
        return FinetuneLoader(train, seed=seed, epoch=epoch, batch_size=batch_size, grad_accum=grad_accum,
                              rank=d.rank, world=d.world, pad_id=tokenizer.pad_token_id,
                              regression=setup.is_regression, is_squad=setup.is_squad, teacher=teacher)

    if not resume and d.main:  # a fresh run: an earlier run's checkpoints must not be resumed later
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    fit(task, [stage], make_loader, cfg, resume=resume, d=d)
    if d.world > 1:  # every rank returns rank 0's history
        state = [task.state_dict()]
        dist.broadcast_object_list(state, src=0)
        task.load_state_dict(state[0])
    if task.best is None:
        raise RuntimeError(f"{out_dir}: no epoch was evaluated")
    return {"seed": seed, "best_epoch": task.best["epoch"], "best": task.best["metrics"], "history": task.history,
            "best_dir": str(out_dir / "best")}


def save_finetuned(model: nn.Module, tokenizer: MobileBertTokenizer, setup: TaskSetup, path: Path) -> None:
    """A from_pretrained folder: weights + config, tokenizer files, and finetune.json."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    atomic_write_text(path / META_FILE, json.dumps(asdict(setup), indent=2) + "\n")


def finetune(task: str, data_dir: str | Path, model_dir: str | Path, out_dir: str | Path, *, lr: float = 5e-5,
             batch_size: int = 32, epochs: int = 3, max_seq_length: int = 128, warmup: float = 0.1,
             seeds: Sequence[int] = (42,), weight_decay: float = 0.01, max_grad_norm: float = 1.0,
             eval_batch_size: int = 64, max_train_examples: int | None = None,
             max_eval_examples: int | None = None, doc_stride: int = 128, max_query_length: int = 64,
             max_answer_length: int = 30, random_init: bool = False, source: str = "tsv",
             log_every: int = 20, device: str | None = None, teacher: str | None = None,
             kd_alpha: float = 0.5, kd_temperature: float = 1.0, dropout: float | None = None,
             grad_accum: int = 1, precision: str = "fp32", save_every: int = 0, keep_last: int = 1,
             resume: bool = False, kd_hidden: float = 0.0, kd_attention: float = 0.0) -> dict[str, Any]:
    """Fine-tune ``model_dir`` on ``task`` once per seed; returns (and writes ``out_dir/results.json``)
    per-seed best dev metrics and their mean and standard deviation.

    ``warmup`` below 1 is a fraction of the total steps, otherwise a step count. ``data_dir`` is the GLUE
    root (or the task folder), or the folder holding SQuAD's train/dev JSON files. ``device`` defaults to
    CUDA when available. ``teacher``: a model fine-tuned on the same task (task-specific distillation);
    its outputs on the training set are computed once, scored on dev, and mixed into every seed's loss.
    ``kd_hidden`` / ``kd_attention``: weights of intermediate transfer from the teacher (feature maps and
    attention of every student layer against a uniformly mapped teacher layer); the teacher then also runs on
    every training batch. ``dropout`` overrides the checkpoint's hidden, attention and classifier dropout.

    Under ``torchrun`` every process runs this; ``batch_size`` is the global batch (all processes, all
    ``grad_accum`` micro-batches), rank 0 evaluates and writes. ``precision`` fp32 or bf16 (autocast).
    ``resume`` continues each seed from its latest checkpoint (a finished seed is not trained again)."""
    if not 0.0 <= kd_alpha <= 1.0:
        raise ValueError(f"--kd-alpha must be in [0, 1], got {kd_alpha}")
    if kd_temperature <= 0:
        raise ValueError(f"--kd-temperature must be > 0, got {kd_temperature}")
    for flag, w in (("--kd-hidden", kd_hidden), ("--kd-attention", kd_attention)):
        if not w >= 0:
            raise ValueError(f"{flag} must be >= 0, got {w}")
        if w > 0 and teacher is None:
            raise ValueError(f"{flag} needs a --teacher to transfer from")
    intermediate = kd_hidden > 0 or kd_attention > 0
    dropout_overrides(dropout)  # refuse a bad value before any data is read
    d = init_distributed()
    if device is not None:
        d.device = torch.device(device)
    setup = TaskSetup(task_name(task), max_seq_length, doc_stride, max_query_length, max_answer_length)
    out = Path(out_dir)
    tokenizer = MobileBertTokenizer.from_pretrained(model_dir)
    t_model = load_teacher(setup, teacher, tokenizer).to(d.device) if teacher is not None else None
    # intermediate transfer's layer map; a student deeper than its teacher is refused here, before any data is read
    tmap = TransferMap.build(t_model.config, MobileBertConfig.from_json(model_dir)) if intermediate else None
    train = load_train_data(setup, data_dir, tokenizer, max_train_examples, source)
    dev = load_eval_data(setup, data_dir, tokenizer, limit=max_eval_examples, source=source)
    hparams = {"task": setup.task, "model": str(model_dir), "lr": lr, "batch_size": batch_size, "epochs": epochs,
               "max_seq_length": max_seq_length, "warmup": warmup, "weight_decay": weight_decay,
               "seeds": list(seeds), "train_examples": len(train.input_ids), "random_init": random_init,
               "device": str(d.device), "torch_threads": torch.get_num_threads(), "dropout": dropout,
               "grad_accum": grad_accum, "precision": precision, "world_size": d.world}
    cached = None
    if t_model is not None:
        t0 = time.perf_counter()
        cached = teacher_logits(t_model, train, eval_batch_size, tokenizer.pad_token_id)
        t_dev = evaluate_loaded(t_model, tokenizer, setup, dev, eval_batch_size) if d.main else {}
        if not intermediate:
            del t_model
            t_model = None
        hparams.update(teacher=str(teacher), kd_alpha=kd_alpha, kd_temperature=kd_temperature, teacher_dev=t_dev,
                       teacher_seconds=time.perf_counter() - t0, kd_hidden=kd_hidden, kd_attention=kd_attention)
        log.info("teacher %s: dev %s; outputs cached for %d training rows", teacher,
                 ", ".join(f"{s} {m['score']:.4f}" for s, m in t_dev.items()), len(cached))
    runs = []
    for seed in seeds:
        runs.append(train_one_seed(setup, model_dir, out / f"seed-{seed}", train, dev, tokenizer, seed=seed,
                                   lr=lr, batch_size=batch_size, epochs=epochs, warmup=warmup,
                                   weight_decay=weight_decay, max_grad_norm=max_grad_norm,
                                   eval_batch_size=eval_batch_size, random_init=random_init,
                                   log_every=log_every, d=d, teacher=cached, kd_alpha=kd_alpha,
                                   kd_temperature=kd_temperature, dropout=dropout, grad_accum=grad_accum,
                                   precision=precision, save_every=save_every, keep_last=keep_last,
                                   resume=resume, teacher_model=t_model, transfer=tmap, kd_hidden=kd_hidden,
                                   kd_attention=kd_attention))
    results = {"hparams": hparams, "runs": runs, "summary": summarize([r["best"] for r in runs])}
    if d.main:
        atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def summarize(bests: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and (sample) standard deviation over seeds of every metric of every split."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for split, metrics in bests[0].items():
        out[split] = {}
        for key in metrics:
            values = [float(b[split][key]) for b in bests]
            out[split][key] = {"mean": statistics.fmean(values),
                               "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def format_summary(results: dict[str, Any]) -> str:
    """One line per split: each metric as mean +- std over the seeds."""
    lines = [f"{results['hparams']['task']}: {len(results['runs'])} seed(s)"]
    for split, metrics in results["summary"].items():
        parts = [f"{k} {v['mean']:.4f} +- {v['std']:.4f}" for k, v in metrics.items() if not k.endswith("total")]
        lines.append(f"  {split}: " + ", ".join(parts))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- prediction
def predict(model_dir: str | Path, inputs: Sequence[str | tuple[str, str]], task: str | None = None,
            batch_size: int = 32, top_k: int = 1) -> list[dict[str, Any]]:
    """Labels (with probabilities) or scores for sentences / sentence pairs, or answers for
    (question, context) pairs with a QA model."""
    model, tokenizer, setup = load_finetuned(model_dir, task)
    pairs = [x if isinstance(x, tuple) else (x, None) for x in inputs]
    if setup.is_squad:
        if any(c is None for _, c in pairs):
            raise ValueError("a question-answering model needs question and context pairs")
        examples = squad.examples_from_pairs(pairs)
        features = squad.build_features(examples, tokenizer, setup.max_seq_length, setup.doc_stride,
                                        setup.max_query_length)
        outs = run_model(model, encode_squad(features), batch_size, tokenizer.pad_token_id, desc="predict")
        preds = squad.decode(examples, features, [o[0] for o in outs], [o[1] for o in outs],
                             max_answer_length=setup.max_answer_length, version_2=setup.version_2,
                             null_threshold=setup.null_threshold)
        return [{"question": e.question, "answer": p.text, "score": p.probability,
                 "alternatives": [(c["text"], c["probability"]) for c in p.nbest[1:top_k]]}
                for e, p in zip(examples, preds.values(), strict=True)]
    task_ = glue.get_task(setup.task)
    has_pair = pairs[0][1] is not None
    if any((b is not None) != has_pair for _, b in pairs):
        raise ValueError("give all inputs as single sentences or all as pairs, not a mix")
    if has_pair != (len(task_.text) == 2):
        raise ValueError(f"task {task_.name} takes {'pairs' if len(task_.text) == 2 else 'single sentences'}")
    examples = [glue.GlueExample(str(i), a, b, None) for i, (a, b) in enumerate(pairs)]
    outs = run_model(model, encode_glue(examples, tokenizer, setup.max_seq_length), batch_size,
                     tokenizer.pad_token_id, desc="predict")
    results = []
    for (a, b), o in zip(pairs, outs, strict=True):
        row: dict[str, Any] = {"text": a, **({"text_pair": b} if b is not None else {})}
        if task_.is_regression:
            row["score"] = float(o[0])
        else:
            probs = torch.softmax(torch.from_numpy(o), -1).numpy()
            ranked = np.argsort(-probs)[:max(1, top_k)]
            row["label"], row["score"] = task_.labels[ranked[0]], float(probs[ranked[0]])
            row["top"] = [(task_.labels[i], float(probs[i])) for i in ranked]
        results.append(row)
    return results


# ----------------------------------------------------------------------------- configs
def load_finetune_config(path: str | Path) -> dict[str, Any]:
    """Hyper-parameters from a YAML file (configs/finetune_*.yaml); unknown keys are rejected."""
    import inspect

    raw = read_yaml_mapping(path, "hyper-parameters")
    params = {n: p for n, p in inspect.signature(finetune).parameters.items() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(raw) - set(params))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(params)}")
    for key, value in raw.items():  # YAML reads 1e-4 (no dot) as a string
        if isinstance(params[key].default, float) and isinstance(value, str):
            try:
                raw[key] = float(value)
            except ValueError:
                raise ValueError(f"{path}: {key} must be a number, not {value!r}") from None
    return raw


def onnx_glue_accuracy(onnx_dir: str | Path, finetuned_dir: str | Path, task: str, data_dir: str | Path,
                       int8: bool, limit: int | None = None, split: str = "dev") -> float:
    """Dev accuracy x100 of an ONNX export of a fine-tuned classifier, scored exactly as the PyTorch model is
    (same tokenizer, sequence length and metric)."""
    from ..deploy.onnx import OnnxModel

    _, tokenizer, setup = load_finetuned(finetuned_dir, task)
    examples = glue.read_glue(task, data_dir, split)[:limit]
    enc = encode_glue(examples, tokenizer, setup.max_seq_length)
    model = OnnxModel(onnx_dir, int8=int8)
    outs: list = [None] * len(examples)
    for ids, mask, types, chunk in batches(enc, list(range(len(examples))), 64, tokenizer.pad_token_id):
        logits = model(ids, mask, types).logits
        for r, i in enumerate(chunk):
            outs[i] = logits[r].numpy()
    metrics, _ = score_glue(glue.get_task(task), outs, [e.label for e in examples])
    return 100 * metrics["accuracy"]
