"""PCM validation, conversion and padding (NumPy only).

Accepted PCM, by dtype:

* float32: used as is; float64 and float16 are converted to float32. Full
  scale is 1.0; a peak above :data:`MAX_FLOAT_PEAK` is refused (it is almost
  always int16-scale audio passed as float, which would encode to garbage).
* int16 / int32: scaled by 1/32768 and 1/2**31 to [-1, 1).
* anything else (bool, unsigned, complex, object, strings): an error.

Accepted shapes: ``(samples,)``, ``(batch, samples)`` or ``(batch, 1, samples)``, or a list of
1-D arrays of different lengths (each item is then encoded as if alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import InvalidAudioError, SampleRateError

__all__ = [
    "MAX_FLOAT_PEAK",
    "MAX_CHANNELS",
    "PreparedAudio",
    "to_float_pcm",
    "prepare_audio",
    "pad_to_multiple",
    "check_sample_rate",
]

MAX_FLOAT_PEAK = 4.0
MAX_CHANNELS = 8  # a 2-D (n, c) array with c <= 8 < n is (samples, channels), not n clips of c samples
_INT_SCALE = {np.dtype(np.int16): 1.0 / 32768.0, np.dtype(np.int32): 1.0 / 2147483648.0}


@dataclass(frozen=True)
class PreparedAudio:
    """Audio ready for the encoder.

    Attributes:
        items: per item, float32 C-contiguous 1-D PCM right-padded to whole padding units.
        lengths: samples per item before padding.
        form: ``"single"`` for ``(samples,)``, ``"batch"`` for ``(batch, samples)`` or
            ``(batch, 1, samples)``, ``"list"`` for a list of 1-D arrays; results take the same form.
    """

    items: list[np.ndarray]
    lengths: list[int]
    form: Literal["single", "batch", "list"]


def check_sample_rate(sample_rate: int | None, expected: int) -> None:
    """Raise :class:`SampleRateError` when ``sample_rate`` is given and differs from ``expected``."""
    if sample_rate is None:
        return
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise SampleRateError(f"sample_rate must be an integer in Hz, got {sample_rate!r}")
    if int(sample_rate) != expected:
        raise SampleRateError(
            f"audio sample rate is {int(sample_rate)} Hz but this model expects {expected} Hz; "
            f"resample to {expected} Hz first (e.g. with soxr) or load the model made for {int(sample_rate)} Hz"
        )


def to_float_pcm(audio: object) -> np.ndarray:
    """Convert PCM to float32 per the module's dtype rules; checks dtype and finiteness only."""
    if not isinstance(audio, np.ndarray):
        if isinstance(audio, (list, tuple)):
            try:
                audio = np.asarray(audio)
            except ValueError:  # NumPy refuses ragged nested lists
                raise InvalidAudioError(
                    "audio is nested lists of unequal lengths; pass a NumPy array of PCM samples, or for items of "
                    "different lengths a list of 1-D NumPy arrays ([np.asarray(x, np.float32) for x in audio])"
                ) from None
        else:
            raise InvalidAudioError(f"audio must be a numpy array of PCM samples, got {type(audio).__name__}")
    dtype = audio.dtype
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        # Check on the caller's dtype: a float64 beyond float32's range must not turn into inf silently.
        if audio.size and not np.isfinite(audio).all():
            bad = int(np.count_nonzero(~np.isfinite(audio)))
            raise InvalidAudioError(f"audio contains {bad} NaN or infinite sample(s); clean the signal before encoding")
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > MAX_FLOAT_PEAK:
            raise InvalidAudioError(
                f"float audio peaks at {peak:.4g}; float PCM is expected in [-1, 1] (at most {MAX_FLOAT_PEAK:g} is "
                "accepted). If this is int16-scale audio, divide by 32768 or pass it as int16"
            )
        converted: np.ndarray = audio.astype(np.float32, copy=False)
        return converted
    if dtype in _INT_SCALE:
        scaled: np.ndarray = audio.astype(np.float32) * np.float32(_INT_SCALE[dtype])
        return scaled
    raise InvalidAudioError(
        f"audio dtype {dtype} is not supported; pass float32 in [-1, 1] (float64/float16 are converted) "
        "or int16/int32 PCM (scaled to [-1, 1))"
    )


def pad_to_multiple(batch: np.ndarray, unit: int) -> np.ndarray:
    """Right-pad the last axis with zeros to a multiple of ``unit``, like SNAC's ``preprocess``."""
    length = batch.shape[-1]
    right = -length % unit
    if right == 0:
        return np.ascontiguousarray(batch)
    widths = [(0, 0)] * (batch.ndim - 1) + [(0, right)]
    return np.pad(batch, widths)


def _as_batch(pcm: np.ndarray) -> np.ndarray:
    """``(batch, samples)`` from a 2-D or 3-D array; refuses channels and channels-last shapes."""
    if pcm.ndim == 3:
        if pcm.shape[1] != 1:
            raise InvalidAudioError(
                f"audio of shape {pcm.shape} has {pcm.shape[1]} channels; SNAC is mono: "
                "pass (batch, 1, samples) or mix the channels down first"
            )
        return pcm[:, 0, :]
    if pcm.ndim != 2:
        raise InvalidAudioError(
            f"audio has shape {pcm.shape}; expected (samples,), (batch, samples), (batch, 1, samples) "
            "or a list of 1-D arrays"
        )
    items, samples = pcm.shape
    if samples <= MAX_CHANNELS < items:
        raise InvalidAudioError(
            f"audio of shape {pcm.shape} reads as {items} clips of {samples} sample(s): that is almost certainly "
            f"(samples, channels), as soundfile.read returns it. SNAC is mono: pass audio.mean(axis=1) "
            f"(or one channel, audio[:, 0]); for a batch of clips pass (batch, samples)"
        )
    return pcm


def prepare_audio(audio: object, padding_unit: int) -> PreparedAudio:
    """Validate PCM in any accepted form and pad each item to ``padding_unit`` (see the module docstring).

    Raises:
        InvalidAudioError: a dtype, shape or content the module docstring does not accept.
    """
    if isinstance(audio, (list, tuple)) and audio and all(isinstance(a, np.ndarray) for a in audio):
        items = []
        for k, item in enumerate(audio):
            pcm = to_float_pcm(item)
            if pcm.ndim != 1:
                raise InvalidAudioError(
                    f"audio[{k}] has shape {pcm.shape}; a list of items takes 1-D arrays (samples,)"
                )
            if pcm.shape[0] == 0:
                raise InvalidAudioError(f"audio[{k}] has no samples")
            items.append(pcm)
        form: Literal["single", "batch", "list"] = "list"
    else:
        pcm = to_float_pcm(audio)
        if pcm.ndim == 1:
            items, form = [pcm], "single"
        else:
            batch = _as_batch(pcm)
            if batch.shape[0] == 0:
                raise InvalidAudioError(f"audio of shape {pcm.shape} has an empty batch")
            items, form = list(batch), "batch"
        if items[0].shape[0] == 0:
            raise InvalidAudioError(f"audio of shape {pcm.shape} has no samples")
    return PreparedAudio(
        items=[pad_to_multiple(a, padding_unit) for a in items], lengths=[int(a.shape[0]) for a in items], form=form
    )
