"""ONNX export with a parity gate, and an ONNX Runtime wrapper that is called like the PyTorch model.

The exported graph is the *optimized* model (NoNorm folded, projections fused), so ONNX Runtime starts from
fewer, larger GEMMs. Batch and sequence axes are dynamic. Every export is checked against the eager
PyTorch model on the probes of :mod:`~mobilebert.deploy.gate` (random ids with and without padding, and real
sentences where the vocabulary is BERT's), before anything appears at the destination:
files are written into a temporary sibling folder that is renamed into place only when parity holds.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..atomic import atomic_write_text
from ..checkpoint import FINETUNE_FILE, VOCAB_FILES, inspect
from ..config import MobileBertConfig
from ..load import load_model
from ..modeling import ModelOutput
from .gate import ExportError, probe_inputs, staged_dir
from .optimize import FastMobileBert, optimize_for_inference

log = logging.getLogger(__name__)

INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids"]
FP32_TOL = 1e-4  # max |onnx - eager| / max |eager|, per output
INT8_TOL = 0.25  # int8 is judged on task accuracy; this only catches a broken graph
OPSET = 23  # the first opset with an Attention op: ONNX Runtime runs it as one kernel instead of ~12 nodes


@dataclass
class ExportReport:
    """What an export wrote and how closely it matches eager PyTorch (relative max error per output)."""

    out_dir: str
    files: dict[str, int] = field(default_factory=dict)  # name -> bytes
    outputs: list[str] = field(default_factory=list)
    head: str = ""  # checkpoint.HEAD_CLASSES key: what the outputs mean
    labels: list[str] = field(default_factory=list)  # class / tag names in output order (also labels.txt)
    parity: dict[str, float] = field(default_factory=dict)  # "fp32"/"int8" -> worst relative error

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


class _ExportWrapper(nn.Module):
    """Positional tensors in, a tuple of named outputs out (what the ONNX exporter wants)."""

    def __init__(self, fast: FastMobileBert) -> None:
        super().__init__()
        self.fast = fast

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> tuple[Tensor, ...]:
        out = self.fast(input_ids, attention_mask, token_type_ids)
        return tuple(getattr(out, n) for n in self.fast.output_names())


def _export_graph(fast: FastMobileBert, path: Path) -> None:
    cfg = fast.config
    ids = torch.randint(1, cfg.vocab_size, (2, 16))
    B, T = torch.export.Dim("batch"), torch.export.Dim("seq", max=cfg.max_position_embeddings)
    axes = {name: {0: B, 1: T} for name in INPUT_NAMES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(_ExportWrapper(fast).eval(), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(path),
                          input_names=INPUT_NAMES, output_names=fast.output_names(), dynamic_shapes=axes,
                          dynamo=True, optimize=True, external_data=False, verbose=False, opset_version=OPSET)


def relative_error(ref: ModelOutput, got: ModelOutput, names: list[str], attention_mask: Tensor | None = None
                   ) -> float:
    """Worst ``max |got - ref| / max |ref|`` over the outputs ``names``; inf when ``got`` is not finite.

    With ``attention_mask`` (B, T), per-token outputs ((B, T, ...): hidden states, MLM/QA logits) are compared at
    real tokens only: what a padded position holds is read by nothing (pooling and heads skip it), and int8
    files differ there freely (MiniLM's LiteRT int8 encoder, right-padded SST-2 sentences: 0.91 relative at
    padded positions, 0.03 at real tokens; that 0.91 made ``bench`` skip the file, issue 22)."""
    worst = 0.0
    for n in names:
        r, c = ref[n].float(), got[n].float()
        if not torch.isfinite(c).all():
            return float("inf")
        if attention_mask is not None and r.dim() >= 2 and r.shape[:2] == attention_mask.shape:
            real = attention_mask.bool()
            r, c = r[real], c[real]  # (real tokens, ...)
        worst = max(worst, float((r - c).abs().max() / r.abs().max().clamp_min(1e-12)))
    return worst


def parity_error(reference: nn.Module, candidate, config: MobileBertConfig, names: list[str], int8: bool = False,
                 batch: int | None = None, seq_len: int | None = None, tokenizer=None) -> float:
    """Worst relative max error of ``candidate`` against ``reference`` over the probes every export is gated on
    (:func:`~mobilebert.deploy.gate.probe_inputs`: dynamic shapes, or the static ``batch`` x ``seq_len``)."""
    probes = probe_inputs(config, int8=int8, batch=batch, seq_len=seq_len, tokenizer=tokenizer)
    with torch.no_grad():
        return max(relative_error(reference(**x), candidate(**x), names, x["attention_mask"]) for x in probes)


class OnnxModel:
    """An exported model run by ONNX Runtime, called like the PyTorch model.

    ``OnnxModel(dir_or_file)(input_ids, attention_mask=None, token_type_ids=None)`` -> :class:`ModelOutput`
    with torch tensors under the same field names (``logits``, ``last_hidden_state``, ...).

    ``spin=False`` stops ONNX Runtime's idle worker threads from spinning for 10-30 ms after each call: set it
    when other compute (PyTorch, a second session) shares the cores, which spinning slows by up to 2.5x; it
    costs ONNX Runtime itself ~40% latency when it runs alone (docs/notes/history.md).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, int8: bool = False,
                 spin: bool = True) -> None:
        import onnxruntime as ort

        path = Path(path)
        if path.is_dir():
            path = path / ("model.int8.onnx" if int8 else "model.onnx")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX model")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, **unsupported) -> ModelOutput:
        bad = [k for k, v in unsupported.items() if v not in (None, False)]
        if bad:
            raise ValueError(f"the ONNX model does not support {', '.join(bad)}")
        ids = _np(input_ids)
        feeds = {"input_ids": ids,
                 "attention_mask": np.ones_like(ids) if attention_mask is None else _np(attention_mask),
                 "token_type_ids": np.zeros_like(ids) if token_type_ids is None else _np(token_type_ids)}
        outs = self.session.run(self.output_names, feeds)
        return ModelOutput(**{n: torch.from_numpy(o) for n, o in zip(self.output_names, outs, strict=True)})

    forward = __call__


def _np(x) -> np.ndarray:
    return (x.numpy() if isinstance(x, Tensor) else np.asarray(x)).astype(np.int64)


def label_file_names(source: str | os.PathLike) -> list[str]:
    """The names an export writes to labels.txt: the checkpoint's readable class or tag names
    (``CheckpointInfo.label_names``) for classifier and token heads; none for regression and other heads."""
    info = inspect(source)
    if info.head == "token" or (info.head == "classifier" and not info.is_regression):
        return list(info.label_names)
    return []


def write_text_assets(source: str | os.PathLike, dest: str | os.PathLike, prefix: str = "") -> list[str]:
    """What an app needs beside the graph to go from text to labels, copied from the checkpoint folder
    ``source`` into ``dest``: the tokenizer (vocab.txt, tokenizer.json, tokenizer_config.json; with ``prefix``,
    only ``{prefix}vocab.txt``), ``{prefix}labels.txt`` (one name per line, in output order) and finetune.json
    (task, sequence length, columns) when present. Returns the names written."""
    from ..tokenizer import MobileBertTokenizer

    source, dest = Path(source), Path(dest)
    written = []
    if any((source / n).is_file() for n in VOCAB_FILES):
        tok = MobileBertTokenizer.from_pretrained(source)
        if prefix:
            atomic_write_text(dest / f"{prefix}vocab.txt", "".join(t + "\n" for t in tok.vocab))
            written.append(f"{prefix}vocab.txt")
        else:
            tok.save_pretrained(dest)
            written += ["vocab.txt", "tokenizer.json", "tokenizer_config.json"]
    labels = label_file_names(source)
    if labels:
        atomic_write_text(dest / f"{prefix}labels.txt", "".join(x + "\n" for x in labels))
        written.append(f"{prefix}labels.txt")
    if not prefix and (source / FINETUNE_FILE).is_file():
        shutil.copyfile(source / FINETUNE_FILE, dest / FINETUNE_FILE)
        written.append(FINETUNE_FILE)
    return written


def export_onnx(model: nn.Module, out_dir: str | os.PathLike, int8: bool = False, overwrite: bool = False,
                source: str | os.PathLike | None = None) -> ExportReport:
    """Export ``model`` (any MobileBERT class) to ``out_dir/model.onnx`` (+ ``model.int8.onnx``); with
    ``source`` (the checkpoint folder), its tokenizer, label names and finetune.json too
    (:func:`write_text_assets`), so the folder goes from text to labels by itself.

    Raises :class:`ExportError` (and leaves nothing at ``out_dir``) when ONNX Runtime disagrees with eager
    PyTorch by more than ``FP32_TOL`` relative, or the int8 graph is broken.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists; choose a new folder or pass overwrite=True")
    model = model.eval()
    fast = optimize_for_inference(model)
    names = fast.output_names()
    with staged_dir(out_dir) as tmp:
        report = ExportReport(out_dir=str(out_dir), outputs=names, head=fast.head)
        _export_graph(fast, tmp / "model.onnx")
        err = parity_error(model, OnnxModel(tmp / "model.onnx"), model.config, names)
        report.parity["fp32"] = err
        if not err <= FP32_TOL:
            raise ExportError(f"ONNX parity check failed: relative error {err:.3g} > {FP32_TOL:g}; nothing written")
        if int8:
            from .quantize import quantize_onnx

            quantize_onnx(tmp / "model.onnx", tmp / "model.int8.onnx")
            err8 = parity_error(model, OnnxModel(tmp / "model.int8.onnx"), model.config, names, int8=True)
            report.parity["int8"] = err8
            if not err8 <= INT8_TOL:
                raise ExportError(f"int8 ONNX model is broken: relative error {err8:.3g} > {INT8_TOL:g}")
        model.config.to_json(tmp / "config.json")
        if source is not None:
            write_text_assets(source, tmp)
            report.labels = label_file_names(source)
        report.files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
        (tmp / "export.json").write_text(report.to_json() + "\n", encoding="utf-8")
    log.info("exported %s (parity %s)", out_dir, report.parity)
    return report


def export_checkpoint(model_dir: str | os.PathLike, out_dir: str | os.PathLike, int8: bool = False,
                      overwrite: bool = False) -> ExportReport:
    """``mobilebert export``: checkpoint folder -> ONNX folder (model.onnx, config.json, export.json, the
    tokenizer files, labels.txt for classifiers and taggers, finetune.json)."""
    return export_onnx(load_model(model_dir), out_dir, int8=int8, overwrite=overwrite, source=model_dir)


__all__ = ["ExportError", "ExportReport", "OnnxModel", "export_checkpoint", "export_onnx", "label_file_names",
           "parity_error", "relative_error", "write_text_assets"]
