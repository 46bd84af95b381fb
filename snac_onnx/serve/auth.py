"""The server's own key (``--api-key``): ``Authorization: Bearer <key>`` on every ``/v1/`` endpoint; health,
readiness and metrics answer without it. Over HTTP a missing or wrong key is 401; a WebSocket is accepted, sent an
error message and closed 1008 (as a bad query is)."""

from __future__ import annotations

import hmac

from fastapi import HTTPException
from starlette.requests import HTTPConnection

__all__ = ["require_key", "key_ok", "KEY_MESSAGE"]

KEY_MESSAGE = "this server needs 'Authorization: Bearer <key>' (its --api-key)"


def key_ok(connection: HTTPConnection) -> bool:
    """Whether the request carries the server's key (always, when it has none)."""
    key = connection.app.state.service.settings.api_key
    if key is None:
        return True
    given = connection.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {key.get_secret_value()}".encode())


async def require_key(connection: HTTPConnection) -> None:
    """A FastAPI dependency of the HTTP routes: 401 without the server's key."""
    if not key_ok(connection):
        raise HTTPException(
            status_code=401,
            detail={"message": KEY_MESSAGE, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"},
            headers={"WWW-Authenticate": "Bearer"},
        )
