"""``mobilebert demo``: the whole system on the bundled sample data, as a list of steps per recipe.

``minilm`` (default) distils the real all-MiniLM-L6-v2 into a MobileBERT student (:mod:`.minilm`); ``ib-bert``
is the paper's recipe, an IB-BERT teacher pre-trained here from scratch (:mod:`.ib_bert`). :mod:`.runner` runs
either and writes ``results.json`` and ``report.md`` (plots from :mod:`.report`). ``fast=True`` shrinks every
step count for the test suite; its numbers mean nothing, and the report and every plot say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import ib_bert, minilm
from .runner import Recipe, run_recipe, summary_table

RECIPES: dict[str, Recipe] = {r.name: r for r in (minilm.RECIPE, ib_bert.RECIPE)}


def run_demo(out_dir: str | Path = "demo_out", fast: bool = False, recipe: str = "minilm", *,
             shipped_model: str | Path | None = None) -> dict[str, Any]:
    """Run every step of ``recipe``; returns (and writes to ``out_dir/results.json``) the numbers the report
    shows. ``shipped_model`` (minilm only): the models/mobilebert-minilm folder, when not the installed copy."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown demo recipe {recipe!r}; choose {' or '.join(RECIPES)}")
    if shipped_model is not None and recipe != "minilm":
        raise ValueError(f"shipped_model is used by the minilm demo only, not {recipe!r}")
    paths = {"shipped": Path(shipped_model)} if shipped_model is not None else {}
    return run_recipe(RECIPES[recipe], out_dir, fast, paths)


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model of a finished demo (its results.json)."""
    return RECIPES[results["recipe"]].summary_rows(results)


__all__ = ["RECIPES", "run_demo", "summary_rows", "summary_table"]
