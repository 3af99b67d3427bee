"""MobileBertConfig: one dataclass for the whole family (MobileBERT, TINY, w/o OPT, IB-BERT, plain BERT).

Reads and writes Hugging Face ``config.json`` (``model_type`` ``mobilebert`` or ``bert``) and the official
TF1 JSON configs. Each source has its own defaults for absent keys, so each has its own reader.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text

log = logging.getLogger(__name__)

NORMALIZATION_TYPES = ("no_norm", "layer_norm")
ACTIVATIONS = ("relu", "gelu", "relu6", "gelu_new", "gelu_pytorch_tanh", "tanh")


class ConfigError(ValueError):
    """A configuration that cannot describe a working model."""


@dataclass
class MobileBertConfig:
    """Every architectural choice of SPEC §1, decided once when the model is built."""

    vocab_size: int = 30522
    embedding_size: int = 128  # word-embedding width; the trigram projection lifts it to hidden_size
    trigram_input: bool = True  # concatenate [next, this, previous] token embeddings before projecting
    hidden_size: int = 512  # inter-block width (the residual stream between blocks)
    intra_bottleneck_size: int = 128  # width inside a block when use_bottleneck
    use_bottleneck: bool = True  # False: plain BERT block (no 512<->128 bottlenecks)
    num_hidden_layers: int = 24
    num_attention_heads: int = 4
    intermediate_size: int = 512  # FFN inner width
    num_feedforward_networks: int = 4  # stacked FFNs per block
    key_query_shared_bottleneck: bool = True  # Q,K read a second 128-d bottleneck of the block input
    use_bottleneck_attention: bool = False  # Q,K,V all read the block's input bottleneck (TINY)
    normalization_type: str = "no_norm"  # "no_norm" (x*w+b) or "layer_norm"
    hidden_act: str = "relu"
    classifier_activation: bool = False  # tanh pooler on [CLS]; False passes h[:, 0] through
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    # Task heads.
    num_labels: int = 2  # 1 means regression (MSE)
    classifier_dropout: float | None = None  # None: use hidden_dropout_prob
    id2label: dict[int, str] | None = None
    # transformers' problem_type: "multi_label_classification" trains the classifier with sigmoid + BCE on
    # multi-hot labels; None / "single_label_classification": cross-entropy; num_labels 1 is regression.
    problem_type: str | None = None
    # Behaviour switches (saved in config.json; transformers ignores them).
    padding_invariant: bool = True  # real-token outputs independent of right padding (fixes the trigram defect)
    legacy_norm_eps: bool = False  # transformers' quirk: embedding and block-output LayerNorms use eps 1e-5
    model_type: str = "mobilebert"  # "bert" for plain BERT checkpoints (key prefix and config.json)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # passthrough keys kept for saving

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def true_hidden_size(self) -> int:
        """Width of attention output and FFNs: the bottleneck width, or hidden_size without bottleneck."""
        return self.intra_bottleneck_size if self.use_bottleneck else self.hidden_size

    @property
    def qk_input_size(self) -> int:
        """Width Q and K read: a 128-d bottleneck when shared/bottleneck attention, else the block input."""
        if self.use_bottleneck and (self.key_query_shared_bottleneck or self.use_bottleneck_attention):
            return self.intra_bottleneck_size
        return self.hidden_size

    @property
    def v_input_size(self) -> int:
        return self.intra_bottleneck_size if self.use_bottleneck and self.use_bottleneck_attention else self.hidden_size

    @property
    def head_dim(self) -> int:
        return self.true_hidden_size // self.num_attention_heads

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(f"invalid MobileBertConfig: {msg}")

        for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "num_feedforward_networks", "max_position_embeddings",
                     "type_vocab_size", "num_labels"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                 f"{name} must be a positive integer, got {value!r}")
        need(self.normalization_type in NORMALIZATION_TYPES,
             f"normalization_type must be one of {NORMALIZATION_TYPES}, got {self.normalization_type!r}")
        need(self.hidden_act in ACTIVATIONS, f"hidden_act must be one of {ACTIVATIONS}, got {self.hidden_act!r}")
        if self.use_bottleneck:
            need(isinstance(self.intra_bottleneck_size, int) and self.intra_bottleneck_size >= 1,
                 f"intra_bottleneck_size must be a positive integer, got {self.intra_bottleneck_size!r}")
        else:
            need(not (self.key_query_shared_bottleneck or self.use_bottleneck_attention),
                 "key_query_shared_bottleneck / use_bottleneck_attention need use_bottleneck=True")
        need(not (self.key_query_shared_bottleneck and self.use_bottleneck_attention),
             "key_query_shared_bottleneck and use_bottleneck_attention are exclusive; pick one")
        need(self.true_hidden_size % self.num_attention_heads == 0,
             f"attention width {self.true_hidden_size} is not divisible by num_attention_heads "
             f"{self.num_attention_heads}")
        need(self.embedding_size <= self.hidden_size,
             f"embedding_size {self.embedding_size} exceeds hidden_size {self.hidden_size} (the MLM head splits "
             "hidden_size into the tied embedding part and an extra part)")
        if not self.trigram_input and self.embedding_size != self.hidden_size:
            log.debug("embedding_size != hidden_size without trigram: a linear projection lifts embeddings")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            p = getattr(self, name)
            need(0.0 <= p < 1.0, f"{name} must be in [0, 1), got {p}")
        need(self.layer_norm_eps > 0, f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        need(self.model_type in ("mobilebert", "bert"), f"model_type must be mobilebert or bert, got {self.model_type!r}")
        need(not (self.model_type == "bert" and self.legacy_norm_eps),
             "legacy_norm_eps reproduces a quirk of transformers' MobileBERT; BERT checkpoints do not have it")
        need(0 <= self.pad_token_id < self.vocab_size, f"pad_token_id {self.pad_token_id} outside the vocabulary")
        if self.id2label is not None:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            need(sorted(self.id2label) == list(range(len(self.id2label))), "id2label keys must be 0..n-1")
            need(len(self.id2label) == self.num_labels or self.num_labels == 1,
                 f"id2label has {len(self.id2label)} entries but num_labels is {self.num_labels}")

    def replace(self, **changes: Any) -> MobileBertConfig:
        """A copy with some fields changed (validated); unknown names are an error."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"unknown MobileBertConfig field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ presets
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> MobileBertConfig:
        """Named configurations of SPEC §1; models built from presets default to padding_invariant=True."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        return cls().replace(**{**PRESETS[name], **overrides})

    # ------------------------------------------------------------------ JSON
    @classmethod
    def from_json(cls, path: str | os.PathLike, **overrides: Any) -> MobileBertConfig:
        """Read a Hugging Face config.json (model_type mobilebert/bert) or an official TF1 MobileBERT config."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such config file")
        raw = read_json_object(path)
        try:
            return cls.from_dict(raw, **overrides)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    @classmethod
    def from_dict(cls, raw: dict[str, Any], **overrides: Any) -> MobileBertConfig:
        model_type = raw.get("model_type")
        if model_type == "bert":
            defaults, source = HF_BERT_DEFAULTS, "bert"
        elif model_type == "mobilebert":
            defaults, source = HF_MOBILEBERT_DEFAULTS, "mobilebert"
        elif model_type is None:
            defaults, source = TF_DEFAULTS, "tf"
        else:
            raise ConfigError(f"model_type {model_type!r} is not supported (mobilebert or bert)")
        _reject_unsupported(raw)
        known = {f.name for f in fields(cls)} - {"extra", "model_type"}
        values: dict[str, Any] = dict(defaults)
        extra: dict[str, Any] = {}
        for key, value in raw.items():
            if key in known:
                values[key] = value
            elif key in HF_IGNORED_KEYS or key == "model_type":
                continue
            else:
                extra[key] = value
        if extra:
            log.info("config keys not used by mobilebert (kept for saving): %s", ", ".join(sorted(extra)))
        if "id2label" in raw and "num_labels" not in raw:
            values["num_labels"] = len(raw["id2label"])
        if values.get("intra_bottleneck_size") is None:
            values["intra_bottleneck_size"] = values["hidden_size"]
        if values.get("embedding_size") is None:
            values["embedding_size"] = values["hidden_size"]
        if source == "bert":
            # Plain BERT: the no-bottleneck special case, tokens embedded at full width.
            values.update(embedding_size=values["hidden_size"], trigram_input=False, use_bottleneck=False,
                          intra_bottleneck_size=values["hidden_size"], num_feedforward_networks=1,
                          key_query_shared_bottleneck=False, use_bottleneck_attention=False,
                          normalization_type="layer_norm", classifier_activation=True)
        values.setdefault("padding_invariant", source == "tf")
        values.setdefault("legacy_norm_eps", source == "mobilebert")
        values["model_type"] = "bert" if source == "bert" else "mobilebert"
        values.update(overrides)
        try:
            return cls(**values, extra=extra)
        except TypeError as e:
            raise ConfigError(str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        """Hugging Face config.json contents that transformers loads as MobileBertConfig or BertConfig."""
        out: dict[str, Any] = dict(self.extra)
        arch = {"mobilebert": "MobileBertForPreTraining", "bert": "BertForPreTraining"}[self.model_type]
        out.update(architectures=[arch], model_type=self.model_type)
        skip = {"extra", "model_type", "id2label", "problem_type"}
        if self.model_type == "bert":
            skip |= BERT_FIXED
        for f in fields(self):
            if f.name not in skip:
                out[f.name] = getattr(self, f.name)
        if self.id2label is not None:
            out["id2label"] = {str(k): v for k, v in self.id2label.items()}
            out["label2id"] = {v: k for k, v in self.id2label.items()}
        elif self.num_labels != 2:
            out["id2label"] = {str(i): f"LABEL_{i}" for i in range(self.num_labels)}
            out["label2id"] = {f"LABEL_{i}": i for i in range(self.num_labels)}
        if self.problem_type is not None:
            out["problem_type"] = self.problem_type
        elif self.num_labels == 1:
            out["problem_type"] = "regression"
        return out

    def to_json(self, path: str | os.PathLike) -> None:
        """Write config.json atomically."""
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


# Fields that every BERT checkpoint implies; not written to a bert config.json.
BERT_FIXED = {"embedding_size", "trigram_input", "use_bottleneck", "intra_bottleneck_size",
              "num_feedforward_networks", "key_query_shared_bottleneck", "use_bottleneck_attention",
              "normalization_type", "classifier_activation", "legacy_norm_eps"}

PRESETS: dict[str, dict[str, Any]] = {
    "mobilebert": {},
    "mobilebert-tiny": dict(num_feedforward_networks=2, key_query_shared_bottleneck=False,
                            use_bottleneck_attention=True),
    "mobilebert-no-opt": dict(normalization_type="layer_norm", hidden_act="gelu"),
    "ib-bert-large": dict(intra_bottleneck_size=1024, intermediate_size=4096, num_feedforward_networks=1,
                          key_query_shared_bottleneck=False, normalization_type="layer_norm", hidden_act="gelu",
                          classifier_activation=True, hidden_dropout_prob=0.1),
    "bert-base": dict(model_type="bert", embedding_size=768, trigram_input=False, hidden_size=768,
                      intra_bottleneck_size=768, use_bottleneck=False, num_hidden_layers=12,
                      num_attention_heads=12, intermediate_size=3072, num_feedforward_networks=1,
                      key_query_shared_bottleneck=False, normalization_type="layer_norm", hidden_act="gelu",
                      classifier_activation=True, hidden_dropout_prob=0.1),
}

# Defaults for keys absent from each kind of file (transformers' and the TF reference's differ).
HF_MOBILEBERT_DEFAULTS: dict[str, Any] = dict(
    vocab_size=30522, hidden_size=512, num_hidden_layers=24, num_attention_heads=4, intermediate_size=512,
    hidden_act="relu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.1, max_position_embeddings=512,
    type_vocab_size=2, initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0, embedding_size=128,
    trigram_input=True, use_bottleneck=True, intra_bottleneck_size=128, use_bottleneck_attention=False,
    key_query_shared_bottleneck=True, num_feedforward_networks=4, normalization_type="no_norm",
    classifier_activation=True)
HF_BERT_DEFAULTS: dict[str, Any] = dict(
    vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=512,
    type_vocab_size=2, initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0)
TF_DEFAULTS: dict[str, Any] = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
    hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=16,
    initializer_range=0.02, embedding_size=None, trigram_input=False, use_bottleneck=False,
    intra_bottleneck_size=None, use_bottleneck_attention=False, key_query_shared_bottleneck=False,
    num_feedforward_networks=1, normalization_type="layer_norm", classifier_activation=True)

# Keys only transformers uses; read and dropped (never misread as architecture).
HF_IGNORED_KEYS = {
    "architectures", "transformers_version", "torch_dtype", "dtype", "_name_or_path", "gradient_checkpointing",
    "use_cache", "output_attentions", "output_hidden_states", "return_dict", "label2id",
    "tie_word_embeddings", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id", "tokenizer_class",
    "chunk_size_feed_forward", "pruned_heads", "torchscript", "use_return_dict", "_attn_implementation",
    "_attn_implementation_autoset", "position_embedding_type", "is_decoder", "add_cross_attention",
    "true_hidden_size", "finetuning_task", "prefix", "task_specific_params", "layer_norm_type",
}


PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")


def _reject_unsupported(raw: dict[str, Any]) -> None:
    """Keys whose non-default values would change the maths in ways this implementation does not do."""
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise ConfigError(f"position_embedding_type {raw['position_embedding_type']!r} is not supported (absolute only)")
    if raw.get("is_decoder") or raw.get("add_cross_attention"):
        raise ConfigError("decoder / cross-attention configs are not supported")
    if raw.get("problem_type") not in PROBLEM_TYPES:
        raise ConfigError(f"problem_type {raw['problem_type']!r} is not one of {', '.join(map(str, PROBLEM_TYPES))}")


def read_json_object(path: str | os.PathLike, error: type[ValueError] = ConfigError) -> dict[str, Any]:
    """A JSON file holding one object (config.json, finetune.json, an index); one-line ``error`` naming the file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a JSON object")
    return raw
