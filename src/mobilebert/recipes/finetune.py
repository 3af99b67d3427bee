"""``mobilebert finetune``: fine-tune a checkpoint on a GLUE task, SQuAD or the user's own files (text
classification incl. pairs and multi-label, regression, token classification), once per seed, keep the best epoch.

Reads top to bottom: check the settings (``FinetuneConfig``; on ``resume``, against the run's stored config.yaml)
-> tokenizer, teacher (task distillation) and data -> the teacher's outputs on the training set, once -> for each
seed: the task model (``finetune.load``), the shared trainer (``train.trainer.fit``: AdamW with warm-up and linear
decay, DDP under torchrun, bf16, gradient accumulation, clipping, checkpoints, exact resume) with a dev evaluation
every epoch that keeps the best epoch as a ``from_pretrained`` folder (with finetune.json, so ``evaluate`` and
``predict`` know what it was trained for) -> mean +- std over seeds in ``results.json``.

The pieces live in ``mobilebert.finetune`` (``FinetuneConfig`` and ``train`` in ``finetune/run.py``, which
``mobilebert build`` chains too); this file is the command around them.
"""

from __future__ import annotations

import os
from typing import Any

from ..finetune.run import (  # noqa: F401  (the command's config class and the names callers import from here)
    CONFIG_FILE,
    FinetuneConfig,
    format_summary,
    resumed_config,
    setup_of,
    summarize,
    train,
    train_one_seed,
)


def run(cfg: FinetuneConfig) -> dict[str, Any]:
    """``mobilebert finetune``: train (see :func:`train`), then print the summary and any notes (rank 0)."""
    from ..sanity import finetune_notes

    results = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every process returns the same results
        print(format_summary(results))
        print(f"results: {cfg.out}/results.json")
        for note in finetune_notes(results, cfg.data if cfg.source != "datasets" else None):  # at chance: say so
            print(f"note: {note}")
        for note in results["hparams"].get("notes", []):  # about the data, the teacher, the starting model
            print(f"note: {note}")
    return results
