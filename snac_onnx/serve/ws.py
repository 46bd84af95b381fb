"""``WS /v1/stream``: one stream per connection, the client's messages in, audio out as soon as it is final.

A stream's ends, as the client sees them:

* ``{"end": true}`` or an end-of-speech id: the tail is decoded and sent, then ``{"type": "end"}`` and close 1000.
  From then on the idle timeout no longer applies; only the read timeout, the client's own disconnect or the
  server's shutdown end the connection early. Messages after the end are ignored.
* A message that is not the protocol's, or input the stream refuses: an error message, then 1007 (1009 for one
  over ``max_message_bytes``).
* A bad query, or a missing or wrong ``--api-key``: an error message, then 1008. ``max_streams`` open or the
  server draining: 1013.
* No message for ``idle_timeout_s`` before the end: 1008. A stream past ``max_stream_seconds``: 1008.
* The client reads none of the audio waiting for it for ``read_timeout_s``: 1008, queued behind what it has not
  read; if it still reads nothing for another ``read_timeout_s``, the connection is dropped.
* The server shuts down before the stream ends: 1012. An internal error: 1011.
* The client disconnects: the stream is cancelled at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from ..errors import (
    InvalidArgumentError,
    InvalidCodesError,
    PoolFullError,
    SnacOnnxError,
    StreamClosedError,
)
from ..stream.pool import AsyncPooledStream
from .auth import KEY_MESSAGE, key_ok
from .connection import abort, drained, paced
from .protocol import (
    AUDIO_FORMATS,
    CLOSE_CODES,
    EndMessage,
    StreamQuery,
    TooBigError,
    message_data,
    parse_message,
    parse_query,
    pcm_bytes,
)
from .service import Service

__all__ = ["router", "close"]

logger = logging.getLogger(__name__)
router = APIRouter()


class _NotReading(Exception):
    """A send waited ``read_timeout_s``: the client reads nothing."""


async def close(ws: WebSocket, why: str, message: str, grace: float) -> None:
    """Send an error message (unless ``why`` is ``done``) and close with ``why``'s code (the reason cut to the
    protocol's 123 bytes). A client that takes neither within ``grace`` s is disconnected."""

    async def send() -> None:
        if why != "done":
            await ws.send_json({"type": "error", "message": message})
        await ws.close(CLOSE_CODES[why], message.encode()[:123].decode(errors="ignore"))

    try:
        await asyncio.wait_for(send(), grace)
    except asyncio.TimeoutError:
        await abort(ws.scope)
    except (WebSocketDisconnect, RuntimeError, OSError):  # already gone (RuntimeError: the socket is closed)
        pass


@router.websocket("/v1/stream")
async def stream_ws(ws: WebSocket) -> None:
    """The streaming decode; see the module docstring and docs/serving.md."""
    service: Service = ws.app.state.service
    grace = service.settings.read_timeout_s
    await ws.accept()
    if not key_ok(ws):
        await close(ws, "policy", KEY_MESSAGE, grace)
        return
    try:
        query = parse_query(ws.query_params, AUDIO_FORMATS)
        stream = service.open(query)
    except PoolFullError as error:
        await close(ws, "try_later", str(error), grace)
        return
    except SnacOnnxError as error:
        logger.warning("stream refused: %s", error)
        await close(ws, "policy", str(error), grace)
        return
    await _Session(ws, service, query, stream).run()


class _Session:
    """One connection's stream: a sender (audio out) and a receiver (messages in), each ending the session with
    an outcome (completed, cancelled or failed) after closing the socket as it must."""

    def __init__(self, ws: WebSocket, service: Service, query: StreamQuery, stream: AsyncPooledStream) -> None:
        self.ws = ws
        self.service = service
        self.settings = service.settings
        self.query = query
        self.stream = stream
        self.sender: asyncio.Task[str] | None = None

    async def run(self) -> None:
        outcome = "cancelled"
        self.sender = asyncio.create_task(self._send())
        receiver = asyncio.create_task(self._receive())
        try:
            done, _ = await asyncio.wait({self.sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if self.sender in done and not self.sender.cancelled():  # the stream ended, and the close is sent
                outcome = self.sender.result()
                await self._delivered()
            else:  # the client went, or the receiver stopped the sender and closed: its outcome counts
                outcome = await receiver
        finally:
            for task in (self.sender, receiver):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.stream.cancel()  # its place is free: the connection is closed
            self.service.closed(outcome)

    async def _delivered(self) -> None:
        """Wait until the client has taken everything sent to it, the close included, for ``read_timeout_s`` at most;
        then the connection is dropped. Until then the stream keeps its place."""
        if not await drained(self.ws.scope, self.settings.read_timeout_s):
            logger.warning("dropping a connection whose client read nothing for %s s", self.settings.read_timeout_s)
            await abort(self.ws.scope)

    # ------------------------------------------------------------------ audio out
    async def _deliver(self, data: bytes | dict[str, Any]) -> None:
        """Send, then wait until the connection holds little the client has not read (:func:`paced`), so that
        what it has not read waits in the stream's buffer; either wait over ``read_timeout_s``: ``_NotReading``."""
        send = self.ws.send_bytes(data) if isinstance(data, bytes) else self.ws.send_json(data)
        timeout = self.settings.read_timeout_s
        try:
            await asyncio.wait_for(send, timeout)
        except asyncio.TimeoutError:
            raise _NotReading from None
        if not await paced(self.ws.scope, timeout):
            raise _NotReading

    async def _send(self) -> str:
        service, stream, grace = self.service, self.stream, self.settings.read_timeout_s
        rate, samples = service.codec.sample_rate, 0
        try:
            await self._deliver(service.start_message(self.query, stream))
            async for chunk in stream:
                await self._deliver(pcm_bytes(chunk, self.query.format))
                samples += chunk.size
                service.metrics.audio_seconds.inc(chunk.size / rate)
            await self._deliver({"type": "end", "samples": samples, "seconds": samples / rate})
        except _NotReading:
            logger.warning("closing a stream whose client read no audio for %s s (read timeout)", grace)
            service.metrics.errors.labels("read_timeout").inc()
            await close(self.ws, "policy", f"the client read no audio for {grace} s (read timeout)", grace)
            return "failed"
        except StreamClosedError as error:  # the pool closed at shutdown
            await close(self.ws, "shutdown", str(error), grace)
            return "cancelled"
        except (InvalidArgumentError, InvalidCodesError) as error:  # a limit of the stream (max_stream_seconds)
            logger.warning("stream closed: %s", error)
            await close(self.ws, "policy", str(error), grace)
            return "failed"
        except SnacOnnxError as error:
            logger.error("a stream failed: %s", error)
            service.metrics.errors.labels("stream").inc()
            await close(self.ws, "internal", str(error), grace)
            return "failed"
        except (WebSocketDisconnect, RuntimeError, OSError):  # the client went away while audio was sent
            return "cancelled"
        await close(self.ws, "done", "", grace)
        return "completed"

    # ------------------------------------------------------------------ messages in
    async def _receive(self) -> str:
        settings, stream, limit = self.settings, self.stream, self.settings.max_message_bytes
        while True:
            idle = settings.idle_timeout_s if settings.idle_timeout_s and not stream.input_ended else None
            try:
                message = await asyncio.wait_for(self.ws.receive(), idle)
            except asyncio.TimeoutError:
                return await self._stop("policy", f"no message for {idle} s (idle timeout)", "cancelled")
            if message["type"] == "websocket.disconnect":
                return "cancelled"
            if stream.input_ended:  # after the end only a disconnect matters
                continue
            text = message.get("text")
            try:
                if text is None:
                    raise InvalidArgumentError("messages are JSON text; this server takes no binary messages")
                if len(text) > limit // 4 and len(text.encode()) > limit:
                    raise TooBigError(f"a message is over this server's limit of {limit} bytes")
                parsed = parse_message(text, self.query.kinds)
                if isinstance(parsed, EndMessage):
                    stream.end()
                else:
                    stream.push(message_data(parsed))
            except TooBigError as error:
                return await self._stop("too_big", str(error), "failed")
            except SnacOnnxError as error:
                if stream.closed:  # the pool ended the stream (a limit, shutdown): the sender reports it
                    assert self.sender is not None
                    return await self.sender
                return await self._stop("malformed", str(error), "failed")

    async def _stop(self, why: str, message: str, outcome: str) -> str:
        """End the session from the receiving side: stop the sender, then close with ``why``."""
        logger.warning("stream closed (%s): %s", why, message)
        if why != "policy":
            self.service.metrics.errors.labels("message").inc()
        assert self.sender is not None
        self.sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.sender
        await close(self.ws, why, message, self.settings.read_timeout_s)
        return outcome
