"""STS-B scoring: Spearman x100 on hand-computed cases, cosine, refusal of undefined inputs, the readers."""

from __future__ import annotations

import numpy as np
import pytest

from mobilebert.data.sts import BUNDLED_SAMPLE, cosine_similarities, read_sts, spearman_x100


def test_spearman_hand_computed():
    assert spearman_x100([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(100.0)
    assert spearman_x100([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-100.0)
    # ranks (1, 2, 3, 4) vs (1, 3, 2, 4): 1 - 6 * (0 + 1 + 1 + 0) / (4 * 15) = 0.8
    assert spearman_x100([0.1, 0.2, 0.3, 0.4], [1, 3, 2, 4]) == pytest.approx(80.0)


def test_spearman_ties_take_average_ranks():
    # predicted ranks with a tie: (1, 2.5, 2.5, 4); gold (1, 2, 3, 4). Pearson of the ranks:
    p, g = np.array([1, 2.5, 2.5, 4]), np.array([1, 2, 3, 4])
    expected = np.corrcoef(p, g)[0, 1] * 100
    assert spearman_x100([0.0, 0.5, 0.5, 1.0], [0, 1, 2, 3]) == pytest.approx(expected)
    assert expected == pytest.approx(100 * 4.5 / np.sqrt(4.5 * 5.0))


@pytest.mark.parametrize("pred, gold, msg", [
    ([0.3, 0.3, 0.3], [1, 2, 3], "constant"),
    ([1, 2, 3], [2, 2, 2], "constant"),
    ([1, 2], [1, 2, 3], "one length"),
    ([1.0], [1.0], "one length"),
    ([1, float("nan"), 3], [1, 2, 3], "finite"),
])
def test_spearman_refuses_undefined(pred, gold, msg):
    with pytest.raises(ValueError, match=msg):
        spearman_x100(pred, gold)


def test_cosine_similarities():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = np.array([[0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
    np.testing.assert_allclose(cosine_similarities(a, b), [0.0, 1.0, -1.0], atol=1e-12)
    with pytest.raises(ValueError, match="all zeros"):
        cosine_similarities(np.zeros((1, 2)), np.ones((1, 2)))
    with pytest.raises(ValueError, match="shape"):
        cosine_similarities(np.ones((2, 2)), np.ones((3, 2)))


def test_bundled_sample_reads():
    pairs = read_sts()
    assert len(pairs.scores) == 300 and pairs.source == str(BUNDLED_SAMPLE)
    assert pairs.scores.min() >= 0.0 and pairs.scores.max() <= 5.0
    assert all(pairs.sentences1) and all(pairs.sentences2)


def test_official_dev_reads(shared_data):
    for where in (shared_data / "glue", shared_data / "glue" / "STS-B", shared_data / "glue" / "STS-B" / "dev.tsv"):
        pairs = read_sts(where)
        assert len(pairs.scores) == 1500


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no STS-B file"):
        read_sts(tmp_path / "nope.tsv")
    bad = tmp_path / "stsb.tsv"
    bad.write_text("a\tb\n1\t2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing column"):
        read_sts(bad)
