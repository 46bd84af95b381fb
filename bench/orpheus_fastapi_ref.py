"""The decode path a user would otherwise run, for bench/speech_load.py: Orpheus-FastAPI's, on torch SNAC.

A reimplementation of Lex-au/Orpheus-FastAPI's ``tts_engine`` path (``inference.py``'s ``tokens_decoder`` and
``speechpipe.py``'s ``convert_to_audio``): the upstream's ``/v1/completions`` streamed, each ``<custom_token_N>``
turned into a code by ``int(N) - 10 - (count % 7) * 4096`` (ids <= 0 dropped), and at every 7th code from the 28th
on, the last 28 (4 frames) decoded by the PyTorch SNAC and samples ``2048:4096`` of it kept, as int16. It serves
``POST /v1/audio/speech`` and **streams** that audio as it is made (Orpheus-FastAPI itself writes the whole WAV
first, then answers: its real first audio comes after the whole generation), so its timing here is the best the
decode path allows. Its one-frame first call (which returns nothing) and the batching of text pieces in 16s before
the decoder are left out (both would only add latency).

The weights are the export's own: ``load_random_init("24khz", seed)`` as ``python -m export --random-init 24khz``
makes them, so its audio can be compared with the offline decode (it misses frame 0 and the last two frames).

Usage: python bench/orpheus_fastapi_ref.py --llm http://127.0.0.1:PORT/v1 --port 8002 [--threads 0]
Needs torch and snac (the exporter's environment). Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx
import torch
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from export.checkpoint import load_random_init

PREFIX = "<custom_token_"


def turn_token_into_id(token_string: str, index: int) -> int | None:
    """speechpipe.py's ``turn_token_into_id``: the last tag in the text, less 10 and its slot's offset."""
    token_string = token_string.strip()
    start = token_string.rfind(PREFIX)
    if start == -1:
        return None
    last = token_string[start:]
    if not (last.startswith(PREFIX) and last.endswith(">")):
        return None
    try:
        return int(last[14:-1]) - 10 - ((index % 7) * 4096)
    except ValueError:
        return None


def convert_to_audio(model: torch.nn.Module, multiframe: list[int]) -> bytes | None:
    """speechpipe.py's ``convert_to_audio``: decode the frames, keep samples 2048:4096, int16."""
    frames = len(multiframe) // 7
    frame = torch.tensor(multiframe[: frames * 7], dtype=torch.int32).reshape(frames, 7)
    codes = [frame[:, 0][None], frame[:, [1, 4]].reshape(-1)[None], frame[:, [2, 3, 5, 6]].reshape(-1)[None]]
    if any(bool(torch.any(c < 0) or torch.any(c > 4096)) for c in codes):
        return None
    with torch.inference_mode():
        audio_hat = model.decode(codes)
    return bytes((audio_hat[:, :, 2048:4096].numpy() * 32767).astype(np.int16).tobytes())


def make_app(llm: str, seed: int) -> FastAPI:
    model = load_random_init("24khz", seed).model.eval()
    app = FastAPI()
    client = httpx.AsyncClient(timeout=60)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/audio/speech")
    async def speech(request: Request) -> StreamingResponse:
        body = await request.json()
        prompt = (
            f"<custom_token_3><|begin_of_text|>{body.get('voice', 'tara')}: {body['input']}<|eot_id|>"
            "<custom_token_4><custom_token_5><custom_token_1>"
        )

        async def audio():
            buffer: list[int] = []
            count = 0
            payload = {"prompt": prompt, "max_tokens": 8192, "temperature": 0.6, "top_p": 0.9, "repeat_penalty": 1.1,
                       "stream": True}
            async with client.stream("POST", llm.rstrip("/") + "/completions", json=payload) as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line[6:].strip() == "[DONE]":
                        continue
                    text = json.loads(line[6:])["choices"][0].get("text", "")
                    for token_text in text.split(">"):
                        token = turn_token_into_id(f"{token_text}>", count)
                        if token is None or token <= 0:
                            continue
                        buffer.append(token)
                        count += 1
                        if count % 7 == 0 and count > 27:
                            out = await run_in_threadpool(convert_to_audio, model, buffer[-28:])
                            if out:
                                yield out

        return StreamingResponse(audio(), media_type="audio/pcm")

    return app


def main() -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", required=True)
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--seed", type=int, default=0, help="the --random-init seed of the export compared with")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    uvicorn.run(make_app(args.llm, args.seed), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
