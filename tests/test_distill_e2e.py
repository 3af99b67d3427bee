"""End to end on WikiText-2 (../shared/data, else the bundled sample): pre-train a tiny teacher, distil a
tiny student progressively, and compare with the same student trained from scratch for the same steps.

The suite runs a small version (about a minute on 2 cores); ``MOBILEBERT_FULL_E2E=1`` runs the acceptance
sizes (a few hundred steps of a 4-layer teacher and 2-layer student at seq 64; ~15 minutes on a shared
2-core machine). ``benchmarks/strategies.py`` runs the larger ablation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA

from mobilebert.data.instances import sample_corpus_path
from mobilebert.data.pretraining import PretrainingDataset
from mobilebert.data.shards import prepare_pretraining
from mobilebert.modeling import MobileBertForPreTraining
from mobilebert.recipes.distill import DistillConfig, distill, evaluate_mlm
from mobilebert.recipes.pretrain_teacher import TeacherConfig, pretrain_teacher
from mobilebert.train.trainer import TrainConfig

FULL = os.environ.get("MOBILEBERT_FULL_E2E") == "1"
SEQ = 64 if FULL else 32
TEACHER = dict(num_hidden_layers=4, hidden_size=128, embedding_size=64, intra_bottleneck_size=256,
               intermediate_size=512, num_attention_heads=4, max_position_embeddings=SEQ, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0)
STUDENT = dict(num_hidden_layers=2, hidden_size=128, embedding_size=64, intra_bottleneck_size=32,
               intermediate_size=64, num_feedforward_networks=2, num_attention_heads=4, max_position_embeddings=SEQ)
if not FULL:
    TEACHER.update(num_hidden_layers=2, hidden_size=64, embedding_size=32, intra_bottleneck_size=128,
                   intermediate_size=256)
    STUDENT.update(hidden_size=64, embedding_size=32, intra_bottleneck_size=16, intermediate_size=32)
STEPS = dict(teacher_steps=300, transfer_steps=160, distill_steps=140) if FULL else \
    dict(teacher_steps=120, transfer_steps=80, distill_steps=60)
BATCH = 16 if FULL else 8


def corpus(tmp: Path) -> tuple[Path, Path]:
    """(train text, held-out text): WikiText-2 valid/test when ../shared is present, else the bundled sample
    split at an article boundary."""
    wt = SHARED_DATA / "corpus" / "wikitext-2-raw"
    if (wt / "wiki.valid.raw").is_file():
        held = tmp / "heldout.txt"
        held.write_text((wt / "wiki.test.raw").read_text(encoding="utf-8")[:150_000], encoding="utf-8")
        return wt / "wiki.valid.raw", held
    text = sample_corpus_path().read_text(encoding="utf-8")
    cut = text.index("\n = ", len(text) * 4 // 5)
    (tmp / "train.txt").write_text(text[:cut], encoding="utf-8")
    (tmp / "heldout.txt").write_text(text[cut:], encoding="utf-8")
    return tmp / "train.txt", tmp / "heldout.txt"


def train_cfg(out: Path, **kw) -> TrainConfig:
    base = dict(out_dir=str(out), optimizer="adamw", lr=2e-3, weight_decay=0.01, batch_size=BATCH, log_every=1,
                tensorboard=False, progress=False, save_every=0, keep_last=1)
    return TrainConfig(**{**base, **kw})


def run_pipeline(tmp: Path, teacher_steps: int, transfer_steps: int, distill_steps: int) -> dict:
    train_txt, held_txt = corpus(tmp)
    prepare_pretraining(train_txt, tmp / "data", max_seq_length=SEQ, max_predictions_per_seq=10, progress=False)
    prepare_pretraining(held_txt, tmp / "heldout", max_seq_length=SEQ, max_predictions_per_seq=10, seed=7,
                        progress=False)
    heldout = list(PretrainingDataset(tmp / "heldout").loader(32, shuffle=False).batches(8))

    t = pretrain_teacher(TeacherConfig(preset="ib-bert-large", model=TEACHER, data=str(tmp / "data"),
                                       steps=teacher_steps, warmup_fraction=0.05, train=train_cfg(tmp / "teacher")))
    teacher_dir = t["exports"]["pretrain"]
    results = {"teacher": evaluate_mlm(MobileBertForPreTraining.from_pretrained(teacher_dir), heldout)}
    for strategy in ("progressive", "none"):
        cfg = DistillConfig(strategy=strategy, teacher=teacher_dir, student_preset="mobilebert", student=STUDENT,
                            data=str(tmp / "data"), transfer_steps=transfer_steps, distill_steps=distill_steps,
                            train=train_cfg(tmp / strategy))
        r = distill(cfg)
        last = list(r["exports"].values())[-1]
        results[strategy] = evaluate_mlm(MobileBertForPreTraining.from_pretrained(last), heldout)
        results[strategy]["exports"] = r["exports"]
    records = [json.loads(x) for x in (tmp / "progressive" / "metrics.jsonl").read_text().splitlines()]
    results["fmt_drop"] = {}
    for layer in range(STUDENT["num_hidden_layers"]):
        key = f"loss/fmt/layer.{layer}"
        vals = [r[key] for r in records if r["stage"] == f"progressive.{layer}"]
        head, tail = sum(vals[:3]) / 3, sum(vals[-3:]) / 3
        results["fmt_drop"][layer] = head / tail
    return results


@pytest.mark.slow
def test_progressive_distillation_beats_scratch(tmp_path):
    torch.set_num_threads(2)
    r = run_pipeline(tmp_path, **STEPS)
    print(json.dumps({k: v for k, v in r.items()}, indent=1, default=str))
    for layer, drop in r["fmt_drop"].items():
        assert drop >= 5.0, f"layer {layer}: FMT fell only {drop:.2f}x in its phase"
    assert r["progressive"]["mlm_loss"] < r["none"]["mlm_loss"], r
    for stage, path in r["progressive"]["exports"].items():
        assert (Path(path) / "config.json").is_file() and (Path(path) / "vocab.txt").is_file(), stage
