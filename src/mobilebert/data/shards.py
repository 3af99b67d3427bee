"""Writing a prepared folder: ``prepare_pretraining``, its shards and ``manifest.json``.

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

The folder format (manifest fields, :class:`PretrainingDataError`) is defined here and checked by the reader,
:class:`~mobilebert.data.pretraining.PretrainingDataset`; what one example holds is in :mod:`.instances`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from ..progress import Progress
from ..tokenizer import MobileBertTokenizer
from ..validate import TEXT_PROBE_BYTES, looks_like_text
from .instances import (
    _STATE,
    INPUT_FORMATS,
    _FileStats,
    _init_worker,
    _iter_chunks,
    _make_examples,
    _tokenize_chunk,
    record_dtype,
)
from .masking import MaskingSpec

log = logging.getLogger(__name__)

FORMAT_NAME = "mobilebert-pretraining"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class PretrainingDataError(ValueError):
    """Unusable corpus or shard folder; the message is one line naming the file and the problem."""


@dataclass
class PrepareResult:
    out_dir: Path
    manifest: dict[str, Any] = field(repr=False)

    @property
    def num_examples(self) -> int:
        return int(self.manifest["counts"]["examples"])


def expand_inputs(inputs: str | Path | Iterable[str | Path]) -> list[Path]:
    """Input files: those named, and every file under the folders named (hidden ones skipped). Every file must
    be UTF-8 text, so a folder of checkpoints, logs or binaries is refused (naming its first such file) instead
    of being turned into millions of nonsense examples; at least one file must hold text."""
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
    binary = [f for f in files if not looks_like_text(f)]
    if binary:
        more = f" (and {len(binary) - 1} more)" if len(binary) > 1 else ""
        raise PretrainingDataError(f"{binary[0]}{more}: not a UTF-8 text file; give the text files themselves, "
                                   "not a folder of checkpoints, logs or binaries")
    if not any(_has_text(f) for f in files):
        raise PretrainingDataError(f"{', '.join(map(str, items))}: no text found (every file is empty or blank)")
    return files


def _has_text(path: Path) -> bool:
    with open(path, "rb") as f:
        return bool(f.read(TEXT_PROBE_BYTES).strip())


def _init_pool_worker(*args: Any) -> None:
    """A pool worker leaves Ctrl-C to the parent, which stops the pool and reports once (a terminal sends
    SIGINT to every process of the group; each worker would otherwise print its own traceback)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(*args)


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
    files = expand_inputs(inputs)
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
    # Workers start from a fresh forkserver process, never as forks of this one: a caller with live threads
    # (torch, ONNX Runtime, TensorBoard writers, a progress monitor) can hold a lock at fork time, and a forked
    # worker then waits on it forever (seen in the test suite).
    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    init_args = (tok.backend.to_str(), str(work))
    saved_env = os.environ.get("TOKENIZERS_PARALLELISM")
    pool = ctx.Pool(workers, initializer=_init_pool_worker, initargs=init_args) if workers > 1 else None
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
    bar = Progress(total=total, unit="B", unit_scale=True, desc="tokenize", disable=not progress)
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

    for arr, st in Progress(_map(pool, _make_examples, tasks), total=len(tasks), desc="examples",
                        disable=not progress):
        for k, v in st.items():
            counts[k] += v
        pending.append(arr)
        n_pending += len(arr)
        flush(final=False)
    flush(final=True)
    return shards, counts
