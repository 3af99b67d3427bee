"""Phone exports: ExecuTorch ``.pte`` (XNNPACK delegate) and LiteRT ``.tflite``, fp32 or int8 dynamic.

Why this exists: ONNX Runtime is heavy on a phone; ExecuTorch and LiteRT ship small C++ runtimes with
Android/iOS APIs, both running CPU GEMMs through XNNPACK. The exported graph is the *optimized* model
(:func:`~mobilebert.deploy.optimize.optimize_for_inference`: NoNorm folded, projections fused), as for ONNX;
the eager model does not ``torch.export`` (its attention-mask shortcut branches on data).

For ExecuTorch, three rewrites (tracing only, the model is untouched) keep every op in one XNNPACK delegate;
without them the GEMMs fall back to ExecuTorch's portable kernels and the full model runs 20x slower:

* the fast model writes residual adds as ``addmm(residual, x, W)``; XNNPACK only takes a 1-D bias, so
  ``addmm`` with a 2-D input becomes ``linear(x, W^T) + residual`` (and every other GEMM a ``linear`` too,
  which is also what the int8 quantizer recognises);
* SDPA with a boolean mask decomposes into where/any/expand ops XNNPACK does not take; it is spelled out as
  bmm + softmax with an additive mask;
* ``constant_prop_pass`` folds the weight transposes into constants, so each ``linear`` sees a constant
  weight (a transpose computed at run time leaves the GEMM outside the delegate).

litert-torch needs none of this. Shapes are static: the model takes ``(batch, seq_len)`` integer tensors
(``input_ids``, ``attention_mask``, ``token_type_ids``) and the app right-pads to ``seq_len``, as phone apps
do (a dynamic sequence length fails in torch.export's reshape of the attention output with torch 2.13 /
executorch 1.5). Every export is run by the package's Python runtime and compared with eager PyTorch on the
probes every export uses (:mod:`~mobilebert.deploy.gate`), before the file is renamed into place; a mismatch
raises
:class:`~mobilebert.deploy.onnx.ExportError` naming the file and leaves nothing.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..atomic import atomic_path
from ..modeling import ModelOutput
from .gate import random_probe
from .onnx import FP32_TOL, INT8_TOL, ExportError, parity_error, write_text_assets
from .onnx import _ExportWrapper as _Positional  # positional tensors in, a tuple of named outputs out
from .optimize import FastMobileBert, optimize_for_inference


class _LinearGemms(TorchFunctionMode):
    """While tracing: every ``addmm``/``matmul`` with a 2-D right operand becomes ``F.linear`` (+ residual)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.addmm and not kwargs and len(args) == 3:
            inp, a, w = args
            if inp.dim() == 1:
                return F.linear(a, w.t(), inp)
            return F.linear(a, w.t()) + inp
        if func in (torch.matmul, Tensor.matmul, Tensor.__matmul__) and not kwargs and len(args) == 2 \
                and args[1].dim() == 2:
            return F.linear(args[0], args[1].t())
        if func is F.scaled_dot_product_attention and len(args) == 3 and set(kwargs) <= {"attn_mask"}:
            return _attention(*args, kwargs.get("attn_mask"))
        return func(*args, **kwargs)


def _attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """SDPA spelled out with an additive mask: bmm, softmax and add all run in XNNPACK (a boolean mask
    decomposes into where/any/logical_not that stay in portable kernels and split the delegate)."""
    B, nh, T, hs = q.shape
    q, k, v = (t.reshape(B * nh, T, hs) for t in (q, k, v))  # 3-D bmm: a 4-D matmul adds expand copies
    scores = torch.bmm(q * hs ** -0.5, k.transpose(1, 2)).view(B, nh, T, T)
    if mask is not None:
        scores = scores + (mask.to(scores.dtype) - 1.0) * 1e9  # padded keys -> exp() == 0
    return torch.bmm(torch.softmax(scores, dim=-1).view(B * nh, T, T), v).view(B, nh, T, hs)


def _example(config, batch: int, seq_len: int, pad: bool, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """The trace (and calibration) example: positional (input_ids, attention_mask, token_type_ids)."""
    x = random_probe(config, batch, seq_len, pad, seed)
    return x["input_ids"], x["attention_mask"], x["token_type_ids"]


def _lower(fast: FastMobileBert, batch: int, seq_len: int, int8: bool) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    cfg = fast.config
    example = _example(cfg, batch, seq_len, pad=False)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        with _LinearGemms():
            ep = torch.export.export(_Positional(fast).eval(), example)
        ep = constant_prop_pass(ep)  # weight transposes -> constants, so XNNPACK takes every linear
        if int8:
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            quantizer = XNNPACKQuantizer().set_global(
                get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
            gm = prepare_pt2e(ep.module(), quantizer)
            gm(*example)
            gm(*_example(cfg, batch, seq_len, pad=True, seed=1))
            ep = torch.export.export(convert_pt2e(gm), example)
        program = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    return program.buffer


class LiteRTModel:
    """A ``.tflite`` model run by LiteRT's interpreter (XNNPACK delegate), called like the PyTorch model.

    The converter downcasts the int64 inputs to int32; this wrapper casts. Inputs must have the exported
    (batch, seq_len) shape: pad on the right.
    """

    def __init__(self, path: str | os.PathLike, output_names: list[str] | None = None, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such LiteRT model")
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
        self.runner = self.interpreter.get_signature_runner()
        sig = next(iter(self.interpreter.get_signature_list().values()))
        self.input_keys, self.output_keys = sig["inputs"], sig["outputs"]  # args_0.., output_0..
        self.output_names = list(output_names) if output_names else list(self.output_keys)

    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                 token_type_ids: Tensor | None = None) -> ModelOutput:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        tt = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        feeds = {k: t.to(torch.int32).numpy() for k, t in zip(self.input_keys, (input_ids, mask, tt), strict=True)}
        outs = self.runner(**feeds)
        return ModelOutput(**{n: torch.from_numpy(outs[k].copy())
                              for n, k in zip(self.output_names, sorted(self.output_keys, key=_key), strict=True)})


def _key(name: str) -> tuple[int, str]:
    """output_10 sorts after output_9."""
    head, _, num = name.rpartition("_")
    return (int(num), head) if num.isdigit() else (0, name)


class ExecuTorchModel:
    """A ``.pte`` program run by ExecuTorch's Python runtime, called like the PyTorch model.

    ``ExecuTorchModel(path)(input_ids, attention_mask=None, token_type_ids=None)`` -> :class:`ModelOutput`.
    The inputs must have the exported (batch, seq_len) shape: pad on the right.
    """

    def __init__(self, path: str | os.PathLike, output_names: list[str] | None = None) -> None:
        from executorch.runtime import Runtime

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ExecuTorch program")
        self.method = Runtime.get().load_program(self.path).load_method("forward")
        n = self.method.metadata.num_outputs()
        self.output_names = list(output_names) if output_names else [f"output_{i}" for i in range(n)]

    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                 token_type_ids: Tensor | None = None) -> ModelOutput:
        ids = input_ids.long()
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask.long()
        tt = torch.zeros_like(ids) if token_type_ids is None else token_type_ids.long()
        outs = self.method.execute([ids, mask, tt])
        return ModelOutput(**dict(zip(self.output_names, outs, strict=True)))


def _write_checked(out_path: Path, write: Callable[[Path], None],
                   runner: Callable[[Path], ExecuTorchModel | LiteRTModel], model: nn.Module, int8: bool, batch: int,
                   seq_len: int, what: str) -> Path:
    """``write`` the file beside ``out_path``, run it with ``runner``, and rename it into place only if it
    matches eager PyTorch within ``FP32_TOL`` (``INT8_TOL`` for int8); else :class:`ExportError`, nothing left."""
    tol = INT8_TOL if int8 else FP32_TOL
    with atomic_path(out_path) as tmp:
        write(tmp)
        candidate = runner(tmp)
        err = parity_error(model, candidate, model.config, candidate.output_names, int8, batch, seq_len)
        if not err <= tol:
            raise ExportError(f"{out_path}: {what} parity check failed: relative error {err:.3g} > {tol:g}; "
                              "nothing written")
    return out_path


def _with_assets(out_path: Path, source: str | os.PathLike | None) -> Path:
    """Beside a phone file ``NAME.ext``, what an app needs to go from text to labels: ``NAME.vocab.txt`` and,
    for classifiers and taggers, ``NAME.labels.txt`` (:func:`~mobilebert.deploy.onnx.write_text_assets`)."""
    if source is not None:
        write_text_assets(source, out_path.parent, prefix=f"{out_path.stem}.")
    return out_path


def export_executorch(model: nn.Module, out_path: str | os.PathLike, int8: bool = False, seq_len: int = 128,
                      batch: int = 1, overwrite: bool = False, source: str | os.PathLike | None = None) -> Path:
    """Export ``model`` (any MobileBERT class, eager) to an XNNPACK ExecuTorch program at ``out_path``.

    ``int8`` applies dynamic per-channel int8 quantization of the GEMM weights (activations quantized per
    call). Raises :class:`ExportError` naming ``out_path`` (and writes nothing) when the program disagrees
    with eager PyTorch by more than ``FP32_TOL`` (``INT8_TOL`` for int8), relative to the output's max.
    ``source`` (the checkpoint folder): its vocab and label names are written beside the file (``_with_assets``).
    """
    out_path = Path(out_path)
    _check_target(model, out_path, seq_len, overwrite)
    model = model.eval()
    fast = optimize_for_inference(model)
    buffer = _lower(fast, batch, seq_len, int8)
    _write_checked(out_path, lambda p: p.write_bytes(buffer), lambda p: ExecuTorchModel(p, fast.output_names()),
                   model, int8, batch, seq_len, "ExecuTorch")
    return _with_assets(out_path, source)


def _check_target(model: nn.Module, out_path: Path, seq_len: int, overwrite: bool) -> None:
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path}: already exists; choose a new path or pass overwrite=True")
    limit = model.config.max_position_embeddings
    if not 3 <= seq_len <= limit:
        raise ValueError(f"seq_len must be in [3, {limit}], got {seq_len}")


def convert_litert(module: nn.Module, example: tuple[Tensor, ...], int8: bool = False):
    """litert-torch's conversion of ``module`` at the shapes of ``example`` (an in-memory LiteRT model with
    ``export(path)``); ``int8``: its dynamic recipe, channel-wise int8 weights of every fully-connected op."""
    import litert_torch

    quant = None
    if int8:
        from litert_torch.generative.quantize import quant_recipes

        quant = quant_recipes.full_dynamic_recipe()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return litert_torch.convert(module, example, quant_config=quant)


def export_litert(model: nn.Module, out_path: str | os.PathLike, int8: bool = False, seq_len: int = 128,
                  batch: int = 1, overwrite: bool = False, source: str | os.PathLike | None = None) -> Path:
    """Export ``model`` (any MobileBERT class, eager) to a LiteRT ``.tflite`` flatbuffer with litert-torch.

    ``int8`` applies litert-torch's dynamic int8 recipe (channel-wise int8 weights of every fully-connected
    op). Same parity gate, atomic write and ``source`` assets as :func:`export_executorch`.
    """
    out_path = Path(out_path)
    _check_target(model, out_path, seq_len, overwrite)
    model = model.eval()
    fast = optimize_for_inference(model)
    edge = convert_litert(_Positional(fast).eval(), _example(fast.config, batch, seq_len, pad=False), int8)
    _write_checked(out_path, lambda p: edge.export(str(p)), lambda p: LiteRTModel(p, fast.output_names()),
                   model, int8, batch, seq_len, "LiteRT")
    return _with_assets(out_path, source)


__all__ = ["ExecuTorchModel", "LiteRTModel", "convert_litert", "export_executorch", "export_litert"]
