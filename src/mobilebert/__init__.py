"""MobileBERT end to end in PyTorch: models, checkpoints, distillation, fine-tuning, fast inference.

The names below are imported on first use (PEP 562), so ``mobilebert --help`` and a command that stops at a
bad argument answer without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "CheckpointError": "checkpoint",
    "ConfigError": "config",
    "MobileBertConfig": "config",
    "MobileBertForMaskedLM": "modeling",
    "MobileBertForPreTraining": "modeling",
    "MobileBertForQuestionAnswering": "modeling",
    "MobileBertForSequenceClassification": "modeling",
    "MobileBertForTokenClassification": "modeling",
    "MobileBertModel": "modeling",
    "ModelOutput": "modeling",
    "MobileBertTokenizer": "tokenizer",
    "TokenizerError": "tokenizer",
}

__all__ = [
    "CheckpointError",
    "ConfigError",
    "MobileBertConfig",
    "MobileBertForMaskedLM",
    "MobileBertForPreTraining",
    "MobileBertForQuestionAnswering",
    "MobileBertForSequenceClassification",
    "MobileBertForTokenClassification",
    "MobileBertModel",
    "MobileBertTokenizer",
    "ModelOutput",
    "TokenizerError",
]

if TYPE_CHECKING:
    from .checkpoint import CheckpointError
    from .config import ConfigError, MobileBertConfig
    from .modeling import (
        MobileBertForMaskedLM,
        MobileBertForPreTraining,
        MobileBertForQuestionAnswering,
        MobileBertForSequenceClassification,
        MobileBertForTokenClassification,
        MobileBertModel,
        ModelOutput,
    )
    from .tokenizer import MobileBertTokenizer, TokenizerError


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
