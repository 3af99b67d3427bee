"""The one progress bar of the package (training, evaluation, embeddings, bench, data preparation), suited to
where it is shown: a tqdm bar on a terminal; anywhere else (a log file, CI, a pipe) an ``INFO`` log line at most
every ``interval`` seconds plus one when the bar ends, and never a carriage return (``make demo > log`` used to
collect hundreds of KB of ``joint: 2%|...`` redraws)."""

from __future__ import annotations

import io
import logging
import sys
import time
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
    """``tqdm`` (same arguments) with a fallback: when its stream is not a terminal, nothing is drawn; updates
    and ``set_postfix`` become log lines at most every ``interval`` seconds, and closing logs the final count
    (except for ``leave=False`` bars, which vanish on a terminal too)."""

    def __init__(self, *args: Any, interval: float = LOG_INTERVAL_S, **kwargs: Any) -> None:
        self._as_log = not kwargs.get("disable") and not _is_terminal(kwargs.get("file") or sys.stderr)
        self._interval, self._closing = interval, False
        self._logged_n: float = kwargs.get("initial") or 0
        self._logged_t = time.monotonic()
        if self._as_log:  # tqdm draws into a private buffer, never onto the stream
            kwargs.update(file=io.StringIO(), mininterval=interval, maxinterval=max(interval, 10.0),
                          dynamic_ncols=False,
                          bar_format="{desc}: {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]")
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if not self._as_log:
            return super().display(msg, pos)
        self.fp.seek(0)
        self.fp.truncate()
        if msg == "" or self.n == self._logged_n:  # a clear, or nothing new since the last line
            return True
        if not self._closing and time.monotonic() - self._logged_t < self._interval:
            return True
        self._logged_n, self._logged_t = self.n, time.monotonic()
        log.info("%s", self.format_meter(**self.format_dict))
        return True

    def close(self) -> None:
        self._closing = True
        super().close()
