"""Error classes of snac_onnx.

Every error raised on purpose by this package derives from :class:`SnacOnnxError`
and also from the builtin that fits it, so ``except ValueError`` keeps working
for callers that do not know this package.
"""

from __future__ import annotations

__all__ = [
    "SnacOnnxError",
    "InvalidAudioError",
    "SampleRateError",
    "InvalidCodesError",
    "ModelNotFoundError",
    "ModelFormatError",
]


class SnacOnnxError(Exception):
    """Base class of every error raised on purpose by snac_onnx."""


class InvalidAudioError(SnacOnnxError, ValueError):
    """Audio of the wrong dtype, shape or content (empty, NaN, inf)."""


class SampleRateError(SnacOnnxError, ValueError):
    """Audio whose sample rate differs from the model's."""


class InvalidCodesError(SnacOnnxError, ValueError):
    """Codes of the wrong count, dtype, range or per-codebook lengths."""


class ModelNotFoundError(SnacOnnxError, FileNotFoundError):
    """A model folder, manifest or graph file that does not exist."""


class ModelFormatError(SnacOnnxError, ValueError):
    """A manifest or graph that is corrupt, of an unknown version, or inconsistent."""
