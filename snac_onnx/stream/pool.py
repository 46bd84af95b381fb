"""Many streams, one model: the steps that are ready across all live streams run as one batched graph call.

Every stream of a model's stream graph (:mod:`snac_onnx.stream.decoder`, stateful mode) steps through
inputs of the same shape, so the steps that are ready across streams can be stacked along the
batch axis, with their states, and run at once: the graph's weights are read once per call, not
once per stream. :class:`StreamPool` owns one model and its worker threads (one by default). A
worker collects the ready steps, stacks up to ``max_batch`` of them, runs them, and hands each
stream its audio. Each row has its own frame, length and states, so the audio of every stream is
what it gets alone (the same equality with the offline decode as
:class:`~snac_onnx.stream.decoder.StreamDecoder`). A stream's steps run one at a time, in order.
Which steps run next, and how many rows a call stacks, is :mod:`snac_onnx.stream.batching`'s policy.

**Backpressure.** A stream's audio waits for its reader in a buffer of at most ``max_buffer_seconds``
(about: one call's audio may overshoot it); a stream whose buffer is full is not scheduled, so it costs
nothing until its reader reads. A stream holds its place in ``max_streams`` from :meth:`StreamPool.open`
until its reader has read its end (or error) or it is cancelled, whatever the decoding has done; opened with
``hold``, until it is cancelled (and :meth:`PooledStream.renew` starts another utterance in it).

Two faces, both thread-safe: :meth:`StreamPool.open` gives a :class:`PooledStream` (``push``,
``end``, then iterate or :meth:`~PooledStream.read` the audio chunks); :meth:`StreamPool.open_async`,
called in a running event loop, gives an :class:`AsyncPooledStream` (the same ``push`` and ``end``,
``async for`` chunk). Pushing checks and buffers the input on the caller's thread and never waits for
a decode (a stream's own lock is held by a worker only while it prepares or finishes that stream's
step); decoding happens on the pool's workers.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .. import forks
from ..codes import check_int
from ..errors import (
    DecodeFailedError,
    InvalidArgumentError,
    ModelNotFoundError,
    PoolFullError,
    SnacOnnxError,
    StreamClosedError,
)
from ..layouts import TokenLayout
from ..planner import budget_steps, check_seconds
from .batching import BatchPolicy, deadline
from .decoder import StepInput, StreamDecoder, run_steps
from .presets import PresetStream, TokenPreset, get_preset

if TYPE_CHECKING:  # asyncio only where it is used: importing it imports socket, and a decode-only process stays light
    import asyncio

    from ..codec import SnacOnnx

__all__ = [
    "StreamPool",
    "PooledStream",
    "AsyncPooledStream",
    "BatchRecord",
    "PoolStats",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BUFFER_SECONDS",
]

logger = logging.getLogger(__name__)

_END = object()  # delivered after a stream's last chunk
DEFAULT_MAX_BATCH = 16  # on CPU a step's cost per row stops falling by about 4-8 rows (bench/RESULTS_serve.md)
DEFAULT_MAX_BUFFER_SECONDS = 5.0  # audio decoded ahead of what a stream's reader has read
Item = Any  # np.ndarray | SnacOnnxError | _END


@dataclass(frozen=True)
class BatchRecord:
    """One batched call, as handed to ``on_batch``.

    Attributes:
        rows: streams in the call.
        frames: coarse frames each row covers.
        seconds: wall time of the graph call (stacking and splitting included).
        queue_seconds: per row, the time from its step becoming ready to the call's start.
        failed: rows whose step failed (each retried alone first).
        audio_seconds: audio the call handed to its streams' readers, over its rows (s).
    """

    rows: int
    frames: int
    seconds: float
    queue_seconds: tuple[float, ...]
    failed: int = 0
    audio_seconds: float = 0.0


@dataclass(frozen=True)
class PoolStats:
    """Counters of a pool since it was made (:meth:`StreamPool.stats`)."""

    streams_active: int
    streams_opened: int
    streams_refused: int
    streams_failed: int
    batches: int
    rows: int
    max_rows: int


class _Input(Protocol):
    """What a stream's input goes through: the decoder (codes, tokens) or a preset's front (ids, text)."""

    def push(self, data: Any) -> None: ...
    def end(self) -> None: ...
    @property
    def ended(self) -> bool: ...
    @property
    def skipped(self) -> tuple[int, int]: ...
    @property
    def trim_samples(self) -> int: ...
    def output(self, audio: np.ndarray) -> np.ndarray: ...


class _LayoutInput:
    """Codes or flat tokens, straight into the decoder; an incomplete last frame at the end is an error."""

    def __init__(self, decoder: StreamDecoder) -> None:
        self._decoder = decoder

    def push(self, data: Any) -> None:
        self._decoder.push(data)

    def end(self) -> None:
        if not self._decoder.closed:
            self._decoder.flush(drop_incomplete=False)

    @property
    def ended(self) -> bool:
        return self._decoder.closed

    @property
    def skipped(self) -> tuple[int, int]:
        return 0, 0

    @property
    def trim_samples(self) -> int:
        return 0

    def output(self, audio: np.ndarray) -> np.ndarray:
        return audio


class _PresetInput:
    """A TTS model's ids or text through its :class:`~snac_onnx.stream.presets.PresetStream` (an end-of-speech id
    ends the input; the preset's output trim applies)."""

    def __init__(self, front: PresetStream) -> None:
        self._front = front

    def push(self, data: Any) -> None:
        self._front.push(data)

    def end(self) -> None:
        self._front.flush()

    @property
    def ended(self) -> bool:
        return self._front.done

    @property
    def skipped(self) -> tuple[int, int]:
        return self._front.skipped_ids, self._front.skipped_chars

    @property
    def trim_samples(self) -> int:
        return self._front.preset.trim_samples

    def output(self, audio: np.ndarray) -> np.ndarray:
        return self._front.trim(audio)


class _Sink(Protocol):
    """Where a stream's chunks go (from a worker thread); read by one consumer."""

    def put(self, item: Item) -> None: ...


class _ThreadSink:
    """A thread-safe queue."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()

    def put(self, item: Item) -> None:
        self._queue.put(item)

    def get(self, timeout: float | None) -> Item:
        return self._queue.get(timeout=timeout)


class _LoopSink:
    """Chunks handed to an ``asyncio.Queue`` on the event loop that opened the stream."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        import asyncio

        self._loop = loop
        self._aqueue: asyncio.Queue[Item] = asyncio.Queue()

    def put(self, item: Item) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is reading any more
            self._loop.call_soon_threadsafe(self._aqueue.put_nowait, item)

    async def aget(self) -> Item:
        return await self._aqueue.get()


class _Entry:
    """A pool's view of one stream.

    ``lock`` guards the stream's input and decoder (pushes, and a worker preparing or finishing its step); the
    pool's lock guards the rest, published under it while ``lock`` is held (lock order: ``lock``, then the
    pool's), so what the scheduler sees never goes back in time.
    """

    def __init__(
        self, key: int, decoder: StreamDecoder, input_: _Input, sink: _Sink, options: _Options, hold: bool
    ) -> None:
        self.key = key
        self.decoder = decoder
        self.input = input_
        self.sink = sink
        self.options = options
        self.hold = hold  # the place is let go only by cancel(), not by reading the end
        self.lock = threading.Lock()
        self.ready = 0  # steps ready (as last published)
        self.ready_since: float | None = None  # when it became schedulable (monotonic s)
        self.first_audio: float | None = None  # when its first audio was handed out (monotonic s)
        self.audio_seconds = 0.0  # audio handed out so far (s)
        self.buffered = 0  # samples handed out and not yet read
        self.running = False
        self.finished = False  # decoding is over (done, failed or cancelled): no more steps
        self.released = False  # its reader let go (read the end, or cancelled): no longer counted


@dataclass(frozen=True)
class _Options:
    """What a stream was opened with (a renewed stream gets the same)."""

    preset: TokenPreset | str | None
    layout: TokenLayout | str
    noise: bool
    seed: int | None


class StreamPool:
    """Decode many streams of one model at once; see the module docstring.

    Args:
        codec: the model, at a precision with a stream graph (fp32 in every export since the stream graph; int8). Its
            ``threads`` are the threads of each batched call; its ``max_chunk_seconds`` bounds a call's
            audio, summed over its rows, and so the default ``max_batch``.
        max_streams: streams open at once; :meth:`open` beyond it raises :class:`PoolFullError`.
        max_batch: the most steps one call runs, over all its rows (None: the rows of the memory budget, at most
            :data:`DEFAULT_MAX_BATCH`; GPUs gain from more, e.g. 64). A lone stream with many steps ready runs
            ``max_batch`` of them per call. ``batching=False`` is ``max_batch=1`` (one stream, one step per call).
        workers: calls run at once, each on its own thread (with the codec's ``threads`` inside each). On a CPU,
            one worker per core with ``threads=1`` outruns one worker with every core: a step is too small for
            onnxruntime's threads to share well (bench/RESULTS_serve.md).
        batching: stack ready steps of several streams in one call.
        collect_ms: the longest a ready step waits for steps of other live streams to join it (ms). A lone
            stream, or a batch that is already full, never waits.
        max_stream_seconds: the longest stream the pool accepts, in seconds of audio; a push beyond it fails
            that stream with :class:`InvalidArgumentError` (None: no bound).
        max_buffer_seconds: audio decoded ahead of what a stream's reader has read (s); a stream with this much
            waiting is not scheduled until its reader reads (None: no bound).
        on_batch: called after each call with its :class:`BatchRecord` (on the worker thread; keep it short).

    Raises:
        ModelNotFoundError: the export has no stream graph (re-export it).
        InvalidArgumentError: an argument out of range, or a codec whose precision has no stream graph.
    """

    def __init__(
        self,
        codec: SnacOnnx,
        *,
        max_streams: int = 64,
        max_batch: int | None = None,
        workers: int = 1,
        batching: bool = True,
        collect_ms: float = 1.0,
        max_stream_seconds: float | None = 600.0,
        max_buffer_seconds: float | None = DEFAULT_MAX_BUFFER_SECONDS,
        on_batch: Callable[[BatchRecord], None] | None = None,
    ) -> None:
        spec = codec.manifest.stream
        if spec is None:
            raise ModelNotFoundError(
                "a StreamPool runs the export's stream graph (stream.onnx) and this export has none; re-export it "
                "with 'python -m export ...'"
            )
        if not codec.manifest.has_stream(codec.precision):
            raise InvalidArgumentError(
                f"this export has no stream graph at precision {codec.precision!r}; use a precision with one "
                f"({', '.join(p for p in codec.manifest.precisions if codec.manifest.has_stream(p))})"
            )
        check_int("max_streams", max_streams, 1)
        if max_batch is not None:
            check_int("max_batch", max_batch, 1)
        if not isinstance(batching, bool):
            raise InvalidArgumentError(f"batching must be True or False, got {batching!r}")
        if isinstance(collect_ms, bool) or not isinstance(collect_ms, (int, float)) or not 0 <= collect_ms <= 1000:
            raise InvalidArgumentError(f"collect_ms must be a number of ms in [0, 1000], got {collect_ms!r}")
        max_stream_seconds = check_seconds("max_stream_seconds", max_stream_seconds)
        max_buffer_seconds = check_seconds("max_buffer_seconds", max_buffer_seconds)
        config = codec.config
        frame_budget = budget_steps(codec.max_chunk_seconds, config.samples_per_frame, config.sample_rate)
        self._max_frames = budget_steps(max_stream_seconds, config.samples_per_frame, config.sample_rate)
        if max_batch is None:  # the memory budget's rows, at most DEFAULT_MAX_BATCH
            budget_rows = DEFAULT_MAX_BATCH if frame_budget is None else frame_budget // spec.step_frames
            max_batch = max(1, min(DEFAULT_MAX_BATCH, budget_rows))
        self.codec = codec
        self.max_streams = int(max_streams)
        self.workers = check_int("workers", workers, 1)
        self.max_batch = int(max_batch) if batching else 1
        self.collect_s = float(collect_ms) / 1000.0
        self._max_buffer = (
            math.inf if max_buffer_seconds is None else math.ceil(max_buffer_seconds * config.sample_rate)
        )
        self.policy = BatchPolicy(self.workers, self.max_batch)
        self._step_frames = spec.step_frames
        self._sample_rate = config.sample_rate
        self._on_batch = on_batch
        self._cond = threading.Condition()
        self._entries: dict[int, _Entry] = {}
        self._keys = itertools.count()
        self._closing = False
        self._workers: list[threading.Thread] = []
        self._busy = 0  # workers in a call
        self._counts = {"opened": 0, "refused": 0, "failed": 0, "batches": 0, "rows": 0, "max_rows": 0}
        forks.register(self)

    def after_fork_in_child(self) -> None:
        """The worker threads are gone in a forked child: forget them and the parent's streams (new ones start on
        the next :meth:`open`)."""
        self._cond = threading.Condition()
        self._entries = {}
        self._workers = []
        self._busy = 0

    # ------------------------------------------------------------------ streams
    def open(
        self,
        *,
        preset: TokenPreset | str | None = None,
        layout: TokenLayout | str = "interleaved",
        noise: bool = False,
        seed: int | None = None,
        hold: bool = False,
    ) -> PooledStream:
        """A new stream; push codes or flat tokens (``layout``), or a TTS model's ids or text (``preset``, e.g.
        ``"orpheus"``), then iterate its audio. ``noise``, ``seed``: as :meth:`SnacOnnx.stream`.

        ``hold``: the stream keeps its place in ``max_streams`` after its end is read, until :meth:`cancel` (a
        server lets go when the connection does); without it the place is free once the end is read.

        Raises:
            PoolFullError: ``max_streams`` are open, or the pool is closing.
        """
        sink = _ThreadSink()
        return PooledStream(self, self._add(_Options(preset, layout, noise, seed), sink, hold), sink)

    def open_async(
        self,
        *,
        preset: TokenPreset | str | None = None,
        layout: TokenLayout | str = "interleaved",
        noise: bool = False,
        seed: int | None = None,
        hold: bool = False,
    ) -> AsyncPooledStream:
        """:meth:`open` for asyncio; call it in the event loop that will read the stream."""
        import asyncio

        sink = _LoopSink(asyncio.get_running_loop())
        return AsyncPooledStream(self, self._add(_Options(preset, layout, noise, seed), sink, hold), sink)

    def _make(self, options: _Options) -> tuple[StreamDecoder, _Input]:
        noise, seed = options.noise, options.seed
        if options.preset is None:
            decoder = self.codec.stream(mode="stateful", layout=options.layout, noise=noise, seed=seed, deferred=True)
            return decoder, _LayoutInput(decoder)
        chosen = get_preset(options.preset)
        decoder = self.codec.stream(mode="stateful", layout=chosen.layout, noise=noise, seed=seed, deferred=True)
        return decoder, _PresetInput(PresetStream(decoder, chosen))

    def _add(self, options: _Options, sink: _Sink, hold: bool) -> _Entry:
        decoder, input_ = self._make(options)
        with self._cond:
            if self._closing:
                self._counts["refused"] += 1
                raise PoolFullError("the stream pool is closing; it takes no new streams")
            if len(self._entries) >= self.max_streams:
                self._counts["refused"] += 1
                raise PoolFullError(f"the stream pool holds its maximum of {self.max_streams} streams; try again later")
            entry = _Entry(next(self._keys), decoder, input_, sink, options, hold)
            self._entries[entry.key] = entry
            self._counts["opened"] += 1
            if not self._workers:
                for k in range(self.workers):
                    worker = threading.Thread(target=self._loop, name=f"snac_onnx-pool-{k}", daemon=True)
                    worker.start()
                    self._workers.append(worker)
        return entry

    def _push(self, entry: _Entry, data: Any) -> bool:
        with entry.lock:
            if entry.finished:
                raise StreamClosedError("this stream was cancelled, failed or has ended")
            try:
                entry.input.push(data)
            except StreamClosedError:
                raise StreamClosedError(
                    "this stream has ended (end() or an end-of-speech id); open a new one"
                ) from None
            too_long = self._max_frames is not None and entry.decoder.frames_received > self._max_frames
            with self._cond:
                if too_long:
                    self._finish(
                        entry,
                        InvalidArgumentError(
                            f"the stream is longer than this pool's limit of {self._max_frames} frames "
                            "(max_stream_seconds)"
                        ),
                    )
                else:
                    self._publish(entry)
            if too_long:
                raise InvalidArgumentError("the stream went past max_stream_seconds and was closed")
            return entry.input.ended

    def _end(self, entry: _Entry) -> None:
        with entry.lock:
            if entry.finished and not entry.input.ended:
                raise StreamClosedError("this stream was cancelled, failed or has ended")
            entry.input.end()
            with self._cond:
                self._publish(entry)

    def _cancel(self, entry: _Entry) -> None:
        with self._cond:
            self._finish(entry)
            self._release(entry)

    def _renew(self, entry: _Entry) -> None:
        """A new utterance in a finished stream's place: a fresh decoder and input, the same options."""
        decoder, input_ = self._make(entry.options)
        with entry.lock, self._cond:
            if not entry.finished or entry.released or self._closing:
                raise StreamClosedError("only a stream read to its end, still holding its place, can be renewed")
            entry.decoder, entry.input = decoder, input_
            entry.ready, entry.ready_since, entry.first_audio = 0, None, None
            entry.audio_seconds, entry.buffered = 0.0, 0
            entry.running = entry.finished = False
            self._counts["opened"] += 1

    def _consumed(self, entry: _Entry, samples: int) -> None:
        """The reader took ``samples`` from the buffer: a stream held back by a full buffer may run again."""
        with self._cond:
            entry.buffered -= samples
            self._schedule(entry)

    def _publish(self, entry: _Entry) -> None:
        """After input, an end or a step (both locks held): publish the steps ready, or finish a stream that is
        done."""
        decoder = entry.decoder
        entry.ready = decoder.ready_steps() if not entry.finished else 0
        if decoder.done and not entry.running:
            self._finish(entry)
        else:
            self._schedule(entry)

    def _schedule(self, entry: _Entry) -> None:
        """Mark the entry schedulable (its queue time starts now) or not (lock held)."""
        runnable = not entry.running and not entry.finished and entry.ready > 0 and entry.buffered < self._max_buffer
        if not runnable:
            entry.ready_since = None
        elif entry.ready_since is None:
            entry.ready_since = time.monotonic()
            self._cond.notify_all()

    def _finish(self, entry: _Entry, error: SnacOnnxError | None = None) -> None:
        """End the entry's decoding (once) and its reader, with ``error`` first if it failed (lock held)."""
        if entry.finished:
            return
        entry.finished = True
        entry.ready_since = None
        if error is not None:
            self._counts["failed"] += 1
            entry.sink.put(error)
        entry.sink.put(_END)
        self._cond.notify_all()

    def _release(self, entry: _Entry) -> None:
        """The reader let go: the stream no longer counts against ``max_streams`` (lock held)."""
        if not entry.released:
            entry.released = True
            self._entries.pop(entry.key, None)
            self._cond.notify_all()

    # ------------------------------------------------------------------ the worker
    def _ready(self) -> list[_Entry]:
        ready = [e for e in self._entries.values() if e.ready_since is not None]
        now, rate = time.monotonic(), self._sample_rate
        ready.sort(key=lambda e: deadline(e.first_audio, e.audio_seconds, e.ready_since, e.buffered / rate, now))
        return ready

    def _live(self) -> int:
        """Streams still decoding and not in a call: the most that could join one."""
        return sum(1 for e in self._entries.values() if not e.finished and not e.running)

    def _loop(self) -> None:
        while True:
            with self._cond:
                ready = self._ready()
                while not ready:
                    if self._closing and not any(not e.finished for e in self._entries.values()):
                        return
                    self._cond.wait()
                    ready = self._ready()
                ready = self._collect(ready)
                if not ready:  # another worker took them while this one was collecting
                    continue
                rows = self._select(ready)
            try:
                self._run(rows)
            except Exception as error:  # a bug must fail the streams of the call, not stop the worker
                logger.exception("stream pool worker error")
                for entry, _, _ in rows:
                    with entry.lock, self._cond:
                        entry.running = False
                        self._finish(entry, DecodeFailedError(f"internal error of the stream pool: {error!r}"))
            finally:
                with self._cond:
                    self._busy -= 1

    def _collect(self, ready: list[_Entry]) -> list[_Entry]:
        """Wait up to ``collect_s`` for other live streams' steps while one more would join the call (the batch is
        not full and, by the measured costs, stacking pays; lock held)."""
        if self.collect_s <= 0 or self.max_batch == 1:
            return ready
        end = time.monotonic() + self.collect_s
        while len(ready) < min(self.max_batch, self._live()) and self.policy.rows(len(ready) + 1, self._busy) > len(
            ready
        ):
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
            ready = self._ready()
        return ready

    def _select(self, ready: list[_Entry]) -> list[tuple[_Entry, int, float]]:
        """The earliest-deadline ready streams, as many as the policy says, each with the same number of steps
        (lock held): ``(entry, steps, seconds it waited)``."""
        rows = ready[: self.policy.rows(len(ready), self._busy)]
        # Several steps per row only when no other stream is live: a burst (a whole request pushed at once) then
        # runs max_batch steps per call, and otherwise one at a time beside the others, so it never holds a worker
        # while real-time streams wait. A call covers at most max_batch steps in all, so its memory and its time
        # stay those of a full batch of single steps.
        steps = 1
        if len(rows) == self._live():
            steps = max(1, min(min(e.ready for e in rows), self.max_batch // len(rows)))
        now = time.monotonic()
        selected = [(entry, steps, now - (entry.ready_since or now)) for entry in rows]
        for entry in rows:
            entry.running = True
            entry.ready_since = None
        self._busy += 1
        return selected

    def _run(self, rows: list[tuple[_Entry, int, float]]) -> None:
        batch: list[tuple[_Entry, StepInput]] = []
        queued: list[float] = []
        for entry, steps, waited in rows:
            with entry.lock:
                if entry.finished:  # cancelled since it was selected
                    with self._cond:
                        entry.running = False
                    continue
                batch.append((entry, entry.decoder.prepare_step(steps)))
                queued.append(waited)
        if not batch:
            return
        started = time.monotonic()
        results, failed = self._call(batch)
        seconds = time.monotonic() - started
        delivered = 0
        for (entry, step), result in zip(batch, results, strict=True):
            with entry.lock:
                chunk: np.ndarray | None = None
                error = result if isinstance(result, SnacOnnxError) else None
                if error is None and not entry.finished:
                    assert not isinstance(result, SnacOnnxError)
                    try:
                        chunk = entry.input.output(entry.decoder.finish_step(step, *result))
                    except SnacOnnxError as failure:
                        error = failure
                with self._cond:
                    entry.running = False
                    if entry.finished:
                        continue
                    if error is not None:
                        self._finish(entry, error)
                        continue
                    if chunk is not None and chunk.size:
                        if entry.first_audio is None:
                            entry.first_audio = time.monotonic()
                        entry.audio_seconds += chunk.size / self._sample_rate
                        entry.buffered += chunk.size
                        delivered += chunk.size
                        entry.sink.put(chunk)
                    self._publish(entry)
        with self._cond:
            if not failed:
                self.policy.learn(len(batch) * batch[0][1].frames // self._step_frames, seconds)
            counts = self._counts
            counts["batches"] += 1
            counts["rows"] += len(batch)
            counts["max_rows"] = max(counts["max_rows"], len(batch))
        if self._on_batch is not None:
            record = BatchRecord(
                len(batch), batch[0][1].frames, seconds, tuple(queued), failed, delivered / self._sample_rate
            )
            try:
                self._on_batch(record)
            except Exception:  # a broken metrics hook must not stop the decoding
                logger.exception("on_batch raised; ignored")

    def _call(
        self, batch: list[tuple[_Entry, StepInput]]
    ) -> tuple[list[tuple[np.ndarray, list[np.ndarray]] | SnacOnnxError], int]:
        """Run the stacked steps; a failing batch is retried row by row so that only the failing rows fail."""
        try:
            results: list[tuple[np.ndarray, list[np.ndarray]] | SnacOnnxError] = list(
                run_steps(
                    [(entry.decoder, step) for entry, step in batch],
                    # a burst's call is larger than the steady ones: its arena growth goes back to the system after it
                    shrink_arena=batch[0][1].frames > self._step_frames,
                )
            )
        except Exception as error:  # noqa: BLE001  # handed to the streams it concerns, never lost
            if len(batch) == 1:
                logger.warning("a stream step failed: %s", error)
                if isinstance(error, SnacOnnxError):
                    return [error], 1
                wrapped = DecodeFailedError(f"onnxruntime failed to run this stream's step: {error}")
                wrapped.__cause__ = error
                return [wrapped], 1
            results = []
            failed = 0
            for row in batch:
                result, bad = self._call([row])
                results += result
                failed += bad
            return results, failed
        return results, 0

    # ------------------------------------------------------------------ life
    @property
    def streams_active(self) -> int:
        """Streams holding a place in ``max_streams``: opened, and not yet read to their end or cancelled."""
        with self._cond:
            return len(self._entries)

    def stats(self) -> PoolStats:
        """Counters since the pool was made."""
        with self._cond:
            c = self._counts
            return PoolStats(
                len(self._entries), c["opened"], c["refused"], c["failed"], c["batches"], c["rows"], c["max_rows"]
            )

    def close(self, timeout: float | None = 0.0) -> None:
        """Take no new streams; let the live ones finish for up to ``timeout`` s (None: wait for all), then cancel
        the rest (their readers get :class:`StreamClosedError`) and stop the workers."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            end = None if timeout is None else time.monotonic() + timeout
            while any(not e.finished for e in self._entries.values()) and (end is None or time.monotonic() < end):
                self._cond.wait(None if end is None else max(0.0, end - time.monotonic()))
            for entry in list(self._entries.values()):
                self._finish(entry, StreamClosedError("the stream pool closed before this stream ended"))
            workers = list(self._workers)
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join()

    def __enter__(self) -> StreamPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Input = Sequence[np.ndarray] | np.ndarray | Sequence[int] | int | str


class _Handle:
    """What both faces of a pool's stream share: the input, cancelling, and reading one delivered item."""

    def __init__(self, pool: StreamPool, entry: _Entry) -> None:
        self._pool = pool
        self._entry = entry
        self._done = False

    @property
    def decoder(self) -> StreamDecoder:
        """The stream's :class:`~snac_onnx.stream.decoder.StreamDecoder` (its ``seed``, ``frames_received``...)."""
        return self._entry.decoder

    @property
    def closed(self) -> bool:
        """The pool is done decoding the stream: it ended, failed or was cancelled (its remaining audio may still
        be waiting to be read)."""
        return self._entry.finished

    @property
    def skipped(self) -> tuple[int, int]:
        """What a preset stream's input held that was not audio: ``(ids, characters of text)``."""
        return self._entry.input.skipped

    @property
    def input_ended(self) -> bool:
        """No more input is taken: :meth:`end` was called, or a preset's end-of-speech id arrived."""
        return self._entry.input.ended

    def push(self, data: Input) -> bool:
        """Queue input: per-codebook codes or flat tokens, or with a preset, ids or generated text. Checks and
        buffers it on this thread, never waiting for a decode. Bad input raises here
        (:class:`~snac_onnx.errors.InvalidCodesError`...) and leaves the stream as it was.

        Returns:
            :attr:`input_ended`: True once an end-of-speech id has ended the stream's input.
        """
        return self._pool._push(self._entry, data)

    def end(self) -> None:
        """No more input: the tail is decoded (as :meth:`StreamDecoder.flush`), then reading stops. After an
        end-of-speech id it does nothing."""
        self._pool._end(self._entry)

    def cancel(self) -> None:
        """Drop the stream now, free its state and its place; reading stops (audio not yet read is lost)."""
        self._pool._cancel(self._entry)

    def renew(self) -> None:
        """Start a new utterance in this stream's place (the same options, a fresh decoder): for a stream opened
        with ``hold`` and read to its end. A server speaking a long text one piece after another keeps its
        place this way.

        Raises:
            StreamClosedError: the stream is not read to its end, or it was cancelled.
        """
        if not self._done:
            raise StreamClosedError("renew() takes a stream read to its end")
        self._pool._renew(self._entry)
        self._done = False

    @property
    def total_samples(self) -> int | None:
        """Once the input has ended: the samples the stream gives in all (a preset's trim taken off); else None."""
        entry = self._entry
        if not entry.input.ended:
            return None
        spf = entry.decoder.config.samples_per_frame
        return max(0, entry.decoder.frames_received * spf - entry.input.trim_samples)

    def _item(self, item: Item) -> np.ndarray | None:
        if isinstance(item, SnacOnnxError):  # the pool hands a stream only its own errors, as SnacOnnxError
            self._done = True
            if not self._entry.hold:
                self._pool._cancel(self._entry)  # read to its end: the place is free
            raise item
        if item is _END:
            self._done = True
            if not self._entry.hold:
                self._pool._cancel(self._entry)
            return None
        chunk: np.ndarray = item
        self._pool._consumed(self._entry, chunk.size)
        return chunk


class PooledStream(_Handle):
    """One stream of a :class:`StreamPool` (thread-safe); create with :meth:`StreamPool.open`.

    ``push`` (any number of times), ``end`` once, and read the audio (float32 1-D chunks, in order,
    as they become final) by iterating or with :meth:`read`. The chunks concatenated are the
    stream's whole audio. An error of the stream is raised by the reader.
    """

    def __init__(self, pool: StreamPool, entry: _Entry, sink: _ThreadSink) -> None:
        super().__init__(pool, entry)
        self._sink = sink

    def read(self, timeout: float | None = None) -> np.ndarray | None:
        """The next chunk, or None once the stream is over; raises the stream's error, or TimeoutError."""
        if self._done:
            return None
        try:
            item = self._sink.get(timeout)
        except queue.Empty:
            raise TimeoutError(f"no audio within {timeout} s") from None
        return self._item(item)

    def __iter__(self) -> Iterator[np.ndarray]:
        while (chunk := self.read()) is not None:
            yield chunk


class AsyncPooledStream(_Handle):
    """One stream of a :class:`StreamPool` for asyncio; create with :meth:`StreamPool.open_async` in the loop
    that reads it.

    ``push(...)`` and ``end()`` as :class:`PooledStream` (they never wait), ``async for chunk in stream``.
    Decoding runs on the pool's worker threads, never on the loop.
    """

    def __init__(self, pool: StreamPool, entry: _Entry, sink: _LoopSink) -> None:
        super().__init__(pool, entry)
        self._sink = sink

    async def read(self) -> np.ndarray | None:
        """The next chunk, or None once the stream is over; raises the stream's error."""
        if self._done:
            return None
        return self._item(await self._sink.aget())

    async def __aiter__(self) -> AsyncIterator[np.ndarray]:
        while (chunk := await self.read()) is not None:
            yield chunk
