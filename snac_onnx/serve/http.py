"""The HTTP endpoints: ``POST /v1/decode`` (a whole request), ``POST /v1/decode/stream`` (NDJSON lines in, raw PCM
out as it becomes final) and ``POST /v1/encode`` (an audio file to codes).

Every refusal before the first audio byte is a 4xx or 503 with ``{"error": "<one line>"}``, and admission comes
before any work: the query is checked, a body announced over ``max_body_bytes`` is refused (413), and a full
pool or ``max_encodes`` admitted encodes are refused (503 with ``Retry-After``), all before the body is read;
bodies are then read as they arrive, against the limit. Once audio has started, a failure can only cut the
response short: the connection is dropped, so the client sees an incomplete body, never wrong audio.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from ..errors import DecodeFailedError, InvalidArgumentError, PoolFullError, SnacOnnxError
from ..heap import trim_heap
from ..layouts import codes_to_tokens, resolve_layout
from ..stream.pool import AsyncPooledStream
from .connection import abort
from .protocol import (
    AUDIO_FORMATS,
    EndMessage,
    StreamQuery,
    TooBigError,
    message_data,
    one_line,
    parse_json,
    parse_message,
    parse_query,
    pcm_bytes,
    pcm_headers,
    wav_bytes,
)
from .service import Service

__all__ = ["router", "refusal", "read_body", "check_declared"]

logger = logging.getLogger(__name__)
router = APIRouter()


def refusal(service: Service, endpoint: str, status: int, message: str, **headers: str) -> JSONResponse:
    """A refusal: ``{"error": message}`` with ``status`` (counted; a client's mistake is one WARNING line)."""
    service.metrics.requests.labels(endpoint, str(status)).inc()
    if status < 500 or status == 503:
        logger.warning("%s refused (%d): %s", endpoint, status, message)
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _refused(service: Service, endpoint: str, error: Exception) -> JSONResponse:
    """The refusal of a known error: 413 over a limit, 503 when full, 500 for a failed decode (the server's
    fault: onnxruntime failed on checked input), 400 otherwise."""
    if isinstance(error, DecodeFailedError):
        logger.error("a decode failed: %s", error)
        service.metrics.errors.labels("stream").inc()
        return refusal(service, endpoint, 500, str(error))
    if isinstance(error, TooBigError):
        return refusal(service, endpoint, 413, str(error))
    if isinstance(error, PoolFullError):
        return refusal(service, endpoint, 503, str(error), **{"Retry-After": "1"})
    return refusal(service, endpoint, 400, str(error))


def check_declared(request: Request, limit: int) -> None:
    """A body announced (Content-Length) over ``limit`` is refused before it is read (TooBigError)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooBigError(f"the body is {declared} bytes; this server takes at most {limit}")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read as it arrives against ``limit`` (into one buffer: no second copy)."""
    body = bytearray()
    async for part in request.stream():
        if len(body) + len(part) > limit:
            raise TooBigError(f"the body is over this server's limit of {limit} bytes")
        body += part
    return bytes(body)


async def _lines(request: Request, line_limit: int, body_limit: int) -> AsyncIterator[bytes]:
    """The body's non-empty lines as they arrive, each checked against ``line_limit``."""
    buffer, size = b"", 0
    async for part in request.stream():
        size += len(part)
        if size > body_limit:
            raise TooBigError(f"the body is over this server's limit of {body_limit} bytes")
        buffer += part
        *complete, buffer = buffer.split(b"\n")
        for line in [*complete, buffer]:
            if len(line) > line_limit:
                raise TooBigError(f"a line is over this server's limit of {line_limit} bytes")
        for line in complete:
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


# ---------------------------------------------------------------------- POST /v1/decode
@router.post("/v1/decode")
async def decode(request: Request) -> Response:
    """One JSON body of one message's field (``ids``, ``text``, ``tokens`` or ``codes``; one message, so at most
    ``max_message_bytes``) to a WAV file (or raw PCM with ``format``); the same query as the WebSocket."""
    service: Service = request.app.state.service
    endpoint = "decode"
    settings = service.settings
    try:
        query = parse_query(request.query_params, ("wav", *AUDIO_FORMATS))
        check_declared(request, settings.max_message_bytes)
        stream = service.open(query)
    except SnacOnnxError as error:
        return _refused(service, endpoint, error)
    outcome = "failed"
    try:
        obj = parse_json(await read_body(request, settings.max_message_bytes))
        if isinstance(obj, dict):
            obj.pop("end", None)  # a whole request ends by itself
        message = parse_message(obj, query.kinds)
        if not isinstance(message, EndMessage):
            stream.push(message_data(message))
        stream.end()
        chunks = [chunk async for chunk in stream]
        outcome = "completed"
    except SnacOnnxError as error:
        return _refused(service, endpoint, error)
    finally:
        stream.cancel()
        service.closed(outcome)
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    rate = service.codec.sample_rate
    service.metrics.audio_seconds.inc(audio.size / rate)
    service.metrics.requests.labels(endpoint, "200").inc()
    if query.format == "wav":
        return Response(wav_bytes(audio, rate), media_type="audio/wav")
    return Response(
        pcm_bytes(audio, query.format), media_type="application/octet-stream", headers=pcm_headers(rate, query.format)
    )


# ---------------------------------------------------------------------- POST /v1/decode/stream
class AudioStreamResponse(StreamingResponse):
    """Raw PCM sent as it becomes final: ``first`` (already read, so that a refusal could still be a 4xx), then the
    rest of ``stream``. A client that reads nothing for ``read_timeout`` s, or a failure after the start, cuts the
    response short (the connection is dropped)."""

    def __init__(
        self,
        service: Service,
        query: StreamQuery,
        stream: AsyncPooledStream,
        first: np.ndarray,
        finish: Callable[[], Awaitable[str | None]],
    ) -> None:
        super().__init__(
            iter(()),
            media_type="application/octet-stream",
            headers=pcm_headers(service.codec.sample_rate, query.format),
        )
        self.service, self.query, self.stream, self.first, self.finish = service, query, stream, first, finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service, read_timeout = self.service, self.service.settings.read_timeout_s
        rate = service.codec.sample_rate
        outcome, cut = "failed", None

        async def deliver(message: dict[str, Any]) -> None:
            await asyncio.wait_for(send(message), read_timeout)

        try:
            await deliver({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            chunk: np.ndarray | None = self.first
            while chunk is not None:
                await deliver(
                    {"type": "http.response.body", "body": pcm_bytes(chunk, self.query.format), "more_body": True}
                )
                service.metrics.audio_seconds.inc(chunk.size / rate)
                chunk = await self.stream.read()
            cut = await self.finish()
            if cut is None:
                await deliver({"type": "http.response.body", "body": b"", "more_body": False})
                outcome = "completed"
        except asyncio.TimeoutError:
            cut = f"the client read no audio for {read_timeout} s (read timeout)"
            service.metrics.errors.labels("read_timeout").inc()
        except SnacOnnxError as error:
            cut = str(error)
        except OSError:  # the client went away
            outcome = "cancelled"
        finally:
            self.stream.cancel()
            service.closed(outcome)
        if cut is not None:
            logger.warning("a streamed response was cut short: %s", cut)
            await abort(scope)


@router.post("/v1/decode/stream")
async def decode_stream(request: Request) -> Response:
    """NDJSON lines of the WebSocket's messages, read as they arrive; raw PCM back as it becomes final."""
    service: Service = request.app.state.service
    endpoint = "decode_stream"
    settings = service.settings
    try:
        query = parse_query(request.query_params, AUDIO_FORMATS)
        check_declared(request, settings.max_body_bytes)
        stream = service.open(query)
    except SnacOnnxError as error:
        return _refused(service, endpoint, error)
    failure: list[SnacOnnxError] = []

    async def feed() -> None:
        lines = _lines(request, settings.max_message_bytes, settings.max_body_bytes).__aiter__()
        idle = settings.idle_timeout_s or None
        try:
            while not stream.input_ended:
                try:
                    line = await asyncio.wait_for(lines.__anext__(), idle)
                except StopAsyncIteration:
                    break
                except asyncio.TimeoutError:
                    raise InvalidArgumentError(f"no line for {idle} s (idle timeout)") from None
                message = parse_message(line, query.kinds)
                if isinstance(message, EndMessage):
                    break
                stream.push(message_data(message))
            stream.end()
        except SnacOnnxError as error:  # reported as a 4xx before the audio, or by cutting the response short
            failure.append(error)
            stream.cancel()
        except OSError:  # the client went away
            stream.cancel()

    feeder = asyncio.create_task(feed())

    async def finish() -> str | None:
        """After the last chunk: None when the whole input was decoded, else why the response is cut short."""
        await feeder
        return str(failure[0]) if failure else None

    first: np.ndarray | None = None
    try:
        first = await stream.read()
    except SnacOnnxError as error:  # the stream failed (a limit, a failed step) before its first audio
        failure.insert(0, error)
    if first is None:  # no audio: the stream ended, failed, or the input was refused before any audio
        await feeder
        stream.cancel()
        if failure:
            service.closed("failed")
            return _refused(service, endpoint, failure[0])
        service.closed("completed")
        service.metrics.requests.labels(endpoint, "200").inc()
        return Response(
            b"", media_type="application/octet-stream", headers=pcm_headers(service.codec.sample_rate, query.format)
        )
    service.metrics.requests.labels(endpoint, "200").inc()
    return AudioStreamResponse(service, query, stream, first, finish)


# ---------------------------------------------------------------------- POST /v1/encode
class EncodeQuery(BaseModel):
    """``POST /v1/encode``'s options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resample: bool = Field(False, description="resample audio of another rate to the model's (soxr)")
    mix: bool = Field(False, description="average several channels to mono")
    layout: str | None = Field(None, description="return flat tokens in this layout instead of codes")


async def _encode_upload(request: Request, service: Service, query: EncodeQuery) -> dict[str, Any]:
    """Read the upload against the limit and encode it (one encode at a time); its JSON answer."""
    layout = resolve_layout(query.layout) if query.layout is not None else None
    body = await read_body(request, service.settings.max_body_bytes)
    if not body:
        raise InvalidArgumentError("the body is empty; send an audio file (WAV, FLAC, OGG...)")
    codec = service.codec

    def run() -> dict[str, Any]:
        from ..files.audio import load_audio

        pcm = load_audio(body, codec.sample_rate, mix=query.mix, resample=query.resample)
        codes = codec.encode(pcm, sample_rate=codec.sample_rate)
        out: dict[str, Any] = {
            "sample_rate": codec.sample_rate,
            "samples": int(pcm.size),
            "frames": int(codes[0].size // codec.config.codes_per_frame[0]),
        }
        if layout is None:
            out["codes"] = [c.tolist() for c in codes]
        else:
            out["layout"] = query.layout
            out["tokens"] = codes_to_tokens(codes, codec.vq_strides, layout).tolist()
        return out

    async with service.encode_lock:
        return await run_in_threadpool(run)


@router.post("/v1/encode")
async def encode(request: Request) -> Response:
    """An audio file (WAV, FLAC, OGG... as the body) to codes, or tokens with ``layout``, as JSON. Admitted before its
    body is read (``max_encodes``); after it, whatever the outcome, the C heap's free pages (megabytes of body and
    audio) go back to the system, which glibc would otherwise keep in the process."""
    service: Service = request.app.state.service
    endpoint = "encode"
    response: Response
    try:
        try:
            query = EncodeQuery.model_validate(dict(request.query_params))
        except ValidationError as error:
            raise InvalidArgumentError(f"query: {one_line(error)}") from None
        check_declared(request, service.settings.max_body_bytes)
        with service.encode_slot():
            result = await _encode_upload(request, service, query)
    except SnacOnnxError as error:
        response = _refused(service, endpoint, error)
    else:
        service.metrics.requests.labels(endpoint, "200").inc()
        response = JSONResponse(result)
    await run_in_threadpool(trim_heap)  # the upload's frame and any error are gone by now: its pages can go back
    return response
