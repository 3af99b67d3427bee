"""One training loop for teacher pre-training, distillation and fine-tuning: stages, DDP, bf16, accumulation,
clipping, training state saved and resumed exactly (also on Ctrl-C), logging and a NaN guard.

The loop knows nothing of losses: it calls ``model(batch, stage, counts)``, which returns a dict of
*unweighted* loss terms named ``term`` or ``term/layer.i``; the stage's ``terms`` weigh them. ``counts`` are
the real-token, masked-token and sequence counts of the whole global batch (all micro-batches, all ranks),
so a term normalised by them sums to the single-process value whatever the accumulation and world size.

Run it plainly for one process, or under ``torchrun`` (gloo on CPU, nccl on GPU) for DDP.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import math
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .. import options
from ..options import option
from ..progress import Progress
from .metrics import MetricsLogger
from .optim import build_param_groups, make_optimizer, set_lr, warmup_decay
from .schedule import Stage
from .state import latest_checkpoint, load_checkpoint, rng_snapshot, rng_state, save_checkpoint, set_rng_state

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or inf; the message names the step, the term and the layer."""

    exit_code = 3  # the CLI stops with this code and the message, no traceback


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping; the model, data and stages come from the recipe."""

    out_dir: str = option("runs/distill", help="the run's folder: checkpoints/, stages/, metrics, config.yaml",
                          output="run", affects_result=False)
    optimizer: str = option("lamb", help="lamb or adamw", choices=("lamb", "adamw"))
    lr: float = option(1.5e-3, help="peak learning rate", above=0)
    betas: tuple[float, float] = option((0.9, 0.999), help="Adam/LAMB betas, each in [0, 1)", at_least=0, below=1)
    eps: float = option(1e-6, help="Adam/LAMB epsilon", above=0)
    weight_decay: float = option(0.01, help="decoupled weight decay, not on biases and norms", at_least=0)
    decay_power: float = option(1.0, help="1: linear decay after warm-up; other values: polynomial")
    batch_size: int = option(32, help="global batch per optimizer step (all ranks, all micro-batches)", at_least=1)
    grad_accum: int = option(1, help="micro-batches per optimizer step", at_least=1)
    max_grad_norm: float = option(1.0, help="gradient clipping norm (0: off)", at_least=0)
    precision: str = option("fp32", help="fp32, or bf16 (autocast); fp16 is refused (NoNorm activations overflow it)")
    save_every: int = option(0, help="save the training state every N optimizer steps (0: only at stage ends and "
                             "on Ctrl-C)", at_least=0, affects_result=False)
    keep_last: int = option(3, help="training states kept", at_least=0, affects_result=False)
    log_every: int = option(10, help="log every N optimizer steps", at_least=1, affects_result=False)
    eval_every: int = option(0, help="call the task's evaluate() every N optimizer steps and at each stage end "
                             "(0: never)", at_least=0)
    save_on_eval: bool = option(False, help="also save the training state right after each evaluation "
                                "(fine-tuning: every epoch)", affects_result=False)
    seed: int | None = option(0, help="None: keep the RNG state the recipe left (it seeded before building the "
                              "model)")
    tensorboard: bool = option(True, help="also log to TensorBoard", affects_result=False)
    progress: bool = option(True, help="progress bar (or periodic lines when stderr is not a terminal)",
                            affects_result=False)

    def check(self) -> None:
        """Relations between fields; each field's own range is in its metadata (checked by options.check)."""
        if self.precision == "fp16":
            raise ValueError("precision fp16 refused: MobileBERT's NoNorm activations reach ~1e6, beyond fp16's "
                             "65504, and gradients underflow; use bf16")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers, got {list(self.betas)}")
        check_batch(self.batch_size, self.grad_accum)


def check_batch(batch_size: int, grad_accum: int, world: int = 1) -> int:
    """The one rule for splitting a global batch: into ``world`` processes x ``grad_accum`` micro-batches, evenly.
    Returns the micro-batch size."""
    if batch_size % (world * grad_accum):
        by = f"world size {world} x grad_accum {grad_accum}" if world > 1 else f"grad_accum {grad_accum}"
        raise ValueError(f"batch_size {batch_size} is not divisible by {by}")
    return batch_size // (world * grad_accum)


class Loader(Protocol):
    def __iter__(self) -> Iterator[dict[str, Tensor]]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Task(Protocol):
    """What the loop trains: an nn.Module returning loss terms, and its parameter groups.

    Optional: ``export(stage, out_dir)``, the stage's result as a folder, called on rank 0 at each stage end;
    ``evaluate()`` (or ``evaluate(train_loss)``, the mean per-sequence training loss since the last
    evaluation) returning metrics to log; ``state_dict()`` / ``load_state_dict()`` for task state that must
    survive a resume (e.g. the best epoch so far), saved with every training state."""

    module: nn.Module

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]: ...


# ----------------------------------------------------------------------------- distributed
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the torchrun group when launched by torchrun (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Dist(rank, dist.get_world_size() if dist.is_initialized() else 1, local, device)


def _all_gather(obj: Any, d: Dist) -> list[Any]:
    if d.world == 1:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def _all_reduce(t: Tensor, d: Dist) -> Tensor:
    if d.world > 1:
        dist.all_reduce(t)
    return t


# ----------------------------------------------------------------------------- data
class Batches:
    """Endless micro-batches from ``make_loader(epoch)``; its state (epoch + the loader's cursor) resumes exactly."""

    def __init__(self, make_loader: Callable[[int], Loader]) -> None:
        self.make_loader, self.epoch = make_loader, 0
        self.loader = make_loader(0)
        self._it: Iterator | None = None

    def __next__(self) -> dict[str, Tensor]:
        for _ in range(2):
            if self._it is None:
                self._it = iter(self.loader)
            try:
                return next(self._it)
            except StopIteration:
                self.epoch += 1
                self.loader, self._it = self.make_loader(self.epoch), None
        raise ValueError("the training data yields no batches (too little data for one batch?)")

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "loader": self.loader.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.loader = self.make_loader(self.epoch)
        self.loader.load_state_dict(state["loader"])
        self._it = None


def batch_counts(batches: list[dict[str, Tensor]], d: Dist) -> dict[str, Tensor]:
    """Real tokens, masked (labelled) tokens and sequences over the global batch."""
    c = torch.zeros(3, dtype=torch.float64)
    for b in batches:
        c[0] += b["attention_mask"].sum() if "attention_mask" in b else b["input_ids"].numel()
        c[1] += (b["labels"] != -100).sum() if "labels" in b else 0
        c[2] += b["input_ids"].shape[0]
    c = _all_reduce(c.to(d.device), d).cpu()
    return {"tokens": c[0].clamp_min(1).float(), "masked": c[1].clamp_min(1).float(), "sequences": c[2].float()}


def weighted_total(terms: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """Sum of ``weight(term) * value`` where ``fmt/layer.3`` takes the weight of ``fmt``."""
    total = None
    for name, value in terms.items():
        w = weights.get(name.split("/")[0], 0.0)
        if w:
            total = value * w if total is None else total + value * w
    if total is None:
        raise ValueError(f"no weighted loss term among {sorted(terms)}")
    return total


def _memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def _check_finite(terms: dict[str, Tensor], step: int, last_ckpt: Path | None) -> None:
    values = torch.stack([t.detach().float() for t in terms.values()])
    if bool(torch.isfinite(values).all()):
        return
    for (name, _), v in zip(terms.items(), values.tolist(), strict=True):
        if not math.isfinite(v):
            term, _, layer = name.partition("/")
            where = f" of {layer}" if layer else ""
            raise NonFiniteLossError(f"step {step}: loss term {term}{where} is {v}; stopped, last good checkpoint: "
                                     f"{last_ckpt or 'none'}")


def _evaluate(task: Task, logger: MetricsLogger | None, step: int, d: Dist, period: Tensor) -> None:
    """The task's own metrics (e.g. STS-B of a sentence encoder, a fine-tuned model's dev score), on rank 0
    only, logged at ``step``. ``period`` (loss x sequences, sequences since the last evaluation; this rank's
    share of the first) is summed over ranks and reset on every rank."""
    evaluate = getattr(task, "evaluate", None)
    loss_sum = _all_reduce(period[:1].clone().to(d.device), d).cpu()
    train_loss = float(loss_sum[0] / period[1].clamp_min(1))
    period.zero_()
    if evaluate is not None and d.main:
        takes_loss = "train_loss" in inspect.signature(evaluate).parameters
        metrics = evaluate(train_loss=train_loss) if takes_loss else evaluate()
        if metrics:
            logger.log(step, **metrics)
            log.info("step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    if d.world > 1:
        dist.barrier()


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the weights update and deliver them right after, so that an interrupt lands
    between two steps, never between the parameters of one update. Only the main thread may set handlers;
    elsewhere this holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    before = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        for s in dict.fromkeys(held):
            signal.raise_signal(s)


# ----------------------------------------------------------------------------- the loop
def fit(task: Task, stages: list[Stage], make_loader: Callable[[int], Loader], cfg: TrainConfig,
        resume: bool = False, d: Dist | None = None) -> dict[str, Any]:
    """Run ``stages`` in order; returns a summary (final step, per-stage export dirs, last logged terms).

    Training states go to ``out_dir/checkpoints``, each stage's result to ``out_dir/stages/<name>``, metrics to
    ``out_dir/metrics.jsonl`` and ``out_dir/tensorboard``.

    Ctrl-C (KeyboardInterrupt; the CLI turns SIGTERM into one too) saves the state of the last step boundary
    before it propagates, so ``resume`` continues exactly as if never stopped: an interrupt inside a step saves
    the state before that step (nothing of it was applied: the weight update itself holds signals), one during
    an evaluation saves the state before it and the evaluation runs again on resume. Under DDP (several
    processes) only the periodic and stage-end states are kept: ranks stop at different points."""
    options.check(cfg)
    d = d or init_distributed()
    out = Path(cfg.out_dir)
    ckpt_root = out / "checkpoints"
    check_batch(cfg.batch_size, cfg.grad_accum, d.world)
    module = task.module.to(d.device)
    batches = Batches(make_loader)
    start_stage, start_step, global_step, opt_state, eval_pending = 0, 0, 0, None, False
    period = torch.zeros(2, dtype=torch.float64)  # for evaluate(train_loss): loss x sequences, sequences
    last_ckpt = latest_checkpoint(ckpt_root) if resume else None
    if resume and last_ckpt is None:
        log.info("--resume: no checkpoint under %s; starting from scratch", ckpt_root)
    if last_ckpt is not None:
        state = load_checkpoint(last_ckpt)
        if state["world_size"] != d.world:
            raise ValueError(f"{last_ckpt}: saved with {state['world_size']} processes, resuming with {d.world}; "
                             "resume with the same world size")
        module.load_state_dict(state["model"])
        start_stage, start_step, global_step = state["stage_index"], state["stage_step"], state["global_step"]
        opt_state, eval_pending = state["optimizer"], bool(state.get("evaluate_pending"))
        batches.load_state_dict(state["data"][d.rank])
        set_rng_state(state["rng"][d.rank])
        if "period" in state:
            period = state["period"][d.rank].clone()
        if state.get("task") is not None:
            task.load_state_dict(state["task"])  # type: ignore[attr-defined]
        log.info("resumed from %s (stage %d, step %d of it, global step %d)", last_ckpt, start_stage, start_step,
                 global_step)
    elif cfg.seed is not None:
        torch.manual_seed(cfg.seed)

    logger = MetricsLogger(out, tensorboard=cfg.tensorboard) if d.main else None
    autocast = (torch.autocast(d.device.type, dtype=torch.bfloat16) if cfg.precision == "bf16"
                else contextlib.nullcontext())
    last_terms: dict[str, float] = {}
    exports: dict[str, str] = {}

    def snapshot() -> dict[str, Any]:
        """What changes within a step or an evaluation, as it is now (one process): RNGs, the data cursor, the
        period sums, the task's own state."""
        task_state = task.state_dict() if hasattr(task, "state_dict") else None
        return {"rng": rng_snapshot(), "data": batches.state_dict(), "period": period.clone(),
                "task": copy.deepcopy(task_state)}

    def checkpoint(stage_index: int, stage_step: int, optimizer: torch.optim.Optimizer | None,
                   snap: dict[str, Any] | None = None, evaluate_pending: bool = False) -> Path | None:
        """Save the training state: model and optimizer as they are, the rest from ``snap`` (one process) or as
        it is now on every rank."""
        if snap is not None:
            rngs, cursors, periods, task_state = [rng_state(snap["rng"])], [snap["data"]], [snap["period"]], snap["task"]
        else:
            rngs, cursors = _all_gather(rng_state(), d), _all_gather(batches.state_dict(), d)
            periods = _all_gather(period.clone(), d)
            task_state = task.state_dict() if d.main and hasattr(task, "state_dict") else None
        path = None
        if d.main:
            path = save_checkpoint(ckpt_root, global_step, {
                "model": module.state_dict(), "optimizer": optimizer.state_dict() if optimizer else None,
                "stage_index": stage_index, "stage_step": stage_step, "global_step": global_step,
                "stage_name": stages[stage_index].name if stage_index < len(stages) else "done",
                "rng": rngs, "data": cursors, "world_size": d.world, "period": periods, "task": task_state,
                "evaluate_pending": evaluate_pending,
            }, keep_last=cfg.keep_last)
        if d.world > 1:
            dist.barrier()
        return path or latest_checkpoint(ckpt_root)

    # The last clean boundary, what Ctrl-C saves (one process only): stage and step, the optimizer to save
    # (None: none yet in this stage), the snapshot from before the step or evaluation under way (None: the state
    # as it is), whether an evaluation is pending. ``saved`` is the boundary the newest saved state holds.
    at: tuple[int, int] = (start_stage, start_step)
    at_optimizer: torch.optim.Optimizer | None = None
    at_snap: dict[str, Any] | None = None
    saved: tuple[int, int] | None = at if last_ckpt is not None and not eval_pending else None
    eval_now = eval_pending
    guard = d.world == 1

    def evaluate() -> None:
        """The task's evaluation at the current step; an interrupt meanwhile saves the state from before it."""
        nonlocal at_snap, eval_now
        eval_now = True
        at_snap = snapshot() if guard else None
        _evaluate(task, logger, global_step, d, period)
        module.train()  # evaluation may have switched it to eval mode
        at_snap, eval_now = None, False

    try:
        for si in range(start_stage, len(stages)):
            stage = stages[si]
            # -- stage setup: trainable groups, a fresh optimizer (its own warm-up), a fresh DDP wrapper
            groups = build_param_groups(task.param_groups(), stage.lr_multipliers, cfg.lr, cfg.weight_decay)
            optimizer = make_optimizer(cfg.optimizer, groups, cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay)
            if si == start_stage and opt_state is not None:
                optimizer.load_state_dict(opt_state)
                at_optimizer = optimizer
            trainable = [p for g in groups for p in g["params"]]
            model: nn.Module = module
            if d.world > 1:
                model = nn.parallel.DistributedDataParallel(module, device_ids=[d.local_rank]
                                                            if d.device.type == "cuda" else None)
            if d.main:
                frozen = sorted(set(task.param_groups()) - set(stage.lr_multipliers))
                log.info("stage %s: %d steps, terms %s, layers %s, lr x %s, frozen %s", stage.name, stage.steps,
                         stage.terms, stage.layers, stage.lr_multipliers, frozen)
            first = start_step if si == start_stage else 0
            if eval_pending and si == start_stage:  # interrupted during this evaluation: run it again
                eval_pending = False
                evaluate()
                if first < stage.steps and cfg.save_on_eval:
                    last_ckpt, saved = checkpoint(si, first, optimizer), (si, first)
            bar = Progress(total=stage.steps, initial=first, desc=stage.name, disable=not (cfg.progress and d.main),
                           dynamic_ncols=True)
            module.train()
            t_last, samples_since = time.perf_counter(), 0
            for stage_step in range(first, stage.steps):
                # -- the boundary before this step: nothing below changes weights or optimizer until the update
                at, at_snap = (si, stage_step), (snapshot() if guard else None)
                # -- lr for this step
                set_lr(optimizer, cfg.lr, warmup_decay(stage_step, stage.warmup, stage.steps, cfg.decay_power))
                # -- one global batch: micro-batches, counts over all ranks
                micro = [{k: v.to(d.device) for k, v in next(batches).items()} for _ in range(cfg.grad_accum)]
                counts = {k: v.to(d.device) for k, v in batch_counts(micro, d).items()}
                step_terms: dict[str, Tensor] = {}
                step_loss = torch.zeros((), dtype=torch.float64, device=d.device)
                for k, batch in enumerate(micro):
                    sync = contextlib.nullcontext() if (d.world == 1 or k == len(micro) - 1) else model.no_sync()
                    with sync:
                        with autocast:
                            terms = model(batch, stage, counts)
                        _check_finite(terms, global_step + 1, last_ckpt)
                        loss = weighted_total(terms, stage.terms)
                        step_loss += loss.detach().double()
                        (loss * d.world).backward()  # DDP averages gradients over ranks
                    for name, v in terms.items():
                        step_terms[name] = step_terms.get(name, 0.0) + v.detach().float()
                # -- clip and step: the update and its bookkeeping are never cut by a signal
                with _signals_held():
                    grad_norm = (torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm) if cfg.max_grad_norm > 0
                                 else torch.zeros(()))
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    period += torch.stack([step_loss.cpu() * counts["sequences"].cpu().double(),
                                           counts["sequences"].cpu().double()])
                    global_step += 1
                    at, at_optimizer, at_snap = (si, stage_step + 1), optimizer, None
                samples_since += cfg.batch_size
                # -- log
                done = stage_step + 1 == stage.steps
                if global_step % cfg.log_every == 0 or done or stage_step == first:
                    names = sorted(step_terms)
                    vals = _all_reduce(torch.stack([step_terms[n] for n in names]).float(), d).tolist()
                    last_terms = dict(zip(names, vals, strict=True))
                    total = sum(stage.terms.get(n.split("/")[0], 0.0) * v for n, v in last_terms.items())
                    now = time.perf_counter()
                    rate = samples_since / max(now - t_last, 1e-9)
                    t_last, samples_since = now, 0
                    if d.main:
                        lrs = {f"lr/{g['name']}": g["lr"] for g in optimizer.param_groups}
                        logger.log(global_step, stage=stage.name, loss=total,
                                   **{f"loss/{n}": v for n, v in last_terms.items()}, grad_norm=float(grad_norm),
                                   samples_per_s=rate, memory_mb=_memory_mb(d.device), **lrs)
                        bar.set_postfix(loss=f"{total:.4g}", samples_s=f"{rate:.1f}")
                bar.update(1)
                evaluated = bool(cfg.eval_every and (global_step % cfg.eval_every == 0 or done))
                if evaluated:
                    evaluate()
                # -- save the training state
                if not done and ((cfg.save_every and global_step % cfg.save_every == 0)
                                 or (evaluated and cfg.save_on_eval)):
                    last_ckpt, saved = checkpoint(si, stage_step + 1, optimizer), at
            bar.close()
            # -- stage end: the stage's result (rank 0), then the training state (next stage, step 0), so that
            #    a run stopped before that state is saved exports again on resume
            stage_dir = out / "stages" / stage.name
            export = getattr(task, "export", None)
            if d.main and export is not None:
                export(stage, stage_dir)
            last_ckpt = checkpoint(si + 1, 0, None)
            at, at_optimizer, at_snap = (si + 1, 0), None, None
            saved = at
            if d.main:
                if stage_dir.exists():  # a task may keep its result elsewhere (fine-tuning: the best epoch)
                    exports[stage.name] = str(stage_dir)
                log.info("stage %s done at global step %d%s", stage.name, global_step,
                         f" -> {stage_dir}" if stage_dir.exists() else "")
    except KeyboardInterrupt:
        if not guard:
            log.warning("interrupted: under DDP only the periodic and stage-end training states are kept")
        elif at != saved or eval_now:
            path = checkpoint(*at, at_optimizer, at_snap, evaluate_pending=eval_now)
            log.info("interrupted: saved the training state at global step %d to %s", global_step, path)
        raise
    finally:
        if logger:
            logger.close()
    return {"global_step": global_step, "exports": exports, "last_terms": last_terms, "out_dir": str(out)}
