"""``snac-onnx serve``: the app on uvicorn, one process, on a socket bound before anything else, draining at
SIGTERM."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from ..errors import InvalidArgumentError
from .app import create_app
from .connection import bounded_connections
from .service import Service, make_codec
from .settings import ServeSettings

__all__ = ["serve", "bind"]

logger = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``.

    Raises:
        InvalidArgumentError: the address is in use or cannot be bound here.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise InvalidArgumentError(
            f"cannot listen on {host}:{port} ({error.strerror or error}); choose another --port (or --host)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: ServeSettings) -> None:
    """Run the app on uvicorn at ``settings.host:port`` until interrupted. The address is bound and the model
    loaded first, so that a busy port or a model that cannot be loaded is a :class:`SnacOnnxError` here, not a
    failed startup inside uvicorn.

    SIGTERM or SIGINT drains: no new streams (WebSocket 1013, HTTP 503, ``/readyz`` 503) while the live ones get
    ``shutdown_grace_s`` to finish; then uvicorn shuts down (closing what is left with 1012) and re-raises the
    signal. A second signal stops at once.
    """
    import uvicorn

    sock = bind(settings.host, settings.port)
    app = create_app(settings, codec=make_codec(settings))
    service: Service = app.state.service
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
            end = time.monotonic() + grace
            while time.monotonic() < end and service.pool.streams_active:
                time.sleep(0.05)
            self.should_exit = True

    config = uvicorn.Config(
        bounded_connections(app),
        log_level=settings.log_level,
        ws_max_size=settings.max_message_bytes + 1024,
        ws_per_message_deflate=False,  # PCM does not compress: deflating it only costs the event loop
        timeout_graceful_shutdown=max(1, int(grace)),
        lifespan="on",
    )
    DrainingServer(config).run(sockets=[sock])
