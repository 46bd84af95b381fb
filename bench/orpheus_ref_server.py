"""The reference Orpheus serving scheme, for bench/serve_load.py: one thread per stream, the 28-token window.

What the Orpheus servers do (canopyai/Orpheus-TTS ``decoder.py``, and the FastAPI servers that copy it):
every 7 ids from the 28th on, decode the last 28 (4 frames) and send samples 2048:4096. Here each
WebSocket stream gets its own thread running that loop on a shared codec (onnxruntime sessions are
thread-safe), with the same protocol subset as ``snac-onnx serve`` (``/v1/stream?preset=orpheus&format=f32le``,
``{"ids": [...]}`` and ``{"end": true}`` in; binary float32 audio, then an end message, out), so one load
client drives both. Its audio is not the offline decode (the window lacks context; frame 0 and the last
two frames are never sent): the load benchmark reports its error and what it misses.

Usage: python bench/orpheus_ref_server.py --model models/snac_24khz --port 8001 [--threads 1]
Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import sys
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from bench.streaming import OrpheusReference
from snac_onnx import SnacOnnx
from snac_onnx.layouts import tokens_to_codes

ORPHEUS_BASE, END_OF_SPEECH, FRAME = 128266, 128258, 7


def make_app(model: str, threads: int) -> FastAPI:
    codec = SnacOnnx(model, threads=threads).load("decoder")
    app = FastAPI()
    per = codec.config.codes_per_frame

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        loop = asyncio.get_running_loop()
        inbox: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
        outbox: asyncio.Queue[np.ndarray | None] = asyncio.Queue()

        def work() -> None:  # this stream's own thread
            ref = OrpheusReference(codec)
            pending: list[int] = []
            while (ids := inbox.get()) is not None:
                pending += [i for i in ids if i >= ORPHEUS_BASE]
                while len(pending) >= FRAME:
                    frame, pending = pending[:FRAME], pending[FRAME:]
                    codes = tokens_to_codes(np.asarray(frame), codec.vq_strides, 4096, "orpheus")
                    out = ref.push([c[:p] for c, p in zip(codes, per, strict=True)])
                    if out.size:
                        loop.call_soon_threadsafe(outbox.put_nowait, out)
            loop.call_soon_threadsafe(outbox.put_nowait, None)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        await ws.send_json({"type": "start", "sample_rate": codec.sample_rate, "format": "f32le"})

        async def send() -> None:
            samples = 0
            while (chunk := await outbox.get()) is not None:
                await ws.send_bytes(chunk.astype("<f4").tobytes())
                samples += chunk.size
            await ws.send_json({"type": "end", "samples": samples})
            await ws.close(1000)

        sender = asyncio.create_task(send())
        try:
            while True:
                message = json.loads(await ws.receive_text())
                if message.get("end"):
                    break
                ids = message["ids"]
                inbox.put(ids)
                if END_OF_SPEECH in ids:
                    break
        except WebSocketDisconnect:
            sender.cancel()
        finally:
            inbox.put(None)
        await sender

    return app


def main() -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/snac_24khz")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads of each stream's calls")
    args = parser.parse_args()
    uvicorn.run(make_app(args.model, args.threads), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
