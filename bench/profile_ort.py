"""Where decode/encode time goes in onnxruntime: per operator type, from its profiler.

Usage: python bench/profile_ort.py [MODEL_DIR] [--graph decoder|encoder] [--seconds 10] [--threads 2] [--plain]
Prints a markdown table of total time per op type (one call after a warm-up call).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snac_onnx import SnacOnnx
from snac_onnx.manifest import code_names, noise_names
from snac_onnx.sessions import SessionSettings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", nargs="?", type=Path, default=Path("models/snac_24khz"))
    parser.add_argument("--graph", choices=["decoder", "encoder"], default="decoder")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plain", action="store_true", help="run Snake as plain ONNX nodes (no fused kernel)")
    args = parser.parse_args()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "prof")
    settings = SessionSettings(intra_op_threads=args.threads, fused_snake=False if args.plain else None)
    codec = SnacOnnx(args.model, settings=settings, session_options=opts)
    frames = int(args.seconds * codec.sample_rate / codec.samples_per_frame)
    frames -= frames % codec.config.frames_multiple
    if args.graph == "decoder":
        rng = np.random.default_rng(0)
        feeds = dict(zip(code_names(codec.num_codebooks), [rng.integers(0, 4096, (1, n)) for n in codec.config.code_lengths(frames)]))
        feeds.update(zip(noise_names(codec.config.num_noise_blocks), [np.zeros(s, np.float32) for s in codec.noise_shapes(1, frames)]))
    else:
        feeds = {"audio": (0.1 * np.random.default_rng(0).standard_normal((1, 1, frames * codec.samples_per_frame))).astype(np.float32)}
    session = codec.session(args.graph)  # the public API: hub models and checks included
    fused = codec.fused_snake
    session.run(None, feeds)
    session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    last_start = runs[-1]["ts"]
    per_op: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= last_start:
            op = e["args"].get("op_name", "?")
            per_op[op] += e["dur"]
            count[op] += 1
    total = sum(per_op.values())
    print(f"{args.graph} of {frames * codec.samples_per_frame / codec.sample_rate:.1f} s, {args.threads} threads, "
          f"Snake {'fused kernel' if fused else 'plain ONNX nodes'}: "
          f"run {runs[-1]['dur'] / 1e3:.0f} ms, kernels {total / 1e3:.0f} ms\n")
    print("| op type | nodes | ms | share |")
    print("|---|---:|---:|---:|")
    for op, dur in per_op.most_common():
        print(f"| {op} | {count[op]} | {dur / 1e3:.1f} | {100 * dur / total:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
