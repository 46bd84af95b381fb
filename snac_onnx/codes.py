"""The one validator of decoder inputs: codes (three call forms) and noise (NumPy only).

Codes come in three forms:

* one item: a sequence with one 1-D integer array per codebook, coarse first, ``(frames_i,)``;
* a batch of equal lengths: the same with 2-D arrays ``(batch, frames_i)``;
* a list of items of different lengths: a list whose entries are one-item code lists.

Everywhere ``frames_i = frames_0 * vq_strides[0] / vq_strides[i]`` and codes lie in
``[0, codebook_size)``. :func:`check_codes` is used by ``decode``, ``decode_tokens``,
``codes_to_tokens``, streams and the command line alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .config import ModelConfig, check_vq_strides
from .errors import InvalidArgumentError, InvalidCodesError

__all__ = ["Form", "PreparedCodes", "check_codes", "prepare_codes", "is_item_list", "check_seed", "prepare_noise"]

Form = Literal["single", "batch", "list"]


@dataclass(frozen=True)
class PreparedCodes:
    """Checked codes, per item.

    Attributes:
        items: per item, per codebook, an int64 C-contiguous 1-D array.
        frames: coarse frames of each item.
        form: the caller's form (``"single"``, ``"batch"`` or ``"list"``); results take the same form.
    """

    items: list[list[np.ndarray]]
    frames: list[int]
    form: Form

    @property
    def batch_size(self) -> int:
        return len(self.items)


def is_item_list(value: object) -> bool:
    """True for the list-of-items form: a list/tuple whose entries are themselves sequences of arrays."""
    if not isinstance(value, (list, tuple)) or not value:
        return False
    return all(
        isinstance(item, (list, tuple)) and len(item) > 0 and isinstance(item[0], (np.ndarray, list, tuple))
        for item in value
    )


def check_codes(
    codes: object,
    vq_strides: Sequence[int],
    codebook_size: int | None,
    frames_multiple: int = 1,
    *,
    what: str = "codes",
    allow_empty: bool = False,
) -> tuple[list[np.ndarray], int, bool]:
    """Check one call's codes (one item or an equal-length batch) and return them as 2-D int64.

    Args:
        codes: one integer array (or nested list) per codebook, each ``(frames_i,)`` or ``(batch, frames_i)``.
        vq_strides: the model's strides.
        codebook_size: codes must lie in ``[0, codebook_size)``; None skips the value check
            (callers whose codes come out of a checked conversion).
        frames_multiple: the coarse frame count must be a multiple of this (the attention window).
        what: the name used in messages.
        allow_empty: accept 0 frames (a conversion of nothing gives nothing; a decode refuses it).

    Returns:
        ``(arrays, coarse_frames, unbatched)``: int64 C-contiguous ``(batch, frames_i)`` arrays.

    Raises:
        InvalidCodesError: wrong number of codebooks, non-integer dtype, ranks or batch sizes
            that differ, lengths not consistent with ``vq_strides`` (or the attention window),
            or a code outside ``[0, codebook_size)``.
    """
    strides = check_vq_strides(vq_strides)
    n = len(strides)
    if isinstance(codes, np.ndarray) or not isinstance(codes, Sequence) or isinstance(codes, (str, bytes)):
        raise InvalidCodesError(
            f"{what} must be a list of {n} integer arrays (one per codebook, coarse first), got {type(codes).__name__}"
        )
    if len(codes) != n:
        raise InvalidCodesError(f"expected {n} codebooks (vq_strides {list(strides)}), got {len(codes)}")
    arrays = []
    for i, item in enumerate(codes):
        try:
            arr = item if isinstance(item, np.ndarray) else np.asarray(item)
        except ValueError as exc:  # ragged nested lists
            raise InvalidCodesError(f"{what}[{i}] is not a rectangular array: {exc}") from None
        if arr.dtype.kind not in "iu":
            if arr.size == 0 and arr.dtype.kind == "f":
                arr = arr.astype(np.int64)
            else:
                raise InvalidCodesError(f"{what}[{i}] has dtype {arr.dtype}; codes must be integers (int64 preferred)")
        if arr.ndim not in (1, 2):
            raise InvalidCodesError(f"{what}[{i}] has shape {arr.shape}; expected (frames,) or (batch, frames)")
        arrays.append(arr)
    if len({a.ndim for a in arrays}) != 1:
        raise InvalidCodesError(f"codebooks mix 1-D and 2-D arrays: shapes {[a.shape for a in arrays]}")
    unbatched = arrays[0].ndim == 1
    if unbatched:
        arrays = [a[None, :] for a in arrays]
    if len({a.shape[0] for a in arrays}) != 1:
        raise InvalidCodesError(f"codebooks have different batch sizes: shapes {[a.shape for a in arrays]}")
    if arrays[0].shape[0] == 0:
        raise InvalidCodesError(f"{what} have an empty batch")
    frames = arrays[0].shape[1]
    if frames == 0 and not allow_empty:
        raise InvalidCodesError(f"{what} are empty: the coarsest codebook has 0 frames")
    expected = [frames * strides[0] // s for s in strides]
    got = [a.shape[1] for a in arrays]
    if got != expected:
        raise InvalidCodesError(
            f"per-codebook lengths {got} do not fit vq_strides {list(strides)} (not whole frames): "
            f"with {frames} coarse frames they must be {expected}"
        )
    if frames % frames_multiple:
        raise InvalidCodesError(
            f"{frames} coarse frames is not a multiple of {frames_multiple}: the decoder's attention window "
            f"needs coarse frames in multiples of {frames_multiple}; "
            f"pad the codes to {frames + (-frames % frames_multiple)} frames (codes from encode() always fit)"
        )
    out = []
    for i, arr in enumerate(arrays):
        if codebook_size is not None and arr.size:
            low, high = int(arr.min()), int(arr.max())
            if low < 0 or high >= codebook_size:
                raise InvalidCodesError(
                    f"{what}[{i}] holds values in [{low}, {high}]; codes must lie in [0, {codebook_size})"
                )
        out.append(np.ascontiguousarray(arr, dtype=np.int64))
    return out, frames, unbatched


def prepare_codes(codes: object, config: ModelConfig, *, check_values: bool = True) -> PreparedCodes:
    """Check codes in any of the three forms against ``config``; per-item int64 arrays.

    ``check_values=False`` skips the range check, for codes that come out of
    :func:`~snac_onnx.layouts.tokens_to_codes` (which checked each id's range already).

    Raises:
        InvalidCodesError: see :func:`check_codes`; for the list form the message names the item.
    """
    size = config.codebook_size if check_values else None
    if is_item_list(codes):
        assert isinstance(codes, (list, tuple))
        items, frames = [], []
        for k, item in enumerate(codes):
            arrays, n, unbatched = check_codes(
                item, config.vq_strides, size, config.frames_multiple, what=f"codes[{k}]"
            )
            if not unbatched:
                raise InvalidCodesError(
                    f"codes[{k}] holds 2-D arrays; in a list of items each item is one sequence of 1-D arrays"
                )
            items.append([a[0] for a in arrays])
            frames.append(n)
        return PreparedCodes(items=items, frames=frames, form="list")
    arrays, n, unbatched = check_codes(codes, config.vq_strides, size, config.frames_multiple)
    batch = arrays[0].shape[0]
    items = [[a[b] for a in arrays] for b in range(batch)]
    return PreparedCodes(items=items, frames=[n] * batch, form="single" if unbatched else "batch")


def check_int(name: str, value: object, low: int) -> int:
    """``value`` as an int; :class:`InvalidArgumentError` naming ``name`` unless it is an int ``>= low`` (no bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise InvalidArgumentError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def check_seed(seed: object) -> int | None:
    """``seed`` as an int, or None; :class:`InvalidArgumentError` unless it is a non-negative int or None."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise InvalidArgumentError(f"seed must be a non-negative int or None, got {seed!r}")
    return int(seed)


NoiseArg = bool | Sequence[np.ndarray] | Sequence[Sequence[np.ndarray]]


def _check_noise_arrays(given: object, shapes: list[tuple[int, ...]], what: str) -> list[np.ndarray]:
    if isinstance(given, np.ndarray) or not isinstance(given, Sequence) or len(given) != len(shapes):
        raise InvalidArgumentError(
            f"{what} must be True, False, or a list of {len(shapes)} arrays of shapes {shapes} (float32)"
        )
    out = []
    for j, (arr, shape) in enumerate(zip(given, shapes, strict=True)):
        try:
            a = np.asarray(arr)
        except ValueError:  # NumPy refuses ragged nested lists
            raise InvalidArgumentError(
                f"{what}[{j}] is nested lists of unequal lengths; expected shape {shape}"
            ) from None
        if a.dtype.kind != "f":
            raise InvalidArgumentError(f"{what}[{j}] has dtype {a.dtype}; noise must be float (float32 preferred)")
        if a.shape != shape:
            raise InvalidArgumentError(f"{what}[{j}] has shape {a.shape}; expected {shape}")
        a = np.ascontiguousarray(a, dtype=np.float32)
        if not np.isfinite(a).all():
            raise InvalidArgumentError(f"{what}[{j}] contains NaN or infinite values")
        out.append(a)
    return out


def prepare_noise(noise: object, seed: object, prepared: PreparedCodes, config: ModelConfig) -> list[list[np.ndarray]]:
    """The decoder's noise per item, per block (float32 1-D), from the ``noise``/``seed`` arguments of ``decode``.

    * ``True``: Gaussian noise; for one item or a batch one generator ``default_rng(seed)``
      draws each block's ``(batch, 1, length)`` array in block order; for a list of items,
      item ``i`` draws from ``default_rng([seed, i])`` (from fresh entropy without a seed),
      so its noise never depends on the other items.
    * ``False``: zeros (deterministic audio).
    * arrays: for one item or a batch, one array per block of the shapes
      :meth:`SnacOnnx.noise_shapes` gives; for a list of items, one such list per item.

    Raises:
        InvalidArgumentError: a seed that is not a non-negative int, a seed with noise that is
            not generated, or arrays of the wrong count, dtype, shape or with NaN/inf.
    """
    checked = check_seed(seed)
    lengths = [config.noise_lengths(f) for f in prepared.frames]
    batch = prepared.batch_size
    if noise is True:
        if prepared.form == "list":
            out = []
            for i, per_block in enumerate(lengths):
                rng = np.random.default_rng(None if checked is None else [checked, i])
                out.append([rng.standard_normal(n, dtype=np.float32) for n in per_block])
            return out
        rng = np.random.default_rng(checked)
        blocks = [rng.standard_normal((batch, 1, n), dtype=np.float32) for n in lengths[0]]
        return [[b[i, 0] for b in blocks] for i in range(batch)]
    if checked is not None:
        raise InvalidArgumentError("seed applies to generated noise only; pass noise=True with seed, or drop seed")
    if noise is False:
        return [[np.zeros(n, np.float32) for n in per_block] for per_block in lengths]
    if isinstance(noise, bool) or not isinstance(noise, (Sequence, np.ndarray)):
        raise InvalidArgumentError(f"noise must be True, False, or a list of float arrays, got {type(noise).__name__}")
    if prepared.form == "list":
        if len(noise) != batch:
            raise InvalidArgumentError(f"noise for a list of {batch} items must be a list of {batch} per-item lists")
        return [
            [a[0, 0] for a in _check_noise_arrays(given, [(1, 1, n) for n in per_block], f"noise[{i}]")]
            for i, (given, per_block) in enumerate(zip(noise, lengths, strict=True))
        ]
    arrays = _check_noise_arrays(noise, [(batch, 1, n) for n in lengths[0]], "noise")
    return [[a[i, 0] for a in arrays] for i in range(batch)]
