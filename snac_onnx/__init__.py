"""snac_onnx: the SNAC neural audio codec on onnxruntime and NumPy, without torch.

>>> from snac_onnx import SnacOnnx
>>> codec = SnacOnnx("models/snac_24khz")
>>> codes = codec.encode(pcm)                    # list of int64 arrays, coarse first
>>> audio = codec.decode(codes, length=len(pcm), noise=False)
>>> pcm = load_audio("talk.flac", codec.sample_rate, mix=True, resample=True)  # needs the [audio] extra

Importing the package needs NumPy only; onnxruntime is needed once a :class:`SnacOnnx` is made
(the ``cpu`` or ``gpu`` extra: ``pip install '/path/to/snac-onnx[cpu]'`` from a checkout or a built wheel;
the package is not on PyPI yet).

The package logs on ``logging.getLogger("snac_onnx")`` and one child logger per module
(``snac_onnx.model.sessions``, ``snac_onnx.planner``, ...); it adds no handlers to them.
"""

from __future__ import annotations

from .codec import SnacOnnx
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
from .files.audio import load_audio
from .files.codes import CodesFile, load_codes, save_codes
from .layouts import CODEBOOK_MAJOR, INTERLEAVED, ORPHEUS, TokenLayout, codes_to_tokens, tokens_to_codes
from .model.manifest import Manifest, load_manifest
from .model.sessions import SessionSettings
from .stream.decoder import StreamDecoder
from .stream.orpheus import OrpheusStream
from .stream.pool import AsyncPooledStream, PooledStream, StreamPool
from .stream.presets import PRESETS, MiniOmniHeads, PresetStream, TokenPreset

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
