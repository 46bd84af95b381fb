"""The LLM in front of the codec: an OpenAI-compatible ``/v1/completions`` server (llama.cpp's ``llama-server``,
vLLM, LM Studio, sglang...), streamed.

A request is one completion with ``stream: true``; its answer is server-sent events, ``data: {json}`` each, as
llama.cpp and vLLM write them: chunks whose ``choices[0].text`` is the new text (``<custom_token_N>`` tags), with
vLLM's ``choices[0].token_ids`` when asked (``return_token_ids``), a last chunk with a ``finish_reason``, usage
on the last chunk (llama.cpp) or a chunk of its own (vLLM, ``stream_options.include_usage``), then
``data: [DONE]`` (llama.cpp leaves it out after an error). An error before the stream is an HTTP status with an
``{"error": ...}`` body; during it, a ``data: {"error": ...}`` event. Comments (``:``, keep-alives) are skipped.

Leaving the iteration early (an end-of-speech id, a client gone) closes the connection, which both servers take
as the request's cancellation: the LLM's slot is freed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..errors import SnacOnnxError

__all__ = ["Upstream", "UpstreamError", "Piece", "Usage"]

logger = logging.getLogger(__name__)


class UpstreamError(SnacOnnxError):
    """The LLM server could not be reached, refused, failed or stalled.

    Attributes:
        status: the HTTP status this server answers with before any audio: 502 (unreachable, an error), 503 (the
            upstream says it is busy or loading), 504 (it stalled).
        retry_after: the upstream's ``Retry-After``, passed on with a 503.
    """

    def __init__(self, message: str, status: int = 502, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Piece:
    """One streamed chunk: its text, and its token ids where the upstream gives them."""

    text: str
    token_ids: list[int] | None = None
    finish_reason: str | None = None


@dataclass
class Usage:
    """Tokens of a completion, as the upstream counted them (0 where it did not say)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    chunks: int = 0  # streamed chunks with text or ids: the completion's tokens where usage is not reported


@dataclass
class Upstream:
    """An OpenAI-compatible completions server.

    Args:
        url: its base URL (``http://host:port/v1``; ``/v1`` is added when missing).
        api_key: sent as ``Authorization: Bearer``; never logged.
        timeout_s: the longest wait to connect, for the answer, and between two chunks.
        max_line_bytes: the longest event line taken (an endless line is an error, not unbounded memory).
    """

    url: str
    api_key: str | None = None
    timeout_s: float = 30.0
    max_line_bytes: int = 1 << 20
    _client: httpx.AsyncClient | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        base = self.url.rstrip("/")
        return (base if base.endswith("/v1") else base + "/v1") + "/completions"

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.AsyncClient(
                headers=headers, timeout=httpx.Timeout(self.timeout_s), limits=httpx.Limits(max_keepalive_connections=8)
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def complete(self, body: dict[str, Any], usage: Usage) -> AsyncGenerator[Piece, None]:
        """Stream one completion of ``body`` (``stream`` is set here); ``usage`` is filled as it comes.

        Raises:
            UpstreamError: before or during the stream (see the class).
        """
        request = {**body, "stream": True, "stream_options": {"include_usage": True}}
        where = self.endpoint
        try:
            async with self.client().stream("POST", where, json=request) as response:
                if response.status_code != 200:
                    raise _refusal(response.status_code, response.headers, await _head(response), where)
                async for piece in _events(_lines(response, self.max_line_bytes, where), usage, where):
                    yield piece
        except httpx.TimeoutException as error:
            raise UpstreamError(
                f"the LLM at {where} sent nothing for {self.timeout_s} s ({type(error).__name__})", status=504
            ) from None
        except httpx.HTTPError as error:
            raise UpstreamError(f"the LLM at {where} cannot be reached: {error!s} ({type(error).__name__})") from None


def _message(payload: Any) -> str:
    """The message of an ``{"error": ...}`` payload (OpenAI's, llama.cpp's or vLLM's form), or the text."""
    if isinstance(payload, dict) and "error" in payload:
        error = payload["error"]
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(error)
    return str(payload)[:300]


async def _head(response: httpx.Response, limit: int = 64 << 10) -> bytes:
    """At most ``limit`` bytes of an error's body (enough for its message)."""
    head = bytearray()
    async for part in response.aiter_bytes():
        head += part
        if len(head) >= limit:
            break
    return bytes(head[:limit])


def _refusal(code: int, headers: httpx.Headers, body: bytes, where: str) -> UpstreamError:
    try:
        detail = _message(json.loads(body))
    except ValueError:
        detail = body[:300].decode(errors="replace")
    status = 503 if code in (429, 503) else 502
    return UpstreamError(f"the LLM at {where} answered {code}: {detail}", status, headers.get("retry-after"))


async def _lines(response: httpx.Response, limit: int, where: str) -> AsyncIterator[str]:
    """The response's lines, each at most ``limit`` bytes."""
    buffer = bytearray()
    async for part in response.aiter_bytes():
        start = len(buffer)
        buffer += part
        end = buffer.find(b"\n", start)
        while end != -1:
            line = bytes(buffer[:end]).rstrip(b"\r")
            del buffer[: end + 1]
            yield line.decode("utf-8", errors="replace")
            end = buffer.find(b"\n")
        if len(buffer) > limit:
            raise UpstreamError(f"the LLM at {where} sent a line over {limit} bytes")
    if buffer:
        yield bytes(buffer).decode("utf-8", errors="replace")


def _piece(chunk: Any, usage: Usage) -> Piece | None:
    """A chunk's piece (None: a chunk with no choice, vLLM's usage chunk); ValueError, TypeError or KeyError on a
    chunk that is not an OpenAI completion chunk."""
    reported = chunk.get("usage")
    if isinstance(reported, dict):
        usage.prompt_tokens = int(reported.get("prompt_tokens") or 0)
        usage.completion_tokens = int(reported.get("completion_tokens") or 0)
    choices = chunk.get("choices") or []
    if not choices:
        return None
    choice = choices[0]
    text = choice.get("text") or ""
    if not isinstance(text, str):
        raise TypeError(f"choices[0].text is {type(text).__name__}")
    ids = choice.get("token_ids")
    ids = [int(i) for i in ids] if isinstance(ids, list) else None
    if text or ids:
        usage.chunks += 1
    return Piece(text, ids, choice.get("finish_reason"))


async def _events(lines: AsyncIterator[str], usage: Usage, where: str) -> AsyncIterator[Piece]:
    ended = False
    async for line in lines:
        if not line.startswith("data:"):
            continue  # comments (keep-alives), event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise UpstreamError(f"the LLM at {where} sent an event that is not JSON: {data[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise UpstreamError(f"the LLM at {where} sent an event that is not an object: {data[:200]!r}")
        if "error" in chunk:
            raise UpstreamError(f"the LLM at {where} failed during the stream: {_message(chunk)}")
        try:
            piece = _piece(chunk, usage)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise UpstreamError(f"the LLM at {where} sent a malformed chunk ({error}): {data[:200]!r}") from None
        if piece is not None:
            ended = ended or piece.finish_reason is not None
            yield piece
    if not ended:
        raise UpstreamError(f"the LLM at {where} ended its stream before its end (no finish_reason, no [DONE])")
