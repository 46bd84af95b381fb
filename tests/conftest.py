"""Shared fixtures: the tiny exported models in tests/fixtures (real graph names, tiny widths)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TINY_24 = FIXTURES / "tiny_24khz"
TINY_44 = FIXTURES / "tiny_44khz"


def pcm(length: int, seed: int = 0, batch: int | None = None) -> np.ndarray:
    """Seeded float32 test PCM: a few sines plus noise, peak about 0.5."""
    rng = np.random.default_rng(seed)
    shape = (length,) if batch is None else (batch, length)
    t = np.arange(length) / 24000.0
    tone = sum(np.sin(2 * np.pi * f * t + p) for f, p in zip(rng.uniform(80, 4000, 4), rng.uniform(0, 6, 4)))
    out = 0.1 * tone + 0.1 * rng.standard_normal(shape)
    return out.astype(np.float32)


@pytest.fixture(scope="session")
def tiny24():
    from snac_onnx import SnacOnnx

    return SnacOnnx(TINY_24)


@pytest.fixture(scope="session")
def tiny44():
    from snac_onnx import SnacOnnx

    return SnacOnnx(TINY_44)


@pytest.fixture()
def tiny24_copy(tmp_path: Path) -> Path:
    """A writable copy of the tiny 24 kHz model, for corrupting."""
    dest = tmp_path / "tiny_24khz"
    shutil.copytree(TINY_24, dest)
    return dest
