"""Where ``optimize_for_inference(dtype=torch.bfloat16)`` spends its time (issue 22, item 2), measured without
``torch.profiler``, which distorts this path (it made the bf16 ``addmm`` look slower than fp32's, the opposite of
un-profiled timing).

For each precision (fp32, bf16) and batch: full MobileBERT (random weights), seq 128, 2 threads.

1. ``forward``: median wall time of the whole call.
2. ``replay``: every ATen op the forward calls, recorded once (a ``TorchDispatchMode``), then each distinct call
   (op + shapes) re-run alone 50 times; median x how often the forward calls it, summed by op. The ops that add
   up to the forward are the ones to fix; what the replay misses is Python between the ops.
3. ``kernels``: one forward under oneDNN's verbose mode, whose lines give each primitive's kernel and execution
   time: the GEMMs' own time, against the ``addmm`` wall time of the replay (the difference is PyTorch's per-call
   work around each oneDNN GEMM: bias copy, primitive lookup, scratchpad).

    python benchmarks/bf16_breakdown.py                   # ~2 min; benchmarks/results/bf16_breakdown.json
    python benchmarks/bf16_breakdown.py --layers 2 --out /tmp/b.json   # does it run?
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mobilebert import MobileBertConfig, MobileBertModel
from mobilebert.atomic import atomic_write_text
from mobilebert.deploy.bench import cpu_description
from mobilebert.deploy.optimize import optimize_for_inference

OUT = Path(__file__).resolve().parent / "results" / "bf16_breakdown.json"


def median_ms(fn, n: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


class _Recorder(TorchDispatchMode):
    """Every ATen call of a forward: (op name, a replayable closure)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple, object]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        shapes = tuple(tuple(a.shape) if isinstance(a, torch.Tensor) else a for a in args
                       if not isinstance(a, (list, tuple)))
        self.calls.append((str(func.overloadpacket.__name__), (str(func), shapes),
                           lambda f=func, a=args, k=kwargs: f(*a, **k)))
        return out


def replay(model, ids: torch.Tensor, repeats: int = 50) -> dict[str, float]:
    """ms per forward by ATen op: each distinct call timed alone, times how often the forward makes it."""
    rec = _Recorder()
    with rec:
        model(ids)
    groups: dict[tuple, list] = defaultdict(list)
    for name, key, call in rec.calls:
        groups[key].append((name, call))
    by_op: Counter = Counter()
    for calls in groups.values():
        name, call = calls[0]
        by_op[name] += median_ms(call, repeats) * len(calls)
    by_op["(calls)"] = float(len(rec.calls))
    return dict(by_op.most_common())


def onednn_kernels(model, ids: torch.Tensor) -> dict[str, float]:
    """ms and count per (primitive, kernel) of one forward, read off oneDNN's verbose lines (C stdout)."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as f:
        os.dup2(f.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                model(ids)
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        f.seek(0)
        lines = [x.strip().split(",") for x in f if ",exec," in x and x.startswith("onednn_verbose")]
    out: Counter = Counter()
    for p in lines:
        at = p.index("exec")
        key = f"{p[at + 2]} {p[at + 3]}"  # primitive kind, kernel
        out[f"{key} ms"] += float(p[-1])
        out[f"{key} calls"] += 1
    return dict(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    enc = MobileBertModel(MobileBertConfig.from_preset("mobilebert", vocab_size=30522,
                                                       num_hidden_layers=a.layers)).eval()
    rows = []
    with torch.inference_mode():
        for dtype in (torch.float32, torch.bfloat16):
            fast = optimize_for_inference(enc, dtype=dtype)
            for b in a.batches:
                ids = torch.randint(1, 30522, (b, 128))
                row = {"dtype": str(dtype).split(".")[-1], "batch": b,
                       "forward_ms": median_ms(lambda f=fast, x=ids: f(x), a.runs),
                       "replay_ms": replay(fast, ids), "kernels": onednn_kernels(fast, ids)}
                row["replay_sum_ms"] = sum(v for k, v in row["replay_ms"].items() if k != "(calls)")
                rows.append(row)
                top = ", ".join(f"{k} {v:.1f}" for k, v in list(row["replay_ms"].items())[:7] if k != "(calls)")
                gemm = sum(v for k, v in row["kernels"].items() if k.startswith("matmul") and k.endswith(" ms"))
                print(f"{row['dtype']:>8} b{b}: forward {row['forward_ms']:.1f} ms; replayed ops "
                      f"{row['replay_sum_ms']:.1f} ({top}); oneDNN GEMM kernels {gemm:.1f} ms")
    res = {"cpu": cpu_description(), "torch": torch.__version__, "layers": a.layers, "seq": 128,
           "threads": a.threads, "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.out, json.dumps(res, indent=2) + "\n")
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
