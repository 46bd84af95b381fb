"""Audio encoded as it is generated, chunk by chunk, for a response that streams it.

* ``pcm``: raw signed 16-bit little-endian mono samples (OpenAI's ``pcm``).
* ``wav``: a 44-byte header whose sizes are ``0xFFFFFFFF`` (unknown: the length is not known when the header is
  sent, as FFmpeg streams WAV), then the samples as ``pcm``.
* ``flac``, ``mp3``, ``opus`` (in Ogg): libsndfile (soundfile) writing to a buffer whose new bytes go out with each
  chunk; the header fields a codec patches at its end (FLAC's total length and checksum) stay as first written,
  which its decoders read as unknown. Opus and MP3 hold back a little audio until enough for a packet or frame
  has come, so their first bytes come later than ``pcm``'s.
"""

from __future__ import annotations

import struct
from typing import Protocol

import numpy as np

from ..errors import InvalidArgumentError, MissingDependencyError
from ..files.audio import pcm16

__all__ = ["Encoder", "make_encoder", "MEDIA_TYPES", "FORMATS"]

MEDIA_TYPES = {
    "pcm": "audio/pcm",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
}
FORMATS = tuple(MEDIA_TYPES)
_LIBSNDFILE = {"flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS")}


class Encoder(Protocol):
    """Bytes of one response: ``start()`` first, ``encode(chunk)`` for each float32 1-D chunk, ``finish()`` last."""

    def start(self) -> bytes: ...
    def encode(self, audio: np.ndarray) -> bytes: ...
    def finish(self) -> bytes: ...


class _Pcm:
    def start(self) -> bytes:
        return b""

    def encode(self, audio: np.ndarray) -> bytes:
        return pcm16(audio)

    def finish(self) -> bytes:
        return b""


class _Wav(_Pcm):
    def __init__(self, rate: int) -> None:
        self.rate = rate

    def start(self) -> bytes:
        unknown = 0xFFFFFFFF
        return struct.pack(
            "<4sI4s4sIHHIIHH4sI",
            b"RIFF",
            unknown,
            b"WAVE",
            b"fmt ",
            16,
            1,
            1,
            self.rate,
            2 * self.rate,
            2,
            16,
            b"data",
            unknown,
        )


class _Outbox:
    """A file for libsndfile: what it writes past what was already sent goes out; rewrites of sent bytes stay."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.position = 0
        self.sent = 0

    def write(self, data: bytes) -> int:
        end = self.position + len(data)
        if end > len(self.buffer):
            self.buffer.extend(bytes(end - len(self.buffer)))
        self.buffer[self.position : end] = data
        self.position = end
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = offset if whence == 0 else self.position + offset if whence == 1 else len(self.buffer) + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def read(self, size: int = -1) -> bytes:
        data = bytes(self.buffer[self.position : None if size < 0 else self.position + size])
        self.position += len(data)
        return data

    def take(self) -> bytes:
        new = bytes(self.buffer[self.sent :])
        self.sent = len(self.buffer)
        return new


class _Libsndfile:
    def __init__(self, fmt: str, rate: int) -> None:
        try:
            import soundfile
        except ImportError as error:  # pragma: no cover - depends on the install
            raise MissingDependencyError(f"response_format {fmt} needs soundfile: pip install soundfile") from error
        container, subtype = _LIBSNDFILE[fmt]
        self._out = _Outbox()
        self._file = soundfile.SoundFile(self._out, "w", samplerate=rate, channels=1, format=container, subtype=subtype)

    def start(self) -> bytes:
        return self._out.take()

    def encode(self, audio: np.ndarray) -> bytes:
        self._file.write(np.clip(audio, -1.0, 1.0))
        return self._out.take()

    def finish(self) -> bytes:
        self._file.close()
        return self._out.take()


def make_encoder(fmt: str, rate: int) -> Encoder:
    """An encoder of ``fmt`` (one of :data:`FORMATS`) at ``rate`` Hz, mono."""
    if fmt == "pcm":
        return _Pcm()
    if fmt == "wav":
        return _Wav(rate)
    if fmt in _LIBSNDFILE:
        return _Libsndfile(fmt, rate)
    raise InvalidArgumentError(f"response_format must be one of {list(FORMATS)}, got {fmt!r}")
