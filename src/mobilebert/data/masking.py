"""MLM masking, shared by preparation (static masks, written into the shards) and the reader (dynamic masks).

Both sides must draw masks the same way, so the drawing lives here once. Every random number is a
counter-based hash of its key (:func:`hash_key`): a mask depends only on (seed, dupe, document, example) at
preparation or (seed, epoch, example) at load time -- never on the process, chunk or batch that drew it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a counter-based hash, so a random number depends only on its key."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def hash_key(*parts: int | np.ndarray) -> np.ndarray:
    """Combine integer keys (scalars or broadcastable arrays) into one uint64 hash per element."""
    h = np.asarray(np.uint64(0x5DEECE66D))
    with np.errstate(over="ignore"):
        for p in parts:
            h = _mix(h * _GOLDEN + np.asarray(p).astype(np.uint64))
    return h


def hash_uniform(key: np.ndarray, stream: int, width: int) -> np.ndarray:
    """Uniform [0, 1) floats of shape key.shape + (width,), one per (key, stream, position)."""
    pos = np.arange(width, dtype=np.uint64)
    h = hash_key(key[..., None], stream, pos)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


@dataclass(frozen=True)
class MaskingSpec:
    """How MLM targets are drawn (SPEC 3): 15% of maskable tokens, 80% [MASK] / 10% random / 10% kept."""

    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    whole_word_masking: bool = False
    vocab_size: int = 30522
    mask_token_id: int = 103


def mask_tokens(ids: np.ndarray, maskable: np.ndarray, word_start: np.ndarray, keys: np.ndarray,
                spec: MaskingSpec) -> tuple[np.ndarray, np.ndarray]:
    """Choose and corrupt MLM targets for a batch of sequences, vectorised over rows.

    ids, maskable, word_start: (N, T); word_start marks the first maskable piece of each word (every piece
    when masking single tokens). keys: (N,) uint64, one per sequence; the draws depend only on them.
    Returns (corrupted ids (N, T), selected (N, T) bool). As in BERT, words are visited in random order
    and a word is taken if it still fits within num_to_predict = min(max_pred, max(1, round(n * p))).
    """
    n, t = ids.shape
    u_order, u_action, u_token = (hash_uniform(keys, s, t) for s in (0, 1, 2))
    k = np.minimum(spec.max_predictions_per_seq,
                   np.maximum(1, np.rint(maskable.sum(1) * spec.masked_lm_prob))).astype(np.int64)
    order = np.argsort(np.where(word_start, u_order, 2.0), axis=1, kind="stable")  # word starts first
    word_id = np.cumsum(word_start, axis=1)  # (N, T): the word each piece belongs to (1-based per row)
    flat_word = (np.arange(n)[:, None] * (t + 1) + word_id)[maskable]
    word_len = np.bincount(flat_word, minlength=n * (t + 1)).reshape(n, t + 1)
    start_len = np.where(word_start, np.take_along_axis(word_len, word_id, axis=1), 0)
    sorted_len = np.take_along_axis(start_len, order, axis=1)  # (N, T): word lengths in visiting order
    if (sorted_len <= 1).all():
        take = (sorted_len > 0) & (np.arange(t)[None, :] < k[:, None])
    else:
        take = np.zeros((n, t), dtype=bool)
        count = np.zeros(n, dtype=np.int64)
        for j in range(t):
            lj = sorted_len[:, j]
            if not lj.any():
                break
            fits = (lj > 0) & (count + lj <= k)
            take[:, j] = fits
            count += np.where(fits, lj, 0)
    chosen_start = np.zeros((n, t), dtype=bool)
    np.put_along_axis(chosen_start, order, take, axis=1)
    word_chosen = np.zeros((n, t + 1), dtype=bool)
    rows, cols = np.nonzero(chosen_start)
    word_chosen[rows, word_id[rows, cols]] = True
    selected = maskable & np.take_along_axis(word_chosen, word_id, axis=1)
    out = ids.copy()
    random_ids = np.minimum((u_token * spec.vocab_size).astype(np.int64), spec.vocab_size - 1)
    out[selected & (u_action < 0.8)] = spec.mask_token_id
    replace = selected & (u_action >= 0.9)
    out[replace] = random_ids[replace].astype(out.dtype)
    return out, selected


def segment_masks(length: np.ndarray, seg_b: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """(maskable, token_type) for rows laid out as [CLS] A [SEP] B [SEP] padding."""
    pos = np.arange(t)[None, :]
    length, seg_b = length[:, None].astype(np.int64), seg_b[:, None].astype(np.int64)
    maskable = (pos >= 1) & (pos < length - 1) & (pos != seg_b - 1)
    token_type = (pos >= seg_b) & (pos < length)
    return maskable, token_type


def word_starts(ids: np.ndarray, maskable: np.ndarray, continuation: np.ndarray | None) -> np.ndarray:
    """Word starts among maskable pieces; every maskable piece when ``continuation`` is None (no WWM)."""
    if continuation is None:
        return maskable
    prev_maskable = np.zeros_like(maskable)
    prev_maskable[:, 1:] = maskable[:, :-1]
    return maskable & (~continuation[ids] | ~prev_maskable)
