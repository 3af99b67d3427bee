"""A user's file at scale (issue 21, item 8): rows/s and peak RSS of reading + tokenising a large CSV, and of
``predict`` on it, our way beside the plain way, in the same run.

The file: SST-2's training sentences (../shared/data/glue/SST-2/train.tsv, else the bundled sample) with their
labels as ``negative`` / ``positive``, repeated to ``--rows`` rows of a ``text,label`` CSV.

Each measurement runs in its own subprocess (a fresh interpreter; every library either path uses is imported
before the baseline is taken, so "the work's own" memory is the peak minus that baseline). Two peaks are kept:
peak RSS (``ru_maxrss``), which also counts the pages of the memory-mapped Arrow copy that have been read (page
cache the kernel drops under pressure), and peak anonymous memory (``RssAnon``, sampled every 2 ms), which is
what the process holds:

* ``ours read+tokenize``: ``data.files.read_text_file`` (datasets: the CSV becomes a memory-mapped Arrow file)
  then ``data.packed.encode_text_file`` (the token ids in one flat uint16 array);
* ``plain read+tokenize``: ``pandas.read_csv`` then transformers' ``BertTokenizerFast(vocab)`` on the whole
  column (lists of Python ints), as a script would do it;
* ``ours predict``: ``mobilebert predict --input F --output out.csv`` (streamed, chunk by chunk);
* ``plain predict``: pandas + ``BertTokenizerFast`` + the same PyTorch model batch by batch over the whole
  frame held in memory, then ``DataFrame.to_csv``.

Both predict rows use the same model: by default a small randomly initialised MobileBERT classifier (2 layers,
hidden 128) made here, since the claim is about the data path (memory, overhead), not model speed; ``--model DIR``
runs a fine-tuned folder instead.

    python benchmarks/own_data_scale.py [--rows 1000000] [--predict-rows N] [--seq 128] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_SST2 = REPO.parent / "shared" / "data" / "glue" / "SST-2" / "train.tsv"
NAMES = ("negative", "positive")


def make_csv(path: Path, rows: int) -> int:
    """A ``text,label`` CSV of ``rows`` rows cycling through SST-2's training sentences; returns its size."""
    import csv

    from mobilebert.data.glue import SAMPLE_DIR, read_glue

    source = SHARED_SST2 if SHARED_SST2.is_file() else SAMPLE_DIR
    examples = read_glue("sst2", source, "train")
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(rows):
            e = examples[i % len(examples)]
            w.writerow([e.text_a.strip(), NAMES[e.label]])
    return path.stat().st_size


def make_model(path: Path) -> None:
    """A small MobileBERT classifier with BERT's vocab and readable labels (random weights)."""
    import torch

    from mobilebert.config import MobileBertConfig
    from mobilebert.modeling import MobileBertForSequenceClassification
    from mobilebert.tokenizer import MobileBertTokenizer

    torch.manual_seed(0)
    tok = MobileBertTokenizer.default()
    cfg = MobileBertConfig.from_preset("mobilebert", num_hidden_layers=2, hidden_size=128, embedding_size=64,
                                       intra_bottleneck_size=64, intermediate_size=128, num_attention_heads=2,
                                       num_feedforward_networks=1, vocab_size=len(tok), num_labels=2,
                                       id2label=dict(enumerate(NAMES)))
    MobileBertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    (path / "finetune.json").write_text(json.dumps({"task": "text-classification", "max_seq_length": 128,
                                                    "columns": {"text": "text", "text_pair": None,
                                                                "label": "label"}}))


# ----------------------------------------------------------------------------- the measured work (children)
def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _anon_mb() -> float:
    """This process's anonymous resident memory now (what it holds; file pages it maps are the page cache's)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:")) / 1024


class AnonPeak:
    """The highest ``_anon_mb`` seen, sampled every 2 ms by a thread while the work runs."""

    def __init__(self) -> None:
        import threading

        self.peak, self._stop = _anon_mb(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _anon_mb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _anon_mb())


def work(kind: str, csv_path: str, model: str, seq: int, out: str) -> dict:
    """One measurement, in this (fresh) process: seconds, rows, RSS after imports and at the end."""
    import datasets  # noqa: F401  (every library either way imports before the baseline RSS)
    import numpy as np  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import torch

    res: dict = {}
    if kind == "ours-read":
        from mobilebert.data.files import read_text_file
        from mobilebert.data.packed import encode_text_file
        from mobilebert.tokenizer import MobileBertTokenizer

        tok = MobileBertTokenizer.from_pretrained(model)
        base, anon_base = _rss_mb(), _anon_mb()
        watch = AnonPeak()
        t = time.perf_counter()
        f = read_text_file(csv_path, cache_dir=Path(out) / "cache")
        packed = encode_text_file(tok, f, seq)
        res.update(rows=len(packed), token_ids_mb=packed.nbytes / 2**20)
    elif kind == "plain-read":
        import pandas as pd
        from transformers import BertTokenizerFast

        tok = BertTokenizerFast(str(Path(model) / "vocab.txt"))  # the vocab passed positionally
        base, anon_base = _rss_mb(), _anon_mb()
        watch = AnonPeak()
        t = time.perf_counter()
        df = pd.read_csv(csv_path, keep_default_na=False)
        enc = tok(df["text"].tolist(), truncation=True, max_length=seq)
        res.update(rows=len(enc["input_ids"]))
    elif kind == "ours-predict":
        from mobilebert.cli import main

        base, anon_base = _rss_mb(), _anon_mb()
        watch = AnonPeak()
        t = time.perf_counter()
        rc = main(["predict", "--model", model, "--input", csv_path, "--output", str(Path(out) / "ours.csv"),
                   "--batch-size", "64"])
        assert rc == 0
        with open(Path(out) / "ours.csv", encoding="utf-8") as f:
            res.update(rows=sum(1 for _ in f) - 1)
    elif kind == "plain-predict":
        import pandas as pd
        from transformers import BertTokenizerFast

        from mobilebert.load import load_model

        m = load_model(model).eval()
        names = [m.config.id2label[i] for i in range(m.config.num_labels)]
        tok = BertTokenizerFast(str(Path(model) / "vocab.txt"))
        base, anon_base = _rss_mb(), _anon_mb()
        watch = AnonPeak()
        t = time.perf_counter()
        df = pd.read_csv(csv_path, keep_default_na=False)
        enc = tok(df["text"].tolist(), truncation=True, max_length=seq)
        preds, scores = [], []
        with torch.inference_mode():
            for s in range(0, len(df), 64):
                batch = tok.pad({"input_ids": enc["input_ids"][s:s + 64],
                                 "token_type_ids": enc["token_type_ids"][s:s + 64],
                                 "attention_mask": enc["attention_mask"][s:s + 64]}, return_tensors="pt")
                p = torch.softmax(m(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).logits, -1)
                best = p.max(-1)
                preds += [names[i] for i in best.indices.tolist()]
                scores += best.values.tolist()
        df["prediction"], df["score"] = preds, scores
        df.to_csv(Path(out) / "plain.csv", index=False)
        res.update(rows=len(df))
    else:
        raise ValueError(kind)
    res["seconds"] = time.perf_counter() - t
    res["anon_after_imports_mb"], res["peak_anon_mb"] = anon_base, watch.stop()
    res["rss_after_imports_mb"] = base
    res["peak_rss_mb"] = _rss_mb()
    res["rows_per_s"] = res["rows"] / res["seconds"]
    return res


def measure(kind: str, csv_path: Path, model: Path, seq: int, out: Path, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_DATASETS_CACHE": str(out / "hf-cache"),
           "TOKENIZERS_PARALLELISM": "true", "PYTHONPATH": os.pathsep.join([str(REPO / "src"),
                                                                             os.environ.get("PYTHONPATH", "")])}
    here = str(Path(__file__).parent)
    code = (f"import json, sys; sys.path.insert(0, {here!r}); import own_data_scale as b; "
            "a = sys.argv[1:]; print('RESULT ' + json.dumps(b.work(a[0], a[1], a[2], int(a[3]), a[4])))")
    r = subprocess.run([sys.executable, "-c", code, kind, str(csv_path), str(model), str(seq), str(out)],
                       capture_output=True, text=True, env=env)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    if r.returncode or line is None:
        raise SystemExit(f"{kind} failed:\n{r.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--predict-rows", type=int, default=None, help="rows of the file predict runs on (default: --rows)")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None, help="a fine-tuned classifier folder (default: a small random one)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "own_data_scale.json"))
    args = ap.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="own-data-scale-") as tmp:
        tmp = Path(tmp)
        big = tmp / "big.csv"
        size = make_csv(big, args.rows)
        small = big
        if args.predict_rows and args.predict_rows < args.rows:
            small = tmp / "predict.csv"
            make_csv(small, args.predict_rows)
        model = Path(args.model) if args.model else tmp / "model"
        if not args.model:
            make_model(model)
        results = {}
        for kind, path in (("ours-read", big), ("plain-read", big), ("ours-predict", small),
                           ("plain-predict", small)):
            out = tmp / kind
            out.mkdir()
            results[kind] = measure(kind, path, model, args.seq, out, args.threads)
            r = results[kind]
            print(f"{kind:14s} {r['rows']:>9,d} rows  {r['rows_per_s']:>9,.0f} rows/s  work's own peak: RSS "
                  f"{r['peak_rss_mb'] - r['rss_after_imports_mb']:>6,.0f} MB, anonymous "
                  f"{r['peak_anon_mb'] - r['anon_after_imports_mb']:>6,.0f} MB"
                  + (f"  (token ids {r['token_ids_mb']:.1f} MB)" if "token_ids_mb" in r else ""), flush=True)
    for a, b in (("ours-read", "plain-read"), ("ours-predict", "plain-predict")):
        ra, rb = results[a], results[b]
        print(f"{a} vs {b}: {ra['rows_per_s'] / rb['rows_per_s']:.2f}x rows/s, work's own peak anonymous memory "
              f"{ra['peak_anon_mb'] - ra['anon_after_imports_mb']:,.0f} vs "
              f"{rb['peak_anon_mb'] - rb['anon_after_imports_mb']:,.0f} MB")
    r = results["ours-read"]
    print(f"ours-read, work's own peak / token ids: RSS {(r['peak_rss_mb'] - r['rss_after_imports_mb']) / r['token_ids_mb']:.2f}x "
          f"(the memory-mapped Arrow copy's pages count here), anonymous "
          f"{(r['peak_anon_mb'] - r['anon_after_imports_mb']) / r['token_ids_mb']:.2f}x")
    record = {"rows": args.rows, "predict_rows": args.predict_rows or args.rows, "csv_mb": size / 2**20,
              "seq": args.seq, "threads": args.threads, "model": args.model or "small random MobileBERT classifier",
              "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
              "command": "python benchmarks/own_data_scale.py " + " ".join(sys.argv[1:]), "results": results}
    from mobilebert.atomic import atomic_write_text

    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
