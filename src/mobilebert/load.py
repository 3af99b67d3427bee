"""The model a checkpoint folder describes, built with its head: one function every loader asks.

It sits above ``modeling`` and ``checkpoint`` (``modeling.from_pretrained`` calls into ``checkpoint``, so choosing
the class cannot live there without an import cycle); what the folder holds comes from ``checkpoint.inspect``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from torch import nn

from .checkpoint import HEAD_CLASSES, CheckpointError, inspect
from .modeling import MODEL_CLASSES

log = logging.getLogger(__name__)


def load_model(path: str | os.PathLike, head: str | None = None, labels: Sequence[str] | None = None,
               **config_overrides: Any) -> nn.Module:
    """The model of a checkpoint folder, in eval mode.

    ``head=None``: the class of the checkpoint's own head (:func:`inspect`), every weight required; a missing
    one is an error, since an export or a teacher with a freshly initialised head would silently compute noise.
    ``head`` given (a key of ``HEAD_CLASSES``): that class, for training; the checkpoint's head is kept when it
    has one, and for ``"classifier"`` with ``labels`` only when its labels are the same (else a fresh head with
    ``len(labels)`` outputs: one is regression). ``config_overrides`` change the saved config (e.g. dropout)."""
    info = inspect(path)
    if head is None:
        cls = MODEL_CLASSES[info.model_class]
        model = cls.from_pretrained(path, **config_overrides)
        missing = model.loading_info["missing_keys"]
        if missing:
            raise CheckpointError(f"{path}: checkpoint does not match {cls.__name__}: {len(missing)} weights "
                                  f"missing, e.g. {', '.join(missing[:3])}")
        return model
    if head not in HEAD_CLASSES:
        raise ValueError(f"head must be one of {', '.join(HEAD_CLASSES)}, got {head!r}")
    cls = MODEL_CLASSES[HEAD_CLASSES[head]]
    if head != "classifier" or labels is None:
        return cls.from_pretrained(path, **config_overrides)  # a missing head is initialised fresh (logged)
    id2label = dict(enumerate(labels))
    saved = info.config
    model = cls.from_pretrained(path, num_labels=saved.num_labels, id2label=saved.id2label, **config_overrides)
    had_head = not any(k.startswith("classifier.") for k in model.loading_info["missing_keys"])
    if had_head and saved.id2label == id2label:
        log.info("%s: keeping the checkpoint's classifier head (labels %s)", path, list(labels))
        return model
    if had_head:
        log.info("%s: the checkpoint's head (labels %s) is replaced by a fresh one (labels %s)", path,
                 saved.id2label, list(labels))
    model.config = model.config.replace(num_labels=len(labels), id2label=id2label)
    model.classifier = nn.Linear(model.config.hidden_size, len(labels))
    model._init_module(model.classifier)
    return model
