"""Learning-rate schedules (and, for distillation, LAMB and parameter groups)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


def warmup_decay(step: int, warmup_steps: int, total_steps: int, power: float = 1.0) -> float:
    """LR multiplier: linear warm-up from 0 to 1 over ``warmup_steps``, then polynomial decay to 0 at
    ``total_steps`` (``power`` 1 is linear decay). Pure, so schedules are easy to test and to resume."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    remaining = max(0.0, (total_steps - step) / (total_steps - warmup_steps))
    return remaining**power


# ----------------------------------------------------------------------------- parameter groups
def no_decay(name: str, param: torch.nn.Parameter) -> bool:
    """Norm weights (LayerNorm and NoNorm) and biases: no weight decay, no LAMB trust ratio."""
    return param.ndim <= 1 or name.endswith(".bias")


def build_param_groups(groups: dict[str, list[tuple[str, torch.nn.Parameter]]], lr_multipliers: dict[str, float],
                       lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer groups from named parameter groups and their lr multipliers.

    A multiplier of 0 (or a group absent from ``lr_multipliers``) freezes the group: its parameters get
    ``requires_grad=False`` and stay out of the optimizer. Each trained group splits in two: decayed
    matrices and undecayed norms/biases (``trust=False`` so LAMB applies no trust ratio to them).
    """
    unknown = sorted(set(lr_multipliers) - set(groups))
    if unknown:
        raise ValueError(f"lr multipliers for unknown parameter groups: {', '.join(unknown)}")
    out: list[dict[str, Any]] = []
    for gname, named in groups.items():
        mult = float(lr_multipliers.get(gname, 0.0))
        for _, p in named:
            p.requires_grad_(mult > 0)
        if mult <= 0:
            continue
        decay = [p for n, p in named if not no_decay(n, p)]
        plain = [p for n, p in named if no_decay(n, p)]
        for params, wd, trust, suffix in ((decay, weight_decay, True, ""), (plain, 0.0, False, ".no_decay")):
            if params:
                out.append({"params": params, "lr": lr * mult, "lr_mult": mult, "weight_decay": wd,
                            "trust": trust, "name": gname + suffix})
    return out


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> None:
    """Apply the schedule factor to every group, keeping each group's multiplier."""
    for g in optimizer.param_groups:
        g["lr"] = base_lr * g.get("lr_mult", 1.0) * factor


# ----------------------------------------------------------------------------- LAMB
class Lamb(torch.optim.Optimizer):
    """LAMB (You et al., 2019): Adam moments, decoupled weight decay, then a per-tensor trust ratio
    ||w|| / ||update|| that lets large batches use large learning rates. Groups with ``trust=False``
    (norms, biases) take the plain Adam step; their ``weight_decay`` is 0 by construction."""

    def __init__(self, params: Iterable, lr: float = 1.5e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.01) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, trust=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.float()
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                state["step"] += 1
                t = float(state["step"])
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                update = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(p.float(), alpha=group["weight_decay"])
                ratio = 1.0
                if group["trust"]:
                    w_norm, u_norm = p.float().norm(), update.norm()
                    ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                p.add_((update * ratio * -group["lr"]).to(p.dtype))
        return loss


def make_optimizer(name: str, param_groups: list[dict[str, Any]], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                   eps: float = 1e-6, weight_decay: float = 0.01) -> torch.optim.Optimizer:
    """``lamb`` (the paper's) or ``adamw``; groups carry their own lr and weight decay."""
    if name == "lamb":
        return Lamb(param_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(param_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose lamb or adamw")
