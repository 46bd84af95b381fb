"""Reduced-precision variants: written on request, listed in the manifest with measured error, selectable."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("snac")

from export.checkpoint import load_random_init
from export.pipeline import export_model
from snac_onnx import ModelNotFoundError, SnacOnnx
from tests.support import FIXTURES, pcm


def test_int8_and_fp16_variants(tmp_path):
    loaded = load_random_init(str(FIXTURES / "tiny_24khz.json"), seed=2)
    manifest = export_model(loaded, tmp_path / "m", precisions=("int8", "fp16"))
    folder = tmp_path / "m"
    assert set(manifest["variants"]) == {"int8", "fp16"}
    for _precision, variant in manifest["variants"].items():
        for role in ("encoder", "decoder"):
            assert (folder / variant[role]["path"]).is_file()
        measured = variant["measured"]
        assert measured["runs"], measured
        assert 0 <= measured["encode_code_agreement"] <= 1 and measured["decode_snr_db"] > 0
        assert set(measured["recommended"]) == {"encoder", "decoder"}
    assert manifest["variants"]["int8"]["decoder"]["bytes"] < manifest["files"]["decoder"]["bytes"]
    codec = SnacOnnx(folder, precision="int8")
    assert codec.precision == "int8" and codec.manifest.precisions == ["fp32", "int8", "fp16"]
    audio = codec.decode(SnacOnnx(folder).encode(pcm(5000)), length=5000, noise=False)
    assert audio.shape == (5000,) and np.isfinite(audio).all()
    with pytest.raises(ModelNotFoundError, match="precision 'int4' is not in this export"):
        SnacOnnx(folder, precision="int4")
