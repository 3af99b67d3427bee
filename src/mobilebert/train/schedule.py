"""The loop's unit of work: a ``Stage``, one stretch of training with fixed loss weights, trainable groups and its
own learning-rate warm-up and decay. Recipes build lists of them (distillation strategies, teacher pre-training,
fine-tuning); ``train.trainer.fit`` runs them in order."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Stage:
    """One stretch of training with fixed losses and trainable groups; the lr warms up and decays within it.

    ``terms`` weigh the loss terms the task's module returns (``fmt/layer.3`` takes the weight of ``fmt``);
    ``layers`` are the layers whose per-layer terms the module should compute; a parameter group absent from
    ``lr_multipliers`` (or at 0) is frozen. The warm-up is ``warmup_steps`` when given, else
    ``warmup_fraction`` of ``steps`` (rounded down)."""

    name: str
    steps: int
    terms: dict[str, float]  # loss term -> weight
    layers: list[int] = field(default_factory=list)  # layers whose per-layer (transfer) terms count
    lr_multipliers: dict[str, float] = field(default_factory=dict)  # parameter group -> lr multiplier (0: frozen)
    warmup_fraction: float = 0.1
    warmup_steps: int | None = None  # an exact count (fine-tuning's --warmup 100); overrides warmup_fraction

    @property
    def warmup(self) -> int:
        """Warm-up steps of this stage."""
        return self.warmup_steps if self.warmup_steps is not None else int(self.steps * self.warmup_fraction)
