"""Shared-model concurrency, memory over long runs, mixed-up model files (no torch)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from snac_onnx import ModelFormatError, SnacOnnx
from tests.support import LONG_HANG_GUARD_S, REPO, TINY_24, TINY_44, pcm


@pytest.mark.parametrize("folder", [TINY_24, TINY_44])
def test_eight_threads_share_one_model_bit_exact(folder):
    codec = SnacOnnx(folder)
    inputs = [pcm(3000 + 7919 * i, seed=i) for i in range(16)]

    def work(audio):
        codes = codec.encode(audio)
        if codec.config.frames_multiple > 1:
            keep = codes[0].shape[0] // 4 * 4 or 4
            codes = [c[: keep * n] if c.shape[0] >= keep * n else np.resize(c, keep * n)
                     for c, n in zip(codes, (1, 2, 4, 8))]
        return codes, codec.decode(codes, noise=False)

    serial = [work(a) for a in inputs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(work, inputs))
    for (codes_s, audio_s), (codes_p, audio_p) in zip(serial, parallel):
        for a, b in zip(codes_s, codes_p):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(audio_s, audio_p)


def test_streams_in_threads_are_independent(tiny24):
    rng = np.random.default_rng(0)
    all_codes = [[rng.integers(0, 4096, n * f) for n in (1, 2, 4)] for f in rng.integers(5, 20, 8)]

    def run(codes):
        stream = tiny24.stream()
        frames = codes[0].shape[0]
        out = [stream.push([c[f * n : (f + 1) * n] for c, n in zip(codes, (1, 2, 4))]) for f in range(frames)]
        return np.concatenate(out + [stream.flush()])

    serial = [run(c) for c in all_codes]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(run, all_codes))
    for s, p, codes in zip(serial, parallel, all_codes):
        np.testing.assert_array_equal(s, p)
        np.testing.assert_allclose(p, tiny24.decode(codes, noise=False), atol=1e-4)


MEMORY_SCRIPT = r"""
import json, sys
import numpy as np
from snac_onnx import SnacOnnx
codec = SnacOnnx(sys.argv[1])
rng = np.random.default_rng(0)
def call():
    n = int(rng.integers(1, 48000))
    audio = (0.1 * rng.standard_normal(n)).astype(np.float32)
    codec.decode(codec.encode(audio), length=n, noise=bool(rng.integers(2)))
def peak_mb():
    # VmHWM: this address space's peak RSS (ru_maxrss would carry the forking parent's peak over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
for _ in range(200):
    call()
warm = peak_mb()
for _ in range(1000):
    call()
print(json.dumps({"warm_mb": warm, "after_1000_mb": peak_mb()}))
"""


@pytest.mark.slow  # 1000 calls
def test_memory_flat_over_1000_calls_of_varying_length():
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(TINY_24)], capture_output=True, text=True, timeout=LONG_HANG_GUARD_S)
    assert result.returncode == 0, result.stderr
    numbers = json.loads(result.stdout)
    print("memory over 1000 calls:", numbers)
    assert numbers["after_1000_mb"] <= 1.05 * numbers["warm_mb"], numbers


LONG_FILE_SCRIPT = r"""
import json, sys
from snac_onnx.cli import main
code = main(["encode", sys.argv[1], "-o", sys.argv[2], "-m", sys.argv[3], "-q", "--window-seconds", "30"])
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print(json.dumps({"code": code, "peak_mb": peak}))
"""


@pytest.mark.slow  # encodes 11 minutes of audio
def test_ten_minute_file_encodes_with_flat_memory(tmp_path):
    sf = pytest.importorskip("soundfile")
    peaks = {}
    for minutes in (1, 10):
        wav = tmp_path / f"{minutes}min.wav"
        with sf.SoundFile(wav, "w", samplerate=24000, channels=1, subtype="PCM_16") as handle:
            for second in range(60 * minutes):
                handle.write(pcm(24000, seed=second))
        result = subprocess.run(
            [sys.executable, "-c", LONG_FILE_SCRIPT, str(wav), str(tmp_path / f"{minutes}.npz"), str(TINY_24)],
            capture_output=True, text=True, timeout=LONG_HANG_GUARD_S, cwd=REPO,
        )
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout.strip().splitlines()[-1])
        assert out["code"] == 0
        peaks[minutes] = out["peak_mb"]
    print("peak RSS (MB) by file length in minutes:", peaks)
    # the 10-minute file's PCM alone would be 55 MB as float32: memory must not grow with length
    assert peaks[10] <= peaks[1] * 1.05 + 8, peaks


def test_encoder_and_decoder_from_different_exports(tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(TINY_24, mixed)
    shutil.copyfile(TINY_44 / "decoder.onnx", mixed / "decoder.onnx")
    codes = [np.zeros(n, np.int64) for n in (1, 2, 4)]
    with pytest.raises(ModelFormatError, match="sha256"):
        SnacOnnx(mixed).decode(codes)
    with pytest.raises(ModelFormatError, match="different exports"):
        SnacOnnx(mixed, verify=False).decode(codes)
