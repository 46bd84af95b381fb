"""The streaming protocol's words: the client's messages and a stream's query (pydantic models), the audio formats,
the WebSocket close codes and the HTTP status of each refusal.

A client message is one JSON object with one field: ``{"ids": [...]}`` or ``{"text": "..."}`` for a preset stream
(a TTS model's output), ``{"tokens": [...]}`` or ``{"codes": [[...], ...]}`` for a layout stream, or
``{"end": true}`` (also ``{"type": "end"}``) for either. JSON nested deeper than :data:`MAX_JSON_DEPTH` is
malformed, not a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
import pydantic_core
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import InvalidArgumentError
from ..files.audio import pcm16

__all__ = [
    "AUDIO_FORMATS",
    "CLOSE_CODES",
    "MAX_JSON_DEPTH",
    "Message",
    "EndMessage",
    "StreamQuery",
    "TooBigError",
    "parse_json",
    "parse_message",
    "message_data",
    "parse_query",
    "pcm_bytes",
    "pcm_headers",
    "one_line",
]

AUDIO_FORMATS = ("s16le", "f32le")  # raw PCM of the streaming endpoints; /v1/decode also gives "wav"
MAX_JSON_DEPTH = 200  # pydantic_core's JSON parser refuses deeper nesting
CLOSE_CODES = {  # WebSocket close codes, by why the stream closed
    "done": 1000,
    "malformed": 1007,  # a message that is not one of the protocol's, or input the stream refuses
    "policy": 1008,  # a bad query, the idle or read timeout, a stream over max_stream_seconds
    "too_big": 1009,
    "internal": 1011,
    "shutdown": 1012,
    "try_later": 1013,  # max_streams are open, or the server is draining
}
_Int = Annotated[int, Field(gt=-(1 << 62), lt=1 << 62)]


class TooBigError(InvalidArgumentError):
    """A body or message over its limit (HTTP 413, WebSocket 1009)."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class IdsMessage(_Message):
    """A TTS model's token ids (preset streams)."""

    ids: list[_Int]


class TextMessage(_Message):
    """A TTS model's generated text, ``<custom_token_N>`` tags (preset streams whose tokenizer spells them)."""

    text: str


class TokensMessage(_Message):
    """Flat tokens in the stream's layout (layout streams)."""

    tokens: list[_Int]


class CodesMessage(_Message):
    """Whole frames: one list of codes per codebook, coarse first (layout streams)."""

    codes: list[list[_Int]] = Field(min_length=1)


class EndMessage(_Message):
    """No more input."""

    end: Literal[True] | None = None
    type: Literal["end"] | None = None

    @model_validator(mode="after")
    def _one_field(self) -> EndMessage:
        if (self.end is None) == (self.type is None):
            raise ValueError('an end message is {"end": true} (or {"type": "end"}), with no other field')
        return self


Message = IdsMessage | TextMessage | TokensMessage | CodesMessage | EndMessage
_BY_FIELD: dict[str, type[_Message]] = {
    "ids": IdsMessage,
    "text": TextMessage,
    "tokens": TokensMessage,
    "codes": CodesMessage,
    "end": EndMessage,
    "type": EndMessage,
}
PRESET_KINDS = ("ids", "text")
LAYOUT_KINDS = ("tokens", "codes")


def one_line(error: ValidationError | RequestValidationError) -> str:
    """The first problem of a validation error (pydantic's, or FastAPI's of a request), as one line: ``field: what``."""
    errors = error.errors()
    if not errors:
        return str(error)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def parse_json(raw: str | bytes) -> Any:
    """Decode JSON (nesting over :data:`MAX_JSON_DEPTH` is an error, not a recursion crash)."""
    try:
        return pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as error:
        text = str(error)
        if "recursion limit" in text:
            raise InvalidArgumentError(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels") from None
        raise InvalidArgumentError(f"not valid JSON: {text}") from None


def parse_message(raw: str | bytes | Mapping[str, Any], kinds: tuple[str, ...]) -> Message:
    """One client message (JSON text, or an already decoded object) of a stream that takes ``kinds``
    (:data:`PRESET_KINDS` or :data:`LAYOUT_KINDS`) or ``end``.

    Raises:
        InvalidArgumentError: anything else, with a one-line reason.
    """
    obj = parse_json(raw) if isinstance(raw, (str, bytes)) else raw
    if not isinstance(obj, dict):
        raise InvalidArgumentError(f"a message is a JSON object, got {type(obj).__name__}")
    fields = [k for k in obj if k in _BY_FIELD]
    model = _BY_FIELD[fields[0]] if len(fields) == 1 and len(obj) == 1 else None
    if model is None:
        raise InvalidArgumentError(
            f'a message has one field of {list(kinds)} (or is {{"end": true}}); got fields {sorted(obj)}'
        )
    if model is not EndMessage and fields[0] not in kinds:
        raise InvalidArgumentError(
            f"this stream takes {' or '.join(kinds)} ({'preset' if 'ids' in kinds else 'layout'} stream); "
            f"got {fields[0]!r}"
        )
    try:
        message: Message = model.model_validate(obj)  # type: ignore[assignment]  # one of Message's models
    except ValidationError as error:
        raise InvalidArgumentError(one_line(error)) from None
    return message


def message_data(message: Message) -> Any:
    """What a message hands to the stream: ids or tokens as int64, codes as int64 arrays, text as is; None for
    the end."""
    if isinstance(message, (IdsMessage, TokensMessage)):
        return np.asarray(message.ids if isinstance(message, IdsMessage) else message.tokens, np.int64)
    if isinstance(message, CodesMessage):
        return [np.asarray(c, np.int64) for c in message.codes]
    if isinstance(message, TextMessage):
        return message.text
    return None


class StreamQuery(BaseModel):
    """A stream's options, from its query string: a preset (a TTS model's ids or text) or a layout (flat tokens or
    codes), the audio format, and the decoder's noise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str | None = Field(None, description="a TTS model's ids or text, e.g. orpheus (not with layout)")
    layout: str | None = Field(None, description="flat tokens or codes in this layout (default interleaved)")
    format: Literal["s16le", "f32le", "wav"] = Field("s16le", description="audio format: raw PCM, or a WAV file")
    noise: bool = Field(False, description="add the decoder's noise (as the official model does)")
    seed: int | None = Field(None, ge=0, description="seed of the noise (with noise=true)")

    @model_validator(mode="after")
    def _preset_or_layout(self) -> StreamQuery:
        if self.preset is not None and self.layout is not None:
            raise ValueError("give preset (for a TTS model's ids or text) or layout (for tokens or codes), not both")
        return self

    @property
    def kinds(self) -> tuple[str, ...]:
        """The message fields the stream takes."""
        return PRESET_KINDS if self.preset is not None else LAYOUT_KINDS


def parse_query(params: Mapping[str, str], formats: tuple[str, ...]) -> StreamQuery:
    """A stream's query from the request's parameters, with ``format`` one of ``formats`` (default: the first).

    Raises:
        InvalidArgumentError: an unknown parameter or a bad value, with a one-line reason.
    """
    try:
        query = StreamQuery.model_validate({"format": formats[0], **params})
    except ValidationError as error:
        raise InvalidArgumentError(f"query: {one_line(error)}") from None
    if query.format not in formats:
        raise InvalidArgumentError(f"query: format must be one of {list(formats)}, got {query.format!r}")
    return query


def pcm_bytes(audio: np.ndarray, fmt: str) -> bytes:
    """float32 audio as raw little-endian PCM: ``s16le`` or ``f32le``."""
    if fmt == "f32le":
        return bytes(audio.astype("<f4").tobytes())
    return pcm16(audio)


def pcm_headers(rate: int, fmt: str) -> dict[str, str]:
    """The headers of a raw PCM response."""
    return {"X-Sample-Rate": str(rate), "X-Audio-Format": fmt, "X-Channels": "1"}
