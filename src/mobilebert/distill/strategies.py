"""Distillation strategies as data: each strategy is a list of ``train.schedule.Stage`` objects the trainer runs
in order.

Parameter groups of the student: ``embeddings``, ``layer.0`` .. ``layer.{L-1}`` (the blocks), ``proj.0`` ..
``proj.{L-1}`` (learned teacher-width projections, empty when widths match; trained only while their layer's
transfer terms count) and ``heads`` (MLM, NSP, pooler). A group absent from a stage's ``lr_multipliers`` (or at
0) is frozen for that stage. Loss terms: ``fmt``, ``mean``, ``var``, ``att`` (transfer, for the stage's
``layers``), ``emb`` (mean-pooled last layer vs the teacher's, when the stage reaches the last layer), ``mlm_kd`` (pre-training distillation), ``nsp``, ``mlm`` (plain MLM, strategy ``none``).
"""

from __future__ import annotations

from ..train.schedule import Stage
from .losses import SENTENCE_TERMS, TRANSFER_TERMS, default_transfer_weights

STRATEGIES = ("progressive", "joint", "auxiliary", "none")


def group_names(num_layers: int) -> list[str]:
    return ["embeddings", *(f"layer.{i}" for i in range(num_layers)), *(f"proj.{i}" for i in range(num_layers)),
            "heads"]


def build_schedule(strategy: str, num_layers: int, transfer_steps: int, distill_steps: int, *,
                   lower_layers: str = "slow", lower_lr: float = 0.1, copied_groups: tuple[str, ...] = (),
                   transfer_weights: dict[str, float] | None = None, warmup_fraction: float = 0.1) -> list[Stage]:
    """The stages of one strategy (SPEC §3). ``transfer_steps`` is the total for layer-wise transfer (split
    evenly into one phase per layer for ``progressive``); ``distill_steps`` the pre-training distillation that
    follows. ``auxiliary`` and ``none`` run one stage of ``transfer_steps + distill_steps`` so that every
    strategy trains for the same number of steps. ``copied_groups`` (embeddings/heads copied from the teacher)
    stay frozen during transfer; ``lower_layers`` is ``slow`` (``lower_lr`` x) or ``frozen``."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if lower_layers not in ("slow", "frozen"):
        raise ValueError(f"lower_layers must be 'slow' or 'frozen', got {lower_layers!r}")
    if num_layers < 1 or transfer_steps < 0 or distill_steps < 0:
        raise ValueError("num_layers must be >= 1 and step counts >= 0")
    weights = {**default_transfer_weights(num_layers), **(transfer_weights or {})}
    unknown = sorted(set(weights) - set(TRANSFER_TERMS) - set(SENTENCE_TERMS))
    if unknown:
        raise ValueError(f"unknown transfer loss term(s) {unknown}; known: {', '.join(TRANSFER_TERMS + SENTENCE_TERMS)}")
    everything = {g: 1.0 for g in group_names(num_layers) if not g.startswith("proj.")}
    all_layers = list(range(num_layers))
    all_proj = {f"proj.{i}": 1.0 for i in range(num_layers)}
    pd = Stage("distill", distill_steps, {"mlm_kd": 1.0, "nsp": 1.0}, [], dict(everything), warmup_fraction)

    def transfer_groups(active: dict[str, float]) -> dict[str, float]:
        out = dict(active)
        if "embeddings" not in copied_groups:  # not copied: the embeddings must learn with the first layer
            out.setdefault("embeddings", 1.0)
        return {g: m for g, m in out.items() if m > 0 and g != "heads"}  # heads get no transfer gradient

    if strategy == "none":
        return [Stage("scratch", transfer_steps + distill_steps, {"mlm": 1.0, "nsp": 1.0}, [], dict(everything),
                      warmup_fraction)]
    if strategy == "auxiliary":
        return [Stage("auxiliary", transfer_steps + distill_steps, {**weights, "mlm_kd": 1.0, "nsp": 1.0}, all_layers,
                      everything | all_proj, warmup_fraction)]
    if strategy == "joint":
        layers = {f"layer.{i}": 1.0 for i in all_layers} | all_proj
        stages = [Stage("joint", transfer_steps, dict(weights), all_layers, transfer_groups(layers), warmup_fraction)]
        return [s for s in stages if s.steps > 0] + ([pd] if distill_steps else [])
    # progressive: phase l trains layer l at 1x, lower layers slowed (or frozen), upper layers untouched.
    stages = []
    per_phase = [transfer_steps // num_layers + (1 if i < transfer_steps % num_layers else 0) for i in all_layers]
    for layer in all_layers:
        lower = lower_lr if lower_layers == "slow" else 0.0
        mults = {f"layer.{i}": lower for i in range(layer)} | {f"layer.{layer}": 1.0, f"proj.{layer}": 1.0}
        if "embeddings" not in copied_groups:
            mults["embeddings"] = 1.0 if layer == 0 else lower
        stages.append(Stage(f"progressive.{layer}", per_phase[layer], dict(weights), [layer], transfer_groups(mults),
                            warmup_fraction))
    return [s for s in stages if s.steps > 0] + ([pd] if distill_steps else [])
