"""Streaming decode, side by side: the stateful stream, the window stream, and the reference Orpheus scheme.

Usage: python bench/streaming.py [MODEL_DIR ...] [--seconds 30] [--threads 1 2] [--load-seconds 8]
                                 [--max-streams 6] [--repeats 3] [--out bench/RESULTS_streaming.md]

For each exported model and intra-op thread count, the codes of ``--seconds`` of speech-like audio
are pushed frame by frame (as a TTS model emits them) through three schemes on the same ONNX export:

* ``stateful``: ``SnacOnnx.stream()`` on the export's stream graph (exact; nothing recomputed); and with
  ``steps_per_call=2`` (one graph call per two steps: less compute, one step more latency);
* ``window``: ``SnacOnnx.stream(mode="window")`` (exact; chunks of 4 frames with full context);
* ``orpheus-ref``: the reference Orpheus decoder every server copies (decode the last 4 frames every
  frame, keep samples ``spf:2*spf``), on the plain ONNX function bodies (no fused kernel), as
  orpheus-cpp does with an ONNX file. Its first frame and its last two are never played.

Measured for each: first audio (frames and tokens pushed, and the compute of the push that returned
it); step latency (median, p95 of pushes that returned audio); x real time of the whole stream
(compute only); its cost against the offline decode of the same codes (each run of a scheme sits between
two offline decodes and is compared with their mean; a scheme whose run takes under 10 s runs ``--repeats``
times and the median ratio is reported, since this machine's speed drifts within minutes);
max error against the offline decode (noise off) over the samples it produced, aligned; audio
missing at the start and the end; and how many real-time streams fit on this machine: N Python
threads share one model (sessions with ``--threads`` intra-op threads), each fed one frame every
frame's duration for ``--load-seconds``; a stream stalls when a piece of audio arrives after the
moment its playback would need it. Playback starts one step of the scheme's audio after its first audio
(a one-step jitter buffer: audio comes in steps, so a player fed at exactly real time needs one). N grows from 1 while no
stream stalled, up to ``--max-streams``. Every run is bounded in count and time.
Writes a markdown report to ``--out`` and prints it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_name
from export.signals import speech_like
from snac_onnx import SnacOnnx
from snac_onnx.model.sessions import SessionSettings

REF_FRAMES = 4  # the reference decodes 28 tokens = 4 frames per call


class OrpheusReference:
    """The reference Orpheus scheme over per-frame codes: after each frame from the 4th on, decode the last
    4 frames and keep samples ``[spf, 2 * spf)`` (frame ``i - 2`` of the window ending at frame ``i``)."""

    def __init__(self, codec: SnacOnnx) -> None:
        self.codec = codec
        self.frames: list[list[np.ndarray]] = []
        self.spf = codec.samples_per_frame

    def push(self, frame_codes: list[np.ndarray]) -> np.ndarray:
        self.frames.append(frame_codes)
        if len(self.frames) < REF_FRAMES:
            return np.zeros(0, np.float32)
        window = self.frames[-REF_FRAMES:]
        codes = [np.concatenate([f[i] for f in window]) for i in range(len(frame_codes))]
        self.frames = self.frames[-REF_FRAMES:]
        return self.codec.decode(codes, noise=False)[self.spf : 2 * self.spf]

    def flush(self) -> np.ndarray:
        return np.zeros(0, np.float32)


def _frames(codes: list[np.ndarray], per: tuple[int, ...]) -> list[list[np.ndarray]]:
    return [[c[f * p : (f + 1) * p] for c, p in zip(codes, per)] for f in range(codes[0].shape[0] // per[0])]


def _run(make: Callable[[], object], frames: list[list[np.ndarray]]) -> dict[str, object]:
    """Push every frame as fast as possible; per push: compute time and samples returned."""
    stream = make()
    times, sizes, pieces = [], [], []
    for frame in frames:
        t0 = time.perf_counter()
        out = stream.push(frame)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t0)
        sizes.append(out.size)
        pieces.append(out)
    t0 = time.perf_counter()
    tail = stream.flush()  # type: ignore[attr-defined]
    times.append(time.perf_counter() - t0)
    pieces.append(tail)
    return {"times": times, "sizes": sizes, "audio": np.concatenate(pieces)}


def _stall_free(
    make: Callable[[], object], frames: list[list[np.ndarray]], spf: int, rate: int, n: int, buffer: float
) -> tuple[int, float]:
    """Run ``n`` streams at once, each fed at real time; returns (streams that never stalled, worst lateness ms).

    Each stream's player starts ``buffer`` seconds (one step of the scheme's audio) after its first audio.
    """
    period = spf / rate
    results: list[float] = [0.0] * n
    start_barrier = threading.Barrier(n)

    def one(k: int) -> None:
        stream = make()
        start_barrier.wait()
        t_start = time.perf_counter()
        first: float | None = None
        played = 0  # samples delivered
        worst = 0.0
        for i, frame in enumerate(frames):
            due = t_start + (i + 1) * period  # an LLM at real time: frame i is out at (i + 1) periods
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            out = stream.push(frame)  # type: ignore[attr-defined]
            now = time.perf_counter()
            if out.size:
                if first is None:
                    first = now
                deadline = first + buffer + played / rate  # playback of sample `played` starts then
                worst = max(worst, now - deadline)
                played += out.size
        results[k] = worst

    threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    ok = sum(1 for w in results if w <= 0.0)
    return ok, 1000 * max(results)


def _errors(audio: np.ndarray, offline: np.ndarray, offset: int) -> tuple[float, int, int]:
    """(max abs error, samples missing at start, at end) of ``audio`` placed at ``offset`` of ``offline``."""
    seg = offline[offset : offset + audio.size]
    err = float(np.abs(audio[: seg.size] - seg).max()) if seg.size else float("nan")
    return err, offset, max(0, offline.size - offset - audio.size)


def bench_model(folder: Path, threads: int, seconds: float, load_seconds: float, max_streams: int, repeats: int) -> list[str]:
    codec = SnacOnnx(folder, threads=threads)
    plain = SnacOnnx(folder, threads=threads, settings=SessionSettings(intra_op_threads=threads, fused_snake=False))
    config = codec.config
    per, spf, rate = config.codes_per_frame, config.samples_per_frame, config.sample_rate
    codes = codec.encode(speech_like(rate, seconds, seed=3))
    n_frames = codes[0].shape[0] - codes[0].shape[0] % config.frames_multiple
    codes = [c[: n_frames * p] for c, p in zip(codes, per)]
    frames = _frames(codes, per)
    audio_seconds = n_frames * spf / rate

    codec.decode(codes, noise=False)  # warm-up
    offline_times = []

    def offline_once() -> float:
        t0 = time.perf_counter()
        codec.decode(codes, noise=False)
        offline_times.append(time.perf_counter() - t0)
        return offline_times[-1]

    offline = codec.decode(codes, noise=False)
    offline_once()

    step = codec.manifest.stream.step_frames if codec.manifest.stream is not None else 1
    window_chunk = codec.stream(mode="window").chunk_frames
    schemes: dict[str, tuple[Callable[[], object], int, int]] = {  # (make, offset, frames per output step)
        "stateful": (lambda: codec.stream(mode="stateful"), 0, step),
        "stateful, 2 steps per call": (lambda: codec.stream(mode="stateful", steps_per_call=2), 0, 2 * step),
        "window": (lambda: codec.stream(mode="window"), 0, window_chunk),
        "orpheus-ref": (lambda: OrpheusReference(plain), spf, 1),  # its first output is frame 1
    }
    rows = []
    for name, (make, offset, step_frames) in schemes.items():
        _run(make, frames[: 2 * REF_FRAMES + 8])  # warm-up
        # This machine's speed drifts within minutes: a cheap scheme runs `repeats` times, each run between two
        # offline decodes; its cost is the median over runs of (run / mean of the decodes around it).
        runs, ratios, before = [], [], offline_times[-1]
        while True:
            result = _run(make, frames)
            after = offline_once()
            runs.append(result)
            ratios.append(sum(result["times"]) / (0.5 * (before + after)))  # type: ignore[arg-type]
            before = after
            if len(runs) >= repeats or sum(result["times"]) > 10.0:  # type: ignore[arg-type]
                break
        result = runs[0]
        times, sizes = result["times"], result["sizes"]  # type: ignore[assignment]
        first = next(i for i, s in enumerate(sizes) if s)
        producing = sorted(t for run in runs for t, s in zip(run["times"], run["sizes"]) if s)  # type: ignore[call-overload]
        total = statistics.median(sum(run["times"]) for run in runs)  # type: ignore[arg-type]
        err, missing_start, missing_end = _errors(result["audio"], offline, offset)  # type: ignore[arg-type]
        load_frames = frames[: max(REF_FRAMES + 1, int(load_seconds * rate / spf))]
        fit, lateness = 0, 0.0
        for n in range(1, max_streams + 1):
            ok, late = _stall_free(make, load_frames, spf, rate, n, step_frames * spf / rate)
            if ok < n:
                lateness = late
                break
            fit, lateness = n, late
        rows.append(
            f"| {codec.name} | {threads} | {name} | {first + 1} ({(first + 1) * config.frame_tokens}) "
            f"| {1000 * times[first]:.1f} | {1000 * statistics.median(producing):.1f} "
            f"| {1000 * producing[min(len(producing) - 1, int(0.95 * len(producing)))]:.1f} "
            f"| {audio_seconds / total:.1f}x | {statistics.median(ratios):.2f} | {err:.1e} | {missing_start} | {missing_end} "
            f"| {fit}{'+' if fit == max_streams else ''} | {lateness:.0f} |"
        )
        print(rows[-1], flush=True)
    offline_s = statistics.median(offline_times)
    rows.append(
        f"| {codec.name} | {threads} | offline decode | - | - | - | - | {audio_seconds / offline_s:.1f}x | 1.00 "
        "| 0 | 0 | 0 | - | - |"
    )
    print(rows[-1], flush=True)
    codec.close()
    plain.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path, default=[Path("models/snac_24khz")])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30.0], help="per model (the last repeats)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--load-seconds", type=float, default=8.0)
    parser.add_argument("--max-streams", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each scheme that takes under 10 s")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS_streaming.md")
    args = parser.parse_args()
    header = [
        (
            "| model | threads | scheme | first audio: frames (tokens) | first audio compute (ms) | step median (ms) "
            "| step p95 (ms) | x real time | cost / offline | max abs vs offline | missing start (samples) "
            "| missing end (samples) | real-time streams without a stall | worst lateness at that N, or at the "
            "first N that stalled (ms) |"
        ),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(header), flush=True)
    rows = []
    for i, folder in enumerate(args.models):
        seconds = args.seconds[min(i, len(args.seconds) - 1)]
        for threads in args.threads:
            rows += bench_model(folder, threads, seconds, args.load_seconds, args.max_streams, args.repeats)
    report = [
        "# Streaming decode: stateful vs window vs the reference Orpheus scheme",
        "",
        (
            f"`python bench/streaming.py {' '.join(map(str, args.models))} --seconds {' '.join(map(str, args.seconds))} "
            f"--threads {' '.join(map(str, args.threads))} --load-seconds {args.load_seconds:g} "
            f"--max-streams {args.max_streams} --repeats {args.repeats}`"
        ),
        "",
        (
            f"Machine: {os.cpu_count()} CPUs ({cpu_name()}), Python {platform.python_version()}. Models: random-init exports "
            "of the official configs (same shapes and cost as the trained ones). Noise off. Codes of --seconds of "
            "speech-like audio pushed one frame per call."
        ),
        "",
        *header,
        *rows,
        "",
    ]
    args.out.write_text("\n".join(report))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
