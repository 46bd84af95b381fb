"""Split one long encode/decode into time chunks with exact context; run them concurrently.

Two reasons to split: speed (``parallel`` chunks run at once) and memory (no
chunk longer than ``max_chunk``, so peak memory is bounded however long the
input; one-shot decoding of 60 s at 24 kHz peaks at 976 MB, in 5 s chunks at 209 MB).

Without the fused Snake kernel onnxruntime gained little from a second intra-op
thread on this codec (about 1.36x on 2 cores; its ``Sin`` is single-threaded),
and independent runs scaled better; with the kernel, one run with 2 threads is
the faster choice on 2 cores, and chunking matters mostly for memory and cache
(see ``SnacOnnx(max_chunk_seconds=...)``). A
chunk ``[a, b)`` is run with the receptive field of context on each side
(:func:`~snac_onnx.streaming.receptive_field_frames` for the decoder,
:func:`~snac_onnx.windowed.encoder_context_units` for the encoder) and only
its own part of the output is kept, so the result equals the one-shot call up
to float rounding (measured: identical audio; codes equal). Chunks smaller
than four times their context are not split further.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator, NamedTuple, TypeVar

import numpy as np

from .manifest import ModelConfig
from .streaming import receptive_field_frames
from .windowed import encoder_context_units

__all__ = ["Chunk", "chunk_spans", "encode_in_chunks", "decode_in_chunks"]

RunFn = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
T = TypeVar("T")
R = TypeVar("R")
MapFn = Callable[[Callable[[T], R], Iterable[T]], Iterator[R]]


class Chunk(NamedTuple):
    """One chunk of a split call: it keeps steps ``[a, b)`` of the output and runs steps ``[s, e)``."""

    a: int
    b: int
    s: int
    e: int


def chunk_spans(
    total: int, parts: int, multiple: int, left: int, right: int, max_size: int | None = None
) -> list[Chunk]:
    """Split ``[0, total)`` into chunks that each run with ``left``/``right`` steps of context.

    At least ``parts`` chunks, more if needed to keep each run within about
    ``max_size`` steps of output; never so many that a chunk keeps fewer than
    four times its context. Boundaries fall on ``multiple``.

    Every run of one call has the same length ``e - s``: the chunks at the two
    ends keep more output (they need context on one side only), and a run that
    would still be shorter takes extra context. onnxruntime's arena then
    re-uses one set of buffers for all chunks instead of growing a new region
    for a run a few steps longer than the one before (measured at 24 kHz: 51 MB
    more peak memory from one chunk 3 frames longer than the first). Extra
    context never changes the result.
    """
    left, right = _round_up(left, multiple), _round_up(right, multiple)
    context = left + right
    wanted = parts if max_size is None else max(parts, math.ceil(total / max(1, max_size)))
    count = max(1, min(wanted, total // max(1, 4 * context)))
    if count == 1:
        return [Chunk(0, total, 0, total)]
    # every run's length: an even share of the output plus the context all but one chunk repeat
    run = _round_up(-(-(total + (count - 1) * context) // count), multiple)
    cuts, cut = [0], run - right  # the first chunk needs no left context
    while cut < total:
        cuts.append(cut)
        if total - cut <= run - left:  # the rest fits one run with its left context
            break
        cut += run - context
    cuts.append(total)
    chunks = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        s = max(0, min(a - left, total - run))
        chunks.append(Chunk(a, b, s, min(total, s + run)))
    return chunks


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def encode_in_chunks(
    run: RunFn,
    audio: np.ndarray,
    config: ModelConfig,
    parts: int,
    mapper: MapFn,
    input_name: str,
    max_seconds: float | None = None,
) -> list[np.ndarray]:
    """Encoder outputs for padded ``audio`` (B, 1, units * padding_unit), computed chunk by chunk.

    ``mapper`` is ``map`` (one chunk at a time) or an executor's ``map`` (concurrent).
    """
    unit = config.padding_unit
    units = audio.shape[-1] // unit
    context = encoder_context_units(config)
    frames_per_unit = [config.latent_multiple // s for s in config.vq_strides]
    max_units = None if max_seconds is None else max(1, int(max_seconds * config.sample_rate) // unit)
    chunks = chunk_spans(units, parts, 1, context, context, max_units)
    if len(chunks) == 1:
        return run({input_name: audio})

    def one(chunk: Chunk) -> list[np.ndarray]:
        a, b, s, e = chunk
        codes = run({input_name: np.ascontiguousarray(audio[..., s * unit : e * unit])})
        return [c[:, (a - s) * n : (b - s) * n] for c, n in zip(codes, frames_per_unit)]

    pieces = list(mapper(one, chunks))
    return [np.concatenate([p[i] for p in pieces], axis=1) for i in range(config.num_codebooks)]


def decode_in_chunks(
    run: RunFn,
    codes: dict[str, np.ndarray],
    noise: dict[str, np.ndarray],
    config: ModelConfig,
    parts: int,
    mapper: MapFn,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Decoder output (B, 1, samples) for ``codes`` and ``noise`` feeds, computed chunk by chunk."""
    per_code = [config.vq_strides[0] // s for s in config.vq_strides]
    per_noise = config.noise_lengths(1)
    frames = next(iter(codes.values())).shape[1] // per_code[0]
    left, right = receptive_field_frames(config)
    samples_per_frame = config.hop_length * config.vq_strides[0]
    max_frames = None if max_seconds is None else max(1, int(max_seconds * config.sample_rate) // samples_per_frame)
    chunks = chunk_spans(frames, parts, config.frames_multiple, left, right, max_frames)
    if len(chunks) == 1:
        return run({**codes, **noise})[0]

    def one(chunk: Chunk) -> np.ndarray:
        a, b, s, e = chunk
        feeds = {name: np.ascontiguousarray(arr[:, s * n : e * n]) for (name, arr), n in zip(codes.items(), per_code)}
        feeds.update(
            {name: np.ascontiguousarray(arr[..., s * n : e * n]) for (name, arr), n in zip(noise.items(), per_noise)}
        )
        audio = run(feeds)[0]
        return audio[..., (a - s) * samples_per_frame : (b - s) * samples_per_frame]

    return np.concatenate(list(mapper(one, chunks)), axis=-1)
