"""Packed token ids of a file (data/packed.py): the same ids and token types as the tokenizer gives row by row."""

from __future__ import annotations

import numpy as np
import pytest

from mobilebert.data import files as F
from mobilebert.data.packed import encode_text_file
from mobilebert.tokenizer import MobileBertTokenizer

pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def tok() -> MobileBertTokenizer:
    return MobileBertTokenizer.default()


@pytest.mark.parametrize("pairs", [False, True])
def test_rows_equal_the_tokenizer(tmp_path, tok, pairs):
    rows = [("A fine film.", "Really fine."), ("word " * 40, "short"), ("Straße 3,5%", "x y z")]
    header = "sentence1,sentence2,label\n" if pairs else "text,label\n"
    body = "".join(f'"{a}","{b}",1\n' if pairs else f'"{a}",1\n' for a, b in rows)
    (tmp_path / "d.csv").write_text(header + body, encoding="utf-8")
    f = F.read_text_file(tmp_path / "d.csv", cache_dir=tmp_path / "cache")
    packed = encode_text_file(tok, f, max_length=16, batch_size=2)
    assert len(packed) == 3 and packed.ids.dtype == np.uint16
    ref = tok([a for a, _ in rows], [b for _, b in rows] if pairs else None, max_length=16, truncation=True)
    for i in range(3):
        ids, types = packed.row(i)
        assert ids.tolist() == ref["input_ids"][i] and types.tolist() == ref["token_type_ids"][i]
    assert packed.at_max_length == 1  # the 40-word row
    assert packed.nbytes == 2 * len(packed.ids) + 8 * 4 + 4 * 3


def test_rows_and_selection_index_like_id_lists(tmp_path, tok):
    texts = ["one", "two words", "three more words", "four words in all"]
    (tmp_path / "d.csv").write_text("text,label\n" + "".join(f"{t},a\n" for t in texts), encoding="utf-8")
    packed = encode_text_file(tok, F.read_text_file(tmp_path / "d.csv", cache_dir=tmp_path / "c"), batch_size=3)
    ref = tok(texts, max_length=128, truncation=True)["input_ids"]
    rows = packed.input_rows()
    assert len(rows) == 4 and [r.tolist() for r in rows] == ref and rows[1:3][1].tolist() == ref[2]
    picked = packed.select([3, 0])
    assert [r.tolist() for r in picked.input_rows()] == [ref[3], ref[0]]
    assert [r.tolist() for r in picked.type_rows()] == [[0] * len(ref[3]), [0] * len(ref[0])]
