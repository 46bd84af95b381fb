"""The house's structure: no import cycle in snac_onnx (type-only and function-level imports included), every
module of every folder scanned; the NumPy-only layers import no runtime layer."""

from __future__ import annotations

import ast
from pathlib import Path

import snac_onnx

ROOT = Path(snac_onnx.__file__).parent


def _name(path: Path) -> str:
    """The dotted module name below snac_onnx (``stream.pool``; a package's ``__init__`` as the package)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "__init__"


def _resolve(module: str, node: ast.ImportFrom, modules: set[str]) -> set[str]:
    """The modules of snac_onnx an ``from ... import`` names, dotted below snac_onnx."""
    if node.level == 0:
        if not (node.module or "").startswith("snac_onnx"):
            return set()
        base = (node.module or "").split(".")[1:]
    else:
        package = module.split(".")[:-1] if module != "__init__" else []
        if module in {_name(p) for p in ROOT.rglob("__init__.py")} and module != "__init__":
            package = module.split(".")  # a package's __init__ imports relative to itself
        base = package[: len(package) - (node.level - 1)] + ((node.module or "").split(".") if node.module else [])
    target = ".".join(base)
    found = set()
    if node.module is None or not target:
        for alias in node.names:  # from . import x: a module, or a name of the package
            candidate = ".".join([*base, alias.name])
            found.add(candidate if candidate in modules else (target or "__init__"))
    else:
        found.add(target if target in modules else target.rsplit(".", 1)[0])
    return found


def _module_imports() -> dict[str, set[str]]:
    paths = list(ROOT.rglob("*.py"))
    modules = {_name(p) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        module = _name(path)
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                deps |= _resolve(module, node, modules)
        graph[module] = deps - {module}
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


def test_every_folder_is_scanned():
    graph = _module_imports()
    for module in ("codec", "model.sessions", "model.manifest", "files.audio", "stream.pool", "serve.app"):
        assert module in graph, sorted(graph)
    # the walk sees the edges, relative (one and two dots) and absolute
    assert "planner" in graph["runner"] and "codec" in graph["windowed"]
    assert "stream.decoder" in graph["stream.pool"] and "errors" in graph["stream.pool"]
    assert "model.kernels" in graph["model.sessions"]


def test_no_import_cycle():
    graph = _module_imports()
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_numpy_only_layers_do_not_import_the_runtime_layers():
    graph = _module_imports()
    runtime = {m for m in graph if m.split(".")[0] in ("model", "stream", "serve", "files")} | {"runner", "codec"}
    for low in ("config", "planner", "codes", "layouts", "audio", "errors", "noise"):
        assert not graph[low] & runtime, (low, graph[low] & runtime)
