"""Load and abuse of ``snac-onnx serve``: real-time clients beside clients that misbehave, on loopback.

Usage: python bench/serve_abuse.py [--model models/snac_24khz] [--streams 4] [--seconds 6]
                                   [--out bench/RESULTS_serve_abuse.md]

One server process (the CPU defaults: a worker per core, one onnxruntime thread per call), with
``--max-streams`` = the real-time clients + the abusers that hold a stream, ``--read-timeout 5``,
``--idle-timeout 10``. Bounded in count and time: every wave of clients has a deadline (``RUN_TIMEOUT``).

1. A clean wave of N real-time clients (Orpheus ids at exactly real time, each checked against the offline
   decode); if any stalls, N is lowered until a wave has no stall: the load the abuse is measured at.
2. The warm baseline: the server's VmRSS after a second clean wave.
3. The abuse wave: the same N real-time clients, and from 1.2 s on (once they are connected)
   * 2 non-readers: WebSocket streams that push 30 s of ids and read nothing (closed by the read timeout);
   * 2 droppers: streams that push at real time and drop their TCP connection (RST) a third of the way in;
   * 2 JSON bombs (``{"ids": `` + 100,000 ``[``): one over WebSocket, one to ``POST /v1/decode``;
   * 32 oversized decode bodies announced at 7 MB, and 4 sent chunked without a length (refused at the limit);
   * 8 encode uploads of 7 MB at once (``--max-encodes`` admitted, the rest refused before their body);
   * 3 streams beyond ``--max-streams`` (1013).
   Every 50 ms, ``snac_streams_active`` and the established TCP connections to the server are sampled.
4. After the abuse: VmRSS; a clean wave again; VmRSS again (must be within 10 MB of the warm baseline).

Writes a markdown report to ``--out`` and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import websockets

from bench.machine import commit, cpu_name
from bench.serve_load import RUN_TIMEOUT, Server, _errors, _free_port, _wave, utterances

MB = 1 << 20


def _established(port: int) -> int:
    """TCP connections established to ``port`` on this host (the server's side of each)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    count += 1
    return count


class Sampler(threading.Thread):
    """Samples the pool's open streams (/metrics) and the server's established connections every 50 ms."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server, self.stop_flag = server, threading.Event()
        self.streams: list[float] = []
        self.connections: list[int] = []

    def run(self) -> None:
        while not self.stop_flag.is_set():
            self.streams.append(self.server.metrics().get("snac_streams_active", float("nan")))
            self.connections.append(_established(self.server.port))
            time.sleep(0.05)


async def non_reader(port: int, ids: list[int]) -> str:
    url = f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus&format=f32le"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect(("127.0.0.1", port))
    async with websockets.connect(url, sock=sock, max_size=None, max_queue=1) as ws:
        await ws.send(json.dumps({"ids": ids}))
        await ws.send('{"end": true}')
        await asyncio.sleep(25.0)  # past the read timeout (5 s) and its drop (5 s more), whatever the load
        with contextlib.suppress(websockets.ConnectionClosed):
            async for _ in ws:
                pass
        return str(ws.close_code)


async def dropper(port: int, frames: list[list[int]], period: float) -> str:
    sock = socket.socket()
    sock.connect(("127.0.0.1", port))
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus", sock=sock, max_size=None)
    for frame in frames[: len(frames) // 3]:
        await ws.send(json.dumps({"ids": frame}))
        await asyncio.sleep(period)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()  # an RST: the network went away
    return "dropped"


async def ws_bomb(port: int) -> str:
    async with websockets.connect(f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus") as ws:
        with contextlib.suppress(websockets.ConnectionClosed):
            if json.loads(await ws.recv())["type"] == "start":  # else refused: an error, then the close
                await ws.send('{"ids": ' + "[" * 100_000)
            async for _ in ws:
                pass
        return str(ws.close_code)


async def short_non_reader(port: int, ids: list[int]) -> str:
    """A 1 s utterance whose audio all fits in the buffers, never read: it must keep its place until dropped."""
    return await non_reader(port, ids[: 12 * 7])


async def http_dropper(port: int, ids: list[int]) -> str:
    """An NDJSON upload that sends a few lines and closes mid-body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_head("/v1/decode/stream?preset=orpheus", None))
    for i in range(0, 35, 7):
        line = (json.dumps({"ids": ids[i : i + 7]}) + "\n").encode()
        writer.write(b"%x\r\n%s\r\n" % (len(line), line))
        await writer.drain()
        await asyncio.sleep(0.1)
    writer.close()
    return "dropped"


async def decode_non_reader(port: int, ids: list[int]) -> str:
    """A /v1/decode of 30 s whose answer is never read: held, bounded, cut at the read timeout."""
    body = json.dumps({"ids": ids}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(_head("/v1/decode?preset=orpheus&format=f32le", len(body)) + body)
    await writer.drain()
    await asyncio.sleep(25.0)  # reads nothing, past the read timeout (5 s), whatever the load
    got = 0
    with contextlib.suppress(OSError):
        while part := await asyncio.wait_for(reader.read(1 << 16), 10):
            got += len(part)
    writer.close()
    return "cut" if got < 30 * 24000 * 4 else "complete"


async def beyond_the_limit(port: int, limit: int) -> list[str]:
    """Fill every place with idle streams, then three more: refused (1013); then let the fillers go."""
    url = f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus"
    fillers, refused = [], []
    try:
        for _ in range(limit):
            ws = await websockets.connect(url)
            if json.loads(await ws.recv())["type"] != "start":  # full already
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.recv()
                refused.append(str(ws.close_code))
                await ws.close()
                break
            fillers.append(ws)
        for _ in range(3 - len(refused)):
            async with websockets.connect(url) as ws:
                with contextlib.suppress(websockets.ConnectionClosed):
                    async for _ in ws:
                        pass
                refused.append(str(ws.close_code))
    finally:
        for ws in fillers:
            await ws.close()
    return refused


async def http(port: int, head: bytes, body: bytes = b"", chunked_total: int = 0) -> str:
    """A raw HTTP request; the status code the server answers (or why none)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (OSError, asyncio.TimeoutError) as error:
        return f"connect: {error}"
    try:
        writer.write(head + body)
        if chunked_total:  # a chunked body of 64 KiB chunks, until the server answers or the total is sent
            chunk = b"x" * 65536
            sent = 0
            while sent < chunked_total and not reader.at_eof():
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
                sent += len(chunk)
                if reader._buffer:  # type: ignore[attr-defined]  # an answer arrived (a refusal)
                    break
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
        return line.decode(errors="replace").split(" ")[1] if line else "no answer"
    except (OSError, asyncio.TimeoutError, IndexError) as error:
        return f"error: {type(error).__name__}"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _head(path: str, length: int | None, content_type: str = "application/json") -> bytes:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n{size}\r\n\r\n".encode()


async def abuse(port: int, utts, period: float, limit: int) -> dict[str, list[str]]:
    await asyncio.sleep(1.2)  # the real-time clients connect first (within a second): they are the load
    frames, _ = utts[0]
    ids = [i for f in frames for i in f] * 5  # 30 s of a 6 s utterance
    bomb = b'{"ids": ' + b"[" * 100_000
    big = 7 * MB
    makers: dict[str, tuple[int, Callable[[], Awaitable[str]]]] = {
        "non-reader, 30 s (WebSocket)": (2, lambda: non_reader(port, ids)),
        "non-reader, 1 s (WebSocket)": (2, lambda: short_non_reader(port, ids)),
        "upload dropped mid-body (NDJSON)": (2, lambda: http_dropper(port, ids)),
        "non-reader of /v1/decode, 30 s": (2, lambda: decode_non_reader(port, ids)),
        "dropper (WebSocket, RST)": (2, lambda: dropper(port, frames, period)),
        "JSON bomb (WebSocket)": (1, lambda: ws_bomb(port)),
        "JSON bomb (POST /v1/decode)": (1, lambda: http(port, _head("/v1/decode?preset=orpheus", len(bomb)), bomb)),
        "7 MB decode body, announced": (32, lambda: http(port, _head("/v1/decode?preset=orpheus", big))),
        "7 MB decode body, chunked": (
            4,
            lambda: http(port, _head("/v1/decode?preset=orpheus", None), chunked_total=big),
        ),
        "7 MB encode upload": (8, lambda: http(port, _head("/v1/encode", big, "audio/wav"), b"\0" * big)),
    }
    only = [w for w in os.environ.get("ABUSE", "").split(",") if w]  # e.g. ABUSE=non-reader (to look at one kind)
    tasks = {
        label: [asyncio.create_task(make()) for _ in range(count)]
        for label, (count, make) in makers.items()
        if not only or any(w in label for w in only)
    }
    out = {}
    for label, group in tasks.items():
        done = await asyncio.wait_for(asyncio.gather(*group, return_exceptions=True), RUN_TIMEOUT)
        out[label] = [r if isinstance(r, str) else f"{type(r).__name__}" for r in done]
    if not only or any(w in "beyond" for w in only):
        out["beyond --max-streams (once every place is taken)"] = await beyond_the_limit(port, limit)
    return out


def clean_wave(server: Server, utts, n: int, period: float, jitter: float, rate: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    jobs = [(utts[k % len(utts)][0], utts[k % len(utts)][1], float(rng.uniform(0, 1.0)), "good") for k in range(n)]
    url = f"ws://127.0.0.1:{server.port}/v1/stream?preset=orpheus&format=f32le"
    results = asyncio.run(_wave(url, jobs, period, jitter, rate))
    return _summary(jobs, results)


def _summary(jobs, results) -> dict[str, object]:
    errs, full, late = [], True, []
    for job, r in zip(jobs, results):
        if "audio" not in r:
            errs.append(float("inf"))
            full = False
            continue
        errs.append(_errors(r["audio"], job[1], 0)[0])
        full = full and r.get("samples") == job[1].size
        late.append(r.get("lateness", float("inf")))
    return {
        "err": max(errs),
        "full": full,
        "stalled": sum(1 for x in late if x > 0),
        "worst_ms": 1000 * max(late) if late else float("nan"),
        "codes": sorted({str(r.get("code")) for r in results}),
    }


def _rss_after_malloc_trim(server: Server) -> float | None:
    """VmRSS after calling glibc's malloc_trim(0) inside the server (with gdb, where there is one)."""
    if shutil.which("gdb") is None:
        return None
    subprocess.run(
        ["gdb", "-p", str(server.proc.pid), "-batch", "-ex", "call (int) malloc_trim(0)"],
        capture_output=True,
        timeout=120,
    )
    time.sleep(0.5)
    return server.rss_mb()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/snac_24khz")
    parser.add_argument("--streams", type=int, default=4, help="real-time clients (lowered until a clean wave has no stall)")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each real-time utterance")
    parser.add_argument("--jitter-ms", type=float, default=150.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS_serve_abuse.md")
    parser.add_argument("--abuse-port", type=int, help=argparse.SUPPRESS)  # the abusers' own process
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    utts, period, rate = utterances(args.model, args.seconds)
    if args.abuse_port:
        print("ready", flush=True)
        sys.stdin.readline()
        print(json.dumps(asyncio.run(abuse(args.abuse_port, utts, period, args.limit))))
        return 0
    jitter = args.jitter_ms / 1000
    room = 16  # places beyond the real-time clients: every abuser gets in, until the last test fills them all
    n = args.streams
    lines = [
        f"# snac-onnx serve: load and abuse ({args.model})",
        "",
        (f"Machine: {cpu_name()}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; commit {commit()}. Written by "
        f"`python bench/serve_abuse.py --streams {args.streams} --seconds {args.seconds:g}` (one run, clients and "
        "server on this machine, loopback)."),
        "",
    ]
    while True:
        port = _free_port()
        limit = n + room
        server = Server(
            "pool",
            [sys.executable, "-m", "snac_onnx", "serve", "-m", args.model, "--port", str(port), "--max-streams",
             str(limit), "--read-timeout", "5", "--idle-timeout", "10", "--log-level", "error"],
            port,
        )
        clean = clean_wave(server, utts, n, period, jitter, rate, seed=1)
        if not clean["stalled"] or n == 1:
            break
        lines.append(f"A clean wave of {n} real-time clients stalled ({clean['stalled']}); trying {n - 1}.")
        server.stop()
        n -= 1
    try:
        clean_wave(server, utts, n, period, jitter, rate, seed=2)
        time.sleep(1.0)
        baseline = server.rss_mb()
        sampler = Sampler(server)
        sampler.start()

        # the abusers in a process of their own, so that their writes never hold up the real-time clients' loop,
        # at the lowest CPU priority: in the field they run on other machines; here making 300 MB of bodies would
        # otherwise take the CPU the server needs (their load on the server itself is unchanged)
        load_before = os.getloadavg()[0]
        abusers = subprocess.Popen(
            ["nice", "-n", "19",
             sys.executable, __file__, "--model", args.model, "--abuse-port", str(port), "--seconds",
             str(args.seconds), "--limit", str(limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert abusers.stdout is not None
        assert abusers.stdin is not None
        assert abusers.stdout.readline().strip() == "ready"  # its setup done: it starts when the clients do
        abusers.stdin.write("go\n")
        abusers.stdin.flush()
        rng = np.random.default_rng(3)
        jobs = [(utts[k % len(utts)][0], utts[k % len(utts)][1], float(rng.uniform(0, 1.0)), "good") for k in range(n)]
        url = f"ws://127.0.0.1:{port}/v1/stream?preset=orpheus&format=f32le"
        try:
            good = asyncio.run(_wave(url, jobs, period, jitter, rate))
            out, _ = abusers.communicate(timeout=RUN_TIMEOUT * 2)
        finally:
            if abusers.poll() is None:
                abusers.kill()
        bad = json.loads(out)
        time.sleep(2.0)
        sampler.stop_flag.set()
        sampler.join()
        abused = _summary(jobs, good)
        time.sleep(1.0)
        after = server.rss_mb()
        trimmed = _rss_after_malloc_trim(server)
        again_wave = clean_wave(server, utts, n, period, jitter, rate, seed=4)
        time.sleep(1.0)
        again = server.rss_mb()
        active = server.metrics().get("snac_streams_active", float("nan"))
    finally:
        server.stop()
    lines += [
        (f"Server: `snac-onnx serve --max-streams {limit} --read-timeout 5 --idle-timeout 10` (CPU defaults). "
        f"{n} real-time clients, each a {args.seconds:g} s utterance's Orpheus ids at real time, playing "
        f"{args.jitter_ms:.0f} ms after their first audio; a chunk after its playback time is a stall. The abusers "
        f"run in a process of their own at nice 19. Load average when they started: {load_before:.2f}."),
        "",
        "| wave | real-time clients exact (max abs) | complete | stalled | worst lateness ms | close codes |",
        "|---|---:|---|---:|---:|---|",
    ]
    for label, s in (("clean", clean), ("with the abusers", abused), ("clean, after", again_wave)):
        lines.append(
            f"| {label} | {s['err']:.1e} | {'yes' if s['full'] else 'NO'} | {s['stalled']} | {s['worst_ms']:.0f} "
            f"| {', '.join(s['codes'])} |"
        )
    lines += ["", "| abuser | count | what it got |", "|---|---:|---|"]
    for label, results in bad.items():
        counts = {r: results.count(r) for r in sorted(set(results))}
        lines.append(f"| {label} | {len(results)} | {', '.join(f'{k} x{v}' for k, v in counts.items())} |")
    streams = [s for s in sampler.streams if s == s]
    lines += [
        "",
        (f"During the abuse wave: `snac_streams_active` at most {max(streams):.0f} (limit {limit}: "
        f"{'never exceeded' if max(streams) <= limit else 'EXCEEDED'}); established "
        f"connections to the server at most {max(sampler.connections)} (streams, refusals being answered and "
        f"the sampler's own scrape included). Streams active afterwards: {active:.0f}."),
        "",
        (f"Server memory (VmRSS): {baseline:.1f} MB warm baseline, {after:.1f} MB after the abuse "
        f"({after - baseline:+.1f} MB), {again:.1f} MB after a clean wave once more ({again - baseline:+.1f} MB)."),
    ]
    if trimmed is not None:
        lines.append(
            f"After the abuse, glibc's malloc_trim(0) called in the server (gdb) took it to {trimmed:.1f} MB "
            f"({trimmed - baseline:+.1f} MB against the baseline): what it returned was free heap the C allocator "
            "had kept, not memory in use."
        )
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
