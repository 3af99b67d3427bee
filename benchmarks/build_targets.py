"""Issue 21's ``mobilebert build`` targets, on files made from ../shared/data (benchmarks/own_data_files.py):

* ``sst2``: SST-2 as a user's CSV (``text,label``, string labels), 40,000 training rows, 1 epoch per stage: the
  student within 2 points of its teacher; its int8 MediaPipe file at most 8 MB and at least 3x as fast as the
  teacher's fp32 in the same runtime (LiteRT, interleaved in build's own latency table); the command's time.
* ``tags``: the WikiText tagging set (numbers, capitalised names; CoNLL), teacher 2 epochs, student 8: the distilled
  student's entity F1 within 2 points of its fine-tuned teacher.

``--run`` makes the files and runs the build (in .venv-mobile, so that the MediaPipe file is written); without it
the results of an earlier run in ``--out`` are read. Either way the targets are checked and the JSON written.

    .venv-mobile/bin/python benchmarks/build_targets.py sst2 --run     # ~35 min on 2 cores
    .venv-mobile/bin/python benchmarks/build_targets.py tags --run     # ~25 min
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "runs" / "owndata"
BUILDS = {
    "sst2": ["--task", "text-classification", "--train", str(DATA / "sst2_train.csv"), "--validation",
             str(DATA / "sst2_dev.csv"), "--max-train-examples", "40000", "--teacher-epochs", "1",
             "--student-epochs", "1"],
    "tags": ["--task", "token-classification", "--train", str(DATA / "tags_train.conll"), "--validation",
             str(DATA / "tags_dev.conll"), "--teacher-epochs", "2", "--student-epochs", "8"],
}
STAGES = ("teacher", "student", "evaluate", "app", "report")


def stage(out: Path, name: str) -> dict:
    return json.loads((out / name / "stage.json").read_text(encoding="utf-8"))


def checks(which: str, out: Path) -> tuple[dict, list[tuple[str, float, str, bool]]]:
    ev, app = stage(out, "evaluate"), stage(out, "app")
    teacher, student = ev["scores"]["teacher pytorch"]["score"], ev["scores"]["student pytorch"]["score"]
    found = [("student - teacher (points)", student - teacher, ">= -2", student - teacher >= -2)]
    if which == "sst2":
        ms = {(r["model"], r["format"]): r["median_ms"] for r in ev["latency"]}
        size = app["sizes_mb"].get("mediapipe")
        speed = ms[("teacher", "litert-fp32")] / ms[("student", "litert-int8" if ev["int8_kept"] else "litert-fp32")]
        found += [("MediaPipe file (MB)", size, "<= 8", size is not None and size <= 8),
                  ("student int8 vs teacher fp32, LiteRT (x)", speed, ">= 3", speed >= 3)]
    seconds = {s: stage(out, s)["seconds"] for s in STAGES}
    return {"teacher": teacher, "student": student, "stage_seconds": seconds,
            "total_minutes": sum(seconds.values()) / 60, "evaluate": ev, "app": app}, found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("which", choices=sorted(BUILDS))
    p.add_argument("--run", action="store_true", help="make the files and run the build first")
    p.add_argument("--out", type=Path, default=None, help="the build folder (default: runs/build-WHICH)")
    p.add_argument("--wall", type=float, default=None, help="the command's wall seconds, when run by hand")
    a = p.parse_args()
    out = a.out or REPO / "runs" / f"build-{a.which}"
    args = ["build", *BUILDS[a.which], "--out", str(out)]
    wall = a.wall
    if a.run:
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "own_data_files.py"), str(DATA)], check=True)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mobilebert", *args], check=True)
        wall = time.perf_counter() - t
    res, found = checks(a.which, out)
    for name, value, need, ok in found:
        print(f"{'MET ' if ok else 'MISS'}  {name}: {value:.2f} (need {need})")
    print(f"stages (s): {res['stage_seconds']}; whole command {res['total_minutes']:.1f} min")
    record = {"command": "mobilebert " + " ".join(args).replace(str(REPO) + "/", ""), "wall_seconds": wall, **res,
              "checks": [{"name": n, "value": v, "need": r, "met": ok} for n, v, r, ok in found]}
    path = REPO / "benchmarks" / "results" / f"build_{a.which}.json"
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
