"""Public lifecycle: load() warms up and checks, close() and the context manager free, own SessionOptions (no torch)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from snac_onnx import InvalidArgumentError, ModelFormatError, SessionSettings, SnacOnnx, StreamClosedError
from tests.support import TINY_24, pcm


def test_load_builds_and_checks_now(tiny24_copy):
    codec = SnacOnnx(TINY_24)
    assert codec.active_providers == {}
    assert codec.load("decoder") is codec
    assert list(codec.active_providers) == ["decoder"]
    codec.load()
    assert sorted(codec.active_providers) == ["decoder", "encoder", "stream"]  # every graph of the export
    (tiny24_copy / "decoder.onnx").write_bytes((tiny24_copy / "decoder.onnx").read_bytes()[:-10] + b"0123456789")
    broken = SnacOnnx(tiny24_copy)
    broken.load("encoder")
    with pytest.raises(ModelFormatError, match="sha256"):
        broken.load("decoder")
    with pytest.raises(InvalidArgumentError, match="role must be one of"):
        codec.load("vocoder")


def test_close_and_context_manager():
    with SnacOnnx(TINY_24, parallel=2) as codec:
        codes = codec.encode(pcm(5000))
        assert codec.decode(codes, noise=False).shape == (6144,)
    with pytest.raises(StreamClosedError, match="closed"):
        codec.encode(pcm(5000))


def test_own_session_options_are_used():
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_mem_pattern = True
    codec = SnacOnnx(TINY_24, session_options=options)
    assert codec.session("encoder").get_session_options().enable_mem_pattern is True
    plain = SnacOnnx(TINY_24)
    audio = pcm(7000)
    for a, b in zip(codec.encode(audio), plain.encode(audio), strict=True):
        np.testing.assert_array_equal(a, b)
    codes = codec.encode(audio)  # every graph of the model (and a second codec) from the same options object
    np.testing.assert_array_equal(codec.decode(codes, noise=False), plain.decode(codes, noise=False))
    np.testing.assert_array_equal(codec.stream().push(codes), plain.stream().push(codes))
    again = SnacOnnx(TINY_24, session_options=options)
    np.testing.assert_array_equal(again.decode(codes, noise=False), plain.decode(codes, noise=False))
    assert codec.fused_snake == plain.fused_snake
    with pytest.raises(InvalidArgumentError, match="session_options must be an onnxruntime.SessionOptions"):
        SnacOnnx(TINY_24, session_options={"threads": 1})


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"intra_op_threads": -1}, "intra_op_threads must be an int >= 0|outside"),
        ({"intra_op_threads": "2"}, "intra_op_threads must be an int"),
        ({"intra_op_threads": 10_000}, "outside"),
        ({"inter_op_threads": 1.5}, "inter_op_threads must be an int"),
        ({"graph_optimization": "max"}, "graph_optimization must be one of"),
        ({"memory_pattern": 1}, "memory_pattern must be True or False"),
        ({"fused_snake": "yes"}, "fused_snake must be None, True or False"),
    ],
)
def test_session_settings_are_checked_when_made(kwargs, pattern):
    with pytest.raises(InvalidArgumentError, match=pattern):
        SessionSettings(**kwargs)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"model": None}, "model must be a folder path"),
        ({"model": 3}, "model must be a folder path"),
        ({"threads": -2}, "threads=-2 is outside"),
        ({"threads": "2"}, "threads must be an int"),
        ({"parallel": 0}, "parallel must be an int >= 1"),
        ({"parallel": 1.5}, "parallel must be an int >= 1"),
        ({"max_chunk_seconds": float("nan")}, "max_chunk_seconds must be > 0"),
        ({"max_chunk_seconds": float("inf")}, "max_chunk_seconds must be > 0"),
        ({"max_chunk_seconds": "5"}, "max_chunk_seconds must be > 0"),
        ({"settings": "fast"}, "settings must be a SessionSettings"),
        ({"precision": 16}, "precision must be a string"),
    ],
)
def test_constructor_arguments_are_checked(kwargs, pattern):
    kwargs = {"model": TINY_24, **kwargs}
    with pytest.raises(InvalidArgumentError, match=pattern):
        SnacOnnx(**kwargs)
