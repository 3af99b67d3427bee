"""Every deployable format of one fine-tuned classifier: SST-2 dev accuracy, file size and latency.

The question (issue 14): does int8 keep the task accuracy in the files a phone runs? Public reports of other
MobileBERT ports show int8 collapsing (90% -> 49%). Rows: eager fp32 (our pipeline: tokenizer + PyTorch +
softmax), ONNX Runtime int8, LiteRT fp32/int8, ExecuTorch fp32/int8, and MediaPipe fp32/int8 through
``TextClassifier`` on raw text (as an app calls it; also with the app-side normalisation ``app_text``).
Accuracy: the full SST-2 dev set (872), every input right-padded to ``--seq`` (the phone files' fixed shape).
Latency: one sentence per call (batch 1, seq ``--seq``), all backends interleaved, medians; the MediaPipe row is
end to end (raw text -> probabilities, tokenizer included) and so is its reference, our Python pipeline
(tokenizer + eager PyTorch). transformers' eager model on the same weights is the baseline.

Runs in the mobile venv (litert-torch, mediapipe, executorch, onnxruntime):

    .venv-mobile/bin/python benchmarks/mobile_formats.py --model runs/mp_sst2/seed-1/best
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mobilebert.atomic import atomic_write_text
from mobilebert.data.glue import SAMPLE_DIR, read_glue
from mobilebert.deploy import mobile
from mobilebert.deploy.bench import cpu_description, interleaved
from mobilebert.deploy.mediapipe import MediaPipeText, TextPipeline, app_text, export_mediapipe
from mobilebert.deploy.onnx import OnnxModel, export_onnx
from mobilebert.load import load_model
from mobilebert.tokenizer import MobileBertTokenizer

SHARED_GLUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a fine-tuned SST-2 sequence-classification checkpoint folder")
    p.add_argument("--glue", default=str(SHARED_GLUE), help="GLUE folder (default ../shared; else the bundled dev)")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=30, help="interleaved latency rounds")
    p.add_argument("--formats", default="ort,litert,executorch,mediapipe", help="comma-separated subset")
    p.add_argument("--lift-int8-gate", action="store_true", help="also measure int8 phone files that the export's "
                   "'not broken' check (relative error <= INT8_TOL on random ids) refuses")
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "mobile_formats.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.lift_int8_gate:
        mobile.INT8_TOL = float("inf")

    glue_dir = a.glue if (Path(a.glue) / "SST-2").is_dir() else SAMPLE_DIR
    examples = read_glue("sst2", glue_dir, "dev")
    texts, labels = [e.text_a for e in examples], np.array([e.label for e in examples])
    model = load_model(a.model).eval()
    tok = MobileBertTokenizer.from_pretrained(a.model)
    enc = tok(texts, max_length=a.seq, truncation=True, padding="max_length", return_tensors="pt")
    rows = [(enc["input_ids"][i:i + 1], enc["attention_mask"][i:i + 1], enc["token_type_ids"][i:i + 1])
            for i in range(len(texts))]

    tmp = Path(tempfile.mkdtemp(prefix="mobile_formats_"))
    files, export_s, errors = {}, {}, {}

    def timed(name, fn) -> bool:
        t0 = time.perf_counter()
        try:
            files[name] = fn()
        except Exception as e:  # one failing export is a result too; the other formats still run
            errors[name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            print(f"export {name} failed: {errors[name]}", flush=True)
            return False
        export_s[name] = time.perf_counter() - t0
        print(f"exported {name} in {export_s[name]:.0f} s", flush=True)
        return True

    def onnx_int8() -> Path:
        export_onnx(model, tmp / "onnx", int8=True)
        return tmp / "onnx" / "model.int8.onnx"

    formats = set(a.formats.split(","))
    jobs = [("ORT int8", "ort", onnx_int8,
             lambda f: OnnxModel(f.parent, threads=a.threads, int8=True, spin=False))]
    for int8, q in ((False, "fp32"), (True, "int8")):
        jobs += [(f"LiteRT {q}", "litert", lambda int8=int8, q=q: mobile.export_litert(model, tmp / f"m-{q}.tflite",
                                                                                      int8, a.seq),
                  lambda f: mobile.LiteRTModel(f, ["logits"], threads=a.threads)),
                 # ExecuTorch's Python runtime has no thread setting: XNNPACK's default pool
                 (f"ExecuTorch {q}", "executorch", lambda int8=int8, q=q: mobile.export_executorch(
                     model, tmp / f"m-{q}.pte", int8, a.seq), lambda f: mobile.ExecuTorchModel(f, ["logits"])),
                 (f"MediaPipe {q}", "mediapipe", lambda int8=int8, q=q: export_mediapipe(
                     a.model, tmp / f"mp-{q}.tflite", int8, a.seq).path, lambda f: MediaPipeText(f, "classifier"))]
    runners = {name: runner(files[name]) for name, fmt, export, runner in jobs if fmt in formats and timed(name, export)}
    mp = {q: runners.pop(f"MediaPipe {q}") for q in ("fp32", "int8") if f"MediaPipe {q}" in runners}  # raw text in
    ours = TextPipeline(model, tok, "classifier", a.seq)

    # ---- accuracy on the full dev set
    results = {}
    ref = ours(texts)
    results["eager fp32"] = {"pred": ref.argmax(1)}
    for name, run in runners.items():
        with torch.inference_mode():
            results[name] = {"pred": np.array([int(run(*r).logits.argmax()) for r in rows])}
    for q, task in mp.items():
        results[f"MediaPipe {q}"] = {"pred": task(texts).argmax(1)}
        results[f"MediaPipe {q}, app_text"] = {"pred": task([app_text(t) for t in texts]).argmax(1)}
    for r in results.values():
        r["accuracy"] = float((r["pred"] == labels).mean())
        r["changed_vs_fp32"] = int((r["pred"] != ref.argmax(1)).sum())

    # ---- latency, interleaved: one typical sentence per call
    from transformers import AutoModelForSequenceClassification  # the baseline; reads our checkpoints

    hf = AutoModelForSequenceClassification.from_pretrained(a.model).eval()
    i = int(np.argsort([len(t) for t in texts])[len(texts) // 2])
    x, text = rows[i], texts[i]
    calls = {"transformers eager": lambda: hf(*x), "eager fp32": lambda: model(*x),
             **{n: (lambda r=r: r(*x)) for n, r in runners.items()},
             "our pipeline (text -> probs)": lambda: ours([text]),
             **{f"MediaPipe {q} (text -> probs)": (lambda t=t: t([text])) for q, t in mp.items()}}
    with torch.inference_mode():  # 20 ms pauses let ONNX Runtime's and XNNPACK's workers settle
        times = interleaved(calls, a.repeats, warmup=1, settle=0.02)
    ms = {n: statistics.median(v) for n, v in times.items()}
    base = ms["transformers eager"]

    sizes = {n: Path(f).stat().st_size for n, f in files.items()}
    sizes["eager fp32"] = sum(f.stat().st_size for f in Path(a.model).glob("*.safetensors"))
    print(f"\nSST-2 dev ({len(texts)}), model {a.model}, seq {a.seq}, {a.threads} thread(s), CPU {cpu_description()}")
    print(f"{'format':34s} {'accuracy':>9s} {'change':>7s} {'changed':>8s} {'MB':>7s}")
    fp32 = results["eager fp32"]["accuracy"]
    for n, r in results.items():
        size = sizes.get(n.replace(", app_text", ""))
        print(f"{n:34s} {100 * r['accuracy']:8.2f}% {100 * (r['accuracy'] - fp32):+7.2f} {r['changed_vs_fp32']:8d} "
              f"{size / 2**20 if size else float('nan'):7.1f}")
    print(f"\n{'latency (b1, one sentence)':34s} {'median ms':>10s} {'vs transformers':>16s}")
    for n, v in ms.items():
        print(f"{n:34s} {v:10.2f} {base / v:15.2f}x")
    out = {"args": vars(a), "cpu": cpu_description(), "examples": len(texts), "data": str(glue_dir),
           "accuracy": {n: {k: v for k, v in r.items() if k != "pred"} for n, r in results.items()},
           "size_bytes": sizes, "export_seconds": export_s, "export_errors": errors, "latency_ms": ms,
           "latency_vs_transformers": {n: base / v for n, v in ms.items()}}
    atomic_write_text(Path(a.json), json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.json}")
    for t in mp.values():
        t.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
