"""Chunked concurrent encode/decode (parallel=N) equals the one-shot call (no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from snac_onnx import SnacOnnx
from snac_onnx.parallel import split_ranges
from snac_onnx.streaming import receptive_field_frames
from snac_onnx.windowed import encoder_context_units
from tests.conftest import TINY_24, TINY_44, pcm


def test_split_ranges():
    assert split_ranges(100, 2, 1, 10) == [(0, 50), (50, 100)]
    assert split_ranges(100, 3, 4, 10) == [(0, 32), (32, 68), (68, 100)]
    assert split_ranges(15, 4, 1, 10) == [(0, 15)]  # too short to split
    assert split_ranges(7, 2, 1, 1) == [(0, 4), (4, 7)]
    for total, parts, multiple in [(1000, 7, 4), (37, 3, 1), (64, 2, 4)]:
        ranges = split_ranges(total, parts, multiple, 1)
        assert ranges[0][0] == 0 and ranges[-1][1] == total
        assert all(a % multiple == 0 and a < b for a, b in ranges)
        assert all(r1[1] == r2[0] for r1, r2 in zip(ranges, ranges[1:]))


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


def test_split_ranges_respects_max_size():
    assert split_ranges(100, 1, 1, 10, max_size=30) == [(0, 25), (25, 50), (50, 75), (75, 100)]
    assert split_ranges(100, 1, 1, 40, max_size=10) == [(0, 50), (50, 100)]  # min size wins
    assert split_ranges(100, 1, 1, 10, max_size=None) == [(0, 100)]


def test_parallel_argument():
    with pytest.raises(ValueError, match="parallel must be an int >= 1"):
        SnacOnnx(TINY_24, parallel=0)
    with pytest.raises(ValueError, match="max_chunk_seconds must be > 0"):
        SnacOnnx(TINY_24, max_chunk_seconds=0)
    short = SnacOnnx(TINY_24, parallel=4)
    codes = short.encode(pcm(3000))  # too short to split: one run
    assert short.decode(codes, length=3000, noise=False).shape == (3000,)
