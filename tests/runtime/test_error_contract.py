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
    # The server: what FastAPI and pydantic expect, and its own signals, caught inside it; a client sees only the
    # documented HTTP statuses and close codes.
    ("snac_onnx.serve.auth", "HTTPException"): "FastAPI answers it with its status (401)",
    ("snac_onnx.serve.protocol", "ValueError"): "a pydantic validator's error: the message becomes a 1007/400",
    ("snac_onnx.serve.settings", "ValueError"): "a pydantic-settings validator's error: serve refuses to start (exit 2)",
    ("snac_onnx.serve.bodies", "ClientGone"): "the client left mid-body: the request is dropped, nothing to answer",
    ("snac_onnx.serve.speech", "ClientGone"): "the client left: the upstream request is cancelled",
    ("snac_onnx.serve.http", "Cut"): "ends a streamed response short after its first bytes (serve.outgoing)",
    ("snac_onnx.serve.speech", "Cut"): "ends a streamed response short after its first bytes (serve.outgoing)",
    ("snac_onnx.serve.outgoing", "TimeoutError"): "a send the client did not read in time; caught beside it: the response ends as a read timeout",
    ("snac_onnx.serve.ws", "_NotReading"): "the client reads nothing: caught, closed 1008 (serve.ws)",
    ("snac_onnx.serve.speech", "error"): "re-raises the job's UpstreamError, a SnacOnnxError",
    ("snac_onnx.serve.upstream", "_refusal"): "raises the UpstreamError it builds",
    ("snac_onnx.serve.upstream", "TypeError"): "a malformed chunk, caught beside ValueError and KeyError in _events",
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
    for path in sorted(root.rglob("*.py")):  # the subpackages too (serve/, stream/, model/, files/)
        if path.stem == "__main__":
            continue
        parts = path.relative_to(root.parent).with_suffix("").parts
        module_name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
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
