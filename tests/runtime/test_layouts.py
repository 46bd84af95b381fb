"""Flat token layouts: exact round trips, the Orpheus order, offsets, and errors (no torch)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snac_onnx import CODEBOOK_MAJOR, INTERLEAVED, ORPHEUS, InvalidCodesError, TokenLayout
from snac_onnx.layouts import codes_to_tokens, frame_pattern, frame_size, tokens_to_codes
from tests.support import pcm

STRIDES = [(4, 2, 1), (8, 4, 2, 1)]


def test_frame_patterns_and_sizes():
    assert frame_pattern((4, 2, 1)) == [0, 1, 2, 2, 1, 2, 2]
    assert frame_pattern((8, 4, 2, 1)) == [0, 1, 2, 3, 3, 2, 3, 3, 1, 2, 3, 3, 2, 3, 3]
    assert frame_size((4, 2, 1)) == 7 and frame_size((8, 4, 2, 1)) == 15


def test_orpheus_frame_order():
    rng = np.random.default_rng(0)
    frames = 5
    c0, c1, c2 = (rng.integers(0, 4096, frames * n) for n in (1, 2, 4))
    tokens = codes_to_tokens([c0, c1, c2], (4, 2, 1), ORPHEUS)
    for t in range(frames):
        expected = [c0[t], c1[2 * t], c2[4 * t], c2[4 * t + 1], c1[2 * t + 1], c2[4 * t + 2], c2[4 * t + 3]]
        expected = [128266 + k * 4096 + int(code) for k, code in enumerate(expected)]
        assert tokens[7 * t : 7 * t + 7].tolist() == expected


def test_codebook_major_is_concatenation():
    codes = [np.array([1, 2]), np.array([3, 4, 5, 6]), np.arange(8)]
    assert codes_to_tokens(codes, (4, 2, 1), CODEBOOK_MAJOR).tolist() == [1, 2, 3, 4, 5, 6] + list(range(8))
    assert codes_to_tokens(codes, (4, 2, 1), "codebook_major").tolist() == [1, 2, 3, 4, 5, 6] + list(range(8))


layouts = st.sampled_from(
    [INTERLEAVED, CODEBOOK_MAJOR, ORPHEUS, TokenLayout("codebook_major", offset=10, position_stride=5000)]
)


@settings(max_examples=200, deadline=None)
@given(
    strides=st.sampled_from(STRIDES),
    frames=st.integers(1, 12),
    batch=st.one_of(st.none(), st.integers(1, 3)),
    layout=layouts,
    seed=st.integers(0, 2**31),
)
def test_round_trip_is_exact(strides, frames, batch, layout, seed):
    rng = np.random.default_rng(seed)
    shape = (lambda n: (n,)) if batch is None else (lambda n: (batch, n))
    codes = [rng.integers(0, 4096, shape(frames * strides[0] // s)) for s in strides]
    codes[0].flat[0] = 0  # code 0 is valid
    codes[-1].flat[-1] = 4095
    tokens = codes_to_tokens(codes, strides, layout)
    assert tokens.shape == shape(frames * frame_size(strides)) and tokens.dtype == np.int64
    back = tokens_to_codes(tokens, strides, 4096, layout)
    assert len(back) == len(codes)
    for a, b in zip(codes, back):
        np.testing.assert_array_equal(a, b)


def test_token_count_not_whole_frames():
    with pytest.raises(InvalidCodesError, match="15 tokens is not a positive multiple of the frame size 7.*1 token"):
        tokens_to_codes(np.zeros(15, np.int64), (4, 2, 1), 4096)
    with pytest.raises(InvalidCodesError, match="0 tokens"):
        tokens_to_codes(np.zeros(0, np.int64), (4, 2, 1), 4096)
    with pytest.raises(InvalidCodesError, match="frame size 15"):
        tokens_to_codes(np.zeros(14, np.int64), (8, 4, 2, 1), 4096)


def test_out_of_range_ids():
    ok = codes_to_tokens([np.zeros(1, np.int64), np.zeros(2, np.int64), np.zeros(4, np.int64)], (4, 2, 1), ORPHEUS)
    assert ok[0] == 128266  # code 0 at position 0
    bad = ok.copy()
    bad[1] = 128266  # position 1 takes [132362, 136458)
    with pytest.raises(InvalidCodesError, match=r"token 128266 at index 1 is out of range: position 1.*\[132362, 136458\)"):
        tokens_to_codes(bad, (4, 2, 1), 4096, ORPHEUS)
    with pytest.raises(InvalidCodesError, match="out of range"):
        tokens_to_codes(np.full(7, 4096), (4, 2, 1), 4096)
    with pytest.raises(InvalidCodesError, match="out of range"):
        tokens_to_codes(np.full(7, -1), (4, 2, 1), 4096)
    with pytest.raises(InvalidCodesError, match="integers"):
        tokens_to_codes(np.zeros(7, np.float32), (4, 2, 1), 4096)


def test_bad_codes_for_tokens():
    with pytest.raises(InvalidCodesError, match="do not fit vq_strides"):
        codes_to_tokens([np.zeros(1, np.int64), np.zeros(3, np.int64), np.zeros(4, np.int64)], (4, 2, 1))
    with pytest.raises(ValueError, match="layout must be"):
        codes_to_tokens([np.zeros(1, np.int64)] * 3, (4, 2, 1), "snake_case")


def test_codec_token_methods(tiny24, tiny44):
    for codec in (tiny24, tiny44):
        audio = pcm(30000)
        codes = codec.encode(audio)
        for layout in ("interleaved", "codebook_major", ORPHEUS) if codec is tiny24 else ("interleaved",):
            tokens = codec.encode_tokens(audio, layout=layout)
            np.testing.assert_array_equal(tokens, codes_to_tokens(codes, codec.vq_strides, layout))
            np.testing.assert_array_equal(
                codec.decode_tokens(tokens, layout=layout, length=30000, noise=False),
                codec.decode(codes, length=30000, noise=False),
            )
