"""What the serve tests and the load benchmark share: a free loopback port, a server process, a WebSocket client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tests.support import HANG_GUARD_S, REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: str | Path, port: int, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """``snac-onnx serve`` on 127.0.0.1:``port`` in a fresh process; returns once /readyz answers (60 s at most)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115  # closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "snac_onnx", "serve", "-m", str(model), "--port", str(port), *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server was not ready within 60 s")


async def stream(url: str, messages: Sequence[dict[str, object]], gap: float = 0.0) -> dict[str, object]:
    """Send ``messages`` over a WebSocket (``gap`` s apart), read until the server closes; the audio as bytes."""
    import asyncio

    import websockets

    audio, texts = b"", []
    async with websockets.connect(url, max_size=None) as ws:

        async def send() -> None:
            for m in messages:
                await ws.send(json.dumps(m))
                if gap:
                    await asyncio.sleep(gap)

        sender = asyncio.create_task(send())
        try:
            async for m in ws:
                if isinstance(m, bytes):
                    audio += m
                else:
                    texts.append(json.loads(m))
        except websockets.ConnectionClosed:  # a close code other than 1000: returned below
            pass
        sender.cancel()
        return {"audio": audio, "texts": texts, "code": ws.close_code, "reason": ws.close_reason}


def metric(port: int, name: str) -> float:
    """A sample of the server's /metrics by its full name (labels included); NaN when it is not there."""
    import re

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=HANG_GUARD_S).read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match[1]) if match else float("nan")
