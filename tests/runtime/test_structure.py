"""The house's structure: no import cycle in snac_onnx (type-only and function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import snac_onnx

ROOT = Path(snac_onnx.__file__).parent


def _module_imports() -> dict[str, set[str]]:
    modules = {p.stem for p in ROOT.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in ROOT.glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:  # from . import x: a module, or a name of the package's __init__
                    deps.update(a.name if a.name in modules else "__init__" for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("snac_onnx"):
                parts = (node.module or "").split(".")
                deps.add(parts[1] if len(parts) > 1 else "__init__")
        graph[path.stem] = deps - {path.stem}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    graph = _module_imports()
    assert "planner" in graph["runner"] and "codec" in graph["windowed"]  # the walk sees the edges
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_numpy_only_layers_do_not_import_the_runtime_layers():
    graph = _module_imports()
    for low in ("config", "planner", "codes", "layouts", "audio", "errors"):
        assert not graph[low] & {"sessions", "runner", "codec", "streaming", "hub", "kernels"}, (low, graph[low])
