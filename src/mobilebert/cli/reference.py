"""docs/reference.md, generated from the commands' config dataclasses (``python -m mobilebert.cli.reference``
rewrites it; a test fails when the file is stale)."""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path

from ..options import nested, type_name
from . import COMMANDS
from .flags import flag_of, shown

HEADER = """# Command and config reference

Generated from the config dataclasses by `python -m mobilebert.cli.reference` (do not edit by hand).
Every command reads its settings the same way: defaults < `CONFIG.yaml` < `key=value` < `--flags`. A YAML file
uses the keys below (nested sections as mappings); `key=value` overrides use dotted keys (`train.lr=1e-3`).
"""


def _rows(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if nested(cls, f.name) is not None:
            rows += _rows(hints[f.name], f"{key}.")
            continue
        m = f.metadata
        if f.default is not dataclasses.MISSING:
            default = shown(f.default) if f.default is not None else "-"
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = shown(f.default_factory()) or "-"  # type: ignore[misc]
        else:
            default = "required"
        allowed = [f"one of {', '.join(map(str, m['choices']))}"] if m.get("choices") else []
        allowed += [f"{word} {m[k]:g}" for k, word in (("at_least", ">="), ("above", ">"), ("at_most", "<="),
                                                        ("below", "<")) if m.get(k) is not None]
        spelled = f"`{key}` (positional)" if m.get("positional") else f"`{key}` / `{flag_of(key, m)}`"
        text = (m.get("help") or "").replace("|", "\\|")
        rows.append(f"| {spelled} | {type_name(hints[f.name])} | {default} | {'; '.join(allowed) or '-'} | {text} |")
    return rows


def render() -> str:
    parts = [HEADER]
    for name, c in COMMANDS.items():
        example = "\n".join(line.strip() for line in c.example.splitlines())
        parts += [f"## mobilebert {name}", "", c.help, "", "```", example, "```", "",
                  "| key / flag | type | default | allowed | meaning |", "|---|---|---|---|---|",
                  *_rows(c.config_class()), ""]
        if c.resumable:
            parts[-1:-1] = ["", "`--resume` continues the run in its output folder; `--overwrite` starts over."]
    return "\n".join(parts)


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/reference.md")
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
