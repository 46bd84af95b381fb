"""Load test of text to speech: N concurrent ``POST /v1/audio/speech`` requests against an LLM at real-time rate.

Usage: python bench/speech_load.py [--model models/snac_24khz] [--seconds 6] [--streams 1 2 4 6 8 10 12]
                                   [--no-reference] [--out bench/RESULTS_speech.md]

An upstream that speaks the OpenAI completions streaming protocol as llama.cpp does (tests/serve/fake_llm.py)
generates each request's audio tokens at exactly real time (7 per frame, a frame every 85.3 ms), a
``--seconds`` utterance of seeded random codes per prompt. Side by side, one run, fresh server processes:

* ``speech``: ``snac-onnx serve --llm ... --preset orpheus`` (CPU defaults), ``response_format=pcm``;
* ``websocket``: the same server's ``/v1/stream``, each client sending its ids at the same real-time rate itself
  (what an app that calls the LLM itself does);
* ``orpheus-fastapi (torch)``: bench/orpheus_fastapi_ref.py, Orpheus-FastAPI's decode path (the 28-token window,
  PyTorch SNAC on CPU), streamed.

Per N: time to first audio byte from the upstream's first audio token of that request (p50, p95; websocket: from
the first id sent), stalls (a client plays from ``--jitter-ms`` after its first audio; a chunk after its playback
time is a stall), the max abs error against the offline decode of the codes the upstream sent (noise off), and
the samples missing at the start and end. N grows while nothing stalls. Bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx

from bench.machine import commit, cpu_name
from bench.serve_load import RUN_TIMEOUT, Server, _free_port, run_scheme
from snac_onnx import SnacOnnx
from snac_onnx.layouts import codes_to_tokens
from tests.serve.fake_llm import FakeLLM, orpheus_steps

JITTER = 0.15


class Upstream:
    """Each prompt's codes (seeded by the prompt), streamed at real time."""

    def __init__(self, codec: SnacOnnx, seconds: float) -> None:
        self.codec = codec
        self.frames = round(seconds * codec.sample_rate / codec.samples_per_frame)
        self.period = codec.samples_per_frame / codec.sample_rate

    def codes(self, prompt: str) -> list[np.ndarray]:
        rng = np.random.default_rng(zlib.crc32(prompt.encode()))
        return [rng.integers(0, 4096, n) for n in self.codec.config.code_lengths(self.frames)]

    def __call__(self, body: dict) -> list:
        ids = codes_to_tokens(self.codes(body["prompt"]), self.codec.vq_strides, "orpheus").tolist()
        return orpheus_steps(ids, gap=self.period)


def _prompt(text: str) -> str:
    return f"<custom_token_3><|begin_of_text|>tara: {text}<|eot_id|><custom_token_4><custom_token_5><custom_token_1>"


async def _speech_client(url: str, text: str, start: float, rate: int) -> dict[str, object]:
    await asyncio.sleep(start)
    arrivals: list[tuple[float, int]] = []
    data = bytearray()
    body = {"model": "orpheus", "voice": "tara", "input": text, "response_format": "pcm"}
    async with httpx.AsyncClient(timeout=RUN_TIMEOUT) as client, client.stream("POST", url, json=body) as response:
        status = response.status_code
        async for chunk in response.aiter_raw():
            arrivals.append((time.monotonic(), len(chunk)))
            data += chunk
    return {"status": status, "arrivals": arrivals, "data": bytes(data)}


def speech_wave(
    port: int, fake: FakeLLM, upstream: Upstream, n: int, offset: int, seed: int, scheme: str
) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    texts = [f"Request {scheme} {seed} number {k}, said once." for k in range(n)]  # a prompt never seen before
    url = f"http://127.0.0.1:{port}/v1/audio/speech"
    rate = upstream.codec.sample_rate

    async def wave():
        return await asyncio.wait_for(
            asyncio.gather(*(_speech_client(url, t, float(rng.uniform(0, 1.0)), rate) for t in texts)), RUN_TIMEOUT
        )

    results = asyncio.run(wave())
    ttfa, late, errors, missing = [], [], [], [0, 0]
    for text, r in zip(texts, results):
        arrivals = r["arrivals"]
        if r["status"] != 200 or not arrivals:
            late.append(float("inf"))
            errors.append(float("inf"))
            continue
        first_token = fake.first_token_at[_prompt(text)]
        ttfa.append(arrivals[0][0] - first_token)
        got = np.frombuffer(r["data"][: len(r["data"]) // 2 * 2], "<i2").astype(np.float32) / 32767
        playback, played, worst = arrivals[0][0] + JITTER, 0, -1e9
        for when, size in arrivals:
            worst = max(worst, when - (playback + played / rate))
            played += size // 2
        late.append(worst)
        offline = upstream.codec.decode(upstream.codes(_prompt(text)), noise=False)
        seg = offline[offset : offset + got.size]
        errors.append(float(np.abs(got[: seg.size] - seg).max()) if seg.size else float("inf"))
        missing = [max(missing[0], offset), max(missing[1], offline.size - offset - got.size)]
    ttfa.sort()
    return {
        "n": n,
        "ttfa50": 1000 * statistics.median(ttfa) if ttfa else float("nan"),
        "ttfa95": 1000 * ttfa[min(len(ttfa) - 1, int(0.95 * len(ttfa)))] if ttfa else float("nan"),
        "stalled": sum(1 for x in late if x > 0),
        "worst_ms": 1000 * max(late),
        "err": max(errors),
        "missing": missing,
    }


def websocket_utterances(upstream: Upstream, seed: int, count: int = 4) -> list:
    """serve_load's utterances: per utterance its ids in frames and its offline decode."""
    utts = []
    for k in range(count):
        codes = upstream.codes(f"websocket {seed} {k}")
        ids = codes_to_tokens(codes, upstream.codec.vq_strides, "orpheus").tolist()
        utts.append(([ids[i : i + 7] for i in range(0, len(ids), 7)], upstream.codec.decode(codes, noise=False)))
    return utts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/snac_24khz")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 6, 8, 10, 12])
    parser.add_argument("--no-reference", action="store_true", help="leave out the torch reference")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS_speech.md")
    args = parser.parse_args()

    codec = SnacOnnx(args.model)
    upstream = Upstream(codec, args.seconds)
    fake = FakeLLM(upstream).start()
    spf, rate = codec.samples_per_frame, codec.sample_rate
    lines = [
        f"# Text to speech under load ({args.model}, random weights)",
        "",
        (f"Machine: {cpu_name()}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; commit {commit()}. Written by "
        f"`python bench/speech_load.py --seconds {args.seconds:g}` (one run; upstream, clients and servers on this "
        "machine, loopback)."),
        "",
        (f"Each request: a {args.seconds:g} s utterance whose audio tokens the upstream streams at real time "
        f"(7 every {1000 * upstream.period:.1f} ms); requests start within one second; a client plays from "
        f"{1000 * JITTER:.0f} ms after its first audio. First audio counts from the request's first audio token "
        "(websocket: from the first id sent)."),
        "",
        "| scheme | N | first audio p50 ms | p95 ms | stalled | worst lateness ms | max abs vs offline | missing start / end |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    print("\n".join(lines), flush=True)
    best: dict[str, int] = {}
    fmt = lambda v: "-" if v != v else f"{v:.0f}"  # noqa: E731
    schemes = ["speech", "websocket"] + ([] if args.no_reference else ["orpheus-fastapi (torch)"])
    try:
        for scheme in schemes:
            port = _free_port()
            if scheme == "orpheus-fastapi (torch)":
                cmd = [sys.executable, str(ROOT / "bench" / "orpheus_fastapi_ref.py"), "--llm", fake.url, "--port",
                       str(port)]
                offset = spf
            else:
                cmd = [sys.executable, "-m", "snac_onnx", "serve", "-m", args.model, "--port", str(port), "--llm",
                       fake.url, "--preset", "orpheus", "--log-level", "error"]
                offset = 0
            server = Server(scheme, cmd, port)
            try:
                best[scheme] = 0
                for n in args.streams:
                    if scheme == "websocket":
                        r = run_scheme(server, websocket_utterances(upstream, n), n, upstream.period, JITTER, rate, 0,
                                       seed=n)
                    else:
                        r = speech_wave(port, fake, upstream, n, offset, seed=n, scheme=scheme)
                    row = (f"| {scheme} | {n} | {fmt(r['ttfa50'])} | {fmt(r['ttfa95'])} | {r['stalled']} "
                           f"| {fmt(r['worst_ms'])} | {r['err']:.1e} | {r['missing'][0]} / {r['missing'][1]} |")
                    lines.append(row)
                    print(row, flush=True)
                    if r["stalled"]:
                        break
                    best[scheme] = n
            finally:
                server.stop()
    finally:
        fake.stop()
    lines += ["", "Largest N with no stall: " + "; ".join(f"{k} {v}" for k, v in best.items()) + "."]
    args.out.write_text("\n".join(lines) + "\n")
    print(lines[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
