"""One error contract: every ``raise`` in snac_onnx raises a SnacOnnxError subclass that also inherits a builtin.

The test walks the package's source (AST) and resolves each raised name in its module's namespace.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import snac_onnx
from snac_onnx import errors

# Raise sites allowed to raise something else, each with its reason.
ALLOWED: dict[tuple[str, str], str] = {
    ("snac_onnx.windowed", "AssertionError"): "never raised: narrows a type for mypy",
    ("snac_onnx.cli", "ArgumentTypeError"): "argparse turns it into a one-line usage error (exit 2)",
    ("snac_onnx.stream.pool", "TimeoutError"): "read(timeout=) times out as queue.get and concurrent.futures do",
    ("snac_onnx.stream.pool", "item"): "re-raises the stream's own error, a SnacOnnxError (checked by isinstance above it)",
}


def _raised_names(tree: ast.AST) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name):
                out.append((target.id, node.lineno))
            elif isinstance(target, ast.Attribute):
                out.append((target.attr, node.lineno))
    return out


def test_every_raise_is_a_snac_onnx_error():
    root = Path(snac_onnx.__file__).parent
    bad = []
    count = 0
    for path in sorted(root.glob("*.py")):
        module_name = f"snac_onnx.{path.stem}" if path.stem != "__init__" else "snac_onnx"
        if path.stem == "__main__":
            continue
        module = importlib.import_module(module_name)
        for name, line in _raised_names(ast.parse(path.read_text())):
            count += 1
            if (module_name, name) in ALLOWED:
                continue
            cls = getattr(module, name, None)
            if not (inspect.isclass(cls) and issubclass(cls, errors.SnacOnnxError)):
                bad.append(f"{path.name}:{line} raises {name}")
    assert count > 50, count  # the walk found the raise sites
    assert bad == []


def test_error_classes_inherit_a_builtin_and_are_exported():
    classes = [getattr(errors, n) for n in errors.__all__]
    for cls in classes:
        assert issubclass(cls, errors.SnacOnnxError)
        if cls is not errors.SnacOnnxError:
            assert any(b in cls.__mro__ for b in (ValueError, FileNotFoundError, RuntimeError, ImportError)), cls
        assert getattr(snac_onnx, cls.__name__) is cls
