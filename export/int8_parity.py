"""The int8 variant's error, measured at export and gated: the export fails when it breaks the limits.

Against the fp32 graphs of the same export (the int8 graphs quantize them; the fp32 graphs are checked against
PyTorch by :mod:`export.parity`), on speech-like signals (:func:`export.signals.speech_like`) encoded by the fp32
encoder, decoded with noise off:

* ``snr_db`` (the gate: at least :data:`MIN_SNR_DB`), ``max_abs`` and the multi-resolution STFT distance of the
  int8 decode against the fp32 decode;
* ``code_agreement``: the fp32 encoder's codes of the int8 decode against its codes of the fp32 decode;
* ``stream_max_abs``: the int8 stream, pushed frame by frame (noise off, and with seeded noise), against the int8
  offline decode of the same codes (and noise). Each row's quantization uses that row alone and int8 products
  add up exactly, so they are equal by construction; the gate allows float rounding (:data:`STREAM_LIMIT`).

Both ways of running the int8 graphs are measured where the kernel library is installed (``fused`` and the
function bodies, ``plain``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from snac_onnx import SnacOnnx
from snac_onnx.model.sessions import SessionSettings

from .audio_metrics import max_abs, mrstft_distance, snr_db
from .parity import kernel_modes, stream_decode
from .signals import speech_like

MIN_SNR_DB = 35.0
STREAM_LIMIT = 1e-5
SIGNAL_SECONDS = 3.0
SEEDS = (11, 12)


def measure_int8(folder: Path, precision: str = "int8", seeds: tuple[int, ...] = SEEDS, seconds: float = SIGNAL_SECONDS) -> dict[str, Any]:
    """The report (JSON-able): one row per (kernel mode, signal), the worst figures, and ``passed``."""
    fp32 = SnacOnnx(folder)
    rows: list[dict[str, Any]] = []
    for kernel in kernel_modes():
        codec = SnacOnnx(folder, precision=precision, settings=SessionSettings(fused_snake=kernel == "fused"))
        for seed in seeds:
            pcm = speech_like(codec.sample_rate, seconds, seed)
            codes = fp32.encode(pcm)
            frames = codes[0].shape[0] // codec.config.codes_per_frame[0]
            ref = fp32.decode(codes, noise=False)
            ours = codec.decode(codes, noise=False)
            noise = codec.stream_noise(frames, seed)
            ref_codes, our_codes = fp32.encode(ref), fp32.encode(ours)
            agree = np.mean(np.concatenate([(a == b).ravel() for a, b in zip(ref_codes, our_codes)]))
            rows.append(
                {
                    "kernel": kernel,
                    "seed": seed,
                    "seconds": seconds,
                    "snr_db": snr_db(ours, ref),
                    "max_abs": max_abs(ours, ref),
                    "mrstft": mrstft_distance(ours, ref),
                    "code_agreement": float(agree),
                    "stream_max_abs": max(
                        max_abs(stream_decode(codec, codes, None), ours),
                        max_abs(stream_decode(codec, codes, seed), codec.decode(codes, noise=noise)),
                    ),
                }
            )
        codec.close()
    fp32.close()
    worst = {
        "snr_db": min(r["snr_db"] for r in rows),
        "max_abs": max(r["max_abs"] for r in rows),
        "mrstft": max(r["mrstft"] for r in rows),
        "code_agreement": min(r["code_agreement"] for r in rows),
        "stream_max_abs": max(r["stream_max_abs"] for r in rows),
    }
    return {
        "against": "the fp32 graphs of this export, noise off; export.signals.speech_like",
        "limits": {"min_snr_db": MIN_SNR_DB, "stream_max_abs": STREAM_LIMIT},
        "rows": rows,
        "worst": worst,
        "passed": bool(worst["snr_db"] >= MIN_SNR_DB and worst["stream_max_abs"] <= STREAM_LIMIT),
    }


def summarize_int8(report: dict[str, Any]) -> str:
    w = report["worst"]
    verdict = "passed" if report["passed"] else "FAILED"
    return (
        f"int8 {verdict}: SNR >= {w['snr_db']:.1f} dB against fp32 (limit {MIN_SNR_DB:g}), max abs {w['max_abs']:.1e}, "
        f"MR-STFT {w['mrstft']:.3f}, re-encoded codes {100 * w['code_agreement']:.1f} % equal, stream vs offline "
        f"{w['stream_max_abs']:.1e}"
    )
