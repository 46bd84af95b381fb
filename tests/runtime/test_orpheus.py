"""Orpheus-compatible stream: LLM ids or <custom_token_N> text in, audio out (no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from snac_onnx import ORPHEUS, InvalidCodesError
from snac_onnx.layouts import codes_to_tokens
from snac_onnx.stream.orpheus import CUSTOM_TOKEN_BASE, END_OF_SPEECH, parse_custom_tokens


def _codes(frames: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    codes = [rng.integers(0, 4096, frames * n) for n in (1, 2, 4)]
    codes[0][0] = 0  # code 0 is a valid code, not a special token
    return codes


def _collect(stream, items):
    out = [stream.push(i) for i in items]
    return np.concatenate([o for o in out if o.size] or [np.zeros(0, np.float32)])


def test_ids_with_special_tokens_until_end_of_speech(tiny24):
    codes = _codes(12)
    ids = codes_to_tokens(codes, (4, 2, 1), ORPHEUS).tolist()
    stream_items = [128259, 1000, 128260, 128261, 128257] + ids[:30] + [128263] + ids[30:] + [END_OF_SPEECH, *ids[:7]]
    stream = tiny24.orpheus_stream()
    audio = _collect(stream, stream_items)
    assert stream.done
    np.testing.assert_allclose(audio, tiny24.decode(codes, noise=False), atol=1e-4)
    assert stream.push(ids[:7]).size == 0  # after end-of-speech nothing more


def test_text_with_tags_split_across_pushes(tiny24):
    codes = _codes(9, seed=1)
    ids = codes_to_tokens(codes, (4, 2, 1), ORPHEUS).tolist()
    text = "Sure! " + "".join(f"<custom_token_{i - CUSTOM_TOKEN_BASE}>" for i in ids)
    assert parse_custom_tokens(text) == ids
    rng = np.random.default_rng(0)
    cuts = sorted(rng.choice(np.arange(1, len(text)), 40, replace=False))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    stream = tiny24.orpheus_stream()
    audio = np.concatenate([_collect(stream, pieces), stream.flush()])
    np.testing.assert_allclose(audio, tiny24.decode(codes, noise=False), atol=1e-4)


def test_incomplete_last_frame_is_dropped_at_flush(tiny24):
    codes = _codes(5, seed=2)
    ids = codes_to_tokens(codes, (4, 2, 1), ORPHEUS).tolist()
    stream = tiny24.orpheus_stream()
    audio = np.concatenate([_collect(stream, [ids + ids[:3]]), stream.flush()])
    assert audio.size == 5 * 2048


def test_out_of_range_ids(tiny24):
    stream = tiny24.orpheus_stream()
    with pytest.raises(InvalidCodesError, match="above the orpheus audio range"):
        stream.push(128266 + 7 * 4096)
    stream = tiny24.orpheus_stream()
    with pytest.raises(InvalidCodesError, match="position 1"):
        stream.push([128266, 128266, 128266, 128266, 128266, 128266, 128266])


def test_orpheus_needs_a_three_codebook_model(tiny44):
    with pytest.raises(ValueError, match="3-codebook"):
        tiny44.orpheus_stream()
