"""Streaming decode equals offline decode (noise off, and with the stream's own noise), for both modes and
any push pattern; first audio at the decoder's physical minimum in stateful mode (no torch)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from snac_onnx import (
    InvalidArgumentError,
    InvalidCodesError,
    ModelFormatError,
    ModelNotFoundError,
    SnacOnnx,
    StreamDecoder,
)
from snac_onnx.config import decoder_context_frames as receptive_field_frames
from snac_onnx.layouts import codes_to_tokens, frame_size

FRAMES = 26  # not a multiple of the default chunk, so the last chunk is partial


def _codes(codec, frames: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = [rng.integers(0, 4096, n) for n in codec.config.code_lengths(frames)]
    codes[0][0] = 0
    return codes


def _run(stream: StreamDecoder, pieces) -> np.ndarray:
    out = [stream.push(p) for p in pieces]
    out.append(stream.flush())
    assert all(o.dtype == np.float32 and o.ndim == 1 for o in out)
    return np.concatenate(out)


def _patterns(codec, codes, seed=0):
    tokens = codes_to_tokens(codes, codec.vq_strides)
    step = frame_size(codec.vq_strides)
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, tokens.size), size=9, replace=False))
    per = [codec.vq_strides[0] // s for s in codec.vq_strides]
    return {
        "token by token": [tokens[i : i + 1] for i in range(tokens.size)],
        "frame by frame": [tokens[i : i + step] for i in range(0, tokens.size, step)],
        "random sizes": np.split(tokens, cuts),
        "codes, 3 frames at a time": [
            [c[f * p : (f + 3) * p] for c, p in zip(codes, per)] for f in range(0, len(codes[0]), 3)
        ],
        "all at once": [tokens],
    }


MODES = ["stateful", "window"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("model", ["tiny24", "tiny44"])
def test_stream_equals_offline_for_every_push_pattern(model, mode, request):
    codec = request.getfixturevalue(model)
    frames = FRAMES if model == "tiny24" else 28  # offline 44 kHz decode needs a multiple of 4
    codes = _codes(codec, frames)
    offline = codec.decode(codes, noise=False)
    for name, pieces in _patterns(codec, codes).items():
        stream = codec.stream(mode=mode)
        assert stream.mode == mode
        streamed = _run(stream, pieces)
        assert streamed.shape == offline.shape, name
        assert np.abs(streamed - offline).max() <= 1e-4, name


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("model", ["tiny24", "tiny44"])
def test_stream_with_noise_equals_offline_fed_the_same_noise(model, mode, request):
    codec = request.getfixturevalue(model)
    frames = 13 if model == "tiny24" else 16
    codes = _codes(codec, frames, seed=4)
    offline = codec.decode(codes, noise=codec.stream_noise(frames, 11))
    assert np.abs(offline - codec.decode(codes, noise=False)).max() > 1e-2  # the noise is there
    for name, pieces in _patterns(codec, codes, seed=2).items():
        streamed = _run(codec.stream(mode=mode, noise=True, seed=11), pieces)
        assert np.abs(streamed - offline).max() <= 1e-4, name


@pytest.mark.parametrize("model", ["tiny24", "tiny44"])
def test_every_length_is_exact_in_stateful_mode(model, request):
    """Lengths below, at and past the first audio, multiples of the step and not (44 kHz: step 4 frames)."""
    codec = request.getfixturevalue(model)
    multiple = codec.config.frames_multiple
    for frames in range(1, 12):
        codes = _codes(codec, frames, seed=frames)
        padded = frames + (-frames % multiple)  # offline 44 kHz takes whole windows: pad as the stream does
        per = codec.config.codes_per_frame
        full = [np.concatenate([c, np.tile(c[-p:], padded - frames)]) for c, p in zip(codes, per)]
        offline = codec.decode(full, noise=False)[: frames * codec.samples_per_frame]
        for name, pieces in _patterns(codec, codes, seed=frames).items() if frames > 1 else [("one", [codes])]:
            streamed = _run(codec.stream(mode="stateful"), pieces)
            assert streamed.shape == offline.shape, (frames, name)
            assert np.abs(streamed - offline).max() <= 1e-4, (frames, name)


@pytest.mark.parametrize(("model", "first"), [("tiny24", 3), ("tiny44", 5)])
def test_first_audio_at_the_physical_minimum(model, first, request):
    """24 kHz: the right reach is 4,757 samples (2.32 frames): the first exact audio needs 3 frames (21
    tokens). 32/44 kHz: attention windows (4 frames) aligned to frame 0; window 0 needs frame 4 (its
    last latent step plus the first convolution's 3): 5 frames. Then every step returns audio."""
    codec = request.getfixturevalue(model)
    stream = codec.stream()
    assert stream.mode == "stateful" and stream.first_audio_frames == first
    window = codec.stream(mode="window")
    assert window.first_audio_frames > first
    codes = _codes(codec, 24, seed=3)
    per = codec.config.codes_per_frame
    sizes = [stream.push([c[f * p : (f + 1) * p] for c, p in zip(codes, per)]).size for f in range(24)]
    assert sizes.index(next(s for s in sizes if s)) == first - 1
    step = codec.manifest.stream.step_frames
    assert all(s == step * codec.samples_per_frame for s in sizes[first - 1 + step :: step])
    # and no earlier: the first sample depends on frame first - 1 (offline, changing that frame changes it)
    changed = [c.copy() for c in codes]
    for c, p in zip(changed, per):
        c[(first - 1) * p : first * p] = (c[(first - 1) * p : first * p] + 777) % 4096
    before, after = codec.decode(codes, noise=False), codec.decode(changed, noise=False)
    assert abs(float(before[0]) - float(after[0])) > 0


def test_stateful_stream_needs_only_the_stream_graph():
    """The end is decoded by the stream graph too (told the length), so a streaming server loads one graph."""
    from tests.support import TINY_24

    codec = SnacOnnx(TINY_24)
    codes = _codes(codec, 9)
    _run(codec.stream(), [codes])
    assert list(codec.active_providers) == ["stream"]


def test_export_without_stream_graph_streams_in_window_mode(tiny24_copy):
    manifest = json.loads((tiny24_copy / "manifest.json").read_text())
    del manifest["files"]["stream"], manifest["graphs"]["stream"]
    (tiny24_copy / "manifest.json").write_text(json.dumps(manifest))
    (tiny24_copy / "stream.onnx").unlink()
    codec = SnacOnnx(tiny24_copy)
    codec.load()  # every graph the export has
    stream = codec.stream()
    assert stream.mode == "window"
    codes = _codes(codec, FRAMES)
    np.testing.assert_allclose(_run(stream, [codes]), codec.decode(codes, noise=False), atol=1e-4, rtol=0)
    with pytest.raises(ModelNotFoundError, match="no stream graph"):
        codec.stream(mode="stateful")


def test_tampered_stream_layout_is_refused(tiny24_copy):
    manifest = json.loads((tiny24_copy / "manifest.json").read_text())
    manifest["graphs"]["stream"]["step_frames"] = 0
    (tiny24_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="stream graph entry"):
        SnacOnnx(tiny24_copy)


@pytest.mark.parametrize("model", ["tiny24", "tiny44"])
def test_steps_per_call_trades_latency_for_cost_and_stays_exact(model, request):
    codec = request.getfixturevalue(model)
    codes = _codes(codec, 24, seed=6)
    offline = codec.decode(codes, noise=False)
    per = codec.config.codes_per_frame
    for k in (2, 3):
        stream = codec.stream(steps_per_call=k)
        assert stream.first_audio_frames >= codec.stream().first_audio_frames
        sizes = [stream.push([c[f * p : (f + 1) * p] for c, p in zip(codes, per)]).size for f in range(24)]
        assert sizes.index(next(s for s in sizes if s)) == stream.first_audio_frames - 1
        calls = [s for s in sizes if s]
        assert all(s == k * codec.manifest.stream.step_frames * codec.samples_per_frame for s in calls[1:])
        for pieces in _patterns(codec, codes, seed=k).values():
            stream = codec.stream(steps_per_call=k)
            assert np.abs(_run(stream, pieces) - offline).max() <= 1e-4


def test_stream_mode_errors(tiny24):
    with pytest.raises(InvalidArgumentError, match="steps_per_call must be"):
        tiny24.stream(steps_per_call=0)
    with pytest.raises(InvalidArgumentError, match="steps_per_call applies"):
        tiny24.stream(mode="window", steps_per_call=2)
    with pytest.raises(InvalidArgumentError, match="mode must be one of"):
        tiny24.stream(mode="fast")
    with pytest.raises(InvalidArgumentError, match="apply to mode='window'"):
        tiny24.stream(mode="stateful", chunk_frames=4)
    assert tiny24.stream(lookahead=1).mode == "window"
    with pytest.raises(InvalidArgumentError, match="non-negative int"):
        tiny24.stream_noise(3, None)


def test_chunks_arrive_once_lookahead_is_in(tiny24):
    stream = tiny24.stream(chunk_frames=4)
    assert (stream.left_context, stream.lookahead) == (3, 3)
    assert stream.lookahead_ms == pytest.approx(256.0)
    codes = _codes(tiny24, 8)
    per = [1, 2, 4]  # codes per frame
    sizes = []
    for f in range(8):
        sizes.append(stream.push([c[f * p : (f + 1) * p] for c, p in zip(codes, per)]).size)
    # chunk [0, 4) is final once frame 4 + 3 = 7 has arrived
    assert sizes == [0] * 6 + [4 * 2048, 0]
    assert stream.flush().size == 4 * 2048


def test_receptive_field_bound_covers_measured_reach(tiny24, tiny44):
    for codec in (tiny24, tiny44):
        frames, probe = 32, 16
        codes = _codes(codec, frames, seed=1)
        base = codec.decode(codes, noise=False)
        changed = [c.copy() for c in codes]
        for c, p in zip(changed, [codec.vq_strides[0] // s for s in codec.vq_strides]):
            c[probe * p : (probe + 1) * p] = (c[probe * p : (probe + 1) * p] + 1234) % 4096
        diff = np.nonzero(np.abs(codec.decode(changed, noise=False) - base) > 0)[0]
        spf = codec.samples_per_frame
        reach_left = probe - diff.min() / spf
        reach_right = (diff.max() + 1) / spf - (probe + 1)
        left, right = receptive_field_frames(codec.config)
        assert 0 < reach_left <= left and 0 < reach_right <= right, (reach_left, reach_right, left, right)
        # and the bound is tight to within one attention window (or one frame)
        assert left - reach_left < max(codec.config.frames_multiple, 1) + 1


def test_smaller_lookahead_is_not_exact(tiny24):
    codes = _codes(tiny24, FRAMES)
    offline = tiny24.decode(codes, noise=False)
    streamed = _run(tiny24.stream(left_context=1, lookahead=1), [codes])
    assert np.abs(streamed - offline).max() > 1e-4


@pytest.mark.parametrize("mode", MODES)
def test_seeded_noise_is_reproducible_and_independent_of_pushes(tiny24, mode):
    codes = _codes(tiny24, FRAMES)
    patterns = list(_patterns(tiny24, codes).values())
    first = _run(tiny24.stream(mode=mode, noise=True, seed=5), patterns[0])
    for pieces in patterns[1:]:
        np.testing.assert_allclose(_run(tiny24.stream(mode=mode, noise=True, seed=5), pieces), first, atol=1e-5)
    other = _run(tiny24.stream(mode=mode, noise=True, seed=6), patterns[1])
    quiet = _run(tiny24.stream(mode=mode), patterns[1])
    assert np.abs(first - other).max() > 1e-2 and np.abs(first - quiet).max() > 1e-2
    fresh = tiny24.stream(mode=mode, noise=True)  # no seed: a fresh one, kept so the audio can be reproduced
    again = _run(tiny24.stream(mode=mode, noise=True, seed=fresh.seed), patterns[1])
    np.testing.assert_allclose(_run(fresh, patterns[0]), again, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_attention_model_flush_pads_partial_window(tiny44, mode):
    codes = _codes(tiny44, 6)  # not a multiple of 4
    out = _run(tiny44.stream(mode=mode), [codes])
    assert out.shape == (6 * tiny44.samples_per_frame,) and np.isfinite(out).all()
    padded = [np.concatenate([c, np.tile(c[-p:], 2)]) for c, p in zip(codes, (1, 2, 4, 8))]
    np.testing.assert_allclose(out, tiny44.decode(padded, noise=False)[: out.size], atol=1e-4)


def test_stream_errors(tiny24, tiny44):
    with pytest.raises(ValueError, match="not a multiple of 4 frames"):
        tiny44.stream(chunk_frames=6)
    with pytest.raises(ValueError, match="codebook-major"):
        tiny24.stream(layout="codebook_major")
    with pytest.raises(ValueError, match="seed applies to noise"):
        tiny24.stream(seed=3)
    stream = tiny24.stream()
    with pytest.raises(InvalidCodesError, match="not whole frames"):
        stream.push_codes([np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(4, np.int64)])
    with pytest.raises(InvalidCodesError, match="values in"):
        stream.push_codes([np.full(1, 4096), np.zeros(2, np.int64), np.zeros(4, np.int64)])
    stream.push_tokens(np.arange(10))
    with pytest.raises(InvalidCodesError, match="3 token\\(s\\) of an incomplete frame"):
        stream.flush()
    done = tiny24.stream()
    done.push_tokens(np.zeros(7, np.int64))
    assert done.flush().size == 2048
    with pytest.raises(RuntimeError, match="flushed"):
        done.push_tokens(np.zeros(7, np.int64))


def test_streams_are_independent(tiny24):
    a, b = tiny24.stream(), tiny24.stream()
    codes_a, codes_b = _codes(tiny24, 10, seed=1), _codes(tiny24, 10, seed=2)
    out_a, out_b = [], []
    for f in range(10):
        out_a.append(a.push([c[f * p : (f + 1) * p] for c, p in zip(codes_a, (1, 2, 4))]))
        out_b.append(b.push([c[f * p : (f + 1) * p] for c, p in zip(codes_b, (1, 2, 4))]))
    out_a.append(a.flush())
    out_b.append(b.flush())
    np.testing.assert_allclose(np.concatenate(out_a), tiny24.decode(codes_a, noise=False), atol=1e-4)
    np.testing.assert_allclose(np.concatenate(out_b), tiny24.decode(codes_b, noise=False), atol=1e-4)
