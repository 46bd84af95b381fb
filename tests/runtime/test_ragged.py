"""Lists of items of different lengths: each result equals the item's own call, exactly (no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from snac_onnx import InvalidArgumentError, InvalidAudioError, InvalidCodesError, SnacOnnx
from snac_onnx.layouts import tokens_to_codes
from snac_onnx.planner import batch_runs, plan_runs
from tests.support import TINY_24, TINY_44, pcm

LENGTHS = [1, 2047, 2048, 5000, 30_001, 70_000, 123_457]


@pytest.mark.parametrize("folder", [TINY_24, TINY_44])
@pytest.mark.parametrize("max_chunk_seconds", [None, 0.5, 5.0])
def test_encode_list_equals_each_item_alone(folder, max_chunk_seconds):
    codec = SnacOnnx(folder, max_chunk_seconds=max_chunk_seconds)
    items = [pcm(n, seed=n) for n in LENGTHS]
    together = codec.encode(items)
    assert isinstance(together, list) and len(together) == len(items)
    for item, codes in zip(items, together, strict=True):
        alone = codec.encode(item)
        assert [c.shape for c in codes] == [c.shape for c in alone]
        for a, b in zip(codes, alone, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("folder", [TINY_24, TINY_44])
def test_decode_list_equals_each_item_alone(folder):
    codec = SnacOnnx(folder, max_chunk_seconds=0.5)
    items = [pcm(n, seed=n) for n in LENGTHS]
    codes = codec.encode(items)
    audio = codec.decode(codes, lengths=LENGTHS, noise=False)
    assert isinstance(audio, list) and [a.shape for a in audio] == [(n,) for n in LENGTHS]
    for c, n, a in zip(codes, LENGTHS, audio, strict=True):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, codec.decode(c, length=n, noise=False))


def test_seeded_noise_of_an_item_does_not_depend_on_the_others(tiny24):
    items = [pcm(n, seed=n) for n in LENGTHS]
    codes = tiny24.encode(items)
    full = tiny24.decode(codes, seed=3)
    # item i draws from default_rng([seed, i]): other items' lengths and count do not change it
    other_first = tiny24.decode([codes[-1]] + codes[1:], seed=3)
    np.testing.assert_array_equal(full[1], other_first[1])
    np.testing.assert_array_equal(full[3], tiny24.decode(codes[:4], seed=3)[3])
    assert not np.array_equal(full[3], tiny24.decode(codes, seed=4)[3])
    assert not np.array_equal(full[3], tiny24.decode(codes, noise=False)[3])
    # explicit per-item noise equals the generated noise it stands for
    rng = np.random.default_rng([3, 1])
    frames = len(codes[1][0])
    noise_1 = [rng.standard_normal(s[-1], dtype=np.float32)[None, None] for s in tiny24.noise_shapes(1, frames)]
    given = [[np.zeros(s, np.float32) for s in tiny24.noise_shapes(1, len(c[0]))] for c in codes]
    given[1] = noise_1
    np.testing.assert_array_equal(tiny24.decode(codes, noise=given)[1], full[1])


def test_equal_length_batches_are_chunked_in_the_batch_dimension():
    # a batch of 64 short items under a budget of about 4 padding units per run: runs of 4 items
    runs = plan_runs([1] * 64, parts=1, multiple=1, left=3, right=3, max_size=4)
    batches = batch_runs(runs, 4 + 6)
    assert [len(b) for b in batches] == [10] * 6 + [4]  # 7 batches at most 10 each: 10 per batch
    assert [len(b) for b in batch_runs(runs[:8], 5)] == [4, 4]  # 5 fit, 8 runs: two even batches
    assert all(len({r.length for r in b}) == 1 for b in batches)
    assert sorted(r.item for b in batches for r in b) == list(range(64))
    # one batch when unbounded
    assert len(batch_runs(runs, None)) == 1


def test_large_batch_runs_in_bounded_pieces_with_equal_results():
    bounded = SnacOnnx(TINY_24, max_chunk_seconds=0.2)
    unbounded = SnacOnnx(TINY_24, max_chunk_seconds=None)
    audio = pcm(3000, seed=1, batch=40)
    calls = []
    session = bounded.session("encoder")
    original = session.run

    def spy(names, feeds):
        calls.append(feeds["audio"].shape)
        return original(names, feeds)

    session.run = spy  # type: ignore[method-assign]
    try:
        codes = bounded.encode(audio)
    finally:
        session.run = original  # type: ignore[method-assign]
    assert max(shape[0] * shape[-1] for shape in calls) <= 0.2 * 24000 + 2 * 3 * 2048 + 2048
    assert len(calls) > 1
    for a, b in zip(codes, unbounded.encode(audio), strict=True):
        np.testing.assert_array_equal(a, b)


def test_list_forms_are_checked(tiny24):
    with pytest.raises(InvalidAudioError, match=r"audio\[1\] has shape \(2, 5\)"):
        tiny24.encode([np.zeros(5, np.float32), np.zeros((2, 5), np.float32)])
    with pytest.raises(InvalidAudioError, match=r"audio\[0\] has no samples"):
        tiny24.encode([np.zeros(0, np.float32)])
    codes = tiny24.encode([pcm(100), pcm(5000)])
    with pytest.raises(InvalidCodesError, match=r"codes\[1\]\[0\] holds values"):
        tiny24.decode([codes[0], [codes[1][0] + 4096, codes[1][1], codes[1][2]]])
    with pytest.raises(InvalidArgumentError, match="lengths must be a list of 2"):
        tiny24.decode(codes, lengths=[5])
    with pytest.raises(InvalidArgumentError, match="lengths="):
        tiny24.decode(codes, length=5)
    with pytest.raises(InvalidArgumentError, match="lengths= is for a list"):
        tiny24.decode(codes[0], lengths=[5])
    with pytest.raises(InvalidCodesError, match=r"lengths\[1\] must be an int in \[1, 6144\]"):
        tiny24.decode(codes, lengths=[5, 7000], noise=False)


@pytest.mark.parametrize("shape", [(88200, 2), (200, 2), (48000, 6), (9, 8)])
def test_channels_last_audio_is_refused(tiny24, shape):
    with pytest.raises(InvalidAudioError, match=r"almost certainly \(samples, channels\).*mean\(axis=1\)"):
        tiny24.encode(np.zeros(shape, np.float32))


def test_small_real_batches_are_not_mistaken_for_channels(tiny24):
    assert [c.shape for c in tiny24.encode(pcm(8, batch=8))] == [(8, 1), (8, 2), (8, 4)]
    assert [c.shape for c in tiny24.encode(pcm(9, batch=3))] == [(3, 1), (3, 2), (3, 4)]


def test_codes_pushed_while_a_tokens_frame_is_pending_are_refused(tiny24):
    stream = tiny24.stream()
    tokens = np.arange(7) * 3  # one interleaved frame
    frame = [np.zeros(1, np.int64), np.full(2, 5, np.int64), np.full(4, 9, np.int64)]
    pieces = [stream.push_tokens(tokens[:3])]  # 3 of a 7-token frame
    with pytest.raises(InvalidCodesError, match="never reorders"):
        stream.push_codes(frame)
    pieces.append(stream.push_tokens(tokens[3:]))  # the rest of the frame: codes may follow now
    pieces.append(stream.push_codes(frame))
    pieces.append(stream.flush())
    first = tokens_to_codes(tokens, tiny24.vq_strides, 4096)
    offline = tiny24.decode([np.concatenate([a, b]) for a, b in zip(first, frame)], noise=False)
    np.testing.assert_allclose(np.concatenate(pieces), offline, atol=1e-4)
