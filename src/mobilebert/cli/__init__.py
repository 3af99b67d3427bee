"""``mobilebert SUBCOMMAND``: the command table, parsing and the process around a command; nothing else.

Every subcommand is a recipe's config dataclass plus its ``main(cfg)``: flags, ``CONFIG.yaml`` and ``key=value``
overrides are generated from and loaded into that dataclass (:mod:`.flags`), the checks a dataclass cannot make
(files, folders, checkpoints) run next (:mod:`.checks`), then the recipe runs inside :mod:`.lifecycle`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from dataclasses import dataclass
from typing import Any

from ..options import UsageError, load
from . import flags
from .lifecycle import Outputs, first_line, run_guarded


@dataclass(frozen=True)
class Command:
    module: str  # the recipe: holds the config class and main(cfg[, resume])
    config: str
    help: str
    example: str
    resumable: bool = False  # its output is a training folder that --resume continues
    entry: str = "main"  # the recipe's function the command runs: entry(cfg) (and resume= where resumable)
    needs: tuple[str, ...] = ()  # optional modules (the `all` extra) the command imports, checked before work

    def config_class(self) -> type:
        return getattr(importlib.import_module(self.module), self.config)

    def main(self) -> Any:
        return getattr(importlib.import_module(self.module), self.entry)


R = "mobilebert.recipes."
TRAINING = ("yaml", "scipy", "sklearn")  # configs written next to runs, correlation and F1 metrics
INSTALL_ALL = 'pip install "mobilebert[all]"'
COMMANDS: dict[str, Command] = {
    "info": Command(R + "info", "InfoConfig", "Build a model from a preset or checkpoint; print its shape, size and "
                    "latency.", "mobilebert info --preset mobilebert --seq 128"),
    "demo": Command("mobilebert.demo", "DemoConfig", "The whole system on the bundled sample data: distil the real "
                    "all-MiniLM-L6-v2 into a MobileBERT student, a from-scratch baseline, zero-shot STS, fine-tuning, "
                    "int8 export, benchmark, report.md (under 10 minutes on 2 cores).",
                    "mobilebert demo --out demo_out            # or --fast for a 2-minute smoke run",
                    needs=(*TRAINING, "matplotlib", "onnx", "onnxruntime", "onnxscript")),
    "pretrain-teacher": Command(R + "pretrain_teacher", "TeacherConfig", "Pre-train a teacher (IB-BERT or any "
                                "preset/config) with MLM + NSP.",
                                "mobilebert pretrain-teacher configs/teacher_demo.yaml data=runs/data "
                                "train.out_dir=runs/teacher\n  torchrun --nproc_per_node 8 -m mobilebert "
                                "pretrain-teacher configs/teacher_ib_bert_large.yaml", resumable=True,
                                needs=TRAINING),
    "distill": Command(R + "distill", "DistillConfig", "Distil a MobileBERT student from a teacher (progressive, "
                       "joint, auxiliary; or none: from scratch).",
                       "mobilebert distill configs/distill_demo.yaml teacher=runs/teacher/stages/pretrain "
                       "data=runs/data\n  torchrun --nproc_per_node 8 -m mobilebert distill "
                       "configs/distill_mobilebert.yaml strategy=joint --train.batch-size 64", resumable=True,
                       needs=TRAINING),
    "finetune": Command(R + "finetune", "FinetuneConfig", "Fine-tune a checkpoint on a GLUE task or SQuAD; keep the "
                        "best epoch per seed.",
                        "mobilebert finetune --task sst2 --data ../shared/data/glue --model CKPT --out runs/sst2 "
                        "--seeds 1,2,3\n  mobilebert finetune configs/finetune_squad.yaml task=squad data=squad/ "
                        "model=CKPT out=runs/squad\n  mobilebert finetune --task sst2 --data ../shared/data/glue "
                        "--model STUDENT --teacher runs/sst2-minilm/seed-1/best --kd-alpha 0.5 --kd-temperature 2 "
                        "--kd-hidden 1 --kd-attention 1 --dropout 0.1 --out runs/sst2-kd", resumable=True,
                        entry="run", needs=TRAINING),
    "build": Command(R + "build", "BuildConfig", "Your labelled data to an app in one resumable command: fine-tune "
                     "the teacher, distil the student (soft labels + intermediate transfer), score both in fp32 and "
                     "int8, ship int8 only if it keeps the score, write the model folder, ONNX, the MediaPipe "
                     ".tflite and report.md.",
                     "mobilebert build --task text-classification --train train.csv --validation dev.csv --out "
                     "runs/app\n  mobilebert build --task text-classification --train train.csv --validation dev.csv "
                     "--out runs/app --resume   (continues the stage that stopped)", resumable=True, entry="main",
                     needs=(*TRAINING, "matplotlib", "onnx", "onnxruntime", "onnxscript")),
    "evaluate": Command(R + "evaluate", "EvaluateConfig", "Score a fine-tuned model on dev splits, or write "
                        "GLUE-server files for test.",
                        "mobilebert evaluate --model runs/sst2/seed-1/best --data ../shared/data/glue\n"
                        "  mobilebert evaluate --model runs/sst2/seed-1/best --data ../shared/data/glue --split test "
                        "--out submission/", entry="run", needs=TRAINING),
    "predict": Command(R + "predict", "PredictConfig", "Run a fine-tuned model on texts, pairs, questions, or a "
                       "whole file of any size (streamed to --output with a prediction column).",
                       "mobilebert predict --model runs/sst2/seed-1/best \"a gripping , moving film .\"\n"
                       "  mobilebert predict --model runs/rte/seed-1/best --pair \"A man sleeps.\" \"Someone rests.\"\n"
                       "  mobilebert predict --model runs/squad/seed-1/best --question \"Who won?\" --context \"...\"\n"
                       "  mobilebert predict --model runs/own/seed-1/best --input reviews.csv --output predictions.csv",
                       entry="run"),
    "prepare-pretraining": Command(R + "prepare_pretraining", "PrepareConfig", "Raw text files -> sharded MLM + NSP "
                                   "pre-training examples (BERT recipe) with a manifest.",
                                   "mobilebert prepare-pretraining ../shared/data/wikitext-2/wiki.valid.raw --out "
                                   "runs/data --workers 2\n  mobilebert prepare-pretraining corpus_dir/ --out data "
                                   "--max-seq-length 512 --max-predictions 80 --dupe-factor 5 --whole-word-masking"),
    "corpus": Command(R + "corpus", "CorpusConfig", "Build the unlabeled distillation corpus from the "
                      "text on this machine (WikiText-2 valid/test, GLUE train sentences, SQuAD v1.1 contexts and "
                      "questions, the bundled samples; no GLUE dev sentence) and prepare it into pre-training shards.",
                      "mobilebert corpus --data ../shared/data --out runs/corpus --max-seq-length 64"),
    "embed": Command(R + "embed", "EmbedConfig", "Sentence embeddings (mean-pooled, as the checkpoint's pooling files "
                     "say): print them for texts given as arguments, or write a .npy for a text file (one text per "
                     "line).", "mobilebert embed --model models/mobilebert-minilm \"A man is playing a guitar.\" "
                     "\"A dog runs.\"\n  mobilebert embed --model models/mobilebert-minilm --file sentences.txt "
                     "--out vectors.npy"),
    "sts": Command(R + "sts", "StsConfig", "Zero-shot STS-B: Spearman x100 between the cosine similarity of two "
                   "sentence embeddings and the gold scores (the official dev file, or the bundled 300-pair sample).",
                   "mobilebert sts --model models/mobilebert-minilm --data ../shared/data/glue", needs=("scipy",)),
    "export": Command(R + "export", "ExportConfig", "Export a checkpoint after a parity check against PyTorch: ONNX "
                      "(dynamic batch/sequence; --int8 adds model.int8.onnx), or a phone file: ExecuTorch .pte / "
                      "LiteRT .tflite (fixed --seq-len, --int8 makes the file itself int8), or a MediaPipe .tflite "
                      "that apps run on raw text with TextClassifier (classifier checkpoints) or TextEmbedder "
                      "(encoders).", "mobilebert export --format onnx --int8 runs/sst2/seed-1/best exported/sst2\n"
                      "  mobilebert export --format mediapipe --int8 runs/sst2/seed-1/best sst2.tflite"),
    "bench": Command(R + "bench", "BenchCommandConfig", "Latency (median, p90) of eager, optimized, bf16, ONNX Runtime "
                     "fp32/int8, torch int8, transformers, and the phone files (LiteRT, ExecuTorch; fp32/int8, "
                     "exported per batch x seq) where litert-torch / executorch are installed, on the same weights "
                     "over batch x seq x threads; sizes; JSON + PNG.",
                     "mobilebert bench runs/sst2/seed-1/best --batches 1 --seqs 128 --threads 2 --repeats 5"),
}


def _top_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("mobilebert")
    except PackageNotFoundError:
        v = "unknown"
    parser = argparse.ArgumentParser(
        prog="mobilebert", description="MobileBERT end to end: data, teacher, distillation, fine-tuning, export, "
        "benchmarks. Each subcommand has --help with an example.", epilog="start with: mobilebert demo --fast")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    parser.add_argument("--version", action="version", version=f"mobilebert {v}")
    return parser


def _parser_kw(c: Command) -> dict[str, Any]:
    return {"help": c.help, "description": c.help, "epilog": f"example:\n  {c.example}",
            "formatter_class": flags.HelpFormatter}


def build_parser(full: bool = True) -> argparse.ArgumentParser:
    """The top-level parser; with ``full``, every subcommand's flags too (imports every recipe)."""
    parser = _top_parser()
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for name, c in COMMANDS.items():
        p = sub.add_parser(name, **_parser_kw(c)) if full else sub.add_parser(name, help=c.help, add_help=False)
        if full:
            flags.fill(p, c.config_class(), c.resumable)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = [x for x in (sys.argv[1:] if argv is None else argv)]
    debug = "--debug" in argv  # welcome anywhere
    argv = [x for x in argv if x != "--debug"]
    at = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    top = build_parser(full=False)
    if at == len(argv) or argv[at] not in COMMANDS:
        top.parse_args(argv)  # --help, --version, or argparse's message for an unknown command
        return 2
    args = top.parse_args(argv[: at + 1])
    c = COMMANDS[argv[at]]
    kw = _parser_kw(c)
    del kw["help"]
    sub = flags.fill(argparse.ArgumentParser(prog=f"mobilebert {argv[at]}", **kw), c.config_class(), c.resumable)
    vars(args).update(vars(sub.parse_intermixed_args(argv[at + 1:])))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx"):  # exporter internals, not our progress
        logging.getLogger(noisy).setLevel(logging.WARNING)
    command = COMMANDS[args.command]
    title = f"mobilebert {args.command}"
    outputs = Outputs()

    def work() -> int:
        from .checks import check_inputs, walk

        missing = [m for m in command.needs if importlib.util.find_spec(m) is None]
        if missing:
            raise UsageError(f"this command needs {', '.join(missing)}, not installed: {INSTALL_ALL}")

        cls = command.config_class()
        path, overrides, values, names = flags.config_from_args(cls, args)
        cfg = load(cls, path, overrides, values, names)
        resume = getattr(args, "resume", False) or getattr(cfg, "resume", False)  # a flag, or the config's own
        overwrite = getattr(args, "overwrite", False)
        check_inputs(args.command, cfg, names, resume=resume, overwrite=overwrite)  # files, before any work
        for _, meta, value in walk(cfg):
            if value and meta.get("output"):
                outputs.claim(value, overwrite, training=meta["output"] == "run")
        run = command.main()
        rc = run(cfg, resume=resume) if command.resumable and not hasattr(cfg, "resume") else run(cfg)
        return rc if isinstance(rc, int) else 0  # a recipe's run() returns its results

    try:
        return run_guarded(title, work, outputs, argv, command.resumable, debug)
    except UsageError as e:  # raised with --debug only
        raise SystemExit(f"{title}: error: {first_line(e)}") from e


if __name__ == "__main__":
    sys.exit(main())
