"""Responses sent as they are made: the audio endpoints' one way of sending, waiting and giving up.

:class:`LiveResponse` sends its headers, then each chunk of its body as the body makes it. Each send waits at most
``read_timeout_s``: a client that reads nothing for that long has its connection dropped. The client's going is
watched the whole time, so that work for nobody stops at once. The next chunk is taken only once the connection
holds little the client has not read (:func:`~snac_onnx.serve.connection.paced`), and the response is over once
the client has taken its last byte (:func:`~snac_onnx.serve.connection.drained`). A body ends the response short
by raising :class:`Cut`: after the first byte there is no status to change, so the connection is dropped and the
client sees an incomplete body, never wrong or silently short audio. ``finish(outcome)`` is called last, whatever
happened: ``completed``, ``cancelled`` (the client left), ``cut`` or ``read_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .connection import abort, drained, paced

__all__ = ["Cut", "LiveResponse"]

logger = logging.getLogger(__name__)


class Cut(Exception):
    """Raised by a live body: end the response short (the connection is dropped), for this reason."""


class LiveResponse(Response):
    """See the module docstring.

    Args:
        body: the response's bytes, chunk by chunk.
        media_type: its content type; headers: more headers; length: its Content-Length, when known in advance
            (else the body is sent chunked).
        read_timeout_s: the longest a send may wait for the client to read.
        finish: called with the outcome once the response is over.
    """

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        *,
        media_type: str,
        read_timeout_s: float,
        finish: Callable[[str], Awaitable[None]],
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.body_iter = body
        self.read_timeout_s = read_timeout_s
        self.finish = finish
        fields = {"content-type": media_type, "cache-control": "no-cache", **(headers or {})}
        if length is not None:
            fields["content-length"] = str(length)
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in fields.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def deliver(message: dict[str, object]) -> None:
            await asyncio.wait_for(send(message), self.read_timeout_s)

        async def run() -> None:
            await deliver({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async with contextlib.aclosing(self.body_iter) as chunks:
                async for data in chunks:
                    if data:
                        await deliver({"type": "http.response.body", "body": data, "more_body": True})
                        if not await paced(scope, self.read_timeout_s):  # what the client has not read waits upstream
                            raise asyncio.TimeoutError
            await deliver({"type": "http.response.body", "body": b"", "more_body": False})
            if not await drained(scope, self.read_timeout_s):  # the stream's place is held until the client has it all
                raise asyncio.TimeoutError

        async def gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        sender, watcher = asyncio.create_task(run()), asyncio.create_task(gone())
        outcome, why = "cut", None
        try:
            done, _ = await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if sender in done:
                sender.result()
                outcome = "completed"
            else:
                outcome = "cancelled"
        except Cut as cut:
            why = str(cut)
        except asyncio.TimeoutError:
            outcome, why = "read_timeout", f"the client read nothing for {self.read_timeout_s} s (read timeout)"
        finally:
            for task in (sender, watcher):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            await self.finish(outcome)
        if why is not None:
            logger.warning("a response was cut short: %s", why)
            await abort(scope)
