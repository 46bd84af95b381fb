"""What a TTS operator must be able to trust, seen as a client sees it (a real uvicorn process on loopback where
timing and sockets matter): no audio lost after an end-of-speech id, backpressure for a client that does not read,
admission before any work, and a one-line reason for every refusal (no torch)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("websockets")
from starlette.testclient import TestClient

from snac_onnx import SnacOnnx
from snac_onnx.layouts import codes_to_tokens
from snac_onnx.serve import ServeSettings, create_app
from tests.serve.support import free_port, metric, start_server
from tests.support import HANG_GUARD_S, REPO, TINY_24

END_OF_SPEECH = 128258  # Orpheus's end of speech (snac_onnx.stream.presets)


@pytest.fixture(scope="module")
def codec():
    return SnacOnnx(TINY_24)


def _utterance(codec, seconds: float, seed: int = 0) -> tuple[list[int], np.ndarray]:
    """Orpheus ids of ``seconds`` of random codes, and their offline decode (noise off)."""
    frames = round(seconds * codec.sample_rate / codec.samples_per_frame)
    rng = np.random.default_rng(seed)
    codes = [rng.integers(0, 4096, n) for n in codec.config.code_lengths(frames)]
    return codes_to_tokens(codes, codec.vq_strides, "orpheus").tolist(), codec.decode(codes, noise=False)


def _metric(port: int, name: str) -> float:
    value = metric(port, name)
    assert value == value, f"{name} not in /metrics"
    return value


def _settled_metric(port: int, name: str, want: float, wait: float = HANG_GUARD_S) -> float:
    """The metric once it reads ``want`` (the server counts a stream's end just after the client sees its close),
    or its value after ``wait`` s."""
    end = time.monotonic() + wait
    while (value := _metric(port, name)) != want and time.monotonic() < end:
        time.sleep(0.05)
    return value


def _slow_socket(port: int) -> socket.socket:
    """A connected socket with small kernel buffers: a client that does not read is felt at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect(("127.0.0.1", port))
    return sock


async def _read_all(ws) -> tuple[bytes, list[dict], int | None, str]:
    import websockets

    audio, texts = b"", []
    try:
        async for m in ws:
            if isinstance(m, bytes):
                audio += m
            else:
                texts.append(json.loads(m))
    except websockets.ConnectionClosed:
        pass
    return audio, texts, ws.close_code, ws.close_reason


def test_an_utterance_ended_by_the_end_of_speech_id_is_never_cut_by_the_idle_timeout(codec):
    """60 s of ids in 7 messages, then the end-of-speech id; the client reads only after 3 idle-timeouts. The
    stream has ended: the idle timeout no longer applies, and every sample arrives (1000, counted completed)."""
    import websockets

    ids, offline = _utterance(codec, 60.0)
    port = free_port()
    proc = start_server(TINY_24, port, "--idle-timeout", "2", "--max-buffer-seconds", "2")
    try:

        async def client() -> tuple[bytes, list[dict], int | None, str]:
            url = f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus&format=f32le"
            async with websockets.connect(url, max_size=None, max_queue=1, sock=_slow_socket(port)) as ws:
                step = -(-len(ids) // 7)
                for i in range(0, len(ids), step):
                    await ws.send(json.dumps({"ids": ids[i : i + step]}))
                await ws.send(json.dumps({"ids": [END_OF_SPEECH]}))
                await asyncio.sleep(5.0)  # silent and not reading, well past the idle timeout
                return await _read_all(ws)

        audio, texts, code, reason = asyncio.run(asyncio.wait_for(client(), HANG_GUARD_S))
        assert code == 1000, (code, reason, texts)
        got = np.frombuffer(audio, "<f4")
        assert got.size == offline.size, f"{offline.size - got.size} samples lost"
        np.testing.assert_allclose(got, offline, atol=1e-4, rtol=0)
        assert texts[-1]["type"] == "end" and texts[-1]["samples"] == offline.size
        assert _settled_metric(port, 'snac_streams_total{outcome="completed"}', 1.0) == 1.0
        assert _metric(port, 'snac_streams_total{outcome="cancelled"}') == 0.0
    finally:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD_S)


def _stable_metric(port: int, name: str, wait: float = HANG_GUARD_S) -> float:
    """The metric once it has stopped moving (two reads 0.5 s apart agree), or its value after ``wait`` s."""
    end, last = time.monotonic() + wait, _metric(port, name)
    while time.monotonic() < end:
        time.sleep(0.5)
        now = _metric(port, name)
        if now == last:
            return now
        last = now
    return last


def test_a_client_that_does_not_read_is_bounded_holds_its_slot_and_is_closed(codec):
    """--max-streams 1: a client pushes 60 s and never reads. The pool decodes only about its buffer ahead (its
    steps then wait, costing nothing); its connection keeps its slot (a second stream is refused, and the gauge
    agrees with the pool) until the read timeout closes it with 1008 and a reason, queued behind the audio it has
    not read; then the slot is free."""
    import websockets

    ids, _ = _utterance(codec, 60.0)
    port = free_port()
    proc = start_server(
        TINY_24, port, "--max-streams", "1", "--max-buffer-seconds", "2", "--read-timeout", "8", "--idle-timeout", "60"
    )
    try:

        async def scenario() -> dict[str, object]:
            url = f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus&format=f32le"
            out: dict[str, object] = {}
            ws = await websockets.connect(url, max_size=None, max_queue=1, sock=_slow_socket(port))
            connected = time.monotonic()
            await ws.send(json.dumps({"ids": ids}))
            await ws.send(json.dumps({"end": True}))
            loop = asyncio.get_running_loop()
            out["decoded"] = await loop.run_in_executor(None, _stable_metric, port, "snac_decoded_audio_seconds_total")
            out["active"] = _metric(port, "snac_streams_active")
            async with websockets.connect(url) as second:
                out["second"] = (await _read_all(second))[2:]
            # past the read timeout (8 s), well before the drop that follows it (8 s more)
            await asyncio.sleep(max(0.0, connected + 11.0 - time.monotonic()))
            out["decoded_later"] = _metric(port, "snac_decoded_audio_seconds_total")
            audio, _, code, reason = await _read_all(ws)  # reads now: what is left in the socket, then the close
            out["first"] = (code, reason, len(audio) / 4 / codec.sample_rate)
            await loop.run_in_executor(None, _settled_metric, port, "snac_streams_active", 0.0)
            async with websockets.connect(url) as third:  # the slot is free again
                await third.send(json.dumps({"ids": ids[:70]}))
                await third.send(json.dumps({"end": True}))
                out["third"] = (await _read_all(third))[2]
            return out

        out = asyncio.run(asyncio.wait_for(scenario(), HANG_GUARD_S))
        assert out["decoded"] < 10.0, f"{out['decoded']} s of 60 s decoded for a client that reads nothing"
        assert out["decoded_later"] == out["decoded"], "the stream was stepped while its buffer was full"
        assert out["active"] == 1.0
        assert out["second"][0] == 1013, out["second"]
        code, reason, read = out["first"]
        assert code == 1008 and "read timeout" in reason, out["first"]
        assert read <= out["decoded"] + 1e-6, out["first"]  # what it got was what had been decoded, then the close
        assert out["third"] == 1000
        assert _settled_metric(port, 'snac_streams_total{outcome="completed"}', 1.0) == 1.0  # the third
        assert _metric(port, 'snac_streams_total{outcome="failed"}') == 1.0
        assert _metric(port, "snac_streams_active") == 0.0
        assert _metric(port, 'snac_errors_total{kind="read_timeout"}') == 1.0
    finally:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD_S)


def test_a_short_utterance_nobody_reads_still_holds_its_place(codec):
    """The whole audio fits in the buffers and is sent; the connection keeps its place until the client has read
    it and answered the close (or is dropped after the read timeout), not merely until the audio is written."""
    import websockets

    ids, _ = _utterance(codec, 1.0)
    port = free_port()
    proc = start_server(TINY_24, port, "--max-streams", "1", "--read-timeout", "6")
    try:

        async def scenario() -> tuple[object, object, object]:
            url = f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus&format=f32le"
            ws = await websockets.connect(url, max_size=None, max_queue=1, sock=_slow_socket(port))
            await ws.send(json.dumps({"ids": ids}))
            await ws.send(json.dumps({"end": True}))
            await asyncio.sleep(2.0)  # all of it decoded and written: the server waits for the client's close
            async with websockets.connect(url) as second:
                refused = (await _read_all(second))[2]
            first = (await _read_all(ws))[2]  # now it reads: the audio, the end, the close
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, _settled_metric, port, "snac_streams_active", 0.0)
            async with websockets.connect(url) as third:
                await third.send(json.dumps({"end": True}))
                after = (await _read_all(third))[2]
            return refused, first, after

        refused, first, after = asyncio.run(asyncio.wait_for(scenario(), HANG_GUARD_S))
        assert refused == 1013
        assert first == 1000
        assert after == 1000
    finally:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD_S)


def test_http_clients_that_leave_or_do_not_read_free_their_places(codec):
    """An NDJSON upload dropped mid-body frees its place (it is not left waiting for lines); a /v1/decode whose
    client reads nothing holds its place and at most its buffer of audio, and is cut at the read timeout."""
    ids, _ = _utterance(codec, 120.0)
    port = free_port()
    proc = start_server(TINY_24, port, "--max-streams", "2", "--read-timeout", "4", "--max-buffer-seconds", "2")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD_S) as sock:
            sock.sendall(
                b"POST /v1/decode/stream?preset=orpheus HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n" % (22, (json.dumps({"ids": ids[:7]}) + "\n").encode()[:22])
            )
            time.sleep(1.0)
        assert _settled_metric(port, "snac_streams_active", 0.0) == 0.0, "a dropped upload kept its place"
        body = json.dumps({"ids": ids}).encode()
        with _slow_socket(port) as sock:
            sock.sendall(
                b"POST /v1/decode?preset=orpheus&format=f32le HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            )
            held = _settled_metric(port, "snac_streams_active", 1.0)
            decoded = _stable_metric(port, "snac_decoded_audio_seconds_total")
            assert held == 1.0 and decoded < 15.0, (held, decoded)  # of 120 s: the buffer and the socket's
            assert _settled_metric(port, "snac_streams_active", 0.0) == 0.0  # cut at the read timeout
        assert _metric(port, 'snac_errors_total{kind="read_timeout"}') == 1.0
    finally:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD_S)


def _http_head(port: int, path: str, length: int, wait: float = 120.0) -> str:
    """Send a POST's headers announcing ``length`` body bytes but not the body; the status line the server answers
    with within ``wait`` s ('' if none: it is waiting for the body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
        )
        try:
            return sock.recv(4096).decode(errors="replace").split("\r\n")[0]
        except TimeoutError:
            return ""


def test_http_bodies_are_refused_before_they_are_read(codec):
    """The pool is full: a decode request is answered 503 from its headers alone, before its body is sent; an
    encode request beyond the encodes admitted likewise; a body announced over the limit gets 413 at once."""
    import websockets

    port = free_port()
    proc = start_server(TINY_24, port, "--max-streams", "1", "--max-body-bytes", "10000000")
    try:

        async def scenario() -> dict[str, str]:
            url = f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus"
            async with websockets.connect(url) as ws:  # holds the only slot
                await ws.recv()
                loop = asyncio.get_running_loop()
                return {
                    "decode": await loop.run_in_executor(None, _http_head, port, "/v1/decode", 500_000),
                    "stream": await loop.run_in_executor(None, _http_head, port, "/v1/decode/stream", 7_000_000),
                    "too_big": await loop.run_in_executor(None, _http_head, port, "/v1/decode", 20_000_000),
                }

        out = asyncio.run(asyncio.wait_for(scenario(), HANG_GUARD_S))
        assert out["decode"].startswith("HTTP/1.1 503"), out
        assert out["stream"].startswith("HTTP/1.1 503"), out
        assert out["too_big"].startswith("HTTP/1.1 413"), out  # over max_body_bytes (decode: max_message_bytes)
    finally:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD_S)


def test_decode_stream_refuses_a_bad_first_line_with_a_4xx(codec):
    ids, _ = _utterance(codec, 1.0)
    with TestClient(create_app(ServeSettings(), codec=codec)) as client:
        bad = client.post("/v1/decode/stream?preset=orpheus", content=b'{"ids": [999999999]}\n')
        assert bad.status_code == 400 and "above the orpheus audio range" in bad.json()["error"]
        # a bad line after the first audio can only cut the response short; before it, it is a 400 too
        body = (json.dumps({"ids": ids[:3]}) + "\n" + '{"ids": [-5]}\n').encode()
        late = client.post("/v1/decode/stream?preset=orpheus", content=body)
        assert late.status_code == 400, late.status_code


def test_the_ndjson_line_limit_holds_whatever_the_reads(codec):
    line = json.dumps({"tokens": [1] * 400_000}).encode()  # about 1.2 MB in one line
    assert len(line) > 1 << 20
    with TestClient(create_app(ServeSettings(max_message_bytes=1 << 20, max_body_bytes=8 << 20), codec=codec)) as c:
        response = c.post("/v1/decode/stream", content=line + b"\n")
        assert response.status_code == 413 and "line" in response.json()["error"]
        response = c.post("/v1/decode/stream", content=line)  # no newline: the last line
        assert response.status_code == 413


def test_deeply_nested_json_is_a_malformed_message(codec):
    bomb = '{"ids": ' + "[" * 100_000
    with TestClient(create_app(ServeSettings(), codec=codec)) as client:
        with client.websocket_connect("/v1/stream?preset=orpheus") as ws:
            ws.receive_json()
            ws.send_text(bomb)
            error = ws.receive_json()
            closing = ws.receive()
        assert error["type"] == "error" and "nested" in error["message"]
        assert closing["type"] == "websocket.close" and closing["code"] == 1007
        response = client.post("/v1/decode?preset=orpheus", content=bomb.encode())
        assert response.status_code == 400 and "nested" in response.json()["error"]


def test_bad_query_values_close_1008_with_a_reason(codec):
    with TestClient(create_app(ServeSettings(), codec=codec)) as client:
        for query, words in (("seed=abc", "seed"), ("noise=maybe", "noise"), ("format=mp3", "format")):
            with client.websocket_connect(f"/v1/stream?preset=orpheus&{query}") as ws:
                error = ws.receive_json()
                closing = ws.receive()
            assert closing["code"] == 1008 and words in error["message"], (query, error)
            response = client.post(f"/v1/decode?preset=orpheus&{query}", json={"ids": [1]})
            assert response.status_code == 400 and words in response.json()["error"], response.text


def test_the_encode_error_names_the_http_parameter(codec):
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros((8000, 2), np.float32), 8000, format="WAV")
    with TestClient(create_app(ServeSettings(), codec=codec)) as client:
        error = client.post("/v1/encode", content=buf.getvalue()).json()["error"]
        assert "?mix=true" in error, error
        error = client.post("/v1/encode?mix=true", content=buf.getvalue()).json()["error"]
        assert "?resample=true" in error, error


def test_client_mistakes_are_one_warning_line_without_a_traceback(codec, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="snac_onnx")
    with TestClient(create_app(ServeSettings(), codec=codec)) as client:
        with client.websocket_connect("/v1/stream?preset=orpheus") as ws:
            ws.receive_json()
            ws.send_text('{"ids": [999999999]}')
            ws.receive_json()
        client.post("/v1/decode/stream?preset=orpheus", content=b'{"ids": [999999999]}\n')
    mistakes = [r for r in caplog.records if "999999999" in r.getMessage()]
    assert mistakes, "the client's mistake is not logged"
    assert all(r.levelname == "WARNING" and r.exc_info is None for r in mistakes), [
        (r.levelname, r.exc_info) for r in mistakes
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_serve_on_a_busy_port_is_a_refusal_with_a_reason(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "snac_onnx", "serve", "-m", str(TINY_24), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
            cwd=REPO,
        )
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert f"127.0.0.1:{port}" in result.stderr and "--port" in result.stderr


def test_serve_help_shows_each_default_once():
    result = subprocess.run(
        [sys.executable, "-m", "snac_onnx", "serve", "--help"], capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=REPO
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for flag in ("--providers", "--max-batch", "--idle-timeout", "--max-buffer-seconds", "--read-timeout"):
        part = text.split(flag, 2)[-1].split(" --", 1)[0]
        assert part.count("default") == 1, (flag, part)


def test_a_bad_line_after_the_first_audio_cuts_the_streamed_response_short(codec):
    """NDJSON sent line by line over a raw connection: audio comes back for the first lines; a bad line after it
    drops the connection, so the chunked body never gets its last chunk (never silently short audio)."""
    ids, _ = _utterance(codec, 1.0)
    port = free_port()
    proc = start_server(TINY_24, port)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD_S) as sock:

            def chunk(data: bytes) -> bytes:
                return b"%x\r\n%s\r\n" % (len(data), data)

            sock.sendall(
                b"POST /v1/decode/stream?preset=orpheus HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + chunk((json.dumps({"ids": ids}) + "\n").encode())
            )
            received = b""
            while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < 1000:
                part = sock.recv(65536)
                assert part, received[:200]
                received += part
            assert received.startswith(b"HTTP/1.1 200")
            sock.sendall(chunk(b'{"ids": [-1]}\n'))
            try:
                while part := sock.recv(65536):
                    received += part
            except ConnectionResetError:
                pass
        assert not received.endswith(b"0\r\n\r\n"), "the response was completed, not cut short"
    finally:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD_S)


def test_a_dropped_connection_frees_its_place_at_once(codec):
    """A client's network goes away mid-stream (an RST, while audio is being sent): its place in --max-streams is
    free within seconds, not at the idle timeout (60 s here)."""
    import struct

    import websockets

    ids, _ = _utterance(codec, 30.0)
    port = free_port()
    proc = start_server(TINY_24, port, "--max-streams", "1", "--idle-timeout", "60")
    try:

        async def scenario() -> tuple[float, int | None]:
            url = f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus&format=f32le"
            sock = socket.socket()
            sock.connect(("127.0.0.1", port))
            ws = await websockets.connect(url, sock=sock, max_size=None)
            await ws.recv()
            await ws.send(json.dumps({"ids": ids[: len(ids) // 2]}))
            await ws.recv()  # audio is flowing
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            ws.transport.abort()
            dropped = time.monotonic()
            while _metric(port, "snac_streams_active") != 0.0 and time.monotonic() - dropped < 30:
                await asyncio.sleep(0.05)
            freed = time.monotonic() - dropped
            async with websockets.connect(url) as again:
                await again.send(json.dumps({"ids": ids[:70]}))
                await again.send(json.dumps({"end": True}))
                code = (await _read_all(again))[2]
            return freed, code

        freed, code = asyncio.run(asyncio.wait_for(scenario(), HANG_GUARD_S))
        assert freed < 30.0, f"the place was held {freed:.1f} s after the connection dropped (idle timeout: 60 s)"
        assert code == 1000
        assert _settled_metric(port, 'snac_streams_total{outcome="cancelled"}', 1.0) == 1.0
    finally:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD_S)


def test_what_a_client_has_not_read_waits_in_its_streams_buffer_not_in_the_connection(codec):
    """A client pushes 60 s and reads nothing. The server sends only until its connection holds PACE_BYTES the
    client has not taken (plus what the client's own small buffers took); the rest waits in the stream's buffer,
    where the scheduler counts it as lead, so such a client is never served as urgently as one that reads."""
    import websockets

    from snac_onnx.serve.connection import PACE_BYTES

    ids, _ = _utterance(codec, 60.0)
    port = free_port()
    proc = start_server(TINY_24, port, "--max-buffer-seconds", "2", "--read-timeout", "30", "--idle-timeout", "60")
    try:

        async def scenario() -> tuple[float, float]:
            url = f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus&format=f32le"
            async with websockets.connect(url, max_size=None, max_queue=1, sock=_slow_socket(port)) as ws:
                await ws.send(json.dumps({"ids": ids}))
                await ws.send(json.dumps({"end": True}))
                loop = asyncio.get_running_loop()
                decoded = await loop.run_in_executor(None, _stable_metric, port, "snac_decoded_audio_seconds_total")
                return decoded, _metric(port, "snac_audio_seconds_total")

        decoded, sent = asyncio.run(asyncio.wait_for(scenario(), HANG_GUARD_S))
        client_buffers = 2 * 2 * 16384  # its SO_RCVBUF (doubled by the kernel) and one queued message, at most
        limit = (PACE_BYTES + client_buffers) / 4 / codec.sample_rate
        assert sent <= limit, f"{sent:.2f} s of audio sent to a client that reads nothing (at most {limit:.2f} s)"
        assert 1.95 <= decoded - sent <= 2.5, (decoded, sent)  # the rest waits in its buffer (2 s, and a step)
    finally:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD_S)
