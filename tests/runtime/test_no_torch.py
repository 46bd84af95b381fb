"""snac_onnx never imports torch or snac: proven in a fresh interpreter where both are blocked.

The same interpreter also shows that encode and decode load none of the modules only the hub, the
CLI or error paths need (about 3 MB of a decode-only process's memory).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import snac_onnx
from tests.support import HANG_GUARD_S, TINY_24, TINY_44

SCRIPT = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "snac", "torchaudio"):
            raise ImportError(f"blocked import of {name}")
sys.meta_path.insert(0, Block())
import numpy as np
from snac_onnx import SnacOnnx
for folder in sys.argv[1:]:
    codec = SnacOnnx(folder)
    pcm = (0.1 * np.sin(np.arange(30000) / 7.0)).astype(np.float32)
    codes = codec.encode(pcm)
    audio = codec.decode(codes, length=len(pcm), noise=False)
    assert audio.shape == pcm.shape and np.isfinite(audio).all()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "snac"))
assert not loaded, loaded
# a decode-only process stays light: what only the hub, the CLI or error paths need is imported there
heavy = [m for m in ("onnx", "huggingface_hub", "socket", "importlib.metadata") if m in sys.modules]
assert not heavy, heavy
print("OK", len(sys.argv) - 1)
"""


def test_fresh_interpreter_without_torch():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(TINY_24), str(TINY_44)], capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK 2"


def test_no_module_imports_torch_or_snac():
    root = Path(snac_onnx.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("torch", "snac", "export")]
    assert offenders == []
