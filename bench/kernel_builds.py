"""What the fused Snake kernel is worth built three ways, and without it: side by side, one process, alternating.

Usage: python bench/kernel_builds.py MODEL_DIR [--seconds 10] [--threads 1 2] [--rounds 9]
                                     [--out bench/RESULTS_kernel_builds.md]

Builds csrc/snake.c into build/kernel_builds/<name>/_snake.so with the flags setup.py uses
(-O3 -fno-math-errno -fvisibility=hidden), three ways:
  * ``gcc-clones``: GCC as today: the loops cloned for x86-64-v4 (AVX-512), x86-64-v3 (AVX2+FMA) and
    baseline x86-64, one picked at load (what a manylinux wheel built by GCC holds);
  * ``gcc-baseline``: GCC with ``-march=x86-64 -DSNAKE_NO_CLONES``: baseline x86-64 (SSE2) code only;
  * ``clang``: clang (``CC_CLANG``, default ``clang``) at its default target (baseline x86-64): no clones.
Then, for each thread count, one codec per build plus one with Snake as plain ONNX nodes (``unfused``,
``SessionSettings(fused_snake=False)``), all on the same model. Each round times every codec once on the
same codes (decode, noise off) and the same audio (encode), in an order rotated each round; the report
gives the median time and the median over rounds of each round's ratio against ``gcc-clones`` and against
``unfused``. Decode and encode of MODEL_DIR (an exported 24 kHz model; random weights do not change the
speed). Needs gcc and clang on PATH (Linux x86-64).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_name
from export.signals import speech_like
from snac_onnx import SnacOnnx
from snac_onnx.model import kernels
from snac_onnx.model.sessions import SessionSettings

FLAGS = ["-O3", "-fno-math-errno", "-fvisibility=hidden", "-Wall", "-shared", "-fPIC"]
BUILDS = {
    "gcc-clones": ["gcc"],
    "gcc-baseline": ["gcc", "-march=x86-64", "-DSNAKE_NO_CLONES"],
    "clang": ["CLANG"],
}


def build(name: str, command: list[str], clang: str) -> Path:
    out = ROOT / "build" / "kernel_builds" / name / "_snake.so"
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler = [clang if part == "CLANG" else part for part in command]
    subprocess.run([*compiler, *FLAGS, str(ROOT / "csrc" / "snake.c"), "-o", str(out), "-lm", "-lpthread"], check=True)
    return out


def compiler_version(name: str) -> str:
    return subprocess.run([name, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]


def codec_with(folder: Path, threads: int, library: Path | None) -> SnacOnnx:
    """A codec whose sessions register ``library`` (None: Snake as plain ONNX nodes), both sessions built now."""
    settings = SessionSettings(intra_op_threads=threads, fused_snake=library is not None)
    original = kernels.snake_library
    kernels.snake_library = lambda: library  # sessions look the library up through this module attribute
    try:
        codec = SnacOnnx(folder, threads=threads, settings=settings)
        codec.load("encoder")
        codec.load("decoder")
    finally:
        kernels.snake_library = original
    assert codec.fused_snake == (library is not None)
    return codec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--clang", default="clang")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS_kernel_builds.md")
    args = parser.parse_args()
    if shutil.which("gcc") is None or shutil.which(args.clang) is None:
        sys.exit(f"needs gcc and {args.clang} on PATH")

    libraries = {name: build(name, command, args.clang) for name, command in BUILDS.items()}
    names = ["unfused", *libraries]
    rows: list[str] = []
    for threads in args.threads:
        codecs = {name: codec_with(args.model, threads, libraries.get(name)) for name in names}
        first = codecs["gcc-clones"]
        audio = speech_like(first.sample_rate, args.seconds, seed=0)
        codes = first.encode(audio)
        reference = first.decode(codes, noise=False)
        for name, codec in codecs.items():  # warm-up, and every build gives the same audio within float rounding
            diff = float(np.max(np.abs(codec.decode(codes, noise=False) - reference)))
            assert diff < 1e-4, (name, diff)
            codec.encode(audio)
        times: dict[tuple[str, str], list[float]] = {(op, n): [] for op in ("decode", "encode") for n in names}
        for round_index in range(args.rounds):
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in order:
                codec = codecs[name]
                start = time.perf_counter()
                codec.decode(codes, noise=False)
                times["decode", name].append(time.perf_counter() - start)
                start = time.perf_counter()
                codec.encode(audio)
                times["encode", name].append(time.perf_counter() - start)
            print(f"threads {threads}, round {round_index + 1}/{args.rounds} done", flush=True)
        for op in ("decode", "encode"):
            for name in names:
                own = times[op, name]
                vs_clones = statistics.median(a / b for a, b in zip(own, times[op, "gcc-clones"]))
                vs_unfused = statistics.median(a / b for a, b in zip(own, times[op, "unfused"]))
                rows.append(
                    f"| {op} | {threads} | {name} | {statistics.median(own):.3f} | {vs_clones:.2f} | {vs_unfused:.2f} |"
                )

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "csrc", "snac_onnx"], capture_output=True, text=True, cwd=ROOT)
    report = "\n".join(
        [
            "# The fused Snake kernel built three ways, and without it",
            "",
            f"- date: {datetime.date.today().isoformat()}",
            f"- CPU: {cpu_name()} ({platform.machine()})",
            f"- commit: {commit.strip()}{' (with uncommitted changes)' if dirty.stdout.strip() else ''}",
            f"- command: `python bench/kernel_builds.py {' '.join(sys.argv[1:])}`",
            f"- model: {args.model.name} (24 kHz, exported with seeded RANDOM weights: same speed as trained ones)",
            f"- audio: {args.seconds:g} s, batch 1; decode with noise off; onnxruntime {ort.__version__}; Python {platform.python_version()}",
            f"- compilers: {compiler_version('gcc')}; {compiler_version(args.clang)}",
            f"- {args.rounds} rounds; each round times every build once, in an order rotated each round",
            "",
            "time: median seconds; ratios: median over rounds of (this build's time / the other's time) in the",
            "same round, so above 1 means slower than gcc-clones (or than unfused).",
            "",
            "| op | threads | build | time (s) | / gcc-clones | / unfused |",
            "|---|---:|---|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    print(report)
    args.out.write_text(report)


if __name__ == "__main__":
    main()
