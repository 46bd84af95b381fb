"""snac_onnx: the SNAC neural audio codec on onnxruntime and NumPy, without torch.

>>> from snac_onnx import SnacOnnx
>>> codec = SnacOnnx("models/snac_24khz")
>>> codes = codec.encode(pcm)                    # list of int64 arrays, coarse first
>>> audio = codec.decode(codes, length=len(pcm), noise=False)

The package logger is ``logging.getLogger("snac_onnx")``; the package adds no handlers to it.
"""

from __future__ import annotations

from .codec import SnacOnnx
from .errors import (
    InvalidAudioError,
    InvalidCodesError,
    ModelFormatError,
    ModelNotFoundError,
    SampleRateError,
    SnacOnnxError,
)
from .layouts import CODEBOOK_MAJOR, INTERLEAVED, ORPHEUS, TokenLayout, codes_to_tokens, tokens_to_codes
from .manifest import Manifest, ModelConfig, load_manifest
from .orpheus import OrpheusStream
from .sessions import SessionSettings
from .streaming import StreamDecoder

__version__ = "0.1.0"

__all__ = [
    "SnacOnnx",
    "SessionSettings",
    "StreamDecoder",
    "OrpheusStream",
    "TokenLayout",
    "INTERLEAVED",
    "CODEBOOK_MAJOR",
    "ORPHEUS",
    "codes_to_tokens",
    "tokens_to_codes",
    "Manifest",
    "ModelConfig",
    "load_manifest",
    "SnacOnnxError",
    "InvalidAudioError",
    "InvalidCodesError",
    "SampleRateError",
    "ModelNotFoundError",
    "ModelFormatError",
    "__version__",
]
