"""Text to speech, OpenAI's way: ``POST /v1/audio/speech`` in front of an LLM server, ``GET /v1/models`` and
``GET /v1/audio/voices``. Enabled by ``--llm URL --preset NAME``.

A request's text is split into pieces at sentence boundaries (:mod:`snac_onnx.serve.sentences`); each piece is one
completion of the preset's prompt (:mod:`snac_onnx.serve.upstream`) whose audio tokens go, as they are streamed,
into a stream of the pool, so its audio is exact and final three frames after its first audio token. Pieces are
generated ``speech_pieces`` at a time and played in order, joined by ``join_ms`` of silence. The response streams
the audio as it comes: chunked bytes in ``response_format`` (``stream_format=audio``), or OpenAI's
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
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import Receive, Scope, Send

from ..codec import SnacOnnx
from ..errors import InvalidArgumentError, PoolFullError, SnacOnnxError, StreamClosedError
from ..stream.pool import AsyncPooledStream
from ..stream.presets import TokenPreset, get_preset
from .connection import abort
from .encoders import FORMATS, MEDIA_TYPES, make_encoder
from .http import check_declared, read_body
from .protocol import StreamQuery, TooBigError, one_line
from .sentences import split_text
from .service import Service
from .settings import ServeSettings
from .upstream import Upstream, UpstreamError, Usage

__all__ = ["router", "SpeechFront", "SpeechRequest", "openai_error"]

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
    speed: float = Field(1.0, ge=0.25, le=4.0, description="only 1.0: the models have no speed control")
    stream_format: Literal["audio", "sse"] = "audio"


def openai_error(status: int, message: str, kind: str, code: str | None = None, **headers: str) -> JSONResponse:
    """An error in OpenAI's shape."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers or None)


class SpeechFront:
    """The preset, the upstream and the sampling of this server's speech endpoint."""

    def __init__(self, settings: ServeSettings, codec: SnacOnnx) -> None:
        assert settings.llm is not None
        assert settings.preset is not None
        self.settings = settings
        self.preset: TokenPreset = get_preset(settings.preset)
        if self.preset.prompt is None:
            raise InvalidArgumentError(f"preset {self.preset.name!r} has no prompt: it is not a completions model")
        if codec.config.frame_tokens != 7:
            raise InvalidArgumentError(
                f"--preset {self.preset.name}: the presets are for the 24 kHz model (3 codebooks); {codec.name} has "
                f"vq_strides {codec.config.vq_strides}"
            )
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        self.upstream = Upstream(settings.llm, api_key=key, timeout_s=settings.llm_timeout_s)
        self.model_name = settings.llm_model or self.preset.name

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.preset.name, self.model_name)))

    def body(self, text: str, voice: str | None) -> dict[str, Any]:
        """The completions request of one piece of text."""
        s, preset = self.settings, self.preset
        sampling: dict[str, Any] = preset.sampling.as_request() if preset.sampling else {}
        for name in ("temperature", "top_p", "max_tokens"):
            if getattr(s, name) is not None:
                sampling[name] = getattr(s, name)
        if s.repetition_penalty is not None:
            sampling["repetition_penalty"] = sampling["repeat_penalty"] = s.repetition_penalty
        return {
            "model": self.model_name,
            "prompt": preset.format_prompt(text, voice),
            **sampling,
            "stop": preset.stop_texts(),  # llama.cpp stops on text
            "stop_token_ids": list(preset.end_of_speech),  # vLLM on ids
            "return_token_ids": True,  # vLLM: ids with the text (exact); others ignore it
        }


class _Failure(Exception):
    """A refusal before the first audio byte: the response to send instead."""

    def __init__(self, response: JSONResponse) -> None:
        self.response = response


class SpeechJob:
    """One request's pieces: each generated by the LLM into its own pool stream, read in order.

    ``audio()`` yields the float32 chunks to play, the silences between pieces included, and stops at the first
    failure after the audio of the failing piece that was final (:attr:`error` then says why).
    """

    def __init__(self, service: Service, front: SpeechFront, pieces: list[str], voice: str | None) -> None:
        self.service, self.front, self.pieces, self.voice = service, front, pieces, voice
        self.settings = service.settings
        self.error: SnacOnnxError | None = None
        self.usage = Usage()
        self.skipped = (0, 0)  # ids, characters of text the LLM generated that were not audio
        self._opened: list[asyncio.Future[AsyncPooledStream]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._slots = asyncio.Semaphore(service.settings.speech_pieces)
        self._starter: asyncio.Task[None] | None = None

    def open_first(self, query: StreamQuery) -> None:
        """Open the first piece's stream now (admission): PoolFullError when the pool is full."""
        loop = asyncio.get_running_loop()
        self._query = query
        first = self.service.open(query)
        self._opened = [loop.create_future() for _ in self.pieces]
        self._opened[0].set_result(first)

    def start(self) -> None:
        self._starter = asyncio.create_task(self._start_pieces())

    async def _start_pieces(self) -> None:
        for k, text in enumerate(self.pieces):
            await self._slots.acquire()
            if self.error is not None:
                return
            if k:
                try:
                    self._opened[k].set_result(await self._open_when_possible())
                except SnacOnnxError as error:
                    self._fail(error)
                    return
            stream = self._opened[k].result()
            self._tasks.append(asyncio.create_task(self._generate(text, stream)))

    async def _open_when_possible(self) -> AsyncPooledStream:
        """A stream for a later piece: the pool may be full for a moment (another of this request's pieces frees
        its place as it is read)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.settings.llm_timeout_s
        while True:
            try:
                return self.service.open(self._query)
            except PoolFullError:
                if loop.time() > end:
                    raise
                await asyncio.sleep(0.02)

    async def _generate(self, text: str, stream: AsyncPooledStream) -> None:
        usage = Usage()
        try:
            async for piece in self.front.upstream.complete(self.front.body(text, self.voice), usage):
                data: list[int] | str = piece.token_ids if piece.token_ids else piece.text
                if data and stream.push(data):
                    break  # the end-of-speech id: closing the request frees the LLM's slot
            stream.end()
        except SnacOnnxError as error:  # the upstream failed, or generated ids the preset refuses
            self._fail(error)
            with contextlib.suppress(SnacOnnxError):
                stream.end()  # what was final is played
        finally:
            self.usage.prompt_tokens += usage.prompt_tokens
            self.usage.completion_tokens += usage.completion_tokens or usage.chunks
            ids, chars = stream.skipped
            self.skipped = (self.skipped[0] + ids, self.skipped[1] + chars)

    def _fail(self, error: SnacOnnxError) -> None:
        if self.error is None:
            self.error = error
            logger.warning("speech request failed: %s", error)

    async def audio(self) -> AsyncIterator[np.ndarray]:
        rate = self.service.codec.sample_rate
        silence = np.zeros(round(self.settings.join_ms / 1000 * rate), np.float32)
        for k in range(len(self.pieces)):
            if k and self.error is not None:
                return
            stream = await self._opened[k]
            if k and silence.size:
                yield silence
            try:
                async for chunk in stream:
                    yield chunk
            except StreamClosedError as error:  # the pool closed (shutdown)
                self._fail(error)
            finally:
                self._slots.release()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def cancel(self) -> None:
        """Stop everything: the LLM requests are closed (their slots freed), the streams cancelled."""
        tasks = [t for t in (self._starter, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        for opened in self._opened:
            if opened.done() and not opened.cancelled():
                opened.result().cancel()


def _failure_response(error: SnacOnnxError) -> JSONResponse:
    if isinstance(error, UpstreamError):
        headers = {"Retry-After": error.retry_after} if error.status == 503 and error.retry_after else {}
        return openai_error(error.status, str(error), "upstream_error", **headers)
    if isinstance(error, PoolFullError):
        return openai_error(503, str(error), "server_busy", **{"Retry-After": "1"})
    return openai_error(502, f"the LLM's output could not be decoded: {error}", "upstream_error")


class SpeechResponse(Response):
    """The audio of a :class:`SpeechJob` as it comes, in ``response_format``, raw or as SSE events."""

    def __init__(self, job: SpeechJob, chunks: AsyncIterator[np.ndarray], first: np.ndarray, request: SpeechRequest):
        self.job, self.chunks, self.first, self.request = job, chunks, first, request
        sse = request.stream_format == "sse"
        super().__init__(media_type="text/event-stream" if sse else MEDIA_TYPES[request.response_format])
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.raw_headers.append((b"cache-control", b"no-cache"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service, job = self.job.service, self.job
        encoder = make_encoder(self.request.response_format, service.codec.sample_rate)
        sse = self.request.stream_format == "sse"
        read_timeout = service.settings.read_timeout_s

        async def deliver(data: bytes, more: bool = True) -> None:
            if sse and data:
                data = (
                    b"data: "
                    + json.dumps({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}).encode()
                    + b"\n\n"
                )
            if data or not more:
                message = {"type": "http.response.body", "body": data, "more_body": more}
                await asyncio.wait_for(send(message), read_timeout)

        async def body() -> str:
            await asyncio.wait_for(
                send({"type": "http.response.start", "status": 200, "headers": self.raw_headers}), read_timeout
            )
            await deliver(encoder.start() + encoder.encode(self.first))
            rate = service.codec.sample_rate
            service.metrics.audio_seconds.inc(self.first.size / rate)
            async for chunk in self.chunks:
                await deliver(encoder.encode(chunk))
                service.metrics.audio_seconds.inc(chunk.size / rate)
            await deliver(encoder.finish())
            error = job.error
            if error is not None and not sse:
                return "cut"
            if sse:
                u = job.usage
                if error is None:
                    event = {
                        "type": "speech.audio.done",
                        "usage": {
                            "input_tokens": u.prompt_tokens,
                            "output_tokens": u.completion_tokens,
                            "total_tokens": u.prompt_tokens + u.completion_tokens,
                        },
                    }
                else:
                    event = {"type": "error", "error": {"message": str(error), "type": "upstream_error"}}
                await asyncio.wait_for(
                    send(
                        {
                            "type": "http.response.body",
                            "body": b"data: " + json.dumps(event).encode() + b"\n\n",
                            "more_body": True,
                        }
                    ),
                    read_timeout,
                )
            await deliver(b"", more=False)
            return "completed" if error is None else "failed"

        async def disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        sender = asyncio.create_task(body())
        watcher = asyncio.create_task(disconnect())
        outcome = "cancelled"
        try:
            done, _ = await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if sender in done:
                outcome = sender.result()
        except asyncio.TimeoutError:
            outcome = "cut"
            service.metrics.errors.labels("read_timeout").inc()
        except OSError:
            outcome = "cancelled"
        finally:
            for task in (sender, watcher):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            await job.cancel()
            ids, chars = job.skipped
            service.metrics.llm_skipped.labels("ids").inc(ids)
            service.metrics.llm_skipped.labels("text").inc(chars)
            service.closed("failed" if outcome == "cut" else outcome)
        if outcome == "cut":
            logger.warning("a speech response was cut short: %s", job.error or "the client read nothing")
            await abort(scope)


@router.post("/v1/audio/speech")
async def speech(request: Request) -> Response:
    """OpenAI's speech endpoint, streamed; see the module docstring."""
    service: Service = request.app.state.service
    front: SpeechFront | None = request.app.state.speech
    endpoint = "speech"
    if front is None:
        return openai_error(
            404,
            "this server has no LLM to speak with: start it with --llm URL --preset NAME",
            "invalid_request_error",
            "not_configured",
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
        if front.preset.voices or body.instructions is None:
            description = voice
        else:
            description = body.instructions
        pieces = split_text(body.input, service.settings.piece_chars)
        if not pieces:
            raise InvalidArgumentError("input: there is no text to speak")
        front.preset.format_prompt(pieces[0], description)  # a bad voice is refused before anything is sent
    except SnacOnnxError as error:
        status = 413 if isinstance(error, TooBigError) else 400
        service.metrics.requests.labels(endpoint, str(status)).inc()
        logger.warning("speech refused (%d): %s", status, error)
        return openai_error(status, str(error), "invalid_request_error")
    job = SpeechJob(service, front, pieces, description)
    try:
        job.open_first(StreamQuery(preset=front.preset.name))
    except PoolFullError as error:
        service.metrics.requests.labels(endpoint, "503").inc()
        return _failure_response(error)
    job.start()
    chunks = job.audio().__aiter__()
    try:
        first = await _first_audio(job, chunks, request)
    except _Failure as failure:
        await job.cancel()
        service.closed("failed")
        service.metrics.requests.labels(endpoint, str(failure.response.status_code)).inc()
        return failure.response
    service.metrics.requests.labels(endpoint, "200").inc()
    return SpeechResponse(job, chunks, first, body)


async def _first_audio(job: SpeechJob, chunks: AsyncIterator[np.ndarray], request: Request) -> np.ndarray:
    """The first chunk of audio, waited for while the client is there; a failure before it is a _Failure."""
    reader = asyncio.ensure_future(chunks.__anext__())
    while True:
        done, _ = await asyncio.wait({reader}, timeout=0.5)
        if done:
            break
        if await request.is_disconnected():
            reader.cancel()
            raise _Failure(openai_error(499, "the client went away", "client_closed"))
    try:
        first: np.ndarray = reader.result()
    except StopAsyncIteration:
        error = job.error or UpstreamError(
            f"the LLM generated no audio tokens ({job.skipped[1]} characters and {job.skipped[0]} ids of other output)"
        )
        raise _Failure(_failure_response(error)) from None
    if job.error is not None and not first.size:
        raise _Failure(_failure_response(job.error))
    return first


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    """The models a speech request may name (OpenAI's list shape)."""
    front: SpeechFront | None = request.app.state.speech
    names = front.model_names if front is not None else ()
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": 0, "owned_by": "snac-onnx"} for n in names],
    }


@router.get("/v1/audio/voices")
async def voices(request: Request) -> dict[str, Any]:
    """The preset's voices (``{"voices": [{"id", "name"}]}``); empty where a voice is a free description."""
    front: SpeechFront | None = request.app.state.speech
    names = front.preset.voices if front is not None else ()
    return {"voices": [{"id": v, "name": v} for v in names], "default": front.preset.default_voice if front else None}
