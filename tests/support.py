"""What the tests share: the tiny exported models in tests/fixtures (real graph names, tiny widths), test PCM, and
the seeded official model the export tests build from a fixture config."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# How long a test waits for a subprocess, a thread or a server before calling it hung: hang guards, never time
# limits on correct work, so far above a loaded machine's times (an export that takes 2 minutes alone took 5 on a
# busy 2-core machine). pytest-timeout stops a whole test after pyproject's ``timeout``.
HANG_GUARD_S = 600  # for work of seconds: a CLI call in a subprocess, a thread, a server's start
LONG_HANG_GUARD_S = 1800  # for work of minutes: an export, a wheel's build and install, 1000 calls
REPO = Path(__file__).resolve().parent.parent  # the checkout's root: the cwd of subprocesses that import tests
FIXTURES = REPO / "tests" / "fixtures"
TINY_24 = FIXTURES / "tiny_24khz"
TINY_44 = FIXTURES / "tiny_44khz"


RANDOM_WEIGHTS_WARNING = "has RANDOM WEIGHTS, not a trained checkpoint"  # the tiny models' one warning line


def without_random_weights_warning(err: str) -> str:
    """The command line's stderr without its one warning line about random weights (the tiny models have them)."""
    lines = err.splitlines()
    warned = [line for line in lines if RANDOM_WEIGHTS_WARNING in line]
    assert len(warned) <= 1, err
    return "\n".join(line for line in lines if line not in warned)


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


def seeded_snac(name: str):
    """The official ``snac.SNAC`` built from ``tests/fixtures/<name>.json`` with torch seed 0 and Snake alphas
    redrawn around zero (trained alphas vary and may be negative); returns ``(model, config dict)``.
    Needs torch and snac (export tests only)."""
    import json

    import snac
    import torch

    config = json.loads((FIXTURES / f"{name}.json").read_text())
    torch.manual_seed(0)
    model = snac.SNAC(**config).eval()
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if param_name.endswith("alpha"):
                param.copy_(torch.randn_like(param) * 0.8)
    return model, config
