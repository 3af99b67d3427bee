"""``mobilebert SUBCOMMAND``: argument parsing only; every subcommand calls a plain Python function.

Each subcommand is one function decorated with ``@command``: it adds its parser and returns the function
that runs it. ``mobilebert SUBCOMMAND --help`` shows an example for each.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

Runner = Callable[[argparse.Namespace], int | None]
COMMANDS: dict[str, Callable[[argparse._SubParsersAction], Runner]] = {}


def command(name: str) -> Callable:
    def register(fn: Callable[[argparse._SubParsersAction], Runner]) -> Callable:
        COMMANDS[name] = fn
        return fn

    return register


def _parser(sub: argparse._SubParsersAction, name: str, help: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                          formatter_class=argparse.RawDescriptionHelpFormatter)


@command("info")
def _info(sub: argparse._SubParsersAction) -> Runner:
    p = _parser(sub, "info", "Build a model from a preset or checkpoint; print its shape, size and latency.",
                "mobilebert info --preset mobilebert --seq 128")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="mobilebert", help="preset name (default: mobilebert)")
    src.add_argument("--model", help="a checkpoint directory instead of a preset")
    p.add_argument("--layers", type=int, help="override num_hidden_layers (presets only)")
    p.add_argument("--seq", type=int, default=128, help="sequence length for the latency probe")
    p.add_argument("--text", default="MobileBERT is a compact task-agnostic BERT for resource-limited devices.")

    def run(a: argparse.Namespace) -> int:
        from .recipes.info import model_info

        overrides = {"num_hidden_layers": a.layers} if a.layers else {}
        print(model_info(preset=a.preset, model_dir=a.model, seq_len=a.seq, text=a.text, **overrides))
        return 0

    return run


@command("demo")
def _demo(sub: argparse._SubParsersAction) -> Runner:
    p = _parser(sub, "demo", "The main job on a laptop CPU (for now: build, encode, time).", "mobilebert demo")
    p.add_argument("--out", default="demo_out", help="output directory")
    p.add_argument("--fast", action="store_true", help="a quicker, smaller run")

    def run(a: argparse.Namespace) -> int:
        from .recipes.info import model_info

        print(model_info(preset="mobilebert", seq_len=128))
        return 0

    return run


@command("pretrain-teacher")
def _pretrain_teacher(sub: argparse._SubParsersAction) -> Runner:
    p = _parser(sub, "pretrain-teacher", "Pre-train a teacher (IB-BERT or any preset/config) with MLM + NSP.",
                "mobilebert pretrain-teacher configs/teacher_demo.yaml data=runs/data train.out_dir=runs/teacher\n"
                "  torchrun --nproc_per_node 8 -m mobilebert pretrain-teacher configs/teacher_ib_bert_large.yaml")
    p.add_argument("config", nargs="?", help="YAML config (configs/teacher_*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=1000 train.lr=1e-3")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in train.out_dir")

    def run(a: argparse.Namespace) -> int:
        from .recipes.distill import load_config
        from .recipes.pretrain_teacher import TeacherConfig, pretrain_teacher
        from .train.trainer import NonFiniteLossError

        cfg = load_config(TeacherConfig, a.config, _split_overrides(a))
        try:
            result = pretrain_teacher(cfg, resume=a.resume)
        except NonFiniteLossError as e:
            print(f"mobilebert pretrain-teacher: stopped: {e}", file=sys.stderr)
            return 3
        print(f"teacher: {result['exports'].get('pretrain', '(no stage run)')}")
        return 0

    return run


@command("distill")
def _distill(sub: argparse._SubParsersAction) -> Runner:
    p = _parser(sub, "distill", "Distil a MobileBERT student from a teacher (progressive, joint, auxiliary; "
                "or none: from scratch).",
                "mobilebert distill configs/distill_demo.yaml teacher=runs/teacher/stages/pretrain data=runs/data\n"
                "  torchrun --nproc_per_node 8 -m mobilebert distill configs/distill_mobilebert.yaml strategy=joint")
    p.add_argument("config", nargs="?", help="YAML config (configs/distill_*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. strategy=joint train.batch_size=64")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in train.out_dir")

    def run(a: argparse.Namespace) -> int:
        from .recipes.distill import DistillConfig, distill, load_config
        from .train.trainer import NonFiniteLossError

        cfg = load_config(DistillConfig, a.config, _split_overrides(a))
        try:
            result = distill(cfg, resume=a.resume)
        except NonFiniteLossError as e:
            print(f"mobilebert distill: stopped: {e}", file=sys.stderr)
            return 3
        for stage, path in result["exports"].items():
            print(f"{stage}: {path}")
        return 0

    return run


def _split_overrides(a: argparse.Namespace) -> list[str]:
    """A config path given as key=value belongs to the overrides (the config itself is optional)."""
    if a.config and "=" in a.config:
        a.overrides, a.config = [a.config, *a.overrides], None
    return a.overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobilebert", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for name, add in COMMANDS.items():
        runner = add(sub)
        sub.choices[name].set_defaults(_run=runner)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except (FileNotFoundError, ValueError) as e:  # bad input: one clear line, no traceback
        print(f"mobilebert {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
