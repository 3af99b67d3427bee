"""``mobilebert SUBCOMMAND``: argument parsing only; every subcommand calls a plain Python function.

Each subcommand is one function decorated with ``@command``: it adds its parser and returns the function
that runs it. ``mobilebert SUBCOMMAND --help`` shows an example for each.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

Runner = Callable[[argparse.Namespace], int | None]
COMMANDS: dict[str, Callable[[argparse._SubParsersAction], Runner]] = {}


def command(name: str) -> Callable:
    def register(fn: Callable[[argparse._SubParsersAction], Runner]) -> Callable:
        COMMANDS[name] = fn
        return fn

    return register


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; every option's help ends with its default unless it already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else default
        return f"{text} (default: {shown})".strip()


def _parser(sub: argparse._SubParsersAction, name: str, help: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                          formatter_class=_HelpFormatter)


@command("info")
def _info(sub: argparse._SubParsersAction) -> Runner:
    p = _parser(sub, "info", "Build a model from a preset or checkpoint; print its shape, size and latency.",
                "mobilebert info --preset mobilebert --seq 128")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="mobilebert", help="preset name (default: mobilebert)")
    src.add_argument("--model", help="a checkpoint directory instead of a preset")
    p.add_argument("--layers", type=int, help="override num_hidden_layers (presets only)")
    p.add_argument("--seq", type=int, default=128, help="sequence length for the latency probe (cut to the "
                   "model's max_position_embeddings)")
    p.add_argument("--text", default="MobileBERT is a compact task-agnostic BERT for resource-limited devices.",
                   help="the sentence the latency probe encodes")

    def run(a: argparse.Namespace) -> int:
        from .recipes.info import model_info

        overrides = {"num_hidden_layers": a.layers} if a.layers else {}
        print(model_info(preset=a.preset, model_dir=a.model, seq_len=a.seq, text=a.text, **overrides))
        return 0

    return run


@command("demo")
def _demo(sub: argparse._SubParsersAction) -> Runner:
    p = _parser(sub, "demo", "The whole system on the bundled sample data: distil the real all-MiniLM-L6-v2 into a "
                "MobileBERT student, a from-scratch baseline, zero-shot STS, fine-tuning, int8 export, benchmark, "
                "report.md (under 10 minutes on 2 cores).",
                "mobilebert demo --out demo_out            # or --fast for a 2-minute smoke run")
    p.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--fast", action="store_true", help="tiny step counts (under 2 minutes); numbers not meaningful")
    p.add_argument("--recipe", default="minilm", choices=["minilm", "ib-bert"],
                   help="minilm: distil the real all-MiniLM-L6-v2 (default); ib-bert: the paper's recipe, an "
                        "IB-BERT teacher pre-trained here from scratch")

    def run(a: argparse.Namespace) -> int:
        from .recipes.demo import run_demo, summary_rows
        from .report import markdown_table

        results = run_demo(a.out, fast=a.fast, recipe=a.recipe)
        rows = summary_rows(results)
        print(markdown_table(rows, list(dict.fromkeys(k for r in rows for k in r))))
        print(f"report: {a.out}/report.md")
        return 0

    return run


def _yaml_recipe(sub: argparse._SubParsersAction, name: str, help: str, example: str, glob: str,
                 override_example: str, load: Callable[[list[str], str | None], Any],
                 train: Callable[[Any, bool], dict]) -> Runner:
    """A subcommand driven by a YAML config plus ``key=value`` overrides, resumable, stopped by NaN/inf.
    ``load`` reads and checks the config (nothing built yet); ``train`` runs it."""
    p = _parser(sub, name, help, example)
    p.add_argument("config", nargs="?", help=f"YAML config ({glob})")
    p.add_argument("overrides", nargs="*", help=f"key=value overrides, e.g. {override_example}")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in train.out_dir")
    p.add_argument("--overwrite", action="store_true", help="start over in a train.out_dir that holds an earlier "
                   "run (its checkpoints, stages and metrics are deleted first)")

    def run(a: argparse.Namespace) -> int:
        from .train.trainer import NonFiniteLossError
        from .validate import fresh_output

        overrides = _split_overrides(a)
        cfg = load(overrides, a.config)
        a._train_out = cfg.train.out_dir
        fresh_output(a._train_out, "train.out_dir", a.overwrite, a.resume, resumable=True)
        claim_output(a._train_out, a.overwrite, training=True)
        try:
            result = train(cfg, a.resume)
        except NonFiniteLossError as e:
            print(f"mobilebert {name}: stopped: {e}", file=sys.stderr)
            return 3
        for stage, path in result["exports"].items():
            print(f"{stage}: {path}")
        return 0

    return run


@command("pretrain-teacher")
def _pretrain_teacher(sub: argparse._SubParsersAction) -> Runner:
    def load(overrides: list[str], config: str | None) -> Any:
        from .recipes.pretrain_teacher import TeacherConfig, check_teacher_config
        from .train.config import load_config

        return check_teacher_config(load_config(TeacherConfig, config, overrides))

    def train(cfg: Any, resume: bool) -> dict:
        from .recipes.pretrain_teacher import pretrain_teacher

        return pretrain_teacher(cfg, resume=resume)

    return _yaml_recipe(
        sub, "pretrain-teacher", "Pre-train a teacher (IB-BERT or any preset/config) with MLM + NSP.",
        "mobilebert pretrain-teacher configs/teacher_demo.yaml data=runs/data train.out_dir=runs/teacher\n"
        "  torchrun --nproc_per_node 8 -m mobilebert pretrain-teacher configs/teacher_ib_bert_large.yaml",
        "configs/teacher_*.yaml", "steps=1000 train.lr=1e-3", load, train)


@command("distill")
def _distill(sub: argparse._SubParsersAction) -> Runner:
    def load(overrides: list[str], config: str | None) -> Any:
        from .recipes.distill import DistillConfig, check_distill_config
        from .train.config import load_config

        return check_distill_config(load_config(DistillConfig, config, overrides))

    def train(cfg: Any, resume: bool) -> dict:
        from .recipes.distill import distill

        return distill(cfg, resume=resume)

    return _yaml_recipe(
        sub, "distill", "Distil a MobileBERT student from a teacher (progressive, joint, auxiliary; or none: from "
        "scratch).",
        "mobilebert distill configs/distill_demo.yaml teacher=runs/teacher/stages/pretrain data=runs/data\n"
        "  torchrun --nproc_per_node 8 -m mobilebert distill configs/distill_mobilebert.yaml strategy=joint",
        "configs/distill_*.yaml", "strategy=joint train.batch_size=64", load, train)


def _split_overrides(a: argparse.Namespace) -> list[str]:
    """A config path given as key=value belongs to the overrides (the config itself is optional)."""
    if a.config and "=" in a.config:
        a.overrides, a.config = [a.config, *a.overrides], None
    return a.overrides


@command("finetune")
def _finetune(sub: argparse._SubParsersAction) -> Runner:
    p = _parser(sub, "finetune", "Fine-tune a checkpoint on a GLUE task or SQuAD; keep the best epoch per seed.",
                "mobilebert finetune --task sst2 --data ../shared/data/glue --model CKPT --out runs/sst2 "
                "--seeds 1,2,3\n  mobilebert finetune --config configs/finetune_squad.yaml --task squad "
                "--data squad/ --model CKPT --out runs/squad\n"
                "  mobilebert finetune --task sst2 --data ../shared/data/glue --model STUDENT --teacher "
                "runs/sst2-minilm/seed-1/best --kd-alpha 0.5 --kd-temperature 2 --kd-hidden 1 --kd-attention 1 "
                "--dropout 0.1 --out runs/sst2-kd")
    p.add_argument("--task", required=True, help="cola, sst2, mrpc, stsb, qqp, mnli, mnli-mm, qnli, rte, wnli, "
                   "squad, squad2")
    p.add_argument("--data", required=True, help="GLUE root (or task folder), or the folder with SQuAD's JSON")
    p.add_argument("--model", required=True, help="checkpoint folder (ours, HF MobileBERT or HF BERT)")
    p.add_argument("--out", required=True, help="output folder: seed-N/best, metrics.jsonl, results.json")
    p.add_argument("--config", help="YAML hyper-parameters (configs/finetune_*.yaml); flags override it")
    # Flags left unset take the --config value, else the recipe's default (said in each help line).
    p.add_argument("--lr", type=float, help="peak learning rate, AdamW with warm-up and linear decay (default: 5e-5)")
    p.add_argument("--batch-size", type=int, help="examples per step (default: 32)")
    p.add_argument("--epochs", type=int, help="passes over the training set; the best epoch is kept (default: 3)")
    p.add_argument("--max-seq-length", type=int, help="tokens per example, longer pairs truncated (default: 128)")
    p.add_argument("--warmup", type=float, help="fraction of steps (< 1) or a step count (default: 0.1)")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay, not on biases and norms (default: 0.01)")
    p.add_argument("--seeds", help="comma-separated, e.g. 1,2,3 (mean +- std over them; default: 42)")
    p.add_argument("--max-train-examples", type=int, help="train on a fixed random subset of this size "
                   "(default: all)")
    p.add_argument("--max-eval-examples", type=int, help="evaluate on the first N examples only (default: all)")
    p.add_argument("--doc-stride", type=int, help="SQuAD: tokens between the starts of a context's windows "
                   "(default: 128)")
    p.add_argument("--max-query-length", type=int, help="SQuAD: question tokens kept (default: 64)")
    p.add_argument("--max-answer-length", type=int, help="SQuAD: longest answer span in tokens (default: 30)")
    p.add_argument("--random-init", action="store_true", help="same architecture, random weights (baseline)")
    p.add_argument("--source", choices=["tsv", "datasets"], help="GLUE from TSV files or the datasets library")
    p.add_argument("--dropout", type=float, help="override hidden, attention and classifier dropout (e.g. 0.0)")
    p.add_argument("--teacher", help="task-specific distillation: a model already fine-tuned on this task, with "
                   "the student's vocabulary (its outputs on the training set are computed once)")
    p.add_argument("--kd-alpha", type=float, help="weight of the label loss; 1 - alpha goes to the teacher "
                   "(default 0.5)")
    p.add_argument("--kd-temperature", type=float, help="softmax temperature of the teacher term (default 1)")
    p.add_argument("--kd-hidden", type=float, help="weight of intermediate transfer: every student layer's hidden "
                   "states against the teacher's (the teacher then runs on every batch) (default 0: off)")
    p.add_argument("--kd-attention", type=float, help="weight of intermediate transfer: attention maps, as "
                   "--kd-hidden (default 0: off)")
    p.add_argument("--grad-accum", type=int, help="micro-batches per step; --batch-size is the whole step's "
                   "batch (all of them, all processes) (default: 1)")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="bf16: autocast matmuls (default: fp32)")
    p.add_argument("--save-every", type=int, help="also checkpoint every N steps (default: only after each "
                   "epoch)")
    p.add_argument("--resume", action="store_true", help="continue each seed from its latest checkpoint in "
                   "--out (same processes and flags)")

    def run(a: argparse.Namespace) -> int:
        from .recipes.finetune import finetune, format_summary, load_finetune_config

        kw = load_finetune_config(a.config) if a.config else {}
        for name in ("lr", "batch_size", "epochs", "max_seq_length", "warmup", "weight_decay",
                     "max_train_examples", "max_eval_examples", "doc_stride", "max_query_length",
                     "max_answer_length", "source", "dropout", "teacher", "kd_alpha", "kd_temperature",
                     "kd_hidden", "kd_attention", "grad_accum", "precision", "save_every"):
            if getattr(a, name) is not None:
                kw[name] = getattr(a, name)
        if a.seeds:
            kw["seeds"] = [int(s) for s in a.seeds.split(",")]
        if a.random_init:
            kw["random_init"] = True
        if a.resume:
            kw["resume"] = True
        from .train.trainer import NonFiniteLossError

        try:
            results = finetune(a.task, a.data, a.model, a.out, **kw)
        except NonFiniteLossError as e:
            print(f"mobilebert finetune: stopped: {e}", file=sys.stderr)
            return 3
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every process returns the same results
            print(format_summary(results))
            print(f"results: {a.out}/results.json")
            from .sanity import finetune_notes

            for note in finetune_notes(results, a.data if a.source != "datasets" else None):  # at chance: say so
                print(f"note: {note}")
        return 0

    return run


@command("evaluate")
def _evaluate(sub: argparse._SubParsersAction) -> Runner:
    p = _parser(sub, "evaluate", "Score a fine-tuned model on dev splits, or write GLUE-server files for test.",
                "mobilebert evaluate --model runs/sst2/seed-1/best --data ../shared/data/glue\n"
                "  mobilebert evaluate --model runs/sst2/seed-1/best --data ../shared/data/glue --split test "
                "--out submission/")
    p.add_argument("--model", required=True, help="a folder written by `mobilebert finetune` (seed-N/best)")
    p.add_argument("--data", required=True, help="GLUE root (or task folder), or a SQuAD dev JSON / its folder")
    p.add_argument("--task", help="only needed for checkpoints without finetune.json")
    p.add_argument("--split", action="append", help="split(s) to run, e.g. dev, test, dev_mismatched "
                   "(default: every dev split)")
    p.add_argument("--out", help="folder for eval_results.json, GLUE-server files or SQuAD predictions")
    p.add_argument("--batch-size", type=int, default=64, help="examples per forward pass")
    p.add_argument("--limit", type=int, help="first N examples only")
    p.add_argument("--allow-untrained-head", action="store_true", help="score a checkpoint whose task head was "
                   "never trained (chance-level scores; refused without this flag)")

    def run(a: argparse.Namespace) -> int:
        from .recipes.finetune import evaluate

        results = evaluate(a.model, a.data, task=a.task, splits=a.split, batch_size=a.batch_size, out_dir=a.out,
                           limit=a.limit)
        for split, metrics in results.items():
            if isinstance(metrics, dict):
                print(f"{split}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                               for k, v in metrics.items()))
        from .sanity import score_notes

        for note in score_notes(results["task"], results, a.data):  # a score at chance says so
            print(f"note: {note}")
        return 0

    return run


@command("predict")
def _predict(sub: argparse._SubParsersAction) -> Runner:
    p = _parser(sub, "predict", "Run a fine-tuned model on sentences, sentence pairs or question + context.",
                "mobilebert predict --model runs/sst2/seed-1/best \"a gripping , moving film .\"\n"
                "  mobilebert predict --model runs/rte/seed-1/best --pair \"A man sleeps.\" \"Someone rests.\"\n"
                "  mobilebert predict --model runs/squad/seed-1/best --question \"Who won?\" --context \"...\"\n"
                "  mobilebert predict --model runs/sst2/seed-1/best --file reviews.txt   "
                "(one input per line; TAB between the two texts of a pair)")
    p.add_argument("--model", required=True, help="a folder written by `mobilebert finetune`")
    p.add_argument("texts", nargs="*", help="sentences to classify")
    p.add_argument("--pair", nargs=2, action="append", metavar=("A", "B"), help="a sentence pair (repeatable)")
    p.add_argument("--question", action="append", help="a question (with --context; repeatable)")
    p.add_argument("--context", action="append", help="the context of each --question")
    p.add_argument("--file", help="inputs, one per line: a sentence, or two texts separated by a TAB "
                   "(sentence pair, or question TAB context)")
    p.add_argument("--task", help="only needed for checkpoints without finetune.json")
    p.add_argument("--top-k", type=int, default=1, help="also print the next best labels / answers")
    p.add_argument("--allow-untrained-head", action="store_true", help="run a checkpoint whose task head was never "
                   "trained (its outputs are random; refused without this flag)")

    def run(a: argparse.Namespace) -> int:
        from pathlib import Path

        from .recipes.finetune import predict

        inputs: list = list(a.texts) + [tuple(x) for x in a.pair or []]
        if a.question or a.context:
            if len(a.question or []) != len(a.context or []):
                raise ValueError("give one --context per --question")
            inputs += list(zip(a.question, a.context, strict=True))
        if a.file:
            lines = Path(a.file).read_text(encoding="utf-8").splitlines()
            empty = sum(not line.strip() for line in lines)
            for n, line in enumerate(lines, 1):
                if line.strip():
                    parts = line.split("\t")
                    if len(parts) > 2:
                        raise ValueError(f"{a.file}:{n}: {len(parts)} TAB-separated fields, expected 1 or 2")
                    inputs.append(tuple(parts) if len(parts) == 2 else parts[0])
            if empty:
                logging.getLogger(__name__).warning("%s: skipped %d empty line(s)", a.file, empty)
        if not inputs:
            raise ValueError("nothing to predict: give sentences, --pair, --question/--context or --file")
        rows = predict(a.model, inputs, task=a.task, top_k=a.top_k)
        for row in rows:
            if "answer" in row:
                print(f"{row['answer']!r}\t{row['score']:.4f}\t{row['question']}")
                for text, prob in row["alternatives"]:
                    print(f"  {text!r}\t{prob:.4f}")
            elif "label" in row:
                others = "  ".join(f"{lab} {pr:.4f}" for lab, pr in row["top"][1:])
                shown = row["text"] + (f" ||| {row['text_pair']}" if "text_pair" in row else "")
                print(f"{row['label']}\t{row['score']:.4f}\t{shown}" + (f"\t({others})" if others else ""))
            else:
                shown = row["text"] + (f" ||| {row['text_pair']}" if "text_pair" in row else "")
                print(f"{row['score']:.4f}\t{shown}")
        from .config import MobileBertConfig
        from .sanity import prediction_notes

        for note in prediction_notes(rows, MobileBertConfig.from_json(a.model).num_labels):
            print(f"note: {note}")
        return 0

    return run


@command("prepare-pretraining")
def _prepare_pretraining(sub: argparse._SubParsersAction) -> Runner:
    p = _parser(sub, "prepare-pretraining", "Raw text files -> sharded MLM + NSP pre-training examples "
                "(BERT recipe) with a manifest.",
                "mobilebert prepare-pretraining wiki.valid.raw wiki.test.raw --out runs/data --workers 2\n"
                "  mobilebert prepare-pretraining corpus_dir/ --out data --max-seq-length 512 "
                "--max-predictions 80 --dupe-factor 5 --whole-word-masking")
    p.add_argument("inputs", nargs="*", help="UTF-8 text files or folders (default: the bundled WikiText sample)")
    p.add_argument("--out", required=True, help="output folder (shards + manifest.json)")
    p.add_argument("--format", default="auto", choices=["auto", "lines", "paragraphs", "wikitext"],
                   help="lines: one sentence per line, blank line between documents; paragraphs: split into "
                        "sentences; wikitext: ' = Title = ' starts a document (default: auto)")
    p.add_argument("--max-seq-length", type=int, default=128, help="tokens per example, [CLS] and [SEP]s included")
    p.add_argument("--max-predictions", type=int, default=20, help="max_predictions_per_seq")
    p.add_argument("--masked-lm-prob", type=float, default=0.15, help="share of tokens masked, in (0, 1)")
    p.add_argument("--short-seq-prob", type=float, default=0.1, help="share of examples made shorter than "
                   "--max-seq-length, as BERT did")
    p.add_argument("--dupe-factor", type=int, default=1, help="passes over the corpus with fresh pairs and masks")
    p.add_argument("--whole-word-masking", action="store_true", help="mask every piece of a word together")
    p.add_argument("--dynamic-masking", action="store_true", help="readers redraw masks every epoch by default")
    p.add_argument("--seed", type=int, default=12345, help="seed of pairing and masking (output depends on it "
                   "only, not on --workers)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    p.add_argument("--shard-size", type=int, default=100_000, help="examples per shard")
    p.add_argument("--vocab", help="a vocab.txt, tokenizer.json or checkpoint folder (default: bundled vocab)")

    def run(a: argparse.Namespace) -> int:
        from .data.instances import sample_corpus_path
        from .data.shards import prepare_pretraining
        from .tokenizer import MobileBertTokenizer

        result = prepare_pretraining(
            a.inputs or [sample_corpus_path()], a.out, max_seq_length=a.max_seq_length,
            short_seq_prob=a.short_seq_prob, masked_lm_prob=a.masked_lm_prob,
            max_predictions_per_seq=a.max_predictions, dupe_factor=a.dupe_factor,
            whole_word_masking=a.whole_word_masking, dynamic_masking=a.dynamic_masking, seed=a.seed,
            workers=a.workers, shard_size=a.shard_size, input_format=a.format,
            tokenizer=MobileBertTokenizer.from_pretrained(a.vocab))
        c = result.manifest["counts"]
        print(f"{result.out_dir}: {c['examples']} examples in {len(result.manifest['shards'])} shards from "
              f"{c['documents']} documents, {c['tokens']} tokens (IsNext {c['is_next'] / c['examples']:.1%}, "
              f"masked {c['masked'] / max(1, c['maskable']):.1%}, replaced chars {c['replaced_chars']})")
        return 0

    return run


@command("corpus")
def _corpus(sub: argparse._SubParsersAction) -> Runner:
    p = _parser(sub, "corpus", "Build the unlabeled distillation corpus from the text on this machine (WikiText-2 "
                "valid/test, GLUE train sentences, SQuAD v1.1 contexts and questions, the bundled samples; no GLUE "
                "dev sentence) and prepare it into pre-training shards.",
                "mobilebert corpus --data ../shared/data --out runs/corpus --max-seq-length 64")
    p.add_argument("--data", help="the shared data folder (corpus/, glue/, squad/); omit for the bundled samples only")
    p.add_argument("--out", required=True, help="output folder: corpus.txt, corpus.json (counts) and shards/")
    p.add_argument("--max-seq-length", type=int, default=64, help="tokens per example (default: 64)")
    p.add_argument("--dupe-factor", type=int, default=1, help="passes with fresh pairs and masks (default: 1)")
    p.add_argument("--seed", type=int, default=12345, help="example-making seed (default: 12345)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")

    def run(a: argparse.Namespace) -> int:
        from .data.corpus import prepare_corpus

        info = prepare_corpus(a.data, a.out, a.max_seq_length, a.dupe_factor, a.seed, a.workers)
        n, docs = sum(info["sentences"].values()), sum(info["documents"].values())
        print(f"{a.out}/corpus.txt: {n} sentences, {docs} documents ({sum(info['dropped_dev'].values())} GLUE dev "
              f"sentences held out, {info['duplicates']} duplicates dropped)")
        print(f"{a.out}/shards: {info['shards']['examples']} examples, {info['shards']['tokens']} tokens")
        for m in info["missing"]:
            print(f"note: {m} not found, left out")
        return 0

    return run


@command("embed")
def _embed(sub: argparse._SubParsersAction) -> Runner:
    p = _parser(sub, "embed", "Sentence embeddings (mean-pooled, as the checkpoint's pooling files say): print them "
                "for texts given as arguments, or write a .npy for a text file (one text per line).",
                "mobilebert embed --model models/mobilebert-minilm \"A man is playing a guitar.\" \"A dog runs.\"\n"
                "  mobilebert embed --model models/mobilebert-minilm --file sentences.txt --out vectors.npy")
    p.add_argument("texts", nargs="*", help="texts to embed (or use --file)")
    p.add_argument("--model", required=True, help="checkpoint folder: a distilled student, MiniLM, any BERT")
    p.add_argument("--file", help="UTF-8 text file, one text per line")
    p.add_argument("--out", help="write the (N, H) float32 array here (.npy) instead of printing")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="L2-normalise each vector (default: as the checkpoint's modules.json says)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default: 32)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")

    def run(a: argparse.Namespace) -> int:
        from .recipes.embed import embed, read_lines

        if bool(a.texts) == bool(a.file):
            raise ValueError("give texts as arguments or --file, not both or neither")
        texts = read_lines(a.file) if a.file else a.texts
        vectors = embed(a.model, texts, a.out, a.normalize, a.batch_size, a.threads)
        if a.out:
            print(f"{a.out}: {vectors.shape[0]} x {vectors.shape[1]} float32")
        else:
            for text, v in zip(texts, vectors, strict=True):
                print(f"{text}\t" + " ".join(f"{x:.6g}" for x in v))
        return 0

    return run


@command("sts")
def _sts(sub: argparse._SubParsersAction) -> Runner:
    p = _parser(sub, "sts", "Zero-shot STS-B: Spearman x100 between the cosine similarity of two sentence embeddings "
                "and the gold scores (the official dev file, or the bundled 300-pair sample).",
                "mobilebert sts --model models/mobilebert-minilm --data ../shared/data/glue")
    p.add_argument("--model", required=True, help="checkpoint folder")
    p.add_argument("--data", help="GLUE folder, STS-B folder or TSV (default: the bundled dev sample)")
    p.add_argument("--split", default="dev", help="dev or train (default: dev)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--json", help="also write the result here")

    def run(a: argparse.Namespace) -> int:
        import json

        from .atomic import atomic_write_text
        from .recipes.embed import evaluate_sts

        result = evaluate_sts(a.model, a.data, a.split, threads=a.threads)
        print(f"{result['model']}: STS-B {a.split} Spearman x100 = {result['spearman_x100']:.2f} "
              f"({result['pairs']} pairs, {result['pooling']} pooling, {result['data']})")
        if a.json:
            atomic_write_text(a.json, json.dumps(result, indent=2) + "\n")
        return 0

    return run


@command("export")
def _export(sub: argparse._SubParsersAction) -> Runner:
    p = _parser(sub, "export", "Export a checkpoint after a parity check against PyTorch: ONNX (dynamic batch/"
                "sequence; --int8 adds model.int8.onnx), or a phone file: ExecuTorch .pte / LiteRT .tflite "
                "(fixed --seq-len, --int8 makes the file itself int8), or a MediaPipe .tflite that apps run on raw "
                "text with TextClassifier (classifier checkpoints) or TextEmbedder (encoders).",
                "mobilebert export --format onnx --int8 runs/sst2/seed-1/best exported/sst2\n"
                "  mobilebert export --format mediapipe --int8 runs/sst2/seed-1/best sst2.tflite")
    p.add_argument("model_dir", help="checkpoint folder (config.json + model.safetensors)")
    p.add_argument("out", help="output folder (onnx) or file (.pte / .tflite); must not exist unless --overwrite; "
                   "written atomically")
    p.add_argument("--format", default="onnx", choices=["onnx", "executorch", "litert", "mediapipe"],
                   help="onnx (ONNX Runtime), executorch (XNNPACK), litert or mediapipe (LiteRT + tokenizer "
                   "metadata; needs `pip install executorch` / `pip install litert-torch` / "
                   "`pip install litert-torch mediapipe`)")
    p.add_argument("--int8", action="store_true", help="int8 dynamic quantization, per-channel weights")
    p.add_argument("--seq-len", type=int, default=128, help="executorch/litert: the fixed sequence length "
                   "(the app right-pads)")
    p.add_argument("--labels", help="mediapipe classifier: comma-separated class names in id order (default: "
                   "the checkpoint's id2label; GLUE tasks get readable names, e.g. negative,positive)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")

    def run(a: argparse.Namespace) -> int:
        from .deploy.onnx import ExportError, export_checkpoint, load_for_export

        try:
            if a.format == "mediapipe":
                try:
                    from .deploy.mediapipe import export_mediapipe

                    r = export_mediapipe(a.model_dir, a.out, int8=a.int8, seq_len=a.seq_len, overwrite=a.overwrite,
                                         labels=a.labels.split(",") if a.labels else None)
                except ModuleNotFoundError as e:
                    raise ValueError(f"--format mediapipe needs `pip install litert-torch mediapipe` ({e.name} is "
                                     "missing)") from None
                what = f"TextClassifier, labels {', '.join(r.labels)}" if r.labels else "TextEmbedder"
                print(f"{r.path}: {r.path.stat().st_size / 2**20:.1f} MB, {what}, seq {a.seq_len}, "
                      f"{'int8' if a.int8 else 'fp32'}, MediaPipe on raw text matches PyTorch ({r.parity:.1e})")
                return 0
            if a.format != "onnx":
                from .deploy import mobile

                fn = mobile.export_executorch if a.format == "executorch" else mobile.export_litert
                try:
                    path = fn(load_for_export(a.model_dir), a.out, int8=a.int8, seq_len=a.seq_len,
                              overwrite=a.overwrite)
                except ModuleNotFoundError as e:
                    package = "executorch" if a.format == "executorch" else "litert-torch"
                    raise ValueError(f"--format {a.format} needs `pip install {package}` ({e.name} is missing)") from None
                print(f"{path}: {path.stat().st_size / 2**20:.1f} MB, batch 1 x seq {a.seq_len}, "
                      f"{'int8' if a.int8 else 'fp32'}, parity with PyTorch checked")
                return 0
            report = export_checkpoint(a.model_dir, a.out, int8=a.int8, overwrite=a.overwrite)
        except (ExportError, FileExistsError) as e:
            raise ValueError(str(e)) from None
        files = ", ".join(f"{n} ({b / 2**20:.1f} MB)" for n, b in report.files.items())
        parity = ", ".join(f"{k} {v:.2e}" for k, v in report.parity.items())
        print(f"{report.out_dir}: {files}; outputs {', '.join(report.outputs)}; relative error vs PyTorch: {parity}")
        return 0

    return run


@command("bench")
def _bench(sub: argparse._SubParsersAction) -> Runner:
    p = _parser(sub, "bench", "Latency (median, p90) of eager, optimized, bf16, ONNX Runtime fp32/int8, torch int8, "
                "transformers, and the phone files (LiteRT, ExecuTorch; fp32/int8, exported per batch x seq) where "
                "litert-torch / executorch are installed, on the same weights over batch x seq x threads; sizes; "
                "JSON + PNG.",
                "mobilebert bench runs/sst2/seed-1/best --batches 1 --seqs 128 --threads 2 --repeats 5")
    p.add_argument("model_dir", help="checkpoint folder")
    p.add_argument("--out", default="bench_out", help="folder for bench.json and bench.png")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes of the grid")
    p.add_argument("--seqs", type=int, nargs="+", default=[32, 128, 384], help="sequence lengths of the grid "
                   "(at most the model's max_position_embeddings)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch / ONNX Runtime / LiteRT / ExecuTorch thread "
                   "counts")
    p.add_argument("--backends", nargs="+", default=None, help="subset of backends (default: all; a phone "
                   "backend whose package is missing is reported as skipped with its install line)")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per backend and grid point")

    def run(a: argparse.Namespace) -> int:
        from pathlib import Path

        from .deploy.bench import ALL_BACKENDS, BenchConfig, bench_checkpoint, format_table
        from .validate import slow_bf16

        backends = tuple(a.backends or ALL_BACKENDS)
        why_not_bf16 = slow_bf16() if a.backends is None else None  # emulated bf16 is no result worth a row
        if why_not_bf16:
            backends = tuple(b for b in backends if b != "bf16")
        cfg = BenchConfig(batches=tuple(a.batches), seqs=tuple(a.seqs), threads=tuple(a.threads),
                          backends=backends, repeats=a.repeats)
        print(format_table(bench_checkpoint(a.model_dir, a.out, cfg)))
        if why_not_bf16:
            print(f"bf16: skipped ({why_not_bf16}; --backends bf16 times it anyway)")
        wrote = [str(p) for p in (Path(a.out) / "bench.json", Path(a.out) / "bench.png") if p.is_file()]
        print(f"wrote {' and '.join(wrote)}" if wrote else f"nothing written to {a.out}")
        return 0

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobilebert", description="MobileBERT end to end: data, teacher, distillation, fine-tuning, export, "
        "benchmarks. Each subcommand has --help with an example.", epilog="start with: mobilebert demo --fast")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for name, add in COMMANDS.items():
        runner = add(sub)
        p = sub.choices[name]
        p.set_defaults(_run=runner)
        writes = any(a.dest in ("out", "json") for a in p._actions)
        if writes and "--overwrite" not in p._option_string_actions:  # one rule for every command that writes
            p.add_argument("--overwrite", action="store_true", help="replace an existing output (refused without)")
    return parser


# Outputs this invocation created (they did not exist before it): removed again when it fails, so a failed
# run never leaves a partial folder; kept when they hold checkpoints an interrupted run can resume from.
_NEW_OUTPUTS: list[str] = []


def claim_output(path: str | os.PathLike, overwrite: bool = False, training: bool = False) -> None:
    """Record an output path before the command writes it; with ``overwrite``, a training folder's old run
    (checkpoints, stages, metrics, seeds) is removed first, never other files."""
    import shutil
    from pathlib import Path

    from .validate import RUN_ARTIFACTS

    p = Path(path)
    if not p.exists():  # what a failure removes: the first folder on the way that did not exist
        new = [q for q in [p, *p.parents] if not q.exists()]
        _NEW_OUTPUTS.append(str(new[-1]))
    elif overwrite and training and p.is_dir():
        for pattern in RUN_ARTIFACTS:  # stale checkpoints would be resumed by a later --resume
            for old in p.glob(pattern):
                shutil.rmtree(old) if old.is_dir() else old.unlink()


def _remove_new_outputs(keep_resumable: bool) -> list[str]:
    """Delete what this run created; returns the paths kept because they hold checkpoints."""
    import shutil
    from pathlib import Path

    from .validate import has_checkpoints

    kept = []
    for path in map(Path, _NEW_OUTPUTS):
        if keep_resumable and has_checkpoints(path):
            kept.append(str(path))
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
    return kept


def _interrupted(args: argparse.Namespace, argv: list[str]) -> str:
    """One line: what was saved and the exact command that continues from it."""
    import shlex
    from pathlib import Path

    _remove_new_outputs(keep_resumable=True)
    root = getattr(args, "_train_out", None) or getattr(args, "out", None)
    found = sorted(Path(root).rglob("step-*/state.pt"), key=lambda p: p.stat().st_mtime) if root else []
    if not found:
        return "interrupted; nothing resumable was saved" + (" (unfinished output removed)" if _NEW_OUTPUTS else "")
    if not hasattr(args, "resume"):
        return f"interrupted; last checkpoint {found[-1].parent}"
    again = [x for x in argv if x not in ("--overwrite", "--debug")] + ([] if "--resume" in argv else ["--resume"])
    return f"interrupted; saved {found[-1].parent}; resume with: mobilebert {shlex.join(again)}"


def _close_progress_bars() -> None:
    """Close live tqdm bars now, so the last line a user sees is ours, not a bar redrawn at exit."""
    tq = sys.modules.get("tqdm.std")
    for bar in list(getattr(getattr(tq, "tqdm", None), "_instances", [])):
        bar.close()


def _stop_on_sigterm() -> Callable[[], None]:
    """SIGTERM (a scheduler, `kill`) stops like Ctrl-C: checkpoints kept, one line, no traceback. Returns what
    puts the previous handler back (main() is also called in-process, by tests and scripts)."""
    import contextlib
    import signal

    me = os.getpid()
    before = signal.getsignal(signal.SIGTERM)

    def stop(signum: int, frame: object) -> None:
        if os.getpid() != me:  # a forked worker (data preparation) being terminated: die as usual, quietly
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread (embedded use)
        signal.signal(signal.SIGTERM, stop)

    def restore() -> None:
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGTERM, before)

    return restore


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args([x for x in argv if x != "--debug"])  # --debug is welcome anywhere
    args.debug = "--debug" in argv
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx"):  # exporter internals, not our progress
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from .preflight import check_command

    _NEW_OUTPUTS.clear()
    restore_sigterm = _stop_on_sigterm()
    if not sys.stderr.isatty():  # a log, not a terminal: tqdm bars redraw at most every 30 s (mobilebert.progress
        os.environ.setdefault("TQDM_MININTERVAL", "30")  # bars write log lines instead)
    name = f"mobilebert {args.command}"
    try:
        check_command(args)  # every argument and input file, before any work
        for attr in ("out", "json"):
            if getattr(args, attr, None):
                claim_output(getattr(args, attr), getattr(args, "overwrite", False),
                             training=args.command == "finetune")
        rc = int(args._run(args) or 0)
        if rc:
            _remove_new_outputs(keep_resumable=True)
        return rc
    except KeyboardInterrupt:
        _close_progress_bars()
        print(f"{name}: {_interrupted(args, argv)}", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as e:  # bad input: one clear line, no traceback
        _close_progress_bars()
        _remove_new_outputs(keep_resumable=False)
        if args.debug:
            raise
        print(f"{name}: error: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}",
              file=sys.stderr)
        return 2
    except Exception as e:  # a failure that is not the input's fault: still one line; --debug shows where
        _close_progress_bars()
        _remove_new_outputs(keep_resumable=True)
        if args.debug:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"{name}: failed: {type(e).__name__}: {first} (run with --debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        restore_sigterm()


if __name__ == "__main__":
    sys.exit(main())
