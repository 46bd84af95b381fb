"""Audio files (soundfile) and resampling (soxr) for the CLI; both from the ``[audio]`` extra."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from .errors import InvalidArgumentError, InvalidAudioError, MissingDependencyError, SampleRateError

__all__ = ["AudioReader", "write_audio_atomic", "atomic_output"]


def _soundfile() -> Any:
    try:
        import soundfile
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError("audio files need soundfile: pip install 'snac-onnx[audio]'") from exc
    return soundfile


class AudioReader:
    """Random-access mono reader of an audio file at a target rate.

    Args:
        path: wav, flac, ogg or anything libsndfile reads.
        target_rate: the model's sample rate.
        mix: average multi-channel audio to mono (otherwise it is an error).
        resample: resample to ``target_rate`` with soxr when the file's rate
            differs (otherwise it is an error). Resampling reads the whole file
            into memory; without it, reads are windowed and memory stays flat.
    """

    def __init__(self, path: str | os.PathLike[str], target_rate: int, *, mix: bool = False, resample: bool = False):
        sf = _soundfile()
        self.path = Path(path)
        try:
            info = sf.info(str(self.path))
        except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError
            raise InvalidAudioError(f"cannot read {str(self.path)!r} as audio: {exc}") from exc
        self.file_rate = int(info.samplerate)
        self.channels = int(info.channels)
        self.file_frames = int(info.frames)
        self.target_rate = int(target_rate)
        if self.channels > 1 and not mix:
            raise InvalidAudioError(
                f"{self.path.name} has {self.channels} channels; SNAC is mono: pass --mix to average them"
            )
        if self.file_frames == 0:
            raise InvalidAudioError(f"{self.path.name} has no samples")
        self._resampled: np.ndarray | None = None
        if self.file_rate != self.target_rate:
            if not resample:
                raise SampleRateError(
                    f"{self.path.name} is {self.file_rate} Hz but the model expects {self.target_rate} Hz; "
                    "pass --resample to convert it (soxr)"
                )
            try:
                import soxr
            except ImportError as exc:  # pragma: no cover
                raise MissingDependencyError("resampling needs soxr: pip install 'snac-onnx[audio]'") from exc
            whole = self._read_file(0, self.file_frames)
            self._resampled = soxr.resample(whole, self.file_rate, self.target_rate).astype(np.float32)

    @property
    def num_samples(self) -> int:
        """Length at the target rate."""
        return self.file_frames if self._resampled is None else int(self._resampled.shape[0])

    @property
    def seconds(self) -> float:
        return self.num_samples / self.target_rate

    def _read_file(self, start: int, stop: int) -> np.ndarray:
        sf = _soundfile()
        data: np.ndarray = sf.read(str(self.path), start=start, stop=stop, dtype="float32", always_2d=True)[0]
        mono: np.ndarray = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
        return mono

    def read(self, start: int, stop: int) -> np.ndarray:
        """Mono float32 samples ``[start, stop)`` at the target rate."""
        if self._resampled is not None:
            return self._resampled[start:stop]
        return self._read_file(start, min(stop, self.file_frames))


class atomic_output:
    """Context manager yielding a temporary path beside ``path``; renamed onto it only on success."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=self.path.suffix, dir=self.path.parent)
        os.close(handle)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def write_audio_atomic(path: str | os.PathLike[str], audio: np.ndarray, rate: int) -> None:
    """Write mono float audio (format from the suffix; 16-bit PCM for wav) atomically."""
    sf = _soundfile()
    path = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise InvalidArgumentError(f"output {path.name}: use a .wav, .flac or .ogg name")
    subtype = "VORBIS" if fmt == "OGG" else "PCM_16"
    with atomic_output(path) as tmp:
        sf.write(str(tmp), np.asarray(audio, np.float32), rate, format=fmt, subtype=subtype)
