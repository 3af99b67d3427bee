"""The paper's strategy ablation at small scale: auxiliary, joint, progressive and none (from scratch).

One teacher (pre-trained here with MLM + NSP), one student shape, the same data and the same total number of
student steps for every strategy. Reports held-out MLM loss/accuracy and, with ``--sst2``, SST-2 dev accuracy
after fine-tuning (mean over seeds), then whether the paper's order (progressive >= joint > auxiliary > none)
holds. Data: WikiText-2 valid (train) / test (held out) from ../shared/data, else the bundled sample.

    python benchmarks/strategies.py [--layers 4] [--hidden 128] [--teacher-steps 3000] [--transfer-steps 300]
                                    [--distill-steps 300] [--sst2] [--workdir DIR]
    python benchmarks/strategies.py --teacher DIR/teacher/stages/pretrain ...   # reuse a trained teacher

The teacher is the expensive part: train it once (``--strategies`` with no names trains and evaluates only the
teacher) and pass its export to later runs with ``--teacher``; its width, depth and sequence length then come
from its config.json. Training data is dynamically masked (new masks every epoch) unless ``--static-masking``,
since WikiText-2 valid is small and the teacher sees it many times.

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

from mobilebert.atomic import atomic_write_text
from mobilebert.config import MobileBertConfig
from mobilebert.data.glue import SAMPLE_DIR
from mobilebert.data.instances import sample_corpus_path
from mobilebert.data.pretraining import PretrainingDataset
from mobilebert.data.shards import prepare_pretraining
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
    ap.add_argument("--teacher-layers", type=int, default=None, help="teacher layers (default: the student's, as in the paper)")
    ap.add_argument("--hidden", type=int, default=128, help="inter-block width of teacher and student")
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--teacher-steps", type=int, default=3000)
    ap.add_argument("--teacher-lr", type=float, default=None, help="teacher pre-training lr (default: --lr)")
    ap.add_argument("--teacher", default=None,
                    help="an existing teacher export (from_pretrained dir, e.g. WORKDIR/teacher/stages/pretrain): "
                         "skip teacher pre-training")
    ap.add_argument("--strategies", nargs="*", default=list(STRATEGIES), choices=STRATEGIES,
                    help="strategies to run (none given: only the teacher)")
    ap.add_argument("--static-masking", action="store_true", help="fixed MLM masks instead of redrawn per epoch")
    ap.add_argument("--transfer-steps", type=int, default=300)
    ap.add_argument("--distill-steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--sst2", action="store_true", help="also fine-tune each student on SST-2 (3 seeds)")
    ap.add_argument("--sst2-train-examples", type=int, default=4000)
    ap.add_argument("--sst2-epochs", type=int, default=6)
    ap.add_argument("--sst2-lr", type=float, default=2e-3,
                    help="fine-tuning lr (tiny students stay at the majority class with BERT-sized lrs like 1e-4)")
    ap.add_argument("--sst2-teacher", action="store_true", help="also fine-tune the teacher on SST-2")
    ap.add_argument("--sst2-teacher-lr", type=float, default=1e-3,
                    help="the teacher's fine-tuning lr (the LayerNorm/GELU teacher does not learn at 2e-3)")
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
    H = args.hidden
    Lt = args.teacher_layers or args.layers
    if args.teacher:
        tconf = MobileBertConfig.from_json(Path(args.teacher) / "config.json")
        H, Lt = tconf.hidden_size, tconf.num_hidden_layers
        args.hidden, args.teacher_layers = H, Lt
        args.seq = min(args.seq, tconf.max_position_embeddings)
    prepare_pretraining(train_txt, work / "data", max_seq_length=args.seq, max_predictions_per_seq=10,
                        dynamic_masking=not args.static_masking, progress=False)
    prepare_pretraining(held_txt, work / "heldout", max_seq_length=args.seq, max_predictions_per_seq=10, seed=7,
                        progress=False)
    held = list(PretrainingDataset(work / "heldout").loader(32, shuffle=False).batches(args.heldout_batches))

    def tcfg(out: str, lr: float | None = None) -> TrainConfig:
        return TrainConfig(out_dir=str(work / out), optimizer="adamw", lr=lr or args.lr, batch_size=args.batch,
                           log_every=10, tensorboard=False, progress=True, keep_last=1)

    teacher_model = dict(num_hidden_layers=Lt, hidden_size=H, embedding_size=H // 2,
                         intra_bottleneck_size=2 * H, intermediate_size=8 * H, num_attention_heads=4,
                         max_position_embeddings=args.seq, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    student_model = dict(num_hidden_layers=args.layers, hidden_size=H, embedding_size=H // 2,
                         intra_bottleneck_size=H // 4, intermediate_size=H // 2, num_attention_heads=4,
                         max_position_embeddings=args.seq, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    glue = SHARED / "glue" if (SHARED / "glue" / "SST-2").is_dir() else SAMPLE_DIR

    def sst2(model_dir: str, name: str, lr: float) -> dict:
        from mobilebert.recipes.finetune import FinetuneConfig, train

        t1 = time.perf_counter()
        ft = train(FinetuneConfig("sst2", str(glue), str(model_dir), str(work / f"sst2_{name}"), lr=lr,
                                  batch_size=32, epochs=args.sst2_epochs, max_seq_length=64, seeds=args.sst2_seeds,
                                  max_train_examples=args.sst2_train_examples, log_every=1000))
        acc = ft["summary"]["dev"]["accuracy"]
        return dict(sst2_accuracy=acc["mean"], sst2_std=acc["std"],
                    sst2_per_seed=[r["best"]["dev"]["accuracy"] for r in ft["runs"]],
                    sst2_seconds=time.perf_counter() - t1)

    t0 = time.perf_counter()
    if args.teacher:
        teacher = str(Path(args.teacher).resolve())
        info = Path(teacher).parents[1] / "strategies_teacher.json"  # written when this script trained it
        tinfo = json.loads(info.read_text()) if info.is_file() else {"steps": None, "seconds": None}
    else:
        teacher = pretrain_teacher(TeacherConfig(model=teacher_model, data=str(work / "data"),
                                                 steps=args.teacher_steps, warmup_fraction=0.05,
                                                 train=tcfg("teacher", args.teacher_lr)))["exports"]["pretrain"]
        tinfo = {"steps": args.teacher_steps, "lr": args.teacher_lr or args.lr, "seconds": time.perf_counter() - t0}
        atomic_write_text(Path(teacher).parents[1] / "strategies_teacher.json", json.dumps(tinfo, indent=2))
    results: dict = {"teacher": {**evaluate_mlm(MobileBertForPreTraining.from_pretrained(teacher), held),
                                 "model": teacher, "reused": bool(args.teacher), "train_steps": tinfo["steps"],
                                 "train_lr": tinfo.get("lr"), "seconds": tinfo["seconds"]}}
    print(f"teacher: held-out MLM loss {results['teacher']['mlm_loss']:.3f}, "
          f"accuracy {results['teacher']['mlm_accuracy']:.3f}", flush=True)
    if args.sst2 and args.sst2_teacher:
        results["teacher"].update(sst2(teacher, "teacher", args.sst2_teacher_lr))
    for strategy in args.strategies:
        t0 = time.perf_counter()
        cfg = DistillConfig(strategy=strategy, teacher=teacher, student=student_model, data=str(work / "data"),
                            transfer_steps=args.transfer_steps, distill_steps=args.distill_steps, train=tcfg(strategy))
        run = distill(cfg)
        final = list(run["exports"].values())[-1]
        results[strategy] = {**evaluate_mlm(MobileBertForPreTraining.from_pretrained(final), held),
                             "model": final, "seconds": time.perf_counter() - t0}
        print(f"{strategy}: held-out MLM loss {results[strategy]['mlm_loss']:.3f}, "
              f"accuracy {results[strategy]['mlm_accuracy']:.3f}", flush=True)
        if args.sst2:
            results[strategy].update(sst2(final, strategy, args.sst2_lr))
    print(f"\nstrategy ablation: student {args.layers} layers x {H} wide, teacher {Lt} layers; "
          f"{args.transfer_steps} transfer + {args.distill_steps} distillation steps (none: same total), "
          f"batch {args.batch}, seq {args.seq}")
    print(f"{'model':12s} {'MLM loss':>9s} {'MLM acc':>8s} {'SST-2 (mean +- std)':>20s} {'time s':>7s}")
    for name in ("teacher", *args.strategies):
        r = results[name]
        sst = f"{r['sst2_accuracy']:.3f} +- {r['sst2_std']:.3f}" if "sst2_accuracy" in r else "-"
        secs = f"{r['seconds']:7.0f}" if r["seconds"] is not None else "      -"
        print(f"{name:12s} {r['mlm_loss']:9.3f} {r['mlm_accuracy']:8.3f} {sst:>20s} {secs}")
    order = sst_order = beats = None
    if "none" in results:
        beats = results["teacher"]["mlm_accuracy"] > results["none"]["mlm_accuracy"]
        print(f"teacher beats the from-scratch student on held-out MLM accuracy: {beats}")
    def paper_order(key: str, what: str) -> bool:
        v = {s: results[s][key] for s in STRATEGIES}
        holds = v["progressive"] >= v["joint"] > v["auxiliary"] > v["none"]
        print(f"paper's order progressive >= joint > auxiliary > none ({what}): "
              f"{'holds' if holds else 'does not hold'} here")
        return holds

    if set(args.strategies) == set(STRATEGIES):
        order = paper_order("mlm_accuracy", "held-out MLM accuracy")
        if args.sst2:
            sst_order = paper_order("sst2_accuracy", f"SST-2 dev accuracy, mean of {len(args.sst2_seeds)} seeds")
    out = Path(args.out)
    atomic_write_text(out, json.dumps({"args": vars(args), "torch": torch.__version__, "loadavg": os.getloadavg(),
                                       "glue": str(glue), "results": results, "paper_order_holds_mlm": order,
                                       "paper_order_holds_sst2": sst_order, "teacher_beats_scratch": beats},
                                      indent=2, default=str))
    print(f"wrote {out}")
    if tmp_ctx:
        tmp_ctx.cleanup()


if __name__ == "__main__":
    main()
