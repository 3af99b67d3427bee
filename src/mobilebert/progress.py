"""Progress bars that suit where they are shown: a tqdm bar on a terminal; anywhere else (a log file, CI, a
pipe) one log line every ``interval`` seconds plus one at the end, instead of a stream of carriage-return
redraws (``make demo > log`` used to collect 432 KB of them)."""

from __future__ import annotations

import io
import logging
import sys
from typing import Any

from tqdm import tqdm

log = logging.getLogger("mobilebert.progress")

LOG_INTERVAL_S = 30.0


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress(tqdm):
    """``tqdm`` with a fallback: when its stream is not a terminal, updates become ``INFO`` log lines at most
    every ``interval`` seconds (and one when the bar closes), with no bar drawing."""

    def __init__(self, *args: Any, interval: float = LOG_INTERVAL_S, **kwargs: Any) -> None:
        self._as_log = not kwargs.get("disable") and not _is_terminal(kwargs.get("file") or sys.stderr)
        self._logged_n: float = 0
        if self._as_log:
            kwargs.update(file=io.StringIO(), mininterval=interval, maxinterval=max(interval, 10.0),
                          bar_format="{desc}: {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]")
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if not self._as_log:
            return super().display(msg, pos)
        if msg == "" or self.n == self._logged_n:  # a clear, or nothing new since the last line
            return True
        self._logged_n = self.n
        log.info("%s", self.format_meter(**self.format_dict))
        self.fp.seek(0)
        self.fp.truncate()
        return True
