"""Hugging Face checkpoints in and out: key renaming, prefix handling, shape checks, atomic saves.

Our module names already match transformers' ``modeling_mobilebert.py``, so the key table is short:
BERT's ``bert.`` prefix, old TF-style ``gamma``/``beta`` names, and the MLM head's extra matrix. Nothing is
unpickled from a checkpoint: safetensors first, ``.bin`` only through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import atomic_path, atomic_write_text
from .config import ConfigError, MobileBertConfig

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
BASE = "mobilebert."
# Ours <-> Hugging Face, for names that differ (applied to the key's tail).
RENAMES = {"cls.predictions.extra": "cls.predictions.dense.weight"}
# Present in some checkpoints, derivable or tied: dropped on load.
IGNORED_SUFFIXES = ("embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias")

M = TypeVar("M", bound=torch.nn.Module)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the requested model."""


# ----------------------------------------------------------------------------- reading
def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint folder or file, without executing any pickle."""
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


__all__ = ["CheckpointError", "ConfigError", "convert_tf_state", "load_pretrained", "load_state", "load_tf_checkpoint",
           "read_state_dict", "save_pretrained", "tf_to_hf_key", "to_hf_state_dict"]
