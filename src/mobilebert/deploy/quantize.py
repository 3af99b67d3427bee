"""Dynamic int8 quantization that keeps accuracy: ONNX Runtime (the fast path) and PyTorch.

Why per-channel and why some layers stay fp32: MobileBERT's NoNorm activations are large and full of
outliers, and after folding a NoNorm into a Linear each output row carries its own scale. Per-channel
weight scales absorb exactly those row scales; activations are quantized per tensor at run time
(dynamic), so there is no calibration set to overfit. The last projection (classifier / QA / MLM decoder)
is small and decides the answer, so it stays in fp32 by default.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

HEAD_MODULES = ("classifier", "qa_outputs", "cls.seq_relationship", "cls.predictions", "pooler")
_PASS_THROUGH = {"Add", "Reshape", "Squeeze", "Unsqueeze", "Split", "Slice", "Gather", "Cast", "Identity",
                 "Transpose", "Concat", "Tanh", "Flatten"}


def output_projections(model_path: str | os.PathLike) -> list[str]:
    """Names of the MatMul/Gemm nodes that directly produce the graph outputs (the head projections)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    found, stack, seen = [], [o.name for o in graph.output], set()
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in ("MatMul", "Gemm"):
            found.append(node.name)
        elif node.op_type in _PASS_THROUGH:
            stack.extend(node.input)
    return found


def quantize_onnx(src: str | os.PathLike, dst: str | os.PathLike, keep_head_fp32: bool = True,
                  exclude: list[str] | None = None) -> Path:
    """int8 weights (per output channel, symmetric) for every MatMul/Gemm, activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    excluded = list(exclude or []) + (output_projections(src) if keep_head_fp32 else [])
    log.info("int8: keeping in fp32: %s", ", ".join(excluded) or "nothing")
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # the quantizer logs every tensor on the root logger
    try:
        quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=excluded,
                         extra_options={"MatMulConstBOnly": True})
    finally:
        root.setLevel(level)
    return Path(dst)


def quantize_torch(model: nn.Module, keep_head_fp32: bool = True) -> nn.Module:
    """A copy of an eager model with int8 dynamic Linear layers (per-channel weights, fbgemm/VNNI kernels)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    spec = {name: per_channel_dynamic_qconfig for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and not (keep_head_fp32 and _is_head(name))}
    q = quantize_dynamic(copy.deepcopy(model).eval(), qconfig_spec=spec, dtype=torch.qint8)
    return q


def _is_head(name: str) -> bool:
    return any(name == h or name.startswith(h + ".") or f".{h}" in name for h in HEAD_MODULES)


__all__ = ["output_projections", "quantize_onnx", "quantize_torch"]
