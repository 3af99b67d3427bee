"""Knowledge transfer from a teacher to a MobileBERT student: losses (SPEC §3) and schedules as data."""

from .losses import (
    MappingError,
    TransferLoss,
    TransferMap,
    attention_transfer_loss,
    feature_map_loss,
    mean_variance_loss,
    pretraining_distillation_loss,
)

__all__ = [
    "MappingError",
    "TransferLoss",
    "TransferMap",
    "attention_transfer_loss",
    "feature_map_loss",
    "mean_variance_loss",
    "pretraining_distillation_loss",
]
