"""Corpus tokenization throughput: Ray Data with 1 and 2 actors vs a single-process loop.

Usage: python bench/corpus.py [MODEL_DIR] [--files 40] [--seconds 4]
Generates --files speech-like wav files of about --seconds each (seeded), then times
  * a plain loop: AudioReader + windowed encode, file by file, onnxruntime threads = all cores;
  * tokenize_corpus with 1 actor x (cores) threads and with (cores) actors x 1 thread,
each into a fresh output folder (Ray start-up included once, in the first Ray run, and reported).
Prints files/s and seconds of audio per second.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.signals import speech_like
from snac_onnx.corpus import EncodeFiles, list_inputs, tokenize_corpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", nargs="?", default="models/snac_24khz")
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    import ray
    import soundfile as sf

    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    for i in range(args.files):
        sf.write(work / f"f{i:03d}.wav", speech_like(24000, args.seconds * rng.uniform(0.5, 1.5), seed=i), 24000)
    files = list_inputs(work)
    audio = sum(sf.info(f).duration for f in files)

    start = time.perf_counter()
    encoder = EncodeFiles(args.model, threads=cores)
    for path in files:
        encoder.encode_path(path)
    loop = time.perf_counter() - start

    start = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_start = time.perf_counter() - start
    results = []
    for actors, threads in ((1, cores), (cores, 1)):
        out = work / f"out_{actors}x{threads}"
        start = time.perf_counter()
        summary = tokenize_corpus(work, out, model=args.model, actors=actors, threads_per_actor=threads)
        results.append((f"Ray Data, {actors} actor(s) x {threads} thread(s)", time.perf_counter() - start, summary.processed))
        shutil.rmtree(out)
    ray.shutdown()

    print(f"{len(files)} files, {audio:.0f} s of audio, {cores} cores; Ray start-up {ray_start:.1f} s (not in the rows)\n")
    print("| runner | wall (s) | files/s | audio s/s |")
    print("|---|---:|---:|---:|")
    print(f"| single-process loop, {cores} threads | {loop:.1f} | {len(files) / loop:.2f} | {audio / loop:.1f} |")
    for name, wall, processed in results:
        print(f"| {name} | {wall:.1f} | {processed / wall:.2f} | {audio / wall:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
