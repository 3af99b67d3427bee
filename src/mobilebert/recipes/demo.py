"""TEMPORARY: cli.py (owned by the lead) still imports the demo from here; delete this file once it imports
``mobilebert.demo`` (``from .demo import run_demo, summary_rows, summary_table``)."""

from ..demo import run_demo, summary_rows

__all__ = ["run_demo", "summary_rows"]
