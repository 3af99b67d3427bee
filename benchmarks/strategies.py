"""The paper's strategy ablation at small scale: auxiliary, joint, progressive and none (from scratch).

One teacher (pre-trained here with MLM + NSP), one student shape, the same data and the same total number of
student steps for every strategy. Reports held-out MLM loss/accuracy and, with ``--sst2``, SST-2 dev accuracy
after fine-tuning (mean over seeds), then whether the paper's order (progressive >= joint > auxiliary > none)
holds. Data: WikiText-2 valid (train) / test (held out) from ../shared/data, else the bundled sample.

    python benchmarks/strategies.py [--layers 4] [--hidden 128] [--teacher-steps 600] [--transfer-steps 300]
                                    [--distill-steps 300] [--sst2] [--workdir DIR]

Every student has the same config, dropout off (SPEC §3 distils without dropout; the from-scratch baseline
gets the same so that only the strategy differs). SST-2 uses ../shared/data/glue when present, else the
bundled sample (``mobilebert.data.glue.SAMPLE_DIR``); dev accuracy is the best epoch's, mean over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from mobilebert.config import atomic_write_text
from mobilebert.data.glue import SAMPLE_DIR
from mobilebert.data.pretraining import PretrainingDataset, prepare_pretraining, sample_corpus_path
from mobilebert.modeling import MobileBertForPreTraining
from mobilebert.recipes.distill import DistillConfig, distill, evaluate_mlm
from mobilebert.recipes.pretrain_teacher import TeacherConfig, pretrain_teacher
from mobilebert.train.trainer import TrainConfig

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
STRATEGIES = ("progressive", "joint", "auxiliary", "none")


def corpus(tmp: Path) -> tuple[Path, Path]:
    wt = SHARED / "corpus" / "wikitext-2-raw"
    if (wt / "wiki.valid.raw").is_file():
        return wt / "wiki.valid.raw", wt / "wiki.test.raw"
    text = sample_corpus_path().read_text(encoding="utf-8")
    cut = text.index("\n = ", len(text) * 4 // 5)
    (tmp / "train.txt").write_text(text[:cut], encoding="utf-8")
    (tmp / "heldout.txt").write_text(text[cut:], encoding="utf-8")
    return tmp / "train.txt", tmp / "heldout.txt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4, help="student layers")
    ap.add_argument("--teacher-layers", type=int, default=None, help="teacher layers (default: twice the student's)")
    ap.add_argument("--hidden", type=int, default=128, help="inter-block width of teacher and student")
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--teacher-steps", type=int, default=600)
    ap.add_argument("--transfer-steps", type=int, default=300)
    ap.add_argument("--distill-steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--sst2", action="store_true", help="also fine-tune each student on SST-2 (3 seeds)")
    ap.add_argument("--sst2-train-examples", type=int, default=4000)
    ap.add_argument("--sst2-epochs", type=int, default=2)
    ap.add_argument("--sst2-seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--heldout-batches", type=int, default=16, help="held-out MLM batches of 32 sequences")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 on a busy shared machine)")
    ap.add_argument("--workdir", default=None, help="keep intermediate runs here (default: a temp dir)")
    ap.add_argument("--out", default="benchmarks/results/strategies.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tmp_ctx = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(args.workdir or tmp_ctx.name)
    work.mkdir(parents=True, exist_ok=True)
    train_txt, held_txt = corpus(work)
    prepare_pretraining(train_txt, work / "data", max_seq_length=args.seq, max_predictions_per_seq=10, progress=False)
    prepare_pretraining(held_txt, work / "heldout", max_seq_length=args.seq, max_predictions_per_seq=10, seed=7,
                        progress=False)
    held = list(PretrainingDataset(work / "heldout").loader(32, shuffle=False).batches(args.heldout_batches))

    def tcfg(out: str) -> TrainConfig:
        return TrainConfig(out_dir=str(work / out), optimizer="adamw", lr=args.lr, batch_size=args.batch,
                           log_every=10, tensorboard=False, progress=True, keep_last=1)

    H = args.hidden
    Lt = args.teacher_layers or 2 * args.layers
    teacher_model = dict(num_hidden_layers=Lt, hidden_size=H, embedding_size=H // 2,
                         intra_bottleneck_size=2 * H, intermediate_size=8 * H, num_attention_heads=4,
                         max_position_embeddings=args.seq, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    student_model = dict(num_hidden_layers=args.layers, hidden_size=H, embedding_size=H // 2,
                         intra_bottleneck_size=H // 4, intermediate_size=H // 2, num_attention_heads=4,
                         max_position_embeddings=args.seq, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    glue = SHARED / "glue" if (SHARED / "glue" / "SST-2").is_dir() else SAMPLE_DIR
    t0 = time.perf_counter()
    teacher = pretrain_teacher(TeacherConfig(model=teacher_model, data=str(work / "data"), steps=args.teacher_steps,
                                             warmup_fraction=0.05, train=tcfg("teacher")))["exports"]["pretrain"]
    results: dict = {"teacher": evaluate_mlm(MobileBertForPreTraining.from_pretrained(teacher), held)}
    results["teacher"]["seconds"] = time.perf_counter() - t0
    for strategy in STRATEGIES:
        t0 = time.perf_counter()
        cfg = DistillConfig(strategy=strategy, teacher=teacher, student=student_model, data=str(work / "data"),
                            transfer_steps=args.transfer_steps, distill_steps=args.distill_steps, train=tcfg(strategy))
        run = distill(cfg)
        final = list(run["exports"].values())[-1]
        results[strategy] = {**evaluate_mlm(MobileBertForPreTraining.from_pretrained(final), held),
                             "model": final, "seconds": time.perf_counter() - t0}
        if args.sst2:
            from mobilebert.recipes.finetune import finetune

            t1 = time.perf_counter()
            ft = finetune("sst2", glue, final, work / f"sst2_{strategy}", lr=1e-4, batch_size=32,
                          epochs=args.sst2_epochs, max_seq_length=64, seeds=args.sst2_seeds,
                          max_train_examples=args.sst2_train_examples, log_every=1000)
            acc = ft["summary"]["dev"]["accuracy"]
            results[strategy].update(sst2_accuracy=acc["mean"], sst2_std=acc["std"],
                                     sst2_per_seed=[r["best"]["dev"]["accuracy"] for r in ft["runs"]],
                                     sst2_seconds=time.perf_counter() - t1)
    print(f"\nstrategy ablation: student {args.layers} layers x {H} wide, teacher {Lt} layers; "
          f"{args.transfer_steps} transfer + {args.distill_steps} distillation steps (none: same total), "
          f"batch {args.batch}, seq {args.seq}")
    print(f"{'model':12s} {'MLM loss':>9s} {'MLM acc':>8s} {'SST-2':>7s} {'time s':>7s}")
    for name in ("teacher", *STRATEGIES):
        r = results[name]
        sst = f"{r['sst2_accuracy']:.3f}" if "sst2_accuracy" in r else "-"
        print(f"{name:12s} {r['mlm_loss']:9.3f} {r['mlm_accuracy']:8.3f} {sst:>7s} {r['seconds']:7.0f}")
    acc = {s: results[s]["mlm_accuracy"] for s in STRATEGIES}
    order = acc["progressive"] >= acc["joint"] > acc["auxiliary"] > acc["none"]
    print(f"paper's order progressive >= joint > auxiliary > none (held-out MLM accuracy): "
          f"{'holds' if order else 'does not hold'} here")
    sst_order = None
    if args.sst2:
        sst = {s: results[s]["sst2_accuracy"] for s in STRATEGIES}
        sst_order = sst["progressive"] >= sst["joint"] > sst["auxiliary"] > sst["none"]
        print(f"paper's order on SST-2 dev accuracy (mean of {len(args.sst2_seeds)} seeds): "
              f"{'holds' if sst_order else 'does not hold'} here")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps({"args": vars(args), "torch": torch.__version__, "loadavg": os.getloadavg(),
                                       "glue": str(glue), "results": results, "paper_order_holds_mlm": order,
                                       "paper_order_holds_sst2": sst_order}, indent=2, default=str))
    print(f"wrote {out}")
    if tmp_ctx:
        tmp_ctx.cleanup()


if __name__ == "__main__":
    main()
