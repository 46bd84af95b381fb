"""Windowed encoding equals one-shot encoding; memory is bounded by the window (no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from snac_onnx import InvalidAudioError
from snac_onnx.config import encoder_context_units
from snac_onnx.windowed import encode_windowed, iter_encode_windows
from tests.support import pcm


@pytest.mark.parametrize("model", ["tiny24", "tiny44"])
@pytest.mark.parametrize("length", [1, 2049, 100_000, 250_001])
def test_windowed_equals_one_shot(model, length, request):
    codec = request.getfixturevalue(model)
    audio = pcm(length, seed=length)
    one_shot = codec.encode(audio)
    windowed = encode_windowed(codec, audio, window_seconds=1.0)
    for a, b in zip(one_shot, windowed):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_without_overlap_the_edges_differ(tiny24):
    audio = pcm(200_000, seed=3)
    one_shot = tiny24.encode(audio)
    no_overlap = encode_windowed(tiny24, audio, window_seconds=1.0, context_units=0)
    mismatch = np.mean([np.mean(a != b) for a, b in zip(one_shot, no_overlap)])
    assert mismatch > 0.01, "context matters: without it codes near window edges change"
    assert all(a.shape == b.shape for a, b in zip(one_shot, no_overlap))


def test_reads_stay_within_one_window(tiny24):
    audio = pcm(24000 * 20, seed=1)
    unit = tiny24.padding_unit
    context = encoder_context_units(tiny24.config)
    largest = 0

    def read(start, stop):
        nonlocal largest
        largest = max(largest, stop - start)
        return audio[start:stop]

    windows = list(iter_encode_windows(tiny24, read, audio.size, window_seconds=2.0))
    assert len(windows) == int(np.ceil(audio.size / unit / (48000 // unit)))
    assert largest <= (48000 // unit + 2 * context) * unit
    assert windows[-1][1] == audio.size


def test_windowed_rejects_bad_input(tiny24):
    with pytest.raises(InvalidAudioError, match="1-D"):
        encode_windowed(tiny24, np.zeros((2, 100), np.float32))
    with pytest.raises(InvalidAudioError, match="no samples"):
        encode_windowed(tiny24, np.zeros(0, np.float32))
