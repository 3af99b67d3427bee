"""Pre-training data: BERT-recipe statistics, determinism across workers, ranks, resumable cursor, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, tiny_config

from mobilebert.data.instances import sample_corpus_path, split_sentences
from mobilebert.data.pretraining import PretrainingDataset
from mobilebert.data.shards import PretrainingDataError, prepare_pretraining
from mobilebert.tokenizer import MobileBertTokenizer

KEYS = {"input_ids", "attention_mask", "token_type_ids", "labels", "next_sentence_label"}
TOK = MobileBertTokenizer.default()


def _corpus() -> tuple[Path, int]:
    """WikiText-2 valid when ../shared is present (2 passes), else the bundled sample (6 passes)."""
    valid = SHARED_DATA / "corpus/wikitext-2-raw/wiki.valid.raw"
    return (valid, 2) if valid.is_file() else (sample_corpus_path(), 6)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    path, dupes = _corpus()
    out = tmp_path_factory.mktemp("static")
    prepare_pretraining(path, out, dupe_factor=dupes, seed=7, workers=2, shard_size=3000, progress=False)
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small")
    prepare_pretraining(sample_corpus_path(), out, max_seq_length=64, max_predictions_per_seq=10, seed=1,
                        shard_size=300, chunk_bytes=40_000, progress=False)
    return out


def _all(path: Path) -> np.ndarray:
    m = json.loads((path / "manifest.json").read_text())
    return np.concatenate([np.load(path / s["file"]) for s in m["shards"]])


def _originals(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(original ids, selected mask) from stored records."""
    ids = rec["input_ids"].astype(np.int64)
    sel = np.zeros(ids.shape, dtype=bool)
    for r in range(len(rec)):
        k = rec["num_masked"][r]
        pos = rec["masked_positions"][r, :k]
        ids[r, pos] = rec["masked_ids"][r, :k]
        sel[r, pos] = True
    return ids, sel


def test_split_sentences():
    assert split_sentences("He left . She stayed ! Why ? \" Yes . \" Then 1990 came .") == [
        "He left .", "She stayed !", "Why ?", "\" Yes .", "\" Then 1990 came ."]
    assert split_sentences("Mr. Smith met Dr. Who in the U.S. Army. It rained.") == [
        "Mr. Smith met Dr. Who in the U.S. Army.", "It rained."]
    assert split_sentences("no capital after. so one sentence") == ["no capital after. so one sentence"]


def test_recipe_statistics(prepared):
    rec = _all(prepared)
    n, t = rec["input_ids"].shape
    assert n > 2000
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["counts"]["examples"] == n
    # IsNext 50% +- 3%
    assert abs((rec["is_random_next"] == 0).mean() - 0.5) < 0.03
    ids, sel = _originals(rec)
    length, seg_b = rec["length"].astype(int), rec["seg_b"].astype(int)
    rows = np.arange(n)
    # Layout: [CLS] A [SEP] B [SEP] then padding; both segments non-empty.
    assert (ids[:, 0] == TOK.cls_token_id).all()
    assert (ids[rows, seg_b - 1] == TOK.sep_token_id).all() and (ids[rows, length - 1] == TOK.sep_token_id).all()
    assert (seg_b >= 3).all() and (length - seg_b >= 2).all() and (length <= t).all()
    pos = np.arange(t)[None, :]
    assert (ids[pos >= length[:, None]] == TOK.pad_token_id).all()
    special = np.isin(ids, [TOK.cls_token_id, TOK.sep_token_id, TOK.pad_token_id])
    inner = (pos > 0) & (pos < length[:, None] - 1) & (pos != seg_b[:, None] - 1)
    assert not special[inner].any(), "a segment contains a special token"
    # Special tokens never masked; max_predictions respected; 15% +- 0.5% of maskable tokens.
    assert not (sel & ~inner).any()
    assert rec["num_masked"].max() <= 20 and (rec["num_masked"] >= 1).all()
    assert abs(sel.sum() / inner.sum() - 0.15) < 0.005
    # 80% [MASK], 10% random, 10% unchanged (+- 2%).
    shown = rec["input_ids"][sel].astype(np.int64)
    orig = ids[sel]
    frac_mask = (shown == TOK.mask_token_id).mean()
    frac_keep = ((shown == orig) & (shown != TOK.mask_token_id)).mean()
    assert abs(frac_mask - 0.8) < 0.02 and abs(frac_keep - 0.1) < 0.02 and abs(1 - frac_mask - frac_keep - 0.1) < 0.02


def test_next_sentence_pairs_follow_the_text(tmp_path):
    """A corpus of counting numbers (each a single vocab token): within A and B the numbers count up by one,
    and B continues A when labelled IsNext (up to the few tokens truncation may cut between them)."""
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(40):
        k = int(rng.integers(0, 341))
        for _ in range(int(rng.integers(3, 30))):
            n = int(rng.integers(2, 25))
            lines.append(" ".join(str((k + j) % 341) for j in range(n)))
            k += n
        lines.append("")
    (tmp_path / "count.txt").write_text("\n".join(lines) + "\n")
    prepare_pretraining(tmp_path / "count.txt", tmp_path / "out", max_seq_length=48, dupe_factor=10,
                        progress=False)
    rec = _all(tmp_path / "out")
    ids, _ = _originals(rec)
    value = np.array([int(t) if t.isascii() and t.isdigit() else -1 for t in TOK.vocab])[ids]
    gaps = []
    for r in range(len(rec)):
        la, end = int(rec["seg_b"][r]) - 2, int(rec["length"][r]) - 1
        a, b = value[r, 1:la + 1], value[r, la + 2:end]
        assert ((np.diff(a) % 341) == 1).all() and ((np.diff(b) % 341) == 1).all(), r
        gaps.append((b[0] - a[-1]) % 341)
    gaps, is_next = np.array(gaps), rec["is_random_next"] == 0
    assert ((gaps[is_next] >= 1) & (gaps[is_next] <= 48)).all()
    assert (gaps[is_next] == 1).mean() > 0.3  # many IsNext pairs keep the seam (truncation cuts the rest)
    assert (gaps[~is_next] == 1).mean() < 0.02  # a random B continues A only by chance
    assert abs(is_next.mean() - 0.5) < 0.03 and len(rec) > 2000


def test_whole_word_masking(tmp_path):
    prepare_pretraining(sample_corpus_path(), tmp_path, whole_word_masking=True, seed=3, dupe_factor=2,
                        progress=False)
    rec = _all(tmp_path)
    ids, sel = _originals(rec)
    cont = TOK.continuation_mask()[ids]
    length, seg_b = rec["length"].astype(int), rec["seg_b"].astype(int)
    pos = np.arange(ids.shape[1])[None, :]
    inner = (pos > 0) & (pos < length[:, None] - 1) & (pos != seg_b[:, None] - 1)
    starts = inner & (~cont | ~np.roll(inner, 1, axis=1))
    word = np.cumsum(starts, axis=1)
    multi = 0
    for r in range(len(rec)):
        for w in np.unique(word[r][sel[r]]):
            members = inner[r] & (word[r] == w)
            assert sel[r][members].all(), f"example {r}: word {w} partly masked"
            multi += members.sum() > 1
    assert multi > 100  # words of several pieces were masked whole
    assert rec["num_masked"].max() <= 20
    assert abs(sel.sum() / inner.sum() - 0.15) < 0.01


def test_workers_and_chunking_do_not_change_bytes(tmp_path):
    src = sample_corpus_path()
    a = prepare_pretraining(src, tmp_path / "a", workers=1, seed=5, shard_size=200, progress=False)
    b = prepare_pretraining(src, tmp_path / "b", workers=2, seed=5, shard_size=200, chunk_bytes=20_000,
                            progress=False)
    c = prepare_pretraining(src, tmp_path / "c", workers=2, seed=6, shard_size=200, chunk_bytes=20_000,
                            progress=False)
    assert len(a.manifest["shards"]) >= 2
    for sa, sb in zip(a.manifest["shards"], b.manifest["shards"], strict=True):
        assert (tmp_path / "a" / sa["file"]).read_bytes() == (tmp_path / "b" / sb["file"]).read_bytes()
    assert a.manifest["counts"] == b.manifest["counts"]
    assert [s["sha256"] for s in a.manifest["shards"]] != [s["sha256"] for s in c.manifest["shards"]]
    assert not list((tmp_path / "a").glob(".*")), "scratch or temporary files left behind"


def test_dataset_items_and_labels(small):
    ds = PretrainingDataset(small)
    rec = _all(small)
    item = ds[3]
    assert set(item) == KEYS and item["input_ids"].shape == (64,) and item["next_sentence_label"].shape == ()
    batch = ds.loader(16, shuffle=False).__next__()
    assert set(batch) == KEYS
    for k in KEYS - {"next_sentence_label"}:
        assert batch[k].shape == (16, 64) and batch[k].dtype == torch.long
    assert batch["next_sentence_label"].shape == (16,) and batch["next_sentence_label"].dtype == torch.long
    r = rec[:16]
    assert torch.equal(batch["input_ids"], torch.from_numpy(r["input_ids"].astype(np.int64)))
    assert torch.equal(batch["attention_mask"].sum(1), torch.from_numpy(r["length"].astype(np.int64)))
    ids, sel = _originals(r)
    labels = batch["labels"].numpy()
    assert ((labels != -100) == sel).all() and (labels[sel] == ids[sel]).all()
    tt = batch["token_type_ids"].numpy()
    assert (tt.sum(1) == r["length"].astype(int) - r["seg_b"].astype(int)).all()


def test_dynamic_masking(small):
    ds = PretrainingDataset(small, dynamic_masking=True, seed=11)
    static = PretrainingDataset(small, verify=False)
    idx = np.arange(200)
    e0, e0b, e1 = ds.get_batch(idx, epoch=0), ds.get_batch(idx, epoch=0), ds.get_batch(idx, epoch=1)
    assert torch.equal(e0["input_ids"], e0b["input_ids"]) and torch.equal(e0["labels"], e0b["labels"])
    assert not torch.equal(e0["labels"], e1["labels"])
    ids, _ = _originals(static.records(idx))
    for b in (e0, e1):
        sel = (b["labels"] != -100).numpy()
        assert (b["labels"].numpy()[sel] == ids[sel]).all()
        assert (b["input_ids"].numpy()[~sel] == ids[~sel]).all()
        assert sel.sum(1).max() <= 10 and (sel.sum(1) >= 1).all()
    assert torch.equal(e0["next_sentence_label"], static.get_batch(idx)["next_sentence_label"])


def test_ranks_disjoint_and_cover_everything(small):
    n = PretrainingDataset(small, verify=False).num_examples
    r0 = PretrainingDataset(small, rank=0, world_size=2, verify=False)
    r1 = PretrainingDataset(small, rank=1, world_size=2, verify=False)
    assert set(r0.indices).isdisjoint(r1.indices) and set(r0.indices) | set(r1.indices) == set(range(n))
    l0, l1 = r0.loader(8, seed=4, drop_last=False), r1.loader(8, seed=4, drop_last=False)
    assert l0.batches_per_epoch == l1.batches_per_epoch
    seen0 = [tuple(x.tolist()) for b in l0.batches(l0.batches_per_epoch) for x in b["input_ids"]]
    seen1 = [tuple(x.tolist()) for b in l1.batches(l1.batches_per_epoch) for x in b["input_ids"]]
    everything = [tuple(x.tolist()) for x in r0.get_batch(np.arange(n))["input_ids"]]
    assert sorted(seen0 + seen1) == sorted(everything)


@pytest.mark.parametrize("dynamic", [False, True])
def test_cursor_resume_gives_the_same_batches(small, dynamic):
    ds = PretrainingDataset(small, dynamic_masking=dynamic, seed=2, verify=False)
    loader = ds.loader(32, seed=9)
    per_epoch = loader.batches_per_epoch
    for _ in loader.batches(per_epoch - 2):  # stop just before an epoch boundary
        pass
    state = json.loads(json.dumps(loader.state_dict()))  # survives a JSON round trip
    expected = list(loader.batches(5))
    again = PretrainingDataset(small, dynamic_masking=dynamic, seed=2, verify=False).loader(32, seed=9)
    again.load_state_dict(state)
    for want, got in zip(expected, again.batches(5), strict=True):
        for k in KEYS:
            assert torch.equal(want[k], got[k]), k
    assert loader.epoch == 1 and again.state_dict() == loader.state_dict()
    with pytest.raises(ValueError, match="batch_size"):
        ds.loader(16, seed=9).load_state_dict(state)


def test_shuffled_epochs_differ(small):
    loader = PretrainingDataset(small, verify=False).loader(8, seed=1)
    first = next(loader)["input_ids"]
    loader.load_state_dict({"epoch": 1, "position": 0})
    assert not torch.equal(first, next(loader)["input_ids"])


# ---- bad input ------------------------------------------------------------------------------------------


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n   \n")
    with pytest.raises(PretrainingDataError, match=r"empty.txt: no text found"):
        prepare_pretraining(tmp_path / "empty.txt", tmp_path / "out", progress=False)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        prepare_pretraining(tmp_path / "missing.txt", tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_non_utf8_is_replaced_and_counted(tmp_path, caplog):
    text = sample_corpus_path().read_bytes()[:60_000]
    (tmp_path / "bad.txt").write_bytes(text[:30_000] + b" caf\xe9 \xff\xfe ok " + text[30_000:])
    r = prepare_pretraining(tmp_path / "bad.txt", tmp_path / "out", progress=False)
    assert r.manifest["counts"]["replaced_chars"] == 3 == r.manifest["inputs"][0]["replaced_chars"]
    assert "3 invalid UTF-8" in caplog.text
    assert r.num_examples > 0


def test_one_huge_line(tmp_path):
    words = " ".join(f"w{i % 997}" for i in range(300_000))  # ~1.8 MB on one line, no sentence ends
    (tmp_path / "huge.txt").write_text(f"First sentence here.\n{words}\nLast one.\n\nAnother document.\nEnd.\n")
    r = prepare_pretraining(tmp_path / "huge.txt", tmp_path / "out", input_format="lines", progress=False)
    c = r.manifest["counts"]
    assert c["long_sentences_split"] == 1 and c["tokens"] > 300_000
    assert r.num_examples > 300_000 // 125 // 2  # the line's tokens were used, not truncated away


def test_lines_format_documents(tmp_path):
    (tmp_path / "c.txt").write_text("Doc one first.\nDoc one second.\n\nDoc two.\n\n\nDoc three a.\nDoc three b.\n")
    r = prepare_pretraining(tmp_path / "c.txt", tmp_path / "out", progress=False)
    assert r.manifest["inputs"][0]["format"] == "lines"
    assert (r.manifest["counts"]["documents"], r.manifest["counts"]["sentences"]) == (3, 5)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_truncated_and_corrupt_shards(small, tmp_path):
    d = _copy(small, tmp_path / "t")
    shard = d / "shard_00000.npy"
    data = shard.read_bytes()
    shard.write_bytes(data[:-100])
    with pytest.raises(PretrainingDataError, match=r"shard_00000.npy: .* bytes, manifest says"):
        PretrainingDataset(d)
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    shard.write_bytes(bytes(flipped))
    with pytest.raises(PretrainingDataError, match=r"shard_00000.npy: sha256 differs"):
        PretrainingDataset(d)
    PretrainingDataset(d, verify=False)  # the fast option trusts the bytes
    (d / "manifest.json").unlink()  # what an interrupted run leaves
    with pytest.raises(PretrainingDataError, match="no manifest"):
        PretrainingDataset(d)


def test_other_vocab_and_too_long(small, tmp_path):
    vocab = TOK.vocab
    vocab[2000] = "somethingelse"
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    with pytest.raises(PretrainingDataError, match="made with another vocab"):
        PretrainingDataset(small, tokenizer=MobileBertTokenizer.from_pretrained(tmp_path))
    with pytest.raises(PretrainingDataError, match="max_seq_length 64 exceeds the model's 32 positions"):
        PretrainingDataset(small, max_positions=32)
    ds = PretrainingDataset(small, verify=False)
    ds.check_model(tiny_config(vocab_size=30522, max_position_embeddings=64))
    with pytest.raises(PretrainingDataError, match="exceeds the model's 16 positions"):
        ds.check_model(tiny_config(vocab_size=30522, max_position_embeddings=16))
    with pytest.raises(PretrainingDataError, match="vocab_size 1000"):
        ds.check_model(tiny_config())


def test_rerun_replaces_stale_output(small, tmp_path):
    d = _copy(small, tmp_path / "r")
    (d / "shard_00099.npy").write_bytes(b"stale")
    prepare_pretraining(sample_corpus_path(), d, max_seq_length=64, max_predictions_per_seq=10, seed=1,
                        shard_size=300, progress=False)
    assert not (d / "shard_00099.npy").exists()
    assert sorted(p.name for p in d.iterdir()) == sorted(p.name for p in small.iterdir())


def test_cli(tmp_path, capsys):
    from mobilebert.cli import main

    assert main(["prepare-pretraining", str(sample_corpus_path()), "--out", str(tmp_path / "o"), "--workers", "1",
                 "--max-seq-length", "64", "--max-predictions", "10", "--seed", "1", "--shard-size", "300"]) == 0
    assert "examples in" in capsys.readouterr().out
    assert (tmp_path / "o" / "manifest.json").is_file()
    assert main(["prepare-pretraining", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "x")]) == 2
    assert "nope.txt" in capsys.readouterr().err


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    import mobilebert.data.shards as shards

    real, calls = shards._make_examples, []

    def dies_on_second_chunk(args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(args)

    monkeypatch.setattr(shards, "_make_examples", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        prepare_pretraining(sample_corpus_path(), tmp_path, shard_size=50, chunk_bytes=30_000, progress=False)
    assert list(tmp_path.glob("shard_*.npy")), "the first shards were written before the interruption"
    assert not (tmp_path / "manifest.json").exists() and not list(tmp_path.glob(".*"))
    with pytest.raises(PretrainingDataError, match="no manifest"):
        PretrainingDataset(tmp_path)
