"""How far one decode is from another (NumPy only): SNR, max abs, a multi-resolution STFT distance."""

from __future__ import annotations

import numpy as np

STFT_SIZES = (512, 1024, 2048)


def snr_db(ours: np.ndarray, ref: np.ndarray) -> float:
    """``10 log10(sum ref^2 / sum (ours - ref)^2)`` in dB (inf when equal)."""
    err = np.asarray(ours, np.float64) - np.asarray(ref, np.float64)
    noise = float(np.sum(err**2))
    return float("inf") if noise == 0 else float(10 * np.log10(float(np.sum(np.asarray(ref, np.float64) ** 2)) / noise))


def max_abs(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(ours, np.float64) - np.asarray(ref, np.float64)))) if np.size(ref) else 0.0


def _magnitudes(x: np.ndarray, size: int) -> np.ndarray:
    hop = size // 4
    x = np.asarray(x, np.float64).reshape(-1)
    if x.size < size:
        x = np.pad(x, (0, size - x.size))
    frames = 1 + (x.size - size) // hop
    index = np.arange(size)[None, :] + hop * np.arange(frames)[:, None]
    return np.abs(np.fft.rfft(x[index] * np.hanning(size), axis=1))


def mrstft_distance(ours: np.ndarray, ref: np.ndarray, sizes: tuple[int, ...] = STFT_SIZES) -> float:
    """Multi-resolution STFT distance: per FFT size (hop a quarter, Hann window), spectral convergence
    ``||S_ref - S_ours||_F / ||S_ref||_F`` plus the mean absolute log10 magnitude difference; averaged over sizes."""
    total = 0.0
    for size in sizes:
        a, b = _magnitudes(ours, size), _magnitudes(ref, size)
        convergence = float(np.linalg.norm(b - a) / max(np.linalg.norm(b), 1e-12))
        log_distance = float(np.mean(np.abs(np.log10(np.maximum(a, 1e-7)) - np.log10(np.maximum(b, 1e-7)))))
        total += convergence + log_distance
    return total / len(sizes)
