"""``mobilebert demo``: the whole system on the bundled sample data, as a list of steps per recipe.

``minilm`` (default) distils the real all-MiniLM-L6-v2 into a MobileBERT student (:mod:`.minilm`); ``ib-bert``
is the paper's recipe, an IB-BERT teacher pre-trained here from scratch (:mod:`.ib_bert`). :mod:`.runner` runs
either and writes ``results.json`` and ``report.md`` (plots from :mod:`.report`). ``fast=True`` shrinks every
step count for the test suite; its numbers mean nothing, and the report and every plot say so.

Importing this module stays cheap (the CLI reads :class:`DemoConfig` before any work); a recipe's module, and
torch with it, is imported when it runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..options import option

RECIPES = {"minilm": "minilm", "ib-bert": "ib_bert"}  # recipe name -> its module here


@dataclass
class DemoConfig:
    out: str = option("demo_out", help="output folder: report.md, results.json, plots/ and every checkpoint",
                      output="file")
    fast: bool = option(False, help="tiny step counts (under 2 minutes); numbers not meaningful")
    recipe: str = option("minilm", help="minilm: distil the real all-MiniLM-L6-v2; ib-bert: the paper's recipe, an "
                         "IB-BERT teacher pre-trained here from scratch", choices=RECIPES)
    shipped_model: str | None = option(None, help="the models/mobilebert-minilm folder, where the copy installed "
                                       "with the package is missing (or set $MOBILEBERT_SHIPPED_MODEL); minilm only",
                                       path="model")

    def check(self) -> None:
        if self.shipped_model and self.recipe != "minilm":
            raise ValueError(f"--shipped-model is read by the minilm recipe only, not {self.recipe}")


def get_recipe(name: str) -> Any:
    """The :class:`.runner.Recipe` called ``name``."""
    if name not in RECIPES:
        raise ValueError(f"unknown demo recipe {name!r}; choose {' or '.join(RECIPES)}")
    return importlib.import_module(f".{RECIPES[name]}", __name__).RECIPE


def run_demo(out_dir: str | Path = "demo_out", fast: bool = False, recipe: str = "minilm", *,
             shipped_model: str | Path | None = None) -> dict[str, Any]:
    """Run every step of ``recipe``; returns (and writes to ``out_dir/results.json``) the numbers the report
    shows. ``shipped_model`` (minilm only): the models/mobilebert-minilm folder, when not the installed copy."""
    from .runner import run_recipe

    chosen = get_recipe(recipe)
    if shipped_model is not None and chosen.name != "minilm":
        raise ValueError(f"shipped_model is read by the minilm recipe only, not {recipe}")
    return run_recipe(chosen, out_dir, fast, {"shipped": Path(shipped_model)} if shipped_model else {})


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model of a finished demo (its results.json)."""
    return get_recipe(results["recipe"]).summary_rows(results)


def main(cfg: DemoConfig) -> int:
    from .runner import summary_table

    results = run_demo(cfg.out, fast=cfg.fast, recipe=cfg.recipe, shipped_model=cfg.shipped_model)
    print(summary_table(summary_rows(results)))
    print(f"report: {cfg.out}/report.md")
    return 0


__all__ = ["RECIPES", "DemoConfig", "get_recipe", "main", "run_demo", "summary_rows"]
