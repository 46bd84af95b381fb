"""Different-length batches: one ``encode(list)`` / ``decode(list, lengths=)`` call against a Python loop.

Usage: python bench/ragged.py [MODEL_DIR] [--threads 2] [--clips 16] [--reps 3] [--out bench/RESULTS_ragged.md]

16 speech-like clips of 0.5-8 s (seeded), same threads for both; the loop calls ``encode(clip)`` and
``decode(codes, length=n)`` per clip, the list call passes them all at once (planned and batched by the
runner). Results are checked equal before timing (codes equal, audio equal, noise off). No PyTorch.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_name
from export.signals import speech_like
from snac_onnx import SnacOnnx


def median_seconds(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=Path("models/snac_24khz"))
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS_ragged.md")
    args = parser.parse_args()

    seconds = np.random.default_rng(0).uniform(0.5, 8.0, args.clips)
    lines = [
        "# Different-length batches: list call vs a Python loop",
        "",
        (
            f"CPU: {cpu_name()} ({os.cpu_count()} cores); Python {platform.python_version()}; "
            f"onnxruntime {ort.__version__}; `python bench/ragged.py {' '.join(sys.argv[1:])}`"
        ),
        "",
        f"{args.clips} speech-like clips of {', '.join(f'{s:.1f}' for s in seconds)} s; median of {args.reps} after a warm-up.",
        "",
        "| model | threads | clips (total s) | op | loop (s) | list (s) | ratio loop / list |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for threads in args.threads:
        codec = SnacOnnx(args.model, threads=threads)
        clips = [speech_like(codec.sample_rate, float(s), seed=40 + i) for i, s in enumerate(seconds)]
        lengths = [c.shape[0] for c in clips]
        list_codes = codec.encode(clips)
        for clip, codes in zip(clips, list_codes, strict=True):
            alone = codec.encode(clip)
            assert all(np.array_equal(x, y) for x, y in zip(alone, codes, strict=True)), "list encode differs"
        list_audio = codec.decode(list_codes, lengths=lengths, noise=False)
        for codes, n, audio in zip(list_codes, lengths, list_audio, strict=True):
            assert np.array_equal(codec.decode(codes, length=n, noise=False), audio), "list decode differs"
        enc_loop = median_seconds(lambda: [codec.encode(c) for c in clips], args.reps)
        enc_list = median_seconds(lambda: codec.encode(clips), args.reps)
        dec_loop = median_seconds(
            lambda: [codec.decode(c, length=n, noise=False) for c, n in zip(list_codes, lengths, strict=True)],
            args.reps,
        )
        dec_list = median_seconds(lambda: codec.decode(list_codes, lengths=lengths, noise=False), args.reps)
        total = f"{len(clips)} ({sum(seconds):.1f} s)"
        for op, loop, lst in (("encode", enc_loop, enc_list), ("decode", dec_loop, dec_list)):
            lines.append(f"| {codec.name} | {threads} | {total} | {op} | {loop:.3f} | {lst:.3f} | {loop / lst:.2f}x |")
            print(lines[-1], flush=True)
    lines += ["", "Results were checked equal (codes, and audio with noise off) before timing."]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
