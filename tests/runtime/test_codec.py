"""SnacOnnx encode/decode: shapes, padding, batching, noise control, lazy sessions (no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from snac_onnx import SnacOnnx
from tests.support import TINY_24, TINY_44, pcm


def test_properties_come_from_the_manifest(tiny24, tiny44):
    assert (tiny24.sample_rate, tiny24.hop_length, tiny24.vq_strides) == (24000, 512, (4, 2, 1))
    assert (tiny24.codebook_size, tiny24.num_codebooks, tiny24.padding_unit) == (4096, 3, 2048)
    assert (tiny44.sample_rate, tiny44.hop_length, tiny44.vq_strides) == (44100, 384, (8, 4, 2, 1))
    assert (tiny44.num_codebooks, tiny44.padding_unit, tiny44.samples_per_frame) == (4, 12288, 3072)


@pytest.mark.parametrize("length,frames", [(1, 1), (2048, 1), (2049, 2), (24000, 12)])
def test_encode_1d_shapes_follow_padding(tiny24, length, frames):
    codes = tiny24.encode(pcm(length))
    assert [c.shape for c in codes] == [(frames,), (2 * frames,), (4 * frames,)]
    assert all(c.dtype == np.int64 for c in codes)
    assert all(((c >= 0) & (c < 4096)).all() for c in codes)


def test_encode_accepts_all_three_layouts_with_equal_codes(tiny24):
    audio = pcm(5000, batch=3)
    two_d = tiny24.encode(audio)
    three_d = tiny24.encode(audio[:, None, :])
    singles = [tiny24.encode(row) for row in audio]
    assert [c.shape for c in two_d] == [(3, 3), (3, 6), (3, 12)]
    for i in range(3):
        np.testing.assert_array_equal(two_d[i], three_d[i])
        np.testing.assert_array_equal(two_d[i], np.stack([s[i] for s in singles]))


def test_padding_matches_explicit_zero_padding(tiny24):
    audio = pcm(3000)
    padded = np.concatenate([audio, np.zeros(4096 - 3000, np.float32)])
    for a, b in zip(tiny24.encode(audio), tiny24.encode(padded)):
        np.testing.assert_array_equal(a, b)


def test_int16_is_scaled_like_float(tiny24):
    audio = pcm(4096)
    as_int = np.round(audio * 32767).astype(np.int16)
    for a, b in zip(tiny24.encode(as_int), tiny24.encode(as_int.astype(np.float32) / 32768.0)):
        np.testing.assert_array_equal(a, b)


def test_float64_and_readonly_noncontiguous_input(tiny24):
    audio = pcm(8192, batch=2)
    expected = tiny24.encode(audio)
    strided = np.asfortranarray(audio.astype(np.float64))
    strided.setflags(write=False)
    for a, b in zip(tiny24.encode(strided), expected):
        np.testing.assert_array_equal(a, b)


def test_decode_length_and_shape(tiny24):
    audio = pcm(5000)
    codes = tiny24.encode(audio, sample_rate=24000)
    full = tiny24.decode(codes, noise=False)
    trimmed = tiny24.decode(codes, length=5000, noise=False)
    assert full.shape == (3 * 2048,) and full.dtype == np.float32
    assert trimmed.shape == (5000,)
    np.testing.assert_array_equal(trimmed, full[:5000])
    assert np.isfinite(full).all() and np.abs(full).max() <= 1.0


def test_decode_batched_equals_single(tiny24):
    codes = tiny24.encode(pcm(4096, batch=2))
    batched = tiny24.decode(codes, noise=False)
    assert batched.shape == (2, 4096)
    for i in range(2):
        single = tiny24.decode([c[i] for c in codes], noise=False)
        np.testing.assert_allclose(batched[i], single, atol=1e-6)


def test_noise_modes(tiny24):
    codes = tiny24.encode(pcm(8192))
    off_a = tiny24.decode(codes, noise=False)
    off_b = tiny24.decode(codes, noise=False)
    np.testing.assert_array_equal(off_a, off_b)
    seeded_a = tiny24.decode(codes, seed=7)
    seeded_b = tiny24.decode(codes, noise=True, seed=7)
    other = tiny24.decode(codes, seed=8)
    np.testing.assert_array_equal(seeded_a, seeded_b)
    assert not np.array_equal(seeded_a, other)
    assert not np.array_equal(seeded_a, off_a)
    zeros = [np.zeros(s, np.float32) for s in tiny24.noise_shapes(1, 4)]
    np.testing.assert_array_equal(tiny24.decode(codes, noise=zeros), off_a)


def test_explicit_noise_matches_seeded_noise(tiny24):
    codes = tiny24.encode(pcm(8192))
    rng = np.random.default_rng(3)
    noise = [rng.standard_normal(s, dtype=np.float32) for s in tiny24.noise_shapes(1, 4)]
    np.testing.assert_array_equal(tiny24.decode(codes, noise=noise), tiny24.decode(codes, seed=3))


def test_attention_model_round_trip_shapes(tiny44):
    audio = pcm(20000, batch=2)
    codes = tiny44.encode(audio)
    assert [c.shape for c in codes] == [(2, 8), (2, 16), (2, 32), (2, 64)]
    out = tiny44.decode(codes, length=20000, noise=False)
    assert out.shape == (2, 20000) and np.isfinite(out).all()


def test_sessions_are_lazy_and_separate():
    codec = SnacOnnx(TINY_44)
    assert codec.active_providers == {}
    codes = [np.zeros((1, 4 * 8 // s), np.int64) for s in (8, 4, 2, 1)]
    codec.decode(codes, noise=False)
    assert list(codec.active_providers) == ["decoder"]
    codec.encode(pcm(100))
    assert sorted(codec.active_providers) == ["decoder", "encoder"]
    assert codec.active_providers["decoder"] == ["CPUExecutionProvider"]


def test_threads_argument_reaches_the_session():
    codec = SnacOnnx(TINY_24, threads=1)
    codec.encode(pcm(100))
    assert codec.session("encoder").get_session_options().intra_op_num_threads == 1
