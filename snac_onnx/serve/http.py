"""The HTTP endpoints: ``POST /v1/decode`` (a whole request), ``POST /v1/decode/stream`` (NDJSON lines in, raw PCM
out as it becomes final) and ``POST /v1/encode`` (an audio file to codes).

Every refusal before the first audio byte is a 4xx or 503 with ``{"error": "<one line>"}``, and admission comes
before any work: the query is checked, a body announced over its limit is refused (413), and a full pool or
``max_encodes`` admitted encodes are refused (503 with ``Retry-After``), all before the body is read; bodies are
then read as they arrive, against the limit. The audio is sent as it is decoded (:mod:`~snac_onnx.serve.outgoing`):
``/v1/decode`` with its exact length, so a client that reads nothing holds no more than the pool's buffer; a
stream keeps its place in ``max_streams`` until its response is over. Once audio has started, a failure can only
cut the response short (the connection is dropped): the client sees an incomplete body, never wrong audio.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from ..errors import DecodeFailedError, InvalidArgumentError, PoolFullError, SnacOnnxError
from ..heap import trim_heap
from ..layouts import codes_to_tokens, resolve_layout
from ..stream.pool import AsyncPooledStream
from .bodies import ClientGone, check_declared, lines, read_body
from .encoders import wav_header
from .outgoing import Cut, LiveResponse
from .protocol import (
    AUDIO_FORMATS,
    EndMessage,
    TooBigError,
    message_data,
    one_line,
    parse_json,
    parse_message,
    parse_query,
    pcm_bytes,
    pcm_headers,
)
from .service import Service

__all__ = ["router", "refusal"]

logger = logging.getLogger(__name__)
router = APIRouter()


def refusal(service: Service, endpoint: str, status: int, message: str, **headers: str) -> JSONResponse:
    """A refusal: ``{"error": message}`` with ``status`` (counted; a client's mistake is one WARNING line)."""
    service.metrics.requests.labels(endpoint, str(status)).inc()
    if status < 500 or status == 503:
        logger.warning("%s refused (%d): %s", endpoint, status, message)
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _refused(service: Service, endpoint: str, error: Exception) -> Response:
    """The refusal of a known error: 413 over a limit, 503 when full, 500 for a failed decode (the server's
    fault: onnxruntime failed on checked input), an empty 499 for a client gone, 400 otherwise."""
    if isinstance(error, ClientGone):
        service.metrics.requests.labels(endpoint, "499").inc()
        return Response(status_code=499)  # nobody reads it: for the access log
    if isinstance(error, DecodeFailedError):
        logger.error("a decode failed: %s", error)
        service.metrics.errors.labels("stream").inc()
        return refusal(service, endpoint, 500, str(error))
    if isinstance(error, TooBigError):
        return refusal(service, endpoint, 413, str(error))
    if isinstance(error, PoolFullError):
        return refusal(service, endpoint, 503, str(error), **{"Retry-After": "1"})
    return refusal(service, endpoint, 400, str(error))


def _audio_response(
    service: Service,
    endpoint: str,
    stream: AsyncPooledStream,
    first: np.ndarray,
    fmt: str,
    *,
    header: bytes = b"",
    length: int | None = None,
    failure: list[SnacOnnxError] | None = None,
) -> LiveResponse:
    """The stream's audio, from its first chunk on, as it is decoded; the stream's place is let go when the
    response is over. ``failure``: filled by the input's feeder when it fails after the first audio (a cut)."""
    rate = service.codec.sample_rate
    sample_format = "s16le" if fmt == "wav" else fmt

    async def body() -> AsyncGenerator[bytes, None]:
        chunk: np.ndarray | None = first
        data = header
        while chunk is not None:
            yield data + pcm_bytes(chunk, sample_format)
            data = b""
            service.metrics.audio_seconds.inc(chunk.size / rate)
            try:
                chunk = await stream.read()
            except SnacOnnxError as error:  # the stream failed after its first audio (a limit, a failed step)
                raise Cut(str(error)) from error
        if failure:
            raise Cut(f"a line of the body failed after the audio had started: {failure[0]}")

    async def finish(outcome: str) -> None:
        stream.cancel()
        if outcome == "read_timeout":
            service.metrics.errors.labels("read_timeout").inc()
        service.closed(outcome if outcome in ("completed", "cancelled") else "failed")

    service.metrics.requests.labels(endpoint, "200").inc()
    media_type = "audio/wav" if fmt == "wav" else "application/octet-stream"
    return LiveResponse(
        body(),
        media_type=media_type,
        headers=pcm_headers(rate, sample_format),
        length=length,
        read_timeout_s=service.settings.read_timeout_s,
        finish=finish,
    )


# ---------------------------------------------------------------------- POST /v1/decode
@router.post("/v1/decode")
async def decode(request: Request) -> Response:
    """One JSON body of one message's field (``ids``, ``text``, ``tokens`` or ``codes``; one message, so at most
    ``max_message_bytes``) to a WAV file (or raw PCM with ``format``), sent with its length as it is decoded; the
    same query as the WebSocket."""
    service: Service = request.app.state.service
    endpoint = "decode"
    settings = service.settings
    try:
        query = parse_query(request.query_params, ("wav", *AUDIO_FORMATS))
        check_declared(request, settings.max_message_bytes)
        stream = service.open(query)
    except SnacOnnxError as error:
        return _refused(service, endpoint, error)
    try:
        obj = parse_json(await read_body(request, settings.max_message_bytes))
        if isinstance(obj, dict):
            obj.pop("end", None)  # a whole request ends by itself
        message = parse_message(obj, query.kinds)
        if not isinstance(message, EndMessage):
            stream.push(message_data(message))
        stream.end()
        first = await stream.read()
    except (SnacOnnxError, ClientGone) as error:
        stream.cancel()
        service.closed("cancelled" if isinstance(error, ClientGone) else "failed")
        return _refused(service, endpoint, error)
    total = stream.total_samples or 0
    width = 4 if query.format == "f32le" else 2
    header = wav_header(service.codec.sample_rate, total) if query.format == "wav" else b""
    if first is None:
        first = np.zeros(0, np.float32)
    return _audio_response(
        service, endpoint, stream, first, query.format, header=header, length=len(header) + total * width
    )


# ---------------------------------------------------------------------- POST /v1/decode/stream
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
        """The body's lines into the stream; whatever ends it early (a bad line, no line for the idle timeout, the
        client gone) ends the stream too, so its reader is never left waiting."""
        body = lines(request, settings.max_message_bytes, settings.max_body_bytes).__aiter__()
        idle = settings.idle_timeout_s or None
        try:
            while not stream.input_ended:
                try:
                    line = await asyncio.wait_for(body.__anext__(), idle)
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
        except BaseException:  # the client gone (ClientGone), or this task cancelled: nobody waits for the audio
            stream.cancel()
            raise

    feeder = asyncio.create_task(feed())
    first: np.ndarray | None = None
    try:
        first = await stream.read()
    except SnacOnnxError as error:  # the stream failed (a limit, a failed step) before its first audio
        failure.insert(0, error)
    if first is None:  # no audio: the stream ended, failed, or the input was refused before any audio
        await asyncio.gather(feeder, return_exceptions=True)
        stream.cancel()
        if failure:
            service.closed("failed")
            return _refused(service, endpoint, failure[0])
        if feeder.exception() is not None:
            service.closed("cancelled")
            return _refused(service, endpoint, ClientGone())
        first = np.zeros(0, np.float32)
    return _audio_response(service, endpoint, stream, first, query.format, failure=failure)


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
    except (SnacOnnxError, ClientGone) as error:
        response = _refused(service, endpoint, error)
    else:
        service.metrics.requests.labels(endpoint, "200").inc()
        response = JSONResponse(result)
    await run_in_threadpool(trim_heap)  # the upload's frame and any error are gone by now: its pages can go back
    return response
