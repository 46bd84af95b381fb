"""Flat token layouts of SNAC codes (NumPy only).

TTS language models emit one flat stream of tokens. Two layouts are supported:

* ``"interleaved"`` (frame-interleaved, Orpheus): one frame per coarse code, its
  subtree depth-first. For ``vq_strides=(4, 2, 1)`` frame t is
  ``[c0[t], c1[2t], c2[4t], c2[4t+1], c1[2t+1], c2[4t+2], c2[4t+3]]``; for
  ``(8, 4, 2, 1)`` the codebooks of the 15 positions are
  ``[0,1,2,3,3,2,3,3,1,2,3,3,2,3,3]``.
* ``"codebook_major"``: ``[codes_0 all, codes_1 all, ...]``.

A *frame* (one coarse code and everything under it) has
``frame_size = sum(s0 / s_i)`` tokens: 7 for ``(4, 2, 1)``, 15 for ``(8, 4, 2, 1)``.

Token ids may carry offsets so LLM vocabulary ids convert directly: the token at
position ``k`` of a frame (interleaved) or of codebook ``k`` (codebook-major) is
``id = offset + k * position_stride + code``. :data:`ORPHEUS` is Orpheus's
``128266 + k * 4096 + code``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .codes import check_codes
from .config import check_vq_strides, codes_per_frame
from .errors import InvalidArgumentError, InvalidCodesError

__all__ = [
    "TokenLayout",
    "INTERLEAVED",
    "CODEBOOK_MAJOR",
    "ORPHEUS",
    "VYVOTTS_QWEN3",
    "VYVOTTS_LFM2",
    "MINI_OMNI",
    "LAYOUT_NAMES",
    "resolve_layout",
    "frame_pattern",
    "frame_size",
    "codes_to_tokens",
    "tokens_to_codes",
]

Order = Literal["interleaved", "codebook_major"]


@dataclass(frozen=True)
class TokenLayout:
    """How codes are laid out as flat token ids.

    Attributes:
        order: ``"interleaved"`` (frame by frame, depth-first) or ``"codebook_major"``.
        offset: added to every id (0 = ids are the codes).
        position_stride: added once per position index ``k`` (frame position when
            interleaved, codebook index when codebook-major); 0 = no per-position offset.
    """

    order: Order = "interleaved"
    offset: int = 0
    position_stride: int = 0

    def __post_init__(self) -> None:
        if self.order not in ("interleaved", "codebook_major"):
            raise InvalidArgumentError(f"order must be 'interleaved' or 'codebook_major', got {self.order!r}")
        for name in ("offset", "position_stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgumentError(f"{name} must be an int >= 0, got {value!r}")


INTERLEAVED = TokenLayout("interleaved")
CODEBOOK_MAJOR = TokenLayout("codebook_major")
# The audio ids of the SNAC TTS family; snac_onnx.stream.presets cites each model's own inference code for them.
ORPHEUS = TokenLayout("interleaved", offset=128266, position_stride=4096)  # also VyvoTTS's llama3 config
VYVOTTS_QWEN3 = TokenLayout("interleaved", offset=151679, position_stride=4096)
VYVOTTS_LFM2 = TokenLayout("interleaved", offset=64410, position_stride=4096)
MINI_OMNI = TokenLayout("interleaved", offset=152000, position_stride=4160)  # input ids; its heads emit codes

_NAMED = {
    "interleaved": INTERLEAVED,
    "codebook_major": CODEBOOK_MAJOR,
    "orpheus": ORPHEUS,
    "maya1": ORPHEUS,
    "veena": ORPHEUS,
    "vyvotts-llama3": ORPHEUS,
    "vyvotts-qwen3": VYVOTTS_QWEN3,
    "vyvotts-lfm2": VYVOTTS_LFM2,
    "mini-omni": MINI_OMNI,
}
LAYOUT_NAMES: tuple[str, ...] = tuple(_NAMED)


def resolve_layout(layout: TokenLayout | str) -> TokenLayout:
    """A :class:`TokenLayout`, or one of :data:`LAYOUT_NAMES` (``interleaved``, ``codebook_major``, and the
    token presets' layouts: ``orpheus``, ``vyvotts-qwen3``, ...; see :mod:`snac_onnx.stream.presets`)."""
    if isinstance(layout, TokenLayout):
        return layout
    if isinstance(layout, str) and layout in _NAMED:
        return _NAMED[layout]
    raise InvalidArgumentError(f"layout must be a TokenLayout or one of {sorted(_NAMED)}, got {layout!r}")


def frame_pattern(vq_strides: Sequence[int]) -> list[int]:
    """Codebook index of each position of one interleaved frame (depth-first)."""
    strides = check_vq_strides(vq_strides)

    def subtree(level: int) -> list[int]:
        if level == len(strides) - 1:
            return [level]
        children = strides[level] // strides[level + 1]
        return [level] + subtree(level + 1) * children

    return subtree(0)


def frame_size(vq_strides: Sequence[int]) -> int:
    """Tokens per frame: ``sum(s0 / s_i)``."""
    return sum(codes_per_frame(vq_strides))


def codes_to_tokens(
    codes: Sequence[np.ndarray], vq_strides: Sequence[int], layout: TokenLayout | str = INTERLEAVED
) -> np.ndarray:
    """Flatten per-codebook codes to token ids.

    Args:
        codes: one integer array per codebook, coarse first, each ``(frames_i,)``
            or ``(batch, frames_i)``, lengths consistent with ``vq_strides``.
        vq_strides: the model's strides, e.g. ``(4, 2, 1)``.
        layout: a :class:`TokenLayout` or a name.

    Returns:
        int64 ids, ``(frames * frame_size,)`` or ``(batch, frames * frame_size)``.
    """
    layout = resolve_layout(layout)
    strides = check_vq_strides(vq_strides)
    per = codes_per_frame(strides)
    batched, frames, unbatched = check_codes(codes, strides, None, allow_empty=True)
    batch = batched[0].shape[0]
    if layout.order == "codebook_major":
        parts = [a.astype(np.int64) + layout.offset + k * layout.position_stride for k, a in enumerate(batched)]
        tokens = np.concatenate(parts, axis=1)
    else:
        pattern = frame_pattern(strides)
        tokens = np.empty((batch, frames, len(pattern)), dtype=np.int64)
        for i, a in enumerate(batched):
            positions = [k for k, cb in enumerate(pattern) if cb == i]
            tokens[:, :, positions] = a.reshape(batch, frames, per[i])
        tokens += layout.offset + layout.position_stride * np.arange(len(pattern), dtype=np.int64)
        tokens = tokens.reshape(batch, frames * len(pattern))
    return tokens[0] if unbatched else tokens


def token_codes(ids: np.ndarray, position: np.ndarray, codebook_size: int, layout: TokenLayout) -> np.ndarray:
    """The codes of int64 ``ids`` (``(n,)`` or ``(batch, n)``) at their ``position`` in the frame (or codebook
    index, codebook-major), ``(n,)``; :class:`InvalidCodesError` naming the first id outside its position's range."""
    codes_flat: np.ndarray = ids - layout.offset - layout.position_stride * position
    bad = (codes_flat < 0) | (codes_flat >= codebook_size)
    if bad.any():
        where = np.argwhere(bad)[0]
        j = int(where[-1])
        k = int(position[j])
        low = layout.offset + k * layout.position_stride
        raise InvalidCodesError(
            f"token {int(ids[tuple(where)])} at index {j} is out of range: position {k} of the "
            f"{'frame' if layout.order == 'interleaved' else 'codebooks'} takes ids in [{low}, {low + codebook_size}) "
            f"({int(bad.sum())} bad token(s) in all)"
        )
    return codes_flat


def tokens_to_codes(
    tokens: np.ndarray | Sequence[int],
    vq_strides: Sequence[int],
    codebook_size: int,
    layout: TokenLayout | str = INTERLEAVED,
) -> list[np.ndarray]:
    """Split token ids back into per-codebook codes (the inverse of :func:`codes_to_tokens`).

    Args:
        tokens: integer ids, ``(n,)`` or ``(batch, n)``; ``n`` a positive multiple
            of the frame size.
        vq_strides: the model's strides.
        codebook_size: codes must lie in ``[0, codebook_size)`` after removing offsets.
        layout: a :class:`TokenLayout` or a name.

    Returns:
        int64 codes per codebook, ``(frames_i,)`` or ``(batch, frames_i)``.

    Raises:
        InvalidCodesError: a count that is not a whole number of frames, a
            non-integer dtype, or an id outside its position's range.
    """
    layout = resolve_layout(layout)
    strides = check_vq_strides(vq_strides)
    per = codes_per_frame(strides)
    step = sum(per)
    try:
        arr = np.asarray(tokens)
    except ValueError:  # NumPy refuses ragged nested lists
        raise InvalidCodesError(
            "tokens are nested lists of unequal lengths; pass (n,) or a batch (batch, n) of equal lengths "
            "(items of different lengths one at a time)"
        ) from None
    if arr.dtype.kind not in "iu":
        if arr.size == 0 and arr.dtype.kind == "f":
            arr = arr.astype(np.int64)
        else:
            raise InvalidCodesError(f"tokens must be integers, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise InvalidCodesError(f"tokens must be (n,) or (batch, n), got shape {arr.shape}")
    unbatched = arr.ndim == 1
    arr = arr[None] if unbatched else arr
    count = arr.shape[1]
    if count == 0 or count % step:
        raise InvalidCodesError(
            f"{count} tokens is not a positive multiple of the frame size {step} (vq_strides {list(strides)}); "
            f"{count // step} whole frame(s) and {count % step} token(s) left over"
        )
    frames = count // step
    batch = arr.shape[0]
    ids = arr.astype(np.int64)
    if layout.order == "codebook_major":
        bounds = np.cumsum([0] + [frames * p for p in per])
        position = np.concatenate([np.full(frames * p, k) for k, p in enumerate(per)])
    else:
        pattern = frame_pattern(strides)
        position = np.tile(np.arange(step), frames)
    codes_flat = token_codes(ids, position, codebook_size, layout)
    if layout.order == "codebook_major":
        out = [codes_flat[:, bounds[i] : bounds[i + 1]] for i in range(len(strides))]
    else:
        framed = codes_flat.reshape(batch, frames, step)
        out = []
        for i in range(len(strides)):
            positions = [k for k, cb in enumerate(pattern) if cb == i]
            out.append(framed[:, :, positions].reshape(batch, frames * per[i]))
    out = [np.ascontiguousarray(c) for c in out]
    return [c[0] for c in out] if unbatched else out
