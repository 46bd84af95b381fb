"""Give a randomly initialised SNAC diverse codebooks, drawn from its own encoder latents.

A freshly initialised SNAC maps almost every frame to a handful of codes, so a
parity check on it proves little. Here each codebook, in residual order, is
redrawn from the distribution of the projected latents it quantises, measured
on a seeded speech-like signal: ``in_proj``'s bias is shifted so the latents
are centred, and the entries are samples of a Gaussian fitted to them. Codes then spread over hundreds of entries and
near-ties appear, as with trained weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from snac import SNAC

from .signals import speech_like


@torch.no_grad()
def codebooks_from_latents(model: SNAC, seed: int, seconds: float = 20.0) -> dict[str, list[int]]:
    """Redraw every codebook of ``model`` in place; returns unique-code counts per codebook on the drawing signal."""
    gen = torch.Generator().manual_seed(seed + 1)
    audio = torch.from_numpy(speech_like(model.sampling_rate, seconds, seed=seed + 1000))[None, None]
    residual = model.encoder(model.preprocess(audio))
    unique = []
    for quantizer in model.quantizer.quantizers:
        pooled = F.avg_pool1d(residual, quantizer.stride, quantizer.stride) if quantizer.stride > 1 else residual
        latents = quantizer.in_proj(pooled)[0].T  # (frames, codebook_dim)
        # Centre the projected latents (in_proj's bias) so their directions cover the sphere
        # instead of a narrow cone, then draw the codebook from a Gaussian fitted to them.
        mean = latents.mean(0)
        quantizer.in_proj.bias -= mean
        centred = latents - mean
        size, dim = quantizer.codebook.weight.shape
        chol = torch.linalg.cholesky(torch.cov(centred.T) + 1e-6 * torch.eye(dim))
        quantizer.codebook.weight.copy_(torch.randn(size, dim, generator=gen) @ chol.T)
        z_q, codes = quantizer(residual)
        unique.append(int(codes.unique().numel()))
        residual = residual - z_q
    return {"unique_codes_on_drawing_signal": unique}
