"""Where decode/encode time goes in onnxruntime: per operator type, from its profiler.

Usage: python bench/profile_ort.py [MODEL_DIR] [--graph decoder|encoder|stream] [--seconds 10] [--threads 2] [--plain]
                                  [--precision fp32|int8|fp32-cl|fp16]
Prints a markdown table of total time per op type (one call after a warm-up call). ``stream``: one step of
the stream graph (``--seconds`` is ignored), its states zeros, at frame 10, summed over 20 calls.
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
from snac_onnx.model.contract import code_names, noise_names
from snac_onnx.model.sessions import SessionSettings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", nargs="?", type=Path, default=Path("models/snac_24khz"))
    parser.add_argument("--graph", choices=["decoder", "encoder", "stream"], default="decoder")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plain", action="store_true", help="run Snake as plain ONNX nodes (no fused kernel)")
    parser.add_argument("--precision", default="fp32", help="which graphs of the export (default fp32)")
    args = parser.parse_args()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "prof")
    settings = SessionSettings(intra_op_threads=args.threads, fused_snake=False if args.plain else None)
    codec = SnacOnnx(args.model, settings=settings, session_options=opts, precision=args.precision)
    frames = int(args.seconds * codec.sample_rate / codec.samples_per_frame)
    frames -= frames % codec.config.frames_multiple
    if args.graph == "decoder":
        rng = np.random.default_rng(0)
        feeds = dict(zip(code_names(codec.num_codebooks), [rng.integers(0, 4096, (1, n)) for n in codec.config.code_lengths(frames)]))
        feeds.update(zip(noise_names(codec.config.num_noise_blocks), [np.zeros(s, np.float32) for s in codec.noise_shapes(1, frames)]))
    elif args.graph == "stream":
        spec = codec.manifest.stream
        assert spec is not None, "this export has no stream graph"
        rng = np.random.default_rng(0)
        step = spec.step_frames
        values = [rng.integers(0, 4096, (1, n)) for n in codec.config.code_lengths(step)]
        values += [np.zeros(s, np.float32) for s in codec.noise_shapes(1, step)]
        values += [np.array([10], np.int64), np.array([1 << 40], np.int64)]  # frame, end (not known yet)
        layout = codec.manifest.layout(args.precision)
        values += [np.zeros(st.shape(1, layout), np.float32) for st in spec.states]
        feeds = dict(zip(spec.inputs, values))
    else:
        feeds = {"audio": (0.1 * np.random.default_rng(0).standard_normal((1, 1, frames * codec.samples_per_frame))).astype(np.float32)}
    session = codec.session(args.graph)  # the public API: hub models and checks included
    fused = codec.fused_snake
    calls = 20 if args.graph == "stream" else 1
    for _ in range(1 + calls):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    last_start = runs[-calls]["ts"]
    per_op: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= last_start:
            op = e["args"].get("op_name", "?")
            per_op[op] += e["dur"]
            count[op] += 1
    total = sum(per_op.values())
    print(f"{args.graph} ({args.precision}) of {frames * codec.samples_per_frame / codec.sample_rate:.1f} s, {args.threads} threads, "
          f"Snake {'fused kernel' if fused else 'plain ONNX nodes'}: "
          f"run {sum(r['dur'] for r in runs[-calls:]) / 1e3 / calls:.1f} ms, kernels {total / 1e3 / calls:.1f} ms per call\n")
    print("| op type | nodes | ms | share |")
    print("|---|---:|---:|---:|")
    for op, dur in per_op.most_common():
        print(f"| {op} | {count[op] // calls} | {dur / 1e3 / calls:.2f} | {100 * dur / total:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
