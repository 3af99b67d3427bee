"""Strategies as data: stages, steps, loss terms, trainable groups and lr multipliers per phase."""

from __future__ import annotations

import pytest

from mobilebert.distill.strategies import build_schedule, group_names


def test_progressive_phases_and_lr_multipliers():
    stages = build_schedule("progressive", 3, 30, 20, copied_groups=("embeddings", "heads"))
    assert [s.name for s in stages] == ["progressive.0", "progressive.1", "progressive.2", "distill"]
    assert [s.steps for s in stages] == [10, 10, 10, 20]
    assert stages[0].lr_multipliers == {"layer.0": 1.0, "proj.0": 1.0}
    assert stages[1].lr_multipliers == {"layer.0": 0.1, "layer.1": 1.0, "proj.1": 1.0}
    assert stages[2].lr_multipliers == {"layer.0": 0.1, "layer.1": 0.1, "layer.2": 1.0, "proj.2": 1.0}
    assert [s.layers for s in stages] == [[0], [1], [2], []]
    assert stages[0].terms == {"att": 1 / 3, "fmt": 100 / 3, "mean": 5000 / 3, "var": 5 / 3}
    pd = stages[-1]
    assert pd.terms == {"mlm_kd": 1.0, "nsp": 1.0}
    assert set(pd.lr_multipliers) == {"embeddings", "layer.0", "layer.1", "layer.2", "heads"}


def test_progressive_frozen_lower_layers_and_uncopied_embeddings():
    stages = build_schedule("progressive", 2, 10, 0, lower_layers="frozen")
    assert len(stages) == 2  # no distillation stage when distill_steps is 0
    # embeddings not copied from the teacher: they learn with layer 0, then are treated like a lower layer
    assert stages[0].lr_multipliers == {"layer.0": 1.0, "proj.0": 1.0, "embeddings": 1.0}
    assert stages[1].lr_multipliers == {"layer.1": 1.0, "proj.1": 1.0}


def test_joint_auxiliary_none_same_total_steps():
    for strategy in ("joint", "auxiliary", "none", "progressive"):
        stages = build_schedule(strategy, 4, 40, 60, copied_groups=("embeddings", "heads"))
        assert sum(s.steps for s in stages) == 100, strategy
    joint = build_schedule("joint", 2, 10, 5, copied_groups=("embeddings", "heads"))
    assert [s.name for s in joint] == ["joint", "distill"] and joint[0].layers == [0, 1]
    assert joint[0].lr_multipliers == {"layer.0": 1.0, "layer.1": 1.0, "proj.0": 1.0, "proj.1": 1.0}
    (aux,) = build_schedule("auxiliary", 2, 10, 5)
    assert aux.layers == [0, 1] and {"fmt", "att", "mlm_kd", "nsp"} <= set(aux.terms)
    assert set(aux.lr_multipliers) == set(group_names(2))
    (none,) = build_schedule("none", 2, 10, 5)
    assert none.terms == {"mlm": 1.0, "nsp": 1.0} and none.layers == [] and "mlm_kd" not in none.terms


def test_bad_schedules():
    with pytest.raises(ValueError, match="unknown strategy 'fast'"):
        build_schedule("fast", 2, 10, 10)
    with pytest.raises(ValueError, match="lower_layers"):
        build_schedule("progressive", 2, 10, 10, lower_layers="off")
    with pytest.raises(ValueError, match="unknown transfer loss term"):
        build_schedule("joint", 2, 10, 10, transfer_weights={"hidden": 1.0})


def test_custom_weights_override_defaults():
    (stage, _) = build_schedule("joint", 2, 10, 10, transfer_weights={"att": 0.0, "fmt": 3.0})
    assert stage.terms["fmt"] == 3.0 and stage.terms["att"] == 0.0 and stage.terms["mean"] == 2500.0


def test_stage_warmup_is_a_count_or_a_fraction():
    from mobilebert.train.schedule import Stage

    assert Stage("s", 10, {"mlm": 1.0}, warmup_fraction=0.25).warmup == 2  # rounded down
    assert Stage("s", 10, {"mlm": 1.0}, warmup_fraction=0.25, warmup_steps=3).warmup == 3  # the count wins
    assert Stage("s", 10, {"mlm": 1.0}, warmup_steps=0).warmup == 0
    assert [s.warmup for s in build_schedule("joint", 2, 40, 20, warmup_fraction=0.1)] == [4, 2]
