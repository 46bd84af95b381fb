"""``GET /healthz`` (the process is up), ``/readyz`` (the model is loaded and the server not draining),
``/metrics`` (Prometheus), answered without a key, and ``/v1/info`` (the model and the limits; with ``--api-key``,
only with it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from .auth import require_key
from .service import Service

__all__ = ["router"]

router = APIRouter()


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    service = _service(request)
    if not service.ready:
        return JSONResponse({"status": "not ready"}, status_code=503)
    return JSONResponse({"status": "ready", "streams_active": service.pool.streams_active})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    body, content_type = _service(request).metrics.render()
    return Response(body, media_type=content_type)


@router.get("/v1/info", dependencies=[Depends(require_key)])
async def info(request: Request) -> dict[str, Any]:
    front = request.app.state.speech
    speech = None if front is None else {"preset": front.preset.name, "models": list(front.model_names)}
    return {**_service(request).info(), "speech": speech}
