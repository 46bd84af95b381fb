"""What ``snac-onnx serve`` runs, written once: the settings (pydantic-settings), from which the command line's
flags and the ``SNAC_ONNX_*`` environment variables both come.

Each field's name gives its flag (``max_streams`` -> ``--max-streams``; a trailing ``_s``, seconds, is dropped:
``idle_timeout_s`` -> ``--idle-timeout``) and its environment variable (``SNAC_ONNX_MAX_STREAMS``); its
description is the flag's help, its default the one default shown. A flag given wins over the environment.
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..errors import InvalidArgumentError
from ..model.hub import DEFAULT_MODEL
from ..stream.pool import DEFAULT_MAX_BUFFER_SECONDS

__all__ = ["ServeSettings", "load_settings", "add_arguments", "settings_from_arguments", "ENV_PREFIX"]

ENV_PREFIX = "SNAC_ONNX_"
_SHORT = {"model": "-m"}


class ServeSettings(BaseSettings):
    """What ``snac-onnx serve`` runs (one model per process). Every field is a flag and an environment variable
    (see the module docstring); ``create_app`` uses the model and limits, ``serve`` the address too."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    model: str = Field(DEFAULT_MODEL, description="model folder, short name or hub repo id")
    providers: tuple[str, ...] | None = Field(
        None, description="onnxruntime execution providers, in order (default: CPU)"
    )
    precision: str = Field("fp32", description="graph precision from the export (fp32, or a variant it holds)")
    threads: int = Field(
        1,
        ge=0,
        description="onnxruntime threads of each batched call (0: onnxruntime chooses); on CPU one thread per call "
        "and a worker per core do best",
    )
    workers: int | None = Field(
        None, ge=1, description="batched calls at once (default: a worker per CPU core on CPU, one on a GPU)"
    )
    batching: Literal["auto", "on", "off"] = Field(
        "auto",
        description="stack the steps of several streams in one call (auto: off when the stream graph runs on the "
        "CPU only, where it does not pay)",
    )
    max_batch: int | None = Field(
        None, ge=1, description="steps per batched call (default: the codec's memory budget, at most 16)"
    )
    collect_ms: float = Field(1.0, ge=0, le=1000, description="how long a ready step waits for others to join (ms)")
    max_streams: int = Field(
        64,
        ge=1,
        description="streams open at once, WebSocket and HTTP, counted until each connection closes; beyond: "
        "refused (WebSocket 1013, HTTP 503)",
    )
    max_encodes: int = Field(
        2, ge=1, description="encode requests admitted at once (one runs at a time); beyond: 503 before the body"
    )
    max_message_bytes: int = Field(1 << 20, ge=1, description="largest WebSocket message or NDJSON line (bytes)")
    max_body_bytes: int = Field(64 << 20, ge=1, description="largest HTTP body (bytes)")
    idle_timeout_s: float = Field(
        30.0,
        ge=0,
        description="a stream whose client sends nothing for this long before the stream's end is closed (1008; "
        "s; 0: never); it no longer applies once the stream has ended",
    )
    read_timeout_s: float = Field(
        20.0,
        gt=0,
        description="a client that reads none of the audio waiting for it for this long is closed (1008; s)",
    )
    max_buffer_seconds: float = Field(
        DEFAULT_MAX_BUFFER_SECONDS,
        gt=0,
        description="audio decoded ahead of what a client has read, per stream (s); a full buffer pauses the "
        "stream's decoding, costing nothing, until the client reads",
    )
    max_stream_seconds: float = Field(
        600.0, ge=0, description="longest stream, in seconds of audio (0: no bound); beyond: closed (1008)"
    )
    shutdown_grace_s: float = Field(10.0, ge=0, description="at shutdown, how long live streams get to finish (s)")
    verify: bool = Field(True, description="check the graph files' sha256 when loading")
    api_key: SecretStr | None = Field(
        None, description="a key this server requires as 'Authorization: Bearer <key>' on /v1/ (default: none)"
    )
    llm: str | None = Field(
        None,
        description="an OpenAI-compatible LLM server (its base URL, e.g. http://127.0.0.1:8080/v1) that generates "
        "the preset's audio tokens: enables POST /v1/audio/speech (default: none)",
    )
    preset: str | None = Field(None, description="with --llm: the TTS model's preset, e.g. orpheus (default: none)")
    llm_model: str | None = Field(None, description="with --llm: the model name sent upstream (default: the preset's)")
    llm_api_key: SecretStr | None = Field(
        None, description="with --llm: the upstream's API key, sent as a bearer token and never logged (default: none)"
    )
    llm_timeout_s: float = Field(
        30.0, gt=0, description="with --llm: the longest wait for the upstream's answer or its next token (s)"
    )
    temperature: float | None = Field(None, ge=0, description="with --llm: sampling (default: the preset's)")
    top_p: float | None = Field(None, gt=0, le=1, description="with --llm: sampling (default: the preset's)")
    repetition_penalty: float | None = Field(None, gt=0, description="with --llm: sampling (default: the preset's)")
    max_tokens: int | None = Field(
        None, ge=7, description="with --llm: tokens one generation may take (default: the preset's)"
    )
    max_input_chars: int = Field(4096, ge=1, description="with --llm: the longest input text of one request")
    piece_chars: int = Field(
        200, ge=20, description="with --llm: the longest piece of input one generation gets (split at sentences)"
    )
    speech_pieces: int = Field(
        2, ge=1, description="with --llm: pieces of one request generated at once (each its own stream)"
    )
    join_ms: float = Field(100.0, ge=0, le=5000, description="with --llm: silence between the pieces of an input (ms)")
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every interface)")
    port: int = Field(8000, ge=1, le=65535, description="port to listen on")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="log level")
    ray: bool = Field(False, description="deploy on Ray Serve instead of one uvicorn process")
    replicas: int = Field(1, ge=1, description="with --ray: replicas of the deployment")
    address: str | None = Field(
        None, description="with --ray: the Ray cluster's address (default: RAY_ADDRESS, else a local Ray)"
    )

    @model_validator(mode="after")
    def _llm_and_preset(self) -> ServeSettings:
        if (self.llm is None) != (self.preset is None):
            raise ValueError("--llm and --preset go together: the LLM server and the TTS model's preset")
        return self

    @property
    def batching_choice(self) -> bool | None:
        """``batching`` as the pool takes it: True, False or None (auto)."""
        return {"auto": None, "on": True, "off": False}[self.batching]


def load_settings(**values: Any) -> ServeSettings:
    """:class:`ServeSettings` from ``values`` (strings are parsed) over the environment; a bad value is an
    :class:`InvalidArgumentError` naming its flag (or its environment variable, where it came from there)."""
    try:
        return ServeSettings(**values)
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        if not first["loc"]:  # a check of several fields
            raise InvalidArgumentError(str(first["msg"]).removeprefix("Value error, ")) from None
        if name not in ServeSettings.model_fields:
            flag = name
        else:
            flag = flag_name(name) if name in values else f"{ENV_PREFIX}{name.upper()}"
        given = first.get("input")
        raise InvalidArgumentError(f"{flag}: {first['msg'].lower()} (got {given!r})") from None


def flag_name(field: str) -> str:
    """The command line flag of a settings field: ``idle_timeout_s`` -> ``--idle-timeout``."""
    return "--" + field.removesuffix("_s").replace("_", "-")


def _kind(annotation: Any) -> tuple[str, tuple[str, ...]]:
    """``(kind, choices)`` of a field's type: kind is bool, list or value; choices for a Literal."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if annotation is bool:
        return "bool", ()
    if typing.get_origin(annotation) is Literal:
        return "value", tuple(str(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _kind(args[0])
    if typing.get_origin(annotation) is tuple:
        return "list", ()
    return "value", ()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per settings field to ``parser`` (defaults suppressed: a flag not given leaves the
    environment's value, else the field's default, which the help shows)."""
    for name, field in ServeSettings.model_fields.items():
        kind, choices = _kind(field.annotation)
        default = field.default
        help_text = str(field.description)  # a field without a default says what none means, and so its default
        if default is not None:
            help_text += f" (default: {str(default).lower() if isinstance(default, bool) else default})"
        flag = flag_name(name)
        flags = [f for f in (_SHORT.get(name), flag) if f]
        options: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        metavar = flag.removeprefix("--").replace("-", "_").upper()
        if kind == "bool" and default is False:
            parser.add_argument(*flags, action="store_const", const=True, **options)
        elif kind == "bool":
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **options)
        elif kind == "list":
            parser.add_argument(*flags, nargs="+", metavar=metavar.removesuffix("S"), **options)
        else:
            parser.add_argument(*flags, choices=choices or None, metavar=None if choices else metavar, **options)


def settings_from_arguments(args: argparse.Namespace) -> ServeSettings:
    """The settings of a parsed command line (flags given, over the environment, over the defaults)."""
    given = {name: getattr(args, name) for name in ServeSettings.model_fields if hasattr(args, name)}
    if "providers" in given:
        given["providers"] = tuple(given["providers"])
    return load_settings(**given)
