"""The package's layering, read from the source: no import cycles (lazy imports inside functions count), lower
layers never import higher ones, and a training recipe never imports another recipe."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "mobilebert"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(("mobilebert", *parts[:-1])) if parts[-1] == "__init__" else ".".join(("mobilebert", *parts))


def import_graph() -> dict[str, set[str]]:
    """Module -> the mobilebert modules it imports anywhere in its file."""
    paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                deps |= {f"{target}.{a.name}" if f"{target}.{a.name}" in paths else target for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mobilebert"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("mobilebert")}
        graph[name] = {d for d in deps if d in paths and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_detector_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


HIGHER = {
    # a module under the key never imports the modules under these prefixes
    "mobilebert.modeling": ("mobilebert.deploy", "mobilebert.train", "mobilebert.distill", "mobilebert.recipes",
                            "mobilebert.data"),
    "mobilebert.config": ("mobilebert.deploy", "mobilebert.train", "mobilebert.distill", "mobilebert.recipes"),
    "mobilebert.data": ("mobilebert.train", "mobilebert.distill", "mobilebert.recipes", "mobilebert.deploy"),
    # the generic loop and its vocabulary (Stage, PretrainModule) know no strategy, teacher or task
    "mobilebert.train": ("mobilebert.recipes", "mobilebert.deploy", "mobilebert.distill", "mobilebert.finetune",
                         "mobilebert.data.glue", "mobilebert.data.squad", "mobilebert.data.finetuning",
                         "mobilebert.data.sts"),
    "mobilebert.distill": ("mobilebert.recipes", "mobilebert.deploy"),
    "mobilebert.deploy": ("mobilebert.recipes", "mobilebert.train", "mobilebert.distill"),
    "mobilebert.recipes": ("mobilebert.demo",),  # the demo chains recipes, never the other way
}


@pytest.mark.parametrize("layer", sorted(HIGHER))
def test_lower_layers_never_import_higher_ones(layer):
    graph = import_graph()
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() if m == layer or m.startswith(layer + ".")
                 for d in deps if d.startswith(HIGHER[layer]))
    assert bad == []


def test_a_training_recipe_never_imports_another_recipe():
    """Shared pieces live below (train/, data/, distill/); only mobilebert.demo, above them, chains recipes."""
    graph = import_graph()
    recipes = {m for m in graph if m.startswith("mobilebert.recipes.")}
    bad = sorted(f"{m} -> {d}" for m in recipes for d in graph[m] if d in recipes)
    assert bad == []
