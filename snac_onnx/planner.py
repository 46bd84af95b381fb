"""The one chunk planner: fixed-shape windows with exact context over any set of sequences, batched.

Everything that runs a graph on part of a sequence is planned here, in *steps* (padding units
for the encoder, coarse frames for the decoder): one long input, several inputs of different
lengths, a file read window by window, the pending frames of a stream. A :class:`Chunk` keeps
steps ``[a, b)`` of a sequence's output and runs the graph on steps ``[s, e)``, with enough
context on each side (the model's receptive field, :mod:`snac_onnx.config`) that the kept part
equals what a one-shot run over the whole sequence gives. :func:`batch_runs` then groups runs
of equal length into batches whose total length stays within a budget, so the memory of a
call is bounded whatever its batch size and length. Nothing here touches arrays.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

from .errors import InvalidArgumentError

__all__ = ["Chunk", "Run", "chunk_spans", "grid_chunks", "plan_runs", "batch_runs", "check_seconds", "budget_steps"]

logger = logging.getLogger(__name__)


class Chunk(NamedTuple):
    """One chunk of a sequence: it keeps steps ``[a, b)`` of the output and runs steps ``[s, e)``."""

    a: int
    b: int
    s: int
    e: int


class Run(NamedTuple):
    """A chunk of item ``item`` of a call."""

    item: int
    chunk: Chunk

    @property
    def length(self) -> int:
        return self.chunk.e - self.chunk.s


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def check_seconds(name: str, value: object) -> float | None:
    """``value`` as seconds (> 0 and finite), or None; :class:`InvalidArgumentError` naming ``name`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidArgumentError(f"{name} must be > 0 and finite, or None; got {value!r}")
    return float(value)


def budget_steps(seconds: float | None, samples_per_step: int, sample_rate: int) -> int | None:
    """Steps of ``samples_per_step`` samples in ``seconds`` of audio (at least 1); None stays None (no bound)."""
    if seconds is None:
        return None
    return max(1, int(seconds * sample_rate) // samples_per_step)


def chunk_spans(
    total: int, parts: int, multiple: int, left: int, right: int, max_size: int | None = None
) -> list[Chunk]:
    """Split ``[0, total)`` into chunks that each run with ``left``/``right`` steps of context.

    At least ``parts`` chunks, more if needed to keep each run within about ``max_size`` steps of
    output; never so many that a chunk keeps fewer than four times its context. Boundaries fall
    on ``multiple``.

    Every run of one sequence has the same length ``e - s``: the chunks at the two ends keep
    more output (they need context on one side only), and a run that would still be shorter
    takes extra context. onnxruntime's arena then re-uses one set of buffers for all chunks
    instead of growing a new region for a run a few steps longer than the one before (measured
    at 24 kHz: 51 MB more peak memory from one chunk 3 frames longer than the first). Extra
    context never changes the result.
    """
    left, right = _round_up(left, multiple), _round_up(right, multiple)
    context = left + right
    wanted = parts if max_size is None else max(parts, math.ceil(total / max(1, max_size)))
    count = max(1, min(wanted, total // max(1, 4 * context)))
    if count == 1:
        return [Chunk(0, total, 0, total)]
    # every run's length: an even share of the output plus the context all but one chunk repeat
    run = _round_up(-(-(total + (count - 1) * context) // count), multiple)
    cuts, cut = [0], run - right  # the first chunk needs no left context
    while cut < total:
        cuts.append(cut)
        if total - cut <= run - left:  # the rest fits one run with its left context
            break
        cut += run - context
    cuts.append(total)
    chunks = []
    for a, b in itertools.pairwise(cuts):
        s = max(0, min(a - left, total - run))
        chunks.append(Chunk(a, b, s, min(total, s + run)))
    return chunks


def grid_chunks(start: int, available: int, size: int, left: int, right: int, *, complete: bool) -> list[Chunk]:
    """Chunks of ``size`` steps on a grid, from ``start`` (a grid point) up to ``available`` steps.

    ``complete``: ``available`` is the end of the sequence, so every step is planned (the last
    chunk may be shorter) and context is clipped at the end as a one-shot run clips it.
    Otherwise only the chunks whose right context has fully arrived are planned (a stream).
    Context is clipped at step 0.
    """
    chunks = []
    a = start
    while a < available:
        b = a + size
        if not complete and b + right > available:
            break
        b = min(b, available)
        chunks.append(Chunk(a, b, max(0, a - left), min(available, b + right)))
        a = b
    return chunks


def plan_runs(
    lengths: Sequence[int], *, parts: int, multiple: int, left: int, right: int, max_size: int | None
) -> list[Run]:
    """The runs of a call over sequences of ``lengths`` steps: :func:`chunk_spans` of each, in item order."""
    return [
        Run(item, chunk)
        for item, total in enumerate(lengths)
        for chunk in chunk_spans(total, parts, multiple, left, right, max_size)
    ]


def batch_runs(runs: Sequence[Run], max_steps: int | None) -> list[list[Run]]:
    """Group runs of equal length into batches of at most ``max_steps`` steps in all (a lone run may exceed it).

    Each group takes as few batches as the budget allows, split as evenly as possible (8 runs that fit 5 to
    a batch run as 4 + 4, not 5 + 3).

    Batches keep the order in which their first run appears; None puts all runs of one length in one batch.
    """
    by_length: dict[int, list[Run]] = {}
    for run in runs:
        by_length.setdefault(run.length, []).append(run)
    batches: list[list[Run]] = []
    for length, group in by_length.items():
        most = len(group) if max_steps is None else max(1, max_steps // max(1, length))
        # as few batches as the budget allows, of sizes as equal as possible (the arena re-uses one shape)
        per_batch = -(-len(group) // -(-len(group) // most))
        batches.extend(group[i : i + per_batch] for i in range(0, len(group), per_batch))
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "plan: %d run(s) of %d item(s) in %d batch(es); run lengths %s; budget %s steps per batch",
            len(runs),
            len({r.item for r in runs}),
            len(batches),
            sorted(by_length),
            max_steps,
        )
    return batches
