"""``mobilebert finetune``: fine-tune a checkpoint on a GLUE task, SQuAD or the user's own files (text
classification incl. pairs and multi-label, regression, token classification), once per seed, keep the best epoch.

Reads top to bottom: check the settings (``FinetuneConfig``; on ``resume``, against the run's stored config.yaml)
-> tokenizer, teacher (task distillation) and data -> the teacher's outputs on the training set, once -> for each
seed: the task model (``finetune.load``), the shared trainer (``train.trainer.fit``: AdamW with warm-up and linear
decay, DDP under torchrun, bf16, gradient accumulation, clipping, checkpoints, exact resume) with a dev evaluation
every epoch that keeps the best epoch as a ``from_pretrained`` folder (with finetune.json, so ``evaluate`` and
``predict`` know what it was trained for) -> mean +- std over seeds in ``results.json``.

The pieces live in ``mobilebert.finetune``; this file only wires them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .. import options
from ..atomic import atomic_write_text
from ..checkpoint import inspect
from ..config import MobileBertConfig
from ..data import glue
from ..data.finetuning import (
    Encoded,
    FinetuneLoader,
    file_references,
    load_eval_data,
    load_train_data,
    read_file,
    steps_per_epoch,
    with_training_file,
)
from ..data.tasks import FILE_TASKS, TaskSetup, check_data_settings, task_name
from ..distill.losses import TransferMap
from ..finetune.evaluate import evaluate_loaded
from ..finetune.load import load_finetuned, load_task_model, load_teacher
from ..finetune.module import FinetuneModule, FinetuneTask, seed_everything, teacher_logits
from ..options import option
from ..sanity import dev_majority, file_notes, teacher_notes
from ..tokenizer import MobileBertTokenizer
from ..train.schedule import Stage
from ..train.trainer import Dist, TrainConfig, check_batch, fit, init_distributed

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"  # the resolved settings, next to the seed folders; compared on resume


@dataclass
class FinetuneConfig:
    """Every setting of ``mobilebert finetune`` (flags, YAML keys and ``key=value`` overrides alike)."""

    task: str = option(help="text-classification, regression, token-classification (your own files: --train, "
                       "--validation), or a GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli; --data), "
                       "squad, squad2 (--data)")
    model: str = option(help="checkpoint folder (ours, HF MobileBERT or HF BERT)", path="model")
    out: str = option(help="output folder: seed-N/best, metrics.jsonl, results.json", output="run",
                      affects_result=False)
    data: str | None = option(None, help="GLUE root (or task folder), or the folder with SQuAD's JSON",
                              path="exists")
    train: str | None = option(None, help="your training file (.csv, .tsv, .jsonl, .json, .parquet, a save_to_disk "
                               "folder; token-classification: CoNLL text or JSONL tokens/tags); its labels are the "
                               "model's", path="exists")
    validation: str | None = option(None, help="your validation file (same format): scored every epoch, picks the "
                                    "best epoch (and the multi-label thresholds)", path="exists")
    test: str | None = option(None, help="your test file: each seed's best model is scored on it once, at the end",
                              path="exists")
    text_column: str | None = option(None, help="column of the text (token-classification: the tokens) (default: "
                                     "text, sentence, question or sentence1; tokens, words)")
    text_pair_column: str | None = option(None, help="column of the second text of a pair (default: sentence2 "
                                          "with sentence1, sentence with question)")
    label_column: str | None = option(None, help="column of the label (token-classification: the tags) (default: "
                                      "label, labels; tags, ner_tags)")
    label_separator: str | None = option(None, help="multi-label: the separator of a text label column (e.g. '|'); "
                                         "without it the column holds JSON lists")
    multi_label: bool = option(False, help="text-classification: any number of labels per row (sigmoid + BCE, "
                               "per-label thresholds tuned on validation)")
    lr: float = option(5e-5, help="peak learning rate, AdamW with warm-up and linear decay", above=0)
    batch_size: int = option(32, help="examples per step", at_least=1)
    epochs: int = option(3, help="passes over the training set; the best epoch is kept", at_least=1)
    max_seq_length: int = option(128, help="tokens per example, longer pairs truncated", at_least=8)
    warmup: float = option(0.1, help="fraction of steps (< 1) or a step count", at_least=0)
    weight_decay: float = option(0.01, help="AdamW weight decay, not on biases and norms", at_least=0)
    seeds: list[int] = option(factory=lambda: [42], help="one run per seed, e.g. 1,2,3 (mean +- std over them); "
                              "a resumed run keeps its seeds and adds new ones")
    max_train_examples: int | None = option(None, help="train on a fixed random subset of this size (default: all)",
                                            at_least=1)
    max_eval_examples: int | None = option(None, help="evaluate on the first N examples only, a subset said so in "
                                           "the summary and results.json (default: all)", at_least=1)
    doc_stride: int = option(128, help="SQuAD: tokens between the starts of a context's windows", at_least=1)
    max_query_length: int = option(64, help="SQuAD: question tokens kept", at_least=1)
    max_answer_length: int = option(30, help="SQuAD: longest answer span in tokens", at_least=1)
    random_init: bool = option(False, help="same architecture, random weights (baseline)")
    source: str = option("tsv", help="GLUE from TSV files or the datasets library", choices=("tsv", "datasets"))
    dropout: float | None = option(None, help="override hidden, attention and classifier dropout (e.g. 0.0)",
                                   at_least=0, below=1)
    teacher: str | None = option(None, help="task-specific distillation: a model already fine-tuned on this task, "
                                 "with the student's vocabulary (its outputs on the training set are computed once)",
                                 path="checkpoint")
    kd_alpha: float = option(0.5, help="weight of the label loss; 1 - alpha goes to the teacher", at_least=0,
                             at_most=1)
    kd_temperature: float = option(1.0, help="softmax temperature of the teacher term", above=0)
    kd_hidden: float = option(0.0, help="weight of intermediate transfer: every student layer's hidden states "
                              "against the teacher's (the teacher then runs on every batch) (0: off)", at_least=0)
    kd_attention: float = option(0.0, help="weight of intermediate transfer: attention maps, as kd_hidden (0: off)",
                                 at_least=0)
    grad_accum: int = option(1, help="micro-batches per step; batch_size is the whole step's batch (all of them, "
                             "all processes)", at_least=1)
    precision: str = option("fp32", help="bf16: autocast matmuls", choices=("fp32", "bf16"))
    max_grad_norm: float = option(1.0, help="gradient clipping norm", at_least=0)
    save_every: int = option(0, help="also checkpoint every N steps (0: only after each epoch)", at_least=0,
                             affects_result=False)
    keep_last: int = option(1, help="checkpoints kept per seed (0: all)", at_least=0, affects_result=False)
    resume: bool = option(False, help="continue each seed from its latest checkpoint in out (same processes and "
                          "settings; new seeds are added)", affects_result=False)
    eval_batch_size: int = option(64, help="examples per forward pass when evaluating", at_least=1,
                                  affects_result=False)
    log_every: int = option(20, help="log the training loss every N steps", at_least=1, affects_result=False)
    device: str | None = option(None, help="e.g. cpu, cuda:1 (default: CUDA when available)", affects_result=False)

    def check(self) -> None:
        """Relations between settings (each field's own range is checked from its metadata)."""
        self.task = task_name(self.task)  # a one-line ValueError naming the choices
        check_data_settings(self)
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {','.join(map(str, self.seeds))}: a seed is repeated")
        for key in ("kd_hidden", "kd_attention"):
            if getattr(self, key) > 0 and self.teacher is None:
                raise ValueError(f"{{{key}}} needs a {{teacher}} to transfer from")
        check_batch(self.batch_size, self.grad_accum)


def setup_of(cfg: FinetuneConfig) -> TaskSetup:
    """What the run remembers about its task (finetune.json), before the training file adds its labels."""
    cols = {"text": cfg.text_column, "text_pair": cfg.text_pair_column, "label": cfg.label_column}
    return TaskSetup(cfg.task, cfg.max_seq_length, cfg.doc_stride, cfg.max_query_length, cfg.max_answer_length,
                     multi_label=cfg.multi_label, label_separator=cfg.label_separator,
                     columns=cols if cfg.task in FILE_TASKS else None)


# ----------------------------------------------------------------------------- the command
def run(cfg: FinetuneConfig) -> dict[str, Any]:
    """``mobilebert finetune``: train (see :func:`train`), then print the summary and any notes (rank 0)."""
    from ..sanity import finetune_notes

    results = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every process returns the same results
        print(format_summary(results))
        print(f"results: {cfg.out}/results.json")
        for note in finetune_notes(results, cfg.data if cfg.source != "datasets" else None):  # at chance: say so
            print(f"note: {note}")
        for note in results["hparams"].get("notes", []):  # about the data, the teacher, the starting model
            print(f"note: {note}")
    return results


def train(cfg: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune ``cfg.model`` on ``cfg.task`` once per seed; returns (and writes ``out/results.json``) per-seed
    best dev metrics and their mean and standard deviation.

    ``teacher``: its outputs on the training set are computed once, scored on dev, and mixed into every seed's
    loss; with ``kd_hidden`` / ``kd_attention`` it also runs on every batch (intermediate transfer). Under
    ``torchrun`` every process runs this; ``batch_size`` is the global batch, rank 0 evaluates and writes.
    ``resume`` continues each seed from its latest checkpoint (a finished seed is not trained again) after
    checking that the settings are the run's own."""
    options.check(cfg)
    out = Path(cfg.out)
    d = init_distributed()
    if cfg.device is not None:
        d.device = torch.device(cfg.device)
    cfg = resumed_config(cfg, out) if cfg.resume else cfg
    with tempfile.TemporaryDirectory(prefix="mobilebert-data-") as cache:  # datasets' Arrow copies, then gone
        return _train(cfg, out, d, cache)


def _train(cfg: FinetuneConfig, out: Path, d: Dist, cache: str) -> dict[str, Any]:
    spec = setup_of(cfg)
    notes: list[str] = []
    if spec.is_file_task:
        train_file = read_file(spec, cfg.train, cache)
        spec = with_training_file(spec, train_file)
        val_file = read_file(spec, cfg.validation, cache)
        file_references(spec, val_file)  # a label the training file never had: refused now, before any work
        notes += file_notes(spec, train_file, val_file, cfg.train)
    tokenizer = MobileBertTokenizer.from_pretrained(cfg.model)
    intermediate = cfg.kd_hidden > 0 or cfg.kd_attention > 0
    t_model = load_teacher(spec, cfg.teacher, tokenizer).to(d.device) if cfg.teacher is not None else None
    # intermediate transfer's layer map; a student deeper than its teacher is refused here, before any data is read
    tmap = TransferMap.build(t_model.config, MobileBertConfig.from_json(cfg.model)) if intermediate else None
    train_path = cfg.train if spec.is_file_task else cfg.data
    if not spec.is_file_task and not spec.is_squad and cfg.source != "datasets":
        glue.check_distinct_splits(spec.task, cfg.data)  # validation is never the training set
    train_data = load_train_data(spec, train_path, tokenizer, cfg.max_train_examples, cfg.source, cache)
    dev = load_eval_data(spec, cfg.validation if spec.is_file_task else cfg.data, tokenizer,
                         limit=cfg.max_eval_examples, source=cfg.source, cache_dir=cache)
    eval_examples = {split: len(item[0]) for split, item in dev.items()}
    subset = cfg.max_eval_examples is not None and any(n >= cfg.max_eval_examples for n in eval_examples.values())
    if subset:
        log.info("scoring on the first %d examples of each dev split only (max_eval_examples): a subset",
                 cfg.max_eval_examples)
    hparams = {"task": cfg.task, "model": cfg.model, "lr": cfg.lr, "batch_size": cfg.batch_size,
               "epochs": cfg.epochs, "max_seq_length": cfg.max_seq_length, "warmup": cfg.warmup,
               "weight_decay": cfg.weight_decay, "seeds": list(cfg.seeds), "train_examples": len(train_data),
               "eval_examples": eval_examples, "eval_subset": subset, "random_init": cfg.random_init,
               "device": str(d.device), "torch_threads": torch.get_num_threads(), "dropout": cfg.dropout,
               "grad_accum": cfg.grad_accum, "precision": cfg.precision, "world_size": d.world}
    if spec.is_file_task:
        hparams.update(train=cfg.train, validation=cfg.validation, columns=spec.columns, labels=list(spec.labels),
                       multi_label=spec.multi_label)
    hparams["sentence_encoder"] = inspect(cfg.model).is_sentence_encoder  # see sanity.finetune_notes
    if d.main:  # the run's record: a resume is compared with it
        options.write_resolved(cfg, out, CONFIG_FILE)
    cached = None
    if t_model is not None:
        t0 = time.perf_counter()
        cached = teacher_logits(t_model, train_data, cfg.eval_batch_size, tokenizer.pad_token_id)
        t_dev = evaluate_loaded(t_model, tokenizer, spec, dev, cfg.eval_batch_size) if d.main else {}
        if not intermediate:
            del t_model
            t_model = None
        hparams.update(teacher=cfg.teacher, kd_alpha=cfg.kd_alpha, kd_temperature=cfg.kd_temperature,
                       teacher_dev=t_dev, teacher_seconds=time.perf_counter() - t0, kd_hidden=cfg.kd_hidden,
                       kd_attention=cfg.kd_attention)
        log.info("teacher %s: dev %s; outputs cached for %d training rows", cfg.teacher,
                 ", ".join(f"{s} {m['score']:.4f}" for s, m in t_dev.items()), len(cached))
        notes += teacher_notes(cfg.teacher, t_dev, dev_majority(spec, dev, cfg.data, cfg.max_eval_examples))
    runs = [train_one_seed(cfg, spec, out / f"seed-{seed}", train_data, dev, tokenizer, seed, d, cached, t_model,
                           tmap) for seed in cfg.seeds]
    if cfg.test is not None and d.main:
        for r in runs:  # each seed's best model, once, on the held-out test file
            model, _, best_spec = load_finetuned(r["best_dir"])
            test = load_eval_data(best_spec, cfg.test, tokenizer, cache_dir=cache)
            r["test"] = evaluate_loaded(model, tokenizer, best_spec, test, cfg.eval_batch_size)["validation"]
    majority = dev_majority(spec, dev, cfg.data, cfg.max_eval_examples)
    if majority is not None:
        hparams["majority_baseline"] = list(majority)  # [label, share]
    for note in notes:
        log.info("note: %s", note)
    hparams["notes"] = notes
    results = {"hparams": hparams, "runs": runs, "summary": summarize([r["best"] for r in runs])}
    if d.main:
        atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def resumed_config(cfg: FinetuneConfig, out: Path) -> FinetuneConfig:
    """``cfg`` with the run's seeds first and new ones added; refused (one line naming the keys) when a setting
    that changes the result differs from the run's stored config.yaml."""
    path = out / CONFIG_FILE
    if not path.is_file():  # a run from before configs were stored, or nothing to resume: nothing to compare
        return cfg
    before = options.read_yaml(path)
    now = options.to_dict(cfg)
    keys = options.changed(FinetuneConfig, before, now, ignore=("seeds",))
    if keys:
        diff = ", ".join(f"{k} {before.get(k)!r} -> {now[k]!r}" for k in keys)
        raise options.UsageError(f"resume {out}: settings differ from the run's {CONFIG_FILE} ({diff}); resume "
                                 "with the run's own settings, or start a new out folder")
    old = [int(s) for s in before.get("seeds") or []]
    return dataclasses.replace(cfg, seeds=old + [s for s in cfg.seeds if s not in old])


def train_one_seed(cfg: FinetuneConfig, spec: TaskSetup, out_dir: Path, train: Encoded, dev: dict[str, Any],
                   tokenizer: MobileBertTokenizer, seed: int, d: Dist, teacher: list[torch.Tensor] | None = None,
                   teacher_model: torch.nn.Module | None = None, transfer: TransferMap | None = None
                   ) -> dict[str, Any]:
    """One fine-tuning run through the shared trainer; the best epoch (first dev split's score) is saved to
    ``out_dir/best``, checkpoints to ``out_dir/checkpoints`` (after every epoch, and every ``save_every`` steps).

    ``teacher``: cached teacher outputs per training row, mixed into the loss with weight ``1 - kd_alpha``.
    ``teacher_model`` and its ``transfer`` map: intermediate transfer on every batch (see ``FinetuneModule``)."""
    seed_everything(seed)
    model = load_task_model(spec, cfg.model, random_init=cfg.random_init, dropout=cfg.dropout)
    intermediate = teacher_model is not None and transfer is not None
    module = FinetuneModule(model, spec.is_regression, cfg.kd_alpha if teacher is not None else 1.0,
                            cfg.kd_temperature, teacher_model if intermediate else None,
                            transfer if intermediate else None)
    slots = d.world * cfg.grad_accum
    per_epoch = steps_per_epoch(len(train), cfg.batch_size, slots)
    if per_epoch == 0:
        raise ValueError(f"{len(train)} training examples are too few for one batch of {cfg.batch_size}")
    if len(train) % cfg.batch_size and per_epoch * cfg.batch_size < len(train):
        log.info("the last %d examples of each epoch are dropped: too few to give each of %d process(es) x %d "
                 "accumulation steps one", len(train) % cfg.batch_size, d.world, cfg.grad_accum)
    total = per_epoch * cfg.epochs
    warmup_steps = int(cfg.warmup * total) if cfg.warmup < 1 else int(cfg.warmup)
    kd = {"hidden": cfg.kd_hidden, "att": cfg.kd_attention} if intermediate else {}
    terms = {"task": 1.0, **{k: w for k, w in kd.items() if w > 0}}
    lr_groups = {"model": 1.0, **({"transfer": 1.0} if intermediate and transfer.project else {})}
    stage = Stage("finetune", total, terms, [], lr_groups, warmup_steps=warmup_steps)
    train_cfg = TrainConfig(out_dir=str(out_dir), optimizer="adamw", lr=cfg.lr, eps=1e-6,
                            weight_decay=cfg.weight_decay, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                            max_grad_norm=cfg.max_grad_norm, precision=cfg.precision, save_every=cfg.save_every,
                            keep_last=cfg.keep_last, log_every=cfg.log_every, eval_every=per_epoch,
                            save_on_eval=True, seed=None)  # seeded above, before the model
    task = FinetuneTask(module, tokenizer, spec, dev, out_dir, cfg.eval_batch_size, per_epoch,
                        min(len(train), per_epoch * cfg.batch_size), seed)

    def make_loader(epoch: int) -> FinetuneLoader:
        return FinetuneLoader(train, seed=seed, epoch=epoch, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                              rank=d.rank, world=d.world, pad_id=tokenizer.pad_token_id,
                              regression=spec.is_regression, is_squad=spec.is_squad, teacher=teacher)

    if not cfg.resume and d.main:  # a fresh run: an earlier run's checkpoints must not be resumed later
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    fit(task, [stage], make_loader, train_cfg, resume=cfg.resume, d=d)
    if d.world > 1:  # every rank returns rank 0's history
        state = [task.state_dict()]
        dist.broadcast_object_list(state, src=0)
        task.load_state_dict(state[0])
    if task.best is None:
        raise RuntimeError(f"{out_dir}: no epoch was evaluated")
    return {"seed": seed, "best_epoch": task.best["epoch"], "best": task.best["metrics"], "history": task.history,
            "best_dir": str(out_dir / "best")}


# ----------------------------------------------------------------------------- the summary
def summarize(bests: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
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
    """One line per split: each metric as mean +- std over the seeds; a dev subset says so."""
    hp = results["hparams"]
    lines = [f"{hp['task']}: {len(results['runs'])} seed(s) ({', '.join(str(r['seed']) for r in results['runs'])})"]
    for split, metrics in results["summary"].items():
        parts = [f"{k} {v['mean']:.4f} +- {v['std']:.4f}" for k, v in metrics.items() if not k.endswith("total")]
        subset = f" (on the first {hp['eval_examples'][split]} examples only: a subset)" \
            if hp.get("eval_subset") and split in hp.get("eval_examples", {}) else ""
        lines.append(f"  {split}: " + ", ".join(parts) + subset)
    return "\n".join(lines)
