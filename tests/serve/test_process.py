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
from tests.support import TINY_24


def test_serve_streams_exactly_and_shuts_down_gracefully(tmp_path):
    codec = SnacOnnx(TINY_24)
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 4096, n) for n in codec.config.code_lengths(12)]
    ids = codes_to_tokens(codes, codec.vq_strides, "orpheus").tolist()
    port = free_port()
    log = tmp_path / "server.log"
    proc = start_server(TINY_24, port, "--shutdown-grace", "2", "--log-level", "info", log=log)
    try:
        url = f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus&format=f32le"
        frames = [{"ids": ids[i : i + 7]} for i in range(0, len(ids), 7)]

        async def clients():
            done = await asyncio.gather(*(stream(url, [*frames, {"end": True}], gap=0.005) for _ in range(3)))
            live = asyncio.create_task(stream(url, frames[:4], gap=0.01))  # never ends: open at shutdown
            await asyncio.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            return done, await asyncio.wait_for(live, 30)

        done, live = asyncio.run(clients())
        offline = codec.decode(codes, noise=False)
        for out in done:
            assert out["code"] == 1000
            np.testing.assert_allclose(np.frombuffer(out["audio"], "<f4"), offline, atol=1e-4, rtol=0)
        assert live["code"] == 1012  # closed by the server's shutdown, not dropped
        # uvicorn shuts down (the app's lifespan closes the pool), then re-raises SIGTERM so supervisors see it
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        text = log.read_text()
        assert "Application shutdown complete" in text and "Traceback" not in text
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_refuses_a_missing_model_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "snac_onnx", "serve", "-m", str(tmp_path / "nope"), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "snac-onnx serve: error:" in result.stderr
