"""One distillation step: ours (DistillModule) vs the straightforward way with transformers' models.

A step = teacher forward (no grad) + student forward/backward with feature-map, mean/variance and attention
transfer. ``--stage joint`` (default): every layer's terms at once. ``--stage progressive``: one step of each
of the L phases (phase l: layer l's terms; the time and the largest peak over the L steps are what one
"step" reports). ``--pd`` (= ``--stage auxiliary``): every layer's terms plus pre-training distillation + NSP.
The straightforward way runs transformers' MobileBERT models with ``output_hidden_states=True,
output_attentions=True`` (eager attention), whole models every step, and computes the same terms on top of
the returned tensors. Both sides train the same parameters: the stage's (copied embeddings and heads frozen,
as the recipe does). The teacher is IB-BERT-large (its first ``--layers`` blocks) with Q, K, V read from
the 1024-d bottleneck, which transformers can express. Same configs, weights, batch, sequence length and
threads; runs interleaved A B A B; medians reported. Peak memory: CUDA max_memory_allocated on GPU; on CPU
the step's peak resident memory above the resident memory before it (Linux VmHWM, reset per step; large
allocations go straight to mmap so freed memory is returned and both sides are measured alike).
``--recompute``: our student blocks are recomputed in backward (activation checkpointing). Also timed: the
teacher's forward alone (transformers', whole model), which every implementation must run and which bounds
the speed-up any student-side work can bring; printed as the ceiling.

    python benchmarks/distill_step.py [--layers 4] [--batch 8] [--seq 128] [--runs 5]
                                      [--stage joint|progressive] [--pd] [--teacher-chunk 2] [--recompute]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if "MALLOC_MMAP_THRESHOLD_" not in os.environ and sys.platform.startswith("linux"):
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"  # return freed blocks to the OS: honest CPU peak memory
    os.execv(sys.executable, [sys.executable, *sys.argv])

import torch
import torch.nn.functional as F

from mobilebert import MobileBertConfig
from mobilebert.atomic import atomic_write_text
from mobilebert.distill.losses import TransferMap, default_transfer_weights
from mobilebert.distill.module import DistillModule
from mobilebert.distill.strategies import build_schedule
from mobilebert.modeling import MobileBertForPreTraining
from mobilebert.train.trainer import weighted_total


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measure(fn, device: torch.device) -> tuple[float, float]:
    """(seconds, peak extra bytes) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        base = _status("VmRSS")
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _status("VmHWM")
    return dt, float(peak - base)


def batch(cfg: MobileBertConfig, B: int, T: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, cfg.vocab_size, (B, T), generator=g)
    am = torch.ones(B, T, dtype=torch.long)
    am[B // 2:, T * 3 // 4:] = 0  # some padding
    labels = torch.where(torch.rand(B, T, generator=g) < 0.15, ids, -100)
    labels[am == 0] = -100
    tt = (torch.arange(T)[None] >= T // 2).long().expand(B, T).contiguous()
    out = {"input_ids": ids * am, "attention_mask": am, "token_type_ids": tt, "labels": labels,
           "next_sentence_label": torch.randint(0, 2, (B,), generator=g)}
    return {k: v.to(device) for k, v in out.items()}


def straightforward_step(hf_t, hf_s, b, weights: dict[str, float], pd: bool, layers: list[int],
                         alpha: float = 0.5) -> None:
    """What one writes first: ask both models for every hidden state and attention map, then loop."""
    am = b["attention_mask"]
    kw = dict(input_ids=b["input_ids"], attention_mask=am, token_type_ids=b["token_type_ids"],
              output_hidden_states=True, output_attentions=True)
    if not pd:  # transfer only: the encoders, no pre-training heads (as one would write it)
        hf_t, hf_s = hf_t.mobilebert, hf_s.mobilebert
    with torch.no_grad():
        t = hf_t(**kw)
    s = hf_s(**kw)
    m = am.float()
    n_tok = m.sum()
    loss = 0.0
    for i in layers:
        hs, ht = s.hidden_states[i + 1], t.hidden_states[i + 1]
        H = hs.shape[-1]
        fmt = ((F.layer_norm(hs, (H,)) - F.layer_norm(ht, (H,))).pow(2).mean(-1) * m).sum() / n_tok
        mean = ((hs.mean(-1) - ht.mean(-1)).pow(2) * m).sum() / n_tok
        var = ((hs.var(-1, unbiased=False) - ht.var(-1, unbiased=False)).abs() * m).sum() / n_tok
        ps, pt = s.attentions[i], t.attentions[i]
        kl = (pt * (torch.log(pt + 1e-12) - torch.log(ps + 1e-12))).sum(-1)  # (B, nh, T)
        att = (kl * m[:, None]).sum() / (n_tok * ps.shape[1])
        loss = loss + weights["fmt"] * fmt + weights["mean"] * mean + weights["var"] * var + weights["att"] * att
    if pd:
        sel = b["labels"] != -100
        target = alpha * F.one_hot(b["labels"][sel], s.prediction_logits.shape[-1]) + (1 - alpha) * \
            t.prediction_logits[sel].softmax(-1)
        loss = loss - (target * s.prediction_logits[sel].log_softmax(-1)).sum(-1).mean()
        loss = loss + F.cross_entropy(s.seq_relationship_logits, b["next_sentence_label"])
    loss.backward()


def train_only(ours: DistillModule, hf_s, stage) -> None:
    """Both students train exactly the stage's parameter groups (the trainer's rule: multiplier 0 = frozen)."""
    hf_params = dict(hf_s.named_parameters())
    full_name = {id(p): n for n, p in ours.student.named_parameters()}
    for gname, named in ours.param_groups().items():
        on = stage.lr_multipliers.get(gname, 0.0) > 0
        for _, p in named:
            p.requires_grad_(on)
            if full_name.get(id(p)) in hf_params:
                hf_params[full_name[id(p)]].requires_grad_(on)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4, help="layers of teacher (IB-BERT) and student (MobileBERT)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stage", choices=("joint", "progressive", "auxiliary"), default="joint")
    ap.add_argument("--pd", action="store_true", help="same as --stage auxiliary (transfer + PD + NSP)")
    ap.add_argument("--teacher-chunk", type=int, default=2, help="ours: teacher sequences per pass (0: all)")
    ap.add_argument("--recompute", action="store_true", help="ours: activation checkpointing of student blocks")
    ap.add_argument("--bf16-teacher", action="store_true", help="our teacher in bf16")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.pd:
        args.stage = "auxiliary"
    pd = args.stage == "auxiliary"
    import transformers

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    L = args.layers
    # IB-BERT with Q, K, V read from its 1024-d bottleneck: transformers cannot express the official teacher's
    # Q, K from the 512-d block input, and this variant is the same maths (and cost) on both sides.
    tcfg = MobileBertConfig.from_preset("ib-bert-large", num_hidden_layers=L, hidden_dropout_prob=0.0,
                                        attention_probs_dropout_prob=0.0, padding_invariant=False,
                                        use_bottleneck_attention=True)
    scfg = MobileBertConfig.from_preset("mobilebert", num_hidden_layers=L, attention_probs_dropout_prob=0.0,
                                        padding_invariant=False)
    teacher, student = MobileBertForPreTraining(tcfg).eval(), MobileBertForPreTraining(scfg)
    with tempfile.TemporaryDirectory() as d:
        teacher.save_pretrained(Path(d) / "t")
        student.save_pretrained(Path(d) / "s")
        hf_t = transformers.MobileBertForPreTraining.from_pretrained(Path(d) / "t", attn_implementation="eager")
        hf_s = transformers.MobileBertForPreTraining.from_pretrained(Path(d) / "s", attn_implementation="eager")
    hf_t.eval().to(device).requires_grad_(False)
    hf_s.train().to(device)
    if args.bf16_teacher:
        teacher = teacher.to(torch.bfloat16)
    ours = DistillModule(student, teacher, TransferMap.build(tcfg, scfg), teacher_chunk=args.teacher_chunk,
                          recompute=args.recompute)
    ours = ours.to(device).train()
    stages = build_schedule(args.stage, L, 10 * L, 10 if pd else 0, copied_groups=("embeddings", "heads"))
    stages = stages[:L] if args.stage == "progressive" else stages[:1]
    b = batch(scfg, args.batch, args.seq, device)
    counts = {"tokens": b["attention_mask"].sum().float(), "masked": (b["labels"] != -100).sum().float(),
              "sequences": torch.tensor(float(args.batch), device=device)}
    weights = default_transfer_weights(L)

    def ours_step() -> None:
        for stage in stages:
            train_only(ours, hf_s, stage)
            weighted_total(ours(b, stage, counts), stage.terms).backward()
            ours.zero_grad(set_to_none=True)

    def hf_step() -> None:
        for stage in stages:
            train_only(ours, hf_s, stage)
            straightforward_step(hf_t, hf_s, b, weights, pd, stage.layers)
            hf_s.zero_grad(set_to_none=True)

    def teacher_only() -> None:  # the part both sides must do, identical in FLOPs: the floor of any step
        with torch.no_grad():
            for _ in stages:
                hf_t.mobilebert(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                token_type_ids=b["token_type_ids"])

    fns = {"ours": ours_step, "transformers": hf_step, "teacher forward": teacher_only}
    for fn in fns.values():  # warm-up
        fn()
    res: dict[str, dict[str, list[float]]] = {k: {"s": [], "mem": []} for k in fns}
    for _ in range(args.runs):
        for name, fn in fns.items():
            dt, mem = measure(fn, device)
            res[name]["s"].append(dt)
            res[name]["mem"].append(mem)
    summary = {}
    for name, r in res.items():
        sec = statistics.median(r["s"])
        summary[name] = {"samples_per_s": args.batch * len(stages) / sec, "step_ms": sec * 1e3 / len(stages),
                         "peak_mem_mb": statistics.median(r["mem"]) / 2**20, "runs": r}
    o, h = summary["ours"], summary["transformers"]
    ratios = {"samples_per_s": o["samples_per_s"] / h["samples_per_s"], "peak_mem": o["peak_mem_mb"] / h["peak_mem_mb"],
              # a step can never be faster than its teacher forward: the best ratio any implementation could reach
              "ceiling_samples_per_s": summary["teacher forward"]["samples_per_s"] / h["samples_per_s"]}
    what = f"{args.stage}{f' (one step per phase, {L} phases)' if args.stage == 'progressive' else ''}"
    print(f"distillation step ({what}: FMT+mean/var+AT{' + PD + NSP' if pd else ''}), teacher ib-bert-large "
          f"x{L} layers, student mobilebert x{L}, batch {args.batch}, seq {args.seq}, {args.threads} threads, "
          f"{device.type}, median of {args.runs}")
    print(f"{'':15s} {'samples/s':>10s} {'step ms':>9s} {'peak MB':>9s}")
    for name, s in summary.items():
        print(f"{name:15s} {s['samples_per_s']:10.2f} {s['step_ms']:9.1f} {s['peak_mem_mb']:9.1f}")
    print(f"{'ratio':15s} {ratios['samples_per_s']:9.2f}x {'':9s} {ratios['peak_mem']:8.2f}x  (targets >= 1.3x, <= 0.8x)")
    if args.stage != "progressive":  # (progressive: ours runs only the teacher layers a phase needs)
        print(f"teacher forward alone is {summary['teacher forward']['step_ms'] / h['step_ms']:.0%} of the "
              f"straightforward step: no student-side work can beat {ratios['ceiling_samples_per_s']:.2f}x")
    out = Path(args.out or f"benchmarks/results/distill_step_{args.stage}.json")
    atomic_write_text(out, json.dumps({"args": vars(args), "device": device.type, "torch": torch.__version__,
                                       "summary": summary, "ratios": ratios}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
