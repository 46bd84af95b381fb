"""Token presets of the SNAC TTS family: how each model's LLM ids become SNAC 24 kHz audio.

Several LLM TTS models speak SNAC 24 kHz tokens and disagree on ids. A :class:`TokenPreset`
carries one model's rules: its audio-id layout (base, per-slot stride, the 7-slot frame order
``[c0, c1, c2, c2, c1, c2, c2]``), its start- and end-of-speech ids, and whether its tokenizer
spells audio ids as ``<custom_token_N>`` text. :class:`PresetStream` decodes any preset's
stream as it is generated (a new model is a preset, not a class). Out-of-range ids are an
error (strict), as in every reference below; a preset of your own may ask for ``modulo``
handling (``code = (id - base) % codebook_size``, whatever the slot) and for an output
``trim_samples`` where its model's reference does that (both off by default).

Each number was read in the model's own published inference code (cited per preset):

* ``orpheus``: canopyai/Orpheus-TTS ``orpheus_tts_pypi/orpheus_tts/decoder.py``
  (``turn_token_into_id``: ``int(N) - 10 - (index % 7) * 4096`` for ``<custom_token_N>``,
  which is id ``128256 + N``: so id ``128266 + slot * 4096 + code``), ``engine_class.py``
  (the prompt ends with start-of-speech 128257) and ``realtime_streaming_example/main.py``
  (``stop_token_ids=[128258]``: end of speech).
* ``vyvotts-qwen3``, ``vyvotts-lfm2``, ``vyvotts-llama3``: Vyvo-Labs/VyvoTTS
  ``vyvotts/configs/inference/{qwen3,lfm2,llama3}.yaml`` (``AUDIO_TOKENS_START`` 151679 /
  64410 / 128266, ``START_OF_SPEECH`` 151670 / 64401 / 128257, ``END_OF_SPEECH`` 151671 /
  64402 / 128258), ``vyvotts/codec.py`` (slot order and ``+ k * 4096``) and
  ``vyvotts/inference/constraints.py`` (ids outside their slot's range are rejected).
* ``mini-omni``: gpt-omni/mini-omni ``utils/snac_utils.py``: seven parallel audio heads, one
  per slot of the same 7-token frame, head ``j`` delayed by ``j + 1`` steps
  (``reconscruct_snac``: ``output_list[i][i + 1:]``); per-layer vocabulary padded to 4160 with
  end-of-audio 4097 (``SnacConfig``); input ids ``code + 152000 + layer * 4160``
  (``layershift``). :class:`MiniOmniHeads` undoes the delay.

Not here, because their inference code could not be read from this project's machines (the
Hugging Face Hub is unreachable): Veena, Maya1 (reported to take ``(id - 128266) % 4096`` and
trim the first 2048 samples) and Calliope. Orpheus's ids decode them where they agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgumentError, InvalidCodesError
from ..layouts import MINI_OMNI, ORPHEUS, VYVOTTS_LFM2, VYVOTTS_QWEN3, TokenLayout
from .decoder import StreamDecoder

__all__ = [
    "TokenPreset",
    "PRESETS",
    "get_preset",
    "custom_token_ids",
    "PresetStream",
    "MiniOmniHeads",
    "MINI_OMNI_END_OF_AUDIO",
]

FRAME = 7  # tokens per 24 kHz frame: every preset here is for SNAC 24 kHz
MINI_OMNI_END_OF_AUDIO = 4097  # mini-omni's end-of-audio in each head's (padded, 4160) vocabulary
_TAG = re.compile(r"<custom_token_(\d+)>")
_PARTIAL_TAG = re.compile(r"<(c(u(s(t(o(m(_(t(o(k(e(n(_\d*)?)?)?)?)?)?)?)?)?)?)?)?)?$")


@dataclass(frozen=True)
class TokenPreset:
    """One TTS model's token rules.

    Attributes:
        name: the preset's name (also a layout name: ``--layout NAME``).
        layout: where audio ids lie (``offset + slot * position_stride + code``).
        start_of_speech: the id that opens the audio part (skipped in a stream), or None.
        end_of_speech: ids that end the audio (a stream flushes and ends there).
        custom_token_base: id of ``<custom_token_0>`` when the tokenizer spells ids as such
            text (Orpheus), else None (the stream then takes ids only).
        source: where the numbers were read.
        modulo: take ``(id - offset) % codebook_size`` as the code of any id in the audio range,
            whatever its slot, as some references do (default False: an id in another slot's
            range is an error).
        trim_samples: samples the reference drops from the start of the output (a warm-up);
            0 (default) keeps them: they are exact audio here.
    """

    name: str
    layout: TokenLayout
    start_of_speech: int | None
    end_of_speech: tuple[int, ...]
    custom_token_base: int | None
    source: str
    modulo: bool = False
    trim_samples: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidArgumentError(f"a preset's name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.layout, TokenLayout) or self.layout.order != "interleaved":
            raise InvalidArgumentError(f"a preset's layout must be an interleaved TokenLayout, got {self.layout!r}")
        ids = [self.start_of_speech, *self.end_of_speech, self.custom_token_base]
        if any(i is not None and (isinstance(i, bool) or not isinstance(i, int) or i < 0) for i in ids):
            raise InvalidArgumentError(f"a preset's special ids must be ints >= 0 or None, got {ids}")
        if not isinstance(self.modulo, bool):
            raise InvalidArgumentError(f"modulo must be True or False, got {self.modulo!r}")
        if isinstance(self.trim_samples, bool) or not isinstance(self.trim_samples, int) or self.trim_samples < 0:
            raise InvalidArgumentError(f"trim_samples must be an int >= 0, got {self.trim_samples!r}")

    @property
    def audio_range(self) -> tuple[int, int]:
        """``[low, high)`` of this preset's audio ids."""
        return self.layout.offset, self.layout.offset + FRAME * self.layout.position_stride


PRESETS: dict[str, TokenPreset] = {
    preset.name: preset
    for preset in (
        TokenPreset("orpheus", ORPHEUS, 128257, (128258,), 128256, "canopyai/Orpheus-TTS orpheus_tts/decoder.py"),
        TokenPreset(
            "vyvotts-llama3", ORPHEUS, 128257, (128258,), None, "Vyvo-Labs/VyvoTTS configs/inference/llama3.yaml"
        ),
        TokenPreset(
            "vyvotts-qwen3", VYVOTTS_QWEN3, 151670, (151671,), None, "Vyvo-Labs/VyvoTTS configs/inference/qwen3.yaml"
        ),
        TokenPreset(
            "vyvotts-lfm2", VYVOTTS_LFM2, 64401, (64402,), None, "Vyvo-Labs/VyvoTTS configs/inference/lfm2.yaml"
        ),
        TokenPreset("mini-omni", MINI_OMNI, None, (), None, "gpt-omni/mini-omni utils/snac_utils.py"),
    )
}


def custom_token_ids(text: str, base: int) -> list[int]:
    """Vocabulary ids of the ``<custom_token_N>`` tags in ``text`` (id ``base + N``; other text is ignored)."""
    return [base + int(n) for n in _TAG.findall(text)]


def get_preset(preset: TokenPreset | str) -> TokenPreset:
    """A :class:`TokenPreset`, or one of the names in :data:`PRESETS`."""
    if isinstance(preset, TokenPreset):
        return preset
    if isinstance(preset, str) and preset in PRESETS:
        return PRESETS[preset]
    raise InvalidArgumentError(f"preset must be a TokenPreset or one of {sorted(PRESETS)}, got {preset!r}")


class PresetStream:
    """Decode one TTS model's token stream as it is generated; create with :meth:`SnacOnnx.preset_stream`.

    ``push`` takes ids (an int or an iterable of ints) or, for presets whose tokenizer spells
    audio ids as ``<custom_token_N>``, generated text (tags may be split across pushes); it
    returns new final audio (float32, 1-D, 24 kHz). Ids below the audio range (text, markers,
    start of speech) are skipped; an id above it is an error. After an end-of-speech id, or
    :meth:`flush`, :attr:`done` is True and further pushes return nothing.
    """

    def __init__(self, stream: StreamDecoder, preset: TokenPreset | str) -> None:
        self.preset = get_preset(preset)
        config = stream.config
        if config.frame_tokens != FRAME:
            raise InvalidArgumentError(
                f"preset {self.preset.name!r} is for 3-codebook (24 kHz) models; this one has vq_strides "
                f"{config.vq_strides}"
            )
        if stream.layout != self.preset.layout:
            raise InvalidArgumentError(
                f"a {self.preset.name!r} stream needs a StreamDecoder with layout {self.preset.layout}, got "
                f"{stream.layout}"
            )
        self._stream = stream
        self._end = frozenset(self.preset.end_of_speech)
        self._low, self._high = self.preset.audio_range
        self._text_tail = ""
        self._slot = 0  # position in the frame of the next audio id (for modulo handling)
        self._to_trim = self.preset.trim_samples
        self.done = False

    @property
    def stream(self) -> StreamDecoder:
        """The underlying :class:`~snac_onnx.stream.decoder.StreamDecoder`."""
        return self._stream

    def _ids(self, item: int | str | Iterable[int]) -> list[int]:
        if isinstance(item, str):
            base = self.preset.custom_token_base
            if base is None:
                raise InvalidArgumentError(
                    f"preset {self.preset.name!r} takes token ids, not text: its tokenizer has no <custom_token_N>"
                )
            text = self._text_tail + item
            match = _PARTIAL_TAG.search(text)
            self._text_tail = text[match.start() :] if match else ""
            return custom_token_ids(text[: match.start()] if match else text, base)
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            return [int(item)]
        try:
            arr = np.asarray(list(item))  # type: ignore[arg-type]  # anything iterable is checked below
        except ValueError:  # NumPy refuses ragged nested lists
            raise InvalidCodesError("token ids must be a 1-D sequence of integers, got nested lists") from None
        except TypeError:
            raise InvalidCodesError(f"push takes token ids or generated text, got {type(item).__name__}") from None
        if arr.size and (arr.dtype.kind not in "iu" or arr.ndim != 1):
            raise InvalidCodesError(f"token ids must be a 1-D sequence of integers, got {arr.dtype} {arr.shape}")
        return [int(i) for i in arr]

    def push(self, item: int | str | Iterable[int]) -> np.ndarray:
        if self.done:
            return np.zeros(0, np.float32)
        pieces = []
        audio_ids: list[int] = []
        for token in self._ids(item):
            if token in self._end:
                pieces.append(self._push_audio(audio_ids))
                pieces.append(self.flush())
                break
            if self._low <= token < self._high:
                audio_ids.append(token)
            elif token >= self._high:
                raise InvalidCodesError(
                    f"token id {token} is above the {self.preset.name} audio range [{self._low}, {self._high}); "
                    f"is this a {self.preset.name} model's output?"
                )
        else:
            pieces.append(self._push_audio(audio_ids))
        pieces = [p for p in pieces if p.size]
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def _push_audio(self, ids: list[int]) -> np.ndarray:
        if not ids:
            return np.zeros(0, np.float32)
        tokens = np.asarray(ids, np.int64)
        if self.preset.modulo:
            layout, size = self.preset.layout, self._stream.config.codebook_size
            slots = (self._slot + np.arange(tokens.size)) % FRAME
            tokens = layout.offset + slots * layout.position_stride + (tokens - layout.offset) % size
        self._slot = (self._slot + tokens.size) % FRAME
        return self.trim(self._stream.push_tokens(tokens))

    def trim(self, audio: np.ndarray) -> np.ndarray:
        """Drop what is left of the preset's output trim (``trim_samples``) from the front of ``audio``, the
        stream's next samples (a :class:`~snac_onnx.stream.pool.StreamPool` calls this on the audio it hands out)."""
        if self._to_trim and audio.size:
            cut = min(self._to_trim, audio.size)
            self._to_trim -= cut
            return audio[cut:]
        return audio

    def flush(self) -> np.ndarray:
        """Decode what is left and end the stream. An incomplete last frame is dropped, as the references do."""
        if self.done:
            return np.zeros(0, np.float32)
        self.done = True
        return self.trim(self._stream.flush(drop_incomplete=True))


class MiniOmniHeads:
    """Undo mini-omni's delayed parallel audio heads: one step of 7 head outputs in, whole frames out.

    Head ``j`` (slot ``j`` of the 7-token frame) runs ``j + 1`` steps behind, so the first
    ``j + 1`` outputs of head ``j`` are padding. A frame is complete once every head has given
    its code for it. Each head ends with :data:`MINI_OMNI_END_OF_AUDIO` (4097), the slowest
    last; then :attr:`done` is True. ``push`` returns the completed frames as interleaved codes
    (``7 * frames`` values, slot order ``[c0, c1, c2, c2, c1, c2, c2]``), ready for
    ``StreamDecoder.push_tokens`` with the ``interleaved`` layout, or for
    ``tokens_to_codes(..., "interleaved")``.
    """

    def __init__(self) -> None:
        self._queues: list[list[int]] = [[] for _ in range(FRAME)]
        self._seen = [0] * FRAME
        self._ended = [False] * FRAME
        self.done = False

    def push(self, step: Sequence[int]) -> np.ndarray:
        """One generation step: the 7 heads' outputs (ints in the 4160-wide head vocabulary)."""
        if self.done:
            return np.zeros(0, np.int64)
        try:
            values = np.asarray(step)
        except ValueError:  # NumPy refuses ragged nested lists
            raise InvalidCodesError(f"a mini-omni step is {FRAME} integer head outputs, got nested lists") from None
        if values.shape != (FRAME,) or values.dtype.kind not in "iu":
            raise InvalidCodesError(f"a mini-omni step is 7 integer head outputs, got {values.dtype} {values.shape}")
        for head, value in enumerate(int(v) for v in values):
            self._seen[head] += 1
            if self._seen[head] <= head + 1 or self._ended[head]:  # its delay, or after its end of audio
                continue
            if value == MINI_OMNI_END_OF_AUDIO:  # each head ends in its turn, the slowest last
                self._ended[head] = True
                continue
            if not 0 <= value < MINI_OMNI.position_stride:
                raise InvalidCodesError(f"head {head} gave {value}, outside its vocabulary [0, 4160)")
            self._queues[head].append(value)
        self.done = all(self._ended)
        frames = min(len(q) for q in self._queues)
        out = np.array([q[:frames] for q in self._queues], np.int64).T.reshape(-1) if frames else np.zeros(0, np.int64)
        self._queues = [q[frames:] for q in self._queues]
        return out  # a padding id (4096..4159) where a code was due is refused when the frame is decoded
