"""`pip install .` (not editable) into a scratch venv, then `mobilebert demo --fast` from a folder outside the
checkout: the installed copy runs, and it finds the shipped model inside itself (package data), not in models/.

The scratch venv borrows this interpreter's packages (torch and the rest are too big to install per test)
through a .pth line naming their folder; that line is a plain path, so the .pth files there (the editable
install of the checkout) are not read, and nothing is installed into or removed from this environment
(``--ignore-installed``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _copy_checkout(dest: Path) -> Path:
    """What the build reads, so that pip's in-tree build leaves no build/ or egg-info in the checkout."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, dest / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", dest / "src", symlinks=True, ignore=skip)  # the model's link stays a link
    shutil.copytree(REPO / "models", dest / "models", ignore=skip)
    return dest


@pytest.mark.slow
def test_demo_runs_from_a_non_editable_install(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    src = _copy_checkout(tmp_path / "checkout")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--ignore-installed",
                    "--no-cache-dir", str(src)], check=True, env=env, cwd=tmp_path)
    shutil.rmtree(src)  # nothing may be read from the source tree any more

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(py), "-c", "import mobilebert.demo.minilm as m; print(m.__file__); "
                            "print(m.shipped_model())"], check=True, capture_output=True, text=True, env=env,
                           cwd=elsewhere).stdout.split()
    assert all(Path(p).resolve().is_relative_to(site.resolve()) for p in where), where

    run = subprocess.run([str(venv / "bin" / "mobilebert"), "demo", "--fast", "--out", "out"], cwd=elsewhere,
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (elsewhere / "out" / "report.md").is_file()
    results = json.loads((elsewhere / "out" / "results.json").read_text())
    assert Path(results["checkpoints"]["shipped"]).resolve().is_relative_to(site.resolve())
    assert "shipped" in results["sst2_dev_accuracy"]
