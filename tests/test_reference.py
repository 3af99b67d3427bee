"""docs/reference.md is generated from the commands' config dataclasses; it must not go stale."""

from pathlib import Path

from mobilebert.cli.reference import render

DOC = Path(__file__).resolve().parents[1] / "docs" / "reference.md"


def test_reference_is_current():
    assert DOC.is_file(), "docs/reference.md missing: python -m mobilebert.cli.reference"
    assert DOC.read_text(encoding="utf-8") == render(), ("docs/reference.md is stale: "
                                                         "python -m mobilebert.cli.reference")
