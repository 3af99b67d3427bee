"""Fine-tuning throughput: the shared trainer (``train_one_seed`` -> ``fit``) against the hand-written loop that
fine-tuning used before (issue 12), same model, data, batch, sequence length, threads and seed.

A run = one fine-tuning seed: load the model, train ``--epochs`` epochs, evaluate each epoch, save the best.
Both sides do all of it (``fit`` also writes a checkpoint after each epoch); samples/s = training examples seen
/ wall time of the whole run. Runs are interleaved (old, new, old, new, ...) so machine load hits both alike;
medians and the ratio new/old. The two sides also train to the same weights (printed: max |difference|).

    python benchmarks/finetune_loop.py [--model models/mobilebert-minilm] [--examples 512] [--batch 32]
                                       [--seq 64] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from mobilebert.atomic import atomic_write_text
from mobilebert.data.finetuning import batches, load_eval_data, load_train_data, targets
from mobilebert.data.glue import SAMPLE_DIR
from mobilebert.data.tasks import TaskSetup
from mobilebert.finetune.evaluate import evaluate_loaded
from mobilebert.finetune.load import load_task_model, save_finetuned
from mobilebert.finetune.module import seed_everything
from mobilebert.recipes.finetune import FinetuneConfig, train_one_seed
from mobilebert.tokenizer import MobileBertTokenizer
from mobilebert.train.optim import warmup_decay
from mobilebert.train.trainer import Dist

REPO = Path(__file__).resolve().parents[1]


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor()


def old_loop(setup, model_dir, out_dir, train, dev, tokenizer, *, seed, lr, batch_size, epochs) -> None:
    """The loop of recipes/finetune.py before issue 12 (commit f5dac67), without its logging: AdamW with
    warm-up + linear decay through LambdaLR, clipping at 1.0, a fresh permutation per epoch, eval each epoch."""
    seed_everything(seed)
    model = load_task_model(setup, model_dir)
    steps = math.ceil(len(train.input_ids) / batch_size)
    total = steps * epochs
    decay = [p for p in model.parameters() if p.ndim > 1]
    plain = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": plain, "weight_decay": 0.0}],
                            lr=lr, eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_decay(s, int(0.1 * total), total))
    gen = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train.input_ids), generator=gen).tolist()
        for ids, mask, types, chunk in batches(train, order, batch_size, tokenizer.pad_token_id):
            loss = model(ids, mask, types, **targets(train, chunk, False, False)).loss
            if not torch.isfinite(loss):
                raise FloatingPointError("non-finite loss")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss.item()
        score = evaluate_loaded(model, tokenizer, setup, dev, 64)["dev"]["score"]
        if best is None or score > best:
            best = score
            save_finetuned(model, tokenizer, setup, out_dir / "best")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "models" / "mobilebert-minilm"))
    p.add_argument("--examples", type=int, default=512, help="SST-2 training examples (bundled sample)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "finetune_loop.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    setup = TaskSetup("sst2", max_seq_length=a.seq)
    tokenizer = MobileBertTokenizer.from_pretrained(a.model)
    train = load_train_data(setup, SAMPLE_DIR, tokenizer, limit=a.examples)
    dev = load_eval_data(setup, SAMPLE_DIR, tokenizer, limit=64)
    hp = dict(seed=1, lr=1e-4, batch_size=a.batch, epochs=a.epochs)
    seen = len(train) * a.epochs
    times: dict[str, list[float]] = {"old": [], "fit": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            for side in ("old", "fit"):
                out = Path(tmp) / f"{side}-{r}"
                t0 = time.perf_counter()
                if side == "old":
                    old_loop(setup, a.model, out, train, dev, tokenizer, **hp)
                else:
                    cfg = FinetuneConfig("sst2", str(SAMPLE_DIR), a.model, str(out), lr=hp["lr"],
                                         batch_size=hp["batch_size"], epochs=hp["epochs"], max_seq_length=a.seq,
                                         warmup=0.1, weight_decay=0.01, max_grad_norm=1.0, eval_batch_size=64,
                                         log_every=20)
                    train_one_seed(cfg, setup, out, train, dev, tokenizer, hp["seed"], Dist())
                times[side].append(time.perf_counter() - t0)
                print(f"round {r + 1} {side}: {seen / times[side][-1]:.1f} samples/s", flush=True)
        w_old, w_fit = (load_file(str(Path(tmp) / f"{s}-0" / "best" / "model.safetensors")) for s in ("old", "fit"))
        diff = max(float((w_old[k] - w_fit[k]).abs().max()) for k in w_old)
    rate = {k: seen / statistics.median(v) for k, v in times.items()}
    ratio = rate["fit"] / rate["old"]
    print(f"\nCPU: {_cpu()}, torch threads {a.threads}; {a.examples} SST-2 examples x {a.epochs} epoch(s), batch "
          f"{a.batch}, seq {a.seq}, {Path(a.model).name}; median of {a.repeats} interleaved runs")
    print("| loop | samples/s (median) | ratio |\n| --- | --- | --- |")
    print(f"| old hand-written loop | {rate['old']:.1f} | 1.00 |")
    print(f"| fit (train_one_seed) | {rate['fit']:.1f} | {ratio:.2f} |")
    print(f"max |weight difference| between the two: {diff:.3g}")
    result = {"cpu": _cpu(), "threads": a.threads, "examples": a.examples, "epochs": a.epochs, "batch": a.batch,
              "seq": a.seq, "model": str(a.model), "repeats": a.repeats, "seconds": times,
              "samples_per_s": rate, "ratio_fit_over_old": ratio, "max_weight_difference": diff}
    atomic_write_text(a.json, json.dumps(result, indent=2) + "\n")
    print(f"json: {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
