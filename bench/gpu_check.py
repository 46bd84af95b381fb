"""Every GPU check in one go (run by bench/gpu.sh on a machine with an NVIDIA GPU; a few minutes).

Usage: python bench/gpu_check.py MODEL_DIR [--out gpu.md] [--provider CUDAExecutionProvider] [--seconds 10]

1. Providers: what onnxruntime offers, and that each session really runs on the provider asked for
   (``active_providers``; onnxruntime and onnxruntime-gpu installed together silently give CPU only).
2. Parity, GPU against CPU on the same export: decode (offline), the stream graph pushed frame by frame, and
   encode (codes equal, or the share that differs).
3. The fp16 variant's error against fp32 (when the export holds one: ``python -m export ... --precision fp16``).
4. Batched stream steps on the GPU: one call of B rows (B = 1, 8, 64), ms per call and steps per second.
5. The stream pool on the GPU: S streams pushed all at once, decoded to the end, with batching and without:
   seconds of audio decoded per second, and rows per call.

Writes a markdown report (``--out``) and prints it. CPU-only machines: ``--provider CPUExecutionProvider``
runs the same script against the CPU (a smoke test of the script itself; its numbers are not GPU numbers).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snac_onnx import SnacOnnx, StreamPool
from snac_onnx.model.sessions import onnxruntime


def _codes(codec: SnacOnnx, frames: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, codec.codebook_size, n) for n in codec.config.code_lengths(frames)]


def _stream(codec: SnacOnnx, codes: list[np.ndarray]) -> np.ndarray:
    stream = codec.stream(mode="stateful")
    per = codec.config.codes_per_frame
    pieces = [stream.push_codes([c[f * p : (f + 1) * p] for c, p in zip(codes, per)]) for f in range(codes[0].size // per[0])]
    return np.concatenate([*pieces, stream.flush()])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--provider", default="CUDAExecutionProvider")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per parity item and per pool stream")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--out", type=Path, default=Path("gpu.md"))
    args = parser.parse_args()
    ort = onnxruntime()
    lines = [f"# GPU checks ({args.model}, provider {args.provider})", ""]

    def say(text: str = "") -> None:
        lines.append(text)
        print(text, flush=True)

    say(f"onnxruntime {ort.__version__}; available providers: {ort.get_available_providers()}")
    if args.provider not in ort.get_available_providers():
        say(f"**{args.provider} is not available**: install onnxruntime-gpu alone (not beside onnxruntime).")
        args.out.write_text("\n".join(lines) + "\n")
        return 1
    cpu = SnacOnnx(args.model, providers=["CPUExecutionProvider"]).load()
    providers = list(dict.fromkeys([args.provider, "CPUExecutionProvider"]))
    gpu = SnacOnnx(args.model, providers=providers).load()
    say(f"sessions run on: {gpu.active_providers}")
    on_gpu = all(p[0] == args.provider for p in gpu.active_providers.values())
    say(f"every graph on {args.provider}: {'yes' if on_gpu else '**no**'}")
    say()

    config = gpu.config
    frames = max(config.frames_multiple, int(args.seconds * config.sample_rate) // config.samples_per_frame)
    frames -= frames % config.frames_multiple
    codes = _codes(gpu, frames, seed=0)
    say("| check | max abs (GPU vs CPU) | note |")
    say("|---|---:|---|")
    a, b = gpu.decode(codes, noise=False), cpu.decode(codes, noise=False)
    say(f"| decode, {frames} frames | {np.abs(a - b).max():.2e} | |")
    a, b = _stream(gpu, codes), _stream(cpu, codes)
    say(f"| stream graph, frame by frame | {np.abs(a - b).max():.2e} | vs offline GPU decode {np.abs(a - gpu.decode(codes, noise=False)).max():.2e} |")
    pcm = cpu.decode(codes, noise=False)
    ca, cb = gpu.encode(pcm), cpu.encode(pcm)
    differ = sum(int((x != y).sum()) for x, y in zip(ca, cb)) / sum(x.size for x in ca)
    say(f"| encode | - | {100 * differ:.2f} % of codes differ (float error at codebook ties) |")
    if "fp16" in gpu.manifest.raw.get("variants", {}):
        half = SnacOnnx(args.model, providers=providers, precision="fp16")
        err = np.abs(half.decode(codes, noise=False) - gpu.decode(codes, noise=False)).max()
        say(f"| fp16 variant decode vs fp32 | {err:.2e} | |")
    else:
        say("| fp16 variant | - | not in this export (python -m export ... --precision fp16) |")
    say()

    spec = gpu.manifest.stream
    assert spec is not None
    session = gpu.session("stream")
    say("| batched stream step | rows | ms per call | steps per second | x real time per stream |")
    say("|---|---:|---:|---:|---:|")
    step_seconds = spec.step_frames * config.samples_per_frame / config.sample_rate
    for rows in args.streams:
        feeds = (
            [np.random.default_rng(1).integers(0, 4096, (rows, spec.step_frames * n)) for n in config.codes_per_frame],
            [np.zeros((rows, 1, spec.step_frames * n), np.float32) for n in config.noise_per_frame],
            np.full(rows, 100, np.int64),
            np.full(rows, 1 << 40, np.int64),
            [np.zeros((rows, s.channels, s.length), np.float32) for s in spec.states],
        )
        for _ in range(3):
            session.run(spec.outputs, dict(zip(spec.inputs, [*feeds[0], *feeds[1], feeds[2], feeds[3], *feeds[4]])))
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            session.run(spec.outputs, dict(zip(spec.inputs, [*feeds[0], *feeds[1], feeds[2], feeds[3], *feeds[4]])))
            times.append(time.perf_counter() - t0)
        ms = 1000 * float(np.median(times))
        say(f"| {spec.step_frames} frame(s) | {rows} | {ms:.2f} | {1000 * rows / ms:.0f} | {step_seconds * 1000 / ms:.1f} |")
    say()

    say("| pool | streams | batching | audio s per s | rows per call | max abs vs offline |")
    say("|---|---:|---|---:|---:|---:|")
    items = [_codes(gpu, frames, seed=10 + i) for i in range(max(args.streams))]
    offline = [gpu.decode(c, noise=False) for c in items]
    for n in args.streams:
        for batching in (True, False):
            records = []
            with StreamPool(gpu, max_batch=64, batching=batching, workers=1, on_batch=records.append) as pool:
                t0 = time.perf_counter()
                streams = [pool.open() for _ in range(n)]
                for s, c in zip(streams, items):
                    s.push(c)
                    s.end()
                outs = [np.concatenate(list(s)) for s in streams]
                wall = time.perf_counter() - t0
            err = max(float(np.abs(o - off).max()) for o, off in zip(outs, offline))
            rows = sum(r.rows for r in records) / len(records)
            say(f"| | {n} | {'on' if batching else 'off'} | {n * frames * step_seconds / spec.step_frames / wall:.0f} | {rows:.1f} | {err:.1e} |")
    args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
