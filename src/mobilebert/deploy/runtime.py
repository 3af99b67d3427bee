"""A fine-tuned model run by another runtime, for ``evaluate`` and ``predict`` (``--backend``).

Why: a user deciding what to serve wants the score and the predictions of the file they would ship, not of the
PyTorch module it came from. Each backend is built the way ``export`` builds it (same code, same gates: parity
with eager PyTorch, int8 "not broken"), into a scratch folder that is gone once the runtime has loaded it, and
called like the PyTorch model (``model(input_ids, attention_mask, token_type_ids)`` -> outputs with ``logits``).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

BACKENDS = ("pytorch", "onnx-fp32", "onnx-int8", "openvino-f32", "openvino-bf16", "openvino-int8")


def runtime_model(model: nn.Module, backend: str, tokenizer: Any = None, max_seq_length: int = 128,
                  threads: int | None = None) -> Callable[..., Any]:
    """``model`` as ``backend`` runs it. ``tokenizer`` calibrates OpenVINO int8 on the bundled sample texts."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "pytorch":
        return model
    runtime, precision = backend.split("-")
    int8 = precision == "int8"
    with tempfile.TemporaryDirectory(prefix=f"mobilebert-{runtime}-") as tmp:
        out = Path(tmp) / "model"
        if runtime == "onnx":
            from .onnx import OnnxModel, export_onnx

            export_onnx(copy.deepcopy(model), out, int8=int8)
            return OnnxModel(out, threads=threads, int8=int8)
        from .openvino import OpenVinoModel, export_openvino

        run_as = "f32" if int8 else precision  # int8: the non-int8 ops in f32, as the export's default
        export_openvino(copy.deepcopy(model), out, precision=run_as, int8=int8, tokenizer=tokenizer,
                        max_seq_length=max_seq_length)
        return OpenVinoModel(out, threads=threads, int8=int8, precision=run_as)  # loaded: the folder may go


__all__ = ["BACKENDS", "runtime_model"]
