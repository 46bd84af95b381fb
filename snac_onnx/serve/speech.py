"""Text to speech, OpenAI's way: ``POST /v1/audio/speech`` in front of an LLM server, ``GET /v1/models`` and
``GET /v1/audio/voices``. Enabled by ``--llm URL --preset NAME``.

A request's text is split into pieces at sentence boundaries (:mod:`snac_onnx.serve.sentences`) and spoken by a
:class:`~snac_onnx.serve.speech_job.SpeechJob`: each piece one completion of the preset's prompt, its audio
tokens decoded as they are streamed, so the audio is exact and final three frames after its first audio token.
The response streams it as it comes: chunked bytes in ``response_format`` (``stream_format=audio``), or OpenAI's
``speech.audio.delta`` and ``speech.audio.done`` events (``stream_format=sse``).

Failures, as the client sees them: before any audio, a JSON error in OpenAI's shape (``{"error": {"message",
"type", "param", "code"}}``) with 400 (a bad request), 404 (an unknown model), 502 (the LLM unreachable, failing,
or generating no audio), 503 with ``Retry-After`` (``max_streams`` open, or the LLM busy; nothing is sent to the
LLM), 504 (the LLM stalled). After the first audio byte, the response ends with the audio that was final: the SSE
form then sends ``{"type": "error", "error": {...}}`` instead of ``speech.audio.done``; the audio form is cut
short (the connection is dropped). A client that disconnects cancels its LLM requests at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidArgumentError, PoolFullError, SnacOnnxError
from .bodies import ClientGone, check_declared, read_body
from .encoders import FORMATS, MEDIA_TYPES, make_encoder
from .outgoing import Cut, LiveResponse
from .protocol import TooBigError, one_line
from .sentences import split_text
from .service import Service
from .speech_job import SpeechFront, SpeechJob
from .upstream import UpstreamError

__all__ = ["router", "SpeechRequest", "openai_error"]

logger = logging.getLogger(__name__)
router = APIRouter()
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")  # names OpenAI clients send by default: this model too


class VoiceId(BaseModel):
    """A voice named by id (OpenAI's custom voices)."""

    id: str


class SpeechRequest(BaseModel):
    """OpenAI's ``POST /v1/audio/speech`` body."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="the preset's name, the upstream's model name, or one of OpenAI's TTS models")
    input: str = Field(min_length=1, description="the text to speak")
    voice: str | VoiceId = Field(description="one of the preset's voices (Maya1: a description of the voice)")
    instructions: str | None = Field(None, description="Maya1: the voice's description (wins over voice)")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, description="only 1.0: the speech models have no speed control")
    stream_format: Literal["audio", "sse"] = "audio"


def openai_error(status: int, message: str, kind: str, code: str | None = None, **headers: str) -> JSONResponse:
    """An error in OpenAI's shape."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers or None)


def _failure(error: Exception) -> Response:
    """The answer to a failure before any audio."""
    if isinstance(error, ClientGone):
        return Response(status_code=499)  # nobody reads it: for the access log
    if isinstance(error, UpstreamError):
        headers = {"Retry-After": error.retry_after} if error.status == 503 and error.retry_after else {}
        return openai_error(error.status, str(error), "upstream_error", **headers)
    if isinstance(error, PoolFullError):
        return openai_error(503, str(error), "server_busy", **{"Retry-After": "1"})
    if isinstance(error, TooBigError):
        return openai_error(413, str(error), "invalid_request_error")
    if isinstance(error, InvalidArgumentError):
        return openai_error(400, str(error), "invalid_request_error")
    return openai_error(502, f"the LLM's output could not be decoded: {error}", "upstream_error")


def _check(body: SpeechRequest, front: SpeechFront, service: Service) -> tuple[list[str], str]:
    """The request's pieces of text and its voice; InvalidArgumentError for what this server cannot do."""
    if body.speed != 1.0:
        raise InvalidArgumentError("speed: only 1.0; the speech models have no speed control of their own")
    if body.response_format not in FORMATS:
        raise InvalidArgumentError(
            f"response_format {body.response_format!r} is not supported; use one of {list(FORMATS)}"
        )
    if len(body.input) > service.settings.max_input_chars:
        raise InvalidArgumentError(
            f"input is {len(body.input)} characters; this server takes at most {service.settings.max_input_chars}"
        )
    voice = body.voice.id if isinstance(body.voice, VoiceId) else body.voice
    if not front.preset.voices and body.instructions is not None:
        voice = body.instructions  # Maya1's description of the voice
    pieces = split_text(body.input, service.settings.piece_chars)
    if not pieces:
        raise InvalidArgumentError("input: there is no text to speak")
    front.preset.format_prompt(pieces[0], voice)  # a bad voice is refused before anything is sent
    return pieces, voice


@router.post("/v1/audio/speech")
async def speech(request: Request) -> Response:
    """OpenAI's speech endpoint, streamed; see the module docstring."""
    service: Service = request.app.state.service
    front: SpeechFront | None = request.app.state.speech
    endpoint = "speech"
    if front is None:
        return openai_error(
            404, "this server has no LLM to speak with: start it with --llm URL --preset NAME", "invalid_request_error"
        )
    try:
        check_declared(request, service.settings.max_message_bytes)
        try:
            body = SpeechRequest.model_validate_json(await read_body(request, service.settings.max_message_bytes))
        except ValidationError as error:
            raise InvalidArgumentError(one_line(error)) from None
        if body.model not in (*front.model_names, *OPENAI_MODELS):
            service.metrics.requests.labels(endpoint, "404").inc()
            return openai_error(
                404,
                f"model {body.model!r} is not served here; it serves {list(front.model_names)}",
                "invalid_request_error",
                "model_not_found",
            )
        pieces, voice = _check(body, front, service)
        job = SpeechJob(service, front, pieces, voice)
        job.admit()
    except (SnacOnnxError, ClientGone) as error:
        response = _failure(error)
        service.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        if response.status_code < 500:
            logger.warning("speech refused (%d): %s", response.status_code, error)
        return response
    try:
        job.start()
        chunks = job.audio().__aiter__()
        first = await _first_audio(job, chunks, request)
    except BaseException as error:
        await job.close()
        if not isinstance(error, (SnacOnnxError, ClientGone)):
            raise
        service.closed("cancelled" if isinstance(error, ClientGone) else "failed")
        response = _failure(error)
        service.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        return response
    service.metrics.requests.labels(endpoint, "200").inc()
    return _response(job, chunks, first, body)


async def _first_audio(job: SpeechJob, chunks: AsyncIterator[np.ndarray], request: Request) -> np.ndarray:
    """The first chunk of audio, waited for while the client is there: ClientGone when it leaves, the job's error
    when it failed before any audio."""
    reader = asyncio.ensure_future(chunks.__anext__())
    while not (await asyncio.wait({reader}, timeout=0.5))[0]:
        if await request.is_disconnected():
            reader.cancel()
            raise ClientGone
    try:
        first: np.ndarray = reader.result()
    except StopAsyncIteration:
        raise job.error or UpstreamError("the LLM generated no audio") from None
    if job.error is not None and not first.size:
        raise job.error
    return first


def _response(job: SpeechJob, chunks: AsyncIterator[np.ndarray], first: np.ndarray, body: SpeechRequest) -> Response:
    service = job.service
    rate = service.codec.sample_rate
    encoder = make_encoder(body.response_format, rate)
    sse = body.stream_format == "sse"

    def event(payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    def out(data: bytes) -> bytes:
        if not sse or not data:
            return data
        return event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})

    async def audio() -> AsyncGenerator[bytes, None]:
        yield out(encoder.start() + encoder.encode(first))
        service.metrics.audio_seconds.inc(first.size / rate)
        async for chunk in chunks:
            yield out(encoder.encode(chunk))
            service.metrics.audio_seconds.inc(chunk.size / rate)
        yield out(encoder.finish())
        error, usage = job.error, job.usage
        if error is not None and not sse:
            raise Cut(str(error))
        if error is not None:
            yield event({"type": "error", "error": {"message": str(error), "type": "upstream_error"}})
        elif sse:
            tokens = {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}
            yield event({"type": "speech.audio.done", "usage": {**tokens, "total_tokens": sum(tokens.values())}})

    async def finish(outcome: str) -> None:
        await job.close()
        ids, chars = job.skipped
        service.metrics.llm_skipped.labels("ids").inc(ids)
        service.metrics.llm_skipped.labels("text").inc(chars)
        if outcome == "read_timeout":
            service.metrics.errors.labels("read_timeout").inc()
        failed = job.error is not None or outcome in ("cut", "read_timeout")
        service.closed("cancelled" if outcome == "cancelled" else "failed" if failed else "completed")

    return LiveResponse(
        audio(),
        media_type="text/event-stream" if sse else MEDIA_TYPES[body.response_format],
        read_timeout_s=service.settings.read_timeout_s,
        finish=finish,
    )


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    """The models a speech request may name (OpenAI's list shape)."""
    front: SpeechFront | None = request.app.state.speech
    names = front.model_names if front is not None else ()
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "snac-onnx"} for n in names]
    return {"object": "list", "data": data}


@router.get("/v1/audio/voices")
async def voices(request: Request) -> dict[str, Any]:
    """The preset's voices (``{"voices": [{"id", "name"}]}``); empty where a voice is a free description."""
    front: SpeechFront | None = request.app.state.speech
    names = front.preset.voices if front is not None else ()
    return {"voices": [{"id": v, "name": v} for v in names], "default": front.preset.default_voice if front else None}
