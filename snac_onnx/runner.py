"""The one executor: runs a model's graphs over planned, batched windows of many sequences.

:class:`Runner` plans a call with :mod:`snac_onnx.planner` (receptive fields from the config,
the memory budget from ``max_chunk_seconds``), stacks each batch's windows into one graph
input per name, runs the session, and hands each sequence the part of the output its chunks
keep. Inputs are already checked (:mod:`snac_onnx.audio`, :mod:`snac_onnx.codes`): this layer
validates nothing. Sequences are 1-D per item (audio samples; codes per codebook; noise per
block), time last; graphs are fed and bound by name.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from . import forks
from .config import ModelConfig
from .errors import InvalidArgumentError, ModelFormatError
from .heap import trim_heap
from .model.contract import AUDIO_NAME, code_names, noise_names
from .model.sessions import ModelSessions
from .planner import Run, batch_runs, budget_steps, plan_runs

__all__ = ["Port", "Runner"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
Feeds = dict[str, np.ndarray]
NOISE_PEAK = 1e3  # noise beyond this magnitude, not the model, is the likely cause of non-finite audio


@dataclass(frozen=True)
class Port:
    """A graph input or output along the planned time axis.

    Attributes:
        name: the graph's tensor name.
        per_step: elements along time per planning step (samples per unit, codes per frame...).
        channel: the graph's tensor is ``(batch, 1, time)`` rather than ``(batch, time)``.
    """

    name: str
    per_step: int
    channel: bool


def _refuse_non_finite(audio: Sequence[np.ndarray], noise: Sequence[np.ndarray]) -> None:
    """Never hand out silently broken audio: NaN or infinite samples are blamed on huge given noise, or else on
    the model files or the kernel."""
    if all(np.isfinite(a).all() for a in audio):
        return
    peak = max((float(np.abs(n).max()) for n in noise if n.size), default=0.0)
    if not peak <= NOISE_PEAK:
        raise InvalidArgumentError(
            f"the decoder produced NaN or infinite samples: the noise given peaks at {peak:.3g}; SNAC's "
            "noise is standard normal (|x| rarely above 6): pass noise of that scale, or noise=False"
        )
    raise ModelFormatError(
        "the decoder produced NaN or infinite samples from valid codes: the model files or the fused "
        "Snake kernel are damaged; re-download the model, or pass SessionSettings(fused_snake=False)"
    )


class Runner:
    """Plans and runs encoder and decoder calls of one model; shared by a codec and its streams.

    Args:
        sessions: the model's sessions (built on first use).
        parallel: batches run at once (a thread pool when above 1); a long single input is
            split into at least this many chunks.
        max_chunk_seconds: the most audio one graph run holds, summed over its batch (None:
            no bound; one run per equal-length group).

    Fork-safe: a child forked after the thread pool was made starts a new one.
    """

    def __init__(self, sessions: ModelSessions, *, parallel: int, max_chunk_seconds: float | None) -> None:
        self.sessions = sessions
        self.config: ModelConfig = sessions.manifest.config
        self.parallel = parallel
        self.max_chunk_seconds = max_chunk_seconds
        config = self.config
        self._encoder_in = [Port(AUDIO_NAME, config.padding_unit, True)]
        self._encoder_out = [
            Port(name, config.frames_per_unit * n, False)
            for name, n in zip(code_names(config.num_codebooks), config.codes_per_frame, strict=True)
        ]
        self._decoder_codes = [
            Port(name, n, False)
            for name, n in zip(code_names(config.num_codebooks), config.codes_per_frame, strict=True)
        ]
        self._decoder_noise = [
            Port(name, n, True)
            for name, n in zip(noise_names(config.num_noise_blocks), config.noise_per_frame, strict=True)
        ]
        self._decoder_out = [Port(AUDIO_NAME, config.samples_per_frame, True)]
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        forks.register(self)

    def after_fork_in_child(self) -> None:
        """Forget the parent's thread pool (its threads are gone); a new one is made on next use."""
        self._pool = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ planning
    def plan_encode(self, units: Sequence[int]) -> list[list[Run]]:
        """Batches of runs that encode sequences of ``units`` padding units each."""
        config = self.config
        budget = budget_steps(self.max_chunk_seconds, config.padding_unit, config.sample_rate)
        context = config.encoder_context
        runs = plan_runs(units, parts=self.parallel, multiple=1, left=context, right=context, max_size=budget)
        return batch_runs(runs, None if budget is None else budget + 2 * context)

    def plan_decode(self, frames: Sequence[int]) -> list[list[Run]]:
        """Batches of runs that decode sequences of ``frames`` coarse frames each."""
        config = self.config
        budget = budget_steps(self.max_chunk_seconds, config.samples_per_frame, config.sample_rate)
        left, right = config.decoder_context
        runs = plan_runs(
            frames, parts=self.parallel, multiple=config.frames_multiple, left=left, right=right, max_size=budget
        )
        return batch_runs(runs, None if budget is None else budget + left + right)

    # ------------------------------------------------------------------ running
    def encode(self, audio: Sequence[np.ndarray], batches: list[list[Run]] | None = None) -> list[list[np.ndarray]]:
        """Codes per item, per codebook (int64, 1-D), of float32 1-D PCM items padded to whole units.

        ``batches`` (default :meth:`plan_encode`) may plan windows explicitly, e.g. one window of a file.
        """
        if batches is None:
            batches = self.plan_encode([a.shape[0] // self.config.padding_unit for a in audio])
        session = self.sessions.get("encoder").session
        names = [p.name for p in self._encoder_out]
        outs = self._execute(
            lambda feeds: list(session.run(names, feeds)),
            {AUDIO_NAME: audio},
            self._encoder_in,
            self._encoder_out,
            batches,
            len(audio),
        )
        return [[np.asarray(c, dtype=np.int64) for c in item] for item in outs]

    def decode(
        self,
        codes: Sequence[Sequence[np.ndarray]],
        noise: Sequence[Sequence[np.ndarray]],
        batches: list[list[Run]] | None = None,
    ) -> list[np.ndarray]:
        """float32 1-D audio per item of checked int64 codes (per item, per codebook) and noise (per item, per block).

        ``batches`` (default :meth:`plan_decode`) may plan windows explicitly, e.g. a stream's chunk.
        """
        if batches is None:
            batches = self.plan_decode([c[0].shape[0] // self.config.codes_per_frame[0] for c in codes])
        inputs: dict[str, Sequence[np.ndarray]] = {
            p.name: [item[i] for item in codes] for i, p in enumerate(self._decoder_codes)
        }
        inputs.update({p.name: [item[j] for item in noise] for j, p in enumerate(self._decoder_noise)})
        session = self.sessions.get("decoder").session
        outs = self._execute(
            lambda feeds: list(session.run([AUDIO_NAME], feeds)),
            inputs,
            self._decoder_codes + self._decoder_noise,
            self._decoder_out,
            batches,
            len(codes),
        )
        audio = [item[0] for item in outs]
        _refuse_non_finite(audio, [n for item in noise for n in item])
        return audio

    def step(
        self,
        codes: Sequence[np.ndarray],
        noise: Sequence[np.ndarray],
        frame: np.ndarray,
        end: np.ndarray,
        states: Sequence[np.ndarray],
        *,
        shrink_arena: bool = False,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One call of the stream graph (see :mod:`snac_onnx.model.manifest`) over a batch of streams.

        ``codes`` int64 ``(B, n_i)`` per codebook; ``noise`` float32 ``(B, 1, m_j)`` per block; ``frame``
        and ``end`` int64 ``(B,)``; ``states`` float32 per the manifest's state layout. Returns audio
        float32 ``(B, samples)`` and the new states, in order. ``shrink_arena``: hand the CPU arena's
        memory this call grew back to the system after it (for a call larger than the usual ones).
        """
        session = self.sessions.get("stream").session  # raises for an export without a stream graph
        spec = self.sessions.manifest.stream
        assert spec is not None
        feeds: Feeds = dict(zip(spec.inputs, [*codes, *noise, frame, end, *states], strict=True))
        options = None
        if shrink_arena:
            options = self.sessions.run_options(shrink_arena=True)
        outputs = session.run(spec.outputs, feeds, options)
        if shrink_arena:
            trim_heap()
        audio = outputs[0][:, 0, :]
        _refuse_non_finite([audio], noise)
        return audio, list(outputs[1:])

    def _execute(
        self,
        run: Callable[[Feeds], list[np.ndarray]],
        inputs: dict[str, Sequence[np.ndarray]],
        in_ports: Sequence[Port],
        out_ports: Sequence[Port],
        batches: list[list[Run]],
        items: int,
    ) -> list[list[np.ndarray]]:
        """Run every batch; per item, per output port, the kept parts concatenated in time."""

        def one(batch: list[Run]) -> list[list[np.ndarray]]:
            feeds: Feeds = {}
            for port in in_ports:
                rows = [inputs[port.name][r.item][r.chunk.s * port.per_step : r.chunk.e * port.per_step] for r in batch]
                stacked = np.stack(rows)
                feeds[port.name] = stacked[:, None, :] if port.channel else stacked
            outputs = run(feeds)
            kept = []
            for port, out in zip(out_ports, outputs, strict=True):
                flat = out[:, 0, :] if port.channel else out
                kept.append(
                    [
                        flat[k, (r.chunk.a - r.chunk.s) * port.per_step : (r.chunk.b - r.chunk.s) * port.per_step]
                        for k, r in enumerate(batch)
                    ]
                )
            return kept

        pieces: list[list[list[tuple[int, np.ndarray]]]] = [[[] for _ in out_ports] for _ in range(items)]
        for batch, kept in zip(batches, self._map(one, batches), strict=True):
            for j, kept_of_port in enumerate(kept):
                for r, piece in zip(batch, kept_of_port, strict=True):
                    pieces[r.item][j].append((r.chunk.a, piece))
        result = []
        for per_item in pieces:
            ports = []
            for per_port in per_item:
                ordered = [p for _, p in sorted(per_port, key=lambda ap: ap[0])]
                ports.append(ordered[0] if len(ordered) == 1 else np.concatenate(ordered))
            result.append(ports)
        return result

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R] | Iterable[R]:
        if self.parallel == 1 or len(items) < 2:
            return map(fn, items)
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="snac_onnx")
        return self._pool.map(fn, items)

    def close(self) -> None:
        """Shut the thread pool down (waiting for running batches)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
