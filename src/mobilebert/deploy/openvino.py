"""OpenVINO IR export (f32, bf16, NNCF int8) with the gate every export has, and a runner called like the model.

Why this exists: on an x86 server OpenVINO's CPU plugin is the fastest runtime for BERT-like graphs (its own
conversion of transformers' MobileBERT ran 2.7x eager in bf16 and 3.3x in int8 on a Zen 4 EPYC, issue 22),
and reading our ONNX files made it slower (it runs ONNX Runtime's DynamicQuantizeMatMul below eager). So the
IR is converted straight from PyTorch (``openvino.convert_model`` with example inputs, batch and sequence axes
dynamic), from the eager model rather than the optimized one: the plugin fuses the eager graph better
(:func:`convert_eager`).

Precisions. The IR holds f32 weights; the precision is how OpenVINO's CPU plugin runs it
(``INFERENCE_PRECISION_HINT``), recorded in ``export.json`` and applied by :class:`OpenVinoModel`:

* ``f32``: forced, since OpenVINO's own default on a CPU with native bf16 (AVX512-BF16 or AMX) is bf16;
* ``bf16``: GEMMs and most other ops in bfloat16 where the CPU has native bf16 instructions. On a CPU without
  them the plugin ignores the hint and runs f32 (no emulation): the file is the same, ``export.json``'s
  ``runs_as`` says what the exporting machine ran, and the speed-up only comes on a bf16 CPU;
* int8 (``model.int8.xml``): NNCF post-training quantization (int8 weights *and* activations, SmoothQuant,
  calibrated on real text: the bundled samples, or the user's file; activation ranges from min/max, see
  :func:`quantize_int8`), the output projections kept in float; the non-int8 ops run at the chosen precision.
  FakeQuantize fuses into the eager graph's NoNorm eltwise ops; with NoNorm the residual adds take int8 inputs
  too, with LayerNorm they stay float (:data:`INT8_SCOPE`).

The gate: f32 parity with eager PyTorch within ``FP32_TOL`` on the probes of :mod:`~mobilebert.deploy.gate`;
bf16 within ``BF16_TOL``; int8 "not broken" (``INT8_TOL``, on real sentences where the vocab is BERT's); and,
when a labelled set is given, task accuracy within ``ACCURACY_DROP`` points of eager PyTorch for every file
written. Files are written into a private sibling folder that is renamed into place only when all of it holds.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoint import head_of
from ..load import load_model
from ..modeling import ModelOutput
from ..validate import missing_packages
from .gate import ExportError, check_accuracy, default_tokenizer, staged_dir
from .onnx import FP32_TOL, INT8_TOL, ExportReport, _ExportWrapper, parity_error
from .optimize import FastMobileBert, output_names

log = logging.getLogger(__name__)

PRECISIONS = ("f32", "bf16")
BF16_TOL = 0.1  # max |bf16 - eager| / max |eager|: catches a broken graph (bf16 keeps 8 significant bits through
# every layer; a tiny random classifier's small logits reached 0.07); the accuracy gate judges the rest
CALIBRATION_TEXTS = 300  # texts NNCF collects activation statistics on (one sequence each, real lengths)
# What NNCF quantizes, by the model's normalization (config.normalization_type). "transformer": NNCF's scope for
# transformers, the GEMMs and attention only. "all": its default scope, which also gives the residual stream's
# adds int8 inputs, so the float eltwise ops between the GEMMs go: with NoNorm that kept a fine-tuned SST-2
# student's dev accuracy (86.47 against PyTorch's 86.70) and ran full MobileBERT's int8 faster at batch 8
# (docs/benchmarks.md); before a LayerNorm it cost a fine-tuned MiniLM 8.4 points (79.93 against 88.30).
INT8_SCOPE = {"no_norm": "all", "layer_norm": "transformer"}
FILES = {False: "model.xml", True: "model.int8.xml"}  # int8 -> IR file (each with its .bin beside it)
# ops between an output and the GEMM that produces it (an Add is followed only to the MatMul beside it: its other
# input may be the residual stream, which leads back through every block)
_PASS_THROUGH = {"Reshape", "Squeeze", "Unsqueeze", "Convert", "Tanh", "Transpose", "Concat", "Gather", "Split",
                 "VariadicSplit", "StridedSlice", "Slice"}


def missing() -> tuple[list[str], str]:
    """(modules not importable, the pip line that installs them)."""
    return missing_packages("openvino")


def require(*modules: str) -> None:
    """ImportError with one line naming the install command when any of ``modules`` is missing."""
    lacking, install = missing()
    lacking = [m for m in lacking if m in modules]
    if lacking:
        raise ImportError(f"OpenVINO needs `pip install {install}` ({', '.join(lacking)} missing)")


@dataclass
class OpenVinoReport(ExportReport):
    """:class:`~mobilebert.deploy.onnx.ExportReport` plus the precision, what the exporting CPU ran it at, the
    int8 file's quantization scope (:data:`INT8_SCOPE`), and the accuracy gate's numbers (x100, per file,
    ``pytorch`` for eager)."""

    precision: str = "f32"
    runs_as: str = "f32"
    int8_scope: str | None = None
    accuracy: dict[str, float] = field(default_factory=dict)


class OpenVinoModel:
    """An exported IR run by OpenVINO's CPU plugin, called like the PyTorch model.

    ``OpenVinoModel(dir_or_xml)(input_ids, attention_mask=None, token_type_ids=None)`` -> :class:`ModelOutput`
    with torch tensors under the same field names as :class:`~mobilebert.deploy.onnx.OnnxModel`. ``precision``:
    ``f32``/``bf16``, default the one in the folder's ``export.json`` (else ``f32``); ``self.precision`` is what
    the plugin really runs (``f32`` on a CPU without native bf16). ``threads``: OpenVINO's inference threads
    (default: all cores).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, int8: bool = False,
                 precision: str | None = None) -> None:
        require("openvino")
        import openvino as ov

        path = Path(path)
        folder = path if path.is_dir() else path.parent
        if path.is_dir():
            path = path / FILES[int8]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such OpenVINO model")
        precision = precision or _exported_precision(folder)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        config: dict[str, object] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                                     "NUM_STREAMS": 1}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.path = path
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        self.precision = _type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, **unsupported) -> ModelOutput:
        bad = [k for k, v in unsupported.items() if v not in (None, False)]
        if bad:
            raise ValueError(f"the OpenVINO model does not support {', '.join(bad)}")
        ids = _np(input_ids)  # (B, T)
        feeds = {"input_ids": ids,
                 "attention_mask": np.ones_like(ids) if attention_mask is None else _np(attention_mask),
                 "token_type_ids": np.zeros_like(ids) if token_type_ids is None else _np(token_type_ids)}
        outs = self.request.infer(feeds)  # copies out of the request's buffers (share_outputs=False)
        return ModelOutput(**{n: torch.from_numpy(outs[i]) for i, n in enumerate(self.output_names)})

    forward = __call__


def _np(x) -> np.ndarray:
    return (x.numpy() if isinstance(x, Tensor) else np.asarray(x)).astype(np.int64)


def _type_name(t) -> str:
    """OpenVINO's element type -> "f32" / "bf16" (what ``INFERENCE_PRECISION_HINT`` reports)."""
    name = getattr(t, "get_type_name", lambda: str(t))()
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(name, name)


def _exported_precision(folder: Path) -> str:
    report = folder / "export.json"
    if not report.is_file():
        return "f32"
    try:
        return json.loads(report.read_text(encoding="utf-8")).get("precision", "f32")
    except json.JSONDecodeError as e:
        raise ValueError(f"{report}: not valid JSON ({e})") from None


def convert(fast: FastMobileBert):
    """``openvino.convert_model`` of the optimized module (traced at (2, 16), axes left dynamic), outputs named
    as the model's fields: not what the export uses (:func:`convert_eager`), kept as the probe row of
    benchmarks/openvino_compare.py that shows why."""
    import openvino as ov

    ids = torch.randint(1, fast.config.vocab_size, (2, 16))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        ov_model = ov.convert_model(_ExportWrapper(fast).eval(),
                                    example_input=(ids, torch.ones_like(ids), torch.zeros_like(ids)))
    for out, name in zip(ov_model.outputs, fast.output_names(), strict=True):
        out.get_tensor().set_names({name})
    return ov_model


class _EagerOutputs(nn.Module):
    """The eager model with positional inputs and a tuple of the named outputs (what tracing wants)."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> tuple[Tensor, ...]:
        out = self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return tuple(getattr(out, n) for n in self.names)


def convert_eager(model: nn.Module, names: list[str]):
    """``openvino.convert_model`` of the *eager* model (NoNorm unfolded, projections unfused): the graph every
    OpenVINO file is made from.

    Why not the optimized module, as ONNX is: OpenVINO's CPU plugin does its own fusions, and fuses the eager
    graph better. Folding NoNorm into the GEMMs leaves the residual stream with no eltwise op for NNCF's
    FakeQuantize to fuse into, so the folded int8 graph runs standalone FakeQuantize ops (13-17% of its op time
    in a 1-thread profile) and was 25% slower at batch 8; in f32 and bf16 the folded graph was 0-30% slower too
    (6 layers, 1 thread, interleaved; docs/benchmarks.md has the full-model rows). Traced on a padded batch, so
    the mask path is in the graph (eager skips masking when nothing is padded)."""
    import openvino as ov

    ids = torch.randint(1, model.config.vocab_size, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        ov_model = ov.convert_model(_EagerOutputs(model, names).eval(),
                                    example_input=(ids, mask, torch.zeros_like(ids)))
    for port, name in zip(ov_model.inputs, ("input_ids", "attention_mask", "token_type_ids"), strict=True):
        port.get_tensor().set_names({name})
    for out, name in zip(ov_model.outputs, names, strict=True):
        out.get_tensor().set_names({name})
    return ov_model


def calibration_texts(path: str | os.PathLike | None = None, limit: int = CALIBRATION_TEXTS) -> list[str]:
    """Real text for int8 calibration: ``path`` (one text per line, blank lines skipped), or the bundled samples
    (SST-2 phrases, STS-B sentences and WikiText paragraphs, so that short and long inputs are both seen)."""
    from ..data.glue import SAMPLE_DIR, read_glue

    if path is not None:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: cannot read calibration text ({e})") from None
        texts = [t.strip() for t in lines if t.strip()]
        if not texts:
            raise ValueError(f"{path}: no text lines to calibrate int8 on")
        return texts[:limit]
    third = limit // 3
    sst = [e.text_a for e in read_glue("sst2", SAMPLE_DIR, "train", limit=third)]
    sts = [e.text_a for e in read_glue("stsb", SAMPLE_DIR, "dev", limit=third)]
    wiki = [t.strip() for t in (SAMPLE_DIR / "wikitext_sample.txt").read_text(encoding="utf-8").splitlines()
            if len(t.strip()) > 40 and not t.strip().startswith("=")]
    return sst + sts + wiki[:limit - len(sst) - len(sts)]


def _output_matmuls(ov_model) -> list[str]:
    """Friendly names of the MatMuls that produce the outputs through pass-through ops (the head projections,
    or the last block's output GEMM of an encoder): kept in float, as :mod:`~mobilebert.deploy.quantize`
    keeps the ONNX head."""
    found, stack, seen = [], [r.input_value(0).get_node() for r in ov_model.get_results()], set()
    while stack:
        node = stack.pop()
        if node.get_friendly_name() in seen:
            continue
        seen.add(node.get_friendly_name())
        inputs = [v.get_node() for v in node.input_values()]
        if node.get_type_name() == "MatMul":
            found.append(node.get_friendly_name())
        elif node.get_type_name() == "Add":
            stack.extend(n for n in inputs if n.get_type_name() == "MatMul")
        elif node.get_type_name() in _PASS_THROUGH:
            stack.extend(inputs)
    return found


def quantize_int8(ov_model, tokenizer, texts: list[str], max_seq_length: int = 128, scope: str = "transformer"):
    """NNCF post-training int8 of ``ov_model``: statistics from ``texts`` (one unpadded sequence each), over
    ``scope`` (a value of :data:`INT8_SCOPE`).

    Activation ranges are the min and max over all texts, not NNCF's default for transformers (the mean over
    texts of each one's min and max): with one sentence per sample the mean clips the confident inputs (a small
    fine-tuned SST-2 classifier: logits off by 0.58 of their range with the mean, 0.008 with min/max, dev
    accuracy 70.8 vs 71.3 against eager's 71.2)."""
    require("openvino", "nncf")
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    nncf.set_log_level(logging.ERROR)
    samples = []
    for t in texts:
        enc = tokenizer([t], max_length=max_seq_length, truncation=True, return_tensors="np")
        samples.append({k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")})
    keep = _output_matmuls(ov_model)
    log.info("int8 (%s scope): calibrating on %d texts; keeping in float: %s", scope, len(samples),
             ", ".join(keep) or "nothing")
    model_type = {"transformer": {"model_type": nncf.ModelType.TRANSFORMER}, "all": {}}[scope]
    ranges = AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF's progress bars (rich, on stdout) have no off switch
        return nncf.quantize(ov_model, nncf.Dataset(samples), **model_type, subset_size=len(samples),
                             ignored_scope=nncf.IgnoredScope(names=keep, validate=False), advanced_parameters=ranges)


def export_openvino(model: nn.Module, out_dir: str | os.PathLike, precision: str = "f32", int8: bool = False,
                    calibration: str | os.PathLike | None = None, labelled: str | os.PathLike | None = None,
                    task: str = "sst2", tokenizer=None, max_seq_length: int = 128, overwrite: bool = False
                    ) -> OpenVinoReport:
    """Export ``model`` (any MobileBERT class, eager) to ``out_dir/model.xml`` (+ ``model.int8.xml``).

    ``precision``: how the files run (``f32`` or ``bf16``, see the module docstring). ``int8``: also NNCF int8,
    calibrated on ``calibration`` (a text file, one text per line; default the bundled samples) through
    ``tokenizer`` (default BERT's uncased one when the vocab matches). ``labelled``: a GLUE ``task`` TSV
    (e.g. SST-2 dev) on which every file must keep accuracy within ``ACCURACY_DROP`` points of eager
    PyTorch. Raises :class:`ExportError` (and leaves nothing at ``out_dir``) when any gate fails.
    """
    require("openvino", *(("nncf",) if int8 else ()))
    out_dir = Path(out_dir)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists; choose a new folder or pass overwrite=True")
    model = model.eval()
    tokenizer = tokenizer or default_tokenizer(model.config)
    if int8 and tokenizer is None:
        raise ValueError("int8 calibration needs the model's tokenizer (its vocab is not BERT's): pass tokenizer=, "
                         "or export a checkpoint folder that holds vocab.txt")
    names = output_names(model)
    examples = None
    if labelled is not None:
        from ..data.glue import read_glue

        if head_of(model) != "classifier":
            raise ValueError(f"{labelled}: the accuracy gate needs a sequence classifier, not a {head_of(model)} "
                             "model")
        if tokenizer is None:
            raise ValueError(f"{labelled}: scoring the labelled set needs the model's tokenizer")
        examples = read_glue(task, labelled, "dev")
    import openvino as ov

    ov_model = convert_eager(model, names)  # every precision: OpenVINO fuses the eager graph better (see above)
    with staged_dir(out_dir) as tmp:
        report = OpenVinoReport(out_dir=str(out_dir), outputs=names, precision=precision)
        ov.save_model(ov_model, str(tmp / FILES[False]), compress_to_fp16=False)
        check = {"f32": FP32_TOL, **({"bf16": BF16_TOL} if precision == "bf16" else {})}
        runners = {}
        for prec, tol in check.items():
            runners[prec] = OpenVinoModel(tmp, precision=prec)
            err = parity_error(model, runners[prec], model.config, names, tokenizer=tokenizer)
            report.parity[prec] = err
            if not err <= tol:
                raise ExportError(f"{out_dir}: OpenVINO {prec} parity check failed: relative error {err:.3g} > "
                                  f"{tol:g}; nothing written")
        report.runs_as = runners[precision].precision
        if int8:
            texts = calibration_texts(calibration, CALIBRATION_TEXTS)
            report.int8_scope = INT8_SCOPE[model.config.normalization_type]
            q = quantize_int8(ov_model, tokenizer, texts, max_seq_length, report.int8_scope)
            ov.save_model(q, str(tmp / FILES[True]), compress_to_fp16=False)
            runners["int8"] = OpenVinoModel(tmp, int8=True, precision=precision)
            err8 = parity_error(model, runners["int8"], model.config, names, int8=True, tokenizer=tokenizer)
            report.parity["int8"] = err8
            if not err8 <= INT8_TOL:
                raise ExportError(f"{out_dir}: OpenVINO int8 model is broken: relative error {err8:.3g} > "
                                  f"{INT8_TOL:g}; nothing written")
        if examples is not None:
            shipped = {k: v for k, v in runners.items() if k in (precision, "int8")}
            report.accuracy = check_accuracy(model, shipped, examples, tokenizer, max_seq_length, str(out_dir))
        model.config.to_json(tmp / "config.json")
        report.files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
        (tmp / "export.json").write_text(report.to_json() + "\n", encoding="utf-8")
    log.info("exported %s (parity %s, runs as %s)", out_dir, report.parity, report.runs_as)
    return report


def export_checkpoint(model_dir: str | os.PathLike, out_dir: str | os.PathLike, precision: str = "f32",
                      int8: bool = False, calibration: str | os.PathLike | None = None,
                      labelled: str | os.PathLike | None = None, task: str = "sst2", max_seq_length: int = 128,
                      overwrite: bool = False) -> OpenVinoReport:
    """``mobilebert export --format openvino``: checkpoint folder -> IR folder, with the checkpoint's own
    tokenizer (its vocab.txt / tokenizer.json) for calibration and the accuracy gate."""
    from ..tokenizer import MobileBertTokenizer

    folder = Path(model_dir)
    has_vocab = any((folder / n).is_file() for n in ("vocab.txt", "tokenizer.json"))
    tokenizer = MobileBertTokenizer.from_pretrained(folder) if has_vocab else None
    return export_openvino(load_model(folder), out_dir, precision=precision, int8=int8,
                           calibration=calibration, labelled=labelled, task=task, tokenizer=tokenizer,
                           max_seq_length=max_seq_length, overwrite=overwrite)


__all__ = ["BF16_TOL", "INT8_SCOPE", "PRECISIONS", "OpenVinoModel", "OpenVinoReport", "calibration_texts", "convert",
           "convert_eager", "export_checkpoint", "export_openvino", "missing", "quantize_int8", "require"]
