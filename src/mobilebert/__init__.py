"""MobileBERT end to end in PyTorch: models, checkpoints, distillation, fine-tuning, fast inference."""

from .checkpoint import CheckpointError
from .config import ConfigError, MobileBertConfig
from .modeling import (
    MobileBertForMaskedLM,
    MobileBertForPreTraining,
    MobileBertForQuestionAnswering,
    MobileBertForSequenceClassification,
    MobileBertModel,
    ModelOutput,
)
from .tokenizer import MobileBertTokenizer, TokenizerError

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "MobileBertConfig",
    "MobileBertForMaskedLM",
    "MobileBertForPreTraining",
    "MobileBertForQuestionAnswering",
    "MobileBertForSequenceClassification",
    "MobileBertModel",
    "MobileBertTokenizer",
    "ModelOutput",
    "TokenizerError",
]
