"""Streaming decode: push codes or flat tokens as they arrive, get final audio back.

The decoder is convolutional (plus, at 32/44 kHz, attention inside fixed windows of 32
latent steps), so the audio of coarse frames ``[a, b)`` depends only on the codes of frames
``[a - left, b + right)``. A stream decodes fixed chunks of ``chunk_frames`` on a grid from
frame 0 (:func:`snac_onnx.planner.grid_chunks`), each with ``left_context`` frames before it
and ``lookahead`` frames after it, and keeps the chunk's samples. With the default context
(the decoder's receptive field, :attr:`snac_onnx.config.ModelConfig.decoder_context`) the
concatenated output equals the offline :meth:`SnacOnnx.decode` of the whole sequence with
noise off (to float error), first and last frames included. For models with attention,
chunks and context are multiples of the attention window (in coarse frames), as offline
decoding windows are aligned to frame 0.

With noise on, chunk ``k`` draws its noise from ``numpy.random.default_rng([seed, k])``: the
output depends on the seed and the sequence, never on how it was pushed.

A stream holds per-stream state and is not thread-safe; the model behind it is, so make one
stream per request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .codes import check_codes, check_seed
from .config import ModelConfig
from .errors import InvalidArgumentError, InvalidCodesError, StreamClosedError
from .layouts import TokenLayout, resolve_layout, tokens_to_codes
from .planner import Chunk, Run, grid_chunks
from .runner import Runner

__all__ = ["StreamDecoder"]

_EMPTY = np.zeros(0, np.float32)


class StreamDecoder:
    """Incremental decoder; create with :meth:`SnacOnnx.stream`.

    Args:
        runner: the model's runner (:attr:`SnacOnnx.runner`).
        chunk_frames: coarse frames of audio produced per decode call (a multiple of the
            attention window in frames for 32/44 kHz). Default: 4 frames, rounded up to the window.
        left_context: coarse frames decoded before each chunk (default: receptive field).
        lookahead: coarse frames after each chunk that must have arrived before the chunk is
            final (default: receptive field). Smaller values lower latency at the cost of
            differing from the offline decode.
        layout: token layout for :meth:`push_tokens` (must be interleaved).
        noise: add the decoder's noise (official behaviour) or not (deterministic).
        seed: seed of the noise (a non-negative int).

    Raises:
        InvalidArgumentError: an argument of the wrong type or outside its range.
    """

    def __init__(
        self,
        runner: Runner,
        *,
        chunk_frames: int | None = None,
        left_context: int | None = None,
        lookahead: int | None = None,
        layout: TokenLayout | str = "interleaved",
        noise: bool = False,
        seed: int | None = None,
    ) -> None:
        config: ModelConfig = runner.config
        self._runner = runner
        self._config = config
        multiple = config.frames_multiple
        left_default, right_default = config.decoder_context
        self.chunk_frames = self._frames("chunk_frames", chunk_frames, multiple * max(1, math.ceil(4 / multiple)), 1)
        self.left_context = self._frames("left_context", left_context, left_default, 0)
        self.lookahead = self._frames("lookahead", lookahead, right_default, 0)
        self.layout = resolve_layout(layout)
        if self.layout.order != "interleaved":
            raise InvalidArgumentError(
                "streams take frame-interleaved tokens; codebook-major needs the whole sequence first"
            )
        if not isinstance(noise, bool):
            raise InvalidArgumentError(f"noise must be True or False, got {noise!r}")
        self.noise = noise
        if seed is not None and not self.noise:
            raise InvalidArgumentError("seed applies to noise; pass noise=True with seed")
        checked = check_seed(seed)
        self.seed = 0 if checked is None else checked
        self._per_frame = config.codes_per_frame
        self._frame_tokens = config.frame_tokens
        self._codes = [np.zeros(0, np.int64) for _ in config.vq_strides]
        self._base = 0  # global frame index of self._codes[...][0]
        self._received = 0  # frames received
        self._emitted = 0  # frames whose audio was returned
        self._pending_tokens = np.zeros(0, np.int64)
        self._closed = False

    def _frames(self, name: str, value: object, default: int, low: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
            raise InvalidArgumentError(f"{name} must be an int >= {low}, got {value!r}")
        multiple = self._config.frames_multiple
        if int(value) % multiple:
            raise InvalidArgumentError(
                f"{name}={value} is not a multiple of {multiple} frames, the attention window of this model"
            )
        return int(value)

    # ------------------------------------------------------------------ info
    @property
    def config(self) -> ModelConfig:
        """The model's configuration."""
        return self._config

    @property
    def frames_received(self) -> int:
        return self._received

    @property
    def samples_emitted(self) -> int:
        return self._emitted * self._config.samples_per_frame

    @property
    def lookahead_ms(self) -> float:
        """Audio (ms) that must be pushed beyond a chunk before the chunk is returned."""
        return 1000.0 * self.lookahead * self._config.samples_per_frame / self._config.sample_rate

    @property
    def chunk_ms(self) -> float:
        return 1000.0 * self.chunk_frames * self._config.samples_per_frame / self._config.sample_rate

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ input
    def push(self, data: Sequence[np.ndarray] | np.ndarray | Sequence[int] | int) -> np.ndarray:
        """Push per-codebook codes (whole frames) or flat tokens; returns new final audio (float32, 1-D)."""
        if isinstance(data, (list, tuple)) and data and all(isinstance(d, np.ndarray) and d.ndim == 1 for d in data):
            return self.push_codes(data)
        return self.push_tokens(data)  # type: ignore[arg-type]  # anything else is checked as tokens

    def push_codes(self, codes: Sequence[np.ndarray]) -> np.ndarray:
        """Push whole frames: one 1-D integer array per codebook, lengths ``n * s0 / s_i``."""
        self._check_open()
        if self._pending_tokens.size:
            raise InvalidCodesError(
                f"{self._pending_tokens.size} token(s) of an incomplete frame are pending; push the rest of that "
                "frame's tokens before pushing codes (a stream never reorders its input)"
            )
        arrays, frames, unbatched = check_codes(
            codes, self._config.vq_strides, self._config.codebook_size, allow_empty=True
        )
        if frames == 0:
            return _EMPTY
        if not unbatched:
            raise InvalidCodesError("a stream takes 1-D arrays, one per codebook; decode batches with SnacOnnx.decode")
        return self._append([a[0] for a in arrays])

    def push_tokens(self, tokens: np.ndarray | Sequence[int] | int) -> np.ndarray:
        """Push any number of frame-interleaved token ids; partial frames wait for the rest."""
        self._check_open()
        arr = np.atleast_1d(np.asarray(tokens))
        if arr.size == 0:
            return _EMPTY
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise InvalidCodesError(f"tokens must be a 1-D sequence of integers, got {arr.dtype} {arr.shape}")
        buffered = np.concatenate([self._pending_tokens, arr.astype(np.int64)])
        whole = (buffered.size // self._frame_tokens) * self._frame_tokens
        if whole == 0:
            self._pending_tokens = buffered
            return _EMPTY
        codes = tokens_to_codes(buffered[:whole], self._config.vq_strides, self._config.codebook_size, self.layout)
        self._pending_tokens = buffered[whole:]
        return self._append(codes)

    def _append(self, codes: list[np.ndarray]) -> np.ndarray:
        """Append checked whole frames and decode what became final."""
        frames = codes[0].shape[0] // self._per_frame[0]
        self._codes = [np.concatenate([old, c]) for old, c in zip(self._codes, codes, strict=True)]
        self._received += frames
        return self._decode_ready(complete=False)

    def flush(self, drop_incomplete: bool = False) -> np.ndarray:
        """Decode everything left (the last frames need no lookahead) and close the stream.

        Tokens of an incomplete last frame are an error, or dropped with ``drop_incomplete``.
        For attention models a frame count that is not a multiple of the window is padded by
        repeating the last frame and the padding's audio is dropped (offline decode rejects
        such counts).
        """
        self._check_open()
        if self._pending_tokens.size and drop_incomplete:
            self._pending_tokens = np.zeros(0, np.int64)
        if self._pending_tokens.size:
            raise InvalidCodesError(
                f"{self._pending_tokens.size} token(s) of an incomplete frame remain at flush; "
                f"a frame has {self._frame_tokens} tokens"
            )
        audio = self._decode_ready(complete=True)
        self._closed = True
        return audio

    def _check_open(self) -> None:
        if self._closed:
            raise StreamClosedError("this stream was flushed; start a new one with SnacOnnx.stream()")

    # ------------------------------------------------------------------ decode
    def _decode_ready(self, complete: bool) -> np.ndarray:
        chunks = grid_chunks(
            self._emitted, self._received, self.chunk_frames, self.left_context, self.lookahead, complete=complete
        )
        pieces = [self._decode_chunk(chunk) for chunk in chunks]
        if chunks:
            self._emitted = chunks[-1].b
        self._trim_buffer()
        return np.concatenate(pieces) if len(pieces) > 1 else (pieces[0] if pieces else _EMPTY)

    def _decode_chunk(self, chunk: Chunk) -> np.ndarray:
        a, b, s, e = chunk
        multiple = self._config.frames_multiple
        frames = e - s
        pad = -frames % multiple
        codes = []
        for buf, per in zip(self._codes, self._per_frame, strict=True):
            piece = buf[(s - self._base) * per : (e - self._base) * per]
            if pad:  # repeat the last frame (its ``per`` codes) ``pad`` times
                piece = np.concatenate([piece, np.tile(piece[-per:], pad)])
            codes.append(piece)
        lengths = self._config.noise_lengths(frames + pad)
        if self.noise:
            rng = np.random.default_rng([self.seed, a // self.chunk_frames])
            noise = [rng.standard_normal((1, 1, n), dtype=np.float32)[0, 0] for n in lengths]
        else:
            noise = [np.zeros(n, np.float32) for n in lengths]
        window = Run(0, Chunk(a - s, b - s, 0, frames + pad))
        return self._runner.decode([codes], [noise], batches=[[window]])[0]

    def _trim_buffer(self) -> None:
        keep_from = max(0, self._emitted - self.left_context)
        drop = keep_from - self._base
        if drop > 0:
            self._codes = [buf[drop * per :] for buf, per in zip(self._codes, self._per_frame, strict=True)]
            self._base = keep_from
