"""Raw text -> documents -> sentences -> token ids -> BERT examples: the worker side of preparation.

:mod:`.shards` drives this module in two passes, in a pool of processes that each keep their tokenizer and
the memory-mapped scratch corpus in ``_STATE``: :func:`_tokenize_chunk` turns a chunk of whole documents
(from :func:`_iter_chunks`) into flat token arrays, and :func:`_make_examples` turns a range of documents
into records of :func:`record_dtype`. Everything that decides what one example holds is here; where the
examples go (shards, manifest) is in :mod:`.shards`, how they are masked in :mod:`.masking`.

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

import logging
import os
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from .masking import MaskingSpec, hash_key, mask_tokens, word_starts

log = logging.getLogger(__name__)

INPUT_FORMATS = ("auto", "lines", "paragraphs", "wikitext")
SAMPLE_CORPUS = Path(__file__).resolve().parents[1] / "assets" / "sample" / "wikitext_sample.txt"


def sample_corpus_path() -> Path:
    """The bundled WikiText-2 sample (about 250 KB of whole articles, CC BY-SA 3.0)."""
    return SAMPLE_CORPUS


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


def unescape_wikitext(text: str) -> str:
    """Undo WikiText's tokenised `` @-@ ``, `` @,@ `` and `` @.@ ``."""
    for old, new in _WIKI_ESCAPES:
        text = text.replace(old, new)
    return text


def wikitext_articles(path: Path) -> Iterator[list[str]]:
    """The articles of a raw WikiText file as lists of sentences, read as the ``wikitext`` input format is."""
    for doc in _read_documents(path, "wikitext", _FileStats(str(path))):
        yield [s for paragraph in doc for s in split_sentences(unescape_wikitext(paragraph))]


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
                texts.extend(split_sentences(unescape_wikitext(para) if fmt == "wikitext" else para))
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

