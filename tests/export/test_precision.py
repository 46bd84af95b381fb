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


def test_int8_and_fp16_variants_of_a_deterministic_export(tmp_path):
    """Variants are written and measured; and (seed 0, the fixture's) the fp32 graphs are byte-identical to
    tests/fixtures/tiny_24khz, exported in another process at another time: identity comes from the graphs.
    If the exporter changed on purpose, regenerate the fixtures with tests/fixtures/make_fixtures.sh."""
    loaded = load_random_init(str(FIXTURES / "tiny_24khz.json"), seed=0)
    manifest = export_model(loaded, tmp_path / "m", precisions=("int8", "fp16"))
    folder = tmp_path / "m"
    for name in ("encoder.onnx", "decoder.onnx", "stream.onnx"):
        assert (folder / name).read_bytes() == (FIXTURES / "tiny_24khz" / name).read_bytes(), name
    assert SnacOnnx(folder).model_id == SnacOnnx(FIXTURES / "tiny_24khz").model_id
    assert set(manifest["variants"]) == {"int8", "fp16"}
    for _precision, variant in manifest["variants"].items():
        for role in ("encoder", "decoder"):
            assert (folder / variant[role]["path"]).is_file()
        measured = variant["measured"]
        assert measured["runs"], measured
        assert 0 <= measured["encode_code_agreement"] <= 1 and measured["decode_snr_db"] > 0
        assert set(measured["recommended"]) == {"encoder", "decoder"}
    import onnx

    from snac_onnx.manifest import CONFIG_METADATA_KEY

    def weight_bytes(path):  # the weights, not the graph structure (which dominates a tiny model's file)
        model = onnx.load(str(path))
        return sum(len(t.raw_data) for t in model.graph.initializer), {p.key for p in model.metadata_props}

    int8_weights, int8_keys = weight_bytes(folder / manifest["variants"]["int8"]["decoder"]["path"])
    fp32_weights, _ = weight_bytes(folder / "decoder.onnx")
    assert int8_weights < fp32_weights  # only Conv weights are quantized: the tiny model has many others
    assert CONFIG_METADATA_KEY in int8_keys
    codec = SnacOnnx(folder, precision="int8")
    assert codec.precision == "int8" and codec.manifest.precisions == ["fp32", "int8", "fp16"]
    audio = codec.decode(SnacOnnx(folder).encode(pcm(5000)), length=5000, noise=False)
    assert audio.shape == (5000,) and np.isfinite(audio).all()
    with pytest.raises(ModelNotFoundError, match="precision 'int4' is not in this export"):
        SnacOnnx(folder, precision="int4")
