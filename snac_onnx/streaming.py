"""Streaming decode: push codes or flat tokens as they arrive, get final audio back.

The decoder is convolutional (plus, at 32/44 kHz, attention inside fixed
windows of 32 latent steps), so the audio of coarse frames ``[a, b)`` depends
only on the codes of frames ``[a - left, b + right)``. A stream decodes fixed
chunks of ``chunk_frames`` on a grid from frame 0, each with ``left_context``
frames before it and ``lookahead`` frames after it, and keeps the chunk's
samples. With the default context (the decoder's receptive field, computed by
:func:`receptive_field_frames`) the concatenated output equals the offline
:meth:`SnacOnnx.decode` of the whole sequence with noise off (to float error),
first and last frames included. For models with attention, chunks and context
are multiples of the attention window (in coarse frames), as offline decoding
windows are aligned to frame 0.

With noise on, chunk ``k`` draws its noise from ``numpy.random.default_rng([seed, k])``:
the output depends on the seed and the sequence, never on how it was pushed.

A stream holds per-stream state and is not thread-safe; the model behind it
is, so make one stream per request.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import InvalidCodesError
from .layouts import TokenLayout, frame_size, resolve_layout, tokens_to_codes
from .manifest import ModelConfig

if TYPE_CHECKING:
    from .codec import SnacOnnx

__all__ = ["StreamDecoder", "receptive_field_frames"]

# SNAC's fixed layer shapes (snac/layers.py): residual units of kernel 7 with dilations 1, 3, 9,
# kernel-7 convolutions around them, transposed convolutions of kernel 2 * stride.
_RESIDUAL_REACH = sum(3 * d for d in (1, 3, 9))
_CONV_REACH = 3


def receptive_field_frames(config: ModelConfig) -> tuple[int, int]:
    """Coarse frames of context needed on (left, right) for exact chunked decoding.

    An upper bound from SNAC's layer shapes: going back from the output, each
    decoder block reaches ``(reach + 39) / stride + 1`` of its input steps; the
    first depthwise convolution adds 3 latent steps. With attention the reach
    before it is rounded out to whole windows, and context is a whole number of
    windows so that chunks stay window-aligned.
    """
    reach = float(_CONV_REACH)  # final conv, in output samples
    for stride in reversed(config.decoder_rates):
        reach = (reach + _RESIDUAL_REACH) / stride + 1
    steps_per_frame = config.vq_strides[0]
    if config.attn_window_size is None:
        frames = math.ceil((reach + _CONV_REACH) / steps_per_frame)
        return frames, frames
    window_frames = config.frames_multiple
    # After attention: reach (latent steps) -> whole windows; before it: the first conv's 3 steps.
    windows = math.ceil(reach / config.attn_window_size) + math.ceil(_CONV_REACH / config.attn_window_size)
    return windows * window_frames, windows * window_frames


class StreamDecoder:
    """Incremental decoder; create with :meth:`SnacOnnx.stream`.

    Args:
        codec: the model.
        chunk_frames: coarse frames of audio produced per decode call (a
            multiple of the attention window in frames for 32/44 kHz).
        left_context: coarse frames decoded before each chunk (default: receptive field).
        lookahead: coarse frames after each chunk that must have arrived
            before the chunk is final (default: receptive field). Smaller values
            lower latency at the cost of differing from the offline decode.
        layout: token layout for :meth:`push_tokens` (must be interleaved).
        noise: add the decoder's noise (official behaviour) or not (deterministic).
        seed: seed of the noise.
    """

    def __init__(
        self,
        codec: "SnacOnnx",
        *,
        chunk_frames: int | None = None,
        left_context: int | None = None,
        lookahead: int | None = None,
        layout: TokenLayout | str = "interleaved",
        noise: bool = False,
        seed: int | None = None,
    ) -> None:
        config = codec.config
        self._codec = codec
        self._config = config
        multiple = config.frames_multiple
        left_default, right_default = receptive_field_frames(config)
        self.chunk_frames = multiple * max(1, math.ceil(4 / multiple)) if chunk_frames is None else chunk_frames
        self.left_context = left_default if left_context is None else left_context
        self.lookahead = right_default if lookahead is None else lookahead
        for name in ("chunk_frames", "left_context", "lookahead"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (1 if name == "chunk_frames" else 0):
                raise ValueError(f"{name} must be an int >= {1 if name == 'chunk_frames' else 0}, got {value!r}")
            if value % multiple:
                raise ValueError(
                    f"{name}={value} is not a multiple of {multiple} frames, the attention window of this model"
                )
        self.layout = resolve_layout(layout)
        if self.layout.order != "interleaved":
            raise ValueError("streams take frame-interleaved tokens; codebook-major needs the whole sequence first")
        self.noise = bool(noise)
        if seed is not None and not self.noise:
            raise ValueError("seed applies to noise; pass noise=True with seed")
        self.seed = 0 if seed is None else int(seed)
        self._per_frame = [config.vq_strides[0] // s for s in config.vq_strides]
        self._frame_tokens = frame_size(config.vq_strides)
        self._codes = [np.zeros(0, np.int64) for _ in config.vq_strides]
        self._base = 0  # global frame index of self._codes[...][0]
        self._received = 0  # frames received
        self._emitted = 0  # frames whose audio was returned
        self._pending_tokens = np.zeros(0, np.int64)
        self._closed = False

    # ------------------------------------------------------------------ info
    @property
    def frames_received(self) -> int:
        return self._received

    @property
    def samples_emitted(self) -> int:
        return self._emitted * self._codec.samples_per_frame

    @property
    def lookahead_ms(self) -> float:
        """Audio (ms) that must be pushed beyond a chunk before the chunk is returned."""
        return 1000.0 * self.lookahead * self._codec.samples_per_frame / self._config.sample_rate

    @property
    def chunk_ms(self) -> float:
        return 1000.0 * self.chunk_frames * self._codec.samples_per_frame / self._config.sample_rate

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ input
    def push(self, data: Sequence[np.ndarray] | np.ndarray | Sequence[int]) -> np.ndarray:
        """Push per-codebook codes (whole frames) or flat tokens; returns new final audio (float32, 1-D)."""
        if isinstance(data, (list, tuple)) and data and all(isinstance(d, np.ndarray) and d.ndim == 1 for d in data):
            return self.push_codes(data)
        return self.push_tokens(data)

    def push_codes(self, codes: Sequence[np.ndarray]) -> np.ndarray:
        """Push whole frames: one 1-D integer array per codebook, lengths ``n * s0 / s_i``."""
        self._check_open()
        if len(codes) != len(self._per_frame):
            raise InvalidCodesError(f"expected {len(self._per_frame)} codebooks, got {len(codes)}")
        arrays = [np.asarray(c) for c in codes]
        for i, a in enumerate(arrays):
            if a.dtype.kind not in "iu" or a.ndim != 1:
                raise InvalidCodesError(f"codes[{i}] must be a 1-D integer array, got {a.dtype} {a.shape}")
        frames = arrays[0].shape[0] // self._per_frame[0]
        expected = [frames * p for p in self._per_frame]
        if [a.shape[0] for a in arrays] != expected:
            raise InvalidCodesError(
                f"pushed lengths {[a.shape[0] for a in arrays]} are not whole frames; for {frames} frame(s) "
                f"they must be {expected}"
            )
        size = self._config.codebook_size
        for i, a in enumerate(arrays):
            if a.size and (int(a.min()) < 0 or int(a.max()) >= size):
                raise InvalidCodesError(f"codes[{i}] holds values in [{int(a.min())}, {int(a.max())}]; codes lie in [0, {size})")
        self._codes = [np.concatenate([old, a.astype(np.int64)]) for old, a in zip(self._codes, arrays)]
        self._received += frames
        return self._decode_ready(final=False)

    def push_tokens(self, tokens: np.ndarray | Sequence[int] | int) -> np.ndarray:
        """Push any number of frame-interleaved token ids; partial frames wait for the rest."""
        self._check_open()
        arr = np.atleast_1d(np.asarray(tokens))
        if arr.size == 0:
            return np.zeros(0, np.float32)
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise InvalidCodesError(f"tokens must be a 1-D sequence of integers, got {arr.dtype} {arr.shape}")
        buffered = np.concatenate([self._pending_tokens, arr.astype(np.int64)])
        whole = (buffered.size // self._frame_tokens) * self._frame_tokens
        if whole == 0:
            self._pending_tokens = buffered
            return np.zeros(0, np.float32)
        codes = tokens_to_codes(buffered[:whole], self._config.vq_strides, self._config.codebook_size, self.layout)
        self._pending_tokens = buffered[whole:]
        return self.push_codes(codes)

    def flush(self, drop_incomplete: bool = False) -> np.ndarray:
        """Decode everything left (the last frames need no lookahead) and close the stream.

        Tokens of an incomplete last frame are an error, or dropped with ``drop_incomplete``. For attention models a
        frame count that is not a multiple of the window is padded by repeating
        the last frame and the padding's audio is dropped (offline decode
        rejects such counts).
        """
        self._check_open()
        if self._pending_tokens.size and drop_incomplete:
            self._pending_tokens = np.zeros(0, np.int64)
        if self._pending_tokens.size:
            raise InvalidCodesError(
                f"{self._pending_tokens.size} token(s) of an incomplete frame remain at flush; "
                f"a frame has {self._frame_tokens} tokens"
            )
        audio = self._decode_ready(final=True)
        self._closed = True
        return audio

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this stream was flushed; start a new one with SnacOnnx.stream()")

    # ------------------------------------------------------------------ decode
    def _decode_ready(self, final: bool) -> np.ndarray:
        pieces = []
        while True:
            start = self._emitted
            if start >= self._received:
                break
            end = start + self.chunk_frames
            if end + self.lookahead > self._received:
                if not final:
                    break
                end = self._received
            pieces.append(self._decode_chunk(start, min(end, self._received)))
            self._emitted = min(end, self._received)
        self._trim_buffer()
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def _decode_chunk(self, start: int, end: int) -> np.ndarray:
        window_start = max(0, start - self.left_context)
        window_end = min(self._received, end + self.lookahead)
        multiple = self._config.frames_multiple
        frames = window_end - window_start
        pad = -frames % multiple
        codes = []
        for buf, per in zip(self._codes, self._per_frame):
            piece = buf[(window_start - self._base) * per : (window_end - self._base) * per]
            if pad:  # repeat the last frame (its ``per`` codes) ``pad`` times
                piece = np.concatenate([piece, np.tile(piece[-per:], pad)])
            codes.append(piece)
        if self.noise:
            chunk_index = start // self.chunk_frames
            rng = np.random.default_rng([self.seed, chunk_index])
            shapes = self._codec.noise_shapes(1, frames + pad)
            noise: bool | list[np.ndarray] = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        else:
            noise = False
        audio = self._codec.decode(codes, noise=noise)
        spf = self._codec.samples_per_frame
        return audio[(start - window_start) * spf : (end - window_start) * spf]

    def _trim_buffer(self) -> None:
        keep_from = max(0, self._emitted - self.left_context)
        drop = keep_from - self._base
        if drop > 0:
            self._codes = [buf[drop * per :] for buf, per in zip(self._codes, self._per_frame)]
            self._base = keep_from
