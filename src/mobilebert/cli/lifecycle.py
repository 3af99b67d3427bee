"""The process around a command: outputs it creates are removed again when it fails (kept when they hold
checkpoints an interrupted run can resume from), Ctrl-C and SIGTERM stop with the last checkpoint and the exact
resume command, and every failure is one line (``--debug`` shows the traceback)."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from ..validate import RUN_ARTIFACTS, has_checkpoints


class Outputs:
    """The outputs this invocation created (they did not exist before it)."""

    def __init__(self) -> None:
        self.new: list[Path] = []
        self.training: list[Path] = []

    def claim(self, path: str | os.PathLike, overwrite: bool = False, training: bool = False) -> None:
        """Record an output path before the command writes it; with ``overwrite``, a training folder's old run
        (checkpoints, stages, metrics, seeds) is removed first, never other files."""
        p = Path(path)
        if training:
            self.training.append(p)
        if not p.exists():  # what a failure removes: the first folder on the way that did not exist
            self.new.append([q for q in [p, *p.parents] if not q.exists()][-1])
        elif overwrite and training and p.is_dir():
            for pattern in RUN_ARTIFACTS:  # stale checkpoints would be resumed by a later --resume
                for old in p.glob(pattern):
                    shutil.rmtree(old) if old.is_dir() else old.unlink()

    def remove(self, keep_resumable: bool) -> None:
        """Delete what this run created, except folders holding checkpoints when ``keep_resumable``."""
        for path in self.new:
            if keep_resumable and has_checkpoints(path):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()

    def interrupted(self, argv: list[str], resumable: bool) -> str:
        """One line: what was saved and the exact command that continues from it."""
        self.remove(keep_resumable=True)
        found = sorted((s for root in self.training for s in root.rglob("step-*/state.pt")),
                       key=lambda p: p.stat().st_mtime)
        if not found:
            return "interrupted; nothing resumable was saved" + (" (unfinished output removed)" if self.new else "")
        if not resumable:
            return f"interrupted; last checkpoint {found[-1].parent}"
        again = [x for x in argv if x not in ("--overwrite", "--debug")] + ([] if "--resume" in argv else ["--resume"])
        return f"interrupted; saved {found[-1].parent}; resume with: mobilebert {shlex.join(again)}"


def close_progress_bars() -> None:
    """Close live tqdm bars now, so the last line a user sees is ours, not a bar redrawn at exit."""
    tq = sys.modules.get("tqdm.std")
    for bar in list(getattr(getattr(tq, "tqdm", None), "_instances", [])):
        bar.close()


def stop_on_sigterm() -> Callable[[], None]:
    """SIGTERM (a scheduler, `kill`) stops like Ctrl-C: checkpoints kept, one line, no traceback. Returns what
    puts the previous handler back (main() is also called in-process, by tests and scripts)."""
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


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def run_guarded(name: str, work: Callable[[], int], outputs: Outputs, argv: list[str], resumable: bool,
                debug: bool) -> int:
    """Run a command: 0 or its own code; bad input 2; interrupted 130; any other failure 1, each one line."""
    restore = stop_on_sigterm()
    try:
        rc = int(work() or 0)
        if rc:
            outputs.remove(keep_resumable=True)
        return rc
    except KeyboardInterrupt:
        close_progress_bars()
        print(f"{name}: {outputs.interrupted(argv, resumable)}", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as e:  # bad input: one clear line, no traceback
        close_progress_bars()
        outputs.remove(keep_resumable=False)
        if debug:
            raise
        print(f"{name}: error: {first_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # not the input's fault: still one line; --debug shows where
        close_progress_bars()
        if getattr(e, "exit_code", None):  # a run that stopped itself (a NaN loss): its own line and code
            outputs.remove(keep_resumable=True)
            print(f"{name}: stopped: {first_line(e)}", file=sys.stderr)
            return e.exit_code
        outputs.remove(keep_resumable=True)
        if debug:
            raise
        print(f"{name}: failed: {type(e).__name__}: {first_line(e)} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
    finally:
        restore()
