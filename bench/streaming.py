"""Streaming decode latency and real-time factor (snac_onnx, CPU).

Usage: python bench/streaming.py [MODEL_DIR] [--seconds 10] [--threads 1 2]

Pushes the codes of --seconds of speech-like audio frame by frame (as a TTS
model would) and measures:
  * chunk latency: time from the push of the frame that completes a chunk (its
    lookahead included) to the return of that chunk's audio (median, p95);
  * streaming vs offline: wall time of the whole stream and of one offline
    decode of the same codes, as multiples of real time;
  * the lookahead the default context costs, in ms of audio.
Noise off (deterministic), batch 1. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.signals import speech_like
from snac_onnx import SnacOnnx
from snac_onnx.layouts import codes_to_tokens, frame_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", nargs="?", type=Path, default=Path("models/snac_24khz"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk-frames", type=int, default=None)
    args = parser.parse_args()

    print("| model | threads | chunk (ms) | lookahead (ms) | chunk latency median (ms) | p95 (ms) | stream x real time | offline x real time | stream / offline time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for threads in args.threads:
        codec = SnacOnnx(args.model, threads=threads)
        pcm = speech_like(codec.sample_rate, args.seconds, seed=3)
        codes = codec.encode(pcm)
        frames = codes[0].shape[0]
        frames -= frames % codec.config.frames_multiple
        codes = [c[: frames * codec.vq_strides[0] // s] for c, s in zip(codes, codec.vq_strides)]
        tokens = codes_to_tokens(codes, codec.vq_strides)
        step = frame_size(codec.vq_strides)
        seconds = frames * codec.samples_per_frame / codec.sample_rate

        codec.decode(codes, noise=False)  # warm-up
        start = time.perf_counter()
        codec.decode(codes, noise=False)
        offline = time.perf_counter() - start

        warm = codec.stream(chunk_frames=args.chunk_frames)
        for i in range(0, tokens.size, step):
            warm.push_tokens(tokens[i : i + step])
        warm.flush()

        stream = codec.stream(chunk_frames=args.chunk_frames)
        latencies = []
        start = time.perf_counter()
        for i in range(0, tokens.size, step):
            t0 = time.perf_counter()
            out = stream.push_tokens(tokens[i : i + step])
            if out.size:
                latencies.append(time.perf_counter() - t0)
        stream.flush()
        total = time.perf_counter() - start
        latencies.sort()
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        print(
            f"| {codec.name} | {threads} | {stream.chunk_ms:.0f} | {stream.lookahead_ms:.0f} "
            f"| {1000 * statistics.median(latencies):.1f} | {1000 * p95:.1f} "
            f"| {seconds / total:.1f}x | {seconds / offline:.1f}x | {total / offline:.2f} |"
        )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
