"""Parity of an exported model (run through snac_onnx) against the official PyTorch model.

Codes: fraction of positions equal to ``SNAC.encode``; every mismatch is
reported with the reference's own decision margin (best minus second-best
score), which shows whether it sits on a near-tie. SNAC's quantizers are
residual: once a coarser codebook picked another code at a time step, the finer
codebooks over that step quantize a different residual, and the reference
margin says nothing about them. Such mismatches are counted as *downstream* of
the first one; only *primary* mismatches must be near-ties. Audio: relative RMS error
and max abs error of ``SnacOnnx.decode`` against ``SNAC.decode`` (a) with noise
off (NoiseBlocks removed from a copy of the reference) and (b) with the very
noise the official decode drew (same torch seed, regenerated in call order).

Both ways of running Snake are measured when the fused kernel is installed:
``plain`` (the graphs' ONNX function bodies) and ``fused`` (snac_onnx's kernel).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from snac import SNAC
from snac.layers import NoiseBlock
from torch import nn

from snac_onnx import SnacOnnx
from snac_onnx.model.kernels import fused_snake_available
from snac_onnx.model.sessions import SessionSettings

from .signals import speech_like

REL_RMS_LIMIT = 1e-5
MAX_ABS_LIMIT = 1e-4
NEAR_TIE = 1e-4  # a code mismatch whose reference margin is below this is a float near-tie


@dataclass(frozen=True)
class Limits:
    rel_rms: float = REL_RMS_LIMIT
    max_abs: float = MAX_ABS_LIMIT
    near_tie: float = NEAR_TIE


def default_lengths(model: SNAC) -> list[int]:
    """One padding unit, 2.3 units (not a multiple), and one second (not a multiple for official rates)."""
    lcm = int(np.lcm(model.vq_strides[0], model.attn_window_size or 1))
    unit = int(model.hop_length) * lcm
    return [unit, 2 * unit + unit // 3 + 1, int(model.sampling_rate)]


@torch.no_grad()
def reference_margins(model: SNAC, audio: torch.Tensor) -> list[torch.Tensor]:
    """Per-position margin (best minus second-best of ``-dist``) of each codebook, as in ``decode_latents``."""
    residual = model.encoder(model.preprocess(audio))
    margins = []
    for quantizer in model.quantizer.quantizers:
        pooled = F.avg_pool1d(residual, quantizer.stride, quantizer.stride) if quantizer.stride > 1 else residual
        latents = quantizer.in_proj(pooled)
        enc = F.normalize(latents.transpose(1, 2).reshape(-1, latents.shape[1]))
        book = F.normalize(quantizer.codebook.weight)
        dist = enc.pow(2).sum(1, keepdim=True) - 2 * enc @ book.t() + book.pow(2).sum(1, keepdim=True).t()
        top2 = (-dist).topk(2, dim=1).values
        margins.append((top2[:, 0] - top2[:, 1]).reshape(latents.shape[0], -1))
        z_q, _ = quantizer(residual)
        residual = residual - z_q
    return margins


def _without_noise(model: SNAC) -> SNAC:
    quiet = copy.deepcopy(model)
    for module in list(quiet.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, NoiseBlock):
                setattr(module, name, nn.Identity())
    return quiet.eval()


class _GivenNoise(nn.Module):
    """A NoiseBlock that adds given noise instead of ``torch.randn``: ``x + noise * linear(x)``."""

    linear: nn.Module
    noise: torch.Tensor

    def __init__(self, block: NoiseBlock, noise: torch.Tensor) -> None:
        super().__init__()
        self.linear, self.noise = block.linear, noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noisy: torch.Tensor = x + self.noise * self.linear(x)
        return noisy


def _with_noise(model: SNAC, noise: list[np.ndarray]) -> SNAC:
    """A copy of ``model`` whose NoiseBlocks add ``noise`` (one array per block, in order)."""
    given = copy.deepcopy(model)
    arrays = iter(noise)
    for module in list(given.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, NoiseBlock):
                setattr(module, name, _GivenNoise(child, torch.from_numpy(next(arrays))))
    return given.eval()


def stream_decode(codec: SnacOnnx, codes: list[np.ndarray], seed: int | None) -> np.ndarray:
    """Codes (one sequence) pushed frame by frame through a stateful stream (noise from ``seed``; None: off)."""
    stream = codec.stream(mode="stateful", noise=seed is not None, seed=seed)
    per = codec.config.codes_per_frame
    frames = codes[0].shape[0] // per[0]
    out = [stream.push([c[f * p : (f + 1) * p] for c, p in zip(codes, per)]) for f in range(frames)]
    return np.concatenate([*out, stream.flush()])


def _audio_errors(ours: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    err = ours.astype(np.float64) - ref.astype(np.float64)
    rms_ref = float(np.sqrt(np.mean(ref.astype(np.float64) ** 2))) or 1.0
    return {"rel_rms": float(np.sqrt(np.mean(err**2))) / rms_ref, "max_abs": float(np.max(np.abs(err)))}


def split_mismatches(diffs: list[np.ndarray], strides: list[int]) -> tuple[list[np.ndarray], int]:
    """Primary mismatch masks per codebook, and the number of downstream mismatches.

    ``diffs[k]`` is a boolean ``(batch, frames_k)`` mask of codebook ``k`` (stride
    ``strides[k]`` latent steps per code). A mismatch of codebook ``k`` at code
    ``t`` is downstream when a coarser codebook mismatched over the same latent steps.
    """
    primary = []
    downstream = 0
    covered = None  # (batch, latent steps) where a coarser codebook already differed
    for diff, stride in zip(diffs, strides):
        steps = np.repeat(diff, stride, axis=1)
        mask = diff.copy()
        if covered is not None:
            inherited = covered.reshape(diff.shape[0], diff.shape[1], stride).any(axis=2)
            downstream += int((diff & inherited).sum())
            mask &= ~inherited
            covered = covered | steps
        else:
            covered = steps
        primary.append(mask)
    return primary, downstream


def kernel_modes() -> tuple[str, ...]:
    """``("plain", "fused")`` when the fused Snake kernel is installed, else ``("plain",)``."""
    return ("plain", "fused") if fused_snake_available() else ("plain",)


@torch.no_grad()
def measure_parity(
    reference: SNAC,
    folder: Path,
    lengths: list[int] | None = None,
    batches: tuple[int, ...] = (1, 4),
    seed: int = 1234,
    limits: Limits = Limits(),
    kernels: tuple[str, ...] | None = None,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Compare ``folder`` (via snac_onnx) with ``reference`` on speech-like audio.

    Returns a JSON-able report: one row per (kernel, length, batch) and ``passed``.
    A row fails when a primary code mismatch has a margin above
    ``limits.near_tie`` or an audio error exceeds its limit. ``kernels``
    defaults to :func:`kernel_modes`. ``precision``: the graphs to check (``fp32-cl``: the channels-last ones).
    """
    reference = reference.eval()
    quiet = _without_noise(reference)
    strides = [int(s) for s in reference.vq_strides]
    codecs = {
        kernel: SnacOnnx(folder, precision=precision, settings=SessionSettings(fused_snake=kernel == "fused"))
        for kernel in kernels or kernel_modes()
    }
    first = next(iter(codecs.values()))
    rows: dict[str, list[dict[str, Any]]] = {kernel: [] for kernel in codecs}
    for length in lengths or default_lengths(reference):
        for batch in batches:
            case = _reference_case(reference, quiet, first, length, batch, seed)  # PyTorch's side, once per case
            for kernel, codec in codecs.items():
                rows[kernel].append(_parity_row(case, codec, kernel, strides, limits))
    every = [row for kernel in codecs for row in rows[kernel]]
    return {
        "limits": {"rel_rms": limits.rel_rms, "max_abs": limits.max_abs, "near_tie_margin": limits.near_tie},
        "signal": f"export.signals.speech_like, seeds {seed}..{seed + max(batches) - 1}",
        "rows": every,
        "passed": all(r["passed"] for r in every),
    }


@torch.no_grad()
def _reference_case(reference: SNAC, quiet: SNAC, codec: SnacOnnx, length: int, batch: int, seed: int) -> dict[str, Any]:
    """PyTorch's side of one (length, batch) case: the signal, the official codes and their margins, and the
    official decodes with noise off, with seeded noise (and that noise), and (batch 1) with the stream's noise.
    ``codec`` gives only the noise shapes and the stream's noise, which every export of the model shares."""
    pcm = np.stack([speech_like(reference.sampling_rate, length / reference.sampling_rate, seed + i) for i in range(batch)])
    pcm = pcm[:, :length]
    ref_codes = reference.encode(torch.from_numpy(pcm)[:, None, :])
    codes_np = [c.numpy() for c in ref_codes]
    case: dict[str, Any] = {
        "length": length,
        "batch": batch,
        "pcm": pcm,
        "codes": codes_np,
        "margins": reference_margins(reference, torch.from_numpy(pcm)[:, None, :]),
        "quiet": quiet.decode(ref_codes)[:, 0].numpy(),
    }
    torch.manual_seed(seed)
    case["noisy"] = reference.decode(ref_codes)[:, 0].numpy()
    torch.manual_seed(seed)  # the same draws, in the same order, as the NoiseBlocks above
    case["noise"] = [torch.randn(shape).numpy() for shape in codec.noise_shapes(batch, codes_np[0].shape[1])]
    if batch == 1 and codec.manifest.has_stream(codec.precision):  # the stateful stream against PyTorch
        frames = codes_np[0].shape[1]
        given = _with_noise(reference, [n[0, 0] for n in codec.stream_noise(frames, seed)])
        case["stream_given"] = given.decode(ref_codes)[0, 0].numpy()
        case["stream_seed"] = seed
    return case


def _parity_row(case: dict[str, Any], codec: SnacOnnx, kernel: str, strides: list[int], limits: Limits) -> dict[str, Any]:
    """Our side of one case (see :func:`_reference_case`) on ``codec``, compared: one report row."""
    codes_np, margins = case["codes"], case["margins"]
    our_codes = codec.encode(case["pcm"])
    diffs = []
    for ref_c, our_c in zip(codes_np, our_codes):
        if ref_c.shape != our_c.shape:
            raise AssertionError(f"code shapes differ: torch {ref_c.shape}, onnx {our_c.shape}")
        diffs.append(ref_c != our_c)
    positions = sum(d.size for d in diffs)
    mismatches = sum(int(d.sum()) for d in diffs)
    primary, downstream = split_mismatches(diffs, strides)
    mismatch_margins = [float(m) for mask, margin in zip(primary, margins) for m in margin.numpy()[mask]]
    stream = {}
    if "stream_given" in case and codec.manifest.has_stream(codec.precision):
        stream = {
            "stream_noise_off": _audio_errors(stream_decode(codec, [c[0] for c in codes_np], None), case["quiet"][0]),
            "stream_same_noise": _audio_errors(stream_decode(codec, [c[0] for c in codes_np], case["stream_seed"]), case["stream_given"]),
        }
    row = {
        "kernel": kernel,
        "length": case["length"],
        "batch": case["batch"],
        "positions": positions,
        "code_match": 1.0 - mismatches / positions,
        "mismatch_margins": sorted(mismatch_margins),
        "downstream_mismatches": downstream,
        "min_margin": float(min(float(m.min()) for m in margins)),
        "unique_codes": [int(np.unique(c).size) for c in codes_np],
        "noise_off": _audio_errors(codec.decode(codes_np, noise=False), case["quiet"]),
        "same_noise": _audio_errors(codec.decode(codes_np, noise=case["noise"]), case["noisy"]),
        **stream,
    }
    audio_keys = ["noise_off", "same_noise", *stream]
    row["passed"] = bool(
        all(m < limits.near_tie for m in mismatch_margins)
        and all(row[k]["rel_rms"] <= limits.rel_rms for k in audio_keys)
        and all(row[k]["max_abs"] <= limits.max_abs for k in audio_keys)
    )
    return row


def summarize_parity(report: dict[str, Any]) -> str:
    """One line: cases, code match, worst errors, verdict."""
    rows = report["rows"]
    match = min(r["code_match"] for r in rows)
    off = max(r["noise_off"]["max_abs"] for r in rows)
    same = max(r["same_noise"]["max_abs"] for r in rows)
    streamed = [max(r[k]["max_abs"] for k in ("stream_noise_off", "stream_same_noise")) for r in rows if "stream_noise_off" in r]
    verdict = "passed" if report["passed"] else "FAILED"
    stream = f", stateful stream {max(streamed):.1e}" if streamed else ""
    return (
        f"parity {verdict} over {len(rows)} cases: codes >= {100 * match:.3f} % equal, audio max abs "
        f"{off:.1e} (noise off) / {same:.1e} (same noise){stream}"
    )


def format_parity(report: dict[str, Any]) -> str:
    """A markdown table of a parity report."""
    lines = [
        "| kernel | length | batch | unique codes | code match | primary mismatches (margins) | downstream | min margin | rel RMS (noise off) | max abs (noise off) | rel RMS (same noise) | max abs (same noise) | stream max abs (off / same noise) | ok |",
        "|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["rows"]:
        mm = ", ".join(f"{m:.1e}" for m in r["mismatch_margins"]) or "none"
        stream = (
            f"{r['stream_noise_off']['max_abs']:.1e} / {r['stream_same_noise']['max_abs']:.1e}"
            if "stream_noise_off" in r
            else "-"
        )
        lines.append(
            f"| {r.get('kernel', 'plain')} | {r['length']} | {r['batch']} | {'/'.join(map(str, r['unique_codes']))} "
            f"| {100 * r['code_match']:.3f} % of {r['positions']} | {mm} | {r.get('downstream_mismatches', 0)} | {r['min_margin']:.1e} "
            f"| {r['noise_off']['rel_rms']:.1e} | {r['noise_off']['max_abs']:.1e} "
            f"| {r['same_noise']['rel_rms']:.1e} | {r['same_noise']['max_abs']:.1e} | {stream} | {'yes' if r['passed'] else 'NO'} |"
        )
    return "\n".join(lines)
