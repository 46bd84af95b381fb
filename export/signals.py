"""Seeded, speech-like test signals (NumPy only), for codebook drawing and parity checks."""

from __future__ import annotations

import numpy as np


def speech_like(sample_rate: int, seconds: float, seed: int) -> np.ndarray:
    """A float32 mono signal of voiced syllables, fricatives and pauses, peak 0.5.

    Voiced parts are harmonic series with a gliding pitch (80-260 Hz) shaped by
    three random formants; unvoiced parts are high-passed noise bursts. It is no
    speech, but it spans the codec's spectrum and dynamics far better than
    white noise or a sine.
    """
    rng = np.random.default_rng(seed)
    total = round(seconds * sample_rate)
    out = np.zeros(total, dtype=np.float64)
    pos = 0
    nyquist = sample_rate / 2
    while pos < total:
        kind = rng.choice(["voiced", "voiced", "fricative", "pause"])
        dur = int(sample_rate * rng.uniform(0.05, 0.3))
        seg_len = min(dur, total - pos)
        t = np.arange(seg_len) / sample_rate
        if kind == "voiced":
            f0 = rng.uniform(80, 260) * (1 + rng.uniform(-0.3, 0.3) * t / max(t[-1], 1e-9) if seg_len > 1 else 1)
            phase = 2 * np.pi * np.cumsum(f0) / sample_rate
            formants = np.sort(rng.uniform([300, 900, 2000], [900, 2500, 4000]))
            seg = np.zeros(seg_len)
            for h in range(1, 40):
                freq = h * float(np.mean(f0))
                if freq >= nyquist * 0.95:
                    break
                gain = sum(np.exp(-(((freq - f) / (80 + 0.1 * f)) ** 2)) for f in formants) + 0.02
                seg += gain / h**0.5 * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
        elif kind == "fricative":
            noise = rng.standard_normal(seg_len)
            seg = np.diff(noise, prepend=0.0) * rng.uniform(0.1, 0.4)
        else:
            seg = rng.standard_normal(seg_len) * 1e-3
        envelope = np.sin(np.pi * np.linspace(0, 1, seg_len)) ** 0.5 if seg_len > 1 else np.ones(seg_len)
        out[pos : pos + seg_len] = seg * envelope * rng.uniform(0.2, 1.0)
        pos += seg_len
    peak = np.max(np.abs(out)) or 1.0
    return (0.5 * out / peak).astype(np.float32)
