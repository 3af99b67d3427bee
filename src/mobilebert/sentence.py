"""Sentence embeddings: tokenizer + encoder + pooling, and their STS-B score.

``SentenceEncoder.from_pretrained(dir).encode(texts)`` works on any folder ``from_pretrained`` loads: a
distilled MobileBERT student, all-MiniLM-L6-v2, any BERT. So a teacher and its student are scored by the same
code. The pooling choice is read from, and written to, the sentence-transformers files
(``1_Pooling/config.json``, ``sentence_bert_config.json``, ``modules.json``), so a folder we write also
loads in sentence-transformers.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write_text
from .config import MobileBertConfig
from .data.sts import StsPairs, cosine_similarities, spearman_x100
from .modeling import MobileBertModel, mean_pool
from .progress import Progress
from .tokenizer import MobileBertTokenizer

log = logging.getLogger(__name__)

POOLINGS = ("mean", "cls")


@dataclass
class PoolingConfig:
    pooling: str = "mean"  # mean over real tokens | cls (the first token's vector)
    normalize: bool = False  # L2-normalise each vector (cosine becomes a dot product)
    max_seq_length: int = 128  # longer inputs are truncated

    @classmethod
    def read(cls, folder: Path) -> PoolingConfig:
        """sentence-transformers' files when present, else mean pooling (the usual choice for BERT encoders)."""
        cfg = cls()
        pool = folder / "1_Pooling" / "config.json"
        if pool.is_file():
            p = _read_json(pool)
            if p.get("pooling_mode_cls_token"):
                cfg.pooling = "cls"
            elif not p.get("pooling_mode_mean_tokens", True):
                raise ValueError(f"{pool}: only mean or cls pooling is supported")
        st = folder / "sentence_bert_config.json"
        if st.is_file():
            cfg.max_seq_length = int(_read_json(st).get("max_seq_length", cfg.max_seq_length))
        modules = folder / "modules.json"
        if modules.is_file():
            cfg.normalize = any(m.get("type", "").endswith("Normalize") for m in _read_json(modules))
        return cfg

    def write(self, folder: Path, width: int) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        pool = {"word_embedding_dimension": width, "pooling_mode_cls_token": self.pooling == "cls",
                "pooling_mode_mean_tokens": self.pooling == "mean", "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False}
        atomic_write_text(folder / "1_Pooling" / "config.json", json.dumps(pool, indent=2) + "\n")
        atomic_write_text(folder / "sentence_bert_config.json",
                          json.dumps({"max_seq_length": self.max_seq_length, "do_lower_case": False}, indent=2) + "\n")
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        if self.normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                            "type": "sentence_transformers.models.Normalize"})
        atomic_write_text(folder / "modules.json", json.dumps(modules, indent=2) + "\n")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


class SentenceEncoder:
    """One vector per text: the encoder's last hidden states pooled over real tokens."""

    def __init__(self, model: MobileBertModel, tokenizer: MobileBertTokenizer,
                 pooling: PoolingConfig | None = None, config: MobileBertConfig | None = None) -> None:
        """``model`` is a MobileBertModel, or anything called like one (an ``OnnxModel`` or ``OpenVinoModel``,
        with its ``config``)."""
        self.model = model.eval() if isinstance(model, torch.nn.Module) else model
        self.config = config or model.config
        self.tokenizer = tokenizer
        self.pooling = pooling or PoolingConfig()
        if self.pooling.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling.pooling!r}")
        limit = self.config.max_position_embeddings
        if self.pooling.max_seq_length > limit:
            raise ValueError(f"max_seq_length {self.pooling.max_seq_length} exceeds the model's {limit} positions")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **pooling_overrides) -> SentenceEncoder:
        """Encoder, tokenizer and pooling from one folder; ``normalize=True`` etc. override the folder's files.
        Task heads in the checkpoint (MLM, classifier) are ignored."""
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a checkpoint directory")
        model = MobileBertModel.from_pretrained(folder)
        cfg = PoolingConfig.read(folder)
        for k, v in pooling_overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        return cls(model, MobileBertTokenizer.from_pretrained(folder), cfg)

    @classmethod
    def from_onnx(cls, onnx_dir: str | os.PathLike, checkpoint_dir: str | os.PathLike, int8: bool = False,
                  threads: int | None = None) -> SentenceEncoder:
        """The same encoder run by ONNX Runtime from a ``mobilebert export`` folder of ``checkpoint_dir``, whose
        tokenizer and pooling files it uses."""
        from .deploy.onnx import OnnxModel

        folder = Path(checkpoint_dir)
        config = MobileBertConfig.from_json(folder / "config.json")
        return cls(OnnxModel(onnx_dir, threads=threads, int8=int8), MobileBertTokenizer.from_pretrained(folder),
                   PoolingConfig.read(folder), config)

    @classmethod
    def from_openvino(cls, ov_dir: str | os.PathLike, checkpoint_dir: str | os.PathLike, int8: bool = False,
                      threads: int | None = None, precision: str | None = None) -> SentenceEncoder:
        """The same encoder run by OpenVINO from a ``mobilebert export --format openvino`` folder of
        ``checkpoint_dir`` (tokenizer and pooling files from there); ``precision`` f32/bf16, default the
        exported one."""
        from .deploy.openvino import OpenVinoModel

        folder = Path(checkpoint_dir)
        config = MobileBertConfig.from_json(folder / "config.json")
        return cls(OpenVinoModel(ov_dir, threads=threads, int8=int8, precision=precision),
                   MobileBertTokenizer.from_pretrained(folder), PoolingConfig.read(folder), config)

    def save_pretrained(self, path: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
        """Encoder (weights stored as ``dtype`` when given, e.g. float16 to ship), tokenizer and pooling files."""
        folder = Path(path)
        self.model.save_pretrained(folder, dtype)
        self.tokenizer.save_pretrained(folder)
        self.pooling.write(folder, self.config.hidden_size)

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    @torch.inference_mode()
    def encode(self, texts: list[str] | str, batch_size: int = 32, normalize: bool | None = None,
               progress: bool | None = None) -> np.ndarray:
        """(N, H) float32 embeddings for ``texts`` (a single string gives (H,)). Texts are batched by length
        (less padding) and returned in input order; the bar shows on inputs longer than 20 batches unless
        ``progress`` says otherwise."""
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        normalize = self.pooling.normalize if normalize is None else normalize
        device = next(self.model.parameters()).device if isinstance(self.model, torch.nn.Module) else "cpu"
        lengths = [len(t) for t in texts]
        order = np.argsort(lengths, kind="stable")[::-1]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        show = progress if progress is not None else len(starts) > 20
        for s in Progress(starts, desc="embed", disable=not show, unit="batch"):
            idx = order[s:s + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], max_length=self.pooling.max_seq_length, truncation=True,
                                 padding=True, return_tensors="pt")
            ids, am = enc["input_ids"].to(device), enc["attention_mask"].to(device)
            h = self.model(ids, am, enc.get("token_type_ids")).last_hidden_state.float()  # (B, T, H)
            v = h[:, 0] if self.pooling.pooling == "cls" else mean_pool(h, am)
            if normalize:
                v = torch.nn.functional.normalize(v, dim=-1)
            out[idx] = v.cpu().numpy()
        return out[0] if single else out

    def similarity(self, a: list[str], b: list[str], batch_size: int = 32) -> np.ndarray:
        """Cosine similarity of each pair (a[i], b[i])."""
        if len(a) != len(b):
            raise ValueError(f"got {len(a)} first sentences but {len(b)} second sentences")
        ea, eb = self.encode(a, batch_size), self.encode(b, batch_size)
        return cosine_similarities(ea, eb)


def sts_score(encoder: SentenceEncoder, pairs: StsPairs, batch_size: int = 64) -> float:
    """Zero-shot STS: Spearman x100 between cosine(embedding 1, embedding 2) and the gold scores."""
    return spearman_x100(encoder.similarity(pairs.sentences1, pairs.sentences2, batch_size), pairs.scores)
