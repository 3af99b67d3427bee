"""``mobilebert evaluate``: score a fine-tuned model on dev splits, or write GLUE-server files for test splits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.tasks import task_name
from ..finetune.evaluate import evaluate_checkpoint
from ..options import option
from ..sanity import score_notes


@dataclass
class EvaluateConfig:
    """Every setting of ``mobilebert evaluate``."""

    model: str = option(help="a folder written by `mobilebert finetune` (seed-N/best)", path="model")
    data: str = option(help="GLUE root (or task folder), or a SQuAD dev JSON / its folder", path="exists")
    task: str | None = option(None, help="only needed for checkpoints without finetune.json")
    split: list[str] = option(factory=list, help="split(s) to run, e.g. dev, test, dev_mismatched (default: every "
                              "dev split)")
    out: str | None = option(None, help="folder for eval_results.json, GLUE-server files or SQuAD predictions",
                             output="file")
    batch_size: int = option(64, help="examples per forward pass", at_least=1, affects_result=False)
    limit: int | None = option(None, help="first N examples only", at_least=1)
    allow_untrained_head: bool = option(False, help="score a checkpoint whose task head was never trained "
                                        "(chance-level scores; refused without this flag)")

    def check(self) -> None:
        if self.task is not None:
            self.task = task_name(self.task)


def run(cfg: EvaluateConfig) -> dict[str, Any]:
    """Score, print one line per split (and a note when a score is at chance), return the results."""
    results = evaluate_checkpoint(cfg.model, cfg.data, task=cfg.task, splits=cfg.split or None,
                                  batch_size=cfg.batch_size, out_dir=cfg.out, limit=cfg.limit)
    for split, metrics in results.items():
        if isinstance(metrics, dict):
            print(f"{split}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                           for k, v in metrics.items()))
    for note in score_notes(results["task"], results, cfg.data, cfg.limit):  # a score at chance says so
        print(f"note: {note}")
    return results
