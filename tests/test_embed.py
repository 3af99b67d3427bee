"""`mobilebert embed`: row i of the vectors is input i, always (blank lines included), and empty text gets a note."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY, tiny_config

from mobilebert.cli import main
from mobilebert.modeling import MobileBertModel
from mobilebert.recipes.embed import read_lines


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    path = tmp_path_factory.mktemp("enc")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "runs", "cat", "sleeps"]
    MobileBertModel(tiny_config(vocab_size=len(vocab), **TINY)).save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return path


def test_one_row_per_line_blank_lines_included(encoder, tmp_path, capsys):
    """5 lines with 2 blank -> 5 rows; the blank ones are the vector of empty text, the others stay aligned."""
    (tmp_path / "in.txt").write_text("a dog runs\n\na cat sleeps\n   \ndog\n")
    assert read_lines(tmp_path / "in.txt") == ["a dog runs", "", "a cat sleeps", "   ", "dog"]
    out = tmp_path / "v.npy"
    assert main(["embed", "--model", str(encoder), "--file", str(tmp_path / "in.txt"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    v = np.load(out)
    assert v.shape[0] == 5
    assert main(["embed", "--model", str(encoder), "--out", str(tmp_path / "one.npy"), "a cat sleeps", ""]) == 0
    alone = np.load(tmp_path / "one.npy")
    assert np.allclose(v[2], alone[0], atol=1e-5) and np.allclose(v[1], alone[1], atol=1e-5)
    assert np.allclose(v[1], v[3], atol=1e-5)  # both blank lines: the empty text's vector
    assert "note: 2 empty text(s) (" in printed and "line 2, 4)" in printed
    assert "note: 1 empty text(s) (argument 2)" in capsys.readouterr().out


def test_every_line_blank_is_refused(encoder, tmp_path, capsys):
    (tmp_path / "blank.txt").write_text("\n \n")
    assert main(["embed", "--model", str(encoder), "--file", str(tmp_path / "blank.txt")]) == 2
    assert "empty" in capsys.readouterr().err
