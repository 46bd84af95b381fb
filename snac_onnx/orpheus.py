"""Orpheus-compatible streaming: LLM token ids or ``<custom_token_N>`` text straight to audio.

Orpheus (24 kHz SNAC) writes audio as frame-interleaved tokens, 7 per frame, with
vocabulary id ``128266 + k * 4096 + code`` for position ``k`` of the frame. Its
tokenizer spells id ``128256 + N`` as ``<custom_token_N>``. Other ids (text,
start/end-of-human/AI markers, padding) are ignored; the end-of-speech id
(128258) flushes the stream and ends it. Unlike the window hack most servers
copy, code 0 is valid, range checks are exact, and every frame is decoded with
full context (see :mod:`snac_onnx.streaming`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from .errors import InvalidArgumentError, InvalidCodesError
from .layouts import ORPHEUS
from .streaming import StreamDecoder

__all__ = ["OrpheusStream", "CUSTOM_TOKEN_BASE", "END_OF_SPEECH", "parse_custom_tokens"]

CUSTOM_TOKEN_BASE = 128256  # id of <custom_token_0>
END_OF_SPEECH = 128258
_TAG = re.compile(r"<custom_token_(\d+)>")
_PARTIAL_TAG = re.compile(r"<(c(u(s(t(o(m(_(t(o(k(e(n(_\d*)?)?)?)?)?)?)?)?)?)?)?)?)?$")


def parse_custom_tokens(text: str) -> list[int]:
    """Vocabulary ids of the ``<custom_token_N>`` tags in ``text`` (other text is ignored)."""
    return [CUSTOM_TOKEN_BASE + int(n) for n in _TAG.findall(text)]


class OrpheusStream:
    """Decode an Orpheus token stream as it is generated; create with :meth:`SnacOnnx.orpheus_stream`.

    ``push`` takes ids (int or iterable of ints) or generated text (str, tags may
    be split across pushes) and returns new final audio (float32, 1-D, 24 kHz).
    After the end-of-speech id, or :meth:`flush`, :attr:`done` is True and
    further pushes return nothing.
    """

    def __init__(self, stream: StreamDecoder, *, end_of_speech: int = END_OF_SPEECH) -> None:
        config = stream.config
        if config.frame_tokens != 7:
            raise InvalidArgumentError(
                f"Orpheus layout is for 3-codebook (24 kHz) models; this one has vq_strides {config.vq_strides}"
            )
        if stream.layout != ORPHEUS:
            raise InvalidArgumentError(
                f"an Orpheus stream needs a StreamDecoder with layout ORPHEUS, got {stream.layout}"
            )
        if isinstance(end_of_speech, bool) or not isinstance(end_of_speech, (int, np.integer)):
            raise InvalidArgumentError(f"end_of_speech must be a token id (int), got {end_of_speech!r}")
        self._stream = stream
        self._end = int(end_of_speech)
        self._low = ORPHEUS.offset
        self._high = ORPHEUS.offset + 7 * ORPHEUS.position_stride
        self._text_tail = ""
        self.done = False

    @property
    def stream(self) -> StreamDecoder:
        """The underlying :class:`~snac_onnx.streaming.StreamDecoder`."""
        return self._stream

    def push(self, item: int | str | Iterable[int]) -> np.ndarray:
        if self.done:
            return np.zeros(0, np.float32)
        if isinstance(item, str):
            text = self._text_tail + item
            match = _PARTIAL_TAG.search(text)
            self._text_tail = text[match.start() :] if match else ""
            ids = parse_custom_tokens(text[: match.start()] if match else text)
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            ids = [int(item)]
        else:
            try:
                arr = np.asarray(list(item))  # type: ignore[arg-type]  # anything iterable is checked below
            except TypeError:
                raise InvalidCodesError(f"push takes token ids or generated text, got {type(item).__name__}") from None
            if arr.size and (arr.dtype.kind not in "iu" or arr.ndim != 1):
                raise InvalidCodesError(f"token ids must be a 1-D sequence of integers, got {arr.dtype} {arr.shape}")
            ids = [int(i) for i in arr]
        pieces = []
        audio_ids: list[int] = []
        for token in ids:
            if token == self._end:
                pieces.append(self._push_audio(audio_ids))
                pieces.append(self.flush())
                break
            if self._low <= token < self._high:
                audio_ids.append(token)
            elif token >= self._high:
                raise InvalidCodesError(
                    f"token id {token} is above the Orpheus audio range [{self._low}, {self._high}); "
                    "is this an Orpheus model's output?"
                )
        else:
            pieces.append(self._push_audio(audio_ids))
        pieces = [p for p in pieces if p.size]
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def _push_audio(self, ids: list[int]) -> np.ndarray:
        return self._stream.push_tokens(np.asarray(ids, np.int64)) if ids else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        """Decode what is left and end the stream. An incomplete last frame is dropped, as Orpheus does."""
        if self.done:
            return np.zeros(0, np.float32)
        self.done = True
        return self._stream.flush(drop_incomplete=True)
