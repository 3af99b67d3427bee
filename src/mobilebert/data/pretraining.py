"""Reading a prepared folder: the memory-mapped :class:`PretrainingDataset` and its resumable loader.

The folder is written by :func:`~mobilebert.data.shards.prepare_pretraining` (text reading and example
making in :mod:`.instances`, masks in :mod:`.masking`). ``prepare_pretraining`` and ``sample_corpus_path``
are re-exported here because they are documented under this module's name (assets/README.md, the distill
recipe's error message) and were importable from it before the split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..tokenizer import MobileBertTokenizer
from .instances import record_dtype, sample_corpus_path
from .masking import MaskingSpec, hash_key, mask_tokens, segment_masks, word_starts
from .shards import FORMAT_NAME, FORMAT_VERSION, MANIFEST, PretrainingDataError, prepare_pretraining

__all__ = ["PretrainingDataError", "PretrainingDataset", "PretrainingLoader", "check_data", "prepare_pretraining",
           "prepared_seq_length", "pretraining_loaders", "sample_corpus_path"]


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

    def get_batch(self, global_indices: np.ndarray, epoch: int = 0, trim: bool = False) -> dict[str, Any]:
        """Tensors for the given global example indices; ``epoch`` keys the dynamic masks. ``trim`` cuts the
        sequence axis to the batch's longest example (the masks do not change: they are drawn at full width)."""
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
        if trim:
            width = int(rec["length"].max())
            ids, attention, token_type, labels = (a[:, :width] for a in (ids, attention, token_type, labels))
        as_long = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
        return {"input_ids": as_long(ids), "attention_mask": as_long(attention),
                "token_type_ids": as_long(token_type), "labels": as_long(labels),
                "next_sentence_label": as_long(rec["is_random_next"])}

    def loader(self, batch_size: int, shuffle: bool = True, seed: int | None = None,
               drop_last: bool = True, trim: bool = False) -> PretrainingLoader:
        return PretrainingLoader(self, batch_size, shuffle, self.seed if seed is None else seed, drop_last, trim)


class PretrainingLoader:
    """Endless, resumable batches of one rank's share.

    Epoch ``e`` deals a permutation of all examples (seeded by (seed, e)) round-robin to the ranks; every
    rank gets ``(N // world_size) // batch_size`` batches per epoch with ``drop_last`` (equal on all ranks,
    as DDP needs). ``state_dict()`` is (epoch, position); after ``load_state_dict`` the next batch is
    exactly the one that would have come.
    """

    def __init__(self, dataset: PretrainingDataset, batch_size: int, shuffle: bool, seed: int,
                 drop_last: bool, trim: bool = False) -> None:
        self.dataset, self.batch_size, self.shuffle, self.seed, self.drop_last = (
            dataset, int(batch_size), shuffle, int(seed), drop_last)
        self.trim = trim  # batches of similar lengths (shuffled), each cut to its longest example
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
            mine = order[self.dataset.rank::self.dataset.world_size]
            if self.trim and self.shuffle:
                mine = self._length_buckets(mine, np.random.default_rng([self.seed, epoch, 1]))
            self._cached = (epoch, mine)
        return self._cached[1]

    def _length_buckets(self, mine: np.ndarray, rng: np.random.Generator, window: int = 50) -> np.ndarray:
        """Sort each run of ``window`` batches by example length, then shuffle the batches: batches of similar
        lengths (so trimming cuts most padding) in a random order. Deterministic per (seed, epoch)."""
        b = self.batch_size
        lengths = self.dataset.records(mine)["length"]
        out = mine.copy()
        for s in range(0, len(mine), window * b):
            sl = slice(s, s + window * b)
            out[sl] = mine[sl][np.argsort(lengths[sl], kind="stable")]
        n = len(out) // b
        return np.concatenate([out[:n * b].reshape(n, b)[rng.permutation(n)].reshape(-1), out[n * b:]])

    def __iter__(self) -> PretrainingLoader:
        return self

    def __next__(self) -> dict[str, Any]:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        mine = self._epoch_indices(self.epoch)
        b = self.batch_size
        idx = mine[self.position * b:(self.position + 1) * b]
        batch = self.dataset.get_batch(idx, epoch=self.epoch, trim=self.trim)
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


# ----------------------------------------------------------------------------- for the training recipes
def pretraining_loaders(data_dir: str | Path, per_rank_batch: int, seed: int, rank: int, world: int,
                        model_config: Any = None,
                        trim: bool = False) -> Callable[[int], PretrainingLoader]:
    """``epoch -> loader`` over a prepared pre-training directory (this rank's share). The loader is endless
    and reshuffles per epoch itself, so ``epoch`` stays 0; its cursor resumes exactly."""
    ds = PretrainingDataset(data_dir, rank=rank, world_size=world)
    if model_config is not None:
        ds.check_model(model_config)  # sequence length vs max_position_embeddings, vocabulary size
    return lambda epoch: ds.loader(per_rank_batch, shuffle=True, seed=seed + epoch, drop_last=True, trim=trim)


def check_data(path: str | None, what: str = "data") -> Path:
    if not path:
        raise ValueError(f"{what}: no pre-training data directory given (set data=DIR; prepare one with "
                         "mobilebert prepare-pretraining or mobilebert corpus)")
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"{what} {p}: pre-training data directory not found")
    return p


def prepared_seq_length(path: str | None, what: str = "data") -> int:
    """The sequence length of a prepared folder, read from its manifest (which also proves it is complete and
    holds examples); the reader checks the shards themselves when training starts."""
    p = check_data(path, what)
    manifest = p / MANIFEST
    if not manifest.is_file():
        raise ValueError(f"{what} {p}: no {MANIFEST} (not a folder written by prepare-pretraining / corpus, or "
                         "preparation was interrupted)")
    try:
        m = json.loads(manifest.read_text(encoding="utf-8"))
        seq, examples = int(m["arguments"]["max_seq_length"]), int(m["counts"]["examples"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{manifest}: not a pre-training manifest") from None
    if examples < 1:
        raise ValueError(f"{what} {p}: holds no examples")
    return seq
