"""StreamPool: many streams batched in one graph call, each stream's audio exactly what it gets alone (no torch)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time

import numpy as np
import pytest

from snac_onnx import (
    PRESETS,
    DecodeFailedError,
    InvalidArgumentError,
    InvalidCodesError,
    ModelNotFoundError,
    PoolFullError,
    SnacOnnx,
    StreamClosedError,
    StreamPool,
)
from snac_onnx.layouts import codes_to_tokens, frame_size
from snac_onnx.stream.batching import FIRST_AUDIO_GRACE_S, deadline
from snac_onnx.stream.orpheus import CUSTOM_TOKEN_BASE
from tests.support import HANG_GUARD_S, TINY_24


def _codes(codec, frames: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 4095, n) for n in codec.config.code_lengths(frames)]


def _pieces(codec, codes, seed: int) -> list[np.ndarray]:
    """Tokens cut at random places (some cuts inside a frame)."""
    tokens = codes_to_tokens(codes, codec.vq_strides)
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, tokens.size), size=min(6, tokens.size - 1), replace=False))
    return np.split(tokens, cuts)


def _read_all(stream) -> np.ndarray:
    chunks = list(stream)
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


@pytest.mark.parametrize(("model", "workers"), [("tiny24", 1), ("tiny44", 1), ("tiny24", 3)])
def test_concurrent_streams_equal_offline(model, workers, request):
    """Eight streams of different lengths, pushed from eight threads in random pieces, batched together."""
    codec: SnacOnnx = request.getfixturevalue(model)
    records = []
    with StreamPool(codec, collect_ms=5, workers=workers, on_batch=records.append) as pool:
        m = codec.config.frames_multiple  # offline decode takes whole attention windows
        lengths = [m * n for n in (1, 2, 3, 5, 8, 12, 17, 24)] if m == 1 else [m * n for n in (1, 1, 2, 2, 3, 3, 4, 5)]
        expected, outputs = {}, {}

        def client(i: int) -> None:
            codes = _codes(codec, lengths[i], seed=i)
            expected[i] = codec.decode(codes, noise=False)
            stream = pool.open()
            for piece in _pieces(codec, codes, seed=i):
                stream.push(piece)
                time.sleep(0.001)
            stream.end()
            outputs[i] = _read_all(stream)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(lengths))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=HANG_GUARD_S)
        for i in range(len(lengths)):
            assert outputs[i].shape == expected[i].shape, i
            np.testing.assert_allclose(outputs[i], expected[i], atol=1e-4, rtol=0, err_msg=str(i))
        stats = pool.stats()
    assert stats.streams_active == 0 and stats.streams_opened == len(lengths)
    assert stats.max_rows > 1, "no step was batched across streams"
    assert sum(r.rows for r in records) == stats.rows and all(len(r.queue_seconds) == r.rows for r in records)


def test_ready_streams_share_one_call(tiny24):
    """Four streams made ready inside the collection window run as one batch of four."""
    records = []
    with StreamPool(tiny24, collect_ms=1000, on_batch=records.append) as pool:
        streams = [pool.open() for _ in range(4)]
        codes = [_codes(tiny24, 2, seed=i) for i in range(4)]
        for s, c in zip(streams, codes):
            s.push(c)  # 2 frames: 2 steps ready, the worker waits for the others
        for s in streams:
            s.end()
        outs = [_read_all(s) for s in streams]
    assert records[0].rows == 4
    for out, c in zip(outs, codes):
        np.testing.assert_allclose(out, tiny24.decode(c, noise=False), atol=1e-4, rtol=0)


def test_batching_off_runs_one_stream_per_call(tiny24):
    records = []
    with StreamPool(tiny24, batching=False, collect_ms=50, on_batch=records.append) as pool:
        assert pool.max_batch == 1
        streams = [pool.open() for _ in range(3)]
        codes = [_codes(tiny24, 4, seed=i) for i in range(3)]
        for s, c in zip(streams, codes):
            s.push(c)
            s.end()
        outs = [_read_all(s) for s in streams]
    assert records and all(r.rows == 1 for r in records)
    for out, c in zip(outs, codes):
        np.testing.assert_allclose(out, tiny24.decode(c, noise=False), atol=1e-4, rtol=0)


def test_max_batch_defaults_to_the_memory_budget(tiny24):
    from snac_onnx.stream.pool import DEFAULT_MAX_BATCH

    assert StreamPool(tiny24).max_batch == DEFAULT_MAX_BATCH  # below 5 s of one-frame steps (58)
    small = SnacOnnx(TINY_24, max_chunk_seconds=0.5)  # 5 frames of audio per call
    assert StreamPool(small).max_batch == int(0.5 * small.sample_rate) // small.samples_per_frame
    assert StreamPool(tiny24, max_batch=3).max_batch == 3


def test_a_call_never_runs_more_than_max_batch_steps(tiny24):
    """A lone burst (all at once) runs max_batch steps per call, so a call's memory stays that of a full batch;
    beside another live stream it runs one step per call, so it never holds the worker while others wait."""
    records = []
    with StreamPool(tiny24, max_batch=4, on_batch=records.append) as pool:
        stream = pool.open()
        codes = _codes(tiny24, 30, seed=8)
        stream.push(codes)
        stream.end()
        out = _read_all(stream)
        assert max(r.rows * r.frames for r in records) == 4
        np.testing.assert_allclose(out, tiny24.decode(codes, noise=False), atol=1e-4, rtol=0)
        records.clear()
        waiting = pool.open()  # live, nothing pushed yet
        burst = pool.open()
        burst.push(codes)
        burst.end()
        out = _read_all(burst)
        waiting.cancel()
    assert records and max(r.frames for r in records) == 1
    np.testing.assert_allclose(out, tiny24.decode(codes, noise=False), atol=1e-4, rtol=0)


def test_noise_and_presets_per_stream(tiny24):
    """Streams with different inputs and noise in one pool: each equals its own reference."""
    with StreamPool(tiny24, collect_ms=20) as pool:
        codes = _codes(tiny24, 9, seed=3)
        noisy = pool.open(noise=True, seed=11)
        orpheus = pool.open(preset="orpheus")
        text = pool.open(preset="orpheus")
        plain = pool.open()
        noisy.push(codes)
        noisy.end()
        ids = codes_to_tokens(codes, tiny24.vq_strides, "orpheus")
        orpheus.push([128257, *ids.tolist()[:10]])  # start of speech, then audio ids
        orpheus.push([*ids.tolist()[10:], 128258])  # end of speech ends the stream
        text.push("".join(f"<custom_token_{i - CUSTOM_TOKEN_BASE}>" for i in ids.tolist())[:-5])  # a tag cut short
        text.push("".join(f"<custom_token_{i - CUSTOM_TOKEN_BASE}>" for i in ids.tolist())[-5:])
        text.end()
        plain.push(codes)
        plain.end()
        outs = [_read_all(s) for s in (noisy, orpheus, text, plain)]
    offline = tiny24.decode(codes, noise=False)
    with_noise = tiny24.decode(codes, noise=tiny24.stream_noise(9, 11))
    np.testing.assert_allclose(outs[0], with_noise, atol=1e-4, rtol=0)
    assert np.abs(outs[0] - offline).max() > 1e-3  # the noise is really on
    for out in outs[1:]:
        np.testing.assert_allclose(out, offline, atol=1e-4, rtol=0)


def test_a_presets_output_trim_is_applied_to_pooled_audio(tiny24):
    trimmed = dataclasses.replace(PRESETS["orpheus"], name="trimmed", trim_samples=2048)
    codes = _codes(tiny24, 6, seed=4)
    ids = codes_to_tokens(codes, tiny24.vq_strides, "orpheus")
    alone = tiny24.preset_stream(trimmed)
    want = np.concatenate([alone.push(ids.tolist()), alone.flush()])
    with StreamPool(tiny24) as pool:
        stream = pool.open(preset=trimmed)
        stream.push(ids.tolist())
        stream.end()
        got = _read_all(stream)
    assert got.size == want.size == 6 * tiny24.samples_per_frame - 2048
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_bad_input_fails_the_push_and_leaves_the_stream_intact(tiny24):
    with StreamPool(tiny24) as pool:
        stream = pool.open()
        codes = _codes(tiny24, 5, seed=5)
        tokens = codes_to_tokens(codes, tiny24.vq_strides)
        stream.push(tokens[:3])
        with pytest.raises(InvalidCodesError):
            stream.push([1, 2, 99999])
        with pytest.raises(InvalidCodesError):
            stream.push(np.array([0.5, 1.5]))
        stream.push(tokens[3:])
        stream.end()
        np.testing.assert_allclose(_read_all(stream), tiny24.decode(codes, noise=False), atol=1e-4, rtol=0)
        with pytest.raises(StreamClosedError):
            stream.push(tokens[:7])
        incomplete = pool.open()
        incomplete.push(tokens[:3])
        with pytest.raises(InvalidCodesError, match="incomplete frame"):
            incomplete.end()
        incomplete.cancel()


def test_a_failing_step_fails_its_stream_only(tiny24, monkeypatch):
    """The batched call fails for any batch holding the bad stream's codes: the batch is retried row by row."""
    import snac_onnx.stream.pool as pool_module

    real_run_steps = pool_module.run_steps

    def run_steps(rows, **options):
        if any((step.codes[0] == 4095).any() for _, step in rows):
            raise RuntimeError("simulated onnxruntime failure")
        return real_run_steps(rows, **options)

    monkeypatch.setattr(pool_module, "run_steps", run_steps)
    with StreamPool(tiny24, collect_ms=50) as pool:
        good = [pool.open() for _ in range(3)]
        bad = pool.open()
        codes = [_codes(tiny24, 6, seed=i) for i in range(3)]
        bad_codes = _codes(tiny24, 6, seed=9)
        bad_codes[0][:] = 4095
        for s, c in zip([*good, bad], [*codes, bad_codes]):
            s.push(c)
            s.end()
        outs = [_read_all(s) for s in good]
        with pytest.raises(DecodeFailedError, match="simulated"):
            _read_all(bad)
        assert pool.stats().streams_failed == 1
    for out, c in zip(outs, codes):
        np.testing.assert_allclose(out, tiny24.decode(c, noise=False), atol=1e-4, rtol=0)


def test_limits_cancel_and_close(tiny24):
    pool = StreamPool(tiny24, max_streams=2, max_stream_seconds=0.5)
    a, b = pool.open(), pool.open()
    with pytest.raises(PoolFullError, match="maximum of 2"):
        pool.open()
    a.push(_codes(tiny24, 3, seed=1))
    a.cancel()  # frees its place and its state
    assert list(a) == []
    assert pool.streams_active == 1
    c = pool.open()
    frames = int(0.5 * tiny24.sample_rate) // tiny24.samples_per_frame
    with pytest.raises(InvalidArgumentError, match="max_stream_seconds"):
        c.push(_codes(tiny24, frames + 1, seed=2))
    with pytest.raises(InvalidArgumentError, match="longer than"):
        _read_all(c)
    b.push(_codes(tiny24, 2, seed=3))  # never ended: close() cancels it
    pool.close(timeout=0.2)
    with pytest.raises(StreamClosedError, match="closed before"):
        _read_all(b)
    with pytest.raises(PoolFullError, match="closing"):
        pool.open()
    assert pool.stats().streams_refused == 2


def test_close_lets_live_streams_finish(tiny24):
    pool = StreamPool(tiny24)
    stream = pool.open()
    codes = _codes(tiny24, 7, seed=6)
    stream.push(codes)
    stream.end()
    pool.close(timeout=HANG_GUARD_S)
    np.testing.assert_allclose(_read_all(stream), tiny24.decode(codes, noise=False), atol=1e-4, rtol=0)


def test_async_face(tiny44):
    async def main() -> list[tuple[np.ndarray, np.ndarray]]:
        pool = StreamPool(tiny44, collect_ms=5)

        async def client(i: int) -> tuple[np.ndarray, np.ndarray]:
            codes = _codes(tiny44, 4 * (1 + i), seed=20 + i)
            stream = pool.open_async()
            tokens = codes_to_tokens(codes, tiny44.vq_strides)
            step = frame_size(tiny44.vq_strides)
            chunks = []

            async def reader() -> None:
                async for chunk in stream:
                    chunks.append(chunk)

            task = asyncio.create_task(reader())
            for k in range(0, tokens.size, step):
                stream.push(tokens[k : k + step])
                await asyncio.sleep(0)
            stream.end()
            await task
            return np.concatenate(chunks), tiny44.decode(codes, noise=False)

        try:
            return await asyncio.gather(*(client(i) for i in range(4)))
        finally:
            pool.close()

    for got, want in asyncio.run(main()):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_pool_needs_the_stream_graph(tiny24_copy):
    manifest = json.loads((tiny24_copy / "manifest.json").read_text())
    del manifest["files"]["stream"], manifest["graphs"]["stream"]
    (tiny24_copy / "manifest.json").write_text(json.dumps(manifest))
    (tiny24_copy / "stream.onnx").unlink()
    with pytest.raises(ModelNotFoundError, match="re-export"):
        StreamPool(SnacOnnx(tiny24_copy))


@pytest.mark.parametrize(
    "kwargs", [{"max_streams": 0}, {"max_batch": 0}, {"batching": 1}, {"collect_ms": -1}, {"max_stream_seconds": "x"}]
)
def test_pool_argument_errors(tiny24, kwargs):
    with pytest.raises(InvalidArgumentError):
        StreamPool(tiny24, **kwargs)


def test_batch_size_follows_the_measured_cost_of_calls(tiny24):
    """Stacking is chosen only where it pays: CPU-like costs (linear in rows) keep calls small and spread them over
    the idle workers; GPU-like costs (flat) stack every ready stream; a size never measured is tried."""
    policy = StreamPool(tiny24, workers=2, max_batch=16).policy
    policy.costs = {1: 0.010, 2: 0.020, 4: 0.045, 8: 0.095}
    assert policy.rows(8) == 1  # 8 calls of 1 or 4 of 2 on 2 workers: 40 ms; 1 of 8: 95 ms (no gain: no stacking)
    # one worker is in a call: rows for the other alone
    assert policy.rows(8, busy=1) == 1  # 8 calls of 1 or 4 of 2: 80 ms; 2 of 4: 90 ms; 1 of 8: 95 ms
    policy.costs = {1: 0.010, 2: 0.012, 4: 0.030, 8: 0.070}
    assert policy.rows(8, busy=1) == 2  # 4 calls of 2: 48 ms, against 80 ms one at a time
    gpu = StreamPool(tiny24, max_batch=16).policy  # one worker
    gpu.costs = {1: 0.010, 2: 0.0101, 4: 0.0102, 8: 0.0105, 16: 0.011}
    assert gpu.rows(16) == 16
    policy.costs = {1: 0.010}
    assert policy.rows(5) == 4  # 2 and 4 not measured yet: assumed no dearer than 1, so tried (4 and 1 on two workers)
    assert StreamPool(tiny24, batching=False).policy.rows(9) == 1


def test_an_internal_error_fails_its_streams_and_the_workers_go_on(tiny24, monkeypatch):
    with StreamPool(tiny24, workers=2) as pool:
        bad = pool.open()
        monkeypatch.setattr(bad.decoder, "finish_step", lambda *a: 1 / 0)
        bad.push(_codes(tiny24, 3, seed=1))
        with pytest.raises(DecodeFailedError, match="internal error"):
            _read_all(bad)
        for seed in range(4):  # both workers still serve
            good = pool.open()
            codes = _codes(tiny24, 3, seed=seed)
            good.push(codes)
            good.end()
            np.testing.assert_allclose(_read_all(good), tiny24.decode(codes, noise=False), atol=1e-4, rtol=0)
        assert all(w.is_alive() for w in pool._workers)


def test_a_stream_nobody_reads_decodes_only_its_buffer_ahead_and_holds_its_place(tiny24):
    """Backpressure: 30 frames pushed at once, nothing read. The pool decodes about max_buffer_seconds (plus at
    most one call) and then runs nothing for that stream; the stream keeps its place in max_streams until its
    audio is read to the end, and the audio read late is exact."""
    records = []
    spf = tiny24.samples_per_frame
    with StreamPool(
        tiny24, max_streams=1, max_buffer_seconds=4 * spf / tiny24.sample_rate, max_batch=2, on_batch=records.append
    ) as pool:
        stream = pool.open()
        codes = _codes(tiny24, 30, seed=12)
        stream.push(codes)
        stream.end()
        time.sleep(0.5)
        decoded = sum(r.audio_seconds for r in records) * tiny24.sample_rate
        assert 4 * spf <= decoded <= 6 * spf, decoded / spf  # 4 frames of buffer, plus at most one call of 2
        calls = len(records)
        time.sleep(0.3)
        assert len(records) == calls, "a stream with a full buffer was stepped"
        with pytest.raises(PoolFullError):
            pool.open()  # its place is held while its audio waits
        out = _read_all(stream)
        np.testing.assert_allclose(out, tiny24.decode(codes, noise=False), atol=1e-4, rtol=0)
        assert pool.streams_active == 0
        pool.open().cancel()  # read to its end: the place is free


def test_the_place_is_held_until_the_end_is_read_or_the_stream_cancelled(tiny24):
    with StreamPool(tiny24, max_streams=1) as pool:
        stream = pool.open()
        stream.push(_codes(tiny24, 2, seed=1))
        stream.end()
        deadline = time.monotonic() + 30
        while not stream.closed and time.monotonic() < deadline:  # decoding over, audio unread
            time.sleep(0.01)
        assert stream.closed and pool.streams_active == 1
        with pytest.raises(PoolFullError):
            pool.open()
        stream.cancel()
        assert pool.streams_active == 0
        pool.open().cancel()


def test_an_end_of_speech_id_ends_the_input(tiny24):
    codes = _codes(tiny24, 3, seed=2)
    ids = codes_to_tokens(codes, tiny24.vq_strides, "orpheus").tolist()
    with StreamPool(tiny24) as pool:
        stream = pool.open(preset="orpheus")
        assert stream.push(ids) is False and not stream.input_ended
        assert stream.push([128258, 128266]) is True and stream.input_ended  # ids after the end are ignored
        stream.end()  # does nothing after an end-of-speech id
        np.testing.assert_allclose(_read_all(stream), tiny24.decode(codes, noise=False), atol=1e-4, rtol=0)


def test_a_held_stream_keeps_its_place_and_renews_for_the_next_utterance(tiny24):
    """hold=True: reading the end does not free the place; cancel() does. renew() starts a new utterance in the
    same place (a fresh decoder, the same preset), exact like the first."""
    first, second = _codes(tiny24, 3, seed=31), _codes(tiny24, 4, seed=32)
    with StreamPool(tiny24, max_streams=1) as pool:
        stream = pool.open(preset="orpheus", hold=True)
        with pytest.raises(StreamClosedError, match="read to its end"):
            stream.renew()
        stream.push(codes_to_tokens(first, tiny24.vq_strides, "orpheus").tolist())
        stream.end()
        assert stream.total_samples == 3 * tiny24.samples_per_frame
        np.testing.assert_allclose(_read_all(stream), tiny24.decode(first, noise=False), atol=1e-4, rtol=0)
        assert pool.streams_active == 1
        with pytest.raises(PoolFullError):
            pool.open()
        stream.renew()
        stream.push(codes_to_tokens(second, tiny24.vq_strides, "orpheus").tolist() + [128258])
        np.testing.assert_allclose(_read_all(stream), tiny24.decode(second, noise=False), atol=1e-4, rtol=0)
        stream.cancel()
        assert pool.streams_active == 0
        with pytest.raises(StreamClosedError):
            stream.renew()


def test_the_deadline_counts_unread_audio_as_lead_and_gives_first_audio_a_grace():
    """A stream's deadline is when its listener runs out of audio; audio waiting unread in its buffer postpones it,
    so a client that pushed everything and reads nothing yields to one streaming and reading in real time. A new
    stream's first steps are due FIRST_AUDIO_GRACE_S after they became ready, so a burst of new streams does not
    starve the streams already playing."""
    now = 100.0
    assert deadline(90.0, 10.5, 89.0, 0.0, now) == 100.5  # a reader that took everything: its audio runs out then
    assert deadline(90.0, 10.5, 89.0, 3.0, now) == 103.0  # 3 s unread: it cannot run out before now + 3
    assert deadline(90.0, 12.0, 89.0, 1.0, now) == 102.0  # far ahead already: the audio handed out decides
    real_time = deadline(95.0, 5.2, 94.0, 0.0, now)
    assert real_time < deadline(90.0, 10.5, 89.0, 3.0, now)
    # before its first audio: when its first step was ready, plus the grace for streams already playing
    assert deadline(None, 0.0, 99.0, 0.0, now) == 99.0 + FIRST_AUDIO_GRACE_S
    # a burst of new streams yields to a stream already playing that runs out within the grace, not to one further
    new = deadline(None, 0.0, now, 0.0, now)
    assert deadline(now - 1.0, 1.0 + FIRST_AUDIO_GRACE_S / 2, now - 1.1, 0.0, now) < new
    assert deadline(now - 1.0, 1.0 + FIRST_AUDIO_GRACE_S * 2, now - 1.1, 0.0, now) > new

