"""snac_onnx: the SNAC neural audio codec on onnxruntime and NumPy, without torch.

>>> from snac_onnx import SnacOnnx
>>> codec = SnacOnnx("models/snac_24khz")
>>> codes = codec.encode(pcm)                    # list of int64 arrays, coarse first
>>> audio = codec.decode(codes, length=len(pcm), noise=False)
>>> pcm = load_audio("talk.flac", codec.sample_rate, mix=True, resample=True)  # needs the [audio] extra

Importing the package needs NumPy only; onnxruntime is needed once a :class:`SnacOnnx` is made
(``pip install 'snac-onnx[cpu]'`` or ``'snac-onnx[gpu]'``).

The package logs on ``logging.getLogger("snac_onnx")`` and one child logger per module
(``snac_onnx.sessions``, ``snac_onnx.planner``, ...); it adds no handlers to them.
"""

from __future__ import annotations

from .audio_io import load_audio
from .codec import SnacOnnx
from .codes_file import CodesFile, load_codes, save_codes
from .config import ModelConfig
from .errors import (
    DecodeFailedError,
    InputNotFoundError,
    InvalidArgumentError,
    InvalidAudioError,
    InvalidCodesError,
    KernelUnavailableError,
    MissingDependencyError,
    ModelFormatError,
    ModelNotFoundError,
    PoolFullError,
    ProviderError,
    SampleRateError,
    SnacOnnxError,
    StreamClosedError,
)
from .layouts import CODEBOOK_MAJOR, INTERLEAVED, ORPHEUS, TokenLayout, codes_to_tokens, tokens_to_codes
from .manifest import Manifest, load_manifest
from .orpheus import OrpheusStream
from .pool import AsyncPooledStream, PooledStream, StreamPool
from .presets import PRESETS, MiniOmniHeads, PresetStream, TokenPreset
from .sessions import SessionSettings
from .streaming import StreamDecoder

__version__ = "0.1.0"

__all__ = [
    "SnacOnnx",
    "SessionSettings",
    "StreamDecoder",
    "StreamPool",
    "PooledStream",
    "AsyncPooledStream",
    "load_audio",
    "load_codes",
    "save_codes",
    "CodesFile",
    "OrpheusStream",
    "PresetStream",
    "TokenPreset",
    "PRESETS",
    "MiniOmniHeads",
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
    "InvalidArgumentError",
    "InvalidAudioError",
    "InvalidCodesError",
    "SampleRateError",
    "ModelNotFoundError",
    "ModelFormatError",
    "InputNotFoundError",
    "ProviderError",
    "KernelUnavailableError",
    "StreamClosedError",
    "PoolFullError",
    "DecodeFailedError",
    "MissingDependencyError",
    "__version__",
]
