"""Encode a signal read window by window: memory flat in its length, codes equal to one-shot.

The planner lays windows of whole padding units on a grid over the signal
(:func:`snac_onnx.planner.grid_chunks`), each read with ``context_units`` of real audio on
each side (zeros only where one-shot encoding has them too: past the end, padded to the
unit), and the codec encodes each window as one graph run and keeps its own part
(:meth:`SnacOnnx.encode_window`). Windows
are aligned to the padding unit, so the encoder's attention windows and the quantiser's
pooling line up with a one-shot encode. With the default context (the encoder's receptive
field, :attr:`snac_onnx.config.ModelConfig.encoder_context`) the codes equal one-shot codes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from .audio import pad_to_multiple, to_float_pcm
from .errors import InvalidArgumentError, InvalidAudioError
from .planner import budget_steps, check_seconds, grid_chunks

if TYPE_CHECKING:
    from .codec import SnacOnnx

__all__ = ["Reader", "iter_encode_windows", "encode_reader", "encode_windowed"]

Reader = Callable[[int, int], np.ndarray]


def _window_units(codec: SnacOnnx, window_seconds: float | None, total_units: int) -> int:
    seconds = check_seconds("window_seconds", window_seconds)
    if seconds is None:
        seconds = codec.max_chunk_seconds
        if seconds is None:
            return total_units
    units = budget_steps(seconds, codec.padding_unit, codec.sample_rate)
    assert units is not None
    return units


def iter_encode_windows(
    codec: SnacOnnx,
    read: Reader,
    total_samples: int,
    *,
    window_seconds: float | None = None,
    context_units: int | None = None,
) -> Iterator[tuple[list[np.ndarray], int]]:
    """Yield ``(codes, samples_done)`` window by window.

    Args:
        codec: the model.
        read: ``read(start, stop)`` returns mono PCM samples ``[start, stop)`` (float in
            [-1, 1] or int16/int32; fewer only at the end of the signal).
        total_samples: length of the signal.
        window_seconds: audio kept per window, one graph run each (rounded down to whole
            padding units, at least one); None: the codec's ``max_chunk_seconds``.
        context_units: overlap per side in padding units (default: the receptive field).

    The codes of all windows, concatenated per codebook, equal the one-shot codes.
    """
    if isinstance(total_samples, bool) or not isinstance(total_samples, (int, np.integer)):
        raise InvalidArgumentError(f"total_samples must be an int, got {total_samples!r}")
    if total_samples <= 0:
        raise InvalidAudioError("audio has no samples")
    config = codec.config
    unit = config.padding_unit
    if context_units is None:
        context = config.encoder_context
    elif isinstance(context_units, bool) or not isinstance(context_units, (int, np.integer)) or context_units < 0:
        raise InvalidArgumentError(f"context_units must be an int >= 0 or None, got {context_units!r}")
    else:
        context = int(context_units)
    total_units = math.ceil(total_samples / unit)
    window = _window_units(codec, window_seconds, total_units)
    for a, b, s, e in grid_chunks(0, total_units, window, context, context, complete=True):
        start, stop = s * unit, min(e * unit, total_samples)
        pcm = to_float_pcm(read(start, stop))
        if pcm.ndim != 1:
            raise InvalidAudioError(f"read() must return mono 1-D PCM, got shape {pcm.shape}")
        if pcm.shape[0] != stop - start:
            raise InvalidAudioError(
                f"read({start}, {stop}) returned {pcm.shape[0]} samples; expected {stop - start} "
                "(the file may be shorter than its header says)"
            )
        yield codec.encode_window(pad_to_multiple(pcm, unit), (a - s, b - s)), min(b * unit, total_samples)


def encode_reader(
    codec: SnacOnnx,
    read: Reader,
    total_samples: int,
    *,
    window_seconds: float | None = None,
    context_units: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Windowed encode of a signal read through ``read``; returns one-shot-equal codes per codebook.

    ``on_progress(samples_done)`` is called after each window.
    """
    parts = []
    for codes, done in iter_encode_windows(
        codec, read, total_samples, window_seconds=window_seconds, context_units=context_units
    ):
        parts.append(codes)
        if on_progress is not None:
            on_progress(done)
    return [np.concatenate([p[i] for p in parts]) for i in range(codec.num_codebooks)]


def encode_windowed(
    codec: SnacOnnx, audio: np.ndarray, *, window_seconds: float | None = None, context_units: int | None = None
) -> list[np.ndarray]:
    """Windowed encode of 1-D PCM held in memory; returns one-shot-equal codes."""
    pcm = to_float_pcm(audio)
    if pcm.ndim != 1:
        raise InvalidAudioError(f"windowed encoding takes 1-D audio, got shape {pcm.shape}")
    return encode_reader(
        codec, lambda a, b: pcm[a:b], pcm.shape[0], window_seconds=window_seconds, context_units=context_units
    )
