"""SNAC's arithmetic in one place: derived counts, receptive fields, checked values (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snac_onnx import ModelConfig, ModelFormatError
from snac_onnx.config import decoder_context_frames, encoder_context_units

OFFICIAL = {
    k: v["config"]
    for k, v in json.loads((Path(__file__).parents[2] / "export" / "official_configs.json").read_text())[
        "models"
    ].items()
}


def test_official_configs_derived_counts():
    c24, c32, c44 = (ModelConfig.from_json(OFFICIAL[k]) for k in ("snac_24khz", "snac_32khz", "snac_44khz"))
    assert (c24.samples_per_frame, c24.codes_per_frame, c24.frame_tokens, c24.padding_unit) == (
        2048,
        (1, 2, 4),
        7,
        2048,
    )
    assert (c32.samples_per_frame, c32.codes_per_frame, c32.frame_tokens, c32.padding_unit) == (
        3072,
        (1, 2, 4, 8),
        15,
        12288,
    )
    assert c44.frames_multiple == 4 and c24.frames_multiple == 1
    assert c24.noise_per_frame == (32, 256, 1024, 2048) and c24.noise_lengths(3) == [96, 768, 3072, 6144]
    assert c24.code_lengths(5) == [5, 10, 20]
    # the receptive fields measured in the tests (streaming, windowed) are within these bounds
    assert c24.decoder_context == decoder_context_frames(c24) == (3, 3)
    assert c44.decoder_context == (8, 8)
    assert (encoder_context_units(c24), encoder_context_units(c44)) == (c24.encoder_context, c44.encoder_context)


@pytest.mark.parametrize(
    "change,pattern",
    [
        ({"sampling_rate": 0}, "sampling_rate must be a positive integer"),
        ({"sampling_rate": -24000}, "sampling_rate must be a positive integer"),
        ({"sampling_rate": 24000.5}, "sampling_rate must be a positive integer"),
        ({"codebook_size": 0}, "codebook_size must be a positive integer"),
        ({"vq_strides": [4, 3, 1]}, "positive divisors of the first"),
        ({"vq_strides": []}, "non-empty list"),
        ({"encoder_rates": [2, 4, 8, 4]}, "must undo encoder_rates"),
        ({"hop_length": 256}, "give hop_length 512 .* records hop_length 256"),
        ({"attn_window_size": 0}, "attn_window_size must be a positive integer"),
        ({"noise": "yes"}, "noise must be true or false"),
    ],
)
def test_bad_values_are_refused(change, pattern):
    data = {**OFFICIAL["snac_24khz"], "hop_length": 512, **change}
    with pytest.raises(ModelFormatError, match=pattern):
        ModelConfig.from_json(data)
    with pytest.raises(ModelFormatError, match="is missing"):
        ModelConfig.from_json({k: v for k, v in OFFICIAL["snac_24khz"].items() if k != "vq_strides"})
