"""Encode long audio in fixed windows with overlap: memory flat in length, codes equal to one-shot.

Each window of ``window_units`` padding units is encoded with ``context_units``
of real audio on each side (zeros only where one-shot encoding has them too:
past the end, padded to the unit). Windows are aligned to the padding unit, so
the encoder's attention windows and the quantiser's pooling line up with a
one-shot encode. With the default context (the encoder's receptive field,
:func:`encoder_context_units`) the codes equal one-shot codes except where
float rounding flips a near-tie.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from .audio import to_float_pcm
from .errors import InvalidAudioError
from .manifest import ModelConfig

if TYPE_CHECKING:
    from .codec import SnacOnnx

__all__ = ["encoder_context_units", "iter_encode_windows", "encode_reader", "encode_windowed"]

# SNAC's encoder (snac/layers.py): a kernel-7 conv, blocks of three kernel-7 residual units
# (dilations 1, 3, 9) and a strided conv of kernel 2 * stride, optional attention, a kernel-7 conv.
_RESIDUAL_REACH = sum(3 * d for d in (1, 3, 9))
_CONV_REACH = 3

Reader = Callable[[int, int], np.ndarray]


def encoder_context_units(config: ModelConfig) -> int:
    """Padding units of context per side that cover the encoder's receptive field (an upper bound)."""
    before_attention = _CONV_REACH
    step = 1
    for stride in config.encoder_rates:
        before_attention += (_RESIDUAL_REACH + stride) * step
        step *= stride
    after = _CONV_REACH * config.hop_length
    unit = config.padding_unit
    if config.attn_window_size is None:
        return math.ceil((before_attention + after) / unit)
    # Windows are whole units: the last conv reaches into neighbouring windows, whose
    # attention reads their whole window, which reaches ``before_attention`` further.
    return math.ceil(after / unit) + math.ceil(before_attention / unit)


def iter_encode_windows(
    codec: "SnacOnnx",
    read: Reader,
    total_samples: int,
    *,
    window_seconds: float = 60.0,
    context_units: int | None = None,
) -> Iterator[tuple[list[np.ndarray], int]]:
    """Yield ``(codes, samples_done)`` window by window.

    Args:
        codec: the model.
        read: ``read(start, stop)`` returns mono PCM samples ``[start, stop)``
            (fewer only at the end of the signal).
        total_samples: length of the signal.
        window_seconds: audio encoded per window (rounded to whole padding units).
        context_units: overlap per side in padding units (default: receptive field).

    The codes of all windows, concatenated per codebook, equal the one-shot codes.
    """
    if total_samples <= 0:
        raise InvalidAudioError("audio has no samples")
    config = codec.config
    unit = config.padding_unit
    context = encoder_context_units(config) if context_units is None else int(context_units)
    window = max(1, int(window_seconds * config.sample_rate) // unit)
    total_units = math.ceil(total_samples / unit)
    frames_per_unit = [config.latent_multiple // s for s in config.vq_strides]
    for start in range(0, total_units, window):
        end = min(start + window, total_units)
        seg_start, seg_end = max(0, start - context), min(total_units, end + context)
        pcm = to_float_pcm(read(seg_start * unit, min(seg_end * unit, total_samples)))
        if pcm.ndim != 1:
            raise InvalidAudioError(f"read() must return mono 1-D PCM, got shape {pcm.shape}")
        codes = codec.encode(pcm)
        offset = start - seg_start
        yield (
            [c[offset * n : (offset + end - start) * n] for c, n in zip(codes, frames_per_unit)],
            min(end * unit, total_samples),
        )


def encode_reader(
    codec: "SnacOnnx",
    read: Reader,
    total_samples: int,
    *,
    window_seconds: float = 60.0,
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
    codec: "SnacOnnx", audio: np.ndarray, *, window_seconds: float = 60.0, context_units: int | None = None
) -> list[np.ndarray]:
    """Windowed encode of 1-D PCM held in memory; returns one-shot-equal codes."""
    pcm = to_float_pcm(audio)
    if pcm.ndim != 1:
        raise InvalidAudioError(f"windowed encoding takes 1-D audio, got shape {pcm.shape}")
    return encode_reader(
        codec, lambda a, b: pcm[a:b], pcm.shape[0], window_seconds=window_seconds, context_units=context_units
    )
