"""Token presets of the SNAC TTS family: how each model's LLM ids become SNAC 24 kHz audio, and how it is asked.

Several LLM TTS models speak SNAC 24 kHz tokens and disagree on ids. A :class:`TokenPreset` carries one model's
rules: its audio-id layout (base, per-slot stride, the 7-slot frame order ``[c0, c1, c2, c2, c1, c2, c2]``),
its start- and end-of-speech ids, whether its tokenizer spells ids as ``<custom_token_N>`` text, what it does
with ids outside the audio range (``strict``: an error; ``modulo``: skipped outside the range and reduced
``(id - base) % 4096`` inside it, whatever the slot), any output trim; and, for the speech front
(:mod:`snac_onnx.serve.speech`), its prompt as text for an OpenAI completions call, its voices and its
recommended sampling. :class:`PresetStream` decodes any preset's stream as it is generated (a new model is a
preset, not a class).

Each number was read in the model's own published inference code (tests/runtime/test_presets.py quotes the
lines):

* ``orpheus``: canopyai/Orpheus-TTS ``orpheus_tts_pypi/orpheus_tts/decoder.py`` (``turn_token_into_id``:
  ``int(N) - 10 - (index % 7) * 4096`` for ``<custom_token_N>``, id ``128256 + N``), ``engine_class.py``
  (``_format_prompt``: ``[128259] + tokens("{voice}: {text}") + [128009, 128260, 128261, 128257]``; the
  sampling defaults of ``generate_tokens_sync``), ``realtime_streaming_example/main.py``
  (``stop_token_ids=[128258]``) and ``README.md`` (the voices).
* ``maya1``: maya-research/maya1's model card and ``vllm_streaming_inference.py`` (``CODE_TOKEN_OFFSET``,
  ``SNAC_MIN_ID``/``SNAC_MAX_ID``, ``build_prompt`` with ``<description="...">``, ``extract_snac_codes``:
  ``(id - 128266) % 4096`` whatever the slot, the first 2048 samples trimmed, the sampling defaults).
* ``veena``: maya-research/veena-tts's model card (``AUDIO_CODE_BASE_OFFSET``, the prompt
  ``[128259, tokens("<spk_{speaker}> {text}"), 128260, 128261, 128257]``, two end ids 128258 and 128262, the
  four speakers, strict decoding, the sampling).
* ``vyvotts-qwen3``, ``vyvotts-lfm2``, ``vyvotts-llama3``: Vyvo-Labs/VyvoTTS
  ``vyvotts/configs/inference/{qwen3,lfm2,llama3}.yaml`` (``AUDIO_TOKENS_START``, ``START_OF_SPEECH``,
  ``END_OF_SPEECH``, ``TOKENIZER_LENGTH``, the prompt's ids), ``vyvotts/codec.py`` (slot order and
  ``+ k * 4096``), ``vyvotts/inference/constraints.py`` (strict) and ``vyvotts/inference/vllm_inference.py``
  (sampling). VyvoTTS's ``lfm2_5`` config uses the same ids for the Mimi codec: it has no preset here.
* ``mini-omni``: gpt-omni/mini-omni ``utils/snac_utils.py`` and ``inference.py``: seven parallel audio heads,
  head ``j`` delayed by ``j + 1`` steps, end of audio ``_eoa = audio_vocabsize`` (4096; 4097 is the pad);
  :class:`MiniOmniHeads` undoes the delay. It is not a completions model: no prompt.
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
    "Sampling",
    "PRESETS",
    "get_preset",
    "custom_token_ids",
    "PresetStream",
    "MiniOmniHeads",
    "MINI_OMNI_END_OF_AUDIO",
]

FRAME = 7  # tokens per 24 kHz frame: every preset here is for SNAC 24 kHz
MINI_OMNI_END_OF_AUDIO = 4096  # mini-omni's _eoa = audio_vocabsize; 4097 (_pad_a) is its pad
_TAG = re.compile(r"<custom_token_(\d{1,9})>")  # a longer number is no token of any vocabulary: plain text
_PARTIAL_TAG = re.compile(r"<(c(u(s(t(o(m(_(t(o(k(e(n(_\d{0,9})?)?)?)?)?)?)?)?)?)?)?)?)?$")


@dataclass(frozen=True)
class Sampling:
    """A model's recommended sampling for a completions call (its reference code's values)."""

    temperature: float
    top_p: float
    repetition_penalty: float
    max_tokens: int

    def as_request(self) -> dict[str, float | int]:
        """The fields of a completions request; ``repeat_penalty`` too, llama.cpp's name for it."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "repetition_penalty": self.repetition_penalty,
            "repeat_penalty": self.repetition_penalty,
            "max_tokens": self.max_tokens,
        }


@dataclass(frozen=True)
class TokenPreset:
    """One TTS model's token rules, and how to ask it for speech.

    Attributes:
        name: the preset's name (also a layout name: ``--layout NAME``).
        layout: where audio ids lie (``offset + slot * position_stride + code``).
        start_of_speech: the id that opens the audio part (skipped in a stream), or None.
        end_of_speech: ids that end the audio (a stream flushes and ends there).
        custom_token_base: id of ``<custom_token_0>`` when the tokenizer spells ids as such text (the stream
            then also takes generated text), else None.
        source: where the numbers were read.
        modulo: the reference's rule for ids outside a slot's range: False (``strict``): an id above the audio
            range or in another slot's range is an error; True (``modulo``): ids outside the audio range are
            skipped and those inside it reduced ``(id - offset) % codebook_size``, whatever the slot.
        trim_samples: samples the reference drops from the start of the output (a warm-up); 0 keeps them.
        prompt: the completions prompt as text, special tokens spelled out, with ``{text}`` and ``{voice}``;
            None: not a completions model.
        voice_format: how a voice enters the prompt's ``{voice}`` (``{}`` is the voice); ``""`` when no voice is
            given and the model takes none.
        voices: the voices the model was trained on (empty: any, e.g. a description).
        default_voice: the voice when a request names none.
        sampling: the reference's recommended sampling.
    """

    name: str
    layout: TokenLayout
    start_of_speech: int | None
    end_of_speech: tuple[int, ...]
    custom_token_base: int | None
    source: str
    modulo: bool = False
    trim_samples: int = 0
    prompt: str | None = None
    voice_format: str = "{}"
    voices: tuple[str, ...] = ()
    default_voice: str | None = None
    sampling: Sampling | None = None

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
        if self.prompt is not None and "{text}" not in self.prompt:
            raise InvalidArgumentError(f"a preset's prompt must hold {{text}}, got {self.prompt!r}")

    @property
    def audio_range(self) -> tuple[int, int]:
        """``[low, high)`` of this preset's audio ids."""
        return self.layout.offset, self.layout.offset + FRAME * self.layout.position_stride

    @property
    def policy(self) -> str:
        """``strict`` or ``modulo`` (see ``modulo``)."""
        return "modulo" if self.modulo else "strict"

    def stop_texts(self) -> list[str]:
        """The end-of-speech ids as the tokenizer spells them (``<custom_token_N>``), for servers that stop on text
        (llama.cpp has no stop ids); empty when the tokenizer spells none."""
        base = self.custom_token_base
        return [] if base is None else [f"<custom_token_{i - base}>" for i in self.end_of_speech if i >= base]

    def format_prompt(self, text: str, voice: str | None) -> str:
        """The completions prompt for ``text`` in ``voice`` (None: the default voice).

        Raises:
            InvalidArgumentError: the preset has no prompt (not a completions model), the voice is not one of its
                voices, or the text is empty.
        """
        if self.prompt is None:
            raise InvalidArgumentError(f"preset {self.name!r} is not a completions model: it has no prompt")
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgumentError("the input text is empty")
        voice = voice if voice is not None else self.default_voice
        if self.voices and voice not in self.voices:
            raise InvalidArgumentError(f"preset {self.name!r} has the voices {list(self.voices)}; got {voice!r}")
        spoken = "" if voice is None else self.voice_format.format(voice)
        return self.prompt.replace("{voice}", spoken).replace("{text}", text)


_ORPHEUS_PROMPT = (
    "<custom_token_3><|begin_of_text|>{voice}{text}<|eot_id|><custom_token_4><custom_token_5><custom_token_1>"
)
PRESETS: dict[str, TokenPreset] = {
    preset.name: preset
    for preset in (
        TokenPreset(
            "orpheus",
            ORPHEUS,
            128257,
            (128258,),
            128256,
            "canopyai/Orpheus-TTS orpheus_tts_pypi/orpheus_tts/{decoder,engine_class}.py",
            prompt=_ORPHEUS_PROMPT,
            voice_format="{}: ",
            voices=("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"),
            default_voice="tara",
            sampling=Sampling(temperature=0.6, top_p=0.8, repetition_penalty=1.3, max_tokens=1200),
        ),
        TokenPreset(
            "maya1",
            ORPHEUS,
            128257,
            (128258,),
            128256,
            "maya-research/maya1 model card and vllm_streaming_inference.py",
            modulo=True,
            trim_samples=2048,
            prompt=(
                '<custom_token_3><|begin_of_text|><description="{voice}"> {text}<|eot_id|>'
                "<custom_token_4><custom_token_5><custom_token_1>"
            ),
            default_voice=(
                "Realistic male voice in the 30s age with american accent. Normal pitch, warm timbre, "
                "conversational pacing."
            ),
            sampling=Sampling(temperature=0.4, top_p=0.9, repetition_penalty=1.1, max_tokens=2000),
        ),
        TokenPreset(
            "veena",
            ORPHEUS,
            128257,
            (128258, 128262),
            128256,
            "maya-research/veena-tts model card",
            prompt="<custom_token_3><spk_{voice}> {text}<custom_token_4><custom_token_5><custom_token_1>",
            voices=("kavya", "agastya", "maitri", "vinaya"),
            default_voice="kavya",
            sampling=Sampling(temperature=0.4, top_p=0.9, repetition_penalty=1.05, max_tokens=700),
        ),
        TokenPreset(
            "vyvotts-llama3",
            ORPHEUS,
            128257,
            (128258,),
            128256,
            "Vyvo-Labs/VyvoTTS vyvotts/configs/inference/llama3.yaml",
            prompt="<custom_token_3><|begin_of_text|>{voice}{text}<|eot_id|><custom_token_4>",
            voice_format="{}: ",
            sampling=Sampling(temperature=0.6, top_p=0.8, repetition_penalty=1.3, max_tokens=1200),
        ),
        TokenPreset(
            "vyvotts-qwen3",
            VYVOTTS_QWEN3,
            151670,
            (151671,),
            151669,
            "Vyvo-Labs/VyvoTTS vyvotts/configs/inference/qwen3.yaml",
            prompt="<custom_token_3>{voice}{text}<|im_end|><custom_token_4>",
            voice_format="{}: ",
            sampling=Sampling(temperature=0.6, top_p=0.8, repetition_penalty=1.3, max_tokens=1200),
        ),
        TokenPreset(
            "vyvotts-lfm2",
            VYVOTTS_LFM2,
            64401,
            (64402,),
            64400,
            "Vyvo-Labs/VyvoTTS vyvotts/configs/inference/lfm2.yaml",
            prompt="<custom_token_3><|startoftext|>{voice}{text}<|im_end|><custom_token_4>",
            voice_format="{}: ",
            sampling=Sampling(temperature=0.6, top_p=0.8, repetition_penalty=1.3, max_tokens=1200),
        ),
        TokenPreset("mini-omni", MINI_OMNI, None, (), None, "gpt-omni/mini-omni utils/snac_utils.py, inference.py"),
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
    start of speech) and text that is not a tag are skipped (counted in :attr:`skipped_ids` and
    :attr:`skipped_chars`); ids above it follow the preset's policy (strict: an error; modulo:
    skipped). After an end-of-speech id, or :meth:`flush`, :attr:`done` is True and further
    pushes return nothing.
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
        self.skipped_ids = 0  # ids that were not audio (markers, text), and with modulo, ids above the range
        self.skipped_chars = 0  # characters of generated text outside <custom_token_N> tags

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
            whole = text[: match.start()] if match else text
            self.skipped_chars += len(_TAG.sub("", whole).strip())
            return custom_token_ids(whole, base)
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
        """Push generated ids (an int or an iterable of ints) or text (``<custom_token_N>`` tags, split anywhere);
        returns the audio that became final (float32, 1-D). An end-of-speech id ends the stream; see the class."""
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
            elif token < 0:
                raise InvalidCodesError(f"token id {token} is negative; a tokenizer's ids are >= 0")
            elif token < self._low or self.preset.modulo:
                self.skipped_ids += token != self.preset.start_of_speech
            else:
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
    its code for it. Each head ends with :data:`MINI_OMNI_END_OF_AUDIO` (4096, mini-omni's ``_eoa``),
    the slowest last; then :attr:`done` is True (mini-omni's own loop stops at that step and keeps
    none of it). A head's other special ids (4097 and above: its pad) where a code is due are an error.
    ``push`` returns the completed frames as interleaved codes
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
            if not 0 <= value < MINI_OMNI_END_OF_AUDIO:
                raise InvalidCodesError(
                    f"head {head} gave {value} where a code (0..4095) was due; 4096 ends its audio, 4097 and above "
                    "are its special ids"
                )
            self._queues[head].append(value)
        self.done = all(self._ended)
        frames = min(len(q) for q in self._queues)
        out = np.array([q[:frames] for q in self._queues], np.int64).T.reshape(-1) if frames else np.zeros(0, np.int64)
        self._queues = [q[frames:] for q in self._queues]
        return out
