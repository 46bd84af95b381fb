"""The tiny fixture models' outputs on one machine, compared with another machine's on the same inputs.

    python scripts/platform_outputs.py write REF.npz [--models DIR ...]    # the reference machine (x86-64)
    python scripts/platform_outputs.py compare REF.npz [--models DIR ...]  # the other (aarch64): JSON on stdout

``write`` stores, per model, the input PCM, its codes (encoded with the fused kernel), and the decode and the
stream output of those codes both with the fused Snake kernel and with Snake as plain ONNX nodes (noise off), and
the int8 variant's decode and stream (channels-last, fused kernels) where the export holds it.
``compare`` reads them back, requires the kernel to be in use here (``codec.fused_snake``), decodes and streams
the same codes with and without it, encodes the same PCM, and reports the largest absolute difference of each
output against both reference outputs, and the share of codes that agree. It exits 1 when a difference exceeds
``--tolerance``.

Why a tolerance and not equality: the two machines run different code for the same arithmetic: onnxruntime's
convolutions and matrix products (MLAS) are written per CPU (AVX-512 or AVX2 on x86-64, NEON on aarch64) and sum
in other orders and widths, compilers contract a*b+c into one fused multiply-add on one target and not the other,
and the fused kernel's sine polynomial is itself about 1 ulp. Each changes float32 rounding in the last bits;
through the decoder's depth that grows to around 1e-6 of the signal, far below 1e-4 (the bound the test suite
holds streams to against offline decodes), while a wrong kernel would be off by the signal's own size.
Encoding picks the nearest code, so a float near-tie may flip a code: the agreement is reported, not required.

The int8 variant quantizes each activation row to int8: where float32 rounding in the last bits lands a value on
the other side of a rounding boundary, that one code moves by one step, so the two machines' int8 outputs may
differ by a fraction of one quantization step instead of 1e-6. They are held to a tenth of the int8 variant's own
error against fp32 (measured on the reference machine, stored with it): a wrong int8 kernel would be off by more
than the quantization error itself. Each machine's int8 stream must equal its own int8 offline decode exactly
(``tests/runtime/test_int8.py``, which this machine runs too).
The PCM is stored, not regenerated, so both machines encode the very same samples.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

from snac_onnx import SessionSettings, SnacOnnx
from snac_onnx.model import kernels

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
DEFAULT_MODELS = [FIXTURES / "tiny_24khz", FIXTURES / "tiny_44khz"]


def _pcm(units: int, unit: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal(units * unit + 321)).astype(np.float32)


def _stream(codec: SnacOnnx, codes: list[np.ndarray]) -> np.ndarray:
    """The codes pushed one frame (the coarsest code and the finer codes under it) at a time, then flushed."""
    per = [codec.vq_strides[0] // s for s in codec.vq_strides]
    stream = codec.stream()
    pieces = [stream.push([c[f * p : (f + 1) * p] for c, p in zip(codes, per, strict=True)]) for f in range(len(codes[0]))]
    pieces.append(stream.flush())
    return np.concatenate(pieces)


def _codecs(folder: Path) -> tuple[SnacOnnx, SnacOnnx]:
    fused = SnacOnnx(folder, settings=SessionSettings(fused_snake=True))
    plain = SnacOnnx(folder, settings=SessionSettings(fused_snake=False))
    return fused, plain


def _int8(folder: Path, codes: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The int8 variant's decode and stream of ``codes`` (fused kernels), or nothing where the export lacks it."""
    codec = SnacOnnx(folder, settings=SessionSettings(fused_snake=True))
    if "int8" not in codec.manifest.precisions:
        return {}
    int8 = SnacOnnx(folder, precision="int8", settings=SessionSettings(fused_snake=True))
    return {"int8_decode": int8.decode(codes, noise=False), "int8_stream": _stream(int8, codes)}


def write(out: Path, models: list[Path]) -> None:
    arrays: dict[str, np.ndarray] = {}
    for folder in models:
        fused, plain = _codecs(folder)
        pcm = _pcm(4, fused.padding_unit, seed=3)
        codes = fused.encode(pcm)
        arrays[f"{folder.name}/pcm"] = pcm
        for i, c in enumerate(codes):
            arrays[f"{folder.name}/codes{i}"] = c
        for name, codec in (("fused", fused), ("plain", plain)):
            arrays[f"{folder.name}/decode_{name}"] = codec.decode(codes, noise=False)
            arrays[f"{folder.name}/stream_{name}"] = _stream(codec, codes)
        for key, value in _int8(folder, codes).items():
            arrays[f"{folder.name}/{key}"] = value
    np.savez(out, **arrays)
    print(f"wrote {out} on {platform.machine()}: {sorted(arrays)}")


def compare(ref: Path, models: list[Path], tolerance: float) -> int:
    stored = np.load(ref)
    report: dict[str, object] = {
        "machine": platform.machine(),
        "kernel_library": str(kernels.snake_library()),
        "tolerance": tolerance,
        "models": {},
    }
    worst = 0.0
    int8_passed = True
    for folder in models:
        fused, plain = _codecs(folder)
        pcm = stored[f"{folder.name}/pcm"]
        n = len(fused.vq_strides)
        codes = [stored[f"{folder.name}/codes{i}"] for i in range(n)]
        here = {
            "decode_fused": fused.decode(codes, noise=False),
            "decode_plain": plain.decode(codes, noise=False),
            "stream_fused": _stream(fused, codes),
            "stream_plain": _stream(plain, codes),
        }
        if not fused.fused_snake or plain.fused_snake:
            raise SystemExit(f"the fused kernel is not in use on this machine ({kernels.snake_library()})")
        diffs = {}
        for key, value in here.items():
            kind = key.split("_")[0]
            for other in ("fused", "plain"):
                reference = stored[f"{folder.name}/{kind}_{other}"]
                assert value.shape == reference.shape, (key, value.shape, reference.shape)
                diff = float(np.max(np.abs(value - reference)))
                diffs[f"{key} vs reference {kind}_{other}"] = diff
                worst = max(worst, diff)
        int8_report = {}
        if f"{folder.name}/int8_decode" in stored:
            fp32_ref = stored[f"{folder.name}/decode_fused"]
            own_error = float(np.max(np.abs(stored[f"{folder.name}/int8_decode"] - fp32_ref)))
            for key, value in _int8(folder, codes).items():
                diff = float(np.max(np.abs(value - stored[f"{folder.name}/{key}"])))
                int8_report[f"{key} vs reference {key}"] = diff
                int8_passed &= diff <= 0.1 * own_error
            int8_report["int8 vs fp32 on the reference machine (its own error)"] = own_error
        new_codes = fused.encode(pcm)
        agreement = float(np.mean(np.concatenate([(a == b).ravel() for a, b in zip(new_codes, codes, strict=True)])))
        report["models"][folder.name] = {  # type: ignore[index]
            "peak_abs_audio": float(np.max(np.abs(stored[f"{folder.name}/decode_fused"]))),
            "stream_mode": fused.stream().mode,
            "max_abs_diff": diffs,
            "int8_max_abs_diff": int8_report,
            "encode_code_agreement": agreement,
        }
    report["max_abs_diff_overall"] = worst
    report["int8_passed"] = int8_passed
    report["passed"] = worst <= tolerance and int8_passed
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["write", "compare"])
    parser.add_argument("reference", type=Path)
    parser.add_argument("--models", type=Path, nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()
    if args.action == "write":
        write(args.reference, args.models)
    else:
        sys.exit(compare(args.reference, args.models, args.tolerance))


if __name__ == "__main__":
    main()
