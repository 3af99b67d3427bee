"""The paper's recipe on a laptop CPU, on the bundled sample data (``mobilebert demo --recipe ib-bert``): a
teacher pre-trained here from scratch, then distilled.

1. data: corpus -> MLM/NSP shards (train split and a held-out split of the WikiText sample)
2. teacher: pre-train a tiny IB-BERT teacher (MLM + NSP)
3. distill: progressive knowledge transfer + pre-training distillation into a tiny MobileBERT student
4. baseline: the same student trained from scratch for the same number of steps
5. heldout: held-out MLM loss/accuracy of all three
6. finetune: teacher, student and baseline on the SST-2 sentiment sample
7. export: the fine-tuned student to ONNX (fp32 and int8), the int8 model scored
8. bench: latency and size

Every step writes a from_pretrained-loadable folder.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..data.instances import sample_corpus_path
from ..data.pretraining import PretrainingDataset
from ..data.shards import prepare_pretraining
from ..finetune.load import load_finetuned
from ..modeling import MobileBertForPreTraining
from ..recipes.distill import DistillConfig, distill, evaluate_mlm
from ..recipes.pretrain_teacher import TeacherConfig, pretrain_teacher
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

# Tiny shapes that keep the paper's structure: same 128-wide inter-block stream for teacher and student, the
# teacher's blocks widen to 256 inside (inverted bottleneck), the student's narrow to 32 (bottleneck).
TEACHER = dict(num_hidden_layers=4, embedding_size=64, hidden_size=128, intra_bottleneck_size=256,
               intermediate_size=512, num_attention_heads=4, max_position_embeddings=128)
STUDENT = dict(num_hidden_layers=4, embedding_size=64, hidden_size=128, intra_bottleneck_size=32,
               intermediate_size=128, num_attention_heads=4, num_feedforward_networks=2,
               max_position_embeddings=128)
MODELS = ("teacher", "student", "baseline")


@dataclass(kw_only=True)
class IBBertSizes(DemoSizes):
    dupe_factor: int
    teacher_steps: int
    teacher_lr: float
    transfer_steps: int  # all progressive phases together
    distill_steps: int  # the baseline trains transfer_steps + distill_steps from scratch
    student_lr: float
    teacher_finetune_lr: float  # the LayerNorm/GELU teacher does not learn at the students' 2e-3


# Tiny students trained briefly need a large fine-tuning lr (2e-3).
FULL = IBBertSizes(seq=64, dupe_factor=4, batch_size=16, teacher_steps=1000, teacher_lr=2e-3, transfer_steps=300,
                   distill_steps=600, student_lr=2e-3, finetune_epochs=6, finetune_rows=None, finetune_lr=2e-3,
                   teacher_finetune_lr=1e-3, eval_rows=None, bench_repeats=20)
FAST = replace(FULL, seq=32, dupe_factor=1, teacher_steps=12, transfer_steps=8, distill_steps=6, finetune_epochs=1,
               finetune_rows=96, eval_rows=64, bench_repeats=3)


def split_corpus(src: Path, out_dir: Path, heldout_fraction: float = 0.1) -> tuple[Path, Path]:
    """Whole WikiText articles (`` = Title = `` lines) go to train or, the last ones, to held-out."""
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    starts = [i for i, ln in enumerate(lines) if ln.startswith(" = ") and not ln.startswith(" = = ")]
    cut = starts[max(1, int(len(starts) * (1 - heldout_fraction)))] if len(starts) > 1 else len(lines) * 9 // 10
    out_dir.mkdir(parents=True, exist_ok=True)
    train, held = out_dir / "train.txt", out_dir / "heldout.txt"
    atomic_write_text(train, "".join(lines[:cut]))
    atomic_write_text(held, "".join(lines[cut:]))
    return train, held


def _train_cfg(out: Path, sizes: IBBertSizes, lr: float) -> TrainConfig:
    return TrainConfig(out_dir=str(out), optimizer="lamb", lr=lr, batch_size=sizes.batch_size, log_every=5,
                       save_every=0, keep_last=1, seed=0)


def heldout_mlm(model_dir: str | Path, data: Path, batch_size: int) -> dict[str, float]:
    model = MobileBertForPreTraining.from_pretrained(model_dir)
    ds = PretrainingDataset(data)
    loader = ds.loader(batch_size, shuffle=False, drop_last=False)
    return evaluate_mlm(model, list(loader.batches(loader.batches_per_epoch)))


# ----------------------------------------------------------------------------- the steps
def data(run: Run) -> None:
    sizes = run.sizes
    train_txt, held_txt = split_corpus(sample_corpus_path(), run.out / "data" / "text")
    for name, src in (("train", train_txt), ("heldout", held_txt)):
        run.paths[name] = run.out / "data" / name
        if run.paths[name].exists():
            shutil.rmtree(run.paths[name])
        prepare_pretraining(src, run.paths[name], max_seq_length=sizes.seq,
                            dupe_factor=sizes.dupe_factor if name == "train" else 1,
                            max_predictions_per_seq=max(4, sizes.seq * 15 // 100 + 1), seed=0, workers=2)
    run.results["teacher_config"], run.results["student_config"] = TEACHER, STUDENT


def teacher(run: Run) -> None:
    pretrain_teacher(TeacherConfig(preset="ib-bert-large", model=dict(TEACHER), data=str(run.paths["train"]),
                                   steps=run.sizes.teacher_steps, warmup_fraction=0.05,
                                   train=_train_cfg(run.out / "teacher", run.sizes, run.sizes.teacher_lr)))
    run.checkpoints["teacher"] = str(run.out / "teacher" / "stages" / "pretrain")


def _student(run: Run, strategy: str, name: str, stage: str) -> None:
    sizes = run.sizes
    distill(DistillConfig(strategy=strategy, teacher=run.checkpoints["teacher"], student_preset="mobilebert-tiny",
                          student=dict(STUDENT), data=str(run.paths["train"]), transfer_steps=sizes.transfer_steps,
                          distill_steps=sizes.distill_steps, train=_train_cfg(run.out / name, sizes, sizes.student_lr)))
    run.checkpoints[name] = str(run.out / name / "stages" / stage)


def distil_student(run: Run) -> None:
    _student(run, "progressive", "student", "distill")


def train_baseline(run: Run) -> None:
    _student(run, "none", "baseline", "scratch")


def heldout(run: Run) -> None:
    """Held-out masked-LM loss and accuracy, and each encoder's parameter count."""
    run.results["heldout_mlm"] = {n: heldout_mlm(run.checkpoints[n], run.paths["heldout"], run.sizes.batch_size)
                                  for n in MODELS}
    run.results["params"] = {n: MobileBertForPreTraining.from_pretrained(run.checkpoints[n]).mobilebert
                             .num_parameters() for n in MODELS}


def finetune_all(run: Run) -> None:
    finetune_sst2(run, {n: run.sizes.teacher_finetune_lr if n == "teacher" else run.sizes.finetune_lr
                        for n in MODELS})


def export(run: Run) -> None:
    run.results["student_int8_onnx_accuracy"] = export_int8(run, ["student"])["student"]


def bench(run: Run) -> None:
    """Teacher and student one after the other; the baseline has the student's architecture, so its latency."""
    from ..deploy.bench import BenchConfig, run_bench

    rows = []
    for name, backends in (("teacher", ("eager", "optimized")),
                           ("student", ("eager", "optimized", "ort-fp32", "ort-int8"))):
        cfg = BenchConfig(batches=(1,), seqs=(128,), threads=(2,), backends=backends, repeats=run.sizes.bench_repeats)
        model, _, _ = load_finetuned(run.checkpoints[f"{name}-sst2"], "sst2")
        rows += latency_rows(name, run_bench(model, cfg, progress=not run.fast), cfg.repeats)
    run.results["latency"] = rows


# ----------------------------------------------------------------------------- the report
def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name in MODELS:
        eager = latency(results, name, "eager")
        rows.append({"model": name, "params": results["params"][name],
                     "heldout MLM acc %": 100 * results["heldout_mlm"][name]["mlm_accuracy"],
                     "heldout MLM loss": results["heldout_mlm"][name]["mlm_loss"],
                     "SST-2 sample dev acc %": results["sst2_dev_accuracy"][name],
                     "latency ms (eager, b1 s128)": latency_cell(eager) if eager else "as student"})
    rows.append({"model": "student int8 ONNX", "SST-2 sample dev acc %": results["student_int8_onnx_accuracy"]})
    return rows


def summary(results: dict[str, Any]) -> str:
    acc, mlm = results["sst2_dev_accuracy"], results["heldout_mlm"]
    verdict = "beats" if acc["student"] > acc["baseline"] else "does not beat"
    return (f"The distilled student {verdict} the from-scratch student on the sentiment sample "
            f"({acc['student']:.1f}% vs {acc['baseline']:.1f}%; teacher {acc['teacher']:.1f}%; always answering the "
            f"majority class {results['sst2_majority_class_accuracy']:.1f}%; one seed, so differences of a point or "
            "two are within seed noise). On held-out text its masked-LM accuracy is "
            f"{100 * mlm['student']['mlm_accuracy']:.1f}% against {100 * mlm['baseline']['mlm_accuracy']:.1f}% from "
            f"scratch. The int8 ONNX student scores {results['student_int8_onnx_accuracy']:.1f}%.")


def plots(out: Path, results: dict[str, Any], note: str) -> dict[str, Path | None]:
    folder = out / "plots"
    return {
        "loss per stage": report.plot_losses({"teacher": out / "teacher" / "metrics.jsonl",
                                              "student (progressive + distillation)": out / "student" / "metrics.jsonl",
                                              "baseline (scratch)": out / "baseline" / "metrics.jsonl"},
                                             folder / "loss.png", note=note),
        "feature-map transfer loss per layer": report.plot_layer_losses(out / "student" / "metrics.jsonl",
                                                                        folder / "fmt_per_layer.png", note=note),
        **report.accuracy_and_latency(
            results, {**results["sst2_dev_accuracy"], "student int8": results["student_int8_onnx_accuracy"]}, folder,
            note),
    }


RECIPE = Recipe(name="ib-bert", title="MobileBERT demo report", full=FULL, fast=FAST,
                steps=(Step("data", data), Step("teacher", teacher), Step("distill", distil_student),
                       Step("baseline", train_baseline), Step("heldout", heldout), Step("finetune", finetune_all),
                       Step("export", export), Step("bench", bench)),
                summary=summary, summary_rows=summary_rows, plots=plots)
