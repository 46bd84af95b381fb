"""int8 and channels-last decoding against today's fp32, side by side on the CPU, in fresh processes.

Usage: python bench/int8.py MODEL_DIR [MODEL_DIR ...] [--variants fp32 fp32-cl int8] [--threads 1 2] [--rounds 7]
                            [--offline-seconds 10] [--stream-seconds 30] [--steps 60] [--out bench/RESULTS_int8.md]

Each model folder must hold the variants (``python -m export ... --precision int8 fp32-cl``). For each thread count
and round, every variant runs in its own fresh Python process (the order rotates from round to round, so no
variant always runs first or last while this shared machine's speed drifts), which measures, noise off:

* ``offline``: ``SnacOnnx.decode`` of ``--offline-seconds`` of codes (median of 3 after a warm-up);
* ``step``: the compute of one stream step (``stream.push`` of the step's frames: one frame at 24 kHz, a 4-frame
  attention window at 32/44 kHz), median over ``--steps`` steps after the first audio;
* ``cost``: the whole stream of ``--stream-seconds`` of codes pushed step by step (and flushed), against the offline
  decode of the same codes run just before and after it (their mean): the stream's cost over offline, same variant.

Sessions use snac-onnx's default settings (``--no-spin``: with onnxruntime's thread spinning off, which matters only
with more than one thread).

Ratios are per round (fp32 over the variant, in the same round: fresh processes back to back), and the report gives
their median over rounds (and their spread). The codes come from the fp32 encoder of speech-like audio, written
once. Then, once per variant, the peak RSS (VmHWM) of a fresh process that only decodes ``--offline-seconds``
offline, and of one that only streams them; and the graph files' sizes.

Quality (``int8`` against ``fp32``, noise off): speech synthesized by espeak-ng (several voices; resampled to the
model's rate) and the signals of the exporter's parity check (``export.signals.speech_like``), encoded by the fp32
encoder and decoded by both: SNR, max abs, multi-resolution STFT distance (export.audio_metrics), the codes the fp32
encoder gives for the int8 decode against those it gives for the fp32 decode, and the int8 stream (frame by frame)
against the int8 offline decode. Writes a markdown report and prints it.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_name

WORKER = r"""
import json, statistics, sys, time
import numpy as np
from snac_onnx import SnacOnnx
from snac_onnx.model.sessions import SessionSettings
folder, precision, threads, codes_file, offline_frames, steps, spin = sys.argv[1:8]
offline_frames, steps = int(offline_frames), int(steps)
data = np.load(codes_file)
codes = [data[f"c{i}"] for i in range(len(data.files))]
settings = SessionSettings(intra_op_threads=int(threads))
options = settings.to_session_options()
options.add_session_config_entry("session.intra_op.allow_spinning", spin)
codec = SnacOnnx(folder, settings=settings, session_options=options, precision=precision)
per = codec.config.codes_per_frame
step = codec.manifest.stream.step_frames
short = [c[: offline_frames * p] for c, p in zip(codes, per)]
def offline(cs):
    t0 = time.perf_counter(); codec.decode(cs, noise=False); return time.perf_counter() - t0
offline(short)
offline_s = statistics.median(offline(short) for _ in range(3))
frames = codes[0].shape[0] // per[0]
def stream_run(limit=None):
    stream = codec.stream(mode="stateful")
    times, sizes = [], []
    for f in range(0, frames if limit is None else min(frames, limit), step):
        piece = [c[f * p : (f + step) * p] for c, p in zip(codes, per)]
        t0 = time.perf_counter(); out = stream.push(piece); times.append(time.perf_counter() - t0); sizes.append(out.size)
    if limit is None:
        t0 = time.perf_counter(); stream.flush(); times.append(time.perf_counter() - t0)
    return times, sizes
stream_run(16 * step)
times, sizes = stream_run((steps + 16) * step)
producing = [t for t, s in zip(times, sizes) if s][4 : 4 + steps]
step_s = statistics.median(producing)
before = offline(codes)
total = sum(stream_run()[0])
after = offline(codes)
print("RESULT " + json.dumps({"offline_s": offline_s, "step_s": step_s, "cost": total / (0.5 * (before + after)),
                              "stream_s": total, "offline_full_s": 0.5 * (before + after)}))
"""

RSS = r"""
import sys, numpy as np
from snac_onnx import SnacOnnx
folder, precision, threads, codes_file, frames, mode = sys.argv[1:7]
data = np.load(codes_file)
codec = SnacOnnx(folder, threads=int(threads), precision=precision)
per = codec.config.codes_per_frame
codes = [data[f"c{i}"][: int(frames) * p] for i, p in enumerate(per)]
if mode == "offline":
    codec.decode(codes, noise=False)
else:
    step = codec.manifest.stream.step_frames
    stream = codec.stream(mode="stateful")
    for f in range(0, int(frames), step):
        stream.push([c[f * p : (f + step) * p] for c, p in zip(codes, per)])
    stream.flush()
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
print("RESULT", peak)
"""


def _run(script: str, *args: object) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return next(line for line in out.stdout.splitlines() if line.startswith("RESULT"))[len("RESULT ") :]


def _codes_file(folder: Path, seconds: float, tmp: Path) -> tuple[Path, int, int]:
    """Codes of ``seconds`` of speech-like audio (fp32 encoder), in whole steps; (file, frames, frames per step)."""
    from export.signals import speech_like
    from snac_onnx import SnacOnnx

    codec = SnacOnnx(folder)
    codes = codec.encode(speech_like(codec.sample_rate, seconds, seed=3))
    step = codec.manifest.stream.step_frames if codec.manifest.stream is not None else 1
    per = codec.config.codes_per_frame
    frames = codes[0].shape[0] // per[0] // step * step
    path = tmp / f"{folder.name}.npz"
    np.savez(path, **{f"c{i}": c[: frames * p] for i, (c, p) in enumerate(zip(codes, per))})
    return path, frames, step


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x [{min(values):.2f}-{max(values):.2f}]"


def bench_model(folder: Path, args: argparse.Namespace, tmp: Path) -> list[str]:
    from snac_onnx import SnacOnnx

    codes_file, frames, step = _codes_file(folder, args.stream_seconds, tmp)
    codec = SnacOnnx(folder)
    spf, rate = codec.config.samples_per_frame, codec.sample_rate
    offline_frames = min(frames, int(args.offline_seconds * rate / spf) // step * step)
    variants = list(args.variants)
    missing = [v for v in variants if v not in codec.manifest.precisions]
    if missing:
        raise SystemExit(f"{folder} lacks {missing}: export it with --precision {' '.join(missing)}")
    rows = []
    for threads in args.threads:
        results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
        for r in range(args.rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for variant in order:
                line = _run(WORKER, folder, variant, threads, codes_file, offline_frames, args.steps, 0 if args.no_spin else 1)
                results[variant].append(json.loads(line))
            print(f"{folder.name} threads {threads} round {r + 1}: "
                  + ", ".join(f"{v} {1e3 * results[v][-1]['offline_s']:.0f} ms / step {1e3 * results[v][-1]['step_s']:.2f} ms "
                              f"/ cost {results[v][-1]['cost']:.2f}" for v in variants), flush=True)
        base = results[variants[0]]
        for v in variants:
            res = results[v]
            offline_ratio = [b["offline_s"] / x["offline_s"] for b, x in zip(base, res)]
            step_ratio = [b["step_s"] / x["step_s"] for b, x in zip(base, res)]
            rows.append(
                f"| {codec.name} | {threads}{' (no spin)' if args.no_spin and threads > 1 else ''} | {v} | {1e3 * statistics.median(x['offline_s'] for x in res):.0f} "
                f"| {_spread(offline_ratio)} | {1e3 * statistics.median(x['step_s'] for x in res):.2f} | {_spread(step_ratio)} "
                f"| {statistics.median(x['cost'] for x in res):.2f} [{min(x['cost'] for x in res):.2f}-{max(x['cost'] for x in res):.2f}] |"
            )
            print(rows[-1], flush=True)
    return rows


def memory_rows(folder: Path, args: argparse.Namespace, tmp: Path) -> list[str]:
    from snac_onnx import SnacOnnx

    codes_file, frames, step = _codes_file(folder, args.stream_seconds, tmp)
    codec = SnacOnnx(folder)
    spf, rate = codec.config.samples_per_frame, codec.sample_rate
    offline_frames = min(frames, int(args.offline_seconds * rate / spf) // step * step)
    rows = []
    for v in args.variants:
        peaks = {mode: float(_run(RSS, folder, v, 1, codes_file, offline_frames, mode)) for mode in ("offline", "stream")}
        sizes = {role: codec.manifest.file_entry(role, v)["bytes"] / 1e6 for role in ("decoder", "stream")}
        rows.append(f"| {codec.name} | {v} | {peaks['offline']:.0f} | {peaks['stream']:.0f} | {sizes['decoder']:.1f} | {sizes['stream']:.1f} |")
        print(rows[-1], flush=True)
    return rows


SENTENCES = [
    ("en", "The quick brown fox jumps over the lazy dog, and then it runs back home before the rain starts."),
    ("en-us", "Streaming speech one frame at a time must sound exactly like decoding the whole sentence at once."),
    ("de", "Der schnelle braune Fuchs springt ueber den faulen Hund und laeuft dann nach Hause."),
    ("fr", "Le renard brun rapide saute par-dessus le chien paresseux, puis il rentre a la maison."),
]


def _speech(tmp: Path, rate: int) -> list[tuple[str, np.ndarray]]:
    """espeak-ng sentences at ``rate`` (empty where espeak-ng is not installed)."""
    import shutil

    from snac_onnx import load_audio

    if shutil.which("espeak-ng") is None:
        return []
    out = []
    for i, (voice, text) in enumerate(SENTENCES):
        wav = tmp / f"speech_{i}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True, capture_output=True)
        out.append((f"espeak-ng {voice}", load_audio(wav, rate, mix=True, resample=True)))
    return out


def quality_rows(folder: Path, tmp: Path) -> list[str]:
    from export.audio_metrics import max_abs, mrstft_distance, snr_db
    from export.int8_parity import stream_decode
    from export.signals import speech_like
    from snac_onnx import SnacOnnx

    fp32, int8 = SnacOnnx(folder), SnacOnnx(folder, precision="int8")
    rate = fp32.sample_rate
    unit = fp32.config.padding_unit
    signals = _speech(tmp, rate)
    for length in (unit, 2 * unit + unit // 3 + 1, rate):  # the parity check's lengths, seed 1234 (export.parity)
        signals.append((f"parity speech_like {length} samples", speech_like(rate, length / rate, 1234)[:length]))
    rows = []
    for label, pcm in signals:
        codes = fp32.encode(pcm)
        ref, ours = fp32.decode(codes, noise=False), int8.decode(codes, noise=False)
        again_ref, again_ours = fp32.encode(ref), fp32.encode(ours)
        agree = np.mean(np.concatenate([(a == b).ravel() for a, b in zip(again_ref, again_ours)]))
        stream = max_abs(stream_decode(int8, codes, None), ours)
        rows.append(
            f"| {fp32.name} | {label} | {pcm.size / rate:.2f} | {snr_db(ours, ref):.1f} | {max_abs(ours, ref):.1e} "
            f"| {mrstft_distance(ours, ref):.3f} | {100 * agree:.1f} % | {stream:.1e} |"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--variants", nargs="+", default=["fp32", "fp32-cl", "int8"], help="the first is the baseline")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--offline-seconds", type=float, default=10.0)
    parser.add_argument("--stream-seconds", type=float, default=30.0)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak RSS runs")
    parser.add_argument("--no-quality", action="store_true", help="skip the int8 quality table")
    parser.add_argument(
        "--no-spin", action="store_true",
        help="sessions with onnxruntime's session.intra_op.allow_spinning=0 (its pool threads sleep between operators "
        "instead of spinning; on a machine whose other cores are busy, spinning costs more than it saves)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS_int8.md")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    header = [
        ("| model | threads | variant | offline decode (ms) | offline speed vs first variant | step (ms) "
        "| step speed vs first variant | stream cost / own offline |"),
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(header), flush=True)
    rows, memory, quality = [], [], []
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_quality:
            for folder in args.models:
                quality += quality_rows(folder, Path(tmp))
        for folder in args.models if args.rounds else []:
            rows += bench_model(folder, args, Path(tmp))
        if not args.no_memory:
            for folder in args.models:
                memory += memory_rows(folder, args, Path(tmp))
    report = [
        "# int8 and channels-last decoding vs fp32",
        "",
        f"`python bench/int8.py {' '.join(sys.argv[1:])}`",
        "",
        (f"Date {time.strftime('%Y-%m-%d')}, commit {commit}. Machine: {os.cpu_count()} CPUs ({cpu_name()}), Python "
        f"{platform.python_version()}; {(time.time() - start) / 60:.0f} min. Models: random-init exports of the official "
        "configs (the trained weights cannot be downloaded here; speed does not depend on the weights). Noise off. "
        f"Each cell: median over {args.rounds} rounds, every variant in a fresh process per round, the order rotating; "
        "ratios are per round (first variant's time over this one's), median [min-max]. Offline: "
        f"{args.offline_seconds:g} s of codes; step: one stream step (24 kHz: 1 frame, 32/44 kHz: 4 frames), median of "
        f"{args.steps}; cost: {args.stream_seconds:g} s streamed step by step over its own offline decode."),
        "",
        *header,
        *rows,
        "",
    ]
    if memory:
        report += [
            (f"Peak RSS (VmHWM, MB) of a fresh process that decodes {args.offline_seconds:g} s offline, or streams it, "
            "1 thread; graph file sizes (MB)."),
            "",
            "| model | variant | peak RSS offline | peak RSS stream | decoder file | stream file |",
            "|---|---|---:|---:|---:|---:|",
            *memory,
            "",
        ]
    if quality:
        report += [
            ("Quality of int8 against fp32, noise off (RANDOM WEIGHTS: the trained checkpoints cannot be downloaded "
            "here, so these are estimates of the quantization error, not promises for the trained models). Codes: the "
            "fp32 encoder's codes of each signal; re-encoded: the fp32 encoder's codes of the int8 decode against those "
            "of the fp32 decode; stream: the int8 stream, frame by frame, against the int8 offline decode."),
            "",
            "| model | signal | seconds | SNR (dB) | max abs | MR-STFT distance | re-encoded codes equal | int8 stream vs offline (max abs) |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
            *quality,
            "",
        ]
    args.out.write_text("\n".join(report))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
