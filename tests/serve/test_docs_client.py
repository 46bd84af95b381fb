"""The serving docs' copy-paste WebSocket client, run as written against a real `snac-onnx serve` (no torch)."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("websockets")

from snac_onnx import SnacOnnx
from snac_onnx.files.audio import pcm16
from snac_onnx.layouts import codes_to_tokens
from tests.serve.support import free_port, start_server
from tests.support import HANG_GUARD_S, REPO, TINY_24


def test_the_readme_client_gets_the_offline_audio():
    text = (REPO / "docs" / "serving.md").read_text()
    block = re.search(r"<!-- client -->\n```python\n(.*?)```", text, re.S)
    assert block, "docs/serving.md lost its client block"
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "docs client", "exec"), namespace)
    codec = SnacOnnx(TINY_24)
    rng = np.random.default_rng(3)
    codes = [rng.integers(0, 4096, n) for n in codec.config.code_lengths(9)]
    ids = codes_to_tokens(codes, codec.vq_strides, "orpheus").tolist()
    port = free_port()
    proc = start_server(TINY_24, port)
    try:
        url = f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus&format=s16le"
        rate, audio = asyncio.run(namespace["speak"](ids, url))
    finally:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD_S)
    assert rate == codec.sample_rate
    got = np.frombuffer(audio, "<i2").astype(np.int32)
    want = np.frombuffer(pcm16(codec.decode(codes, noise=False)), "<i2").astype(np.int32)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1
