"""Tokenizer: id parity with transformers' BertTokenizerFast, call options, saving and loading."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
import torch

from mobilebert.tokenizer import BUNDLED_VOCAB, MobileBertTokenizer, TokenizerError

HAND_WRITTEN = [
    "Hello, World! This is MobileBERT.",
    "Héllo Wörld — naïve café, Ångström, façade, résumé, Crème brûlée",  # accents
    "ÀÉÎÕÜ àéîõü ñ Ñ ß ø Ø æ Œ",  # more accents and ligatures
    "中文字符测试 and 日本語のテキスト and 한국어 텍스트",  # CJK (split per character) and Hangul
    "emoji 😀👍🏽 🇫🇷 family: 👨‍👩‍👧 ❤️ end",  # emoji, skin tone, flags, ZWJ sequences
    "ctrl\x00chars\x07 tab\there\r\nnew\x0bline \u200b zero\u200dwidth \ufeffbom \x7f del",  # control chars
    "a" * 99 + " " + "b" * 100 + " " + "c" * 101 + " " + "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
    "don't won't it's 'quoted' \"double\" (paren) [bracket] {brace} <angle> a/b a\\b #hash @at $5.00 100%",
    "Literal [MASK] and [CLS] and [SEP] and [PAD] and [UNK] tokens; [mask] lowercase is not special.",
    "   leading and trailing spaces   ",
    "",
    "\u00a0non-breaking\u2003em-space\u3000ideographic space",
    "Unicode math: ∑ ∫ √ ≈ ≠ ≤ ≥ ∞ and arrows → ← ↔ and ℃ ™ © ®",
    "Numbers 3.14159 1,000,000 2nd 1990s -42 +7 1e-5",
]


@pytest.fixture(scope="module")
def tok() -> MobileBertTokenizer:
    return MobileBertTokenizer.default()


@pytest.fixture(scope="module")
def hf():
    transformers = pytest.importorskip("transformers")
    return transformers.BertTokenizerFast(str(BUNDLED_VOCAB), do_lower_case=True)


def test_bundled_vocab_and_special_ids(tok):
    assert hashlib.sha256(BUNDLED_VOCAB.read_bytes()).hexdigest() == (
        "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3")
    assert tok.vocab_size == 30522 == len(tok)
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (
        0, 100, 101, 102, 103)
    assert tok.vocab_sha256 == hashlib.sha256(BUNDLED_VOCAB.read_bytes()).hexdigest()


def test_known_ids(tok):
    # Values from the original BERT uncased vocab.
    assert tok.encode("hello world") == [101, 7592, 2088, 102]
    assert tok.tokenize("unaffable") == ["una", "##ffa", "##ble"]  # greedy longest match
    assert tok.encode("a", "b") == [101, 1037, 102, 1038, 102]
    assert tok.decode(tok.encode("Hello, World!")) == "hello, world!"
    assert tok.convert_ids_to_tokens([101, 7592]) == ["[CLS]", "hello"]
    assert tok.convert_tokens_to_ids(["hello", "no-such-token"]) == [7592, 100]


@pytest.mark.parametrize("text", HAND_WRITTEN)
def test_hand_written_parity(tok, hf, text):
    assert tok.encode(text) == hf(text)["input_ids"]
    assert tok.tokenize(text) == hf.tokenize(text)
    if text:  # transformers treats an empty single pair text as "no pair"; we keep the empty segment
        assert tok.encode(text, text[::-1]) == hf(text, text[::-1])["input_ids"]


def test_long_word_is_unk(tok):
    assert tok.tokenize("a" * 100) != ["[UNK]"]
    assert tok.tokenize("a" * 101) == ["[UNK]"]


def test_batch_options_parity(tok, hf):
    a = ["The quick brown fox jumps over the lazy dog.", "Short one.", "Ünïcödé and 中文 here", ""]
    b = ["A much longer second segment that will need truncation " * 3, "x", "y z", "pair"]
    cases = [
        dict(),
        dict(padding=True),
        dict(max_length=12, truncation=True, padding="max_length"),
        dict(max_length=16, truncation="only_second", padding=True),
        dict(max_length=10, truncation="longest_first"),
    ]
    for kw in cases:
        for pair in (None, b):
            ours = tok(a, pair, return_offsets_mapping=True, return_special_tokens_mask=True, **kw)
            ref = hf(a, pair, return_offsets_mapping=True, return_special_tokens_mask=True, **kw)
            for key in ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask"):
                assert ours[key] == ref[key], (kw, pair is None, key)
            assert [[tuple(o) for o in s] for s in ours["offset_mapping"]] == [
                [tuple(o) for o in s] for s in ref["offset_mapping"]], kw


def test_tensors_and_single(tok, hf):
    out = tok(["hello there", "hi"], padding=True, return_tensors="pt")
    assert set(out) == {"input_ids", "token_type_ids", "attention_mask"}
    assert out["input_ids"].dtype == torch.long and out["input_ids"].shape == (2, 4)
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    ref = hf(["hello there", "hi"], padding=True, return_tensors="pt")
    assert torch.equal(out["input_ids"], ref["input_ids"])
    one = tok("hello there", "general kenobi")
    assert one["input_ids"] == [101, 7592, 2045, 102, 2236, 6358, 16429, 2072, 102]
    assert one["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    arr = tok("hello", return_tensors="np")["input_ids"]
    assert isinstance(arr, np.ndarray) and arr.shape == (1, 3)
    # Calls leave the shared backend clean (no truncation/padding leaks into the next call).
    assert tok.backend.truncation is None and tok.backend.padding is None


def test_offsets_point_into_text(tok):
    text = "Héllo, 中文 world"
    out = tok(text, return_offsets_mapping=True)
    pieces = [text[s:e] for s, e in out["offset_mapping"]]
    assert pieces == ["", "Héllo", ",", "中", "文", "world", ""]


def test_bad_arguments(tok):
    with pytest.raises(ValueError, match="truncation"):
        tok("x", truncation="sideways")
    with pytest.raises(ValueError, match="padding"):
        tok("x", padding="sometimes")
    with pytest.raises(ValueError, match="padding=True"):
        tok(["a b c", "a"], return_tensors="pt")
    with pytest.raises(ValueError, match="pairs"):
        tok(["a", "b"], ["c"])


def test_save_and_load_roundtrip(tok, tmp_path):
    tok.save_pretrained(tmp_path / "ckpt")
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["tokenizer.json", "tokenizer_config.json", "vocab.txt"]
    assert (tmp_path / "ckpt" / "vocab.txt").read_bytes() == BUNDLED_VOCAB.read_bytes()
    for source in (tmp_path / "ckpt", tmp_path / "ckpt" / "vocab.txt", tmp_path / "ckpt" / "tokenizer.json"):
        again = MobileBertTokenizer.from_pretrained(source)
        for text in HAND_WRITTEN:
            assert again.encode(text) == tok.encode(text), source
    # Without a vocab in the folder (e.g. a weights-only checkpoint), the bundled vocab is used.
    (tmp_path / "empty").mkdir()
    assert MobileBertTokenizer.from_pretrained(tmp_path / "empty").vocab_sha256 == tok.vocab_sha256
    assert MobileBertTokenizer.from_pretrained(None).vocab_size == 30522


def test_saved_folder_loads_in_transformers(tok, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok.save_pretrained(tmp_path)
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    for text in HAND_WRITTEN:
        assert ref(text)["input_ids"] == tok.encode(text)


def test_pickle_roundtrip(tok):
    import pickle

    again = pickle.loads(pickle.dumps(tok))
    assert again.encode("Héllo 中文 [MASK]") == tok.encode("Héllo 中文 [MASK]") and again.mask_token_id == 103


def test_folder_vocab_and_casing(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "Hello", "##s", "world"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    small = MobileBertTokenizer.from_pretrained(tmp_path)
    assert small.vocab_size == 9 and small.cls_token_id == 2 and small.mask_token_id == 4
    assert small.encode("Hellos World!") == [2, 5, 7, 8, 1, 3]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    cased = MobileBertTokenizer.from_pretrained(tmp_path)
    assert cased.encode("Hello hello") == [2, 6, 5, 3]


def test_bad_vocab_files(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nfoo\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"vocab.txt: vocab lacks special tokens"):
        MobileBertTokenizer.from_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_bytes(b"[PAD]\n\xff\xfe\n")
    with pytest.raises(TokenizerError, match="not UTF-8"):
        MobileBertTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="tokenizer.json: cannot read"):
        MobileBertTokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError):
        MobileBertTokenizer.from_pretrained(tmp_path / "missing")


def test_wikitext_valid_parity(tok, hf, shared_data):
    """Every line of WikiText-2 raw valid, batch-encoded, gives the reference ids."""
    lines = (shared_data / "corpus/wikitext-2-raw/wiki.valid.raw").read_text(encoding="utf-8").split("\n")
    assert len(lines) > 3000
    ours = tok.encode_batch_raw(lines, add_special_tokens=True)
    ref = hf(lines)["input_ids"]
    mismatches = [i for i, (a, b) in enumerate(zip(ours, ref, strict=True)) if a != b]
    assert not mismatches, f"{len(mismatches)} lines differ, first: {lines[mismatches[0]]!r}"
    assert sum(map(len, ours)) > 200_000


def test_glue_sentence_parity(tok, hf, shared_data):
    """Sentences (and pairs) from several GLUE dev sets."""
    def rows(task, cols):
        with open(shared_data / "glue" / task / "dev.tsv", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader) if task != "CoLA" else None
            for row in reader:
                idx = [header.index(c) if header else c for c in cols]
                yield [row[i] for i in idx]

    singles = [r[0] for r in rows("CoLA", [3])] + [r[0] for r in rows("SST-2", ["sentence"])]
    pairs = list(rows("MRPC", ["#1 String", "#2 String"])) + list(rows("RTE", ["sentence1", "sentence2"]))
    pairs += list(rows("QNLI", ["question", "sentence"]))[:1000]
    assert tok(singles)["input_ids"] == hf(singles)["input_ids"]
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    ours, ref = tok(a, b), hf(a, b)
    assert ours["input_ids"] == ref["input_ids"] and ours["token_type_ids"] == ref["token_type_ids"]
