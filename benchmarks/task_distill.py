"""Task-specific distillation on SST-2: the distilled student fine-tuned with a fine-tuned teacher's soft labels
(``finetune --teacher``, arm ``kd``), with soft labels plus intermediate transfer (``--kd-hidden``,
``--kd-attention``, arm ``mid``), and without a teacher (``plain``). Same student, data subset, hyper-parameters
and seeds; dev accuracy per seed, mean +- std, and the gains.

    # the teacher: all-MiniLM-L6-v2 fine-tuned with MiniLM's protocol (89.45% in docs/benchmarks.md)
    mobilebert finetune --task sst2 --data ../shared/data/glue --model <MiniLM dir> --out runs/sst2_minilm_teacher \\
        --epochs 1 --max-seq-length 64 --lr 1e-4 --max-train-examples 40000 --seeds 1
    .venv/bin/python benchmarks/task_distill.py --teacher runs/sst2_minilm_teacher/seed-1/best --seeds 1,2,3 \
        --arms plain,kd,mid

Each arm's ``results.json`` is kept under ``--workdir``; an arm whose results already exist with the same settings
is read back instead of trained again, so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mobilebert.atomic import atomic_write_text
from mobilebert.recipes.finetune import FinetuneConfig, train

REPO = Path(__file__).resolve().parents[1]


def run_arm(name: str, out: Path, settings: dict, teacher: str | None, extra: dict) -> dict:
    """Fine-tune one arm (or read back a finished one with the same settings)."""
    done = out / "results.json"
    key = {**settings, "teacher": teacher, **extra}
    settings_file = out / "bench_settings.json"
    if done.exists() and settings_file.exists() and json.loads(settings_file.read_text()) == key:
        print(f"{name}: reusing {done}")
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "bench_settings.json", json.dumps(key, indent=2) + "\n")
    kd = {"teacher": teacher, "kd_alpha": settings["kd_alpha"], "kd_temperature": settings["kd_temperature"], **extra}
    return train(FinetuneConfig("sst2", str(settings["data"]), str(settings["student"]), str(out), lr=settings["lr"],
                                batch_size=settings["batch_size"], epochs=settings["epochs"],
                                max_seq_length=settings["max_seq_length"], seeds=settings["seeds"],
                                max_train_examples=settings["max_train_examples"], dropout=settings["dropout"],
                                **(kd if teacher else {})))


def accuracies(results: dict) -> list[float]:
    return [100 * r["best"]["dev"]["accuracy"] for r in results["runs"]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True, help="a checkpoint fine-tuned on SST-2 (same vocabulary)")
    p.add_argument("--student", default=str(REPO / "models" / "mobilebert-minilm"))
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "glue"))
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-seq-length", type=int, default=64)
    p.add_argument("--max-train-examples", type=int, default=40000)
    p.add_argument("--dropout", type=float, default=0.1, help="the shipped student has none of its own")
    p.add_argument("--kd-alpha", type=float, default=0.5)
    p.add_argument("--kd-temperature", type=float, default=2.0)
    p.add_argument("--kd-hidden", type=float, default=1.0, help="arm mid: weight of the hidden-state transfer")
    p.add_argument("--kd-attention", type=float, default=1.0, help="arm mid: weight of the attention transfer")
    p.add_argument("--arms", default="kd,plain", help="which arms to run: plain, kd, mid (comma-separated)")
    p.add_argument("--workdir", default=str(REPO / "runs" / "task_distill"))
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "task_distill_sst2.json"))
    a = p.parse_args(argv)
    settings = {"student": a.student, "data": a.data, "seeds": [int(s) for s in a.seeds.split(",")], "lr": a.lr,
                "batch_size": a.batch_size, "epochs": a.epochs, "max_seq_length": a.max_seq_length,
                "max_train_examples": a.max_train_examples, "dropout": a.dropout, "kd_alpha": a.kd_alpha,
                "kd_temperature": a.kd_temperature}
    arms = {}
    for name in a.arms.split(","):
        if name not in ("plain", "kd", "mid"):
            p.error(f"--arms: unknown arm {name!r} (plain, kd or mid)")
        extra = {"kd_hidden": a.kd_hidden, "kd_attention": a.kd_attention} if name == "mid" else {}
        arms[name] = run_arm(name, Path(a.workdir) / name, settings, None if name == "plain" else a.teacher, extra)

    print(f"\nSST-2 dev accuracy, {a.max_train_examples} training examples, {a.epochs} epoch(s), lr {a.lr}, "
          f"dropout {a.dropout}; KD: alpha {a.kd_alpha}, T {a.kd_temperature}; mid: + hidden x {a.kd_hidden}, "
          f"attention x {a.kd_attention}")
    print("| arm | " + " | ".join(f"seed {s}" for s in settings["seeds"]) + " | mean +- std |")
    print("|---|" + "---|" * (len(settings["seeds"]) + 1))
    summary = {}
    for name, res in arms.items():
        acc = accuracies(res)
        dev = res["summary"]["dev"]["accuracy"]  # finetune's own mean and sample std over the seeds
        m, s = 100 * dev["mean"], 100 * dev["std"]
        summary[name] = {"per_seed": acc, "mean": m, "std": s}
        print(f"| {name} | " + " | ".join(f"{x:.2f}" for x in acc) + f" | {m:.2f} +- {s:.2f} |")
    for name in ("kd", "mid"):
        t_dev = arms[name]["hparams"].get("teacher_dev", {}).get("dev", {}) if name in arms else {}
        if t_dev:
            summary["teacher_dev_accuracy"] = 100 * t_dev.get("accuracy", float("nan"))
    if "teacher_dev_accuracy" in summary:
        print(f"teacher: {summary['teacher_dev_accuracy']:.2f}")
    for name in ("kd", "mid"):
        if {name, "plain"} <= arms.keys():
            summary[f"gain_{name}"] = summary[name]["mean"] - summary["plain"]["mean"]
            print(f"gain of {name} over plain: {summary[f'gain_{name}']:+.2f} points")
    atomic_write_text(Path(a.json), json.dumps({"args": vars(a), "summary": summary,
                                                "hparams": {k: v["hparams"] for k, v in arms.items()}},
                                               indent=2) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
