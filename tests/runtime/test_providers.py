"""Execution providers: accepted forms, and a warning when a requested one is not in use (no torch)."""

from __future__ import annotations

import json
import logging

import onnxruntime as ort
import pytest

from snac_onnx import SnacOnnx, SnacOnnxError
from snac_onnx.model.sessions import SessionSettings, normalize_providers
from tests.support import TINY_24, pcm


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
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("snac_onnx")]
    assert any("CUDAExecutionProvider" in m and "not in use" in m for m in messages), messages


def test_memory_reuse_follows_the_decoders_tiling(tiny24_copy):
    """Planned buffer re-use is off for a tiled decoder (it would hold buffers across tiles), on elsewhere."""
    assert SessionSettings().to_session_options(tiled=True).enable_mem_reuse is False
    assert SessionSettings().to_session_options(tiled=False).enable_mem_reuse is True
    assert SessionSettings(memory_reuse=True).to_session_options(tiled=True).enable_mem_reuse is True
    assert SessionSettings(memory_reuse=False).to_session_options().enable_mem_reuse is False
    codec = SnacOnnx(TINY_24)
    assert codec.manifest.decoder_tail_tiles > 1
    assert codec.session("decoder").get_session_options().enable_mem_reuse is False
    assert codec.session("encoder").get_session_options().enable_mem_reuse is True
    manifest = tiny24_copy / "manifest.json"
    data = json.loads(manifest.read_text())
    data["graphs"]["decoder"].pop("tail_tiles")  # as exported before tiling
    manifest.write_text(json.dumps(data))
    assert SnacOnnx(tiny24_copy).session("decoder").get_session_options().enable_mem_reuse is True
