"""An OpenAI-compatible completions server on loopback that replays scripted token streams, framed as llama.cpp's
``llama-server`` and vLLM frame them (the SSE events, the final chunk, usage, ``[DONE]``, errors), with pacing and
faults. For the speech front's tests and benchmark.

It speaks HTTP/1.1 over raw asyncio streams, so that every byte and every disconnect is under its control: a
client that goes away mid-stream is counted in :attr:`FakeLLM.cancelled` (the slot a real server would free).

A script is a list of steps, made per request by ``FakeLLM.script(body)``:

* ``("tokens", [id, ...])``: one chunk per id, its text ``<custom_token_{id - base}>`` (vLLM: with ``token_ids``);
* ``("text", "...")``: one chunk of plain text;
* ``("sleep", seconds)``; ``("at", seconds)``: until that long after the stream's first step;
  ``("wait", threading.Event)``: until the test sets it; ``("hang",)``: never ends;
* ``("error", message)``: an error event mid-stream (llama.cpp: then the stream ends without ``[DONE]``);
* ``("finish", reason)``: the final chunk's ``finish_reason`` (default ``stop``); ``("raw", text)``: an event's data
  as given (a malformed one);
* ``("status", code, body_dict[, retry_after])``: as the first step, an HTTP error instead of the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["FakeLLM", "orpheus_steps"]

Step = tuple[Any, ...]


def orpheus_steps(ids: list[int], base: int = 128256, gap: float = 0.0) -> list[Step]:
    """The audio ids as a model streams them, one chunk per token, frame ``k`` at ``k * gap`` s after the first (an
    LLM at exactly that rate); it stops at its end of speech (the server removes the stop text from its output)."""
    if not gap:
        return [("tokens", ids)]
    steps: list[Step] = []
    for k, i in enumerate(range(0, len(ids), 7)):
        steps += [("at", k * gap), ("tokens", ids[i : i + 7])]
    return steps


class FakeLLM:
    """The server; ``start()`` runs it on a thread of its own, ``stop()`` ends it.

    Attributes:
        flavor: ``llama.cpp`` or ``vllm`` (token ids in the chunks, usage in a chunk of its own, ``[DONE]`` always).
        requests: the JSON bodies received; headers: their headers.
        sent_tokens: tokens streamed so far, over all requests; completed, cancelled: streams that ended normally,
            or whose client went away first.
    """

    def __init__(self, script: Callable[[dict[str, Any]], list[Step]], flavor: str = "llama.cpp", base: int = 128256):
        self.script, self.flavor, self.base = script, flavor, base
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.sent_tokens = 0
        self.first_token_at: dict[str, float] = {}  # per prompt: when its first token went out (monotonic s)
        self.completed = 0
        self.cancelled = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._server: asyncio.AbstractServer | None = None

    # ------------------------------------------------------------------ life
    def start(self) -> FakeLLM:
        self._thread = threading.Thread(target=self._run, name="fake-llm", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the fake LLM did not start")
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()

        async def main() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            async with self._server:
                await self._server.serve_forever()

        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(main())

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            for task in asyncio.all_tasks(self._loop):
                self._loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 600.0) -> bool:
        end = time.monotonic() + timeout
        while not predicate() and time.monotonic() < end:
            time.sleep(0.01)
        return predicate()

    # ------------------------------------------------------------------ HTTP
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if method != "POST" or not path.endswith("/completions"):
            await self._json(writer, 404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})
            return True
        request = json.loads(body)
        self.requests.append(request)
        self.headers.append(headers)
        steps = self.script(request)
        if steps and steps[0][0] == "status":
            extra = {"Retry-After": steps[0][3]} if len(steps[0]) > 3 else {}
            await self._json(writer, steps[0][1], steps[0][2], extra)
            return True
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n"
        )
        gone = asyncio.ensure_future(reader.read(1))  # the client closing its side (or sending more: not here)
        try:
            ended = await self._stream(writer, steps, gone, str(request.get("prompt")))
        except (ConnectionError, OSError):
            ended = False
        finally:
            gone.cancel()
        if not ended:
            self.cancelled += 1
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        self.completed += 1
        return False  # one stream per connection (its watch for the client's going reads from it)

    async def _json(self, writer: asyncio.StreamWriter, status: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        head = f"HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (extra or {}).items())
        writer.write(head.encode() + b"\r\n" + data)
        await writer.drain()

    async def _event(self, writer: asyncio.StreamWriter, payload: dict[str, Any] | str, gone: asyncio.Future[bytes]) -> None:
        if gone.done():
            raise ConnectionResetError("the client went away")
        data = ("data: " + (payload if isinstance(payload, str) else json.dumps(payload)) + "\n\n").encode()
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()

    def _chunk(self, text: str, ids: list[int] | None, finish: str | None) -> dict[str, Any]:
        choice: dict[str, Any] = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        if self.flavor == "vllm":
            choice["stop_reason"] = None
            if ids is not None:
                choice["token_ids"] = ids
        return {"id": "cmpl-test", "object": "text_completion", "created": 0, "model": "fake", "choices": [choice]}

    async def _stream(
        self, writer: asyncio.StreamWriter, steps: list[Step], gone: asyncio.Future[bytes], prompt: str
    ) -> bool:
        sent = 0
        finish = "stop"
        started = time.monotonic()
        for step in steps:
            kind = step[0]
            if kind == "sleep":
                await asyncio.wait({gone}, timeout=step[1])
            elif kind == "at":
                await asyncio.wait({gone}, timeout=max(0.0, started + step[1] - time.monotonic()))
            elif kind == "wait":
                event: threading.Event = step[1]
                while not event.is_set() and not gone.done():
                    await asyncio.sleep(0.01)
            elif kind == "hang":
                await asyncio.wait({gone})
            elif kind == "text":
                await self._event(writer, self._chunk(step[1], None, None), gone)
            elif kind == "raw":
                await self._event(writer, step[1], gone)
            elif kind == "finish":
                finish = step[1]
            elif kind == "tokens":
                for token in step[1]:
                    self.first_token_at.setdefault(prompt, time.monotonic())
                    await self._event(writer, self._chunk(f"<custom_token_{token - self.base}>", [token], None), gone)
                    sent += 1
                    self.sent_tokens += 1
            elif kind == "error":
                error = {"code": 500, "message": step[1], "type": "server_error"}
                await self._event(writer, {"error": error}, gone)
                if self.flavor == "vllm":
                    await self._event(writer, "[DONE]", gone)
                return True
            if gone.done():
                return False
        usage = {"prompt_tokens": 20, "completion_tokens": sent, "total_tokens": 20 + sent}
        final = self._chunk("", None, finish)
        if self.flavor == "vllm":
            await self._event(writer, final, gone)
            await self._event(writer, {**self._chunk("", None, None), "choices": [], "usage": usage}, gone)
        else:
            await self._event(writer, {**final, "usage": usage}, gone)
        await self._event(writer, "[DONE]", gone)
        return True
