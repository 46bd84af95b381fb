"""The fp16 variant of an exported model (GPU), with its error and speed measured against fp32.

* ``fp16``: weights and activations in float16, inputs/outputs kept float32
  (onnxruntime.transformers.float16), for GPU execution providers.

(The int8 variant is the channels-last graphs of :mod:`export.cl_export`; an earlier int8, dynamic
quantisation of the channels-first convolutions with onnxruntime.quantization, was slower than fp32.)

Each variant is measured on the execution provider given (default CPU) against
the fp32 graphs of the same export: decode relative RMS error and SNR (noise
off), encode code agreement, speed ratio fp32/variant in the same process, and
file sizes. ``recommended`` says, per graph, whether the variant is both
faster (by more than 5 %) and accurate enough (decoder: SNR >= 30 dB; encoder:
>= 95 % of codes equal to fp32); otherwise the numbers say why not.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from snac_onnx import SnacOnnx
from snac_onnx.model.manifest import sha256_file

from .signals import speech_like

PRECISIONS = ("fp16",)
MIN_SNR_DB = 30.0
MIN_CODE_AGREEMENT = 0.95


def write_variant(folder: Path, precision: str) -> dict[str, dict[str, Any]]:
    """Write ``encoder.<precision>.onnx`` and ``decoder.<precision>.onnx``; returns their file entries."""
    import onnx
    import onnx.inliner

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    files = {}
    for role in ("encoder", "decoder"):
        src, dst = folder / f"{role}.onnx", folder / f"{role}.{precision}.onnx"
        # The fused Snake kernel is float32-only: variants carry Snake as plain nodes.
        plain = onnx.inliner.inline_local_functions(onnx.load(str(src)))
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(plain, keep_io_types=True), str(dst))
        written = onnx.load(str(dst))  # the variant keeps the graph's own config (snac_onnx.config), whatever the tool
        kept = {entry.key for entry in written.metadata_props}
        missing = [entry for entry in plain.metadata_props if entry.key not in kept]
        if missing:
            written.metadata_props.extend(missing)
            onnx.save(written, str(dst))
        files[role] = {"path": dst.name, "sha256": sha256_file(dst), "bytes": dst.stat().st_size}
    return files


def median_seconds(fn: Callable[[], object], reps: int = 3) -> float:
    """Median wall time of ``reps`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_variant(folder: Path, precision: str, providers: list[str] | None = None, seconds: float = 5.0) -> dict[str, Any]:
    """Error and speed of ``precision`` against fp32 in ``folder`` (whose manifest lists the variant)."""
    base = SnacOnnx(folder, providers=providers)
    try:
        variant = SnacOnnx(folder, providers=providers, precision=precision)
        pcm = speech_like(base.sample_rate, seconds, seed=77)
        codes = base.encode(pcm)
        ref_audio = base.decode(codes, noise=False)
        var_audio = variant.decode(codes, noise=False)
        var_codes = variant.encode(pcm)
    except Exception as exc:  # e.g. no float16 kernels on this provider  # noqa: BLE001
        return {"runs": False, "providers": providers or ["CPUExecutionProvider"], "error": f"{type(exc).__name__}: {exc}"[:500],
                "recommended": {"encoder": False, "decoder": False}}
    err = var_audio.astype(np.float64) - ref_audio
    rel_rms = float(np.sqrt(np.mean(err**2) / max(np.mean(ref_audio.astype(np.float64) ** 2), 1e-20)))
    agreement = float(np.mean(np.concatenate([(a == b).ravel() for a, b in zip(codes, var_codes)])))
    speed = {
        "decode": median_seconds(lambda: base.decode(codes, noise=False)) / median_seconds(lambda: variant.decode(codes, noise=False)),
        "encode": median_seconds(lambda: base.encode(pcm)) / median_seconds(lambda: variant.encode(pcm)),
    }
    snr = float(-20 * np.log10(max(rel_rms, 1e-12)))
    return {
        "runs": True,
        "providers": variant.active_providers["decoder"],
        "seconds_of_audio": seconds,
        "decode_rel_rms": rel_rms,
        "decode_snr_db": snr,
        "encode_code_agreement": agreement,
        "speed_vs_fp32": speed,
        "recommended": {
            "decoder": bool(speed["decode"] > 1.05 and snr >= MIN_SNR_DB),
            "encoder": bool(speed["encode"] > 1.05 and agreement >= MIN_CODE_AGREEMENT),
        },
    }
