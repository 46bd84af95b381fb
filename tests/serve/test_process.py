"""``snac-onnx serve`` as users run it: a uvicorn process on loopback, a real WebSocket client, SIGTERM (no torch)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("websockets")

from snac_onnx import SnacOnnx
from snac_onnx.layouts import codes_to_tokens
from tests.serve.support import free_port, start_server, stream
from tests.support import HANG_GUARD_S, TINY_24


def test_serve_streams_exactly_and_drains_at_sigterm(tmp_path):
    """Three streams exact; at SIGTERM the server refuses new streams and reports not ready, a live stream that
    ends within the grace time finishes exactly (1000), one that never ends is closed with 1012 after it. The
    server declines permessage-deflate (which the client offers): compressing PCM costs the event loop and saves
    nothing."""
    import json
    import urllib.error
    import urllib.request

    codec = SnacOnnx(TINY_24)
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 4096, n) for n in codec.config.code_lengths(12)]
    ids = codes_to_tokens(codes, codec.vq_strides, "orpheus").tolist()
    offline = codec.decode(codes, noise=False)
    port = free_port()
    log = tmp_path / "server.log"
    proc = start_server(TINY_24, port, "--shutdown-grace", "3", "--log-level", "info", log=log)
    try:
        url = f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus&format=f32le"
        frames = [{"ids": ids[i : i + 7]} for i in range(0, len(ids), 7)]

        async def finishing_after_the_signal(signalled: asyncio.Event) -> dict:
            import websockets

            audio = b""
            async with websockets.connect(url) as ws:
                assert "permessage-deflate" in (ws.request.headers.get("Sec-WebSocket-Extensions") or "")
                extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
                await ws.recv()  # start
                for f in frames[:4]:
                    await ws.send(json.dumps(f))
                await signalled.wait()
                for f in frames[4:]:
                    await ws.send(json.dumps(f))
                    await asyncio.sleep(0.01)
                await ws.send(json.dumps({"end": True}))
                async for m in ws:
                    if isinstance(m, bytes):
                        audio += m
                return {"audio": audio, "code": ws.close_code, "extensions": extensions}

        def ready_status() -> int:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                    return r.status
            except urllib.error.HTTPError as error:
                return error.code

        async def clients():
            done = await asyncio.gather(*(stream(url, [*frames, {"end": True}], gap=0.005) for _ in range(3)))
            signalled = asyncio.Event()
            finishing = asyncio.create_task(finishing_after_the_signal(signalled))
            stuck = asyncio.create_task(stream(url, frames[:4], gap=0.01))  # never ends
            await asyncio.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            signalled.set()
            ready = await asyncio.to_thread(ready_status)
            refused = await stream(url, frames[:1])
            return (
                done, await asyncio.wait_for(finishing, HANG_GUARD_S), await asyncio.wait_for(stuck, HANG_GUARD_S), ready,
                refused,
            )

        done, finishing, stuck, ready, refused = asyncio.run(clients())
        for out in done:
            assert out["code"] == 1000
            np.testing.assert_allclose(np.frombuffer(out["audio"], "<f4"), offline, atol=1e-4, rtol=0)
        assert ready == 503
        assert refused["code"] == 1013 and "shutting down" in refused["texts"][-1]["message"]
        assert finishing["extensions"] is None  # no permessage-deflate
        assert finishing["code"] == 1000  # ended within the grace time: finished, exact
        np.testing.assert_allclose(np.frombuffer(finishing["audio"], "<f4"), offline, atol=1e-4, rtol=0)
        assert stuck["code"] == 1012  # still open when the grace time ran out
        # uvicorn shuts down (the app's lifespan closes the pool), then re-raises SIGTERM so supervisors see it
        assert proc.wait(timeout=HANG_GUARD_S) in (0, -signal.SIGTERM)
        text = log.read_text()
        assert "draining" in text and "Application shutdown complete" in text and "Traceback" not in text
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_refuses_a_missing_model_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "snac_onnx", "serve", "-m", str(tmp_path / "nope"), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "snac-onnx serve: error:" in result.stderr
