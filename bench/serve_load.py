"""Load test of ``snac-onnx serve``: N WebSocket clients streaming Orpheus ids at an LLM's real-time rate.

Usage: python bench/serve_load.py [--model models/snac_24khz] [--seconds 6] [--streams 1 2 4 6 8 10 12 14]
                                  [--jitter-ms 150] [--out bench/RESULTS_serve.md]

Side by side in one run, each on its own server process on 127.0.0.1 (started fresh, warmed up):

* ``pool``: ``snac-onnx serve`` with its defaults (the stream pool; on CPU a worker per core, one onnxruntime
  thread per call, one stream per call);
* ``pool, stacking on``: ``snac-onnx serve --batching on`` (the same, with steps of several streams stacked in
  one call where the measured cost of calls says it pays, as on a GPU);
* ``pool, 1 worker x N threads``: one worker whose calls use every core (onnxruntime's threads);
* ``pool, int8``: ``snac-onnx serve --precision int8`` (the export's int8 variant; its clients are checked against the
  int8 offline decode), not run unless named in ``--schemes``;
* ``orpheus-ref``: bench/orpheus_ref_server.py, the reference Orpheus scheme (the last 28 ids decoded every 7, one
  thread per stream, on the same model and fused kernels; onnxruntime at 1 thread per stream).

For each N, every client streams its utterance's ids (one frame of 7 ids per frame duration, as an LLM
generating at exactly real time; starts spread over one second) and checks its audio against the offline
decode of its codes (noise off): max abs error, samples missing. Measured per N: time to first audio from the
first id sent (p50, p95), stalls (a client's player starts ``--jitter-ms`` after its first audio, as players
prebuffer; a chunk arriving after its playback time is a stall; stalled clients and their worst lateness), the
server's CPU (percent of one core), batched rows per step, step and queue times (the server's /metrics).
N grows while no client stalled, stopping after the first N that stalls. Then a fault run on the pool: well-behaved
clients beside one that disconnects mid-stream and one that sends garbage (both at real time until then; the
three together two below the largest stall-free N), two that send everything at once, and three that open
streams beyond the server's limit; the well-behaved ones must
still be exact and never stall, and the server's memory (VmRSS) must come back to its baseline.
Every run is bounded in count and time. Writes a markdown report to ``--out`` and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import websockets

from bench.machine import cpu_name
from export.signals import speech_like
from snac_onnx import SnacOnnx
from snac_onnx.layouts import codes_to_tokens

RUN_TIMEOUT = 120.0  # seconds; no run of clients may take longer
UTTERANCES = 4  # distinct utterances, cycled over the clients


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server process on loopback: started, probed until ready, measured (/proc), stopped."""

    def __init__(self, name: str, cmd: list[str], port: int) -> None:
        self.name, self.port = name, port
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name}: exited {self.proc.returncode}: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{name}: not ready in 90 s")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]

    def metrics(self) -> dict[str, float]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _client(
    url: str, frames: list[list[int]], start: float, period: float, jitter: float, mode: str, rate: int
) -> dict[str, object]:
    """One client. ``mode``: ``good``, ``leave`` (disconnects after a third), ``garbage`` (a bad message after a
    third), ``flood`` (everything at once). Returns what it measured."""
    await asyncio.sleep(start)
    result: dict[str, object] = {"mode": mode}
    arrivals: list[tuple[float, int]] = []
    audio = bytearray()
    try:
        async with websockets.connect(url, max_size=None, open_timeout=30) as ws:
            first_message = json.loads(await ws.recv())
            if first_message.get("type") == "error":  # refused: the close code follows
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.recv()
                result["code"] = ws.close_code
                return result
            t0 = time.monotonic()
            cut = len(frames) // 3

            async def send() -> None:
                if mode == "flood":
                    await ws.send(json.dumps({"ids": [i for f in frames for i in f]}))
                    await ws.send('{"end": true}')
                    return
                for i, frame in enumerate(frames):
                    if mode in ("leave", "garbage") and i == cut:
                        if mode == "garbage":
                            await ws.send("\x00 this is not JSON")
                            return
                        await ws.close()
                        return
                    delay = t0 + i * period - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await ws.send(json.dumps({"ids": frame}))
                await ws.send('{"end": true}')

            sender = asyncio.create_task(send())
            try:
                async for message in ws:
                    if isinstance(message, bytes):
                        arrivals.append((time.monotonic(), len(message) // 4))
                        audio += message
            except websockets.ConnectionClosed:
                pass
            sender.cancel()
            result["code"] = ws.close_code
    except websockets.ConnectionClosed as closed:
        result["code"] = closed.rcvd.code if closed.rcvd else None
    except OSError as error:
        result["code"] = f"error {error}"
        return result
    if not arrivals:
        return result
    got = np.frombuffer(bytes(audio), "<f4")
    result["ttfa"] = arrivals[0][0] - t0
    playback = arrivals[0][0] + jitter
    played, worst, worst_at = 0, -1e9, 0.0
    for when, n in arrivals:
        if when - (playback + played / rate) > worst:
            worst, worst_at = when - (playback + played / rate), when - t0
        played += n
    result["lateness"] = worst
    result["worst_at"] = worst_at  # s after the client connected
    result["samples"] = got.size
    result["audio"] = got
    return result


def _errors(got: np.ndarray, offline: np.ndarray, offset: int) -> tuple[float, int, int]:
    seg = offline[offset : offset + got.size]
    err = float(np.abs(got[: seg.size] - seg).max()) if seg.size else float("nan")
    return err, offset, max(0, offline.size - offset - got.size)


async def _wave(url: str, jobs: list[tuple[list[list[int]], np.ndarray, float, str]], period: float, jitter: float, rate: int):
    return await asyncio.wait_for(
        asyncio.gather(*(_client(url, f, s, period, jitter, m, rate) for f, _, s, m in jobs)), RUN_TIMEOUT
    )


def _delta(after: dict[str, float], before: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def run_scheme(server: Server, utts, n: int, period: float, jitter: float, rate: int, offset: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    jobs = [(utts[k % len(utts)][0], utts[k % len(utts)][1], float(rng.uniform(0, 1.0)), "good") for k in range(n)]
    url = f"ws://127.0.0.1:{server.port}/v1/stream?preset=orpheus&format=f32le"
    m0, c0, w0 = server.metrics(), server.cpu_seconds(), time.monotonic()
    results = asyncio.run(_wave(url, jobs, period, jitter, rate))
    wall, cpu, m1 = time.monotonic() - w0, server.cpu_seconds() - c0, server.metrics()
    ttfa = sorted(r["ttfa"] for r in results if "ttfa" in r)
    late = [r.get("lateness", float("inf")) for r in results]
    errs = []
    missing = [0, 0]
    for (_frames, offline, _, _), r in zip(jobs, results):
        if "audio" in r:
            e, ms, me = _errors(r["audio"], offline, offset)
            errs.append(e)
            missing = [max(missing[0], ms), max(missing[1], me)]
        else:
            errs.append(float("inf"))
    calls = _delta(m1, m0, "snac_batch_rows_count")
    return {
        "n": n,
        "ttfa50": 1000 * statistics.median(ttfa) if ttfa else float("nan"),
        "ttfa95": 1000 * ttfa[min(len(ttfa) - 1, int(0.95 * len(ttfa)))] if ttfa else float("nan"),
        "stalled": sum(1 for x in late if x > 0),
        "worst_ms": 1000 * max(late),
        "cpu": 100 * cpu / wall,
        "rows": _delta(m1, m0, "snac_batch_rows_sum") / calls if calls else float("nan"),
        "step_ms": 1000 * _delta(m1, m0, "snac_step_seconds_sum") / calls if calls else float("nan"),
        "queue_ms": 1000 * _delta(m1, m0, "snac_queue_seconds_sum") / _delta(m1, m0, "snac_queue_seconds_count")
        if calls
        else float("nan"),
        "err": max(errs),
        "missing": missing,
        "codes": sorted({str(r.get("code")) for r in results}),
    }


def fault_run(model: str, utts, n_good: int, period: float, jitter: float, rate: int) -> list[str]:
    faulty = {"leave": 1, "garbage": 1, "flood": 2}  # leave and garbage stream at real time until they misbehave
    if os.environ.get("FAULTS"):  # e.g. FAULTS=leave=2,garbage=0,flood=1 (to look at one kind alone)
        faulty = {k: int(v) for k, v in (kv.split("=") for kv in os.environ["FAULTS"].split(","))}
    extra = 3  # beyond max-streams
    limit = n_good + sum(faulty.values())
    port = _free_port()
    server = Server(
        "pool",
        [sys.executable, "-m", "snac_onnx", "serve", "-m", model, "--port", str(port), "--max-streams", str(limit),
         "--log-level", "error"],
        port,
    )
    try:
        url = f"ws://127.0.0.1:{server.port}/v1/stream?preset=orpheus&format=f32le"
        rng = np.random.default_rng(7)
        warm = [(utts[k % len(utts)][0], utts[k % len(utts)][1], float(rng.uniform(0, 1.0)), "good") for k in range(n_good)]
        asyncio.run(_wave(url, warm, period, jitter, rate))  # a clean run first: the baseline memory after it
        time.sleep(1.0)
        baseline = server.rss_mb()
        jobs = list(warm)
        k = n_good
        for mode, count in faulty.items():
            for _ in range(count):
                jobs.append((utts[k % len(utts)][0], utts[k % len(utts)][1], float(rng.uniform(0, 0.5)), mode))
                k += 1
        for _ in range(extra):  # they connect once every other stream is open
            jobs.append((utts[0][0], utts[0][1], 1.5, "good"))
        results = asyncio.run(_wave(url, jobs, period, jitter, rate))
        time.sleep(1.5)
        after = server.rss_mb()
        asyncio.run(_wave(url, warm, period, jitter, rate))  # the clean run again: memory must not keep growing
        time.sleep(1.0)
        again = server.rss_mb()
        metrics = server.metrics()
        active = metrics.get("snac_streams_active", float("nan"))
    finally:
        server.stop()
    lines = ["", f"Fault run (pool, {n_good} well-behaved clients, server --max-streams {limit}):", ""]
    lines.append("| clients | mode | close codes | exact (max abs) | stalled | worst lateness ms |")
    lines.append("|---|---|---|---|---:|---:|")
    groups: dict[str, list[tuple[tuple, dict]]] = {}
    for i, (job, r) in enumerate(zip(jobs, results)):
        label = job[3] if i < n_good + sum(faulty.values()) else "beyond the limit"
        if label == "good":
            label = "well-behaved"
        groups.setdefault(label, []).append((job, r))
    for label, rows in groups.items():
        codes = sorted({str(r.get("code")) for _, r in rows})
        errs = [_errors(r["audio"], job[1], 0)[0] for job, r in rows if "audio" in r and label in ("well-behaved", "flood")]
        full = all(r.get("samples") == job[1].size for job, r in rows) if label in ("well-behaved", "flood") else None
        stalled = sum(1 for _, r in rows if r.get("lateness", -1) > 0) if label == "well-behaved" else "-"
        worst = f"{1000 * max(r.get('lateness', float('nan')) for _, r in rows):.0f}" if label == "well-behaved" else "-"
        exact = f"{max(errs):.1e}{'' if full else ' (incomplete!)'}" if errs else "-"
        lines.append(f"| {len(rows)} | {label} | {', '.join(codes)} | {exact} | {stalled} | {worst} |")
    lines.append("")
    lines.append(
        f"Server memory (VmRSS): {baseline:.0f} MB after a clean run, {after:.0f} MB after the fault run "
        f"({after - baseline:+.0f} MB), {again:.0f} MB after the clean run once more ({again - baseline:+.0f} MB); "
        f"streams active afterwards: {active:.0f}."
    )
    return lines


def utterances(
    model: str, seconds: float, precision: str = "fp32"
) -> tuple[list[tuple[list[list[int]], np.ndarray]], float, int]:
    """The load's utterances (speech-like signals encoded by ``model``): per utterance its Orpheus ids in frames and
    its offline decode (noise off) at ``precision``; and the frame period (s) and sample rate."""
    codec = SnacOnnx(model, precision=precision)
    config = codec.config
    utts = []
    for seed in range(UTTERANCES):
        codes = codec.encode(speech_like(config.sample_rate, seconds, seed=10 + seed))
        ids = codes_to_tokens(codes, codec.vq_strides, "orpheus").tolist()
        frames = [ids[i : i + config.frame_tokens] for i in range(0, len(ids), config.frame_tokens)]
        utts.append((frames, codec.decode(codes, noise=False)))
    codec.close()
    return utts, config.samples_per_frame / config.sample_rate, config.sample_rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/snac_24khz")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each utterance")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 6, 8, 10, 12, 14])
    parser.add_argument("--jitter-ms", type=float, default=150.0, help="client playback buffer (ms after first audio)")
    parser.add_argument(
        "--schemes", nargs="+", default=["pool", "pool, stacking on", f"pool, 1 worker x {os.cpu_count()} threads", "orpheus-ref"]
    )
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--faults-only", type=int, metavar="N", help="only the fault run, with N well-behaved clients")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS_serve.md")
    args = parser.parse_args()

    utts, period, rate = utterances(args.model, args.seconds)
    config = SnacOnnx(args.model).config
    spf, jitter = config.samples_per_frame, args.jitter_ms / 1000

    commands = {  # the server's defaults on CPU: a worker per core, one onnxruntime thread per call, no stacking
        "pool": [],
        "pool, stacking on": ["--batching", "on"],
        f"pool, 1 worker x {os.cpu_count()} threads": ["--workers", "1", "--threads", str(os.cpu_count())],
        "pool, int8": ["--precision", "int8"],  # the export's int8 variant (python -m export ... --precision int8)
    }
    int8_utts = utterances(args.model, args.seconds, "int8")[0] if "pool, int8" in args.schemes else []
    header = [
        f"# snac-onnx serve under load ({config.sample_rate // 1000} kHz, {args.model})",
        "",
        (f"Machine: {cpu_name()}, {os.cpu_count()} cores; "
        f"{time.strftime('%Y-%m-%d')}. Written by `python bench/serve_load.py` (one run, clients and servers on "
        "this machine, loopback)."),
        "",
        (f"Each client streams a {args.seconds:.0f} s utterance's Orpheus ids at real time (7 ids every "
        f"{1000 * period:.1f} ms), starts within one second, and starts playing {args.jitter_ms:.0f} ms after its first audio. "
        "Time to first audio counts from the first id sent. CPU is the server process's, in % of one core. "
        "Rows, step and queue are the server's means over the run (pool only)."),
        "",
        ("| scheme | N | first audio p50 ms | p95 ms | stalled | worst lateness ms | server CPU % | rows per step "
        "| step ms | queue ms | max abs vs offline | missing start / end | close codes |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    print("\n".join(header), flush=True)
    rows, best = [], {}
    if args.faults_only:
        faults = fault_run(args.model, utts, args.faults_only, period, jitter, rate)
        print("\n".join(faults), flush=True)
        return 0
    for scheme in args.schemes:
        port = _free_port()
        if scheme == "orpheus-ref":
            cmd = [sys.executable, str(ROOT / "bench" / "orpheus_ref_server.py"), "--model", args.model, "--port", str(port)]
            offset = spf
        else:
            cmd = [sys.executable, "-m", "snac_onnx", "serve", "-m", args.model, "--port", str(port),
                   "--log-level", "error", *commands[scheme]]
            offset = 0
        server = Server(scheme, cmd, port)
        scheme_utts = int8_utts if scheme == "pool, int8" else utts  # each checked against its own offline decode
        try:
            run_scheme(server, scheme_utts, 1, period, jitter, rate, offset, seed=99)  # warm-up
            best[scheme] = 0
            for n in args.streams:
                r = run_scheme(server, scheme_utts, n, period, jitter, rate, offset, seed=n)
                fmt = lambda v, spec: "-" if v != v else format(v, spec)  # noqa: E731  # NaN: not measured
                row = (
                    f"| {scheme} | {n} | {fmt(r['ttfa50'], '.0f')} | {fmt(r['ttfa95'], '.0f')} | {r['stalled']} "
                    f"| {fmt(r['worst_ms'], '.0f')} | {fmt(r['cpu'], '.0f')} | {fmt(r['rows'], '.2f')} "
                    f"| {fmt(r['step_ms'], '.1f')} | {fmt(r['queue_ms'], '.1f')} | {r['err']:.1e} "
                    f"| {r['missing'][0]} / {r['missing'][1]} | {', '.join(r['codes'])} |"
                )
                rows.append(row)
                print(row, flush=True)
                if r["stalled"]:
                    break
                best[scheme] = n
        finally:
            server.stop()
    summary = ["", "Largest N with no stall: " + "; ".join(f"{k} {v}" for k, v in best.items()) + "."]
    print("\n".join(summary), flush=True)
    faults: list[str] = []
    if not args.no_faults and "pool" in best:
        # the real-time load (well-behaved, and the leave and garbage clients until they misbehave) two below the
        # largest stall-free N; the floods come on top, as far ahead of real time as the server lets them
        faults = fault_run(args.model, utts, max(1, best["pool"] - 4), period, jitter, rate)
        print("\n".join(faults), flush=True)
    args.out.write_text("\n".join(header + rows + summary + faults) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
