"""TEMPORARY: cli.py (owned by the lead) still imports ``markdown_table`` from here; delete this file once it
prints ``mobilebert.demo.summary_table(rows)`` instead."""

from .demo.report import markdown_table

__all__ = ["markdown_table"]
