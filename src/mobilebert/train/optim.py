"""Learning-rate schedules (and, for distillation, LAMB and parameter groups)."""

from __future__ import annotations


def warmup_decay(step: int, warmup_steps: int, total_steps: int, power: float = 1.0) -> float:
    """LR multiplier: linear warm-up from 0 to 1 over ``warmup_steps``, then polynomial decay to 0 at
    ``total_steps`` (``power`` 1 is linear decay). Pure, so schedules are easy to test and to resume."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    remaining = max(0.0, (total_steps - step) / (total_steps - warmup_steps))
    return remaining**power
