"""The one markdown-table writer of the reports the project writes (``build``'s report.md, the demo's report).

Why a module of its own: ``build`` and the demo both write tables, and ``build`` may not import the demo."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], floats: str = ".2f") -> str:
    """A GitHub markdown table; floats formatted with ``floats`` (a format spec), everything else with ``str``."""

    def cell(v: Any) -> str:
        return format(v, floats) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(cell(v) for v in r) + " |" for r in rows)])


__all__ = ["table"]
