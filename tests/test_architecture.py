"""The package's shape: no import cycles (function-level imports included), the model package stays plain torch,
data and metrics know no model, and one home per concept."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "bertgen"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """bertgen module -> the bertgen modules it imports anywhere in its file (``from . import x`` resolved)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for t in targets:
                while t and t not in files:  # `from bertgen.data import make_datamodule` -> bertgen.data
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("bertgen"):
                    edges.add(t)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if m.startswith(n + "."):  # a package importing its own submodules is not a cycle
                continue
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 40  # the walk found the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_check_can_fail():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_layers_import_only_downwards():
    graph = import_graph()
    for name, edges in graph.items():
        if name.startswith("bertgen.model"):
            bad = {e for e in edges if not e.startswith(("bertgen.model", "bertgen.errors", "bertgen.hub"))}
            assert not bad, f"{name} (plain torch) imports {bad}"
        if name.startswith(("bertgen.data", "bertgen.metrics", "bertgen.tokenization")):
            bad = {e for e in edges if e.startswith(("bertgen.model", "bertgen.lit_module", "bertgen.training"))}
            assert not bad, f"{name} must know no model: imports {bad}"
