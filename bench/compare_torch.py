"""Encode/decode speed of snac_onnx vs the official PyTorch snac, side by side in one run.

Usage: python bench/compare_torch.py [MODEL_DIR ...] [--seconds 10] [--threads 1 2] [--reps 5]

Each MODEL_DIR is an exported folder; the PyTorch model is rebuilt from its manifest's
source (same seeded weights for --random-init exports, or the folder / hub checkpoint).
Timings are medians of --reps calls after one warm-up call; noise is on in both decoders
(the official behaviour). Prints a markdown table; ratio = PyTorch time / snac_onnx time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_name
from export.checkpoint import load_from_folder, load_from_hub, load_random_init
from export.precision import median_seconds
from export.signals import speech_like
from snac_onnx import SnacOnnx


def reference_for(folder: Path) -> torch.nn.Module:
    source = json.loads((folder / "manifest.json").read_text())["source"]
    if source["kind"] == "random-init":
        return load_random_init(source["config"], source["seed"]).model
    if source["kind"] == "folder":
        return load_from_folder(source["folder"]).model
    return load_from_hub(source["repo_id"], revision=source.get("commit")).model


def time_encode_decode(
    model: torch.nn.Module, codec: SnacOnnx, pcm: np.ndarray, reps: int, unfused: SnacOnnx | None = None
) -> dict[str, float]:
    """Median seconds of encode and decode on ``pcm`` (B, T) for PyTorch (``torch_*``), snac_onnx
    (``onnx_*``) and, when given, snac_onnx with Snake as plain ONNX nodes (``unfused_*``)."""
    x = torch.from_numpy(pcm)[:, None, :]
    with torch.no_grad():
        torch_encode = median_seconds(lambda: model.encode(x), reps)
        codes_t = model.encode(x)
        torch_decode = median_seconds(lambda: model.decode(codes_t), reps)
    times = {"torch_encode": torch_encode, "torch_decode": torch_decode}
    for key, runner in (("onnx", codec), ("unfused", unfused)):
        if runner is None:
            continue
        times[f"{key}_encode"] = median_seconds(lambda: runner.encode(pcm), reps)
        codes = runner.encode(pcm)
        times[f"{key}_decode"] = median_seconds(lambda: runner.decode(codes, length=pcm.shape[-1]), reps)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="*", type=Path, default=[Path("models/snac_24khz")])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=1,
                        help="snac_onnx splits each call into this many concurrent chunks, threads // parallel each")
    args = parser.parse_args()

    print(f"CPU: {cpu_name()}; torch {torch.__version__}; onnxruntime {ort.__version__}; "
          f"{args.seconds:g} s of audio, batch 1, median of {args.reps} after warm-up; snac_onnx parallel={args.parallel}\n")
    print("| model | threads | op | PyTorch (s) | snac_onnx (s) | speed-up | snac_onnx x real time |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for folder in args.models:
        model = reference_for(folder).eval()
        rate = int(model.sampling_rate)
        pcm = speech_like(rate, args.seconds, seed=11)[None, :]
        for threads in args.threads:
            torch.set_num_threads(threads)
            codec = SnacOnnx(folder, threads=max(1, threads // args.parallel), parallel=args.parallel)
            times = time_encode_decode(model, codec, pcm, args.reps)
            for op in ("encode", "decode"):
                t, o = times[f"torch_{op}"], times[f"onnx_{op}"]
                print(f"| {folder.name} | {threads} | {op} | {t:.3f} | {o:.3f} | {t / o:.2f}x | {args.seconds / o:.1f}x |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
