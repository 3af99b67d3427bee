"""The one markdown-table writer: floats by the given spec, the rest as str, a missing dict key an empty cell."""

from mobilebert.demo.report import markdown_table
from mobilebert.markdown import table


def test_table_formats_floats_and_keeps_the_rest():
    assert table(["model", "score", "n"], [["teacher", 88.3012, 872], ["student", 86.7, "-"]]) == (
        "| model | score | n |\n|---|---|---|\n| teacher | 88.30 | 872 |\n| student | 86.70 | - |")
    assert table(["x"], [[0.000123456]], floats=".4g") == "| x |\n|---|\n| 0.0001235 |"


def test_demo_rows_are_dicts_with_missing_keys_empty():
    assert markdown_table([{"name": "student", "ms": 3.14159}, {"name": "teacher"}], ["name", "ms"]) == (
        "| name | ms |\n|---|---|\n| student | 3.142 |\n| teacher |  |")
