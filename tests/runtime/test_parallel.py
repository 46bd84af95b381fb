"""Chunked concurrent encode/decode (parallel=N) equals the one-shot call (no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from snac_onnx import SnacOnnx
from snac_onnx.config import decoder_context_frames as receptive_field_frames
from snac_onnx.config import encoder_context_units
from snac_onnx.planner import Chunk, chunk_spans
from tests.support import TINY_24, TINY_44, pcm


def _check_spans(chunks: list[Chunk], total: int, multiple: int, left: int, right: int) -> None:
    assert chunks[0].a == 0 and chunks[-1].b == total
    assert all(c1.b == c2.a for c1, c2 in zip(chunks, chunks[1:]))  # noqa: RUF007
    assert len({c.e - c.s for c in chunks}) == 1  # one run shape per call: the arena re-uses its buffers
    for c in chunks:
        assert c.a < c.b and c.a % multiple == 0 and c.s % multiple == 0
        assert 0 <= c.s <= max(0, c.a - left) and min(total, c.b + right) <= c.e <= total  # full context


def test_chunk_spans():
    assert chunk_spans(100, 2, 1, 5, 5) == [Chunk(0, 50, 0, 55), Chunk(50, 100, 45, 100)]
    # 10 s at 24 kHz in 5 s chunks: the end chunks keep 3 frames more, every run is 43 frames
    assert chunk_spans(117, 1, 1, 3, 3, 58) == [Chunk(0, 40, 0, 43), Chunk(40, 77, 37, 80), Chunk(77, 117, 74, 117)]
    assert chunk_spans(15, 4, 1, 1, 1) == [Chunk(0, 15, 0, 15)]  # too short to split
    assert chunk_spans(100, 1, 1, 3, 3, max_size=None) == [Chunk(0, 100, 0, 100)]
    assert len(chunk_spans(100, 1, 1, 5, 5, max_size=10)) == 2  # chunks never below 4x their context
    rng = np.random.default_rng(0)
    for _ in range(3000):
        multiple = int(rng.choice([1, 4]))
        left, right, parts = (int(v) for v in (*rng.integers(0, 10, 2), rng.integers(1, 6)))
        total = max(multiple, int(rng.integers(1, 3000)) // multiple * multiple)
        max_size = None if rng.random() < 0.3 else int(rng.integers(1, 500))
        chunks = chunk_spans(total, parts, multiple, left, right, max_size)
        _check_spans(chunks, total, multiple, left, right)
        context = sum(-(-c // multiple) * multiple for c in (left, right))
        wanted = parts if max_size is None else max(parts, -(-total // max_size))
        assert len(chunks) <= max(1, min(wanted, total // max(1, 4 * context)))


@pytest.mark.parametrize("folder", [TINY_24, TINY_44])
@pytest.mark.parametrize("parts", [2, 3])
def test_parallel_equals_one_shot(folder, parts):
    one = SnacOnnx(folder)
    par = SnacOnnx(folder, threads=1, parallel=parts)
    config = one.config
    # long enough for `parts` chunks of at least four times their context
    frames = 4 * 2 * sum(receptive_field_frames(config)) * parts
    units = max(frames * one.samples_per_frame // one.padding_unit, 8 * encoder_context_units(config) * parts)
    audio = pcm(units * one.padding_unit - 777, seed=parts, batch=2)
    codes_one, codes_par = one.encode(audio), par.encode(audio)
    for a, b in zip(codes_one, codes_par):
        np.testing.assert_array_equal(a, b)
    n = codes_one[0].shape[1] // config.frames_multiple * config.frames_multiple
    codes = [c[:, : n * config.vq_strides[0] // s] for c, s in zip(codes_one, config.vq_strides)]
    for kwargs in ({"noise": False}, {"seed": 4}):
        np.testing.assert_allclose(par.decode(codes, **kwargs), one.decode(codes, **kwargs), atol=1e-5, rtol=0)


@pytest.mark.parametrize("folder", [TINY_24, TINY_44])
def test_memory_bounded_chunks_equal_one_shot(folder):
    one = SnacOnnx(folder, max_chunk_seconds=None)
    small = SnacOnnx(folder, max_chunk_seconds=0.5)  # chunks as small as four times their context
    audio = pcm(30 * one.padding_unit + 5, seed=9)
    codes = one.encode(audio)
    for a, b in zip(codes, small.encode(audio)):
        np.testing.assert_array_equal(a, b)
    n = codes[0].shape[0] // one.config.frames_multiple * one.config.frames_multiple
    codes = [c[: n * one.vq_strides[0] // s] for c, s in zip(codes, one.vq_strides)]
    np.testing.assert_allclose(small.decode(codes, seed=1), one.decode(codes, seed=1), atol=1e-5, rtol=0)


def test_parallel_argument():
    with pytest.raises(ValueError, match="parallel must be an int >= 1"):
        SnacOnnx(TINY_24, parallel=0)
    with pytest.raises(ValueError, match="max_chunk_seconds must be > 0"):
        SnacOnnx(TINY_24, max_chunk_seconds=0)
    short = SnacOnnx(TINY_24, parallel=4)
    codes = short.encode(pcm(3000))  # too short to split: one run
    assert short.decode(codes, length=3000, noise=False).shape == (3000,)
