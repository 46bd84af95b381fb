"""SNAC's arithmetic: every count derived from a model configuration, declared once (no NumPy, no onnxruntime).

A *frame* is one code of the coarsest codebook and everything under it: ``samples_per_frame``
audio samples, ``codes_per_frame[i]`` codes of codebook ``i`` and ``frame_tokens`` flat tokens.
The decoder's and the encoder's receptive fields (the context a chunk needs so that chunked
results equal one-shot results) are derived here from SNAC's layer shapes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ModelFormatError

__all__ = ["ModelConfig", "check_vq_strides", "codes_per_frame", "decoder_context_frames", "encoder_context_units"]

# SNAC's fixed layer shapes (snac/layers.py): residual units of kernel 7 with dilations 1, 3, 9 (each
# reaches 3 * dilation steps per side), kernel-7 convolutions around the blocks (3 steps per side), and
# (transposed) convolutions of kernel 2 * stride between them.
_RESIDUAL_REACH = sum(3 * d for d in (1, 3, 9))
_CONV_REACH = 3


def check_vq_strides(vq_strides: Sequence[int]) -> tuple[int, ...]:
    """``vq_strides`` as a tuple of ints; :class:`ModelFormatError` unless each is a positive divisor of the first."""
    strides = tuple(int(s) for s in vq_strides)
    if not strides or any(s <= 0 for s in strides) or any(strides[0] % s for s in strides):
        raise ModelFormatError(f"vq_strides {list(strides)} must be positive divisors of the first")
    return strides


def codes_per_frame(vq_strides: Sequence[int]) -> tuple[int, ...]:
    """Codes of each codebook in one frame: ``vq_strides[0] // s`` for each stride ``s``."""
    strides = check_vq_strides(vq_strides)
    return tuple(strides[0] // s for s in strides)


def decoder_context_frames(config: ModelConfig) -> tuple[int, int]:
    """Coarse frames of context a decoder chunk needs on (left, right) to equal one-shot decoding.

    An upper bound from SNAC's layer shapes: going back from the output, each decoder block reaches
    ``(reach + 39) / stride + 1`` of its input steps; the first depthwise convolution adds 3 latent
    steps. With attention the reach before it is rounded out to whole windows, and context is a
    whole number of windows so that chunks stay window-aligned.
    """
    reach = float(_CONV_REACH)  # final conv, in output samples
    for stride in reversed(config.decoder_rates):
        reach = (reach + _RESIDUAL_REACH) / stride + 1
    steps_per_frame = config.vq_strides[0]
    if config.attn_window_size is None:
        frames = math.ceil((reach + _CONV_REACH) / steps_per_frame)
        return frames, frames
    # After attention: reach (latent steps) -> whole windows; before it: the first conv's 3 steps.
    windows = math.ceil(reach / config.attn_window_size) + math.ceil(_CONV_REACH / config.attn_window_size)
    return windows * config.frames_multiple, windows * config.frames_multiple


def encoder_context_units(config: ModelConfig) -> int:
    """Padding units of context per side that cover the encoder's receptive field (an upper bound)."""
    before_attention = _CONV_REACH
    step = 1
    for stride in config.encoder_rates:
        before_attention += (_RESIDUAL_REACH + stride) * step
        step *= stride
    after = _CONV_REACH * config.hop_length
    unit = config.padding_unit
    if config.attn_window_size is None:
        return math.ceil((before_attention + after) / unit)
    # Windows are whole units: the last conv reaches into neighbouring windows, whose
    # attention reads their whole window, which reaches ``before_attention`` further.
    return math.ceil(after / unit) + math.ceil(before_attention / unit)


def _positive_int(data: Mapping[str, Any], key: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ModelFormatError(f"model config {key} must be a positive integer, got {value!r}")
    return value


def _positive_ints(data: Mapping[str, Any], key: str) -> tuple[int, ...]:
    values = data[key]
    if not isinstance(values, (list, tuple)) or not values:
        raise ModelFormatError(f"model config {key} must be a non-empty list of positive integers, got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ModelFormatError(f"model config {key} must hold positive integers, got {values!r}")
    return tuple(values)


@dataclass(frozen=True)
class ModelConfig:
    """A SNAC configuration and every count derived from it.

    Attributes:
        sample_rate: audio sample rate in Hz.
        encoder_rates: strides of the encoder blocks; their product is the hop.
        decoder_rates: strides of the decoder blocks, in order.
        vq_strides: temporal stride of each codebook, coarse first.
        codebook_size: number of entries per codebook; codes lie in ``[0, size)``.
        codebook_dim: dimension of each codebook entry.
        attn_window_size: local attention window in latent steps, or None.
        noise: whether the decoder has NoiseBlocks (and so noise inputs).
    """

    sample_rate: int
    encoder_rates: tuple[int, ...]
    decoder_rates: tuple[int, ...]
    vq_strides: tuple[int, ...]
    codebook_size: int
    codebook_dim: int
    attn_window_size: int | None
    noise: bool

    def __post_init__(self) -> None:
        check_vq_strides(self.vq_strides)
        if math.prod(self.decoder_rates) != self.hop_length:
            raise ModelFormatError(
                f"decoder_rates {list(self.decoder_rates)} (product {math.prod(self.decoder_rates)}) must undo "
                f"encoder_rates {list(self.encoder_rates)} (product {self.hop_length})"
            )

    # ------------------------------------------------------------------ time
    @property
    def hop_length(self) -> int:
        """Audio samples per latent step (the finest codebook's frame)."""
        return math.prod(self.encoder_rates)

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per coarse frame (one code of the coarsest codebook)."""
        return self.hop_length * self.vq_strides[0]

    @property
    def latent_multiple(self) -> int:
        """Latent steps must be a multiple of this (coarsest stride and attention window)."""
        return math.lcm(self.vq_strides[0], self.attn_window_size or 1)

    @property
    def padding_unit(self) -> int:
        """Audio is right-padded to a multiple of this many samples, as SNAC's ``preprocess``."""
        return self.hop_length * self.latent_multiple

    @property
    def frames_multiple(self) -> int:
        """The coarse code count must be a multiple of this (1 without attention)."""
        return self.latent_multiple // self.vq_strides[0]

    @property
    def frames_per_unit(self) -> int:
        """Coarse frames per padding unit."""
        return self.frames_multiple

    # ------------------------------------------------------------------ codes
    @property
    def num_codebooks(self) -> int:
        return len(self.vq_strides)

    @property
    def codes_per_frame(self) -> tuple[int, ...]:
        """Codes of each codebook in one coarse frame, e.g. ``(1, 2, 4)``."""
        return codes_per_frame(self.vq_strides)

    @property
    def frame_tokens(self) -> int:
        """Flat tokens per frame (``sum(codes_per_frame)``): 7 for ``(4, 2, 1)``, 15 for ``(8, 4, 2, 1)``."""
        return sum(self.codes_per_frame)

    def code_lengths(self, coarse_frames: int) -> list[int]:
        """Per-codebook lengths for ``coarse_frames`` frames of the coarsest codebook."""
        return [coarse_frames * n for n in self.codes_per_frame]

    # ------------------------------------------------------------------ noise
    @property
    def num_noise_blocks(self) -> int:
        return len(self.decoder_rates) if self.noise else 0

    @property
    def noise_per_frame(self) -> tuple[int, ...]:
        """Time steps of each decoder noise input per coarse frame."""
        if not self.noise:
            return ()
        steps, out = self.vq_strides[0], []
        for rate in self.decoder_rates:
            steps *= rate
            out.append(steps)
        return tuple(out)

    def noise_lengths(self, coarse_frames: int) -> list[int]:
        """Time length of each decoder noise input for ``coarse_frames`` coarse frames."""
        return [coarse_frames * n for n in self.noise_per_frame]

    # ------------------------------------------------------------------ context
    @property
    def decoder_context(self) -> tuple[int, int]:
        """Coarse frames of (left, right) context for exact chunked decoding; see :func:`decoder_context_frames`."""
        return decoder_context_frames(self)

    @property
    def encoder_context(self) -> int:
        """Padding units of context per side for exact chunked encoding; see :func:`encoder_context_units`."""
        return encoder_context_units(self)

    # ------------------------------------------------------------------ json
    def to_json(self) -> dict[str, Any]:
        return {
            "sampling_rate": self.sample_rate,
            "encoder_rates": list(self.encoder_rates),
            "decoder_rates": list(self.decoder_rates),
            "vq_strides": list(self.vq_strides),
            "codebook_size": self.codebook_size,
            "codebook_dim": self.codebook_dim,
            "attn_window_size": self.attn_window_size,
            "noise": self.noise,
            "hop_length": self.hop_length,
            "padding_unit": self.padding_unit,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build from a manifest's ``config`` (or an official SNAC ``config.json``); every value is checked.

        Raises:
            ModelFormatError: a missing key, a value of the wrong type or sign, or values that contradict
                each other (``hop_length`` vs ``encoder_rates``, decoder vs encoder rates, strides).
        """
        if not isinstance(data, Mapping):
            raise ModelFormatError(f"model config must be a JSON object, got {type(data).__name__}")
        try:
            window = data.get("attn_window_size")
            if window is not None:
                window = _positive_int(data, "attn_window_size")
            noise = data.get("noise", True)
            if not isinstance(noise, bool):
                raise ModelFormatError(f"model config noise must be true or false, got {noise!r}")
            cfg = cls(
                sample_rate=_positive_int(data, "sampling_rate"),
                encoder_rates=_positive_ints(data, "encoder_rates"),
                decoder_rates=_positive_ints(data, "decoder_rates"),
                vq_strides=_positive_ints(data, "vq_strides"),
                codebook_size=_positive_int(data, "codebook_size"),
                codebook_dim=_positive_int(data, "codebook_dim") if "codebook_dim" in data else 8,
                attn_window_size=window,
                noise=noise,
            )
        except KeyError as exc:
            raise ModelFormatError(f"model config is incomplete: {exc!r} is missing") from exc
        # hop_length and padding_unit are recorded from the exported graphs: a difference means that a field they
        # are derived from was edited (or they were). Name those fields, the edited one among them.
        if "hop_length" in data and data["hop_length"] != cfg.hop_length:
            raise ModelFormatError(
                f"model config encoder_rates {list(cfg.encoder_rates)} give hop_length {cfg.hop_length} (their "
                f"product), but the config records hop_length {data['hop_length']!r}: encoder_rates must match the "
                "exported graphs; restore them or re-export the model"
            )
        if "padding_unit" in data and data["padding_unit"] != cfg.padding_unit:
            raise ModelFormatError(
                f"model config vq_strides {list(cfg.vq_strides)} give padding_unit {cfg.padding_unit} (hop_length "
                f"{cfg.hop_length} * lcm(vq_strides[0], attn_window_size or 1), attn_window_size "
                f"{cfg.attn_window_size}), but the config records padding_unit {data['padding_unit']!r}: vq_strides "
                "and attn_window_size must match the exported graphs; restore them or re-export the model"
            )
        return cfg
