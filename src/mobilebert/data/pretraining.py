"""Raw text -> sharded masked-LM + next-sentence examples (the BERT recipe), and a resumable reader.

Preparation runs in two passes over fixed chunks of whole documents (``chunk_bytes`` of text each):

1. *Tokenize*: each chunk's documents are split into sentences and WordPiece-tokenized (a pool of
   ``workers`` processes); the token stream is written to a scratch folder as flat arrays
   (tokens, sentence lengths, sentences per document) that every worker can memory-map.
2. *Make examples*: for each ``dupe`` and each chunk, BERT's ``create_instances_from_document`` walks the
   documents; the random "next" segment is drawn from the whole memory-mapped corpus. Truncation,
   assembly and masking are vectorised with numpy over all examples of a chunk.

Every random draw is keyed by (seed, dupe, document) -- never by chunk or worker -- so the shards are
byte-identical for any ``workers`` or ``chunk_bytes``. Examples are written in (dupe, document) order, each
shard shuffled with its own seed, as ``shard_NNNNN.npy`` (a structured array, see :func:`record_dtype`),
each to a temporary name then renamed; ``manifest.json`` (arguments, vocab hash, counts, sha256 per shard)
is written last, so a folder without a manifest is an unfinished run and is refused by the reader.

Deviations from Google's script, on purpose:
- A chunk holding a single sentence is split inside that sentence for the IsNext case (BERT always made it
  a random-next example, which pulls IsNext below 50%).
- A segment's first word piece always starts a word for whole-word masking (BERT could glue a ``##`` piece
  at the start of segment B to the last word of segment A).
- Sentences longer than ``max_seq_length - 3`` tokens (e.g. one multi-MB line) are cut into pieces of that
  length, and counted, instead of being truncated away.

Input formats (``input_format``):
- ``"lines"``: BERT's convention: one sentence per line, a blank line between documents.
- ``"paragraphs"``: one paragraph per line (blank lines between paragraphs are fine), split into sentences
  with a small rule: a ``.``, ``!`` or ``?``, optionally followed by a closing quote or bracket, then
  whitespace and an upper-case letter, digit or opening quote; an initial such as ``U.S.`` or ``Mr.`` does not
  end a sentence. Two or more consecutive blank lines end a document; a file without them is one document.
- ``"wikitext"``: WikiText raw files: paragraphs as above, but a top-level heading line `` = Title = ``
  starts a new document, section headings `` = = Section = = `` are dropped, and WikiText's `` @-@ ``,
  `` @,@ ``, `` @.@ `` escapes are undone.
- ``"auto"`` (default): ``"wikitext"`` when the first 200 non-blank lines of a file hold a top-level
  WikiText heading, else ``"lines"``.
Bytes that are not UTF-8 are replaced by U+FFFD, counted per file, logged and recorded in the manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing as mp
import os
import random
import re
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_write_bytes
from ..tokenizer import MobileBertTokenizer

log = logging.getLogger(__name__)

FORMAT_NAME = "mobilebert-pretraining"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INPUT_FORMATS = ("auto", "lines", "paragraphs", "wikitext")
SAMPLE_CORPUS = Path(__file__).resolve().parents[1] / "assets" / "sample" / "wikitext_sample.txt"


def sample_corpus_path() -> Path:
    """The bundled WikiText-2 sample (about 250 KB of whole articles, CC BY-SA 3.0)."""
    return SAMPLE_CORPUS


class PretrainingDataError(ValueError):
    """Unusable corpus or shard folder; the message is one line naming the file and the problem."""


# ---------------------------------------------------------------------------------------------------------
# Reading text: files -> documents -> sentences
# ---------------------------------------------------------------------------------------------------------

_WIKI_TITLE = re.compile(r"^ ?= [^=].* = ?$")
_WIKI_HEADING = re.compile(r"^ ?(= )+.*( =)+ ?$")
_WIKI_ESCAPES = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))
_SENTENCE_BREAK = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?\s?[A-Z0-9])")
_NOT_AN_END = re.compile(
    r"(?:\b[A-Z]|\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|Gen|Col|Lt|Sgt|Capt|Mt|No|vs|etc|Inc|Co|Ltd|approx))\.$")


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of one paragraph (see the module docstring for the rule)."""
    out: list[str] = []
    for piece in _SENTENCE_BREAK.split(paragraph.strip()):
        if out and _NOT_AN_END.search(out[-1][-12:]):  # the tail suffices (and keeps this linear)
            out[-1] = f"{out[-1]} {piece}"
        elif piece:
            out.append(piece)
    return out


def _detect_format(path: Path) -> str:
    seen = 0
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line.strip():
                continue
            if _WIKI_TITLE.match(line):
                return "wikitext"
            seen += 1
            if seen >= 200:
                break
    return "lines"


@dataclass
class _FileStats:
    path: str
    bytes: int = 0
    format: str = ""
    replaced_chars: int = 0  # U+FFFD introduced by decoding invalid UTF-8


def _read_documents(path: Path, fmt: str, stats: _FileStats) -> Iterator[list[str]]:
    """Yield documents as lists of lines (sentences for "lines", paragraphs otherwise)."""
    doc: list[str] = []
    blanks = 0
    with open(path, "rb") as f:
        for raw in f:
            stats.bytes += len(raw)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("utf-8", "replace")
                stats.replaced_chars += line.count("\ufffd") - raw.count("\ufffd".encode())
            line = line.rstrip("\r\n")
            stripped = line.strip()
            if fmt == "lines":
                if stripped:
                    doc.append(stripped)
                elif doc:
                    yield doc
                    doc = []
                continue
            if not stripped:
                blanks += 1
                if blanks >= 2 and doc and fmt == "paragraphs":
                    yield doc
                    doc = []
                continue
            blanks = 0
            if fmt == "paragraphs":
                doc.append(stripped)
            elif _WIKI_TITLE.match(line):
                if doc:
                    yield doc
                doc = []
            elif not _WIKI_HEADING.match(line):
                doc.append(stripped)
    if doc:
        yield doc


def _iter_chunks(files: Sequence[Path], input_format: str, chunk_bytes: int,
                 stats: list[_FileStats]) -> Iterator[tuple[str, list[list[str]]]]:
    """Group whole documents into chunks of about ``chunk_bytes`` characters (never splitting a document)."""
    for path in files:
        fmt = _detect_format(path) if input_format == "auto" else input_format
        st = _FileStats(str(path), format=fmt)
        stats.append(st)
        chunk: list[list[str]] = []
        size = 0
        for doc in _read_documents(path, fmt, st):
            chunk.append(doc)
            size += sum(map(len, doc))
            if size >= chunk_bytes:
                yield fmt, chunk
                chunk, size = [], 0
        if chunk:
            yield fmt, chunk
        if st.replaced_chars:
            log.warning("%s: %d invalid UTF-8 sequences replaced by U+FFFD", path, st.replaced_chars)


# ---------------------------------------------------------------------------------------------------------
# Worker side: tokenizing chunks and making examples
# ---------------------------------------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


def _init_worker(tokenizer_json: str, work_dir: str | None = None) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process = one core; parallelism comes from the pool
    from tokenizers import Tokenizer

    _STATE.clear()
    _STATE["tokenizer"] = Tokenizer.from_str(tokenizer_json)
    _STATE["work_dir"] = work_dir


def _tokenize_chunk(args: tuple[str, list[list[str]], int, str]) -> dict[str, np.ndarray | int]:
    """Sentences -> token ids; returns flat tokens, sentence lengths and sentences per document."""
    fmt, docs, max_piece, id_dtype = args
    texts: list[str] = []
    per_doc: list[int] = []
    for doc in docs:
        n0 = len(texts)
        if fmt == "lines":
            texts.extend(doc)
        else:
            for para in doc:
                if fmt == "wikitext":
                    for old, new in _WIKI_ESCAPES:
                        para = para.replace(old, new)
                texts.extend(split_sentences(para))
        per_doc.append(len(texts) - n0)
    ids = [e.ids for e in _STATE["tokenizer"].encode_batch_fast(texts, add_special_tokens=False)]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    tokens = np.fromiter(chain.from_iterable(ids), dtype=id_dtype, count=int(lengths.sum()))
    # Cut over-long sentences into pieces of at most max_piece tokens; drop empty ones.
    doc_of = np.repeat(np.arange(len(per_doc)), per_doc)
    long = lengths > max_piece
    pieces = np.where(lengths > 0, (lengths + max_piece - 1) // max_piece, 0)
    new_len = np.full(int(pieces.sum()), max_piece, dtype=np.int64)
    ends = np.cumsum(pieces) - 1
    new_len[ends[pieces > 0]] = lengths[pieces > 0] - (pieces[pieces > 0] - 1) * max_piece
    new_doc = np.repeat(doc_of, pieces)
    doc_nsent = np.bincount(new_doc, minlength=len(per_doc))
    return {"tokens": tokens, "sent_len": new_len.astype(np.int32), "doc_nsent": doc_nsent[doc_nsent > 0],
            "long_sentences": int(long.sum()), "empty_sentences": int((lengths == 0).sum()),
            "empty_documents": int((doc_nsent == 0).sum())}


def _corpus() -> dict[str, np.ndarray]:
    """The scratch corpus, memory-mapped once per process."""
    if "corpus" not in _STATE:
        d = Path(_STATE["work_dir"])
        _STATE["corpus"] = {name: np.load(d / f"{name}.npy", mmap_mode="r")
                            for name in ("tokens", "sent_off", "doc_first")}
    return _STATE["corpus"]


def _continuation() -> np.ndarray:
    """Boolean table over ids: True for ``##`` pieces (whole-word masking), built once per process."""
    if "continuation" not in _STATE:
        vocab = _STATE["tokenizer"].get_vocab(with_added_tokens=True)
        cont = np.zeros(max(vocab.values()) + 1, dtype=bool)
        for piece, i in vocab.items():
            cont[i] = piece.startswith("##")
        _STATE["continuation"] = cont
    return _STATE["continuation"]


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


def record_dtype(max_seq_length: int, max_predictions: int, id_dtype: np.dtype) -> np.dtype:
    """One example: masked input ids, segment layout, NSP label and the MLM targets (padded with 0)."""
    return np.dtype([
        ("input_ids", id_dtype, (max_seq_length,)),  # [CLS] A [SEP] B [SEP] [PAD]..., MLM-corrupted
        ("length", "<u2"),  # tokens before padding
        ("seg_b", "<u2"),  # index of B's first token (token type 1 from here to length)
        ("is_random_next", "u1"),  # NSP label: 0 = IsNext, 1 = random (as in HF)
        ("num_masked", "u1"),
        ("masked_positions", "<u2", (max_predictions,)),  # ascending; 0 past num_masked
        ("masked_ids", id_dtype, (max_predictions,)),  # original ids at those positions
    ])


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


def _make_examples(args: tuple) -> tuple[np.ndarray, dict[str, int]]:
    """Examples for documents [doc_lo, doc_hi) in pass ``dupe``: pair spans, then vectorised assembly."""
    doc_lo, doc_hi, dupe, opts = args
    spans = _pair_spans(doc_lo, doc_hi, dupe, opts["seed"], opts["max_seq_length"] - 3, opts["short_seq_prob"])
    return _assemble(spans, dupe, opts)


def _pair_spans(doc_lo: int, doc_hi: int, dupe: int, seed: int, max_tokens: int,
                short_seq_prob: float) -> dict[str, np.ndarray]:
    """BERT's create_instances_from_document over a range of documents, as token spans into the corpus.

    Returns per example: A's and B's (start, length) before truncation, whether B is random, and the
    (document, number within document) that keys its random draws.
    """
    c = _corpus()
    sent_off, doc_first = c["sent_off"], c["doc_first"]
    n_docs = len(doc_first) - 1
    first = int(doc_first[doc_lo])
    offs = np.asarray(sent_off[first:int(doc_first[doc_hi]) + 1]).tolist()  # this range's sentence offsets
    firsts = np.asarray(doc_first[doc_lo:doc_hi + 1]).tolist()
    doc_seeds = hash_key(seed, dupe, np.arange(doc_lo, doc_hi)).tolist()
    a_start, a_len, b_start, b_len, rand_next, ex_doc, ex_num = [], [], [], [], [], [], []
    for d in range(doc_lo, doc_hi):
        rng = random.Random(doc_seeds[d - doc_lo])
        s_lo, s_hi = firsts[d - doc_lo], firsts[d - doc_lo + 1]
        target = max_tokens
        if rng.random() < short_seq_prob:
            target = rng.randint(2, max_tokens)
        chunk_lo, chunk_len, made = s_lo, 0, 0
        i = s_lo
        while i < s_hi:
            chunk_len += offs[i + 1 - first] - offs[i - first]
            if i == s_hi - 1 or chunk_len >= target:
                n_seg = i + 1 - chunk_lo
                a_end = rng.randint(chunk_lo + 1, i) if n_seg >= 2 else chunk_lo + 1
                start = offs[chunk_lo - first]
                la = offs[a_end - first] - start
                is_random = rng.random() < 0.5
                if n_seg == 1 and not is_random and la < 2:
                    is_random = True  # a one-token sentence cannot be split into A and B
                if is_random:
                    target_b = target - la
                    rd = d
                    for _ in range(10):
                        rd = rng.randint(0, n_docs - 1)
                        if rd != d:
                            break
                    r_lo, r_hi = int(doc_first[rd]), int(doc_first[rd + 1])
                    j = rng.randint(r_lo, r_hi - 1)
                    bs = int(sent_off[j])
                    while j < r_hi - 1 and int(sent_off[j + 1]) - bs < target_b:
                        j += 1
                    lb = int(sent_off[j + 1]) - bs
                    i = a_end - 1  # put back the unused segments, as BERT does
                elif n_seg == 1:  # IsNext inside one sentence: split it at a random token
                    la = rng.randint(1, la - 1)
                    bs, lb = start + la, offs[a_end - first] - start - la
                else:
                    bs, lb = offs[a_end - first], offs[i + 1 - first] - offs[a_end - first]
                a_start.append(start)
                a_len.append(la)
                b_start.append(bs)
                b_len.append(lb)
                rand_next.append(is_random)
                ex_doc.append(d)
                ex_num.append(made)
                made += 1
                chunk_lo, chunk_len = i + 1, 0
            i += 1
    as_array = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
    return {"a_start": as_array(a_start), "a_len": as_array(a_len), "b_start": as_array(b_start),
            "b_len": as_array(b_len), "is_random_next": np.asarray(rand_next, dtype=bool),
            "doc": as_array(ex_doc), "num": as_array(ex_num)}


def _assemble(spans: dict[str, np.ndarray], dupe: int, opts: dict) -> tuple[np.ndarray, dict[str, int]]:
    """Truncate pairs, lay out [CLS] A [SEP] B [SEP], mask: all vectorised over the examples."""
    tokens = _corpus()["tokens"]
    seed, t = opts["seed"], opts["max_seq_length"]
    max_tokens = t - 3
    a_start, a_len, b_start, b_len = spans["a_start"], spans["a_len"], spans["b_start"], spans["b_len"]
    rand_next = spans["is_random_next"]
    n = len(a_start)
    out = np.zeros(n, dtype=record_dtype(t, opts["max_predictions_per_seq"], np.dtype(opts["id_dtype"])))
    if n == 0:
        return out, {"examples": 0, "is_next": 0, "masked": 0, "maskable": 0}
    key_arr = hash_key(seed, dupe, spans["doc"], spans["num"])  # per-example keys
    # Truncate the pair to max_tokens as BERT does (trim the longer, ties trim B; each trimmed token comes
    # off the front or the back with probability 1/2), in closed form.
    over = a_len + b_len > max_tokens
    short = np.minimum(a_len, b_len)
    keep_short = np.where(2 * short <= max_tokens, short, max_tokens // 2)
    keep_a = np.where(a_len > b_len, max_tokens - keep_short, np.where(2 * short <= max_tokens, a_len,
                                                                          max_tokens - max_tokens // 2))
    new_a = np.where(over, keep_a, a_len)
    new_b = np.where(over, max_tokens - new_a, b_len)
    front_a = _fair_coin_count(a_len - new_a, key_arr, 3)
    front_b = _fair_coin_count(b_len - new_b, key_arr, 4)
    a_start, b_start, a_len, b_len = a_start + front_a, b_start + front_b, new_a, new_b
    # Assemble [CLS] A [SEP] B [SEP] with one gather.
    pos = np.arange(t)[None, :]
    la, lb = a_len[:, None], b_len[:, None]
    length = a_len + b_len + 3
    src = np.where(pos <= la, a_start[:, None] + pos - 1, b_start[:, None] + pos - la - 2)
    in_a = (pos >= 1) & (pos <= la)
    in_b = (pos >= la + 2) & (pos < la + 2 + lb)
    ids = np.where(in_a | in_b, np.asarray(tokens)[np.clip(src, 0, len(tokens) - 1)], opts["pad_id"])
    ids = ids.astype(np.int64)
    ids[:, 0] = opts["cls_id"]
    rows = np.arange(n)
    ids[rows, a_len + 1] = opts["sep_id"]
    ids[rows, length - 1] = opts["sep_id"]
    spec = MaskingSpec(**opts["masking"])
    cont = _continuation() if spec.whole_word_masking else None
    maskable = in_a | in_b
    corrupted, selected = mask_tokens(ids, maskable, word_starts(ids, maskable, cont), key_arr, spec)
    p = opts["max_predictions_per_seq"]
    masked_pos = np.argsort(~selected, axis=1, kind="stable")[:, :p]
    num_masked = selected.sum(1)
    valid = np.arange(p)[None, :] < num_masked[:, None]
    out["input_ids"] = corrupted
    out["length"] = length
    out["seg_b"] = a_len + 2
    out["is_random_next"] = rand_next
    out["num_masked"] = num_masked
    out["masked_positions"] = np.where(valid, masked_pos, 0)
    out["masked_ids"] = np.where(valid, np.take_along_axis(ids, masked_pos, axis=1), 0)
    stats = {"examples": n, "is_next": int(n - rand_next.sum()), "masked": int(num_masked.sum()),
             "maskable": int(maskable.sum())}
    return out, stats


def _fair_coin_count(n: np.ndarray, keys: np.ndarray, stream: int) -> np.ndarray:
    """Heads among n[i] fair coin flips (Binomial(n, 1/2)), from the bits of hashes of keys[i]."""
    out = np.zeros_like(n)
    rows = np.nonzero(n > 0)[0]
    if len(rows) == 0:
        return out
    words = int(n[rows].max() + 63) // 64
    bits = np.unpackbits(hash_key(keys[rows, None], stream, np.arange(words)).view(np.uint8), axis=1)
    out[rows] = (bits & (np.arange(bits.shape[1])[None, :] < n[rows, None])).sum(1)
    return out


# ---------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------


@dataclass
class PrepareResult:
    out_dir: Path
    manifest: dict[str, Any] = field(repr=False)

    @property
    def num_examples(self) -> int:
        return int(self.manifest["counts"]["examples"])


def _expand_inputs(inputs: str | Path | Iterable[str | Path]) -> list[Path]:
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith(".")))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such input file or folder")
    if not files:
        raise PretrainingDataError(f"{', '.join(map(str, items))}: no input files")
    return files


def _map(pool: Any, fn: Any, tasks: Iterable, window: int = 4) -> Iterator:
    """Ordered map with at most ``window`` tasks per worker in flight (Pool.imap would read the whole corpus
    ahead into memory)."""
    if pool is None:
        yield from map(fn, tasks)
        return
    pending: deque = deque()
    for task in tasks:
        pending.append(pool.apply_async(fn, (task,)))
        if len(pending) >= window * pool._processes:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def prepare_pretraining(
    inputs: str | Path | Iterable[str | Path],
    out_dir: str | Path,
    *,
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    masked_lm_prob: float = 0.15,
    max_predictions_per_seq: int = 20,
    dupe_factor: int = 1,
    whole_word_masking: bool = False,
    dynamic_masking: bool = False,
    seed: int = 12345,
    workers: int = 1,
    shard_size: int = 100_000,
    chunk_bytes: int = 1 << 18,
    input_format: str = "auto",
    tokenizer: MobileBertTokenizer | None = None,
    progress: bool = True,
) -> PrepareResult:
    """Write MLM + NSP examples from raw UTF-8 text files (or folders of them) into ``out_dir``.

    dupe_factor: passes over the corpus, each with different sentence pairing and masks (BERT used 10;
    1 suffices with ``dynamic_masking``, which only records that the reader should redraw masks per epoch).
    Output depends on the arguments and the text, never on ``workers`` or ``chunk_bytes``. A previous run's
    manifest.json and shard_*.npy files in ``out_dir`` are removed first.
    """
    tok = tokenizer or MobileBertTokenizer.default()
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format must be one of {INPUT_FORMATS}, not {input_format!r}")
    if not 8 <= max_seq_length <= 65535:
        raise ValueError(f"max_seq_length must be in [8, 65535], got {max_seq_length}")
    if not 1 <= max_predictions_per_seq <= min(255, max_seq_length):
        raise ValueError(f"max_predictions_per_seq must be in [1, 255], got {max_predictions_per_seq}")
    if not (0 < masked_lm_prob < 1 and 0 <= short_seq_prob <= 1 and dupe_factor >= 1 and shard_size >= 1):
        raise ValueError("need 0 < masked_lm_prob < 1, 0 <= short_seq_prob <= 1, dupe_factor >= 1, shard_size >= 1")
    files = _expand_inputs(inputs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # A stale manifest would vouch for shards this run is about to replace: remove it, old shards, and what a
    # killed run may have left (scratch folders, temporary shard files), first.
    (out / MANIFEST).unlink(missing_ok=True)
    for old in [*out.glob("shard_*.npy"), *out.glob(".shard_*.tmp"), *out.glob(f".{MANIFEST}.*.tmp")]:
        old.unlink()
    for old in out.glob(".work-*"):
        shutil.rmtree(old, ignore_errors=True)
    id_dtype = np.dtype("<u2") if tok.vocab_size <= 65535 else np.dtype("<i4")
    arguments = dict(max_seq_length=max_seq_length, short_seq_prob=short_seq_prob, masked_lm_prob=masked_lm_prob,
                     max_predictions_per_seq=max_predictions_per_seq, dupe_factor=dupe_factor,
                     whole_word_masking=whole_word_masking, dynamic_masking=dynamic_masking, seed=seed,
                     shard_size=shard_size, input_format=input_format)
    work = Path(tempfile.mkdtemp(dir=out, prefix=".work-"))
    workers = max(1, int(workers))
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    init_args = (tok.backend.to_str(), str(work))
    saved_env = os.environ.get("TOKENIZERS_PARALLELISM")
    pool = ctx.Pool(workers, initializer=_init_worker, initargs=init_args) if workers > 1 else None
    try:
        if pool is None:
            _init_worker(*init_args)
        file_stats: list[_FileStats] = []
        counts = _tokenize_corpus(files, input_format, chunk_bytes, max_seq_length - 3, id_dtype, work, pool,
                                  file_stats, progress)
        if counts["documents"] == 0:
            raise PretrainingDataError(f"{', '.join(str(f) for f in files)}: no text found (empty corpus)")
        opts = dict(arguments, id_dtype=id_dtype.str, pad_id=tok.pad_token_id, cls_id=tok.cls_token_id,
                    sep_id=tok.sep_token_id, masking=asdict(MaskingSpec(
                        masked_lm_prob, max_predictions_per_seq, whole_word_masking, tok.vocab_size,
                        tok.mask_token_id)))
        shards, ex_counts = _write_examples(work, out, opts, counts["chunk_docs"], dupe_factor, shard_size, seed,
                                            pool, progress)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        _STATE.clear()
        if saved_env is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved_env
        shutil.rmtree(work, ignore_errors=True)
    counts.pop("chunk_docs")
    counts.update(ex_counts)
    if counts["examples"] == 0:
        raise PretrainingDataError(f"{files[0]}: corpus too small to make a single example")
    manifest = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "arguments": arguments,
        "vocab_sha256": tok.vocab_sha256, "vocab_size": tok.vocab_size, "lowercase": tok.lowercase,
        "id_dtype": id_dtype.str,
        "record_fields": list(record_dtype(max_seq_length, max_predictions_per_seq, id_dtype).names),
        "counts": counts,
        "inputs": [asdict(s) for s in file_stats],
        "shards": shards,
    }
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    log.info("%s: %d examples in %d shards from %d tokens", out, counts["examples"], len(shards), counts["tokens"])
    return PrepareResult(out, manifest)


def _tokenize_corpus(files: list[Path], input_format: str, chunk_bytes: int, max_piece: int, id_dtype: np.dtype,
                     work: Path, pool: Any, file_stats: list[_FileStats], progress: bool) -> dict[str, Any]:
    """Pass 1: tokenize chunk by chunk and append to flat scratch arrays."""
    total = sum(f.stat().st_size for f in files)
    counts = {"files": len(files), "documents": 0, "sentences": 0, "tokens": 0, "long_sentences_split": 0,
              "empty_sentences": 0, "empty_documents": 0, "chunk_docs": []}
    tasks = ((fmt, docs, max_piece, id_dtype.str) for fmt, docs in _iter_chunks(files, input_format, chunk_bytes,
                                                                                file_stats))
    sent_lens, doc_counts = [], []
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="tokenize", disable=not progress)
    with open(work / "tokens.bin", "wb") as tf:
        for r in _map(pool, _tokenize_chunk, tasks):
            tf.write(r["tokens"].tobytes())
            sent_lens.append(r["sent_len"])
            doc_counts.append(r["doc_nsent"])
            counts["chunk_docs"].append(len(r["doc_nsent"]))
            counts["tokens"] += len(r["tokens"])
            for k in ("long_sentences", "empty_sentences", "empty_documents"):
                counts[k if k != "long_sentences" else "long_sentences_split"] += r[k]
            bar.n = min(total, sum(s.bytes for s in file_stats))
            bar.refresh()
    bar.close()
    if counts["long_sentences_split"]:
        log.warning("%d sentences longer than %d tokens were cut into pieces", counts["long_sentences_split"],
                    max_piece)
    lens = np.concatenate(sent_lens) if sent_lens else np.zeros(0, np.int32)
    per_doc = np.concatenate(doc_counts) if doc_counts else np.zeros(0, np.int64)
    counts["documents"], counts["sentences"] = len(per_doc), len(lens)
    counts["replaced_chars"] = sum(s.replaced_chars for s in file_stats)
    n_tok = counts["tokens"]
    tokens = np.memmap(work / "tokens.bin", dtype=id_dtype, mode="r", shape=(n_tok,)) if n_tok else \
        np.zeros(0, id_dtype)
    np.save(work / "tokens.npy", tokens)  # .npy header lets workers np.load(mmap_mode="r")
    del tokens
    (work / "tokens.bin").unlink()
    np.save(work / "sent_off.npy", np.concatenate([[0], np.cumsum(lens, dtype=np.int64)]))
    np.save(work / "doc_first.npy", np.concatenate([[0], np.cumsum(per_doc, dtype=np.int64)]))
    return counts


def _write_examples(work: Path, out: Path, opts: dict, chunk_docs: list[int], dupe_factor: int, shard_size: int,
                    seed: int, pool: Any, progress: bool) -> tuple[list[dict], dict[str, int]]:
    """Pass 2: examples in (dupe, document) order, cut into shards of exactly ``shard_size`` examples."""
    bounds = np.concatenate([[0], np.cumsum(chunk_docs)]).astype(int).tolist()
    tasks = [(bounds[c], bounds[c + 1], dupe, opts) for dupe in range(dupe_factor) for c in range(len(chunk_docs))
             if bounds[c + 1] > bounds[c]]
    shards: list[dict] = []
    counts = {"examples": 0, "is_next": 0, "masked": 0, "maskable": 0}
    pending: list[np.ndarray] = []
    n_pending = 0

    def flush(final: bool) -> None:
        nonlocal pending, n_pending
        while n_pending >= shard_size or (final and n_pending):
            data = np.concatenate(pending)
            part, rest = data[:shard_size], data[shard_size:]
            pending, n_pending = [rest], len(rest)
            k = len(shards)
            part = part[np.random.default_rng([seed, 0x5A4D, k]).permutation(len(part))]
            buf = io.BytesIO()
            np.save(buf, part, allow_pickle=False)
            name = f"shard_{k:05d}.npy"
            atomic_write_bytes(out / name, buf.getvalue())
            shards.append({"file": name, "num_examples": len(part), "bytes": buf.tell(),
                           "sha256": hashlib.sha256(buf.getvalue()).hexdigest()})

    for arr, st in tqdm(_map(pool, _make_examples, tasks), total=len(tasks), desc="examples",
                        disable=not progress):
        for k, v in st.items():
            counts[k] += v
        pending.append(arr)
        n_pending += len(arr)
        flush(final=False)
    flush(final=True)
    return shards, counts


# ---------------------------------------------------------------------------------------------------------
# Reading: PretrainingDataset and its resumable loader
# ---------------------------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 23):
            h.update(block)
    return h.hexdigest()


class PretrainingDataset:
    """Memory-mapped examples from a ``prepare_pretraining`` folder, this rank's share of them.

    Items and batches are dicts of torch tensors: input_ids, attention_mask, token_type_ids (B, T) long,
    labels (B, T) long with -100 where not masked, next_sentence_label (B,) long (0 = IsNext, 1 = random).
    Rank ``r`` of ``world_size`` owns examples r, r + world_size, ... (disjoint; their union is everything);
    the loader re-deals a fresh global permutation the same way each epoch.

    dynamic_masking: None follows the manifest; True redraws the MLM masks per (seed, epoch, example) at load
    time (from the stored originals), False uses the masks stored at preparation.
    verify: check every shard's sha256 (reads all bytes once); False only checks sizes.
    """

    def __init__(self, path: str | Path, rank: int = 0, world_size: int = 1, dynamic_masking: bool | None = None,
                 seed: int = 0, verify: bool = True, tokenizer: MobileBertTokenizer | None = None,
                 max_positions: int | None = None) -> None:
        self.path = Path(path)
        mpath = self.path / MANIFEST
        if not mpath.is_file():
            raise PretrainingDataError(f"{mpath}: no manifest (not a prepared folder, or preparation was interrupted)")
        try:
            self.manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PretrainingDataError(f"{mpath}: manifest is not valid JSON ({e})") from None
        m = self.manifest
        if m.get("format") != FORMAT_NAME or m.get("version") != FORMAT_VERSION:
            raise PretrainingDataError(f"{mpath}: not a {FORMAT_NAME} v{FORMAT_VERSION} manifest")
        tok = tokenizer or MobileBertTokenizer.default()
        if m["vocab_sha256"] != tok.vocab_sha256:
            raise PretrainingDataError(f"{mpath}: made with another vocab (sha256 {m['vocab_sha256'][:12]}…, "
                                       f"tokenizer has {tok.vocab_sha256[:12]}…)")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.rank, self.world_size, self.seed = rank, world_size, seed
        args = m["arguments"]
        self.max_seq_length = int(args["max_seq_length"])
        if max_positions is not None:
            self._check_length(max_positions)
        self.dynamic_masking = bool(args.get("dynamic_masking")) if dynamic_masking is None else dynamic_masking
        self.spec = MaskingSpec(args["masked_lm_prob"], args["max_predictions_per_seq"],
                                args["whole_word_masking"], tok.vocab_size, tok.mask_token_id)
        self._continuation = tok.continuation_mask() if self.spec.whole_word_masking else None
        dtype = record_dtype(self.max_seq_length, int(args["max_predictions_per_seq"]), np.dtype(m["id_dtype"]))
        self.shards: list[np.ndarray] = []
        for info in m["shards"]:
            f = self.path / info["file"]
            if not f.is_file():
                raise PretrainingDataError(f"{f}: shard listed in the manifest is missing")
            if f.stat().st_size != info["bytes"]:
                raise PretrainingDataError(f"{f}: {f.stat().st_size} bytes, manifest says {info['bytes']} "
                                           "(truncated or replaced shard)")
            if verify and _sha256_file(f) != info["sha256"]:
                raise PretrainingDataError(f"{f}: sha256 differs from the manifest (corrupt shard)")
            arr = np.load(f, mmap_mode="r", allow_pickle=False)
            if arr.dtype != dtype or len(arr) != info["num_examples"]:
                raise PretrainingDataError(f"{f}: dtype or length differs from the manifest")
            self.shards.append(arr)
        self.offsets = np.concatenate([[0], np.cumsum([len(a) for a in self.shards])]).astype(np.int64)
        self.num_examples = int(self.offsets[-1])
        self.indices = np.arange(rank, self.num_examples, world_size, dtype=np.int64)

    def _check_length(self, max_positions: int) -> None:
        if self.max_seq_length > max_positions:
            raise PretrainingDataError(f"{self.path / MANIFEST}: max_seq_length {self.max_seq_length} exceeds "
                                       f"the model's {max_positions} positions")

    def check_model(self, config: Any) -> None:
        """Refuse a model whose position table or vocabulary is too small for these examples."""
        self._check_length(int(config.max_position_embeddings))
        if int(config.vocab_size) < int(self.manifest["vocab_size"]):
            raise PretrainingDataError(f"{self.path / MANIFEST}: vocab of {self.manifest['vocab_size']} tokens "
                                       f"exceeds the model's vocab_size {config.vocab_size}")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        batch = self.get_batch(self.indices[[i]])
        return {k: v[0] for k, v in batch.items()}

    def records(self, global_indices: np.ndarray) -> np.ndarray:
        """Raw records for global example indices (any order), read from the memory maps."""
        idx = np.asarray(global_indices, dtype=np.int64)
        shard = np.searchsorted(self.offsets, idx, side="right") - 1
        out = np.empty(len(idx), dtype=self.shards[0].dtype)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self.shards[s][idx[sel] - self.offsets[s]]
        return out

    def get_batch(self, global_indices: np.ndarray, epoch: int = 0) -> dict[str, Any]:
        """Tensors for the given global example indices; ``epoch`` keys the dynamic masks."""
        import torch

        idx = np.asarray(global_indices, dtype=np.int64)
        rec = self.records(idx)
        t = self.max_seq_length
        ids = rec["input_ids"].astype(np.int64)
        maskable, token_type = segment_masks(rec["length"], rec["seg_b"], t)
        attention = np.arange(t)[None, :] < rec["length"][:, None].astype(np.int64)
        valid = np.arange(rec["masked_positions"].shape[1])[None, :] < rec["num_masked"][:, None]
        rows = np.broadcast_to(np.arange(len(idx))[:, None], valid.shape)[valid]
        cols = rec["masked_positions"][valid].astype(np.int64)
        labels = np.full_like(ids, -100)
        if self.dynamic_masking:
            ids[rows, cols] = rec["masked_ids"][valid]  # the original text
            keys = hash_key(self.seed, epoch, idx)
            ids_in, selected = mask_tokens(ids, maskable, word_starts(ids, maskable, self._continuation),
                                           keys, self.spec)
            labels[selected] = ids[selected]
            ids = ids_in
        else:
            labels[rows, cols] = rec["masked_ids"][valid]
        as_long = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
        return {"input_ids": as_long(ids), "attention_mask": as_long(attention),
                "token_type_ids": as_long(token_type), "labels": as_long(labels),
                "next_sentence_label": as_long(rec["is_random_next"])}

    def loader(self, batch_size: int, shuffle: bool = True, seed: int | None = None,
               drop_last: bool = True) -> PretrainingLoader:
        return PretrainingLoader(self, batch_size, shuffle, self.seed if seed is None else seed, drop_last)


class PretrainingLoader:
    """Endless, resumable batches of one rank's share.

    Epoch ``e`` deals a permutation of all examples (seeded by (seed, e)) round-robin to the ranks; every
    rank gets ``(N // world_size) // batch_size`` batches per epoch with ``drop_last`` (equal on all ranks,
    as DDP needs). ``state_dict()`` is (epoch, position); after ``load_state_dict`` the next batch is
    exactly the one that would have come.
    """

    def __init__(self, dataset: PretrainingDataset, batch_size: int, shuffle: bool, seed: int,
                 drop_last: bool) -> None:
        self.dataset, self.batch_size, self.shuffle, self.seed, self.drop_last = (
            dataset, int(batch_size), shuffle, int(seed), drop_last)
        n, w = dataset.num_examples, dataset.world_size
        per_rank = n // w if drop_last else -(-n // w)
        self.batches_per_epoch = per_rank // batch_size if drop_last else -(-per_rank // batch_size)
        if self.batches_per_epoch == 0:
            raise PretrainingDataError(f"{dataset.path}: {n} examples over {w} ranks give no full batch of "
                                       f"{batch_size}")
        self.epoch, self.position = 0, 0
        self._cached: tuple[int, np.ndarray] | None = None

    def _epoch_indices(self, epoch: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != epoch:
            n = self.dataset.num_examples
            order = (np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle
                     else np.arange(n, dtype=np.int64))
            self._cached = (epoch, order[self.dataset.rank::self.dataset.world_size])
        return self._cached[1]

    def __iter__(self) -> PretrainingLoader:
        return self

    def __next__(self) -> dict[str, Any]:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        mine = self._epoch_indices(self.epoch)
        b = self.batch_size
        idx = mine[self.position * b:(self.position + 1) * b]
        batch = self.dataset.get_batch(idx, epoch=self.epoch)
        self.position += 1
        return batch

    def batches(self, n: int) -> Iterator[dict[str, Any]]:
        """The next ``n`` batches (crossing epochs as needed)."""
        for _ in range(n):
            yield next(self)

    def state_dict(self) -> dict[str, int | bool]:
        d = self.dataset
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "batch_size": self.batch_size,
                "shuffle": self.shuffle, "drop_last": self.drop_last, "rank": d.rank, "world_size": d.world_size,
                "num_examples": d.num_examples, "dynamic_masking": d.dynamic_masking, "mask_seed": d.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = self.state_dict()
        for key in ("seed", "batch_size", "shuffle", "drop_last", "rank", "world_size", "num_examples",
                    "dynamic_masking", "mask_seed"):
            if key in state and state[key] != mine[key]:
                raise ValueError(f"loader state has {key}={state[key]!r} but this loader has {mine[key]!r}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
