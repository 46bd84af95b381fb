"""The stream pool's batching policy: which ready steps run next, and how many rows one call stacks.

Ready steps run **earliest deadline first**: a stream's deadline is when its listener runs out of audio (its first
audio's time plus the audio handed out since), so a stream far ahead of real time (a whole request pushed at once)
yields to those that are not. Before its first audio a stream's deadline is :data:`FIRST_AUDIO_GRACE_S` after its
first step became ready: a new stream's first audio comes next, except before the audio of streams that would
otherwise run out within that time (a gap in audio already playing is worse than a little more time to the first;
without the grace, many streams arriving at once, such as a burst of requests, would take every worker for their
first steps while the streams already playing ran dry). Audio that waits
unread in a stream's buffer is lead as well: its listener cannot run out before it has read it, so a stream whose
client is slow to read, or reads nothing, is at least that far from its deadline and yields to the clients that
read (otherwise a client that pushes a whole utterance and reads nothing would be served like a real-time one
until its buffer fills, at the real-time clients' cost).

How many rows a call stacks follows the **measured** time of calls of each size: on a GPU a call of 64 rows costs
little more than one of 1, so it stacks; on a CPU a call's time grows about linearly with its rows and workers
side by side do better. A size not measured yet is assumed to cost what the largest smaller measured size costs,
so it is tried once; a larger size is taken only for a clear gain (:data:`STACK_GAIN`), because every row of a
call waits for all of it and the measurements of a shared CPU are noisy. The measurements of sizes above 1 are
forgotten every :data:`RELEARN_CALLS` calls.
"""

from __future__ import annotations

import math

__all__ = ["BatchPolicy", "deadline", "FIRST_AUDIO_GRACE_S", "STACK_GAIN", "RELEARN_CALLS", "COST_WEIGHT"]

COST_WEIGHT = 0.2  # of a new measurement in the running average of a call size's time
FIRST_AUDIO_GRACE_S = 0.1  # a new stream's first steps yield to streams that run out of audio sooner than this (s)
RELEARN_CALLS = 4096
STACK_GAIN = 0.75  # a larger call is chosen only if it clears the ready streams in under this share of the time


def deadline(
    first_audio: float | None, audio_seconds: float, ready_since: float | None, unread_s: float, now: float
) -> float:
    """When a stream's listener runs out of audio at the earliest (monotonic s; before its first audio, when it is
    due: FIRST_AUDIO_GRACE_S after its first step became ready); see the module docstring.

    Args:
        first_audio: when the stream's first audio was handed out (monotonic s), or None before it.
        audio_seconds: the audio handed out since (s).
        ready_since: when its first step became ready (monotonic s).
        unread_s: the audio waiting in its buffer that its reader has not taken (s).
        now: the time of the comparison (monotonic s).
    """
    if first_audio is None:
        return (ready_since or 0.0) + FIRST_AUDIO_GRACE_S
    return max(first_audio + audio_seconds, now + unread_s)


class BatchPolicy:
    """The measured cost of calls of each size (in steps), and the call size that clears ready streams soonest.

    Args:
        workers: calls that can run at once.
        max_batch: the most steps one call runs.

    Not thread-safe: the pool calls it under its lock.
    """

    def __init__(self, workers: int, max_batch: int) -> None:
        self.workers = workers
        self.max_batch = max_batch
        self.costs: dict[int, float] = {}  # seconds of a call, by its steps (rows x steps each), averaged
        self._calls = 0

    def rows(self, ready: int, busy: int = 0) -> int:
        """How many of ``ready`` streams one call takes while ``busy`` workers are in a call: the size that clears
        them soonest on the idle workers, by the measured time of calls of each size."""
        limit = min(ready, self.max_batch)
        if limit <= 1:
            return limit
        idle = max(1, self.workers - busy)
        sizes = sorted({*(1 << k for k in range(limit.bit_length()) if 1 << k <= limit), limit})
        best, best_time, known = 1, math.inf, 1.0  # before any measurement: every size costs one unit
        for size in sizes:
            known = self.costs.get(size, known)
            clear = math.ceil(ready / (size * idle)) * known
            if clear < STACK_GAIN * best_time or size == 1:  # stack only for a clear gain: rows wait for the call
                best, best_time = size, clear
        return best

    def learn(self, steps: int, seconds: float) -> None:
        """Fold a call of ``steps`` steps that took ``seconds`` into the cost of its size."""
        self._calls += 1
        if self._calls % RELEARN_CALLS == 0:
            self.costs = {k: v for k, v in self.costs.items() if k == 1}
        old = self.costs.get(steps)
        self.costs[steps] = seconds if old is None else old + COST_WEIGHT * (seconds - old)
