"""What the routers share: the codec, its stream pool, the metrics, admission (streams and encodes) and draining."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import PoolFullError
from ..stream.pool import AsyncPooledStream, StreamPool
from .metrics import Metrics
from .protocol import StreamQuery
from .settings import ServeSettings

if TYPE_CHECKING:
    from ..codec import SnacOnnx

__all__ = ["Service", "make_codec"]

logger = logging.getLogger(__name__)


def make_codec(settings: ServeSettings) -> SnacOnnx:
    """The codec ``settings`` name, with its stream graph loaded."""
    from ..codec import SnacOnnx

    providers = list(settings.providers) if settings.providers else None
    codec = SnacOnnx(
        settings.model,
        providers=providers,
        threads=settings.threads,
        verify=settings.verify,
        precision=settings.precision,
    )
    return codec.load("stream")


def _cpu_only(codec: SnacOnnx) -> bool:
    return codec.active_providers.get("stream") == ["CPUExecutionProvider"]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Service:
    """One app's shared state. ``start`` (at the app's startup) loads the model and makes the pool; ``stop``
    drains it."""

    def __init__(self, settings: ServeSettings, codec: SnacOnnx | None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self._codec = codec
        self._pool: StreamPool | None = None
        self.draining = False
        self._encodes = 0  # encode requests admitted (reading, waiting or running)
        self.encode_lock = asyncio.Lock()  # encoding shares the cores with the pool: one at a time

    # ------------------------------------------------------------------ life
    def start(self) -> None:
        s = self.settings
        if self._codec is None:
            self._codec = make_codec(s)
        codec = self._codec.load("stream")
        cpu = _cpu_only(codec)
        self._pool = StreamPool(
            codec,
            max_streams=s.max_streams,
            max_batch=s.max_batch,
            workers=s.workers if s.workers is not None else (_cores() if cpu else 1),
            batching=s.batching_choice if s.batching_choice is not None else not cpu,
            collect_ms=s.collect_ms,
            max_stream_seconds=s.max_stream_seconds or None,
            max_buffer_seconds=s.max_buffer_seconds,
            on_batch=self.metrics.on_batch,
        )
        self.metrics.track_active(lambda: self.pool.streams_active)
        logger.info("serving %s (%s), pool max_batch %d", codec.name, codec.model_id, self._pool.max_batch)

    def stop(self) -> None:
        self.draining = True
        if self._pool is not None:
            self._pool.close(timeout=self.settings.shutdown_grace_s)

    @property
    def ready(self) -> bool:
        """The model is loaded and the server takes new streams."""
        return self._pool is not None and not self.draining

    @property
    def codec(self) -> SnacOnnx:
        assert self._codec is not None, "the service has not started"
        return self._codec

    @property
    def pool(self) -> StreamPool:
        assert self._pool is not None, "the service has not started"
        return self._pool

    # ------------------------------------------------------------------ admission
    def open(self, query: StreamQuery) -> AsyncPooledStream:
        """A new stream of the pool, holding its place in ``max_streams`` until it is cancelled (the connection's
        end).

        Raises:
            PoolFullError: full or draining (counted as refused).
            InvalidArgumentError: a bad preset, layout or seed (the stream's own checks).
        """
        if not self.ready:
            self.metrics.streams.labels("refused").inc()
            raise PoolFullError("the server is shutting down; it takes no new streams")
        try:
            layout = query.layout or "interleaved"
            return self.pool.open_async(
                preset=query.preset, layout=layout, noise=query.noise, seed=query.seed, hold=True
            )
        except PoolFullError:
            self.metrics.streams.labels("refused").inc()
            raise

    def closed(self, outcome: str) -> None:
        """Count a stream's end by its outcome (completed, cancelled, failed)."""
        self.metrics.streams.labels(outcome).inc()

    @contextlib.contextmanager
    def encode_slot(self) -> Iterator[None]:
        """Admit an encode request (``max_encodes`` at once) before its body is read.

        Raises:
            PoolFullError: as many encodes are admitted already, or the server is draining.
        """
        if not self.ready:
            raise PoolFullError("the server is shutting down; it takes no new requests")
        if self._encodes >= self.settings.max_encodes:
            raise PoolFullError(f"the server is encoding its maximum of {self.settings.max_encodes} requests")
        self._encodes += 1
        try:
            yield
        finally:
            self._encodes -= 1

    # ------------------------------------------------------------------ what clients are told
    def start_message(self, query: StreamQuery, stream: AsyncPooledStream) -> dict[str, Any]:
        """The WebSocket's first message."""
        decoder = stream.decoder
        return {
            "type": "start",
            "sample_rate": self.codec.sample_rate,
            "format": query.format,
            "channels": 1,
            "first_audio_frames": decoder.first_audio_frames,
            "seed": decoder.seed,
        }

    def info(self) -> dict[str, Any]:
        """``GET /v1/info``."""
        codec, pool = self.codec, self.pool
        config = codec.config
        settings = self.settings.model_dump(
            exclude={"model", "providers", "host", "port", "address", "api_key", "llm_api_key", "llm"}
        )
        return {
            "model": codec.name,
            "model_id": codec.model_id,
            "precision": codec.precision,
            "random_init": codec.manifest.random_init,
            "sample_rate": codec.sample_rate,
            "vq_strides": list(config.vq_strides),
            "codebook_size": config.codebook_size,
            "samples_per_frame": codec.samples_per_frame,
            "max_streams": pool.max_streams,
            "max_batch": pool.max_batch,
            "workers": pool.workers,
            "settings": settings,
        }
