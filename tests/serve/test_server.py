"""snac-onnx serve's ASGI app: the WebSocket and HTTP protocol, exact audio, limits and faults (no torch)."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import wave

import numpy as np
import pytest

pytest.importorskip("fastapi")
from starlette.testclient import TestClient

from snac_onnx import PoolFullError, SnacOnnx
from snac_onnx.files.audio import pcm16
from snac_onnx.layouts import codes_to_tokens
from snac_onnx.serve import ServeSettings, create_app
from tests.support import HANG_GUARD_S, TINY_24, pcm

FRAMES = 10


@pytest.fixture(scope="module")
def codec():
    return SnacOnnx(TINY_24)


def _client(codec, **settings):
    return TestClient(create_app(ServeSettings(**settings), codec=codec))


def _codes(codec, frames=FRAMES, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 4096, n) for n in codec.config.code_lengths(frames)]


def _talk(ws, messages):
    """Send the messages, then read everything until the server closes: (start, audio bytes, end, close code)."""
    for m in messages:
        ws.send_text(m if isinstance(m, str) else json.dumps(m))
    return _drain(ws)


def _drain(ws):
    start, end, errors, audio = None, None, [], b""
    while True:
        msg = ws.receive()
        if msg["type"] == "websocket.close":
            return {"start": start, "audio": audio, "end": end, "errors": errors, "code": msg["code"]}
        if msg.get("bytes") is not None:
            audio += msg["bytes"]
            continue
        obj = json.loads(msg["text"])
        if obj["type"] == "start":
            start = obj
        elif obj["type"] == "end":
            end = obj
        else:
            errors.append(obj["message"])


def _s16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<i2").astype(np.int32)


def _assert_pcm16_equal(data: bytes, audio: np.ndarray) -> None:
    got, want = _s16(data), _s16(pcm16(audio))
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1  # float error can cross a rounding boundary


def test_websocket_orpheus_ids_frame_by_frame(codec):
    codes = _codes(codec)
    ids = codes_to_tokens(codes, codec.vq_strides, "orpheus").tolist()
    messages = [{"ids": [128257]}] + [{"ids": ids[i : i + 7]} for i in range(0, len(ids), 7)] + [{"end": True}]
    with _client(codec) as client, client.websocket_connect("/v1/stream?preset=orpheus") as ws:
        out = _talk(ws, messages)
    assert out["code"] == 1000 and not out["errors"]
    assert out["start"]["sample_rate"] == codec.sample_rate and out["start"]["format"] == "s16le"
    assert out["start"]["first_audio_frames"] == 3
    offline = codec.decode(codes, noise=False)
    assert out["end"]["samples"] == offline.size
    _assert_pcm16_equal(out["audio"], offline)


def test_websocket_text_codes_tokens_and_float_output(codec):
    codes = _codes(codec, seed=1)
    offline = codec.decode(codes, noise=False)
    ids = codes_to_tokens(codes, codec.vq_strides, "orpheus").tolist()
    text = "".join(f"<custom_token_{i - 128256}>" for i in ids)
    cases = {
        "preset=orpheus&format=f32le": [{"text": text[:100]}, {"text": text[100:] + "<custom_token_2>"}],  # 128258 ends
        "format=f32le": [{"codes": [c.tolist() for c in codes]}, {"end": True}],
        "layout=interleaved&format=f32le": [
            {"tokens": codes_to_tokens(codes, codec.vq_strides).tolist()},
            {"end": True},
        ],
    }
    with _client(codec) as client:
        for query, messages in cases.items():
            with client.websocket_connect(f"/v1/stream?{query}") as ws:
                out = _talk(ws, messages)
            assert out["code"] == 1000, (query, out["errors"])
            np.testing.assert_allclose(np.frombuffer(out["audio"], "<f4"), offline, atol=1e-4, rtol=0, err_msg=query)


def test_websocket_noise_seed_reproduces_offline(codec):
    codes = _codes(codec, seed=2)
    with _client(codec) as client, client.websocket_connect("/v1/stream?format=f32le&noise=true&seed=5") as ws:
        out = _talk(ws, [{"codes": [c.tolist() for c in codes]}, {"end": True}])
    assert out["start"]["seed"] == 5
    want = codec.decode(codes, noise=codec.stream_noise(FRAMES, 5))
    np.testing.assert_allclose(np.frombuffer(out["audio"], "<f4"), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("query", "message", "code", "match"),
    [
        ("preset=orpheus", "{not json", 1007, "not valid JSON"),
        ("preset=orpheus", {"tokens": [1, 2]}, 1007, "takes ids or text"),
        ("preset=orpheus", {"ids": [1, "x"]}, 1007, "ids.1: Input should be a valid integer"),
        ("preset=orpheus", {"ids": [1, True]}, 1007, "ids.1: Input should be a valid integer"),
        ("preset=orpheus", {"ids": [2**70]}, 1007, "ids.0: Input should be less than"),
        ("preset=orpheus", {"ids": [10**9]}, 1007, "above the orpheus audio range"),
        ("", {"tokens": [5000] * 7}, 1007, "out of range"),
        ("", {"codes": [[1]]}, 1007, "codebook"),
        ("", {"ids": [1], "end": True}, 1007, "one field"),
        ("", {"end": False}, 1007, "end: Input should be True"),
        ("", {"ids": [1], "tokens": [2]}, 1007, "one field"),
        ("preset=nope", {"ids": [1]}, 1008, "preset must be"),
        ("format=mp3", {"ids": [1]}, 1008, "query: format: Input should be"),
        ("format=wav", {"ids": [1]}, 1008, "format must be one of ['s16le', 'f32le']"),
        ("preset=orpheus&fromat=f32le", {"ids": [1]}, 1008, "fromat: Extra inputs are not permitted"),
        ("seed=3", {"ids": [1]}, 1008, "seed applies to noise"),
    ],
)
def test_websocket_refuses_bad_input_with_a_reason(codec, query, message, code, match):
    with _client(codec) as client:
        with client.websocket_connect(f"/v1/stream?{query}") as ws:
            out = _talk(ws, [message])
        assert out["code"] == code
        assert any(match in e for e in out["errors"]), out["errors"]
        metrics = client.get("/metrics").text
        assert client.get("/readyz").json()["streams_active"] == 0
    if code == 1007:
        assert 'snac_errors_total{kind="message"} 1.0' in metrics


def test_a_bad_client_does_not_disturb_others(codec):
    """A good stream, a client sending garbage and one that disconnects mid-stream, at once: the good one is exact."""
    codes = _codes(codec, 16, seed=3)
    ids = codes_to_tokens(codes, codec.vq_strides, "orpheus").tolist()
    results = {}
    with _client(codec, collect_ms=5) as client:

        def good():
            with client.websocket_connect("/v1/stream?preset=orpheus") as ws:
                for i in range(0, len(ids), 7):
                    ws.send_json({"ids": ids[i : i + 7]})
                    time.sleep(0.002)
                results["good"] = _talk(ws, [{"end": True}])

        def garbage():
            with client.websocket_connect("/v1/stream?preset=orpheus") as ws:
                ws.send_json({"ids": ids[:20]})
                results["garbage"] = _talk(ws, ["\x00garbage"])

        def leaver():
            with client.websocket_connect("/v1/stream?preset=orpheus") as ws:
                ws.send_json({"ids": ids[:40]})
                ws.receive_json()  # the start message
            # leaving the block closes the connection mid-stream

        threads = [threading.Thread(target=f) for f in (good, garbage, leaver)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=HANG_GUARD_S)
        deadline = time.monotonic() + HANG_GUARD_S
        while client.get("/readyz").json()["streams_active"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/readyz").json()["streams_active"] == 0  # the leaver's state was freed
        metrics = client.get("/metrics").text
    assert results["good"]["code"] == 1000
    _assert_pcm16_equal(results["good"]["audio"], codec.decode(codes, noise=False))
    assert results["garbage"]["code"] == 1007
    assert 'snac_streams_total{outcome="completed"} 1.0' in metrics
    assert 'snac_streams_total{outcome="failed"} 1.0' in metrics
    assert 'snac_streams_total{outcome="cancelled"} 1.0' in metrics


def test_limits_streams_message_size_idle(codec):
    with _client(codec, max_streams=1, max_message_bytes=200, idle_timeout_s=0.3) as client:
        with client.websocket_connect("/v1/stream") as first:
            first.receive_json()
            with client.websocket_connect("/v1/stream") as second:
                out = _drain(second)
            assert out["code"] == 1013 and "maximum of 1" in out["errors"][0]
            response = client.post("/v1/decode", json={"codes": [[1], [1, 2], [1, 2, 3, 4]]})
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            out = _drain(first)  # no message for 0.3 s
            assert out["code"] == 1008 and "idle timeout" in out["errors"][0]
        with client.websocket_connect("/v1/stream") as ws:
            out = _talk(ws, [{"tokens": [1] * 500}])
        assert out["code"] == 1009
        assert 'snac_streams_total{outcome="refused"} 2.0' in client.get("/metrics").text
    with _client(codec, max_stream_seconds=0.2) as client, client.websocket_connect("/v1/stream") as ws:
        out = _talk(ws, [{"codes": [c.tolist() for c in _codes(codec, 4)]}])  # 0.34 s of audio
    assert out["code"] == 1008 and "max_stream_seconds" in out["errors"][0]


def test_http_decode_whole_and_streamed(codec):
    codes = _codes(codec, seed=4)
    offline = codec.decode(codes, noise=False)
    ids = codes_to_tokens(codes, codec.vq_strides, "orpheus").tolist()
    with _client(codec) as client:
        response = client.post("/v1/decode", json={"codes": [c.tolist() for c in codes]})
        assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
        with wave.open(io.BytesIO(response.content)) as w:
            assert w.getframerate() == codec.sample_rate and w.getnchannels() == 1
            _assert_pcm16_equal(w.readframes(w.getnframes()), offline)
        response = client.post("/v1/decode?preset=orpheus&format=f32le", json={"ids": ids})
        np.testing.assert_allclose(np.frombuffer(response.content, "<f4"), offline, atol=1e-4, rtol=0)
        lines = "".join(json.dumps({"ids": ids[i : i + 7]}) + "\n" for i in range(0, len(ids), 7)) + '{"end": true}\n'
        response = client.post("/v1/decode/stream?preset=orpheus&format=f32le", content=lines.encode())
        assert response.status_code == 200 and response.headers["x-sample-rate"] == str(codec.sample_rate)
        np.testing.assert_allclose(np.frombuffer(response.content, "<f4"), offline, atol=1e-4, rtol=0)
        assert client.post("/v1/decode", json={"ids": [1]}).status_code == 400  # a layout stream takes codes/tokens
        assert client.post("/v1/decode", content=b"{").status_code == 400
        assert client.post("/v1/decode/stream", content=b'{"codes": 3}\n').status_code == 400
        bad = client.post("/v1/decode", json={"tokens": [5000] * 7})
        assert bad.status_code == 400 and "out of range" in bad.json()["error"]


def test_http_encode_upload(codec):
    import soundfile as sf

    audio = pcm(codec.sample_rate)
    buf = io.BytesIO()
    sf.write(buf, audio, codec.sample_rate, format="WAV", subtype="FLOAT")
    with _client(codec, max_body_bytes=1 << 20) as client:
        response = client.post("/v1/encode", content=buf.getvalue())
        assert response.status_code == 200, response.text
        got = response.json()
        want = codec.encode(audio)
        assert len(got["codes"]) == len(want)
        for c, w in zip(got["codes"], want):
            np.testing.assert_array_equal(c, w)
        tokens = client.post("/v1/encode?layout=orpheus", content=buf.getvalue()).json()["tokens"]
        assert tokens == codes_to_tokens(want, codec.vq_strides, "orpheus").tolist()
        other = io.BytesIO()
        sf.write(other, audio[::3], 8000, format="FLAC")
        refused = client.post("/v1/encode", content=other.getvalue())
        assert refused.status_code == 400 and "resample" in refused.json()["error"]
        assert client.post("/v1/encode?resample=true", content=other.getvalue()).status_code == 200
        assert client.post("/v1/encode", content=b"not audio").status_code == 400
        assert client.post("/v1/encode", content=b"").status_code == 400
        assert client.post("/v1/encode", content=b"x" * (2 << 20)).status_code == 413


def test_health_ready_metrics_info_and_draining(codec):
    app = create_app(ServeSettings(), codec=codec)
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").status_code == 200
        info = client.get("/v1/info").json()
        assert info["sample_rate"] == codec.sample_rate and info["vq_strides"] == list(codec.vq_strides)
        with client.websocket_connect("/v1/stream") as ws:
            _talk(ws, [{"codes": [c.tolist() for c in _codes(codec, 3)]}, {"end": True}])
        text = client.get("/metrics").text
        for name in (
            "snac_streams_active",
            "snac_batch_rows_count",
            "snac_step_seconds_bucket",
            "snac_queue_seconds_sum",
        ):
            assert name in text
        pool = app.state.service.pool
        assert pool.workers == len(os.sched_getaffinity(0))  # CPU defaults: a worker per core, no stacking
        assert pool.max_batch == 1
    service = app.state.service
    assert service.draining
    with pytest.raises(PoolFullError, match="shutting down"):
        service.open(None)
