"""Streaming decode: push codes or flat tokens as they arrive, get final audio back.

Two modes, both exact: the concatenated output equals the offline :meth:`SnacOnnx.decode` of the
whole sequence with noise off (to float error), first and last frames included.

* **stateful** (default when the export has a stream graph, ``stream.onnx``): each step of
  :attr:`StreamSpec.step_frames` new frames runs the decoder once with each layer's explicit state
  (:mod:`export.stream_graph`), so nothing is recomputed and a sample is returned as soon as
  every code its receptive field covers has arrived. At :meth:`StreamDecoder.flush` the graph is
  told the stream's length and run past it: each layer then sees its own right zero padding, as
  offline (the end of a stream is not zero codes). Only the stream graph is loaded.
* **window** (exports without a stream graph, precisions without one, or when ``chunk_frames``,
  ``left_context`` or ``lookahead`` are given): the decoder is convolutional (plus, at 32/44 kHz,
  attention inside fixed windows of 32 latent steps), so the audio of coarse frames ``[a, b)``
  depends only on the codes of frames ``[a - left, b + right)``. A stream decodes fixed chunks of
  ``chunk_frames`` on a grid from frame 0 (:func:`snac_onnx.planner.grid_chunks`), each with
  ``left_context`` frames before it and ``lookahead`` after it, and keeps the chunk's samples.
  For models with attention, chunks and context are multiples of the attention window.

With noise on, the noise is a function of (seed, NoiseBlock, frame) (:class:`NoiseSource`): the
output depends on the seed and the sequence, never on how it was pushed or on the mode, and
:meth:`SnacOnnx.stream_noise` gives the same noise for an offline decode.

A stream holds per-stream state and is not thread-safe; the model behind it is, so make one
stream per request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..codes import check_codes, check_int, check_seed
from ..config import ModelConfig
from ..errors import InvalidArgumentError, InvalidCodesError, ModelNotFoundError, StreamClosedError
from ..layouts import TokenLayout, resolve_layout, token_codes, tokens_to_codes
from ..model.contract import first_audio_frame
from ..noise import NoiseSource
from ..planner import Chunk, Run, budget_steps, grid_chunks
from ..runner import Runner

__all__ = ["StreamDecoder", "StepInput", "STREAM_MODES", "run_steps"]

_EMPTY = np.zeros(0, np.float32)
STREAM_MODES = ("auto", "stateful", "window")
UNKNOWN_END = 1 << 40  # the stream graph's ``end`` while the length is unknown: beyond any stream (frames)


@dataclass(frozen=True)
class StepInput:
    """The stream graph's inputs for one call of one stream (batch 1), states aside.

    Attributes:
        codes: int64 ``(1, frames * codes_per_frame[i])`` per codebook.
        noise: float32 ``(1, 1, frames * noise_per_frame[j])`` per NoiseBlock.
        frame: int64 ``(1,)``, the call's first frame.
        end: int64 ``(1,)``, the stream's length in frames (:data:`UNKNOWN_END` until flushed).
        frames: coarse frames the call covers (a multiple of ``step_frames``).
    """

    codes: list[np.ndarray]
    noise: list[np.ndarray]
    frame: np.ndarray
    end: np.ndarray
    frames: int


class StreamDecoder:
    """Incremental decoder; create with :meth:`SnacOnnx.stream`.

    Args:
        runner: the model's runner (a codec's own; make streams with :meth:`SnacOnnx.stream`).
        mode: ``"stateful"``, ``"window"`` or ``"auto"`` (stateful when the export has a stream graph,
            it has one at the codec's precision and no window argument below is given; window otherwise).
        chunk_frames: window mode: coarse frames of audio produced per decode call (a multiple of
            the attention window in frames for 32/44 kHz). Default: 4 frames, rounded up to the window.
        left_context: window mode: coarse frames decoded before each chunk (default: receptive field).
        lookahead: window mode: coarse frames after each chunk that must have arrived before the
            chunk is final (default: receptive field). Smaller values lower latency at the cost of
            differing from the offline decode.
        steps_per_call: stateful mode: steps to gather before one graph call (default 1: audio as soon
            as it is final). More steps per call cost less compute per frame (each call reads every
            weight once) and add ``steps_per_call - 1`` steps of latency.
        layout: token layout for :meth:`push_tokens` (must be interleaved).
        noise: add the decoder's noise (official behaviour) or not (deterministic).
        seed: seed of the noise (a non-negative int); None with noise on: a fresh one, kept in
            :attr:`seed` so the audio can be reproduced.
        deferred: stateful mode: the stream's steps are run by a scheduler (:class:`~snac_onnx.stream.pool.StreamPool`)
            through :meth:`ready_steps`, :meth:`prepare_step`, :func:`run_steps` and :meth:`finish_step`;
            :meth:`push` and :meth:`flush` then only take input and return no audio.

    Raises:
        InvalidArgumentError: an argument of the wrong type or outside its range, or window
            arguments with ``mode="stateful"``.
        ModelNotFoundError: ``mode="stateful"`` and the export has no stream graph.
    """

    def __init__(
        self,
        runner: Runner,
        *,
        mode: str = "auto",
        chunk_frames: int | None = None,
        left_context: int | None = None,
        lookahead: int | None = None,
        steps_per_call: int = 1,
        layout: TokenLayout | str = "interleaved",
        noise: bool = False,
        seed: int | None = None,
        deferred: bool = False,
    ) -> None:
        config: ModelConfig = runner.config
        self._runner = runner
        self._config = config
        multiple = config.frames_multiple
        left_default, right_default = config.decoder_context
        window_args = [
            n
            for n, v in (("chunk_frames", chunk_frames), ("left_context", left_context), ("lookahead", lookahead))
            if v is not None
        ]
        self.chunk_frames = self._frames("chunk_frames", chunk_frames, multiple * max(1, math.ceil(4 / multiple)), 1)
        self.left_context = self._frames("left_context", left_context, left_default, 0)
        self.lookahead = self._frames("lookahead", lookahead, right_default, 0)
        self.steps_per_call = check_int("steps_per_call", steps_per_call, 1)
        self.mode = self._mode(mode, window_args)
        if self.mode == "window" and self.steps_per_call != 1:
            raise InvalidArgumentError("steps_per_call applies to mode='stateful' (this stream is in window mode)")
        if self.mode == "window" and deferred:
            raise InvalidArgumentError("deferred steps need mode='stateful' (this stream is in window mode)")
        self.deferred = deferred
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
        if noise and checked is None:
            checked = int(np.random.SeedSequence().entropy % (1 << 63))  # type: ignore[operator]
        self.seed = checked
        self._noise = NoiseSource(config, checked if noise else None)
        self._per_frame = config.codes_per_frame
        self._frame_tokens = config.frame_tokens
        self._codebook = config.codebook_size
        self._codes = [np.zeros(0, np.int64) for _ in config.vq_strides]
        self._base = 0  # global frame index of self._codes[...][0]
        self._received = 0  # frames received
        self._emitted = 0  # samples returned
        self._pending_tokens = np.zeros(0, np.int64)
        self._closed = False
        spec = runner.sessions.manifest.stream
        if self.mode == "stateful":
            assert spec is not None
            self._spec = spec
            self._next_frame = spec.first_frame  # first frame of the next step
            self._end: int | None = None  # the stream's length in frames (padded to the window), once flushed
            self._last_frame = 0  # once flushed: the frame the tail steps run up to
            layout = runner.sessions.manifest.layout(runner.sessions.precision)
            self._states = [np.zeros(st.shape(1, layout), np.float32) for st in spec.states]
            budget = budget_steps(runner.max_chunk_seconds, config.samples_per_frame, config.sample_rate)
            self._max_steps = None if budget is None else max(1, budget // spec.step_frames)

    def _mode(self, mode: object, window_args: list[str]) -> str:
        if not isinstance(mode, str) or mode not in STREAM_MODES:
            raise InvalidArgumentError(f"mode must be one of {list(STREAM_MODES)}, got {mode!r}")
        sessions = self._runner.sessions
        why_not = None
        if sessions.manifest.stream is None:
            why_not = "this export has no stream graph (stream.onnx); re-export it with 'python -m export ...'"
        elif not sessions.manifest.has_stream(sessions.precision):
            why_not = f"this export has no stream graph at precision {sessions.precision!r}"
        if mode == "stateful":
            if window_args:
                raise InvalidArgumentError(f"{', '.join(window_args)} apply to mode='window', not 'stateful'")
            if sessions.manifest.stream is None:
                raise ModelNotFoundError(f"mode='stateful': {why_not}; or use mode='window'")
            if why_not is not None:
                raise InvalidArgumentError(f"mode='stateful': {why_not}; or use mode='window'")
            return "stateful"
        if mode == "window" or window_args or why_not is not None:
            return "window"
        return "stateful"

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
        return self._emitted

    @property
    def first_audio_frames(self) -> int:
        """Frames that must have been pushed before the first audio is returned."""
        if self.mode == "window":
            return self.chunk_frames + self.lookahead
        spec = self._spec
        frames_per_call = spec.step_frames * self.steps_per_call
        return first_audio_frame(spec.first_frame, frames_per_call, spec.audio_lag, self._config.samples_per_frame)

    @property
    def lookahead_ms(self) -> float:
        """Audio (ms) that must be pushed beyond a returned sample before it is returned (at most)."""
        spf = self._config.samples_per_frame
        if self.mode == "window":
            samples = self.lookahead * spf
        else:  # the audio lag, plus the rest of the steps of a call still to come
            samples = self._spec.audio_lag + (self._spec.step_frames * self.steps_per_call - 1) * spf
        return 1000.0 * samples / self._config.sample_rate

    @property
    def chunk_ms(self) -> float:
        """Audio (ms) one decode call returns in steady state."""
        frames = self.chunk_frames if self.mode == "window" else self._spec.step_frames * self.steps_per_call
        return 1000.0 * frames * self._config.samples_per_frame / self._config.sample_rate

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
        try:
            arr = np.atleast_1d(np.asarray(tokens))
        except ValueError:  # NumPy refuses ragged nested lists
            raise InvalidCodesError("tokens must be a 1-D sequence of integers, got nested lists") from None
        if arr.size == 0:
            return _EMPTY
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise InvalidCodesError(f"tokens must be a 1-D sequence of integers, got {arr.dtype} {arr.shape}")
        buffered = np.concatenate([self._pending_tokens, arr.astype(np.int64)])
        whole = (buffered.size // self._frame_tokens) * self._frame_tokens
        tail = buffered[whole:]  # an incomplete frame's ids are checked now, so that a bad one never waits there
        token_codes(tail, np.arange(tail.size), self._codebook, self.layout)
        if whole == 0:
            self._pending_tokens = buffered
            return _EMPTY
        codes = tokens_to_codes(buffered[:whole], self._config.vq_strides, self._codebook, self.layout)
        self._pending_tokens = buffered[whole:]
        return self._append(codes)

    def _append(self, codes: list[np.ndarray]) -> np.ndarray:
        """Append checked whole frames and decode what became final."""
        frames = codes[0].shape[0] // self._per_frame[0]
        self._codes = [np.concatenate([old, c]) for old, c in zip(self._codes, codes, strict=True)]
        self._received += frames
        if self.deferred:
            return _EMPTY
        if self.mode == "stateful":
            return self._steps()  # each step trims the buffer (finish_step)
        audio = self._windows(complete=False)
        self._trim_buffer()
        return audio

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
        if self.mode == "window":
            audio = self._windows(complete=True)
        else:
            self._mark_end()
            audio = _EMPTY if self.deferred else self._steps()
        self._closed = True
        if not self.deferred:
            self._codes = []
        return audio

    def _check_open(self) -> None:
        if self._closed:
            raise StreamClosedError("this stream was flushed; start a new one with SnacOnnx.stream()")

    # ------------------------------------------------------------------ stateful mode
    def _steps(self) -> np.ndarray:
        """Run every whole step that has arrived (several steps per graph call, up to the chunk budget)."""
        pieces = []
        while steps := self.ready_steps():
            step = self.prepare_step(steps)
            audio, states = self._runner.step(step.codes, step.noise, step.frame, step.end, self._states)
            pieces.append(self.finish_step(step, audio[0], states))
        return np.concatenate(pieces) if len(pieces) > 1 else (pieces[0] if pieces else _EMPTY)

    @property
    def done(self) -> bool:
        """Flushed, and every sample returned (stateful mode; a deferred stream is done once its tail has run)."""
        if self.mode == "window":
            return self._closed
        return self._end is not None and self._next_frame >= self._last_frame

    def ready_steps(self) -> int:
        """Steps that can run now: whole steps received (``steps_per_call`` at least, up to the chunk budget), or
        after :meth:`flush`, the tail steps left."""
        step_frames = self._spec.step_frames
        if self._end is not None:
            steps = max(0, self._last_frame - self._next_frame) // step_frames
        else:
            steps = (self._received - self._next_frame) // step_frames
            if steps < self.steps_per_call:
                return 0
        return steps if self._max_steps is None else min(steps, self._max_steps)

    def prepare_step(self, steps: int) -> StepInput:
        """The graph inputs of the next ``steps`` steps (at most :meth:`ready_steps`), batch 1; the states are
        :attr:`states`. Nothing changes until :meth:`finish_step`."""
        spec, config = self._spec, self._config
        a, frames = self._next_frame, steps * spec.step_frames
        codes = []
        for buf, per in zip(self._codes, self._per_frame, strict=True):
            piece = buf[(max(a, 0) - self._base) * per : (a + frames - self._base) * per]
            if a < 0:  # frames before 0 are the left padding: their codes are ignored (masked)
                piece = np.concatenate([np.zeros(-a * per, np.int64), piece])
            codes.append(piece[None, :])
        noise = [
            self._noise.block(j, a * per - lag, (a + frames) * per - lag)[None, None, :]
            for j, (per, lag) in enumerate(zip(config.noise_per_frame, spec.noise_lags, strict=True))
        ]
        end = UNKNOWN_END if self._end is None else self._end
        return StepInput(codes, noise, np.array([a], np.int64), np.array([end], np.int64), frames)

    @property
    def states(self) -> list[np.ndarray]:
        """The layer states the next step reads (float32; :meth:`StateSpec.shape` of batch 1, in the graph's layout)."""
        return self._states

    def finish_step(self, step: StepInput, audio: np.ndarray, states: list[np.ndarray]) -> np.ndarray:
        """Take the outputs of ``step`` (``audio`` float32 1-D, the new ``states`` as :attr:`states`); returns the
        samples that became final (float32, 1-D)."""
        config, a = self._config, int(step.frame[0])
        self._states = states
        self._next_frame = a + step.frames
        start = a * config.samples_per_frame - self._spec.audio_lag  # position of audio[0]; the first are < 0
        stop = min(start + audio.shape[0], self._received * config.samples_per_frame)
        self._trim_buffer()
        if stop <= self._emitted:
            return _EMPTY
        keep = audio[self._emitted - start : stop - start]
        self._emitted = stop
        return keep

    def _mark_end(self) -> None:
        """Give the graph the stream's length and queue the steps past the end, so each layer sees its right zero
        padding exactly as offline (the codes fed past the end are ignored)."""
        spec, config = self._spec, self._config
        spf, received = config.samples_per_frame, self._received
        pad = -received % config.frames_multiple  # attention models: repeat the last frame to a whole window
        self._end = received + pad
        if self._emitted >= received * spf:
            self._last_frame = self._next_frame
            return
        needed = -(-(received * spf + spec.audio_lag) // spf)  # frames whose step makes the last sample final
        steps = -(-(needed - self._next_frame) // spec.step_frames)
        self._last_frame = self._next_frame + steps * spec.step_frames
        beyond = self._last_frame - received - pad
        self._codes = [
            np.concatenate([buf, np.tile(buf[-per:], pad), np.zeros(max(0, beyond) * per, np.int64)])
            for buf, per in zip(self._codes, self._per_frame, strict=True)
        ]

    # ------------------------------------------------------------------ window mode
    def _windows(self, complete: bool) -> np.ndarray:
        spf = self._config.samples_per_frame
        chunks = grid_chunks(
            self._emitted // spf,
            self._received,
            self.chunk_frames,
            self.left_context,
            self.lookahead,
            complete=complete,
        )
        pieces = [self._decode_window(chunk) for chunk in chunks]
        if chunks:
            self._emitted = chunks[-1].b * spf
        return np.concatenate(pieces) if len(pieces) > 1 else (pieces[0] if pieces else _EMPTY)

    def _decode_window(self, chunk: Chunk) -> np.ndarray:
        """The audio of frames ``[a, b)`` of ``chunk``, decoding frames ``[s, e)`` (padded to the attention window)."""
        a, b, s, e = chunk
        frames = e - s
        pad = -frames % self._config.frames_multiple
        codes = []
        for buf, per in zip(self._codes, self._per_frame, strict=True):
            piece = buf[(s - self._base) * per : (e - self._base) * per]
            if pad:  # repeat the last frame (its ``per`` codes) ``pad`` times
                piece = np.concatenate([piece, np.tile(piece[-per:], pad)])
            codes.append(piece)
        noise = self._noise.frames(s, e + pad)
        window = Run(0, Chunk(a - s, b - s, 0, frames + pad))
        return self._runner.decode([codes], [noise], batches=[[window]])[0]

    def _trim_buffer(self) -> None:
        """Drop codes no later decode reads (window mode: before the context of the first frame not yet returned)."""
        if self.mode == "stateful":  # the next step's frames, and the last frame (the flush may repeat it)
            keep_from = max(0, min(self._next_frame, self._received - 1))
        else:
            keep_from = max(0, self._emitted // self._config.samples_per_frame - self.left_context)
        keep_from = keep_from // self._config.frames_multiple * self._config.frames_multiple
        drop = keep_from - self._base
        if drop > 0:
            self._codes = [buf[drop * per :] for buf, per in zip(self._codes, self._per_frame, strict=True)]
            self._base = keep_from


def run_steps(
    rows: Sequence[tuple[StreamDecoder, StepInput]], *, shrink_arena: bool = False
) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Run prepared steps of several deferred streams of one model as one batched call of the stream graph.

    Args:
        rows: ``(stream, step)`` pairs: each step from its stream's :meth:`StreamDecoder.prepare_step`, all covering
            the same number of frames; the streams' :attr:`StreamDecoder.states` are read.
        shrink_arena: hand the memory a larger-than-usual call grows back to the system after it.

    Returns:
        Per row, its audio (float32 1-D) and new states, for :meth:`StreamDecoder.finish_step`.

    Raises:
        InvalidArgumentError: the streams are of different models, or the steps of different sizes.
        DecodeFailedError or onnxruntime's own error: the call failed (a scheduler retries row by row).
    """
    if not rows:
        return []
    runner = rows[0][0]._runner
    if any(stream._runner is not runner or step.frames != rows[0][1].frames for stream, step in rows):
        raise InvalidArgumentError("one batched call runs steps of the same size, of streams of one codec")
    steps = [step for _, step in rows]
    audio, states = runner.step(
        [np.concatenate(c) for c in zip(*(s.codes for s in steps), strict=True)],
        [np.concatenate(n) for n in zip(*(s.noise for s in steps), strict=True)],
        np.concatenate([s.frame for s in steps]),
        np.concatenate([s.end for s in steps]),
        [np.concatenate(st) for st in zip(*(stream.states for stream, _ in rows), strict=True)],
        shrink_arena=shrink_arena,
    )
    return [(audio[i], [s[i : i + 1] for s in states]) for i in range(len(rows))]
