"""The server's Prometheus metrics, in a registry of its own (two apps in one process do not clash)."""

from __future__ import annotations

from collections.abc import Callable

import prometheus_client as prom

from ..stream.pool import BatchRecord

__all__ = ["Metrics", "OUTCOMES"]

OUTCOMES = ("completed", "cancelled", "failed", "refused")  # how a stream ended, for snac_streams_total


class Metrics:
    """The metrics of one app; ``active`` (the pool's count of open streams) is read at each scrape."""

    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.streams_active = prom.Gauge(
            "snac_streams_active", "Streams holding a place in max_streams (open connections)", registry=r
        )
        self.streams = prom.Counter("snac_streams", "Streams by outcome", ["outcome"], registry=r)
        for outcome in OUTCOMES:
            self.streams.labels(outcome)
        self.batch_rows = prom.Histogram(
            "snac_batch_rows", "Streams per batched step", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r
        )
        self.step_seconds = prom.Histogram(
            "snac_step_seconds",
            "Wall time of a batched step",
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
            registry=r,
        )
        self.queue_seconds = prom.Histogram(
            "snac_queue_seconds",
            "Time a ready step waited for its call",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=r,
        )
        self.decoded_audio_seconds = prom.Counter(
            "snac_decoded_audio_seconds", "Seconds of audio decoded (handed to the streams' buffers)", registry=r
        )
        self.audio_seconds = prom.Counter("snac_audio_seconds", "Seconds of audio sent to clients", registry=r)
        self.errors = prom.Counter("snac_errors", "Errors by kind", ["kind"], registry=r)
        self.llm_skipped = prom.Counter(
            "snac_llm_skipped", "LLM output that was not audio: ids, or characters of text", ["kind"], registry=r
        )
        for kind in ("ids", "text"):
            self.llm_skipped.labels(kind)
        self.requests = prom.Counter(
            "snac_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )

    def track_active(self, count: Callable[[], int]) -> None:
        """Report ``count()`` (the pool's open streams) as ``snac_streams_active``: one number, one source."""
        self.streams_active.set_function(count)

    def on_batch(self, record: BatchRecord) -> None:
        """The pool's hook: one batched call."""
        self.batch_rows.observe(record.rows)
        self.step_seconds.observe(record.seconds)
        for q in record.queue_seconds:
            self.queue_seconds.observe(q)
        self.decoded_audio_seconds.inc(record.audio_seconds)
        if record.failed:
            self.errors.labels("step").inc(record.failed)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST
