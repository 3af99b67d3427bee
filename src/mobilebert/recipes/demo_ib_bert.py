"""The paper's recipe on a laptop CPU, on the bundled sample data (``mobilebert demo --recipe ib-bert``): a
teacher pre-trained here from scratch, then distilled.

1. corpus -> MLM/NSP shards (train split and a held-out split of the WikiText sample)
2. pre-train a tiny IB-BERT teacher (MLM + NSP)
3. progressive knowledge transfer + pre-training distillation into a tiny MobileBERT student
4. the same student trained from scratch for the same number of steps (the baseline)
5. held-out MLM loss/accuracy of all three
6. fine-tune teacher, student and baseline on the SST-2 sentiment sample
7. export the fine-tuned student to ONNX (fp32 and int8) and score the int8 model
8. benchmark latency and size; write report.md with plots and results.json; print a summary table

Every stage writes a from_pretrained-loadable folder. ``fast=True`` shrinks every step count so the test suite
can run the whole pipeline in a couple of minutes; its numbers are not meaningful.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..data import glue
from ..data.instances import sample_corpus_path
from ..data.pretraining import PretrainingDataset
from ..data.shards import prepare_pretraining
from ..modeling import MobileBertForPreTraining
from ..report import (
    StageTimes,
    markdown_table,
    plot_bars,
    plot_latency_vs_size,
    plot_layer_losses,
    plot_losses,
    run_sections,
    write_report,
)
from ..train.trainer import TrainConfig
from .distill import DistillConfig, distill, evaluate_mlm
from .finetune import finetune, load_finetuned, onnx_glue_accuracy
from .pretrain_teacher import TeacherConfig, pretrain_teacher

log = logging.getLogger(__name__)

# Tiny shapes that keep the paper's structure: same 128-wide inter-block stream for teacher and student, the
# teacher's blocks widen to 256 inside (inverted bottleneck), the student's narrow to 32 (bottleneck).
TEACHER = dict(num_hidden_layers=4, embedding_size=64, hidden_size=128, intra_bottleneck_size=256,
               intermediate_size=512, num_attention_heads=4, max_position_embeddings=128)
STUDENT = dict(num_hidden_layers=4, embedding_size=64, hidden_size=128, intra_bottleneck_size=32,
               intermediate_size=128, num_attention_heads=4, num_feedforward_networks=2,
               max_position_embeddings=128)


@dataclass
class DemoSizes:
    seq: int = 64
    dupe_factor: int = 4
    batch_size: int = 16
    teacher_steps: int = 1000
    teacher_lr: float = 2e-3
    transfer_steps: int = 300  # all progressive phases together
    distill_steps: int = 600  # the baseline trains transfer_steps + distill_steps from scratch
    student_lr: float = 2e-3
    finetune_epochs: int = 6
    finetune_rows: int | None = None  # all 2,000 sample rows
    finetune_lr: float = 2e-3  # tiny students trained briefly need a large fine-tuning lr
    teacher_finetune_lr: float = 1e-3  # the LayerNorm/GELU teacher does not learn at 2e-3
    eval_rows: int | None = None  # all 872 dev rows
    bench_repeats: int = 20


FAST = DemoSizes(seq=32, dupe_factor=1, batch_size=16, teacher_steps=12, transfer_steps=8, distill_steps=6,
                 finetune_epochs=1, finetune_rows=96, eval_rows=64, bench_repeats=3)


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


def _train_cfg(out: Path, sizes: DemoSizes, lr: float) -> TrainConfig:
    return TrainConfig(out_dir=str(out), optimizer="lamb", lr=lr, batch_size=sizes.batch_size, log_every=5,
                       save_every=0, keep_last=1, seed=0)


def heldout_mlm(model_dir: Path, data: Path, batch_size: int) -> dict[str, float]:
    model = MobileBertForPreTraining.from_pretrained(model_dir)
    ds = PretrainingDataset(data)
    loader = ds.loader(batch_size, shuffle=False, drop_last=False)
    return evaluate_mlm(model, list(loader.batches(loader.batches_per_epoch)))


def run_ib_bert_demo(out_dir: str | Path = "demo_out", fast: bool = False) -> dict[str, Any]:
    """Run every stage; returns (and writes to ``out_dir/results.json``) the numbers the report shows."""
    from ..deploy.bench import BenchConfig, run_bench
    from ..deploy.onnx import export_checkpoint

    sizes = FAST if fast else DemoSizes()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings = StageTimes()
    mark = timings.mark

    # 1. data
    train_txt, held_txt = split_corpus(sample_corpus_path(), out / "data" / "text")
    shards = {}
    for name, src in (("train", train_txt), ("heldout", held_txt)):
        shards[name] = out / "data" / name
        if shards[name].exists():
            shutil.rmtree(shards[name])
        prepare_pretraining(src, shards[name], max_seq_length=sizes.seq, dupe_factor=sizes.dupe_factor if
                            name == "train" else 1, max_predictions_per_seq=max(4, sizes.seq * 15 // 100 + 1),
                            seed=0, workers=2)
    mark("data")

    # 2. teacher
    pretrain_teacher(TeacherConfig(preset="ib-bert-large", model=dict(TEACHER), data=str(shards["train"]),
                                   steps=sizes.teacher_steps, warmup_fraction=0.05,
                                   train=_train_cfg(out / "teacher", sizes, sizes.teacher_lr)))
    teacher_dir = out / "teacher" / "stages" / "pretrain"
    mark("teacher")

    # 3. progressive transfer + pre-training distillation; 4. the same student from scratch
    common = dict(teacher=str(teacher_dir), student_preset="mobilebert-tiny", student=dict(STUDENT),
                  data=str(shards["train"]), transfer_steps=sizes.transfer_steps, distill_steps=sizes.distill_steps)
    distill(DistillConfig(strategy="progressive", **common,
                          train=_train_cfg(out / "student", sizes, sizes.student_lr)))
    student_dir = out / "student" / "stages" / "distill"
    mark("distill")
    distill(DistillConfig(strategy="none", **common, train=_train_cfg(out / "baseline", sizes, sizes.student_lr)))
    baseline_dir = out / "baseline" / "stages" / "scratch"
    mark("baseline")
    pretrained = {"teacher": teacher_dir, "student": student_dir, "baseline": baseline_dir}

    # 5. held-out MLM
    mlm = {name: heldout_mlm(d, shards["heldout"], sizes.batch_size) for name, d in pretrained.items()}
    mark("heldout")

    # 6. fine-tune on the sentiment sample
    sst2: dict[str, dict[str, Any]] = {}
    for name, d in pretrained.items():
        lr = sizes.teacher_finetune_lr if name == "teacher" else sizes.finetune_lr
        res = finetune("sst2", glue.SAMPLE_DIR, d, out / "finetune" / name, lr=lr, batch_size=32,
                       epochs=sizes.finetune_epochs, max_seq_length=64, seeds=[0],
                       max_train_examples=sizes.finetune_rows, max_eval_examples=sizes.eval_rows)
        sst2[name] = {"accuracy": 100 * res["summary"]["dev"]["accuracy"]["mean"], "dir": str(out / "finetune" / name / "seed-0" / "best")}
    mark("finetune")

    # 7. export the fine-tuned student: ONNX fp32 + int8
    export_dir = out / "export" / "student-onnx"
    export_checkpoint(sst2["student"]["dir"], export_dir, int8=True, overwrite=True)
    int8_acc = onnx_glue_accuracy(export_dir, sst2["student"]["dir"], "sst2", glue.SAMPLE_DIR, int8=True,
                                  limit=sizes.eval_rows)
    mark("export")

    # 8. latency and size
    bench_cfg = BenchConfig(batches=(1,), seqs=(128,), threads=(2,), repeats=sizes.bench_repeats)
    latency = []
    for name in pretrained:
        backends = ("eager", "optimized", "ort-fp32", "ort-int8") if name == "student" else ("eager", "optimized")
        if name == "baseline":
            continue  # same architecture as the student: same latency
        model, _, _ = load_finetuned(sst2[name]["dir"], "sst2")
        res = run_bench(model, BenchConfig(**{**asdict(bench_cfg), "backends": backends}), progress=not fast)
        for r in res.rows:
            latency.append({"name": f"{name} {r['backend']}", "model": name, "backend": r["backend"],
                            "latency_ms": r["median_ms"], "p90_ms": r["p90_ms"],
                            "size_mb": res.sizes_mb.get(r["backend"], float("nan"))})
    mark("bench")

    results = {"recipe": "ib-bert", "fast": fast, "sizes": asdict(sizes), "teacher_config": TEACHER, "student_config": STUDENT,
               "heldout_mlm": mlm, "sst2_dev_accuracy": {k: v["accuracy"] for k, v in sst2.items()},
               "student_int8_onnx_accuracy": int8_acc, "latency": latency, "timings_s": timings,
               "params": {n: MobileBertForPreTraining.from_pretrained(d).mobilebert.num_parameters()
                          for n, d in pretrained.items()},
               "checkpoints": {**{n: str(d) for n, d in pretrained.items()},
                               **{f"{n}-sst2": v["dir"] for n, v in sst2.items()}, "student-onnx": str(export_dir)}}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    make_report(out, results)
    return results


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name in ("teacher", "student", "baseline"):
        eager = [r for r in results["latency"] if r["model"] == name and r["backend"] == "eager"]
        rows.append({"model": name, "params": results["params"][name],
                     "heldout MLM acc %": 100 * results["heldout_mlm"][name]["mlm_accuracy"],
                     "heldout MLM loss": results["heldout_mlm"][name]["mlm_loss"],
                     "SST-2 sample dev acc %": results["sst2_dev_accuracy"][name],
                     "latency ms (eager, b1 s128)": eager[0]["latency_ms"] if eager else "as student"})
    rows.append({"model": "student int8 ONNX", "SST-2 sample dev acc %": results["student_int8_onnx_accuracy"]})
    return rows


COLUMNS = ["model", "params", "heldout MLM acc %", "heldout MLM loss", "SST-2 sample dev acc %",
           "latency ms (eager, b1 s128)"]


def make_report(out: Path, results: dict[str, Any]) -> Path:
    """report.md + PNG plots, every number taken from ``results`` (which is results.json)."""
    plots = out / "plots"
    images = {
        "loss per stage": plot_losses({"teacher": out / "teacher" / "metrics.jsonl",
                                       "student (progressive + distillation)": out / "student" / "metrics.jsonl",
                                       "baseline (scratch)": out / "baseline" / "metrics.jsonl"},
                                      plots / "loss.png"),
        "feature-map transfer loss per layer": plot_layer_losses(out / "student" / "metrics.jsonl",
                                                                 plots / "fmt_per_layer.png"),
        "accuracy": plot_bars({**results["sst2_dev_accuracy"], "student int8": results["student_int8_onnx_accuracy"]},
                              plots / "accuracy.png", "accuracy %", "SST-2 sample dev accuracy"),
        "latency against size": plot_latency_vs_size(results["latency"], plots / "latency_size.png"),
    }
    acc, mlm = results["sst2_dev_accuracy"], results["heldout_mlm"]
    verdict = ("beats" if acc["student"] > acc["baseline"] else "does not beat")
    sections = [
        ("Summary", f"The distilled student {verdict} the from-scratch student on the sentiment sample "
                    f"({acc['student']:.1f}% vs {acc['baseline']:.1f}%; teacher {acc['teacher']:.1f}%; one seed, "
                    "so differences of a point or two are within seed noise). On held-out text its masked-LM "
                    f"accuracy is {100 * mlm['student']['mlm_accuracy']:.1f}% against "
                    f"{100 * mlm['baseline']['mlm_accuracy']:.1f}% from scratch. "
                    f"The int8 ONNX student scores {results['student_int8_onnx_accuracy']:.1f}%."
                    + (" (fast mode: tiny step counts, numbers not meaningful)" if results["fast"] else "")),
        ("Results", markdown_table(summary_rows(results), COLUMNS)),
        *run_sections(out, results, images),
    ]
    return write_report(out / "report.md", "MobileBERT demo report", sections)
