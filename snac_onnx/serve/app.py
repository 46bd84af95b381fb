"""The ASGI app (FastAPI): the routers of each concern over one :class:`~snac_onnx.serve.service.Service`.

One model per process. The endpoints and their protocol are documented in docs/serving.md; each router's module says
what it answers: :mod:`~snac_onnx.serve.ws` (``WS /v1/stream``), :mod:`~snac_onnx.serve.http` (decode, streamed
decode, encode), :mod:`~snac_onnx.serve.status` (health, readiness, metrics, info).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from . import http, speech, status, ws
from .auth import require_key
from .protocol import one_line
from .service import Service
from .settings import ServeSettings
from .speech_job import SpeechFront

if TYPE_CHECKING:
    from ..codec import SnacOnnx

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(settings: ServeSettings | None = None, *, codec: SnacOnnx | None = None) -> FastAPI:
    """The ASGI app. ``codec``: an already made codec to serve (the settings' model, providers, precision and
    threads are then not used; the text-to-speech front, with ``--llm``, is checked against it now); otherwise one
    is made from ``settings`` at startup."""
    service = Service(settings or ServeSettings(), codec)
    front = None
    if codec is not None and service.settings.llm is not None:
        front = SpeechFront(service.settings, codec)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)
        if service.settings.llm is not None and app.state.speech is None:
            app.state.speech = SpeechFront(service.settings, service.codec)
        yield
        await run_in_threadpool(service.stop)
        if app.state.speech is not None:
            await app.state.speech.upstream.close()

    app = FastAPI(title="snac-onnx", lifespan=lifespan)
    app.state.service = service
    app.state.speech = front  # the text-to-speech front, with --llm
    app.include_router(ws.router)  # checks the key itself, after the handshake (close 1008 with a reason)
    for module in (http, speech):
        app.include_router(module.router, dependencies=[Depends(require_key)])
    app.include_router(status.router)  # health, readiness and metrics answer without a key; /v1/info needs it

    @app.exception_handler(RequestValidationError)
    async def one_line_400(request: Request, error: RequestValidationError) -> JSONResponse:
        return http.refusal(service, request.url.path, 400, one_line(error))

    return app
