"""Execution providers: accepted forms, and a warning when a requested one is not in use (no torch)."""

from __future__ import annotations

import logging

import onnxruntime as ort
import pytest

from snac_onnx import SnacOnnx, SnacOnnxError
from snac_onnx.sessions import normalize_providers
from tests.conftest import TINY_24, pcm


def test_normalize_forms():
    assert normalize_providers(None) == ["CPUExecutionProvider"]
    assert normalize_providers("CPUExecutionProvider") == ["CPUExecutionProvider"]
    assert normalize_providers(("CUDAExecutionProvider", {"device_id": 0})) == [("CUDAExecutionProvider", {"device_id": 0})]
    assert normalize_providers(["CUDAExecutionProvider", ("CPUExecutionProvider", {})]) == [
        "CUDAExecutionProvider",
        ("CPUExecutionProvider", {}),
    ]
    with pytest.raises(SnacOnnxError, match="not a name or a \\(name, options\\) pair"):
        normalize_providers([42])
    with pytest.raises(ValueError, match="empty"):
        normalize_providers([])


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is available here")
def test_unavailable_provider_is_reported(caplog):
    codec = SnacOnnx(TINY_24, providers=[("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"])
    with caplog.at_level(logging.WARNING, logger="snac_onnx"):
        codec.encode(pcm(100))
    assert codec.active_providers["encoder"] == ["CPUExecutionProvider"]
    messages = [r.getMessage() for r in caplog.records if r.name == "snac_onnx"]
    assert any("CUDAExecutionProvider" in m and "not in use" in m for m in messages), messages
