"""The optional fused Snake kernel: where it is, and whether a session should use it.

SNAC's Snake activation (``x + 1/alpha * sin(alpha * x)^2``, in every block of
the encoder and decoder) is, in the exported graphs, one node
``ai.snac_onnx.Snake`` that carries a standard ONNX function body. onnxruntime
runs that body as five elementwise nodes, one of them a single-threaded ``Sin``;
on CPU they take more than half of decode time. ``csrc/snake.c``, built at
install time into ``snac_onnx/_snake*.so`` (or ``.pyd``), implements the node
as one vectorised pass. A session uses it only when registered; then
onnxruntime prefers the kernel over the function body.

It is used only with the CPU execution provider: registered with CUDA or
CoreML sessions it would pin every Snake node to the CPU. Without a C
compiler at install time the extension is skipped and graphs run unfused.
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

__all__ = ["SNAKE_DOMAIN", "snake_library", "fused_snake_available"]

SNAKE_DOMAIN = "ai.snac_onnx"
_PACKAGE_DIR = Path(__file__).resolve().parent


def snake_library() -> Path | None:
    """Path of the compiled fused Snake kernel library, or None when it was not built."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = _PACKAGE_DIR / f"_snake{suffix}"
        if candidate.is_file():
            return candidate
    return None


def fused_snake_available() -> bool:
    """True when the fused Snake kernel library is installed with this package."""
    return snake_library() is not None
