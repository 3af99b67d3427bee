"""Issue 22's x86 comparison in one interleaved run: every path of ours against OpenVINO's own conversion of
transformers' model, as speed-ups over transformers eager on the same weights.

Rows (each where its packages import; the others are listed as skipped with the reason):

* ours: optimized PyTorch fp32 and bf16, ONNX Runtime fp32 / int8, OpenVINO IR exported from our optimized
  module (f32 forced, bf16, NNCF int8), LiteRT fp32 / int8 (the mobile venv);
* the peer: ``openvino.convert_model`` of transformers' MobileBertModel as a user would call it, run with f32
  forced (``ov-hf-f32``), at OpenVINO's default precision (``ov-hf-default``: bf16 on a CPU with native bf16),
  and NNCF int8 with the transformer preset OpenVINO's guides give for BERT (``ov-hf-int8``), calibrated on the
  same bundled texts as ours; ``ov-hf-int8-all`` is the same with NNCF's whole-graph scope, the one our export
  uses for NoNorm models (``deploy.openvino.INT8_SCOPE``), so that the int8 rows say what the scope alone buys;
* a probe of one design choice: ``ov-folded-f32`` / ``-bf16`` / ``-int8``, the IR of our *optimized* module
  (NoNorm folded into the GEMMs, projections fused) through the same paths. ``openvino-*`` convert the eager
  graph instead (``deploy.openvino.convert_eager``): in op-level profiles (1 thread, 4 layers, busy machine)
  the folded int8 graph spent 13-17% of its op time in standalone FakeQuantize ops on the residual stream (no
  NoNorm eltwise left to fuse them into), and f32/bf16 ran 0-30% slower folded (6 layers, 1 thread); these
  rows say whether that holds end to end.

All rows run round-robin at each (batch, seq) so that load from other processes hits them alike; medians and
p90 are reported, and each row's distance to its floor: FLOPs / this machine's GEMM rate in that precision,
measured in the same run. The bench's steadiness check (spread of the repeated calls, GEMM rate before and
after, thread scaling) marks rows that are noise; the verdict is in the JSON and printed.

    .venv/bin/python benchmarks/openvino_compare.py                  # full MobileBERT (random weights), ~15 min
    .venv-mobile/bin/python benchmarks/openvino_compare.py --profile --rounds 21   # + LiteRT rows, per-op profiles
    (the mobile venv needs `pip install -c constraints-mobile.txt openvino nncf` for the OpenVINO rows)
    .venv/bin/python benchmarks/openvino_compare.py --model models/mobilebert-minilm --batches 1 --rounds 9
    .venv/bin/python benchmarks/openvino_compare.py --tiny --rounds 2 --out /tmp/ov.json   # does it run?
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mobilebert import MobileBertConfig, MobileBertModel
from mobilebert.atomic import atomic_write_text
from mobilebert.deploy import bench
from mobilebert.deploy.bench import (
    assess_steadiness,
    build_backends,
    cpu_description,
    floor_rates,
    gemm_rate,
    median_p90,
    model_flops,
)
from mobilebert.tokenizer import MobileBertTokenizer

OURS = ("eager", "optimized", "bf16", "ort-fp32", "ort-int8", "openvino-f32", "openvino-bf16", "openvino-int8",
        "litert-fp32", "litert-int8")
PEERS = ("ov-hf-f32", "ov-hf-default", "ov-hf-int8", "ov-hf-int8-all", "ov-folded-f32", "ov-folded-bf16",
         "ov-folded-int8")
BASELINE = "transformers"
PRECISION = {"bf16": "bf16", "openvino-bf16": "bf16", "ov-hf-default": "bf16", "ort-int8": "int8",
             "openvino-int8": "int8", "litert-int8": "int8", "ov-hf-int8": "int8", "ov-hf-int8-all": "int8",
             "ov-folded-int8": "int8", "ov-folded-bf16": "bf16"}
# the rest: fp32
OUT = Path(__file__).resolve().parent / "results" / "openvino_compare.json"


class _Compiled:
    """An OpenVINO compiled model of transformers' MobileBertModel, called like the bench's backends."""

    def __init__(self, compiled) -> None:
        self.request = compiled.create_infer_request()
        self.inputs = set().union(*(i.get_names() for i in compiled.inputs))  # a port may have several names

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        ids = input_ids.numpy()
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids) if attention_mask is None
                 else attention_mask.numpy(), "token_type_ids": np.zeros_like(ids)}
        return self.request.infer({k: v for k, v in feeds.items() if k in self.inputs})


def openvino_own_conversion(enc: MobileBertModel, tokenizer, threads: tuple[int, ...]
                            ) -> tuple[dict[str, dict[int, Callable]], dict[str, str]]:
    """The peer rows: transformers' twin of ``enc`` through ``openvino.convert_model`` (f32 forced, default
    precision) and NNCF int8 at its defaults, calibrated on the bundled texts ours use."""
    import contextlib
    import io

    try:
        import nncf
        import openvino as ov
    except ImportError as e:
        return {}, dict.fromkeys(PEERS, f"{e.name} not installed: `pip install openvino nncf`")
    from mobilebert.deploy import openvino as ovx
    from mobilebert.deploy.openvino import CALIBRATION_TEXTS, calibration_texts
    from mobilebert.deploy.optimize import optimize_for_inference

    hf = bench.transformers_twin(enc)
    if hf is None:
        return {}, dict.fromkeys(PEERS, "transformers not installed or not a MobileBERT config")
    example = tokenizer(["a first example sentence .", "a second one"], padding=True, return_tensors="pt")
    example = {k: example[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        ovm = ov.convert_model(hf, example_input=example)
    samples = []
    for t in calibration_texts(None, CALIBRATION_TEXTS):
        enc_t = tokenizer([t], max_length=128, truncation=True, return_tensors="np")
        samples.append({k: enc_t[k].astype(np.int64) for k in example})
    nncf.set_log_level(40)
    with contextlib.redirect_stdout(io.StringIO()):
        q = nncf.quantize(ovm, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(samples))
        q_all = nncf.quantize(ovm, nncf.Dataset(samples), subset_size=len(samples))
    folded_ir = ovx.convert(optimize_for_inference(enc))
    folded = ovx.quantize_int8(folded_ir, tokenizer, calibration_texts(None, CALIBRATION_TEXTS),
                               scope=ovx.INT8_SCOPE[enc.config.normalization_type])
    core = ov.Core()
    runs: dict[str, dict[int, Callable]] = {}
    for name, model, hint in (("ov-hf-f32", ovm, {"INFERENCE_PRECISION_HINT": "f32"}), ("ov-hf-default", ovm, {}),
                              ("ov-hf-int8", q, {}), ("ov-hf-int8-all", q_all, {}),
                              ("ov-folded-f32", folded_ir, {"INFERENCE_PRECISION_HINT": "f32"}),
                              ("ov-folded-bf16", folded_ir, {"INFERENCE_PRECISION_HINT": "bf16"}),
                              ("ov-folded-int8", folded, {})):
        runs[name] = {t: _Compiled(core.compile_model(model, "CPU", {**hint, "INFERENCE_NUM_THREADS": t,
                                                                      "PERFORMANCE_HINT": "LATENCY"}))
                      for t in threads}
        GRAPHS[name] = (model, hint.get("INFERENCE_PRECISION_HINT"))
    return runs, {}


GRAPHS: dict[str, tuple] = {}  # OpenVINO row -> (IR model or .xml path, precision hint or None): for --profile


def profile_openvino(batch: int, seq: int, threads: int, vocab: int, top: int = 6) -> dict[str, list]:
    """Where each OpenVINO row's time goes: the plugin's per-node counters summed by (node type, kernel), ms per
    call at (batch, seq), the ``top`` largest per row."""
    import openvino as ov

    ids = np.random.default_rng(0).integers(1, vocab, (batch, seq))
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    out: dict[str, list] = {}
    for name, (model, hint) in GRAPHS.items():
        config = {"INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY",
                  **({"INFERENCE_PRECISION_HINT": hint} if hint else {})}
        compiled = ov.Core().compile_model(model, "CPU", config)
        request = compiled.create_infer_request()
        names = set().union(*(i.get_names() for i in compiled.inputs))
        sums: dict[str, float] = {}
        for _ in range(3):  # the last call's counters
            request.infer({k: v for k, v in feeds.items() if k in names})
        for info in request.profiling_info:
            if info.status == info.Status.EXECUTED:
                key = f"{info.node_type} ({info.exec_type})"
                sums[key] = sums.get(key, 0.0) + info.real_time.total_seconds() * 1e3
        total = sum(sums.values())
        out[name] = [("total", total)] + sorted(sums.items(), key=lambda kv: -kv[1])[:top]
    return out


def profile_ort(folder: Path, batch: int, seq: int, threads: int, vocab: int, top: int = 6, calls: int = 5
                ) -> dict[str, list]:
    """The same for the ONNX Runtime rows, from its own profiler: ms per call by op type, summed over nodes."""
    import onnxruntime as ort

    ids = np.random.default_rng(0).integers(1, vocab, (batch, seq))
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    out: dict[str, list] = {}
    for name, file in (("ort-fp32", "model.onnx"), ("ort-int8", "model.int8.onnx")):
        if not (folder / file).is_file():
            continue
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.enable_profiling = threads, True
        so.profile_file_prefix = str(folder / f"profile-{name}")
        session = ort.InferenceSession(str(folder / file), so, providers=["CPUExecutionProvider"])
        for _ in range(2 + calls):  # the warm-up calls are counted too, then divided out below
            session.run(None, feeds)
        trace = Path(session.end_profiling())
        sums: dict[str, float] = {}
        for e in json.loads(trace.read_text(encoding="utf-8")):
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                sums[e["args"]["op_name"]] = sums.get(e["args"]["op_name"], 0.0) + e["dur"] / 1e3 / (2 + calls)
        trace.unlink()
        out[name] = [("total", sum(sums.values()))] + sorted(sums.items(), key=lambda kv: -kv[1])[:top]
    return out


def load(a: argparse.Namespace) -> tuple[MobileBertModel, MobileBertTokenizer, str]:
    if a.model:
        folder = Path(a.model)
        return MobileBertModel.from_pretrained(folder).eval(), MobileBertTokenizer.from_pretrained(folder), str(folder)
    over = dict(num_hidden_layers=2) if a.tiny else {}
    torch.manual_seed(0)
    cfg = MobileBertConfig.from_preset("mobilebert", vocab_size=30522, **over)
    return MobileBertModel(cfg).eval(), MobileBertTokenizer.default(), f"mobilebert{' (2 layers)' if a.tiny else ''}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="an encoder checkpoint folder (default: full MobileBERT, random weights)")
    p.add_argument("--tiny", action="store_true", help="2 layers instead of 24 (a check that the script runs)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    p.add_argument("--rounds", type=int, default=15, help="timed calls per row, interleaved")
    p.add_argument("--out", type=Path, default=OUT, help="JSON results (default: %(default)s)")
    p.add_argument("--profile", action="store_true", help="also print where each OpenVINO and ONNX Runtime row's "
                   "time goes (per op class, each batch, first thread count)")
    a = p.parse_args(argv)
    enc, tok, name = load(a)
    threads = tuple(a.threads)
    points = [(t, b) for t in threads for b in a.batches]
    saved = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="openvino-compare-") as d:
        print("exporting ...", file=sys.stderr)
        runs, sizes, skipped = build_backends(enc, (BASELINE, *OURS), Path(d), threads,
                                              tuple((b, a.seq) for _, b in points))
        peer_runs, peer_skipped = openvino_own_conversion(enc, tok, threads)
        runs.update(peer_runs)
        skipped.update(peer_skipped)
        for row in bench.OPENVINO_BACKENDS:  # profiled as timed: the runner's own file and precision
            if row in runs:
                runner = runs[row][threads[0]]
                GRAPHS[row] = (str(runner.path), runner.precision)
        yardstick = tuple(sorted({1, *threads}))
        before = {t: gemm_rate("fp32", t) for t in yardstick}
        rows: list[dict] = []
        for t, b in points:
            print(f"timing {t} thread(s), batch {b} ...", file=sys.stderr)
            torch.set_num_threads(t)
            ids = torch.randint(1, enc.config.vocab_size, (b, a.seq))
            mask = torch.ones_like(ids)
            with torch.inference_mode():
                times = bench.interleaved({n: (lambda f=fns[t], x=ids, m=mask: f(input_ids=x, attention_mask=m))
                                           for n, fns in runs.items()}, a.rounds)
            for n, ts in times.items():
                med, p90 = median_p90(ts)
                rows.append({"backend": n, "threads": t, "batch": b, "seq": a.seq, "median_ms": med, "p90_ms": p90})
        after = {t: gemm_rate("fp32", t) for t in yardstick}
        rates = floor_rates(threads)
        profile = {b: {**profile_openvino(b, a.seq, threads[0], enc.config.vocab_size),
                       **profile_ort(Path(d) / "onnx", b, a.seq, threads[0], enc.config.vocab_size)}
                   for b in a.batches} if a.profile else {}
    torch.set_num_threads(saved)
    verdict = assess_steadiness(rows, before, after)
    flops = model_flops(enc, a.seq)
    for r in rows:
        base = next((x["median_ms"] for x in rows if x["backend"] == BASELINE and x["threads"] == r["threads"]
                     and x["batch"] == r["batch"]), None)
        r["x_transformers"] = base / r["median_ms"] if base else None
        r["precision"] = PRECISION.get(r["backend"], "fp32")
        floor_ms = flops * r["batch"] / (rates[f"{r['precision']}@{r['threads']}t"] * 1e9) * 1e3
        r["floor_ms"], r["x_floor"] = floor_ms, r["median_ms"] / floor_ms
    res = {"model": name, "cpu": cpu_description(), "machine": platform.machine(), "torch": torch.__version__,
           "seq": a.seq, "rounds": a.rounds, "flops_per_seq": flops, "gemm_gflops": rates, "steadiness": verdict,
           "sizes_mb": sizes, "skipped": skipped, "rows": rows, "profile_ms": profile}
    print(format_rows(res))
    for b, rows_b in profile.items():
        for row, parts in rows_b.items():
            print(f"b{b} {row:<16} " + ", ".join(f"{k} {v:.1f}" for k, v in parts))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.out, json.dumps(res, indent=2) + "\n")
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


def format_rows(res: dict) -> str:
    """One line per row: median, p90, x transformers eager ("noise" when the run says so), floor, x floor."""
    lines = [f"{res['model']}, seq {res['seq']}, {res['rounds']} interleaved rounds, CPU {res['cpu']}",
             f"{'path':<16}{'thr':>4}{'batch':>6}{'median ms':>11}{'p90 ms':>9}{'x transformers':>16}"
             f"{'floor ms':>10}{'x floor':>9}"]
    noisy = {(r["threads"], r["batch"]) for r in res["rows"] if r["noise"] and r["backend"] == BASELINE}
    for r in res["rows"]:
        x = r["x_transformers"]
        ratio = "noise" if r["noise"] or (r["threads"], r["batch"]) in noisy else (f"{x:.2f}" if x else "-")
        lines.append(f"{r['backend']:<16}{r['threads']:>4}{r['batch']:>6}{r['median_ms']:>11.2f}{r['p90_ms']:>9.2f}"
                     f"{ratio:>16}{r['floor_ms']:>10.2f}{r['x_floor']:>9.1f}")
    lines += [f"{n}: skipped ({why})" for n, why in res["skipped"].items()]
    lines.append("GEMM GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in res["gemm_gflops"].items()))
    v = res["steadiness"]
    lines.append(f"timings {v['verdict']}" + (f": {v['advice']}" if v["advice"] else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
