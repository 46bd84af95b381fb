"""What the tests share: the tiny exported models in tests/fixtures (real graph names, tiny widths) and test PCM."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"
TINY_24 = FIXTURES / "tiny_24khz"
TINY_44 = FIXTURES / "tiny_44khz"


def pcm(length: int, seed: int = 0, batch: int | None = None) -> np.ndarray:
    """Seeded float32 test PCM: a few sines plus noise, peak about 0.5."""
    rng = np.random.default_rng(seed)
    shape = (length,) if batch is None else (batch, length)
    t = np.arange(length) / 24000.0
    tone = sum(
        np.sin(2 * np.pi * f * t + p) for f, p in zip(rng.uniform(80, 4000, 4), rng.uniform(0, 6, 4), strict=True)
    )
    out = 0.1 * tone + 0.1 * rng.standard_normal(shape)
    return out.astype(np.float32)
