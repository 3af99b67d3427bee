"""The training loop: LAMB, schedules, NaN guard, SIGKILL + resume (bitwise), DDP (2 gloo processes) vs 1.

This file is also the subprocess worker for the kill/resume and torchrun tests:
``python tests/test_trainer.py OUT_DIR TEACHER [resume] [kill_after_batches] [distill_steps]``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # when run as a worker script
    sys.path.insert(0, str(REPO))

from mobilebert import MobileBertConfig  # noqa: E402
from mobilebert.distill.module import DistillModule, DistillTask  # noqa: E402
from mobilebert.modeling import MobileBertForPreTraining  # noqa: E402
from mobilebert.options import check  # noqa: E402
from mobilebert.options import load as load_config  # noqa: E402
from mobilebert.recipes.distill import DistillConfig, build_distillation  # noqa: E402
from mobilebert.train.optim import Lamb, build_param_groups  # noqa: E402
from mobilebert.train.schedule import Stage  # noqa: E402
from mobilebert.train.state import checkpoints, load_checkpoint  # noqa: E402
from mobilebert.train.trainer import NonFiniteLossError, TrainConfig, fit, weighted_total  # noqa: E402


# ----------------------------------------------------------------------------- synthetic pre-training data
class SyntheticLoader:
    """Batches in the pretraining dict format, deterministic per (seed, epoch), sharded by rank within each
    global batch so that N ranks see exactly the examples one process sees; resumable cursor."""

    def __init__(self, n: int, global_batch: int, seq: int, vocab: int, seed: int, rank: int = 0, world: int = 1):
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(seq // 2, seq + 1, (n,), generator=g)
        self.ids = torch.randint(5, vocab, (n, seq), generator=g)
        self.ids[:, 0] = 2  # a [CLS]-like token
        self.mask = (torch.arange(seq)[None] < lengths[:, None]).long()
        self.ids = self.ids * self.mask
        self.tt = (torch.arange(seq)[None] >= (lengths[:, None] // 2)).long() * self.mask
        pick = (torch.rand(n, seq, generator=g) < 0.2) & self.mask.bool()
        pick[:, 1] = True  # at least one masked position per sequence
        self.labels = torch.where(pick, self.ids, torch.full_like(self.ids, -100))
        self.inputs = torch.where(pick, torch.full_like(self.ids, 3), self.ids)
        self.nsp = torch.randint(0, 2, (n,), generator=g)
        self.global_batch, self.rank, self.world = global_batch, rank, world
        self.per_rank = global_batch // world
        self.cursor = 0

    def __iter__(self):
        while (self.cursor + 1) * self.global_batch <= len(self.ids):
            start = self.cursor * self.global_batch + self.rank * self.per_rank
            idx = slice(start, start + self.per_rank)
            self.cursor += 1
            yield {"input_ids": self.inputs[idx], "attention_mask": self.mask[idx], "token_type_ids": self.tt[idx],
                   "labels": self.labels[idx], "next_sentence_label": self.nsp[idx]}

    def state_dict(self):
        return {"cursor": self.cursor}

    def load_state_dict(self, state):
        self.cursor = state["cursor"]


def tiny_pair() -> tuple[MobileBertConfig, MobileBertConfig]:
    base = dict(vocab_size=120, max_position_embeddings=32, hidden_size=32, embedding_size=16,
                intra_bottleneck_size=16, intermediate_size=32, num_attention_heads=2)
    teacher = MobileBertConfig.from_preset("ib-bert-large", **{**base, "num_hidden_layers": 4, "intra_bottleneck_size": 64,
                                                               "intermediate_size": 64, "hidden_dropout_prob": 0.0})
    student = MobileBertConfig.from_preset("mobilebert", **{**base, "num_hidden_layers": 2,
                                                            "attention_probs_dropout_prob": 0.0})
    return teacher, student


def make_teacher_dir(path: Path) -> Path:
    if not (path / "config.json").is_file():
        torch.manual_seed(123)
        MobileBertForPreTraining(tiny_pair()[0]).save_pretrained(path)
    return path


def worker_config(out: Path, teacher: Path, distill_steps: int = 6, **train) -> DistillConfig:
    _, student = tiny_pair()
    s = {k: getattr(student, k) for k in ("vocab_size", "max_position_embeddings", "hidden_size", "embedding_size",
                                          "intra_bottleneck_size", "intermediate_size", "num_attention_heads",
                                          "num_hidden_layers")}
    cfg = DistillConfig(strategy="progressive", teacher=str(teacher), student=s, transfer_steps=8,
                        distill_steps=distill_steps)
    cfg.train = TrainConfig(out_dir=str(out), batch_size=8, lr=2e-3, log_every=1, tensorboard=False, progress=False,
                            **train)
    return cfg


def run_worker(out: Path, teacher: Path, resume: bool = False, kill_after: int = 0, distill_steps: int = 6,
               **train) -> dict:
    """Distil with synthetic data (8 transfer + ``distill_steps`` steps); SIGKILL itself while fetching batch
    ``kill_after`` (0: never)."""
    cfg = worker_config(out, teacher, distill_steps=distill_steps, **train)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    fetched = [0]

    def make_loader(epoch: int):
        loader = SyntheticLoader(64, cfg.train.batch_size, 16, 120, seed=7 + epoch, rank=rank, world=world)
        inner = loader.__iter__

        def counting():
            for b in inner():
                fetched[0] += 1
                if kill_after and fetched[0] == kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield b

        return _Wrap(loader, counting)

    from mobilebert.recipes.distill import distill

    return distill(cfg, resume=resume, make_loader=make_loader)


class _Wrap:
    def __init__(self, loader, it):
        self.loader, self.it = loader, it

    def __iter__(self):
        return self.it()

    def state_dict(self):
        return self.loader.state_dict()

    def load_state_dict(self, s):
        self.loader.load_state_dict(s)


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(checkpoints(out / "checkpoints")[-1])["model"]


def _spawn(args: list[str], env_extra: dict | None = None, torchrun: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src") + os.pathsep + str(REPO)}
    env.update(env_extra or {})
    cmd = [sys.executable]
    if torchrun:
        cmd += ["-m", "torch.distributed.run", "--nproc_per_node", str(torchrun), "--master_port", "29533"]
    cmd += [str(Path(__file__).resolve()), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


# ----------------------------------------------------------------------------- optimizer
def test_lamb_groups_exclude_norms_and_biases():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    groups = build_param_groups({"a": list(model.named_parameters())}, {"a": 0.5}, lr=1.0, weight_decay=0.01)
    by_name = {g["name"]: g for g in groups}
    assert by_name["a"]["trust"] and by_name["a"]["weight_decay"] == 0.01 and len(by_name["a"]["params"]) == 1
    plain = by_name["a.no_decay"]
    assert not plain["trust"] and plain["weight_decay"] == 0.0 and len(plain["params"]) == 3
    assert all(g["lr"] == 0.5 for g in groups)
    groups = build_param_groups({"a": list(model.named_parameters())}, {}, lr=1.0, weight_decay=0.01)
    assert groups == [] and not any(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="unknown parameter groups"):
        build_param_groups({"a": []}, {"b": 1.0}, 1.0, 0.0)


def test_lamb_step_by_hand():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0, 1.0]))
    opt = Lamb([{"params": [w], "trust": True, "weight_decay": 0.1}, {"params": [b], "trust": False, "weight_decay": 0.0}],
               lr=0.1, eps=0.0)
    w.grad, b.grad = torch.tensor([1.0, -2.0]), torch.tensor([0.5, -0.5])
    opt.step()
    # First step with bias correction: Adam direction = sign(g); + decay 0.1 * w.
    u = torch.tensor([1.0, -1.0]) + 0.1 * torch.tensor([3.0, 4.0])
    want_w = torch.tensor([3.0, 4.0]) - 0.1 * (5.0 / u.norm()) * u
    torch.testing.assert_close(w.detach(), want_w)
    torch.testing.assert_close(b.detach(), torch.tensor([0.9, 1.1]))  # no trust ratio, no decay


def test_fp16_refused_with_reason():
    with pytest.raises(ValueError, match="NoNorm activations"):
        check(TrainConfig(precision="fp16"))
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, got 'fp8'"):
        check(TrainConfig(precision="fp8"))


def test_weighted_total_uses_term_prefix():
    terms = {"fmt/layer.0": torch.tensor(2.0), "att/layer.0": torch.tensor(3.0), "nsp": torch.tensor(5.0)}
    assert float(weighted_total(terms, {"fmt": 10.0, "nsp": 1.0})) == 25.0


def distill_case(student_dropout: float = 0.0):
    """A tiny teacher/student pair, one padded batch, the auxiliary stage (every transfer term + PD + NSP)."""
    from mobilebert.distill.losses import TransferMap
    from mobilebert.distill.strategies import build_schedule

    tcfg, scfg = tiny_pair()
    scfg.hidden_dropout_prob = student_dropout
    torch.manual_seed(0)
    teacher, student = MobileBertForPreTraining(tcfg), MobileBertForPreTraining(scfg)
    batch = next(iter(SyntheticLoader(8, 5, 16, 120, seed=3)))
    counts = {"tokens": batch["attention_mask"].sum().float(), "masked": (batch["labels"] != -100).sum().float(),
              "sequences": torch.tensor(5.0)}
    return teacher, student, TransferMap.build(tcfg, scfg), batch, build_schedule("auxiliary", 2, 1, 1)[0], counts


def test_chunked_teacher_gives_the_same_terms():
    """teacher_chunk runs the teacher a few sequences at a time (to cut peak memory); the loss terms must not
    change: transfer on every layer, pre-training distillation, with padding."""
    teacher, student, tmap, batch, stage, counts = distill_case()
    whole = DistillModule(student, teacher, tmap)(batch, stage, counts)
    chunked = DistillModule(student, teacher, tmap, teacher_chunk=2)(batch, stage, counts)
    assert sorted(whole) == sorted(chunked) and "att/layer.1" in whole and "mlm_kd" in whole
    for k in whole:
        torch.testing.assert_close(chunked[k], whole[k], rtol=1e-5, atol=1e-6, msg=k)


def test_recompute_gives_the_same_terms_and_gradients(monkeypatch):
    """recompute (activation checkpointing of student blocks) trades compute for memory; the loss terms and
    every student gradient must not change, dropout included (its RNG state is replayed in backward)."""
    import mobilebert.distill.module as recipe

    calls = []
    real_checkpoint = recipe.checkpoint
    monkeypatch.setattr(recipe, "checkpoint", lambda *a, **k: calls.append(1) or real_checkpoint(*a, **k))
    teacher, student, tmap, batch, stage, counts = distill_case(student_dropout=0.1)
    results = []
    for recompute in (False, True):
        module = DistillModule(student, teacher, tmap, recompute=recompute).train()
        module.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        terms = module(batch, stage, counts)
        weighted_total(terms, stage.terms).backward()
        grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
        results.append((terms, grads))
    (t0, g0), (t1, g1) = results
    assert len(calls) == student.config.num_hidden_layers  # the second pass did checkpoint every student block
    assert sorted(t0) == sorted(t1) and "att/layer.1" in t0 and sorted(g0) == sorted(g1)
    assert any("encoder.layer.0" in n for n in g0)
    for k in t0:
        torch.testing.assert_close(t1[k], t0[k], rtol=1e-5, atol=1e-6, msg=k)
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-4, atol=1e-6, msg=n)
# ----------------------------------------------------------------------------- plain pre-training
def test_pretrain_module_is_what_the_teacherless_distill_module_was():
    """Teacher pre-training used to run as DistillModule(model, None, None): the same terms, bit for bit, the
    same parameter groups in the same order (so optimizer states line up), and its saved states still load."""
    from mobilebert.train.pretrain import PretrainModule, pretrain_stage

    teacher_cfg, _ = tiny_pair()
    torch.manual_seed(0)
    model = MobileBertForPreTraining(teacher_cfg).eval()
    new, old = PretrainModule(model), DistillModule(model, None, None)
    stage = pretrain_stage(new, 10, 0.1)
    batch = next(iter(SyntheticLoader(8, 8, 16, 120, seed=3)))
    counts = {"tokens": batch["attention_mask"].sum().float(), "masked": (batch["labels"] != -100).sum().float(),
              "sequences": torch.tensor(8.0)}
    a, b = new(batch, stage, counts), old(batch, stage, counts)
    assert sorted(a) == sorted(b) == ["mlm", "nsp"] and all(torch.equal(a[k], b[k]) for k in a)
    assert list(stage.lr_multipliers) == ["embeddings", "layer.0", "layer.1", "layer.2", "layer.3", "heads"]
    same = [g for g in old.param_groups() if old.param_groups()[g]]  # DistillModule's proj.i groups were empty
    assert list(new.param_groups()) == same
    assert all([id(p) for _, p in new.param_groups()[g]] == [id(p) for _, p in old.param_groups()[g]] for g in same)
    torch.manual_seed(1)
    fresh = PretrainModule(MobileBertForPreTraining(teacher_cfg))
    fresh.load_state_dict(old.state_dict())  # keys student.* -> model.*
    assert all(torch.equal(x, y) for x, y in zip(fresh.state_dict().values(), new.state_dict().values(), strict=True))


# ----------------------------------------------------------------------------- NaN guard
class _Exploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))
        self.calls = 0

    def forward(self, batch, stage, counts):
        self.calls += 1
        bad = math.inf if self.calls >= 4 else 1.0
        return {"fmt/layer.0": self.w.pow(2).sum(), "fmt/layer.1": self.w.sum() * bad}


class _Task:
    def __init__(self):
        self.module = _Exploding()

    def param_groups(self):
        return {"layer.0": list(self.module.named_parameters())}

    def export(self, stage, out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)


def test_nan_guard_names_step_term_layer_and_keeps_checkpoint(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path), batch_size=8, save_every=2, tensorboard=False, progress=False)
    stage = Stage("s", 10, {"fmt": 1.0}, [0, 1], {"layer.0": 1.0})
    with pytest.raises(NonFiniteLossError, match=r"step 4: loss term fmt of layer\.1 is inf.*step-00000002"):
        fit(_Task(), [stage], lambda e: SyntheticLoader(80, 8, 8, 50, seed=e), cfg)
    ckpts = checkpoints(tmp_path / "checkpoints")
    assert [c.name for c in ckpts] == ["step-00000002"]
    assert load_checkpoint(ckpts[0])["global_step"] == 2


# ----------------------------------------------------------------------------- Ctrl-C
class _Noisy(nn.Module):
    """A loss that draws from the RNG (dropout), so that only an exact resume reproduces the weights."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.emb = nn.Embedding(50, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, batch, stage, counts):
        h = self.drop(self.emb(batch["input_ids"]))
        return {"fmt/layer.0": (h - 1).pow(2).sum() / counts["tokens"]}


class _NoisyTask:
    """No ``export`` (optional); an evaluation whose history is task state; ``stop_in_eval``: Ctrl-C in the
    evaluation of that number (once)."""

    def __init__(self, stop_in_eval: int = 0):
        self.module, self.history, self.stop_in_eval = _Noisy(), [], stop_in_eval

    def param_groups(self):
        return {"layer.0": list(self.module.named_parameters())}

    def evaluate(self, train_loss):
        if len(self.history) + 1 == self.stop_in_eval:
            self.stop_in_eval = 0
            raise KeyboardInterrupt
        self.history.append(round(train_loss, 6))
        return {"train_loss": train_loss}

    def state_dict(self):
        return {"history": self.history}

    def load_state_dict(self, state):
        self.history = list(state["history"])


def _interruptible(stop_at_fetch: int = 0):
    """Loaders over one stream of batches; Ctrl-C while fetching batch ``stop_at_fetch`` (counted across epochs)."""
    fetched = [0]

    def make_loader(epoch):
        loader = SyntheticLoader(48, 8, 8, 50, seed=epoch)

        def it():
            for b in SyntheticLoader.__iter__(loader):
                fetched[0] += 1
                if fetched[0] == stop_at_fetch:
                    raise KeyboardInterrupt
                yield b

        return _Wrap(loader, it)

    return make_loader


_TWO_STAGES = [Stage("a", 4, {"fmt": 1.0}, [], {"layer.0": 1.0}), Stage("b", 7, {"fmt": 1.0}, [], {"layer.0": 1.0},
                                                                       warmup_steps=2)]


def _fit(out: Path, task, stop_at_fetch: int = 0, resume: bool = False, **cfg):
    c = TrainConfig(out_dir=str(out), optimizer="adamw", lr=0.05, batch_size=8, tensorboard=False, progress=False,
                    **cfg)
    return fit(task, _TWO_STAGES, _interruptible(stop_at_fetch), c, resume=resume)


def _resumes_exactly(ref: Path, cut: Path) -> None:
    assert _fit(cut, _NoisyTask(), resume=True)["global_step"] == 11
    a, b = final_weights(ref), final_weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_mid_step_saves_the_step_before_and_resumes_exactly(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    r = _fit(ref, _NoisyTask())
    assert r["global_step"] == 11 and r["exports"] == {}  # a task without export
    with pytest.raises(KeyboardInterrupt):
        _fit(cut, _NoisyTask(), stop_at_fetch=7)  # fetching the batch of step 7: 6 steps done (4 of a, 2 of b)
    state = load_checkpoint(checkpoints(cut / "checkpoints")[-1])
    assert (state["global_step"], state["stage_index"], state["stage_step"]) == (6, 1, 2)
    _resumes_exactly(ref, cut)


def test_ctrl_c_during_the_weight_update_lands_after_it(tmp_path, monkeypatch):
    """SIGINT sent while the optimizer updates the weights is held until the step is complete, so the state
    saved is that of the step just finished, never a half-applied one."""
    import mobilebert.train.trainer as trainer

    ref, cut = tmp_path / "ref", tmp_path / "cut"
    _fit(ref, _NoisyTask())
    make, steps = trainer.make_optimizer, [0]

    def interrupting(*a, **k):
        opt = make(*a, **k)
        real = opt.step

        def step(*sa, **sk):
            out = real(*sa, **sk)
            steps[0] += 1
            if steps[0] == 3:
                signal.raise_signal(signal.SIGINT)  # to this (main) thread: the weights of step 3 are updated, its bookkeeping is not
            return out

        opt.step = step
        return opt

    monkeypatch.setattr(trainer, "make_optimizer", interrupting)
    with pytest.raises(KeyboardInterrupt):
        _fit(cut, _NoisyTask())
    monkeypatch.undo()
    assert load_checkpoint(checkpoints(cut / "checkpoints")[-1])["global_step"] == 3
    _resumes_exactly(ref, cut)


@pytest.mark.parametrize("nth, step", [(2, 4), (3, 6)])  # evaluations after steps 3, 4 (end of a), 6, 9, 11
def test_ctrl_c_during_an_evaluation_evaluates_again_on_resume(tmp_path, nth, step):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    want = _NoisyTask()
    _fit(ref, want, eval_every=3, save_on_eval=True)
    assert len(want.history) == 5
    with pytest.raises(KeyboardInterrupt):
        _fit(cut, _NoisyTask(stop_in_eval=nth), eval_every=3, save_on_eval=True)
    state = load_checkpoint(checkpoints(cut / "checkpoints")[-1])
    assert state["global_step"] == step and state["evaluate_pending"]
    assert state["task"] == {"history": want.history[:nth - 1]}
    got = _NoisyTask()
    _fit(cut, got, resume=True, eval_every=3, save_on_eval=True)
    assert got.history == want.history
    a, b = final_weights(ref), final_weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- config and bad setups
def test_config_overrides_and_unknown_keys(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("strategy: joint\nteacher: t\ntrain:\n  lr: 0.001\n")
    cfg = load_config(DistillConfig, yml, ["train.batch_size=16", "student.num_hidden_layers=3", "layer_map=[0,1,2]"])
    assert cfg.strategy == "joint" and cfg.train.lr == 0.001 and cfg.train.batch_size == 16
    assert cfg.student == {"num_hidden_layers": 3} and cfg.layer_map == [0, 1, 2]
    with pytest.raises(ValueError, match="unknown key.*strategi"):
        load_config(DistillConfig, yml, ["strategi=joint"])
    with pytest.raises(ValueError, match="unknown key.*train.lrr"):
        load_config(DistillConfig, yml, ["train.lrr=1"])


@pytest.mark.parametrize("override, message", [
    ("strategy=best", "strategy must be one of progressive, joint, auxiliary, none, got 'best'"),
    ("data=/nonexistent/dir", "/nonexistent/dir: pre-training data directory not found"),
    ("student.num_hidden_layers=6", "student has 6 layers but the teacher only 4"),
    ("student.vocab_size=99", "vocabulary"),
    ("train.precision=fp16", "fp16 refused"),
])
def test_bad_config_fails_before_training_one_line(tmp_path, capsys, override, message):
    from mobilebert.cli import main

    teacher = make_teacher_dir(tmp_path / "teacher")
    data = tmp_path / "data"  # what the checks read of a prepared folder: its manifest
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"arguments": {"max_seq_length": 16}, "counts": {"examples": 64}}))
    out = tmp_path / "out"
    _, s = tiny_pair()
    args = ["distill", f"teacher={teacher}", f"data={data}", f"train.out_dir={out}", "student.hidden_size=32",
            "student.embedding_size=16", "student.intra_bottleneck_size=16", "student.intermediate_size=32",
            "student.num_hidden_layers=2", "student.vocab_size=120", "student.max_position_embeddings=32",
            "student.num_attention_heads=2", override]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (out / "checkpoints").exists()


# ----------------------------------------------------------------------------- progressive phases
def test_progressive_phases_train_the_right_parameters(tmp_path):
    cfg = worker_config(tmp_path / "o", make_teacher_dir(tmp_path / "t"))
    module, stages = build_distillation(cfg)
    assert [s.name for s in stages] == ["progressive.0", "progressive.1", "distill"]
    batch = next(iter(SyntheticLoader(8, 8, 16, 120, seed=0)))
    counts = {"tokens": batch["attention_mask"].sum().float(), "masked": (batch["labels"] != -100).sum().float(),
              "sequences": torch.tensor(8.0)}
    names = dict(module.named_parameters())
    for stage, want_lr in zip(stages, ({"layer.0": 1.0}, {"layer.0": 0.1, "layer.1": 1.0}), strict=False):
        groups = build_param_groups(DistillTask(module).param_groups(), stage.lr_multipliers, 1.0, 0.01)
        assert {g["name"].removesuffix(".no_decay"): g["lr"] for g in groups} == want_lr
        module.zero_grad(set_to_none=True)
        weighted_total(module(batch, stage, counts), stage.terms).backward()
        got = {n for n, p in names.items() if p.grad is not None and p.grad.abs().sum() > 0}
        trained = {n.split(".")[4] for n in got}  # student.mobilebert.encoder.layer.{i}...
        assert all(n.startswith("student.mobilebert.encoder.layer.") for n in got)
        assert trained == {k.split(".")[1] for k in want_lr}
    # embeddings and heads were copied from the teacher (same shapes) and stay frozen during transfer
    t = module.teacher
    torch.testing.assert_close(module.student.mobilebert.embeddings.word_embeddings.weight,
                               t.mobilebert.embeddings.word_embeddings.weight)
    assert "embeddings" not in stages[0].lr_multipliers and "heads" not in stages[1].lr_multipliers
    assert stages[2].terms == {"mlm_kd": 1.0, "nsp": 1.0} and "heads" in stages[2].lr_multipliers


def test_bf16_autocast_runs_and_exports(tmp_path):
    from mobilebert.recipes.distill import distill

    cfg = worker_config(tmp_path / "o", make_teacher_dir(tmp_path / "t"), precision="bf16")
    cfg.transfer_steps, cfg.distill_steps, cfg.teacher_bf16 = 2, 2, True
    r = distill(cfg, make_loader=lambda e: SyntheticLoader(32, 8, 16, 120, seed=e))
    assert r["global_step"] == 4 and all(math.isfinite(v) for v in r["last_terms"].values())
    assert set(r["exports"]) == {"progressive.0", "progressive.1", "distill"}
    MobileBertForPreTraining.from_pretrained(r["exports"]["distill"])


# ----------------------------------------------------------------------------- kill + resume, DDP
@pytest.mark.slow  # subprocesses: a run, a SIGKILLed run, its resume
def test_sigkill_mid_stage_then_resume_is_bitwise_equal(tmp_path):
    teacher = make_teacher_dir(tmp_path / "teacher")
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    r = _spawn([str(ref), str(teacher)])
    assert r.returncode == 0, r.stderr[-2000:]
    r = _spawn([str(cut), str(teacher), "0", "8"])  # killed fetching batch 8: mid stage progressive.1 (steps 5-8)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    saved = [c.name for c in checkpoints(cut / "checkpoints")]
    assert saved and saved[-1] == "step-00000006", saved
    r = _spawn([str(cut), str(teacher), "1"])
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = final_weights(ref), final_weights(cut)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for stage in ("progressive.0", "progressive.1", "distill"):
        MobileBertForPreTraining.from_pretrained(cut / "stages" / stage)
    assert (cut / "config.yaml").is_file()


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]


@pytest.mark.slow  # torchrun subprocesses
def test_torchrun_two_gloo_processes_follow_one_process(tmp_path):
    teacher = make_teacher_dir(tmp_path / "teacher")
    one, two = tmp_path / "one", tmp_path / "two"
    steps = ["0", "0", "12"]  # 8 transfer + 12 distillation steps = 20 logged losses, global batch 8
    r = _spawn([str(one), str(teacher), *steps])
    assert r.returncode == 0, r.stderr[-2000:]
    r = _spawn([str(two), str(teacher), *steps], torchrun=2)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) == 20
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-4, (a, b)


if __name__ == "__main__":
    out, teacher = Path(sys.argv[1]), Path(sys.argv[2])
    resume = len(sys.argv) > 3 and sys.argv[3] == "1"
    kill = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    distill_steps = int(sys.argv[5]) if len(sys.argv) > 5 else 6
    torch.set_num_threads(1)
    run_worker(out, teacher, resume=resume, kill_after=kill, distill_steps=distill_steps, save_every=3, keep_last=2)
