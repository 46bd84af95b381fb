"""The server's own key (``--api-key``): ``Authorization: Bearer <key>`` on every ``/v1/`` endpoint; health,
readiness and metrics answer without it. A missing or wrong key is HTTP 401 (a WebSocket: closed 1008 at the
handshake)."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, WebSocketException
from starlette.requests import HTTPConnection

__all__ = ["require_key"]


async def require_key(connection: HTTPConnection) -> None:
    """A FastAPI dependency: refuses a request without the server's key (when it has one)."""
    key = connection.app.state.service.settings.api_key
    if key is None:
        return
    given = connection.headers.get("authorization", "")
    if hmac.compare_digest(given.encode(), f"Bearer {key.get_secret_value()}".encode()):
        return
    message = "this server needs 'Authorization: Bearer <key>' (its --api-key)"
    if connection.scope["type"] == "websocket":
        raise WebSocketException(code=1008, reason=message)
    raise HTTPException(
        status_code=401,
        detail={"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"},
        headers={"WWW-Authenticate": "Bearer"},
    )
