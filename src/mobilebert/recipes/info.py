"""Build a model, run one sentence through it, and report shapes, parameter count and latency
(``mobilebert info``)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from ..config import PRESETS, MobileBertConfig
from ..modeling import MobileBertModel
from ..options import option


@dataclass
class InfoConfig:
    preset: str = option("mobilebert", help="preset name", choices=PRESETS)
    model: str | None = option(None, help="a checkpoint directory instead of a preset", path="model")
    layers: int | None = option(None, help="override num_hidden_layers (presets only)", at_least=1)
    seq: int = option(128, help="sequence length for the latency probe (cut to the model's "
                      "max_position_embeddings)", at_least=1)
    text: str = option("MobileBERT is a compact task-agnostic BERT for resource-limited devices.",
                       help="the sentence the latency probe encodes")

    def check(self) -> None:
        if self.model and self.layers:
            raise ValueError("--layers overrides presets only; it cannot change a --model checkpoint")


def model_info(preset: str = "mobilebert", model_dir: str | None = None, seq_len: int = 128,
               text: str | None = None, runs: int = 10, **overrides) -> str:
    """A short human-readable report."""
    if model_dir:
        model = MobileBertModel.from_pretrained(model_dir, **overrides)
        name = model_dir
    else:
        model = MobileBertModel(MobileBertConfig.from_preset(preset, **overrides))
        name = f"preset {preset}"
    model.eval()
    c = model.config
    seq_len = min(seq_len, c.max_position_embeddings)  # a small model may take shorter inputs
    ids = torch.randint(1000, c.vocab_size, (1, seq_len))
    ids[0, 0], ids[0, -1] = 101, 102
    with torch.inference_mode():
        out = model(ids, torch.ones_like(ids))
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            model(ids, torch.ones_like(ids))
            times.append((time.perf_counter() - t0) * 1e3)
    lines = [
        f"model: {name} ({c.num_hidden_layers} layers, hidden {c.hidden_size}, bottleneck "
        f"{c.intra_bottleneck_size if c.use_bottleneck else '-'}, {c.normalization_type}, {c.hidden_act})",
        f"parameters: {model.num_parameters():,}",
        f"last_hidden_state: {tuple(out.last_hidden_state.shape)}  pooler_output: {tuple(out.pooler_output.shape)}",
        f"latency (batch 1, seq {seq_len}, {torch.get_num_threads()} threads): median "
        f"{statistics.median(times):.1f} ms over {runs} runs",
    ]
    if text:
        lines.insert(1, f"text: {text!r}")
    return "\n".join(lines)


def main(cfg: InfoConfig) -> int:
    overrides = {"num_hidden_layers": cfg.layers} if cfg.layers else {}
    print(model_info(preset=cfg.preset, model_dir=cfg.model, seq_len=cfg.seq, text=cfg.text, **overrides))
    return 0
