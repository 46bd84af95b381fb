"""Validation of per-codebook code arrays (NumPy only).

Codes are a sequence with one integer array per codebook, coarse first. Each
array is ``(frames_i,)`` for one item or ``(batch, frames_i)`` for a batch,
with ``frames_i = frames_0 * vq_strides[0] / vq_strides[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import InvalidCodesError
from .manifest import ModelConfig

__all__ = ["PreparedCodes", "prepare_codes"]


@dataclass(frozen=True)
class PreparedCodes:
    """Codes ready for the decoder.

    Attributes:
        arrays: int64 C-contiguous arrays, one per codebook, each ``(batch, frames_i)``.
        coarse_frames: ``frames_0``, the length of the coarsest codebook.
        unbatched: the caller passed 1-D arrays; results drop the batch axis.
    """

    arrays: list[np.ndarray]
    coarse_frames: int
    unbatched: bool

    @property
    def batch_size(self) -> int:
        return int(self.arrays[0].shape[0])


def prepare_codes(codes: Sequence[object], config: ModelConfig) -> PreparedCodes:
    """Check codes against ``config`` and convert them to batched int64.

    Raises:
        InvalidCodesError: wrong number of codebooks, non-integer dtype, ranks or
            batch sizes that differ, lengths not consistent with ``vq_strides``
            (or the attention window), or a code outside ``[0, codebook_size)``.
    """
    n = config.num_codebooks
    if isinstance(codes, np.ndarray) or not isinstance(codes, Sequence):
        raise InvalidCodesError(
            f"codes must be a list of {n} integer arrays (one per codebook, coarse first), got {type(codes).__name__}"
        )
    if len(codes) != n:
        raise InvalidCodesError(f"expected {n} codebooks (vq_strides {list(config.vq_strides)}), got {len(codes)}")
    arrays = []
    for i, item in enumerate(codes):
        arr = np.asarray(item) if not isinstance(item, np.ndarray) else item
        if arr.dtype.kind not in "iu":
            raise InvalidCodesError(f"codes[{i}] has dtype {arr.dtype}; codes must be integers (int64 preferred)")
        if arr.ndim not in (1, 2):
            raise InvalidCodesError(f"codes[{i}] has shape {arr.shape}; expected (frames,) or (batch, frames)")
        arrays.append(arr)
    ranks = {a.ndim for a in arrays}
    if len(ranks) != 1:
        raise InvalidCodesError(f"codebooks mix 1-D and 2-D arrays: shapes {[a.shape for a in arrays]}")
    unbatched = arrays[0].ndim == 1
    if unbatched:
        arrays = [a[None, :] for a in arrays]
    batches = {a.shape[0] for a in arrays}
    if len(batches) != 1:
        raise InvalidCodesError(f"codebooks have different batch sizes: shapes {[a.shape for a in arrays]}")
    if arrays[0].shape[0] == 0:
        raise InvalidCodesError("codes have an empty batch")
    frames = arrays[0].shape[1]
    if frames == 0:
        raise InvalidCodesError("codes are empty: the coarsest codebook has 0 frames")
    expected = config.code_lengths(frames)
    got = [a.shape[1] for a in arrays]
    if got != expected:
        raise InvalidCodesError(
            f"per-codebook lengths {got} do not fit vq_strides {list(config.vq_strides)}: "
            f"with {frames} coarse frames they must be {expected}"
        )
    multiple = config.frames_multiple
    if frames % multiple:
        raise InvalidCodesError(
            f"{frames} coarse frames is not a multiple of {multiple}: the decoder's attention window "
            f"({config.attn_window_size} latent steps) needs coarse frames in multiples of {multiple}; "
            f"pad the codes to {frames + (-frames % multiple)} frames (codes from encode() always fit)"
        )
    out = []
    for i, arr in enumerate(arrays):
        if arr.size:
            low, high = int(arr.min()), int(arr.max())
            if low < 0 or high >= config.codebook_size:
                raise InvalidCodesError(
                    f"codes[{i}] holds values in [{low}, {high}]; codes must lie in [0, {config.codebook_size})"
                )
        out.append(np.ascontiguousarray(arr, dtype=np.int64))
    return PreparedCodes(arrays=out, coarse_frames=frames, unbatched=unbatched)
