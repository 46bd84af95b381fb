"""Round trip a short clip through an exported model: encode, decode, write WAVs, report.

Usage: python scripts/roundtrip.py [MODEL_DIR] [--input clip.wav] [--out out/]
Without --input it uses a seeded speech-like synthetic clip (3 s). WAV I/O is 16-bit PCM (stdlib).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.signals import speech_like
from snac_onnx import SnacOnnx


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as handle:
        if handle.getsampwidth() != 2:
            raise SystemExit(f"{path}: only 16-bit PCM WAV is read here")
        rate, channels = handle.getframerate(), handle.getnchannels()
        data = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return data, rate


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", nargs="?", default="models/snac_24khz", type=Path)
    parser.add_argument("--input", type=Path, help="16-bit PCM WAV at the model's rate")
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args()

    logging.getLogger("snac_onnx.model.manifest").setLevel(logging.ERROR)  # the note below says it
    codec = SnacOnnx(args.model)
    if codec.manifest.random_init:
        print("note: this model has seeded random weights: the pipeline runs for real, but its audio is noise")
    if args.input:
        pcm, rate = read_wav(args.input)
        source = str(args.input)
    else:
        rate = codec.sample_rate
        pcm = speech_like(rate, 3.0, seed=42)
        source = "synthetic speech-like clip (3 s, seed 42)"
    args.out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    codes = codec.encode(pcm, sample_rate=rate)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    audio = codec.decode(codes, length=len(pcm), noise=False)
    decode_s = time.perf_counter() - start

    reference = pcm.astype(np.float32) / (32768.0 if pcm.dtype == np.int16 else 1.0)
    err = audio - reference
    snr = 10 * np.log10(np.sum(reference**2) / max(np.sum(err**2), 1e-20))
    write_wav(args.out / "roundtrip_in.wav", reference, rate)
    write_wav(args.out / "roundtrip_out.wav", audio, rate)
    seconds = len(pcm) / rate
    print(f"model      {args.model} ({codec.name}, {codec.sample_rate} Hz, providers {codec.active_providers['decoder']})")
    print(f"input      {source}: {seconds:.2f} s")
    print(f"codes      {[c.shape[0] for c in codes]} per codebook, {sum(len(np.unique(c)) for c in codes)} distinct")
    print(f"encode     {encode_s * 1000:.0f} ms ({seconds / encode_s:.1f}x real time, first call incl. session)")
    print(f"decode     {decode_s * 1000:.0f} ms ({seconds / decode_s:.1f}x real time, first call incl. session)")
    print(f"SNR        {snr:.1f} dB vs input" + ("  (meaningless: random weights)" if codec.manifest.random_init else ""))
    print(f"wrote      {args.out / 'roundtrip_in.wav'}, {args.out / 'roundtrip_out.wav'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
