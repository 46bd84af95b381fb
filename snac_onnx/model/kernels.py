"""The optional fused Snake kernel: where it is, and whether a session should use it.

SNAC's Snake activation (``x + 1/alpha * sin(alpha * x)^2``, in every block of
the encoder and decoder) is, in the exported graphs, one node
``ai.snac_onnx.Snake`` that carries a standard ONNX function body. onnxruntime
runs that body as five elementwise nodes, one of them a single-threaded ``Sin``;
on CPU they take more than half of decode time. ``csrc/snake.c``, built at
install time into ``snac_onnx/_snake*.so`` (or ``.pyd``), implements the node
as one vectorised pass, and also the exporter's other fused nodes
(``SnakeDepthwiseConvSnake``, ``PolyphaseInterleave``; see ``export/fuse.py``).
A session uses it only when registered; then onnxruntime prefers the kernels
over the function bodies.

The kernels spread each node's rows over the session's own intra-op threads
(onnxruntime's ``KernelContext_ParallelFor``), so they use the threads the session
was given (``SessionSettings.intra_op_threads``) and no other pool.

It is used only with the CPU execution provider: registered with CUDA or
CoreML sessions it would pin every Snake node to the CPU. Without a C
compiler at install time the extension is skipped and graphs run unfused.
"""

from __future__ import annotations

import importlib.machinery
import os
from pathlib import Path

__all__ = ["SNAKE_DOMAIN", "snake_library", "fused_snake_available", "default_threads"]

SNAKE_DOMAIN = "ai.snac_onnx"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the extension sits at the package root: snac_onnx/_snake*


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


def default_threads() -> int:
    """The CPUs this process may run on (what an intra-op thread count of 0 stands for here)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1
