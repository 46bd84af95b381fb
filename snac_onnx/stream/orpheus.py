"""Orpheus-compatible streaming: LLM token ids or ``<custom_token_N>`` text straight to audio.

Orpheus (24 kHz SNAC) writes audio as frame-interleaved tokens, 7 per frame, with
vocabulary id ``128266 + k * 4096 + code`` for position ``k`` of the frame. Its
tokenizer spells id ``128256 + N`` as ``<custom_token_N>``. Other ids (text,
start/end-of-human/AI markers, padding) are ignored; the end-of-speech id
(128258) flushes the stream and ends it. Unlike the window hack most servers
copy, code 0 is valid, range checks are exact, and every frame is decoded with
full context (see :mod:`snac_onnx.stream.decoder`). The rules are the ``orpheus`` preset
of :mod:`snac_onnx.stream.presets`; this module keeps Orpheus's names.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import InvalidArgumentError
from .decoder import StreamDecoder
from .presets import PRESETS, PresetStream, custom_token_ids

__all__ = ["OrpheusStream", "CUSTOM_TOKEN_BASE", "END_OF_SPEECH", "parse_custom_tokens"]

_ORPHEUS = PRESETS["orpheus"]
CUSTOM_TOKEN_BASE: int = _ORPHEUS.custom_token_base or 0  # id of <custom_token_0>
END_OF_SPEECH: int = _ORPHEUS.end_of_speech[0]


def parse_custom_tokens(text: str) -> list[int]:
    """Vocabulary ids of the ``<custom_token_N>`` tags in ``text`` (other text is ignored)."""
    return custom_token_ids(text, CUSTOM_TOKEN_BASE)


class OrpheusStream(PresetStream):
    """Decode an Orpheus token stream as it is generated; create with :meth:`SnacOnnx.orpheus_stream`.

    A :class:`~snac_onnx.stream.presets.PresetStream` of the ``orpheus`` preset whose end-of-speech id
    may be changed (``end_of_speech``).
    """

    def __init__(self, stream: StreamDecoder, *, end_of_speech: int = END_OF_SPEECH) -> None:
        if isinstance(end_of_speech, bool) or not isinstance(end_of_speech, (int, np.integer)):
            raise InvalidArgumentError(f"end_of_speech must be a token id (int), got {end_of_speech!r}")
        super().__init__(stream, dataclasses.replace(_ORPHEUS, end_of_speech=(int(end_of_speech),)))
