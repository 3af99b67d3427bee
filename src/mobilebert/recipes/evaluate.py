"""``mobilebert evaluate``: score a fine-tuned model on dev splits or on a labelled file of yours (``--validation``,
read with the columns the model was trained on), or write GLUE-server files for test splits."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any

from ..data.tasks import check_data_settings, task_name
from ..deploy.runtime import BACKENDS
from ..finetune.evaluate import evaluate_checkpoint
from ..options import option
from ..sanity import score_notes


@dataclass
class EvaluateConfig:
    """Every setting of ``mobilebert evaluate``."""

    model: str = option(help="a folder written by `mobilebert finetune` (seed-N/best)", path="model")
    data: str | None = option(None, help="GLUE root (or task folder), or a SQuAD dev JSON / its folder",
                              path="exists")
    validation: str | None = option(None, help="a labelled file of yours (a model fine-tuned with --train): "
                                    "accuracy, F1 per class, confusion matrix (PNG with --out)", path="exists")
    text_column: str | None = option(None, help="column of the text (default: the one the model was trained on)")
    text_pair_column: str | None = option(None, help="column of the second text (default: as trained)")
    label_column: str | None = option(None, help="column of the label (default: as trained)")
    label_separator: str | None = option(None, help="multi-label: separator of a text label column (default: as "
                                         "trained)")
    task: str | None = option(None, help="only needed for checkpoints without finetune.json")
    split: list[str] = option(factory=list, help="split(s) to run, e.g. dev, test, dev_mismatched (default: every "
                              "dev split)")
    out: str | None = option(None, help="folder for eval_results.json, GLUE-server files or SQuAD predictions",
                             output="file")
    batch_size: int = option(64, help="examples per forward pass", at_least=1, affects_result=False)
    limit: int | None = option(None, help="first N examples only", at_least=1)
    allow_untrained_head: bool = option(False, help="score a checkpoint whose task head was never trained "
                                        "(chance-level scores; refused without this flag)")
    backend: str = option("pytorch", choices=BACKENDS, help="the runtime that runs the model, converted as "
                          "`mobilebert export` converts it (same parity gates): pytorch, onnx-fp32/-int8, "
                          "openvino-f32/-bf16/-int8 (needs openvino; int8 also nncf)")

    def check(self) -> None:
        if self.task is not None:
            self.task = task_name(self.task)
        if (self.data is None) == (self.validation is None):
            raise ValueError("give {data} (GLUE, SQuAD) or {validation} (a file of yours), one of them")
        check_data_settings(self)


def run(cfg: EvaluateConfig) -> dict[str, Any]:
    """Score, print one line per split (and a note when a score is at chance), return the results."""
    columns = {"text": cfg.text_column, "text_pair": cfg.text_pair_column, "label": cfg.label_column}
    with tempfile.TemporaryDirectory(prefix="mobilebert-data-") as cache:  # datasets' Arrow copies, then gone
        results = evaluate_checkpoint(cfg.model, cfg.validation or cfg.data, task=cfg.task, splits=cfg.split or None,
                                      batch_size=cfg.batch_size, out_dir=cfg.out, limit=cfg.limit, columns=columns,
                                      label_separator=cfg.label_separator, cache_dir=cache, backend=cfg.backend)
    details = results.get("details", {})
    scores = {k: v for k, v in results.items() if isinstance(v, dict) and k != "details"}
    for split, metrics in scores.items():
        print(f"{split}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in metrics.items()))
    base = next((d["majority_baseline"] for d in details.values() if "majority_baseline" in d), None)
    majority = (base["label"], base["share"]) if base else None
    for note in score_notes(results["task"], scores, cfg.data, cfg.limit, majority):  # a score at chance says so
        print(f"note: {note}")
    if cfg.out and details:
        print(f"per-class report: {cfg.out}/report.json")
    return results
