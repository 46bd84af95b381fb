"""The server app on Ray Serve: a local Ray instance, two replicas behind Serve's proxy on loopback (no torch)."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import numpy as np
import pytest

pytest.importorskip("ray.serve")
pytest.importorskip("websockets")

from snac_onnx import SnacOnnx
from snac_onnx.layouts import codes_to_tokens
from snac_onnx.serve import ServeSettings
from tests.serve.support import free_port, stream
from tests.support import HANG_GUARD_S, TINY_24

pytestmark = pytest.mark.slow  # starts Ray Serve


@pytest.fixture(scope="module")
def ray_serve_port(one_ray_at_a_time):
    import ray
    from ray import serve

    from snac_onnx.serve.ray import deployment

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(deployment(ServeSettings(model=str(TINY_24), threads=1), replicas=2), route_prefix="/", name="snac")
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


def test_websocket_and_http_through_ray_serve(ray_serve_port):
    codec = SnacOnnx(TINY_24)
    port = ray_serve_port
    utterances = [
        [rng.integers(0, 4096, n) for n in codec.config.code_lengths(6 + i)]
        for i, rng in enumerate(np.random.default_rng(s) for s in range(4))
    ]
    url = f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus&format=f32le"

    async def clients():
        jobs = []
        for codes in utterances:
            ids = codes_to_tokens(codes, codec.vq_strides, "orpheus").tolist()
            jobs.append(stream(url, [*({"ids": ids[i : i + 7]} for i in range(0, len(ids), 7)), {"end": True}]))
        return await asyncio.gather(*jobs)

    for codes, out in zip(utterances, asyncio.run(clients())):
        assert out["code"] == 1000
        np.testing.assert_allclose(
            np.frombuffer(out["audio"], "<f4"), codec.decode(codes, noise=False), atol=1e-4, rtol=0
        )
    body = json.dumps({"codes": [c.tolist() for c in utterances[0]]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/decode?format=f32le", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=HANG_GUARD_S) as response:
        audio = np.frombuffer(response.read(), "<f4")
    np.testing.assert_allclose(audio, codec.decode(utterances[0], noise=False), atol=1e-4, rtol=0)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=HANG_GUARD_S) as response:
        assert json.load(response)["status"] == "ready"
