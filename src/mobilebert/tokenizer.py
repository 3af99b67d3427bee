"""BERT uncased WordPiece through the `tokenizers` library, with the 30522-token vocab bundled in the package.

The pipeline is the one BERT checkpoints were trained with, so ids equal transformers' ``BertTokenizerFast``:
clean text, split CJK characters, lowercase, strip accents; split on whitespace and punctuation; greedy
longest-match WordPiece with ``##`` continuations (words over 100 characters become ``[UNK]``); then
``[CLS] A [SEP] B [SEP]`` with token type 0 for A and 1 for B.

``MobileBertTokenizer.backend`` is the underlying ``tokenizers.Tokenizer`` (kept without truncation or
padding) for code that needs raw batch encodings, e.g. SQuAD striding or the pre-training data builder.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from .atomic import atomic_write_text

ASSETS = Path(__file__).resolve().parent / "assets"
BUNDLED_VOCAB = ASSETS / "vocab.txt"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MODEL_MAX_LENGTH = 512  # what `truncation=True` without `max_length` truncates to (BERT's position table)


class TokenizerError(ValueError):
    """A vocab or tokenizer file that cannot be used; the message names the file."""


def read_vocab(path: str | Path) -> list[str]:
    """Tokens of a BERT vocab.txt in id order (one token per line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{path}: vocab is not UTF-8 ({e.reason} at byte {e.start})") from None
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    tokens = [t.rstrip("\r") for t in tokens]
    if not tokens:
        raise TokenizerError(f"{path}: vocab is empty")
    if len(set(tokens)) != len(tokens):
        raise TokenizerError(f"{path}: vocab has duplicate tokens")
    missing = [t for t in SPECIAL_TOKENS if t not in set(tokens)]
    if missing:
        raise TokenizerError(f"{path}: vocab lacks special tokens {missing}")
    return tokens


def vocab_sha256(tokens: Sequence[str]) -> str:
    """Hash of a vocab in id order; equals the sha256 of a canonical vocab.txt (one token + LF per line)."""
    return hashlib.sha256("".join(t + "\n" for t in tokens).encode("utf-8")).hexdigest()


def build_backend(tokens: Sequence[str], lowercase: bool = True) -> Tokenizer:
    """The BertWordPiece pipeline as a `tokenizers.Tokenizer` (no truncation, no padding)."""
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="##",
                                     max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=lowercase)  # None: = lowercase
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece(prefix="##")
    # Literal "[MASK]" etc. in text stay single tokens, as in BertTokenizerFast.
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
    return tok


class MobileBertTokenizer:
    """WordPiece tokenizer with the call signature users of ``BertTokenizerFast`` expect.

    Construct with ``default()`` (bundled vocab), ``from_pretrained(dir)`` or ``from_vocab(path)``.
    """

    def __init__(self, backend: Tokenizer, lowercase: bool = True,
                 model_max_length: int = MODEL_MAX_LENGTH) -> None:
        backend.no_truncation()
        backend.no_padding()
        self.backend = backend
        self.lowercase = lowercase
        self.model_max_length = model_max_length
        vocab = backend.get_vocab(with_added_tokens=True)
        self._tokens = [""] * len(vocab)
        for t, i in vocab.items():
            self._tokens[i] = t
        if "" in self._tokens:
            raise TokenizerError("tokenizer vocab ids are not contiguous")
        ids = {}
        for t in SPECIAL_TOKENS:
            i = backend.token_to_id(t)
            if i is None:
                raise TokenizerError(f"tokenizer lacks special token {t}")
            ids[t] = i
        self.pad_token_id, self.unk_token_id = ids["[PAD]"], ids["[UNK]"]
        self.cls_token_id, self.sep_token_id, self.mask_token_id = ids["[CLS]"], ids["[SEP]"], ids["[MASK]"]
        self.special_ids = frozenset(ids.values())
        self._lock = threading.Lock()  # __call__ configures truncation/padding on the shared backend

    # ---- construction and saving -------------------------------------------------------------------------

    @classmethod
    def from_vocab(cls, path: str | Path, lowercase: bool = True) -> MobileBertTokenizer:
        return cls(build_backend(read_vocab(path), lowercase), lowercase)

    @classmethod
    def default(cls) -> MobileBertTokenizer:
        """The bundled BERT uncased vocab (bert-base-uncased, 30522 tokens)."""
        return cls.from_vocab(BUNDLED_VOCAB)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None) -> MobileBertTokenizer:
        """A checkpoint folder's tokenizer.json (preferred) or vocab.txt; the bundled vocab when neither exists.

        ``path`` may also name a vocab.txt or tokenizer.json file directly.
        """
        if path is None:
            return cls.default()
        path = Path(path)
        if path.is_file():
            folder, files = path.parent, {path.name: path}
        elif path.is_dir():
            folder, files = path, {n: path / n for n in ("tokenizer.json", "vocab.txt") if (path / n).is_file()}
        else:
            raise FileNotFoundError(f"{path}: no such tokenizer file or folder")
        lowercase = True
        cfg = folder / "tokenizer_config.json"
        if cfg.is_file():
            try:
                lowercase = bool(json.loads(cfg.read_text(encoding="utf-8")).get("do_lower_case", True))
            except json.JSONDecodeError as e:
                raise TokenizerError(f"{cfg}: not valid JSON ({e.msg})") from None
        if "tokenizer.json" in files:
            try:
                backend = Tokenizer.from_file(str(files["tokenizer.json"]))
            except Exception as e:  # tokenizers raises plain Exception subclasses with long messages
                raise TokenizerError(f"{files['tokenizer.json']}: cannot read tokenizer ({e})") from None
            return cls(backend, lowercase)
        if files:
            return cls.from_vocab(next(iter(files.values())), lowercase)
        return cls.default()

    def save_pretrained(self, path: str | Path) -> None:
        """Write vocab.txt, tokenizer.json and tokenizer_config.json (each atomically) into a folder."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path / "vocab.txt", "".join(t + "\n" for t in self._tokens))
        atomic_write_text(path / "tokenizer.json", self.backend.to_str(pretty=True))
        config = {"tokenizer_class": "BertTokenizer", "do_lower_case": self.lowercase,
                  "model_max_length": self.model_max_length}
        atomic_write_text(path / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")

    # ---- vocabulary -----------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    @property
    def vocab(self) -> list[str]:
        """Tokens in id order (a copy)."""
        return list(self._tokens)

    @property
    def vocab_sha256(self) -> str:
        return vocab_sha256(self._tokens)

    def continuation_mask(self) -> np.ndarray:
        """Boolean array over ids: True for ``##`` word-piece continuations (used by whole-word masking)."""
        return np.array([t.startswith("##") for t in self._tokens], dtype=bool)

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        if isinstance(ids, int | np.integer):
            return self._tokens[int(ids)]
        return [self._tokens[int(i)] for i in ids]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            i = self.backend.token_to_id(tokens)
            return self.unk_token_id if i is None else i
        return [self.convert_tokens_to_ids(t) for t in tokens]

    # ---- encoding -------------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """Word pieces of one text, without special tokens."""
        return self.backend.encode(text, add_special_tokens=False).tokens

    def encode(self, text: str, pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
        """Ids of one text (or pair) with ``[CLS]``/``[SEP]``; no truncation."""
        return self.backend.encode(text, pair, add_special_tokens=add_special_tokens).ids

    def encode_batch_raw(self, texts: Sequence[str], add_special_tokens: bool = False) -> list[list[int]]:
        """Ids of many texts at once, no offsets (the fast path the data builder uses)."""
        fast = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)
        return [e.ids for e in fast(list(texts), add_special_tokens=add_special_tokens)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        max_length: int | None = None,
        truncation: bool | str = False,
        padding: bool | str = False,
        return_offsets_mapping: bool = False,
        return_special_tokens_mask: bool = False,
        return_tensors: str | None = None,
        add_special_tokens: bool = True,
    ) -> dict[str, Any]:
        """Encode one text, a pair, or batches of them; keys as in transformers.

        truncation: False, True/"longest_first" (trim the longer of a pair first) or "only_second".
        padding: False, True/"longest" (to the longest in the batch) or "max_length".
        return_tensors: None (lists), "np" or "pt". A single string gives unbatched lists, or a batch of one
        when tensors are asked for.
        """
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        pairs = None
        if text_pair is not None:
            pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if len(pairs) != len(texts):
                raise ValueError(f"got {len(texts)} texts but {len(pairs)} text pairs")
        strategy = {True: "longest_first", "longest_first": "longest_first", "only_second": "only_second",
                    "only_first": "only_first", False: None, "do_not_truncate": None}.get(truncation, "bad")
        if strategy == "bad":
            raise ValueError(f"truncation must be a bool, 'longest_first' or 'only_second', not {truncation!r}")
        pad = {True: "longest", "longest": "longest", "max_length": "max_length", False: None,
               "do_not_pad": None}.get(padding, "bad")
        if pad == "bad":
            raise ValueError(f"padding must be a bool, 'longest' or 'max_length', not {padding!r}")
        if return_tensors not in (None, "pt", "np"):
            raise ValueError(f"return_tensors must be None, 'pt' or 'np', not {return_tensors!r}")
        length = max_length if max_length is not None else self.model_max_length

        inputs = texts if pairs is None else list(zip(texts, pairs, strict=True))
        with self._lock:
            try:
                if strategy is not None:
                    self.backend.enable_truncation(length, strategy=strategy)
                if pad is not None:
                    self.backend.enable_padding(pad_id=self.pad_token_id, pad_token="[PAD]",
                                                length=length if pad == "max_length" else None)
                encodings = self.backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
            except Exception as e:  # e.g. only_second when the first text alone is longer than max_length
                raise ValueError(f"cannot encode: {e}") from None
            finally:
                self.backend.no_truncation()
                self.backend.no_padding()

        out: dict[str, Any] = {
            "input_ids": [e.ids for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
        }
        if return_special_tokens_mask:
            out["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encodings]
        if return_tensors is not None:
            lengths = {len(ids) for ids in out["input_ids"]}
            if len(lengths) > 1:
                raise ValueError("sequences differ in length; pass padding=True to return tensors")
            out = {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}
            if return_tensors == "pt":
                import torch

                out = {k: torch.from_numpy(v) for k, v in out.items()}
        elif single:
            out = {k: v[0] for k, v in out.items()}
        return out

    def __getstate__(self) -> dict[str, Any]:  # picklable for DataLoader workers (the lock is not)
        return {"backend": self.backend.to_str(), "lowercase": self.lowercase,
                "model_max_length": self.model_max_length}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(Tokenizer.from_str(state["backend"]), state["lowercase"], state["model_max_length"])

    def __repr__(self) -> str:
        return f"MobileBertTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase})"
