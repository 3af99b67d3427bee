"""Pre-training data throughput: end-to-end prepare-pretraining tokens/s (1 vs 2 workers) and tokenizer
batch throughput (ours vs transformers' BertTokenizerFast), on WikiText-2 raw valid + test.

Each pair runs interleaved (A B A B ...) so machine noise hits both alike; the table gives medians and the
ratio against the baseline measured in the same run (1 worker; BertTokenizerFast). "tokens" are the corpus's
WordPiece tokens (dupe_factor 1, max_seq_length 128). CPU seconds (this process + its worker pool) are
reported beside wall time: on a shared machine wall time mostly measures the other tenants. Also printed:
the extrapolated time to prepare a BookCorpus + Wikipedia sized corpus (3.3B words) on a 32-core machine from
the 2-worker run's tokens per CPU-second, assuming linear scaling (pass --efficiency to discount), and the
same from wall time.

    python benchmarks/prepare_data.py [--runs 5] [--out benchmarks/results/prepare_data.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mobilebert.atomic import atomic_write_text  # noqa: E402
from mobilebert.data.instances import sample_corpus_path  # noqa: E402
from mobilebert.data.shards import prepare_pretraining  # noqa: E402
from mobilebert.tokenizer import BUNDLED_VOCAB, MobileBertTokenizer  # noqa: E402


def corpus_files() -> list[Path]:
    shared = Path(os.environ.get("MOBILEBERT_SHARED_DATA", REPO.parent / "shared" / "data"))
    files = [shared / "corpus/wikitext-2-raw" / n for n in ("wiki.valid.raw", "wiki.test.raw")]
    return files if all(f.is_file() for f in files) else [sample_corpus_path()]


def cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (the worker pool)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def interleave(fns: dict, runs: int, cpu: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            c0, t0 = cpu_seconds(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            if cpu is not None:
                cpu.setdefault(name, []).append(cpu_seconds() - c0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cores", type=int, default=32, help="cores of the machine to extrapolate to")
    ap.add_argument("--words", type=float, default=3.3e9, help="corpus size to extrapolate to (words)")
    ap.add_argument("--tokens-per-word", type=float, default=None,
                    help="for the extrapolation (default: measured on this corpus, words = whitespace-separated "
                         "strings holding a letter or digit, since WikiText splits off punctuation)")
    ap.add_argument("--efficiency", type=float, default=1.0, help="assumed parallel efficiency at --cores")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/prepare_data.json"))
    args = ap.parse_args()

    files = corpus_files()
    text = "".join(f.read_text(encoding="utf-8") for f in files)
    words = sum(any(c.isalnum() for c in w) for w in text.split())
    tok = MobileBertTokenizer.default()
    out: dict = {"corpus": [str(f) for f in files], "bytes": len(text.encode()), "words": words,
                 "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                             "loadavg_start": os.getloadavg()}}

    # 1. End to end, 1 vs 2 workers.
    results: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        def run(workers: int):
            def go() -> None:
                r = prepare_pretraining(files, Path(tmp) / f"w{workers}", workers=workers, progress=False,
                                        tokenizer=tok)
                results[workers] = r.manifest
            return go

        cpu: dict[str, list[float]] = {}
        e2e = interleave({"1 worker": run(1), "2 workers": run(2)}, args.runs, cpu)
    same = [s["sha256"] for s in results[1]["shards"]] == [s["sha256"] for s in results[2]["shards"]]
    tokens = results[1]["counts"]["tokens"]
    e2e_rows = {k: {"median_s": statistics.median(v), "tokens_per_s": tokens / statistics.median(v),
                    "cpu_s": statistics.median(cpu[k]), "tokens_per_cpu_s": tokens / statistics.median(cpu[k]),
                    "times_s": v} for k, v in e2e.items()}
    out["end_to_end"] = {"tokens": tokens, "examples": results[1]["counts"]["examples"],
                         "identical_shards_1_vs_2_workers": same, **e2e_rows}

    # 2. Tokenizer batch throughput: ours (full __call__ and the raw fast path) vs BertTokenizerFast.
    lines = [ln for ln in text.split("\n") if ln.strip()]
    fns = {"ours tok(lines)": lambda: tok(lines), "ours encode_batch_raw": lambda: tok.encode_batch_raw(lines)}
    try:
        import transformers

        hf = transformers.BertTokenizerFast(str(BUNDLED_VOCAB), do_lower_case=True)
        fns = {"BertTokenizerFast": lambda: hf(lines), **fns}
    except ImportError:
        print("transformers not installed: no tokenizer baseline")
    for fn in fns.values():
        fn()  # warm-up
    tk = interleave(fns, args.runs)
    tk_rows = {k: {"median_s": statistics.median(v), "tokens_per_s": tokens / statistics.median(v)}
               for k, v in tk.items()}
    out["tokenizer_batch"] = {"lines": len(lines), **tk_rows}

    # 3. Extrapolation. On a busy machine wall time says little about scaling; CPU time per token (all
    # processes of the 2-worker run, main process included) is the cost a dedicated core would pay.
    per_core_wall = e2e_rows["2 workers"]["tokens_per_s"] / 2
    per_core = e2e_rows["2 workers"]["tokens_per_cpu_s"]
    tokens_per_word = args.tokens_per_word or tokens / words
    big_tokens = args.words * tokens_per_word
    rate = per_core * args.cores * args.efficiency
    out["extrapolation"] = {"words": args.words, "tokens_per_word": tokens_per_word, "tokens": big_tokens,
                            "cores": args.cores, "efficiency": args.efficiency, "tokens_per_s": rate,
                            "per_core_tokens_per_s_cpu_time": per_core, "per_core_tokens_per_s_wall": per_core_wall,
                            "hours_per_dupe_from_wall": big_tokens / (per_core_wall * args.cores) / 3600,
                            "hours_per_dupe": big_tokens / rate / 3600}
    out["machine"]["loadavg_end"] = os.getloadavg()

    print(f"corpus: {', '.join(Path(f).name for f in files)}: {words:,} words, {tokens:,} tokens "
          f"(load average {out['machine']['loadavg_start'][0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"\n{'end to end (prepare-pretraining)':<34}{'median s':>10}{'tokens/s':>12}{'ratio':>8}"
          f"{'CPU s':>8}{'tokens/CPU s':>14}")
    base = e2e_rows["1 worker"]["tokens_per_s"]
    for k, r in e2e_rows.items():
        print(f"{k:<34}{r['median_s']:>10.3f}{r['tokens_per_s']:>12,.0f}{r['tokens_per_s'] / base:>8.2f}"
              f"{r['cpu_s']:>8.2f}{r['tokens_per_cpu_s']:>14,.0f}")
    print(f"shards identical for 1 and 2 workers: {same}")
    print(f"\n{'tokenizer batch (' + str(len(lines)) + ' lines)':<34}{'median s':>10}{'tokens/s':>12}{'ratio':>8}")
    base = next(iter(tk_rows.values()))["tokens_per_s"]
    for k, r in tk_rows.items():
        print(f"{k:<34}{r['median_s']:>10.3f}{r['tokens_per_s']:>12,.0f}{r['tokens_per_s'] / base:>8.2f}")
    x = out["extrapolation"]
    print(f"\nextrapolation: {args.words / 1e9:.1f}B words x {tokens_per_word:.2f} tokens/word = "
          f"{big_tokens / 1e9:.2f}B tokens at {per_core:,.0f} tokens per CPU-second x {args.cores} cores "
          f"(efficiency {args.efficiency:.0%}) = {x['hours_per_dupe']:.2f} h per pass (dupe_factor 1); "
          f"from this run's wall time ({per_core_wall:,.0f} tokens/s/core): {x['hours_per_dupe_from_wall']:.2f} h")
    path = Path(args.out)
    atomic_write_text(path, json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
