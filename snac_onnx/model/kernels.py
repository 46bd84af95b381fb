"""The optional fused Snake kernel: where it is, and whether a session should use it.

SNAC's Snake activation (``x + 1/alpha * sin(alpha * x)^2``, in every block of
the encoder and decoder) is, in the exported graphs, one node
``ai.snac_onnx.Snake`` that carries a standard ONNX function body. onnxruntime
runs that body as five elementwise nodes, one of them a single-threaded ``Sin``;
on CPU they take more than half of decode time. ``csrc/snake.c``, compiled
into ``snac_onnx/_snake.abi3.so`` (``_snake.pyd`` on Windows), implements the node
as one vectorised pass, and also the exporter's other fused nodes
(``SnakeDepthwiseConvSnake``, ``PolyphaseInterleave``; see ``export/fuse.py``).
A session uses it only when registered; then onnxruntime prefers the kernels
over the function bodies.

The kernels spread each node's rows over the session's own intra-op threads
(onnxruntime's ``KernelContext_ParallelFor``), so they use the threads the session
was given (``SessionSettings.intra_op_threads``) and no other pool.

It is used only with the CPU execution provider: registered with CUDA or
CoreML sessions it would pin every Snake node to the CPU. The wheels built for
each platform carry it; an install from source builds it where a C compiler
works and otherwise installs without it. Then CPU sessions run the graphs
unfused, and :func:`warn_unfused` logs one WARNING per process saying so.

Environment (read when a session is made, for settings that leave ``fused_snake`` at None):
``SNAC_ONNX_FUSED_SNAKE`` = ``auto`` (default: the kernel where it is installed and applies),
``require`` (as ``SessionSettings(fused_snake=True)``: an error if it cannot be used) or ``off``
(as ``fused_snake=False``); ``SNAC_ONNX_QUIET_KERNEL=1`` silences the warning.
"""

from __future__ import annotations

import importlib.machinery
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from ..errors import InvalidArgumentError

__all__ = [
    "SNAKE_DOMAIN",
    "POLICY_ENV",
    "QUIET_ENV",
    "UNFUSED_SLOWDOWN",
    "library_suffixes",
    "find_library",
    "snake_library",
    "fused_snake_available",
    "requested_by_environment",
    "unfused_message",
    "warn_unfused",
    "default_threads",
]

logger = logging.getLogger(__name__)

SNAKE_DOMAIN = "ai.snac_onnx"
POLICY_ENV = "SNAC_ONNX_FUSED_SNAKE"
QUIET_ENV = "SNAC_ONNX_QUIET_KERNEL"
# How much longer CPU decoding and encoding take without the kernel (24 kHz model, 10 s of audio, 1 and 2
# threads, AMD EPYC): bench/RESULTS_kernel_builds.md, measured by bench/kernel_builds.py.
UNFUSED_SLOWDOWN = "decoding takes 1.7-2.3x as long, encoding 2-2.5x"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the extension sits at the package root: snac_onnx/_snake*
_POLICIES = {"auto": None, "require": True, "off": False}


def library_suffixes(platform: str | None = None, extension_suffixes: Sequence[str] | None = None) -> list[str]:
    """The file name endings the kernel library may have, in the order they are looked for.

    The interpreter's extension suffixes first (what setuptools names it: the stable-ABI build is
    ``_snake.abi3.so`` on Linux and macOS, ``_snake.pyd`` on Windows; a build for one interpreter
    ``_snake.cpython-312-x86_64-linux-gnu.so`` or ``_snake.cp312-win_amd64.pyd``), then the plain
    shared-library name of a build by hand: ``.dylib`` on macOS, ``.dll`` on Windows.
    ``platform`` (``sys.platform``) and ``extension_suffixes`` (``importlib.machinery.EXTENSION_SUFFIXES``)
    default to the running interpreter's.
    """
    platform = sys.platform if platform is None else platform
    suffixes = list(importlib.machinery.EXTENSION_SUFFIXES if extension_suffixes is None else extension_suffixes)
    plain = {"darwin": ".dylib", "win32": ".dll", "cygwin": ".dll"}.get(platform, ".so")
    return suffixes if plain in suffixes else [*suffixes, plain]


def find_library(folder: Path, suffixes: Sequence[str]) -> Path | None:
    """The file ``folder/_snake<suffix>`` for one of ``suffixes``, or None when there is none.

    Where several exist (a checkout rebuilt for another interpreter, or before and after the
    stable-ABI build), the most recently modified one: an older build would run stale kernels.
    """
    found = [folder / f"_snake{suffix}" for suffix in suffixes]
    found = [candidate for candidate in found if candidate.is_file()]
    if not found:
        return None
    return max(found, key=lambda candidate: candidate.stat().st_mtime_ns)  # max keeps the first of equals


def snake_library() -> Path | None:
    """Path of the compiled fused Snake kernel library, or None when it was not built."""
    return find_library(_PACKAGE_DIR, library_suffixes())


def fused_snake_available() -> bool:
    """True when the fused Snake kernel library is installed with this package."""
    return snake_library() is not None


def requested_by_environment() -> bool | None:
    """What ``SNAC_ONNX_FUSED_SNAKE`` asks for: None (``auto`` or unset), True (``require``), False (``off``).

    Raises:
        InvalidArgumentError: another value.
    """
    value = os.environ.get(POLICY_ENV, "").strip().lower() or "auto"
    if value not in _POLICIES:
        raise InvalidArgumentError(
            f"{POLICY_ENV}={os.environ[POLICY_ENV]!r} is not one of {list(_POLICIES)} "
            "(auto: the fused Snake kernel where installed; require: an error without it; off: never)"
        )
    return _POLICIES[value]


def unfused_message() -> str:
    """What running without the kernel means and how to get it (the warning's text, also for ``snac-onnx info``)."""
    return (
        "the fused Snake kernel (snac_onnx._snake) is not installed, so CPU sessions run Snake as plain ONNX "
        f"nodes: {UNFUSED_SLOWDOWN}. To get it, install a snac-onnx wheel built for "
        "this platform (the wheels include it), or reinstall snac-onnx from source with a C compiler present "
        "(gcc or clang; on Windows the MSVC Build Tools). "
        f"Silence this with {QUIET_ENV}=1 or SessionSettings(fused_snake=False); "
        f"make it an error with {POLICY_ENV}=require or SessionSettings(fused_snake=True)"
    )


_warned = False
_warned_lock = threading.Lock()


def warn_unfused() -> None:
    """Log :func:`unfused_message` as a WARNING, once per process, unless ``SNAC_ONNX_QUIET_KERNEL`` is set."""
    global _warned
    if os.environ.get(QUIET_ENV, "").strip() not in ("", "0"):
        return
    with _warned_lock:
        if _warned:
            return
        _warned = True
    logger.warning("%s", unfused_message())


def default_threads() -> int:
    """The CPUs this process may run on (what an intra-op thread count of 0 stands for here)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1
