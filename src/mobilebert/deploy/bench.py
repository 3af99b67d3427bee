"""Latency of every inference backend over a grid of batch x sequence x threads, sizes on disk, a plot.

Backends run interleaved (A B C A B C ...) so that noise from other processes on a shared machine hits all
of them alike; medians and 90th percentiles are reported. All backends run the same encoder weights
(``MobileBertModel``: embeddings + blocks + pooler); task heads are too small to matter.

The phone backends (LiteRT and ExecuTorch files, fp32 and int8) run where their packages import (the mobile
venv, ``make mobile-venv``); elsewhere they are reported as skipped with the install line. Their files have
static shapes, so each is exported once per (batch, seq) of the grid before any timing. The OpenVINO rows
(``openvino-f32`` / ``-bf16`` / ``-int8``) run the IR ``export --format openvino`` writes (needs ``openvino`` and
``nncf``); ``openvino-bf16`` is skipped on a CPU without native bf16, where OpenVINO would run it as f32.
Latency floors divide the model's FLOPs by the GEMM rate in each precision at :data:`PEAK_GEMM`.

A timing on a shared machine can be noise, so the bench measures the machine's steadiness and says so
(:func:`assess_steadiness`): the spread of each row's repeated calls (p90 / median), the fp32 GEMM rate before
and after the timed loop (did the machine's speed change mid-run?), and how the GEMM rate scales with threads
(is another job holding a core?). Rows that fail are marked ``noise`` and printed without a speed-up.
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..atomic import atomic_path, atomic_write_text
from ..modeling import MobileBertModel
from ..progress import Progress
from ..validate import missing_packages
from .optimize import optimize_for_inference, output_names

log = logging.getLogger(__name__)

# Pause before each timed call: ONNX Runtime's worker threads spin for ~10-30 ms after a run (and OpenMP's
# briefly), stealing cores from whatever runs next; measured here, back to back, the optimized PyTorch module
# ran 2.5x slower right after an ONNX Runtime call. A deployment runs one runtime; so does each timed call.
SETTLE_S = 0.05
PHONE_BACKENDS = ("litert-fp32", "litert-int8", "executorch-fp32", "executorch-int8")
OPENVINO_BACKENDS = ("openvino-f32", "openvino-bf16", "openvino-int8")
ALL_BACKENDS = ("eager", "optimized", "bf16", "ort-fp32", "ort-int8", "torch-int8", "transformers",
                *OPENVINO_BACKENDS, *PHONE_BACKENDS)
SPREAD_LIMIT = 1.5  # p90 / median above this: the repeated calls disagree, so their median is not a result
DRIFT_LIMIT = 0.8  # GEMM rate after / before the timed loop (or before / after) below this: the speed changed
SCALING_LIMIT = 0.6  # GEMM rate at t threads / (t x the 1-thread rate) below this: another job holds a core
_clock = time.perf_counter  # every timing reads this clock (tests put a fake one here)


@dataclass
class BenchConfig:
    """The grid; shrink it for a quick run (e.g. batches=(1,), seqs=(128,), threads=(2,), repeats=5)."""

    batches: tuple[int, ...] = (1, 8)
    seqs: tuple[int, ...] = (32, 128, 384)
    threads: tuple[int, ...] = (1, 2)
    backends: tuple[str, ...] = ALL_BACKENDS
    repeats: int = 10  # timed calls per backend and grid point (after 2 warm-up calls)


@dataclass
class BenchResult:
    rows: list[dict] = field(default_factory=list)  # backend, threads, batch, seq, median_ms, p90_ms
    sizes_mb: dict[str, float] = field(default_factory=dict)
    gemm_gflops: dict[str, float] = field(default_factory=dict)  # "<dtype>@<threads>t" -> GEMM rate at PEAK_GEMM
    flops_per_seq: dict[int, float] = field(default_factory=dict)  # seq -> model FLOPs for one sequence
    machine: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # backend -> why it did not run
    steadiness: dict = field(default_factory=dict)  # what assess_steadiness found: verdict, GEMM drift, advice

    def latency(self, backend: str, threads: int, batch: int, seq: int) -> float | None:
        for r in self.rows:
            if (r["backend"], r["threads"], r["batch"], r["seq"]) == (backend, threads, batch, seq):
                return r["median_ms"]
        return None


# ----------------------------------------------------------------------------- what is measured
def model_flops(model: MobileBertModel, seq: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of one sequence: every encoder Linear plus the attention matmuls."""
    c = model.config
    linear = sum(2 * seq * m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    attention = c.num_hidden_layers * 2 * 2 * seq * seq * c.true_hidden_size  # QK^T and PV
    return float(linear + attention)


PEAK_GEMM = (1024, 512, 512)  # (m, k, n) large enough for every kernel's full rate: the yardstick of a floor


def gemm_rate(kind: str, threads: int, m: int = 128, k: int = 512, n: int = 512) -> float:
    """GFLOP/s (int8: GOP/s) of this machine's best-of-20 (m x k) @ (k x n) GEMM in fp32, bf16 or int8.

    int8 is int8 x int8 -> int32 (``torch._int_mm``), the GEMM a static int8 graph runs (VNNI where the CPU has
    it); the dynamic fbgemm Linear this used before also quantizes its input and ran at half the int8 rate that
    OpenVINO's int8 graph reached on a Zen 4 EPYC, so its "floor" was not one."""
    torch.set_num_threads(threads)
    if kind == "int8":
        a = torch.randint(-128, 128, (m, k), dtype=torch.int8)
        w = torch.randint(-128, 128, (k, n), dtype=torch.int8)
        fn: Callable[[], object] = lambda: torch._int_mm(a, w)  # noqa: E731
    else:
        dt = torch.bfloat16 if kind == "bf16" else torch.float32
        a, w = torch.randn(m, k, dtype=dt), torch.randn(k, n, dtype=dt)
        fn = lambda: a @ w  # noqa: E731
    best = float("inf")
    for i in range(25):
        t = _clock()
        fn()
        if i >= 5:
            best = min(best, _clock() - t)
    return 2 * m * k * n / max(best, 1e-12) / 1e9


def floor_rates(threads: tuple[int, ...]) -> dict[str, float]:
    """"<dtype>@<threads>t" -> the GEMM rate at :data:`PEAK_GEMM` in fp32, bf16 and int8: the yardstick of every
    latency floor (the model's FLOPs over this rate), a settle pause before each measurement."""
    rates = {}
    for t in threads:
        for kind in ("fp32", "bf16", "int8"):
            time.sleep(SETTLE_S)
            rates[f"{kind}@{t}t"] = gemm_rate(kind, t, *PEAK_GEMM)
    return rates


def cpu_description() -> str:
    """The CPU's model name and the int8/fp32 instruction sets that decide which target applies to it:
    e.g. "AMD EPYC (VNNI, AVX-512)" (int8 dot products) or "... (no VNNI, AVX2)"."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((x.split(":", 1)[1].strip() for x in info if x.startswith("model name")), platform.machine())
    flags = next((x.split(":", 1)[1].split() for x in info if x.startswith("flags")), [])
    vnni = any("vnni" in f for f in flags)
    return f"{name} ({'VNNI' if vnni else 'no VNNI'}, {'AVX-512' if 'avx512f' in flags else 'AVX2'})"


def has_vnni(cpu: str) -> bool:
    """Whether :func:`cpu_description` says int8 dot products (VNNI) are there."""
    return "(VNNI" in cpu


def interleaved(calls: dict[Hashable, Callable[[], object]], repeats: int, warmup: int = 2,
                settle: float = SETTLE_S) -> dict[Hashable, list[float]]:
    """Milliseconds of each call, timed round-robin (A B C A B C ...) after ``warmup`` untimed calls of each, so
    that load from other processes hits every call alike; ``settle`` seconds of pause before each timed call."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[Hashable, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for k, fn in calls.items():
            time.sleep(settle)
            start = _clock()
            fn()
            times[k].append((_clock() - start) * 1e3)
    return times


def median_p90(times: list[float]) -> tuple[float, float]:
    ts = sorted(times)
    return statistics.median(ts), ts[min(len(ts) - 1, int(0.9 * len(ts)))]


def assess_steadiness(rows: list[dict], before: dict[int, float], after: dict[int, float]) -> dict:
    """Whether these timings can be trusted, from the run's own measurements: marks each row with its
    ``spread`` (p90 / median) and ``noise`` (spread above ``SPREAD_LIMIT``, or its thread count's fp32 GEMM rate
    moved by more than ``DRIFT_LIMIT`` between ``before`` and ``after`` the timed loop), and returns the
    verdict: {"verdict": "steady" | "noisy", "gemm_drift": {threads: after / before}, "scaling": {threads:
    rate / (threads x 1-thread rate)}, "advice": one line or ""}."""
    drift = {t: after[t] / before[t] for t in before if t in after and before[t] > 0}
    moved = {t for t, d in drift.items() if not DRIFT_LIMIT <= d <= 1 / DRIFT_LIMIT}
    for r in rows:
        r["spread"] = r["p90_ms"] / r["median_ms"] if r["median_ms"] > 0 else float("inf")
        r["noise"] = bool(r["spread"] > SPREAD_LIMIT or r["threads"] in moved)
    base = min(before.get(1, 0.0), after.get(1, 0.0)) if 1 in before and 1 in after else 0.0
    scaling = {t: max(before[t], after.get(t, 0.0)) / (t * base) for t in before if t > 1 and base > 0}
    busy = sorted(t for t, sc in scaling.items() if sc < SCALING_LIMIT)
    noisy = [r for r in rows if r["noise"]]
    advice = []
    if moved:
        advice.append(f"the GEMM rate changed by more than {1 - DRIFT_LIMIT:.0%} during the run at "
                      f"{', '.join(map(str, sorted(moved)))} thread(s): other jobs came or went")
    if busy:
        advice.append(f"at {', '.join(map(str, busy))} threads the GEMM rate is only "
                      f"{', '.join(f'{scaling[t]:.0%}' for t in busy)} of linear: another job holds a core; "
                      "time with 1 thread (--threads 1)")
    elif noisy:
        advice.append(f"{len(noisy)} of {len(rows)} rows vary by more than {SPREAD_LIMIT:g}x (p90 / median) "
                      "between repeated calls: rerun on an idle machine, with more repeats, or at 1 thread")
    return {"verdict": "noisy" if noisy or busy else "steady", "gemm_drift": drift, "scaling": scaling,
            "advice": "; ".join(advice)}


def _file_mb(path: Path) -> float:
    return path.stat().st_size / 2**20


def _state_mb(module: nn.Module, tmp: Path, name: str) -> float:
    """Size of the module's weights as saved: safetensors, or torch's format for quantized (packed) weights."""
    state = module.state_dict()
    plain = all(isinstance(v, torch.Tensor) and not v.is_quantized for v in state.values())
    path = tmp / f"{name}.{'safetensors' if plain else 'pt'}"
    if plain:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return _file_mb(path)


def transformers_twin(model: MobileBertModel) -> nn.Module | None:
    """transformers' MobileBertModel holding the same weights (None if transformers is absent)."""
    try:
        import transformers
    except ImportError:
        return None
    from ..checkpoint import to_hf_state_dict

    cfg = model.config
    if cfg.model_type != "mobilebert":
        return None
    hf = transformers.MobileBertModel(transformers.MobileBertConfig(**cfg.to_dict()),
                                      add_pooling_layer=model.pooler is not None).eval()
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(model), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing:
        log.warning("transformers twin: %d weights not loaded (%s); skipping it", len(missing), missing[:3])
        return None
    return hf


def phone_unavailable(name: str) -> str | None:
    """Why phone backend ``name`` cannot run here (with the install line), or None when its packages import."""
    missing, package = missing_packages(name.split("-")[0])
    if not missing:
        return None
    return (f"{', '.join(missing)} not installed: `pip install {package}` (or `make mobile-venv` and run "
            ".venv-mobile/bin/mobilebert)")


class _ExecuTorchPrograms:
    """The ExecuTorch programs a bench has loaded, all at one XNNPACK thread count.

    XNNPACK's pool is process-wide, and a loaded program's XNNPACK runtime keeps a pointer to it: resizing the
    pool (``_unsafe_reset_threadpool``) under a loaded program leaves that pointer dangling (measured: "double
    free or corruption" when the programs are freed). So a change of thread count first drops every program,
    then resizes the pool, then loads again on demand; it happens in the untimed warm-up of a grid point.
    """

    def __init__(self) -> None:
        self.threads: int | None = None
        self.loaded: dict[Path, Callable] = {}

    def get(self, path: Path, names: list[str], threads: int) -> Callable:
        from executorch.extension.pybindings import portable_lib

        from .mobile import ExecuTorchModel

        if threads != self.threads:
            self.release()
            portable_lib._unsafe_reset_threadpool(threads)
            self.threads = threads
        if path not in self.loaded:
            self.loaded[path] = ExecuTorchModel(path, names)
        return self.loaded[path]

    def release(self) -> None:
        self.loaded.clear()
        gc.collect()


_EXECUTORCH = _ExecuTorchPrograms()


class _ExecuTorchAt:
    """An ExecuTorch backend at one thread count: the program exported for the inputs' (batch, seq)."""

    def __init__(self, files: dict[tuple[int, int], Path], names: list[str], threads: int) -> None:
        self.files, self.names, self.threads = files, names, threads

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        program = _EXECUTORCH.get(self.files[tuple(input_ids.shape)], self.names, self.threads)
        return program(input_ids, attention_mask)


class _ByShape:
    """Phone files have static shapes: call the one exported for the inputs' (batch, seq)."""

    def __init__(self, by_shape: dict[tuple[int, int], Callable]) -> None:
        self.by_shape = by_shape

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        return self.by_shape[tuple(input_ids.shape)](input_ids, attention_mask)


def _phone_backend(enc: MobileBertModel, name: str, tmp: Path, threads: tuple[int, ...],
                   shapes: tuple[tuple[int, int], ...]) -> tuple[dict[int, Callable], float]:
    """Export ``enc`` to the phone format once per (batch, seq) (parity-checked by the exporter) and load it at
    each thread count: {threads -> callable}, size in MB of the first file."""
    from . import mobile

    fmt, q = name.split("-")
    if not shapes:
        raise ValueError("no (batch, seq) shapes to export the phone files for")
    files = {}
    for b, s_ in shapes:
        path = tmp / f"{name}-b{b}-s{s_}.{'tflite' if fmt == 'litert' else 'pte'}"
        export = mobile.export_litert if fmt == "litert" else mobile.export_executorch
        files[b, s_] = export(enc, path, int8=q == "int8", seq_len=s_, batch=b)
    names = output_names(enc)  # the exported graph's outputs, in order
    if fmt == "litert":
        runs = {t: _ByShape({k: mobile.LiteRTModel(f, names, threads=t) for k, f in files.items()})
                for t in threads}
    else:  # loaded on first call (the pool must be sized before a program loads)
        runs = {t: _ExecuTorchAt(files, names, t) for t in threads}
    return runs, _file_mb(next(iter(files.values())))


class _Skip(Exception):
    """A backend that does not apply here; the message says why."""


def _openvino_backend(enc: MobileBertModel, name: str, names: tuple[str, ...], tmp: Path, threads: tuple[int, ...]
                      ) -> tuple[dict[int, Callable], float]:
    """The IR exported from ``enc`` once for every OpenVINO row (int8 when ``openvino-int8`` is asked for), run
    at each thread count: f32 forced, bf16, or int8 with its float parts in bf16 where the CPU has it natively."""
    from . import openvino as ov
    from .gate import default_tokenizer

    ov.require("openvino")
    calibrates = default_tokenizer(enc.config) is not None
    if name == "openvino-int8" and not calibrates:
        raise _Skip("int8 calibration needs the model's tokenizer (its vocab is not BERT's); "
                    "use `mobilebert export --format openvino --int8` on the checkpoint folder")
    out = tmp / "openvino"
    if not out.exists():
        ov.export_openvino(copy.deepcopy(enc), out, int8="openvino-int8" in names and calibrates)
    int8, precision = name == "openvino-int8", "f32" if name == "openvino-f32" else "bf16"
    runs = {t: ov.OpenVinoModel(out, threads=t, int8=int8, precision=precision) for t in threads}
    if name == "openvino-bf16" and next(iter(runs.values())).precision != "bf16":
        raise _Skip("this CPU has no native bf16: OpenVINO runs the bf16 hint as f32 (the openvino-f32 row)")
    return runs, _file_mb(out / ov.FILES[int8].replace(".xml", ".bin"))


def build_backends(model: nn.Module, names: tuple[str, ...], tmp: Path, threads: tuple[int, ...],
                   shapes: tuple[tuple[int, int], ...] = ()
                   ) -> tuple[dict[str, dict[int, Callable]], dict[str, float], dict[str, str]]:
    """name -> {threads -> callable(input_ids, attention_mask)}, sizes in MB, and skipped backends. ``shapes``:
    the (batch, seq) pairs the phone backends are exported for (their files have static shapes)."""
    enc: MobileBertModel = model if isinstance(model, MobileBertModel) else model.mobilebert
    enc = enc.eval()
    runs: dict[str, dict[int, Callable]] = {}
    sizes: dict[str, float] = {}
    skipped: dict[str, str] = {}

    def same_for_all(fn: Callable) -> dict[int, Callable]:
        return dict.fromkeys(threads, fn)

    for name in names:
        try:
            if name == "eager":
                runs[name], sizes[name] = same_for_all(enc), _state_mb(enc, tmp, name)
            elif name in ("optimized", "bf16"):
                fast = optimize_for_inference(enc, dtype=torch.bfloat16 if name == "bf16" else torch.float32)
                runs[name], sizes[name] = same_for_all(fast), _state_mb(fast, tmp, name)
            elif name == "torch-int8":
                from .quantize import quantize_torch

                q = quantize_torch(enc)
                runs[name], sizes[name] = same_for_all(q), _state_mb(q, tmp, name)
            elif name in ("ort-fp32", "ort-int8"):
                from .onnx import OnnxModel, export_onnx

                out = tmp / "onnx"
                if not out.exists():
                    export_onnx(copy.deepcopy(enc), out, int8="ort-int8" in names)
                file = out / ("model.int8.onnx" if name == "ort-int8" else "model.onnx")
                runs[name] = {t: OnnxModel(file, threads=t) for t in threads}
                sizes[name] = _file_mb(file)
            elif name in OPENVINO_BACKENDS:
                runs[name], sizes[name] = _openvino_backend(enc, name, names, tmp, threads)
            elif name in PHONE_BACKENDS:
                why = phone_unavailable(name)
                if why:
                    skipped[name] = why
                    continue
                try:
                    runs[name], sizes[name] = _phone_backend(enc, name, tmp, threads, shapes)
                except ValueError as e:  # e.g. a seq below the phone exporters' minimum of 3
                    skipped[name] = str(e)
            elif name == "transformers":
                hf = transformers_twin(enc)
                if hf is None:
                    skipped[name] = "transformers not installed or not a MobileBERT config"
                    continue
                runs[name], sizes[name] = same_for_all(hf), _state_mb(hf, tmp, name)
            else:
                raise ValueError(f"unknown backend {name!r}; choose from {', '.join(ALL_BACKENDS)}")
        except _Skip as e:
            skipped[name] = str(e)
        except (ImportError, RuntimeError) as e:  # a backend that cannot run here is reported, not fatal
            skipped[name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log.warning("backend %s skipped: %s", name, skipped[name])
    return runs, sizes, skipped


# ----------------------------------------------------------------------------- the grid
def run_bench(model: nn.Module, cfg: BenchConfig | None = None, progress: bool = True) -> BenchResult:
    """Time every backend on every grid point (interleaved), plus GEMM rates and sizes."""
    return compare_models({"model": model}, cfg, progress)["model"]


def compare_models(models: dict[str, nn.Module], cfg: BenchConfig | None = None, progress: bool = True
                   ) -> dict[str, BenchResult]:
    """``run_bench`` for several models at once, every (model, backend) pair interleaved in one loop on the same
    inputs, so that ratios between models (a student against its teacher) are measured under the same load."""
    cfg = cfg or BenchConfig()
    encs = {k: (m if isinstance(m, MobileBertModel) else m.mobilebert) for k, m in models.items()}
    machine = {"cpu": cpu_description(), "torch": torch.__version__, "cores": str(os.cpu_count())}
    results = {k: BenchResult(machine=dict(machine)) for k in models}
    vocab = min(e.config.vocab_size for e in encs.values())
    positions = min(e.config.max_position_embeddings for e in encs.values())
    points = [(t, b, s) for t in cfg.threads for b in cfg.batches for s in cfg.seqs if s <= positions]
    shapes = tuple(dict.fromkeys((b, s) for _, b, s in points))
    saved_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="mobilebert-bench-") as d:
        runs: dict[tuple[str, str], dict[int, Callable]] = {}
        for k, m in models.items():
            (Path(d) / k).mkdir()
            model_runs, results[k].sizes_mb, results[k].skipped = build_backends(m, cfg.backends, Path(d) / k,
                                                                                 cfg.threads, shapes)
            runs.update({(k, n): fns for n, fns in model_runs.items()})
            for s_ in cfg.seqs:
                results[k].flops_per_seq[s_] = model_flops(encs[k], s_)
        before = {t: gemm_rate("fp32", t) for t in _with_one(cfg.threads)}
        bar = Progress(points, desc="bench", disable=not progress)
        for t, b, s in bar:
            torch.set_num_threads(t)
            ids = torch.randint(1, vocab, (b, s))
            mask = torch.ones_like(ids)
            with torch.inference_mode():
                times = interleaved({n: (lambda f=fns[t], x=ids, m=mask: f(input_ids=x, attention_mask=m))
                                     for n, fns in runs.items()}, cfg.repeats)
            for (k, n), ts in times.items():
                med, p90 = median_p90(ts)
                results[k].rows.append({"backend": n, "threads": t, "batch": b, "seq": s, "median_ms": med,
                                        "p90_ms": p90})
        after = {t: gemm_rate("fp32", t) for t in _with_one(cfg.threads)}
        rates = floor_rates(cfg.threads)
        for r in results.values():
            r.gemm_gflops.update(rates)
        all_rows = [row for r in results.values() for row in r.rows]
        verdict = assess_steadiness(all_rows, before, after)  # one verdict: the models ran interleaved
        for r in results.values():
            r.steadiness = verdict
        if verdict["advice"]:
            log.warning("bench: timings are %s: %s", verdict["verdict"], verdict["advice"])
        _EXECUTORCH.release()  # before their files go
    torch.set_num_threads(saved_threads)
    return results


def _with_one(threads: tuple[int, ...]) -> tuple[int, ...]:
    """The thread counts plus 1: the 1-thread GEMM rate is the yardstick of thread scaling."""
    return tuple(sorted({1, *threads}))


# ----------------------------------------------------------------------------- raw text -> label
class _OneTextPerCall:
    """Calls ``fn(text)`` with the next of ``texts`` each time, and keeps the process CPU seconds it used (all
    threads) beside the wall seconds: their ratio is how many cores the path really keeps busy. Every path
    wrapped alike and called in the same round-robin sees the same string in the same round."""

    def __init__(self, fn: Callable[[str], object], texts: list[str]) -> None:
        self.fn, self.texts, self.i, self.cpu_s, self.wall_s = fn, texts, 0, 0.0, 0.0

    def __call__(self) -> object:
        text = self.texts[self.i % len(self.texts)]
        self.i += 1
        c, w = time.process_time(), time.perf_counter()
        out = self.fn(text)
        self.cpu_s += time.process_time() - c
        self.wall_s += time.perf_counter() - w
        return out


OUR_PIPELINE = "our pipeline"


def bench_text_classifier(model_dir: str | os.PathLike, texts: list[str], seq_len: int = 128,
                          threads: tuple[int, ...] = (1, 2), repeats: int = 20,
                          int8: tuple[bool, ...] = (False, True)) -> dict:
    """Raw text -> label, one string per call, as an app classifies: MediaPipe's ``TextClassifier`` on
    ``--format mediapipe`` files (fp32, int8) against our Python pipeline (our tokenizer + eager PyTorch +
    softmax, right-padded to ``seq_len`` like MediaPipe's input), on the same strings, interleaved, medians.

    MediaPipe's Python API has no thread setting (on Linux its XNNPACK runs one thread); its rows are timed at
    every count in ``threads`` all the same, and ``cores_busy`` (process CPU time / wall time) says what each
    path really used. ``labels_agree``: on how many of ``texts`` each file's top label equals ours.
    """
    from ..load import load_model
    from .mediapipe import (
        MediaPipeText,
        TextPipeline,
        checkpoint_tokenizer,
        export_mediapipe,
        label_names,
        task_of,
    )

    model = load_model(model_dir).eval()
    if task_of(model) != "classifier":
        raise ValueError(f"{model_dir}: an encoder, not a sequence classifier; the raw text -> label row runs "
                         "MediaPipe's TextClassifier")
    ours = TextPipeline(model, checkpoint_tokenizer(model_dir, model.config.vocab_size), "classifier", seq_len)
    labels = label_names(model_dir, model)
    saved_threads = torch.get_num_threads()
    out: dict = {"cpu": cpu_description(), "model": str(model_dir), "seq_len": seq_len, "texts": len(texts),
                 "repeats": repeats, "baseline": OUR_PIPELINE, "rows": [], "sizes_mb": {}, "labels_agree": {}}
    with tempfile.TemporaryDirectory(prefix="mobilebert-e2e-") as d:
        tasks: dict[str, MediaPipeText] = {}
        try:
            for q in int8:
                kind = "int8" if q else "fp32"
                name = f"MediaPipe TextClassifier {kind}"
                file = export_mediapipe(model_dir, Path(d) / f"{kind}.tflite", int8=q, seq_len=seq_len).path
                tasks[name], out["sizes_mb"][name] = MediaPipeText(file, "classifier"), _file_mb(file)
            torch.set_num_threads(min(threads))
            ref = ours(texts).argmax(1)
            for name, task in tasks.items():
                out["labels_agree"][name] = int((task(texts).argmax(1) == ref).sum())
            for t in threads:
                torch.set_num_threads(t)
                paths: dict[Hashable, _OneTextPerCall] = {
                    OUR_PIPELINE: _OneTextPerCall(lambda x: labels[int(ours([x])[0].argmax())], texts),
                    **{n: _OneTextPerCall(lambda x, task=task: task.labels([x])[0], texts)
                       for n, task in tasks.items()}}
                times = interleaved(paths, repeats)
                base = median_p90(times[OUR_PIPELINE])[0]
                for n, ts in times.items():
                    med, p90 = median_p90(ts)
                    out["rows"].append({"path": n, "threads": t, "median_ms": med, "p90_ms": p90,
                                        "x_baseline": base / med, "cores_busy": paths[n].cpu_s / paths[n].wall_s})
        finally:
            for task in tasks.values():
                task.close()
            torch.set_num_threads(saved_threads)
    return out


def format_text_table(res: dict) -> str:
    """One line per path and thread count: median, p90, speed-up against our pipeline, cores busy, size."""
    lines = [f"raw text -> label, one string per call, seq {res['seq_len']}, {res['texts']} strings, "
             f"CPU {res['cpu']}",
             f"{'path':<34}{'thr':>4}{'median ms':>11}{'p90 ms':>9}{'x ' + res['baseline']:>16}{'cores busy':>12}"
             f"{'size MB':>9}"]
    for r in res["rows"]:
        lines.append(f"{r['path']:<34}{r['threads']:>4}{r['median_ms']:>11.2f}{r['p90_ms']:>9.2f}"
                     f"{r['x_baseline']:>16.2f}{r['cores_busy']:>12.2f}{res['sizes_mb'].get(r['path'], 0):>9.1f}")
    lines += [f"{n}: top label equals ours on {k}/{res['texts']}" for n, k in res["labels_agree"].items()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- reporting
def format_table(res: BenchResult, baseline: str = "transformers") -> str:
    """One line per backend and grid point: median, p90, speed-up against ``baseline`` (else eager)."""
    base = baseline if any(r["backend"] == baseline for r in res.rows) else "eager"
    lines = [f"{'backend':<16}{'thr':>4}{'batch':>6}{'seq':>5}{'median ms':>11}{'p90 ms':>9}{'x ' + base:>16}"
             f"{'size MB':>9}"]
    noise = {(r["backend"], r["threads"], r["batch"], r["seq"]) for r in res.rows if r.get("noise")}
    for r in res.rows:
        b = res.latency(base, r["threads"], r["batch"], r["seq"])
        ratio = f"{b / r['median_ms']:.2f}" if b else "-"
        if noise & {(r["backend"], r["threads"], r["batch"], r["seq"]), (base, r["threads"], r["batch"], r["seq"])}:
            ratio = "noise"
        lines.append(f"{r['backend']:<16}{r['threads']:>4}{r['batch']:>6}{r['seq']:>5}{r['median_ms']:>11.2f}"
                     f"{r['p90_ms']:>9.2f}{ratio:>16}{res.sizes_mb.get(r['backend'], 0):>9.1f}")
    for n, why in res.skipped.items():
        lines.append(f"{n}: skipped ({why})")
    rates = ", ".join(f"{k} {v:.0f}" for k, v in res.gemm_gflops.items())
    lines.append(f"GEMM GFLOP/s ({PEAK_GEMM[0]}x{PEAK_GEMM[1]} @ {PEAK_GEMM[1]}x{PEAK_GEMM[2]}): {rates}")
    if res.steadiness.get("advice"):
        lines.append(f"timings {res.steadiness['verdict']}, rows marked noise are not results: "
                     f"{res.steadiness['advice']}")
    return "\n".join(lines)


def plot(res: BenchResult, path: str | os.PathLike, threads: int, batch: int, seq: int) -> Path | None:
    """Latency against size on disk, one point per backend at one grid point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(n, res.sizes_mb[n], res.latency(n, threads, batch, seq)) for n in res.sizes_mb]
    pts = [p for p in pts if p[2] is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, size, lat in pts:
        ax.scatter(size, lat)
        ax.annotate(n, (size, lat), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("size on disk (MB)")
    ax.set_ylabel(f"median latency (ms), batch {batch}, seq {seq}, {threads} threads")
    ax.set_title("MobileBERT inference backends")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def save_json(res: BenchResult, path: str | os.PathLike) -> None:
    atomic_write_text(Path(path), json.dumps(asdict(res), indent=2) + "\n")


def bench_checkpoint(model_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: BenchConfig | None = None
                     ) -> BenchResult:
    """``mobilebert bench``: load a checkpoint, run the grid, write bench.json and bench.png into out_dir."""
    from ..load import load_model

    model = load_model(model_dir)
    cfg = cfg or BenchConfig()
    res = run_bench(model, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_json(res, out / "bench.json")
    seq = 128 if 128 in cfg.seqs else cfg.seqs[0]
    plot(res, out / "bench.png", threads=max(cfg.threads), batch=min(cfg.batches), seq=seq)
    return res


__all__ = ["ALL_BACKENDS", "OPENVINO_BACKENDS", "PEAK_GEMM", "PHONE_BACKENDS", "BenchConfig", "BenchResult",
           "assess_steadiness", "bench_checkpoint", "bench_text_classifier", "cpu_description", "floor_rates",
           "format_table", "format_text_table", "gemm_rate", "has_vnni", "interleaved", "median_p90", "model_flops",
           "phone_unavailable", "plot", "run_bench", "save_json", "transformers_twin"]
