"""Hugging Face checkpoints in and out: what a folder holds, key renaming, prefix handling, shape checks, atomic
saves.

:func:`inspect` is the one answer to "which class and head is this checkpoint, for which task and labels": it reads
config.json, finetune.json and the tensor *names* (safetensors headers), never the tensors, and imports no torch,
so the command-line checks can ask it cheaply. ``mobilebert.load.load_model`` builds the model it describes (it
sits above ``modeling``, which imports this module).

Our module names already match transformers' ``modeling_mobilebert.py``, so the key table is short:
BERT's ``bert.`` prefix, old TF-style ``gamma``/``beta`` names, and the MLM head's extra matrix. Nothing is
unpickled from a checkpoint: safetensors first, ``.bin`` only through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from safetensors import SafetensorError

from .atomic import atomic_path, atomic_write_text
from .config import ConfigError, MobileBertConfig, read_json_object

if TYPE_CHECKING:  # torch is imported by the functions that move tensors, so inspect() stays light
    import torch

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
VOCAB_FILES = ("vocab.txt", "tokenizer.json")
# sentence-transformers' files: their presence says the folder is a sentence encoder (sentence.PoolingConfig reads them)
POOLING_FILES = ("modules.json", "1_Pooling/config.json", "sentence_bert_config.json")
FINETUNE_FILE = "finetune.json"  # what `mobilebert finetune` saved the model for (task, sequence settings)
# What the weights can hold, and the class that carries each head (names from modeling.MODEL_CLASSES).
HEAD_CLASSES = {"pretraining": "MobileBertForPreTraining",  # MLM + NSP
                "mlm": "MobileBertForMaskedLM",
                "encoder": "MobileBertModel",  # no head (e.g. a sentence encoder)
                "classifier": "MobileBertForSequenceClassification",  # num_labels 1: regression
                "qa": "MobileBertForQuestionAnswering",  # span start / end
                "token": "MobileBertForTokenClassification"}  # a label per token (tagging)
BASE = "mobilebert."
# Ours <-> Hugging Face, for names that differ (applied to the key's tail).
RENAMES = {"cls.predictions.extra": "cls.predictions.dense.weight"}
# Present in some checkpoints, derivable or tied: dropped on load.
IGNORED_SUFFIXES = ("embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias")

M = TypeVar("M", bound="torch.nn.Module")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the requested model."""


# ----------------------------------------------------------------------------- reading
def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint folder or file, without executing any pickle."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        found = [path / n for n in WEIGHT_FILES if (path / n).is_file()]
        if not found:
            raise FileNotFoundError(f"{path}: no weights found (looked for {', '.join(WEIGHT_FILES)})")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if path.name.endswith(".index.json"):
        index = json.loads(path.read_text(encoding="utf-8"))
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(read_state_dict(path.parent / shard))
        return state
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: refused: the file holds Python objects other than tensors "
                              "(only weights_only pickles are read)") from None
    except (SafetensorError, OSError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated weights file ({str(e).splitlines()[0]})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a flat dict of tensors")
    return obj


def normalize_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face names (mobilebert or bert, old gamma/beta) -> our names, prefix kept as ``mobilebert.``."""
    inverse = {hf: ours for ours, hf in RENAMES.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(IGNORED_SUFFIXES):
            continue
        if key.startswith("bert."):
            key = BASE + key[len("bert."):]
        if key.endswith(".gamma"):
            key = key[: -len("gamma")] + "weight"
        elif key.endswith(".beta"):
            key = key[: -len("beta")] + "bias"
        out[inverse.get(key, key)] = value
    return out


def load_pretrained(cls: type[M], path: str | os.PathLike, strict: bool = True, **config_overrides) -> M:
    """Build ``cls`` from a Hugging Face folder and load its weights.

    Missing encoder weights are an error (``strict``); missing head weights are initialised fresh and
    listed, as are unexpected keys (e.g. a pre-training head when loading a classifier).
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a checkpoint directory")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json in the checkpoint directory")
    config = MobileBertConfig.from_json(path / "config.json", **config_overrides)
    state = normalize_keys(read_state_dict(path))
    model = cls(config)
    load_state(model, state, source=str(path), strict=strict)
    model.eval()
    return model


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "state dict",
               strict: bool = True) -> dict[str, list[str]]:
    """Load normalised keys into ``model``, adding or stripping the ``mobilebert.`` prefix as it needs."""
    expected = model.state_dict()
    has_prefix = any(k.startswith(BASE) for k in expected)
    if has_prefix and not any(k.startswith(BASE) for k in state):
        state = {(k if k.startswith("cls.") else BASE + k): v for k, v in state.items()}
    elif not has_prefix:
        state = {k.removeprefix(BASE): v for k, v in state.items()}
    bad = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
           for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    if bad:
        raise CheckpointError(f"{source}: weight shapes do not match the config: " + "; ".join(bad[:5])
                              + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""))
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    encoder_missing = [k for k in missing if _is_encoder_key(k)]
    if strict and encoder_missing:
        raise CheckpointError(f"{source}: {len(encoder_missing)} encoder weights missing, e.g. "
                              f"{', '.join(encoder_missing[:3])}")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    if missing:
        log.warning("%s: newly initialised (not in checkpoint): %s", source, ", ".join(missing))
    if unexpected:
        log.warning("%s: unused checkpoint weights: %s", source, ", ".join(unexpected))
    info = {"missing_keys": missing, "unexpected_keys": unexpected}
    model.loading_info = info
    return info


def _is_encoder_key(key: str) -> bool:
    key = key[len(BASE):] if key.startswith(BASE) else key
    return key.startswith(("embeddings.", "encoder."))


# ----------------------------------------------------------------------------- what a folder holds
@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint folder is, read from its files without loading a tensor (:func:`inspect`).

    ``head`` is what the *weights* hold (one of ``HEAD_CLASSES``), so a config.json that names a class its weights
    do not fill (an encoder saved as ``BertForPreTraining``) is told apart; ``architecture`` is what config.json
    names. Pickled ``.bin`` weights are not opened without torch: their head is taken from ``architecture``."""

    path: Path
    config: MobileBertConfig
    architecture: str  # config.json's architectures[0], e.g. "BertModel"; "" when it names none
    head: str  # a key of HEAD_CLASSES
    weight_file: str | None  # the first of WEIGHT_FILES present; None: no weights
    weight_names: frozenset[str] | None  # stored tensor names (None for .bin weights)
    vocab_files: tuple[str, ...]  # the VOCAB_FILES present
    pooling_files: tuple[str, ...]  # the sentence-transformers POOLING_FILES present
    finetune: dict[str, Any] | None  # finetune.json (task, max_seq_length, ...) when `mobilebert finetune` wrote it

    @property
    def model_class(self) -> str:
        """The class (modeling.MODEL_CLASSES) that loads these weights with their head."""
        return HEAD_CLASSES[self.head]

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    @property
    def id2label(self) -> dict[int, str] | None:
        return self.config.id2label

    @property
    def label_names(self) -> tuple[str, ...]:
        """The class (or tag) names in id order, readable: config.json's ``id2label``, with GLUE's readable names
        (``data.glue.readable_labels``) in place of bare digits; ``LABEL_i`` when the config has none. The one
        answer for predict and every export."""
        from .data.glue import readable_labels

        n = self.config.num_labels
        names = [self.id2label[i] for i in range(n)] if self.id2label else [f"LABEL_{i}" for i in range(n)]
        return readable_labels(self.task, names)

    @property
    def label2id(self) -> dict[str, int] | None:
        return None if self.config.id2label is None else {v: k for k, v in self.config.id2label.items()}

    @property
    def is_regression(self) -> bool:
        return self.head == "classifier" and self.config.num_labels == 1

    @property
    def task(self) -> str | None:
        """The task the model was fine-tuned for (finetune.json), else None."""
        return None if self.finetune is None else self.finetune.get("task")

    @property
    def max_seq_length(self) -> int | None:
        """The sequence length it was fine-tuned at (finetune.json), else None."""
        return None if self.finetune is None else self.finetune.get("max_seq_length")

    @property
    def max_position_embeddings(self) -> int:
        return self.config.max_position_embeddings

    @property
    def is_sentence_encoder(self) -> bool:
        return bool(self.pooling_files)


def _head_from_weights(names: frozenset[str]) -> str:
    names = frozenset(k for k in names if not k.endswith(IGNORED_SUFFIXES))

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in names)

    if has("classifier."):
        return "classifier"
    if has("qa_outputs."):
        return "qa"
    if has("cls.predictions."):
        return "pretraining" if has("cls.seq_relationship.") else "mlm"
    return "encoder"


def _head_from_architecture(arch: str) -> str:
    kind = arch.replace("MobileBert", "").replace("Bert", "")
    return {"ForPreTraining": "pretraining", "ForMaskedLM": "mlm", "ForSequenceClassification": "classifier",
            "ForQuestionAnswering": "qa", "ForTokenClassification": "token"}.get(kind, "encoder")


def stored_weight_names(path: str | os.PathLike) -> frozenset[str] | None:
    """Tensor names of a folder's weights, from file headers only (None for pickled .bin weights or none)."""
    p = Path(path)
    if (p / "model.safetensors").is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(p / "model.safetensors"), framework="np") as f:
                return frozenset(f.keys())
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{p / 'model.safetensors'}: corrupt or truncated weights file "
                                  f"({str(e).splitlines()[0]})") from None
    index = p / "model.safetensors.index.json"
    if index.is_file():
        return frozenset(read_json_object(index, CheckpointError).get("weight_map", {}))
    return None


def inspect(path: str | os.PathLike) -> CheckpointInfo:
    """What the checkpoint folder ``path`` holds (see :class:`CheckpointInfo`); one-line errors for a folder
    that is not a checkpoint or whose config.json / finetune.json cannot be read."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: not a checkpoint directory")
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"{p}: no config.json in the checkpoint directory")
    raw = read_json_object(p / "config.json", CheckpointError)
    archs = raw.get("architectures") or [""]
    config = MobileBertConfig.from_json(p / "config.json")
    names = stored_weight_names(p)
    weight_file = next((n for n in WEIGHT_FILES if (p / n).is_file()), None)
    head = _head_from_weights(names) if names is not None else _head_from_architecture(str(archs[0]))
    if head == "classifier" and _head_from_architecture(str(archs[0])) == "token":  # same weight names: per token
        head = "token"
    meta = read_json_object(p / FINETUNE_FILE, CheckpointError) if (p / FINETUNE_FILE).is_file() else None
    return CheckpointInfo(path=p, config=config, architecture=str(archs[0]), head=head, weight_file=weight_file,
                          weight_names=names, vocab_files=tuple(n for n in VOCAB_FILES if (p / n).is_file()),
                          pooling_files=tuple(n for n in POOLING_FILES if (p / n).is_file()), finetune=meta)


def head_of(model: torch.nn.Module) -> str:
    """The ``HEAD_CLASSES`` key of a built model (its class, or the model class it derives from)."""
    heads = {name: head for head, name in HEAD_CLASSES.items()}
    for klass in type(model).__mro__:
        if klass.__name__ in heads and klass.__module__.endswith("modeling"):
            return heads[klass.__name__]
    raise TypeError(f"{type(model).__name__} is not a MobileBERT model class ({', '.join(HEAD_CLASSES.values())})")


# ----------------------------------------------------------------------------- TF1 checkpoints
TF_SKIP = ("adam_m", "adam_v", "AdamWeightDecayOptimizer", "LAMB", "global_step", "beta1_power", "beta2_power")


def tf_to_hf_key(name: str) -> tuple[str, bool] | None:
    """A TF1 variable name of the reference code -> (Hugging Face key, needs transpose), or None for
    optimizer slots. Dense ``kernel`` s are stored (in, out) in TF and (out, in) in PyTorch; the MLM head's
    ``extra_output_weights`` is (V, H - E) in TF and (H - E, V) here."""
    parts = name.split("/")
    if any(p in TF_SKIP or p.startswith(TF_SKIP) for p in parts):
        return None
    out: list[str] = []
    for p in parts:
        if p == "bert":
            p = "mobilebert"
        elif p.startswith("layer_") and p[6:].isdigit():
            out += ["layer", p[6:]]
            continue
        elif p.startswith("ffn_layer_") and p[10:].isdigit():
            out += ["ffn", p[10:]]
            continue
        elif p == "FakeLayerNorm":
            p = "LayerNorm"
        out.append(p)
    leaf, transpose = out[-1], False
    if leaf == "kernel":
        out[-1], transpose = "weight", True
    elif leaf == "gamma":
        out[-1] = "weight"
    elif leaf == "beta":
        out[-1] = "bias"
    elif leaf.endswith("_embeddings"):
        out.append("weight")
    elif leaf == "extra_output_weights":
        out[-1:], transpose = ["dense", "weight"], True
    elif leaf == "output_weights":
        out[-1] = "weight"
    elif leaf == "output_bias":
        out[-1] = "bias"
    return ".".join(out), transpose


def convert_tf_state(tf_vars: dict[str, Any]) -> dict[str, torch.Tensor]:
    """TF1 variables (name -> array, as ``tf.train.load_variable`` gives them) -> a Hugging Face state dict."""
    import torch

    state: dict[str, torch.Tensor] = {}
    for name, array in tf_vars.items():
        mapped = tf_to_hf_key(name)
        if mapped is None:
            continue
        key, transpose = mapped
        t = torch.as_tensor(array)
        state[key] = (t.t() if transpose else t).contiguous()
    return state


def load_tf_checkpoint(cls: type[M], ckpt: str | os.PathLike, config: MobileBertConfig) -> M:
    """Build ``cls`` from the reference code's TF1 checkpoint (e.g. ``uncased_L-24_H-128_B-512_A-4_F-4_OPT``).
    Needs TensorFlow only to read the checkpoint files; pass the config (``MobileBertConfig.from_json`` reads
    the official JSON). The result is exact reference behaviour (``padding_invariant=False``)."""
    try:
        import tensorflow as tf
    except ImportError:
        raise ImportError("reading TF1 checkpoints needs TensorFlow (pip install tensorflow); "
                          "or convert elsewhere with convert_tf_state()") from None
    names = [n for n, _ in tf.train.list_variables(str(ckpt))]
    tf_vars = {n: tf.train.load_variable(str(ckpt), n) for n in names}
    model = cls(config.replace(padding_invariant=False))
    load_state(model, normalize_keys(convert_tf_state(tf_vars)), source=str(ckpt))
    return model.eval()


# ----------------------------------------------------------------------------- writing
def to_hf_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our state dict under Hugging Face names (``bert.`` prefix for BERT configs)."""
    config: MobileBertConfig = model.config
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        key = RENAMES.get(key, key)
        if config.model_type == "bert" and key.startswith(BASE):
            key = "bert." + key[len(BASE):]
        out[key] = value.detach().contiguous().cpu()
    return out


def save_pretrained(model: torch.nn.Module, path: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
    """config.json + model.safetensors, each written to a temp file and renamed into place. ``dtype`` (e.g.
    float16, to halve a shipped file) casts the stored floating-point weights; config.json then still says
    ``dtype: float32``, so both our loader and transformers build fp32 models from them."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config: MobileBertConfig = model.config
    arch = type(model).__name__
    if config.model_type == "bert":
        arch = arch.replace("MobileBert", "Bert")
    cfg = config.to_dict()
    cfg["architectures"] = [arch]
    state = to_hf_state_dict(model)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        cfg["dtype"] = "float32"
    with atomic_path(path / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    atomic_write_text(path / "config.json", json.dumps(cfg, indent=2, sort_keys=True) + "\n")


__all__ = ["CheckpointError", "CheckpointInfo", "ConfigError", "convert_tf_state", "head_of", "inspect",
           "load_pretrained", "load_state", "load_tf_checkpoint", "read_state_dict", "save_pretrained",
           "stored_weight_names", "tf_to_hf_key", "to_hf_state_dict"]
