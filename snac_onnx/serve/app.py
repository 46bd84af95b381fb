"""``snac-onnx serve``: an ASGI app (FastAPI) that decodes many streams at once through one :class:`StreamPool`.

One model per process. Endpoints (the protocol is documented in the README):

* ``WS /v1/stream``: streaming decode. Query: ``preset`` (a TTS model's ids or ``<custom_token_N>``
  text, e.g. ``orpheus``) or ``layout`` (flat tokens or codes; default ``interleaved``), ``format``
  (``s16le`` default, or ``f32le``), ``noise`` and ``seed``. The server sends a JSON ``start``
  message, then binary frames of audio as soon as they are final, then a JSON ``end`` message,
  and closes with 1000. The client sends JSON messages: ``{"ids": [...]}``, ``{"text": "..."}``,
  ``{"tokens": [...]}``, ``{"codes": [[...], ...]}`` and ``{"end": true}``.
* ``POST /v1/decode``: a whole request (one JSON body of the same messages' fields) to WAV, or raw
  PCM (``format``); ``POST /v1/decode/stream``: the messages as NDJSON lines, read as they arrive,
  answered with raw PCM as it becomes final (for clients without WebSockets).
* ``POST /v1/encode``: an audio file (WAV, FLAC, OGG... as the body) to codes (JSON), resampled and
  mixed down when asked (``resample``, ``mix``), as tokens with ``layout``.
* ``GET /healthz`` (the process is up), ``GET /readyz`` (the model is loaded and the server not
  draining), ``GET /metrics`` (Prometheus), ``GET /v1/info``.

Limits (:class:`ServeSettings`): open streams (beyond: HTTP 503, WebSocket close 1013), message and
body sizes (413, close 1009), an idle timeout (close 1008). A malformed message gets an error
message and its stream is closed (1007); no other stream is touched. A client that disconnects
frees its stream at once. At shutdown the server stops taking streams, gives the live ones
``shutdown_grace_s`` to finish, and closes the rest with 1012.

Needs the ``[serve]`` extra (FastAPI, uvicorn, prometheus-client).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
import wave
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import (
    DecodeFailedError,
    InvalidArgumentError,
    InvalidCodesError,
    MissingDependencyError,
    PoolFullError,
    SnacOnnxError,
    StreamClosedError,
)
from ..files.audio import pcm16
from ..layouts import codes_to_tokens, resolve_layout
from ..model.hub import DEFAULT_MODEL
from ..stream.pool import AsyncPooledStream, BatchRecord, StreamPool

try:
    import prometheus_client as prom
    from fastapi import FastAPI, Request, WebSocket
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.types import Receive, Scope, Send
    from starlette.websockets import WebSocketDisconnect, WebSocketState
except ImportError as exc:  # pragma: no cover - depends on the install
    raise MissingDependencyError(
        "snac-onnx serve needs FastAPI, uvicorn and prometheus-client: pip install 'snac-onnx[serve]'"
    ) from exc

if TYPE_CHECKING:
    from ..codec import SnacOnnx

__all__ = ["ServeSettings", "create_app", "serve", "AUDIO_FORMATS", "CLOSE_CODES"]

logger = logging.getLogger(__name__)

AUDIO_FORMATS = ("s16le", "f32le")  # raw PCM of the streaming endpoints; /v1/decode also gives "wav"
CLOSE_CODES = {
    "done": 1000,
    "shutdown": 1012,
    "malformed": 1007,
    "policy": 1008,
    "too_big": 1009,
    "internal": 1011,
    "try_later": 1013,
}


@dataclass(frozen=True)
class ServeSettings:
    """What ``snac-onnx serve`` runs (one model per process).

    Attributes:
        model: a model folder, short name or hub repo (as :class:`SnacOnnx`).
        providers: onnxruntime provider names in order (None: CPU).
        threads: onnxruntime threads of each batched call (0: onnxruntime chooses). On a CPU a step is too small
            for threads to share well: one thread per call and a worker per core do better (the default).
        max_streams: streams open at once (WebSocket and HTTP together); beyond, a clear refusal.
        max_batch: steps per batched call (None: the pool's default from the memory budget).
        workers: batched calls at once (the pool's workers). None: one per CPU core on the CPU provider, one with
            any other provider (a GPU runs calls one after another; it gains from batching instead).
        batching: stack the steps of several streams in one call (None: on unless the stream graph runs on the
            CPU provider only, where it does not pay: a step's cost grows with its rows, bench/RESULTS_serve.md).
        collect_ms: the pool's collection window (ms).
        max_message_bytes: the largest WebSocket message or NDJSON line.
        max_body_bytes: the largest HTTP body (an upload to encode, a whole decode request).
        idle_timeout_s: a stream with no message for this long is closed (1008).
        max_stream_seconds: the longest stream, in seconds of audio (0: no bound).
        shutdown_grace_s: at shutdown, how long live streams get to finish.
        verify: check graph files' sha256 when loading.
    """

    model: str = DEFAULT_MODEL
    providers: tuple[str, ...] | None = None
    threads: int = 1
    max_streams: int = 64
    max_batch: int | None = None
    workers: int | None = None
    batching: bool | None = None
    collect_ms: float = 1.0
    max_message_bytes: int = 1 << 20
    max_body_bytes: int = 64 << 20
    idle_timeout_s: float = 30.0
    max_stream_seconds: float = 600.0
    shutdown_grace_s: float = 10.0
    verify: bool = True

    def __post_init__(self) -> None:
        for name in ("max_streams", "workers", "max_message_bytes", "max_body_bytes"):
            value = getattr(self, name)
            if name == "workers" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("idle_timeout_s", "max_stream_seconds", "shutdown_grace_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InvalidArgumentError(f"{name} must be a number of seconds >= 0, got {value!r}")


class _Metrics:
    """The server's Prometheus metrics, in a registry of its own (two apps in one process do not clash)."""

    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.streams_active = prom.Gauge("snac_streams_active", "Streams open now", registry=r)
        self.streams = prom.Counter(
            "snac_streams", "Streams by outcome (completed, cancelled, failed, refused)", ["outcome"], registry=r
        )
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
        self.audio_seconds = prom.Counter("snac_audio_seconds", "Seconds of audio sent", registry=r)
        self.errors = prom.Counter("snac_errors", "Errors by kind", ["kind"], registry=r)
        self.requests = prom.Counter(
            "snac_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )

    def on_batch(self, record: BatchRecord) -> None:
        self.batch_rows.observe(record.rows)
        self.step_seconds.observe(record.seconds)
        for q in record.queue_seconds:
            self.queue_seconds.observe(q)
        if record.failed:
            self.errors.labels("step").inc(record.failed)


@dataclass
class _Options:
    """A stream's options from the query string, checked."""

    preset: str | None
    layout: str
    format: str
    noise: bool
    seed: int | None
    kinds: tuple[str, ...] = field(default=())


def _options(
    preset: str | None, layout: str | None, fmt: str, noise: bool, seed: int | None, formats: Sequence[str]
) -> _Options:
    """What only the server checks (the format, preset or layout); the preset, layout and seed themselves are
    checked by the stream when it is opened (:meth:`_Service.open`)."""
    if fmt not in formats:
        raise InvalidArgumentError(f"format must be one of {list(formats)}, got {fmt!r}")
    if preset is not None and layout is not None:
        raise InvalidArgumentError(
            "give preset (for a TTS model's ids or text) or layout (for tokens or codes), not both"
        )
    kinds = ("ids", "text") if preset is not None else ("tokens", "codes")
    return _Options(preset, layout or "interleaved", fmt, noise, seed, kinds)


def _parse(obj: object, kinds: Sequence[str]) -> tuple[str, Any]:
    """``("end", None)`` or ``(kind, data)`` of one client message (a decoded JSON object); InvalidArgumentError for
    anything else. Values are checked for type here; ranges by the stream."""
    if not isinstance(obj, dict):
        raise InvalidArgumentError(f"a message is a JSON object, got {type(obj).__name__}")
    if obj.get("end") is True or obj.get("type") == "end":
        if len(obj) != 1:
            raise InvalidArgumentError("an end message has no other fields")
        return "end", None
    keys = [k for k in obj if k in ("ids", "text", "tokens", "codes")]
    if len(keys) != 1 or len(obj) != 1:
        raise InvalidArgumentError(
            f'a message has one field of {list(kinds)} (or is {{"end": true}}); got fields {sorted(obj)}'
        )
    kind = keys[0]
    if kind not in kinds:
        raise InvalidArgumentError(
            f"this stream takes {' or '.join(kinds)} ({'preset' if 'ids' in kinds else 'layout'} stream); got {kind!r}"
        )
    value = obj[kind]
    if kind == "text":
        if not isinstance(value, str):
            raise InvalidArgumentError("text must be a string")
        return kind, value
    if kind == "codes":
        if not isinstance(value, list) or not value or not all(_int_list(v) for v in value):
            raise InvalidArgumentError("codes must be a list of integer lists, one per codebook, coarse first")
        return kind, [np.asarray(v, np.int64) for v in value]
    if not _int_list(value):
        raise InvalidArgumentError(f"{kind} must be a list of integers")
    return kind, np.asarray(value, np.int64)


def _int_list(value: object) -> bool:
    return (
        isinstance(value, list)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and all(-(1 << 62) < v < (1 << 62) for v in value)
    )


def _pcm(audio: np.ndarray, fmt: str) -> bytes:
    if fmt == "f32le":
        return bytes(audio.astype("<f4").tobytes())
    return pcm16(audio)


def _wav(audio: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(_pcm(audio, "s16le"))
    return out.getvalue()


class _Service:
    """What the endpoints share: the codec, its pool, the metrics, and whether the server is draining."""

    def __init__(self, settings: ServeSettings, codec: SnacOnnx | None) -> None:
        self.settings = settings
        self.metrics = _Metrics()
        self.codec = codec
        self.pool: StreamPool | None = None
        self.draining = False
        self.encodes = asyncio.Semaphore(1)  # encoding shares the cores with the pool: one at a time

    def start(self) -> None:
        s = self.settings
        if self.codec is None:
            self.codec = make_codec(s)
        self.codec.load("stream")
        self.pool = StreamPool(
            self.codec,
            max_streams=s.max_streams,
            max_batch=s.max_batch,
            workers=s.workers if s.workers is not None else _default_workers(self.codec),
            batching=s.batching if s.batching is not None else not _cpu_only(self.codec),
            collect_ms=s.collect_ms,
            max_stream_seconds=s.max_stream_seconds or None,
            on_batch=self.metrics.on_batch,
        )
        logger.info("serving %s (%s), pool max_batch %d", self.codec.name, self.codec.model_id, self.pool.max_batch)

    def stop(self) -> None:
        self.draining = True
        if self.pool is not None:
            self.pool.close(timeout=self.settings.shutdown_grace_s)

    def open(self, options: _Options) -> AsyncPooledStream:
        """A new pool stream; PoolFullError (counted as refused), or InvalidArgumentError for a bad preset, layout
        or seed."""
        if self.draining or self.pool is None:
            self.metrics.streams.labels("refused").inc()
            raise PoolFullError("the server is shutting down; it takes no new streams")
        try:
            stream = self.pool.open_async(
                preset=options.preset, layout=options.layout, noise=options.noise, seed=options.seed
            )
        except PoolFullError:
            self.metrics.streams.labels("refused").inc()
            raise
        self.metrics.streams_active.inc()
        return stream

    def closed(self, outcome: str) -> None:
        self.metrics.streams_active.dec()
        self.metrics.streams.labels(outcome).inc()

    def start_message(self, options: _Options, stream: AsyncPooledStream) -> dict[str, Any]:
        assert self.codec is not None
        decoder = stream.decoder
        return {
            "type": "start",
            "sample_rate": self.codec.sample_rate,
            "format": options.format,
            "channels": 1,
            "first_audio_frames": decoder.first_audio_frames,
            "seed": decoder.seed,
        }


class _PushResponse(StreamingResponse):
    """A streaming response that never reads the request (Starlette's listens for a disconnect by reading
    it, which would eat the NDJSON body the endpoint is still reading)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(OSError):
            await self.stream_response(send)


def _cpu_only(codec: SnacOnnx) -> bool:
    return codec.active_providers.get("stream") == ["CPUExecutionProvider"]


def _default_workers(codec: SnacOnnx) -> int:
    """One worker per CPU core when the stream graph runs on the CPU provider only, else one."""
    import os

    if _cpu_only(codec):
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    return 1


def make_codec(settings: ServeSettings) -> SnacOnnx:
    """The codec ``settings`` name, with its stream graph loaded."""
    from ..codec import SnacOnnx

    providers = list(settings.providers) if settings.providers else None
    codec = SnacOnnx(settings.model, providers=providers, threads=settings.threads, verify=settings.verify)
    return codec.load("stream")


def create_app(settings: ServeSettings | None = None, *, codec: SnacOnnx | None = None) -> FastAPI:
    """The ASGI app. ``codec``: an already made codec to serve (settings' model, providers and threads are then
    not used); otherwise one is made from ``settings`` at startup."""
    settings = settings or ServeSettings()
    service = _Service(settings, codec)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)
        yield
        await run_in_threadpool(service.stop)

    app = FastAPI(title="snac-onnx", lifespan=lifespan)
    app.state.service = service

    def refuse(status: int, message: str, endpoint: str, **headers: str) -> JSONResponse:
        service.metrics.requests.labels(endpoint, str(status)).inc()
        return JSONResponse({"error": message}, status_code=status, headers=headers or None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if service.pool is None or service.draining:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return JSONResponse({"status": "ready", "streams_active": service.pool.streams_active})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(prom.generate_latest(service.metrics.registry), media_type=prom.CONTENT_TYPE_LATEST)

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        codec, pool = service.codec, service.pool
        assert codec is not None
        assert pool is not None
        config = codec.config
        return {
            "model": codec.name,
            "model_id": codec.model_id,
            "sample_rate": codec.sample_rate,
            "vq_strides": list(config.vq_strides),
            "codebook_size": config.codebook_size,
            "samples_per_frame": codec.samples_per_frame,
            "formats": list(AUDIO_FORMATS),
            "max_streams": pool.max_streams,
            "max_batch": pool.max_batch,
            "settings": {k: v for k, v in asdict(settings).items() if k not in ("model", "providers")},
        }

    # ---------------------------------------------------------------- WebSocket
    @app.websocket("/v1/stream")
    async def stream_ws(
        ws: WebSocket,
        preset: str | None = None,
        layout: str | None = None,
        format: str = "s16le",  # the protocol's name
        noise: bool = False,
        seed: int | None = None,
    ) -> None:
        await ws.accept()
        try:
            options = _options(preset, layout, format, noise, seed, AUDIO_FORMATS)
        except SnacOnnxError as error:
            await _close(ws, "policy", str(error))
            return
        try:
            stream = service.open(options)
        except PoolFullError as error:
            await _close(ws, "try_later", str(error))
            return
        except SnacOnnxError as error:
            await _close(ws, "policy", str(error))
            return
        outcome = "cancelled"
        sender = asyncio.create_task(_send_audio(ws, stream, options.format, service))
        try:
            await ws.send_json(service.start_message(options, stream))
            outcome = await _receive(ws, stream, options, settings, sender)
            if outcome == "ended":
                outcome = await sender
        except (WebSocketDisconnect, RuntimeError):  # the client went away (RuntimeError: sending on a closed socket)
            outcome = "cancelled"
        finally:
            if not sender.done():
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
            stream.cancel()
            service.closed(outcome)

    # ---------------------------------------------------------------- HTTP
    @app.post("/v1/decode")
    async def decode(
        request: Request,
        preset: str | None = None,
        layout: str | None = None,
        format: str = "wav",
        noise: bool = False,
        seed: int | None = None,
    ) -> Response:
        endpoint = "decode"
        try:
            options = _options(preset, layout, format, noise, seed, ("wav", *AUDIO_FORMATS))
            body = await _read_body(request, settings.max_body_bytes)
            obj = json.loads(body)
            if isinstance(obj, dict):
                obj.pop("end", None)
            _, data = _parse(obj, options.kinds)
        except _TooBig as error:
            return refuse(413, str(error), endpoint)
        except (SnacOnnxError, ValueError) as error:
            return refuse(400, str(error), endpoint)
        try:
            stream = service.open(options)
        except PoolFullError as error:
            return refuse(503, str(error), endpoint, **{"Retry-After": "1"})
        except SnacOnnxError as error:
            return refuse(400, str(error), endpoint)
        outcome = "failed"
        try:
            await stream.push(data)
            await stream.end()
            chunks = [chunk async for chunk in stream]
            outcome = "completed"
        except DecodeFailedError as error:  # onnxruntime failed on checked input: the server's fault
            service.metrics.errors.labels("stream").inc()
            return refuse(500, str(error), endpoint)
        except SnacOnnxError as error:
            return refuse(400, str(error), endpoint)
        finally:
            stream.cancel()
            service.closed(outcome)
        assert service.codec is not None
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        service.metrics.audio_seconds.inc(audio.size / service.codec.sample_rate)
        service.metrics.requests.labels(endpoint, "200").inc()
        rate = service.codec.sample_rate
        if options.format == "wav":
            return Response(_wav(audio, rate), media_type="audio/wav")
        return Response(
            _pcm(audio, options.format),
            media_type="application/octet-stream",
            headers=_pcm_headers(rate, options.format),
        )

    @app.post("/v1/decode/stream")
    async def decode_stream(
        request: Request,
        preset: str | None = None,
        layout: str | None = None,
        format: str = "s16le",
        noise: bool = False,
        seed: int | None = None,
    ) -> Response:
        endpoint = "decode_stream"
        try:
            options = _options(preset, layout, format, noise, seed, AUDIO_FORMATS)
        except SnacOnnxError as error:
            return refuse(400, str(error), endpoint)
        lines = _lines(request, settings.max_message_bytes, settings.max_body_bytes)
        try:
            first = await anext(lines, None)
            message: tuple[str, Any] = _parse(json.loads(first), options.kinds) if first is not None else ("end", None)
        except _TooBig as error:
            return refuse(413, str(error), endpoint)
        except (SnacOnnxError, ValueError) as error:
            return refuse(400, str(error), endpoint)
        try:
            stream = service.open(options)
        except PoolFullError as error:
            return refuse(503, str(error), endpoint, **{"Retry-After": "1"})
        except SnacOnnxError as error:
            return refuse(400, str(error), endpoint)
        failure: list[BaseException] = []

        async def feed() -> None:
            kind, data = message
            try:
                while kind != "end":
                    await stream.push(data)
                    line = await anext(lines, None)
                    if line is None:
                        break
                    kind, data = _parse(json.loads(line), options.kinds)
                await stream.end()
            except Exception as error:  # noqa: BLE001  # reported by ending the response short, never lost
                failure.append(error)
                stream.cancel()

        async def body() -> AsyncIterator[bytes]:
            feeder = asyncio.create_task(feed())
            outcome = "failed"
            try:
                async for chunk in stream:
                    service.metrics.audio_seconds.inc(chunk.size / rate)
                    yield _pcm(chunk, options.format)
                await feeder
                if failure:  # the response ends without its last chunk: the client sees it cut short
                    service.metrics.errors.labels("message").inc()
                    raise InvalidArgumentError(
                        f"a line of the body failed after the audio had started ({failure[0]}); the response was "
                        "cut short"
                    ) from failure[0]
                outcome = "completed"
            finally:
                feeder.cancel()
                stream.cancel()
                service.closed(outcome)

        assert service.codec is not None
        rate = service.codec.sample_rate
        service.metrics.requests.labels(endpoint, "200").inc()
        return _PushResponse(body(), media_type="application/octet-stream", headers=_pcm_headers(rate, options.format))

    @app.post("/v1/encode")
    async def encode(
        request: Request, resample: bool = False, mix: bool = False, layout: str | None = None
    ) -> Response:
        endpoint = "encode"
        if service.draining:
            return refuse(503, "the server is shutting down", endpoint, **{"Retry-After": "1"})
        try:
            chosen = resolve_layout(layout) if layout is not None else None  # refused before the body is read
            body = await _read_body(request, settings.max_body_bytes)
            if not body:
                raise InvalidArgumentError("the body is empty; send an audio file (WAV, FLAC, OGG...)")
        except _TooBig as error:
            return refuse(413, str(error), endpoint)
        except SnacOnnxError as error:
            return refuse(400, str(error), endpoint)
        codec = service.codec
        assert codec is not None

        def run() -> dict[str, Any]:
            from ..files.audio import load_audio

            pcm = load_audio(body, codec.sample_rate, mix=mix, resample=resample)
            codes = codec.encode(pcm, sample_rate=codec.sample_rate)
            out: dict[str, Any] = {
                "sample_rate": codec.sample_rate,
                "samples": int(pcm.size),
                "frames": int(codes[0].size // codec.config.codes_per_frame[0]),
            }
            if chosen is None:
                out["codes"] = [c.tolist() for c in codes]
            else:
                out["layout"] = layout
                out["tokens"] = codes_to_tokens(codes, codec.vq_strides, chosen).tolist()
            return out

        try:
            async with service.encodes:
                result = await run_in_threadpool(run)
        except SnacOnnxError as error:
            return refuse(400, str(error), endpoint)
        service.metrics.requests.labels(endpoint, "200").inc()
        return JSONResponse(result)

    return app


# -------------------------------------------------------------------- helpers of the endpoints
class _TooBig(InvalidArgumentError):
    """A body or message over its limit (HTTP 413, WebSocket 1009)."""


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooBig(f"the body is {declared} bytes; this server takes at most {limit}")
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise _TooBig(f"the body is over this server's limit of {limit} bytes")
        parts.append(part)
    return b"".join(parts)


async def _lines(request: Request, line_limit: int, body_limit: int) -> AsyncIterator[str]:
    """The body's non-empty lines as they arrive."""
    buffer, size = b"", 0
    async for part in request.stream():
        size += len(part)
        if size > body_limit:
            raise _TooBig(f"the body is over this server's limit of {body_limit} bytes")
        buffer += part
        *complete, buffer = buffer.split(b"\n")
        if len(buffer) > line_limit:
            raise _TooBig(f"a line is over this server's limit of {line_limit} bytes")
        for line in complete:
            if line.strip():
                yield line.decode("utf-8")
    if buffer.strip():
        yield buffer.decode("utf-8")


def _pcm_headers(rate: int, fmt: str) -> dict[str, str]:
    return {"X-Sample-Rate": str(rate), "X-Audio-Format": fmt, "X-Channels": "1"}


async def _close(ws: WebSocket, why: str, message: str) -> None:
    """Send an error message and close with the code of ``why`` (reason cut to the protocol's 123 bytes)."""
    with contextlib.suppress(Exception):
        if why != "done":
            await ws.send_json({"type": "error", "message": message})
        reason = message.encode()[:123].decode(errors="ignore")
        await ws.close(CLOSE_CODES[why], reason)


async def _receive(
    ws: WebSocket, stream: AsyncPooledStream, options: _Options, settings: ServeSettings, sender: asyncio.Task[str]
) -> str:
    """Read the client's messages into the stream until its end message: ``"ended"``; or an outcome after a close."""
    while True:
        receive = asyncio.ensure_future(ws.receive())
        done, _ = await asyncio.wait(
            {receive, sender}, timeout=settings.idle_timeout_s or None, return_when=asyncio.FIRST_COMPLETED
        )
        if receive not in done:
            receive.cancel()
            if sender in done:  # the stream failed or the pool closed: the sender has closed the socket
                return sender.result()
            await _close(ws, "policy", f"no message for {settings.idle_timeout_s} s (idle timeout)")
            return "cancelled"
        message = receive.result()
        if message["type"] == "websocket.disconnect":
            return "cancelled"
        text = message.get("text")
        try:
            if text is None:
                raise InvalidArgumentError("messages are JSON text; this server takes no binary messages")
            if len(text) > settings.max_message_bytes:
                raise _TooBig(f"a message is over this server's limit of {settings.max_message_bytes} bytes")
            kind, data = _parse(json.loads(text), options.kinds)
            if kind == "end":
                await stream.end()
                return "ended"
            await stream.push(data)
        except _TooBig as error:
            return await _refuse_message(ws, sender, "too_big", error)
        except (SnacOnnxError, ValueError) as error:  # json's JSONDecodeError is a ValueError
            # bad input leaves the stream open; a limit (max_stream_seconds) has closed it
            return await _refuse_message(ws, sender, "policy" if stream.closed else "malformed", error)


async def _refuse_message(ws: WebSocket, sender: asyncio.Task[str], why: str, error: Exception) -> str:
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await sender
    app_service: _Service = ws.app.state.service
    app_service.metrics.errors.labels("message").inc()
    await _close(ws, why, str(error))
    return "failed"


async def _send_audio(ws: WebSocket, stream: AsyncPooledStream, fmt: str, service: _Service) -> str:
    """Send the stream's audio as binary frames, then the end message, and close; returns the outcome."""
    assert service.codec is not None
    rate, samples = service.codec.sample_rate, 0
    try:
        async for chunk in stream:
            await ws.send_bytes(_pcm(chunk, fmt))
            samples += chunk.size
            service.metrics.audio_seconds.inc(chunk.size / rate)
    except StreamClosedError as error:  # the pool closed at shutdown
        await _close(ws, "shutdown", str(error))
        return "cancelled"
    except SnacOnnxError as error:
        service.metrics.errors.labels("stream").inc()
        await _close(
            ws, "internal" if not isinstance(error, (InvalidCodesError, InvalidArgumentError)) else "policy", str(error)
        )
        return "failed"
    if ws.application_state == WebSocketState.CONNECTED:
        await ws.send_json({"type": "end", "samples": samples, "seconds": samples / rate})
        await ws.close(CLOSE_CODES["done"])
    return "completed"


def serve(settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the app on uvicorn until interrupted. The model is loaded first, so that a model that cannot be loaded
    is a :class:`SnacOnnxError` here, not a failed startup inside uvicorn.

    SIGTERM or SIGINT drains: no new streams (WebSocket 1013, HTTP 503, ``/readyz`` 503) while the live ones get
    ``shutdown_grace_s`` to finish; then uvicorn shuts down (closing what is left with 1012) and re-raises the
    signal. A second signal stops at once.
    """
    import threading

    import uvicorn

    app = create_app(settings, codec=make_codec(settings))
    service: _Service = app.state.service
    grace = settings.shutdown_grace_s

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if service.draining or self.should_exit:  # a second signal: uvicorn's own handling, now
                super().handle_exit(sig, frame)
                return
            getattr(self, "_captured_signals", []).append(sig)  # uvicorn re-raises it at the end
            service.draining = True
            logger.warning("draining: no new streams; the live ones have %.0f s to finish", grace)
            threading.Thread(target=self._drain, name="snac_onnx-drain", daemon=True).start()

        def _drain(self) -> None:
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and service.pool is not None and service.pool.streams_active:
                time.sleep(0.05)
            self.should_exit = True

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        ws_max_size=settings.max_message_bytes + 1024,
        timeout_graceful_shutdown=max(1, int(grace)),
    )
    DrainingServer(config).run()
