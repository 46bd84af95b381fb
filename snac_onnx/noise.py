"""The noise a stream adds: a function of (seed, NoiseBlock, frame), never of how codes were pushed.

SNAC's decoder adds ``noise * linear(x)`` in each NoiseBlock. A stream with ``noise=True`` draws
block ``j``'s noise for coarse frame ``f`` (``noise_per_frame[j]`` samples, float32) from
``numpy.random.default_rng([seed, j, f]).standard_normal``. So the noise of any sample range is
known in advance, every stream mode and every way of pushing gives the same audio, and
:meth:`NoiseSource.frames` builds exactly the noise to hand :meth:`SnacOnnx.decode` for equality.
"""

from __future__ import annotations

import numpy as np

from .config import ModelConfig

__all__ = ["NoiseSource"]

_CACHED_FRAMES = 8  # per block: a step reads at most a few frames, the newest ones


class NoiseSource:
    """Noise of one stream. ``seed`` None gives zeros (noise off).

    Args:
        config: the model's configuration.
        seed: a non-negative int (already checked), or None for no noise.
    """

    def __init__(self, config: ModelConfig, seed: int | None) -> None:
        self.seed = seed
        self.per_frame = config.noise_per_frame
        self._cache: list[dict[int, np.ndarray]] = [{} for _ in self.per_frame]

    def _frame(self, block: int, frame: int) -> np.ndarray:
        cache = self._cache[block]
        found = cache.get(frame)
        if found is None:
            rng = np.random.default_rng([int(self.seed or 0), block, frame])
            found = rng.standard_normal(self.per_frame[block], dtype=np.float32)
            if len(cache) >= _CACHED_FRAMES:
                del cache[min(cache)]
            cache[frame] = found
        return found

    def block(self, block: int, start: int, stop: int) -> np.ndarray:
        """Block ``block``'s noise at its sample positions ``[start, stop)`` (float32 1-D; zero before 0)."""
        out = np.zeros(stop - start, np.float32)
        if self.seed is None or stop <= 0:
            return out
        per = self.per_frame[block]
        first = max(start, 0)
        for frame in range(first // per, (stop - 1) // per + 1):
            a, b = max(first, frame * per), min(stop, (frame + 1) * per)
            out[a - start : b - start] = self._frame(block, frame)[a - frame * per : b - frame * per]
        return out

    def frames(self, start: int, stop: int) -> list[np.ndarray]:
        """Each block's noise (float32 1-D) for coarse frames ``[start, stop)``."""
        return [self.block(j, start * per, stop * per) for j, per in enumerate(self.per_frame)]
