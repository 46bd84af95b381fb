"""Audio encoded as it is generated, chunk by chunk, for a response that streams it.

* ``pcm``: raw signed 16-bit little-endian mono samples (OpenAI's ``pcm``).
* ``wav``: a 44-byte header whose sizes are ``0xFFFFFFFF`` (unknown: the length is not known when the header is
  sent, as FFmpeg streams WAV), then the samples as ``pcm``.
* ``flac``, ``mp3``, ``opus`` (in Ogg): libsndfile (soundfile) writing to a buffer whose new bytes go out with each
  chunk; the header fields a codec patches at its end (FLAC's total length and checksum, MP3's Info frame) stay as
  first written, which decoders read as unknown. MP3 is encoded at a constant bitrate, so that its length is known
  without that frame. Opus and MP3 hold back a little audio until enough for a packet or frame has come, so their
  first bytes come later than ``pcm``'s; MP3 also adds its encoder's delay at the start.
"""

from __future__ import annotations

import struct
from typing import Protocol

import numpy as np

from ..errors import InvalidArgumentError, MissingDependencyError, install_hint
from ..files.audio import pcm16

__all__ = ["Encoder", "make_encoder", "wav_header", "MEDIA_TYPES", "FORMATS"]

MEDIA_TYPES = {
    "pcm": "audio/pcm",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
}
FORMATS = tuple(MEDIA_TYPES)
_LIBSNDFILE = {"flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS")}


def wav_header(rate: int, samples: int | None) -> bytes:
    """The 44-byte header of a 16-bit mono WAV file of ``samples`` samples (None: unknown, sizes ``0xFFFFFFFF``)."""
    data = 0xFFFFFFFF if samples is None else 2 * samples
    riff = 0xFFFFFFFF if samples is None else 36 + data
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI", b"RIFF", riff, b"WAVE", b"fmt ", 16, 1, 1, rate, 2 * rate, 2, 16, b"data", data
    )


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
        return wav_header(self.rate, None)


class _Outbox:
    """A file for libsndfile that keeps only what is not sent yet: bytes written past the sent ones go out with the
    next :meth:`take`; rewrites of sent bytes (a header's final sizes) are dropped, as is what was sent."""

    def __init__(self) -> None:
        self.pending = bytearray()  # the file's bytes from offset ``sent`` on
        self.sent = 0
        self.position = 0

    def write(self, data: bytes) -> int:
        start, count = self.position, len(data)
        self.position += count
        skip = max(0, self.sent - start)  # the part that rewrites bytes already sent
        if skip < count:
            at = start + skip - self.sent
            end = at + count - skip
            if end > len(self.pending):
                self.pending.extend(bytes(end - len(self.pending)))
            self.pending[at:end] = memoryview(data)[skip:]
        return count

    def seek(self, offset: int, whence: int = 0) -> int:
        size = self.sent + len(self.pending)
        self.position = offset if whence == 0 else self.position + offset if whence == 1 else size + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def read(self, size: int = -1) -> bytes:
        at = max(0, self.position - self.sent)
        data = bytes(self.pending[at : None if size < 0 else at + size])
        self.position += len(data)
        return data

    def take(self) -> bytes:
        new = bytes(self.pending)
        self.sent += len(new)
        self.pending.clear()
        return new


class _Libsndfile:
    def __init__(self, fmt: str, rate: int) -> None:
        try:
            import soundfile
        except ImportError as error:  # pragma: no cover - depends on the install
            raise MissingDependencyError(f"response_format {fmt} needs soundfile: {install_hint('serve')}") from error
        container, subtype = _LIBSNDFILE[fmt]
        self._out = _Outbox()
        # MP3 at a constant bitrate: its length needs no header written at the end (a stream never gets that one)
        options = {"bitrate_mode": "CONSTANT"} if fmt == "mp3" else {}
        self._file = soundfile.SoundFile(
            self._out, "w", samplerate=rate, channels=1, format=container, subtype=subtype, **options
        )

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
