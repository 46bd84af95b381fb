"""Each connection as the server holds it: a bounded send buffer, and a way to drop it when its client reads
nothing. Neither can be said in ASGI.

* The kernel's send buffer of a TCP socket grows on its own to megabytes (Linux: ``tcp_wmem``): seconds of audio
  decoded for a client that reads none of it. Each connection's is set to :data:`SEND_BUFFER_BYTES`, which still
  holds seconds of audio at any of the protocol's rates (a loss-free link needs far less).
* Every ASGI send waits while the client reads nothing (the server's flow control), a close frame or the end of a
  response included, so a client that never reads would hold its connection, and its place in ``max_streams``,
  for ever; :func:`abort` drops it.
* An ASGI send returns once its bytes are queued, not once the client has them: :func:`drained` waits until the
  client has taken every byte (the server's queue and the kernel's send queue are empty), so that a stream keeps
  its place until its connection has delivered everything.
* For the same reason a sender that took audio from its stream whenever a send returned would move seconds of it
  into the connection's buffers, where the stream pool cannot see that the client has not read it (and so would
  decode more for it as urgently as for a client that reads). :func:`paced` waits until the connection holds at
  most :data:`PACE_BYTES` the client has not taken: the rest waits in the stream's own buffer, where it counts.

:func:`bounded_connections` wraps the app as the ASGI server sees it; where that server is uvicorn (its ``send``
belongs to an object with a transport) it applies both. Elsewhere (a test client, Ray Serve's proxy) there is no
transport to reach, and that server's own buffers and timeouts apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import struct
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

if sys.platform.startswith("linux"):
    import fcntl
    import termios

__all__ = ["bounded_connections", "abort", "drained", "paced", "SEND_BUFFER_BYTES", "PACE_BYTES"]

SEND_BUFFER_BYTES = 128 << 10  # per connection (the kernel doubles it for its bookkeeping): about 5 s of s16le
# Bytes a connection may hold unread before its sender takes more audio: 0.7 s of 24 kHz f32le, 0.37 s of
# 44.1 kHz f32le; a client at 300 ms round trip still gets 218 kB/s (44.1 kHz f32le needs 176 kB/s)
PACE_BYTES = 64 << 10
_POLL_S = 0.01
_KEY = "snac_onnx.abort"
_QUEUED = "snac_onnx.queued"  # bytes the server and the kernel still hold for the client
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def bounded_connections(app: Any) -> ASGIApp:
    """``app`` with each connection's send buffer bounded and its abort in its scope (where the server exposes a
    transport)."""

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is not None and callable(getattr(transport, "abort", None)):
            scope[_KEY] = transport.abort
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
                scope[_QUEUED] = functools.partial(_queued, transport, sock.fileno())
        await app(scope, receive, send)

    return outer


def _queued(transport: Any, fd: int) -> int:
    """Bytes not yet taken by the client: the transport's buffer, and the kernel's send queue where it says
    (Linux's SIOCOUTQ; elsewhere the transport's alone)."""
    queued = int(transport.get_write_buffer_size())
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            out = fcntl.ioctl(fd, termios.TIOCOUTQ, struct.pack("i", 0))
            queued += struct.unpack("i", out)[0]
    return queued


async def drained(scope: Scope, timeout: float) -> bool:
    """Wait up to ``timeout`` s until the client has taken every byte sent to it; whether it has (True where the
    server exposes no transport: nothing to wait for)."""
    return await paced(scope, timeout, 0)


async def paced(scope: Scope, timeout: float, limit: int = PACE_BYTES) -> bool:
    """Wait up to ``timeout`` s until the connection holds at most ``limit`` bytes its client has not taken;
    whether it does (True at once where the server exposes no transport, or the connection is gone)."""
    queued = scope.get(_QUEUED)
    if queued is None:
        return True
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        try:
            if queued() <= limit:
                return True
        except (OSError, AttributeError):  # the connection is gone: nothing left to deliver
            return True
        if loop.time() > end:
            return False
        await asyncio.sleep(_POLL_S)


async def abort(scope: Scope) -> bool:
    """Abort the connection of ``scope`` now (its unsent data is dropped); returns whether it could. Yields once,
    so that the server learns of the lost connection before the app returns."""
    dropper = scope.get(_KEY)
    if dropper is None:
        return False
    dropper()
    await asyncio.sleep(0)
    return True
