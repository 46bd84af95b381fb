"""Audio files: reading any format libsndfile knows (soundfile), resampling (soxr), writing.

Both libraries come from the ``[audio]`` extra. :func:`load_audio` is the API's way to do
what the CLI does with a file; :class:`AudioReader` reads long files window by window.
A path of ``-`` reads standard input (the whole stream; any format soundfile can sniff).
"""

from __future__ import annotations

import io
import logging
import os
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    InputNotFoundError,
    InvalidArgumentError,
    InvalidAudioError,
    MissingDependencyError,
    SampleRateError,
    install_hint,
)
from .atomic import STDIO, atomic_output

__all__ = ["AudioReader", "load_audio", "output_format", "write_audio", "pcm16", "resample_audio", "OUTPUT_FORMATS"]

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


def _soundfile() -> Any:
    try:
        import soundfile
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError(f"audio files need soundfile: {install_hint('audio')}") from exc
    return soundfile


def _wav_shortfall(head: bytes, size: int) -> tuple[int, int] | None:
    """(bytes the header's data chunk declares, bytes present) of a RIFF/WAVE file cut short; None otherwise."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= len(head):
        chunk, length = head[offset : offset + 4], struct.unpack("<I", head[offset + 4 : offset + 8])[0]
        if chunk == b"data":
            present = size - (offset + 8)
            # 0 and 0xFFFFFFFF: streamed WAVs whose writer never knew the length
            return (length, present) if 0 < length < 0xFFFFFFFF and present < length else None
        offset += 8 + length + (length & 1)
    return None


class AudioReader:
    """Random-access mono reader of an audio file at a target rate.

    Args:
        path: any file libsndfile reads (wav, flac, ogg, mp3 with libsndfile >= 1.1, ...), or
            ``-`` for standard input, or the bytes of such a file (an upload).
        target_rate: the model's sample rate, Hz.
        mix: average multi-channel audio to mono (otherwise it is an error).
        resample: resample to ``target_rate`` with soxr when the file's rate
            differs (otherwise it is an error). Resampling reads the whole file
            into memory; without it, reads are windowed and memory stays flat.
        raw_rate: the input is headerless signed 16-bit little-endian mono PCM at this
            rate (Hz), as ``arecord``/``sox -t raw`` write it; None (default): a file with a header.

    Raises:
        InputNotFoundError: ``path`` does not exist.
        InvalidAudioError: not audio, no samples, several channels without ``mix``, or a
            WAV file cut short (its header declares more data than it holds).
        SampleRateError: another rate without ``resample``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | bytes,
        target_rate: int,
        *,
        mix: bool = False,
        resample: bool = False,
        raw_rate: int | None = None,
    ):
        sf = _soundfile()
        if raw_rate is not None and (isinstance(raw_rate, bool) or not isinstance(raw_rate, int) or raw_rate < 1):
            raise InvalidArgumentError(f"raw_rate must be a sample rate in Hz (int >= 1) or None, got {raw_rate!r}")
        self._format: dict[str, Any] = (
            {}
            if raw_rate is None
            else {"samplerate": raw_rate, "channels": 1, "format": "RAW", "subtype": "PCM_16", "endian": "LITTLE"}
        )
        self._source: str | io.BytesIO
        if isinstance(path, bytes):
            self.name = "the audio given"
            self._source = io.BytesIO(path)
            head, size = path[:4096], len(path)
        elif str(path) == STDIO:
            self.name = "standard input"
            self._source = io.BytesIO(sys.stdin.buffer.read())
            head, size = self._source.getvalue()[:4096], len(self._source.getvalue())
        else:
            self.name = repr(str(path))
            file = Path(path)
            if not file.is_file():
                raise InputNotFoundError(
                    f"input {self.name} {'is a folder' if file.is_dir() else 'does not exist'}; give an audio file"
                )
            self._source = str(file)
            with open(file, "rb") as handle:
                head, size = handle.read(4096), file.stat().st_size
        try:
            with sf.SoundFile(self._source, **self._format) as info:
                self.file_rate, self.channels, self.file_frames = int(info.samplerate), int(info.channels), info.frames
        except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError
            raise InvalidAudioError(f"cannot read {self.name} as audio: {exc}") from exc
        finally:
            if isinstance(self._source, io.BytesIO):
                self._source.seek(0)
        shortfall = None if raw_rate is not None else _wav_shortfall(head, size)
        if shortfall is not None:
            raise InvalidAudioError(
                f"{self.name} is cut short: its header declares {shortfall[0]} bytes of samples, the file holds "
                f"{shortfall[1]}; re-copy it, or rewrite what is there (e.g. 'sox in.wav out.wav') to encode that"
            )
        self.target_rate = int(target_rate)
        if self.channels > 1 and not mix:
            raise InvalidAudioError(
                f"{self.name} has {self.channels} channels; SNAC is mono: average them with --mix (command line), "
                "mix=True (Python) or ?mix=true (HTTP)"
            )
        if self.file_frames <= 0:
            raise InvalidAudioError(f"{self.name} has no samples")
        self._resampled: np.ndarray | None = None
        if self.file_rate != self.target_rate:
            if not resample:
                raise SampleRateError(
                    f"{self.name} is {self.file_rate} Hz but the model expects {self.target_rate} Hz; "
                    "convert it (soxr) with --resample (command line), resample=True (Python) or ?resample=true (HTTP)"
                )
            self._resampled = resample_audio(self._read_file(0, self.file_frames), self.file_rate, self.target_rate)

    @property
    def num_samples(self) -> int:
        """Length at the target rate."""
        return self.file_frames if self._resampled is None else int(self._resampled.shape[0])

    @property
    def seconds(self) -> float:
        return self.num_samples / self.target_rate

    def _read_file(self, start: int, stop: int) -> np.ndarray:
        sf = _soundfile()
        if isinstance(self._source, io.BytesIO):
            self._source.seek(0)
        try:
            data: np.ndarray = sf.read(
                self._source, start=start, stop=stop, dtype="float32", always_2d=True, **self._format
            )[0]
        except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError on damaged data
            raise InvalidAudioError(f"cannot read samples {start}..{stop} of {self.name}: {exc}") from exc
        mono: np.ndarray = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
        return mono

    def read(self, start: int, stop: int) -> np.ndarray:
        """Mono float32 samples ``[start, stop)`` at the target rate."""
        if self._resampled is not None:
            return self._resampled[start:stop]
        return self._read_file(start, min(stop, self.file_frames))


def load_audio(
    path: str | os.PathLike[str] | bytes,
    sample_rate: int,
    *,
    mix: bool = False,
    resample: bool = False,
    raw_rate: int | None = None,
) -> np.ndarray:
    """The whole of an audio file as mono float32 ``(samples,)`` at ``sample_rate`` Hz (what the CLI reads).

    >>> pcm = load_audio("speech.flac", codec.sample_rate, mix=True, resample=True)
    >>> codes = codec.encode(pcm, sample_rate=codec.sample_rate)

    Args and errors as :class:`AudioReader`.
    """
    reader = AudioReader(path, sample_rate, mix=mix, resample=resample, raw_rate=raw_rate)
    return reader.read(0, reader.num_samples)


def output_format(path: str | os.PathLike[str], *, raw: bool = False) -> tuple[str, str] | None:
    """(soundfile format, subtype) for writing ``path`` (``-``: WAV), or None for ``raw`` output.

    Raises:
        InvalidArgumentError: a suffix that is not .wav, .flac or .ogg (and not ``raw``).
    """
    if raw:
        return None
    name = str(path)
    chosen = OUTPUT_FORMATS.get(".wav" if name == STDIO else Path(name).suffix.lower())
    if chosen is None:
        raise InvalidArgumentError(
            f"output {name!r}: use a name ending in {', '.join(OUTPUT_FORMATS)} (or '-' for WAV on stdout, "
            "or --raw for headerless 16-bit PCM)"
        )
    return chosen


def write_audio(path: str | os.PathLike[str], audio: np.ndarray, rate: int, *, raw: bool = False) -> None:
    """Write mono float audio atomically: format from the suffix (16-bit PCM for wav and flac), ``-`` for stdout.

    ``raw``: headerless signed 16-bit little-endian PCM instead (any name, or ``-``).

    Raises:
        InvalidArgumentError: see :func:`output_format`.
    """
    samples = np.asarray(audio, np.float32)
    chosen = output_format(path, raw=raw)
    if chosen is None:
        with atomic_output(path) as handle:
            handle.write(pcm16(samples))
        return
    sf = _soundfile()
    with atomic_output(path) as handle:
        sf.write(handle, samples, rate, format=chosen[0], subtype=chosen[1])


def pcm16(audio: np.ndarray) -> bytes:
    """Mono float ``audio`` (nominally in [-1, 1]; clipped) as signed 16-bit little-endian PCM bytes."""
    return bytes((np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes())


def resample_audio(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Mono float32 ``audio`` from ``from_rate`` to ``to_rate`` Hz (soxr; returned as is when equal)."""
    if from_rate == to_rate:
        return audio
    try:
        import soxr
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError(f"resampling needs soxr: {install_hint('audio')}") from exc
    return np.asarray(soxr.resample(audio, from_rate, to_rate), np.float32)
