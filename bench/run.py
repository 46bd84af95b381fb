"""The side-by-side benchmark: official snac on PyTorch vs snac_onnx, CPU, one command.

Usage: python bench/run.py [MODEL_DIR ...] [--threads 1 2] [--seconds 1 10] [--batches 1 8] [--reps 3]
                           [--out bench/RESULTS.md]

For each exported model folder (the PyTorch model is rebuilt from its manifest's source) it measures,
with the same thread count for both:
  * encode and decode time for each duration x batch (median of --reps after one warm-up; noise on in
    both decoders, the official behaviour), and the ratio PyTorch / snac_onnx; also snac_onnx with
    Snake run as plain ONNX nodes (no fused kernel), to show what the kernel brings;
  * streaming: time to the first audio of a stream fed one frame at a time (snac_onnx only);
  * peak RSS (VmHWM) of a fresh process that only loads the decoder and decodes 10 s;
  * cold start: wall time of a fresh process from start to the first decoded audio (import, load,
    decode 1 s), as seen by the parent.
Writes a markdown report (CPU, versions, tables) to --out and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.compare_torch import reference_for, time_encode_decode
from bench.machine import cpu_name
from export.signals import speech_like
from snac_onnx import SnacOnnx
from snac_onnx.model.kernels import fused_snake_available
from snac_onnx.model.sessions import SessionSettings

ONNX_DECODE_ONLY = r"""
import sys, time, numpy as np
t0 = time.perf_counter()
from snac_onnx import SnacOnnx
codec = SnacOnnx(sys.argv[1], threads=int(sys.argv[2]))
seconds = float(sys.argv[3])
frames = max(codec.config.frames_multiple, int(seconds * codec.sample_rate / codec.samples_per_frame) // codec.config.frames_multiple * codec.config.frames_multiple)
codes = [np.random.default_rng(0).integers(0, 4096, n) for n in codec.config.code_lengths(frames)]
audio = codec.decode(codes)
t1 = time.perf_counter()
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print("RESULT", t1 - t0, peak, audio.shape[-1])
"""

TORCH_DECODE_ONLY = r"""
import sys, time
t0 = time.perf_counter()
import torch
from snac import SNAC
torch.set_num_threads(int(sys.argv[2]))
model = SNAC.from_pretrained(sys.argv[1]).eval()
seconds = float(sys.argv[3])
lcm = {4: 1, 8: 4}[model.vq_strides[0]]
spf = int(model.hop_length) * model.vq_strides[0]
frames = max(lcm, int(seconds * model.sampling_rate / spf) // lcm * lcm)
g = torch.Generator().manual_seed(0)
codes = [torch.randint(0, 4096, (1, frames * model.vq_strides[0] // s), generator=g) for s in model.vq_strides]
with torch.no_grad():
    audio = model.decode(codes)
t1 = time.perf_counter()
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print("RESULT", t1 - t0, peak, audio.shape[-1])
"""


def run_fresh(script: str, *args: str) -> tuple[float, float, float]:
    """(seconds inside the process, peak RSS MB, wall seconds seen by the parent)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=1200)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT"))  # noqa: E741
    _, inner, peak, _ = line.split()
    return float(inner), float(peak), wall


def torch_checkpoint(model: torch.nn.Module, folder: Path, config: dict) -> Path:
    """Save the reference as an official-style checkpoint folder, so the torch process loads like users do."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def stream_first_audio(codec: SnacOnnx, codes: list[np.ndarray]) -> float:
    per = [codec.vq_strides[0] // s for s in codec.vq_strides]
    stream = codec.stream()
    start = time.perf_counter()
    for f in range(codes[0].shape[-1]):
        if stream.push_codes([c[0, f * p : (f + 1) * p] for c, p in zip(codes, per)]).size:
            return time.perf_counter() - start
    stream.flush()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path, default=[Path("models/snac_24khz")])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()

    lines = [
        "# snac_onnx vs PyTorch snac",
        "",
        (
            f"CPU: {cpu_name()} ({os.cpu_count()} cores); Python {platform.python_version()}; torch {torch.__version__}; "
            f"onnxruntime {ort.__version__}; fused Snake kernel {'installed' if fused_snake_available() else 'NOT installed'}; "
            f"`python bench/run.py {' '.join(sys.argv[1:])}`"
        ),
        "",
        f"Times: median of {args.reps} after a warm-up, seconds; ratio = PyTorch / snac_onnx (above 1: snac_onnx faster).",
        "",
        "| model | threads | audio | batch | op | PyTorch | snac_onnx | ratio | snac_onnx × real time | snac_onnx, Snake unfused | ratio unfused |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    extra = ["", "| model | threads | stream first audio (s) | decode-only peak RSS PyTorch / snac_onnx (MB) | RSS ratio | cold start to first audio PyTorch / snac_onnx (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    tmp = Path(tempfile.mkdtemp())
    for folder in args.models:
        model = reference_for(folder).eval()
        manifest = json.loads((folder / "manifest.json").read_text())
        ckpt = torch_checkpoint(model, tmp / folder.name, manifest["snac_config"])
        rate = int(model.sampling_rate)
        for threads in args.threads:
            torch.set_num_threads(threads)
            codec = SnacOnnx(folder, threads=threads)
            unfused = SnacOnnx(folder, settings=SessionSettings(intra_op_threads=threads, fused_snake=False))
            for seconds in args.seconds:
                for batch in args.batches:
                    pcm = np.stack([speech_like(rate, seconds, seed=20 + i) for i in range(batch)])
                    times = time_encode_decode(model, codec, pcm, args.reps, unfused=unfused)
                    for op in ("encode", "decode"):
                        t, o, u = times[f"torch_{op}"], times[f"onnx_{op}"], times[f"unfused_{op}"]
                        lines.append(f"| {codec.name} | {threads} | {seconds:g} s | {batch} | {op} | {t:.3f} | {o:.3f} "
                                     f"| {t / o:.2f}x | {seconds * batch / o:.1f}x | {u:.3f} | {t / u:.2f}x |")
                    print(lines[-2], lines[-1], sep="\n", flush=True)
            codes = codec.encode(speech_like(rate, 4.0, seed=1)[None])
            first = statistics.median(stream_first_audio(codec, codes) for _ in range(3))
            _, rss_t, _ = run_fresh(TORCH_DECODE_ONLY, str(ckpt), str(threads), "10")
            _, rss_o, _ = run_fresh(ONNX_DECODE_ONLY, str(folder), str(threads), "10")
            cold_t = min(run_fresh(TORCH_DECODE_ONLY, str(ckpt), str(threads), "1")[2] for _ in range(2))
            cold_o = min(run_fresh(ONNX_DECODE_ONLY, str(folder), str(threads), "1")[2] for _ in range(2))
            extra.append(f"| {codec.name} | {threads} | {first:.3f} | {rss_t:.0f} / {rss_o:.0f} | {rss_o / rss_t:.2f} | {cold_t:.2f} / {cold_o:.2f} |")
            print(extra[-1], flush=True)
    report = "\n".join(lines + extra) + "\n"
    args.out.write_text(report)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
