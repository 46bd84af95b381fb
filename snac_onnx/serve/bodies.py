"""Request bodies, read as they arrive and against their limits (a body announced over its limit is refused before
any of it is read).

A client that goes away while its body is read raises :class:`ClientGone` (a request counted ``cancelled``, never
an error of the server's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request

from .protocol import TooBigError

__all__ = ["ClientGone", "check_declared", "read_body", "lines"]


class ClientGone(Exception):
    """The client closed its connection while its request was read."""


def check_declared(request: Request, limit: int) -> None:
    """A body announced (Content-Length) over ``limit`` bytes is refused before it is read (:class:`TooBigError`)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooBigError(f"the body is {declared} bytes; this server takes at most {limit}")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read as it arrives against ``limit`` bytes (into one buffer: no second copy)."""
    body = bytearray()
    try:
        async for part in request.stream():
            if len(body) + len(part) > limit:
                raise TooBigError(f"the body is over this server's limit of {limit} bytes")
            body += part
    except ClientDisconnect:
        raise ClientGone from None
    return bytes(body)


async def lines(request: Request, line_limit: int, body_limit: int) -> AsyncIterator[bytes]:
    """The body's non-empty lines as they arrive, each at most ``line_limit`` bytes, ``body_limit`` in all (each
    read is scanned once: a long line costs its length, not its length squared)."""
    buffer, size = bytearray(), 0
    try:
        async for part in request.stream():
            size += len(part)
            if size > body_limit:
                raise TooBigError(f"the body is over this server's limit of {body_limit} bytes")
            start = len(buffer)
            buffer += part
            end = buffer.find(b"\n", start)
            while end != -1:
                line = bytes(buffer[:end])
                del buffer[: end + 1]
                if len(line) > line_limit:
                    raise TooBigError(f"a line is over this server's limit of {line_limit} bytes")
                if line.strip():
                    yield line
                end = buffer.find(b"\n")
            if len(buffer) > line_limit:
                raise TooBigError(f"a line is over this server's limit of {line_limit} bytes")
    except ClientDisconnect:
        raise ClientGone from None
    if buffer.strip():
        yield bytes(buffer)
