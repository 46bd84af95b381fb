"""Error classes of snac_onnx.

Every error raised on purpose by this package derives from :class:`SnacOnnxError`
and also from the builtin that fits it, so ``except ValueError`` keeps working
for callers that do not know this package. ``tests/runtime/test_error_contract.py``
walks the package's ``raise`` statements and holds it to this. :func:`install_hint` is the one
place the messages of :class:`MissingDependencyError` get their pip command from.
"""

from __future__ import annotations

__all__ = [
    "SnacOnnxError",
    "InvalidArgumentError",
    "InvalidAudioError",
    "SampleRateError",
    "InvalidCodesError",
    "ModelNotFoundError",
    "ModelFormatError",
    "InputNotFoundError",
    "ProviderError",
    "KernelUnavailableError",
    "StreamClosedError",
    "PoolFullError",
    "DecodeFailedError",
    "MissingDependencyError",
]


class SnacOnnxError(Exception):
    """Base class of every error raised on purpose by snac_onnx."""


class InvalidArgumentError(SnacOnnxError, ValueError):
    """An argument of a constructor or method outside what it allows (threads, noise, seeds, layouts...)."""


class InvalidAudioError(SnacOnnxError, ValueError):
    """Audio of the wrong dtype, shape or content (empty, NaN, inf)."""


class SampleRateError(SnacOnnxError, ValueError):
    """Audio whose sample rate differs from the model's."""


class InvalidCodesError(SnacOnnxError, ValueError):
    """Codes or tokens of the wrong count, dtype, range or per-codebook lengths."""


class ModelNotFoundError(SnacOnnxError, FileNotFoundError):
    """A model folder, manifest or graph file that does not exist."""


class ModelFormatError(SnacOnnxError, ValueError):
    """A manifest or graph that is corrupt, of an unknown version, or inconsistent."""


class InputNotFoundError(SnacOnnxError, FileNotFoundError):
    """An input file, folder or glob (audio, codes, corpus) that does not exist."""


class ProviderError(SnacOnnxError, ValueError):
    """Execution providers given in a form onnxruntime does not take."""


class KernelUnavailableError(SnacOnnxError, RuntimeError):
    """The fused Snake kernel was required but cannot be used (not installed, damaged, or not CPU)."""


class StreamClosedError(SnacOnnxError, RuntimeError):
    """A stream used after :meth:`flush` ended it, or a codec used after :meth:`close`."""


class PoolFullError(SnacOnnxError, RuntimeError):
    """A :class:`~snac_onnx.stream.pool.StreamPool` holds its maximum of streams, or is closing: try again later."""


class DecodeFailedError(SnacOnnxError, RuntimeError):
    """onnxruntime failed to run a graph on checked inputs (out of memory, a damaged model, or a bug to report)."""


class MissingDependencyError(SnacOnnxError, ImportError):
    """An optional dependency (onnxruntime, soundfile, soxr, huggingface_hub, Ray) is not installed."""


def install_hint(extra: str) -> str:
    """The pip command that adds the optional dependencies ``extra`` (``"cpu"``, ``"audio"``...), for messages.

    snac-onnx is not on PyPI before its first release, so the command installs from a checkout
    (or a built wheel file in its place).
    """
    return (
        f"pip install 'snac-onnx[{extra}] @ file:///path/to/snac-onnx' (snac-onnx is not on PyPI yet: "
        "point it at a checkout or a built wheel file)"
    )
