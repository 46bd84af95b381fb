"""Reduced-precision variants: written on request, listed in the manifest with measured error, selectable."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("snac")

from export.checkpoint import load_random_init
from export.pipeline import export_model
from snac_onnx import ModelNotFoundError, SnacOnnx
from tests.support import FIXTURES, pcm

pytestmark = pytest.mark.slow  # exports and quantizes a model (minutes)

# Initializers a random-init export computes from float arithmetic in torch (the codebooks and in_proj's
# bias are drawn from the encoder's own latents, export/codebooks.py): their last bits depend on the CPU's
# kernels (an AMD EPYC and an Intel Xeon, both AVX-512, differ by up to 6e-8). Every other byte of a graph
# comes from the seeded weights and the exporter alone.
_DRAWN_FROM_LATENTS = re.compile(r"quantizer\.quantizers\.\d+\.(codebook\.weight|in_proj\.bias)")


def _assert_same_graph(path: Path, fixture: Path) -> bool:
    """``path`` is ``fixture``'s graph: the same bytes, or (another CPU) the same bytes apart from the values of
    the initializers drawn from latents, which agree to float rounding. Returns whether the bytes are equal."""
    if path.read_bytes() == fixture.read_bytes():
        return True
    import onnx
    from onnx import numpy_helper

    ours, theirs = onnx.load(str(path)), onnx.load(str(fixture))
    drawn = 0
    for a, b in zip(ours.graph.initializer, theirs.graph.initializer, strict=True):
        x, y = numpy_helper.to_array(a), numpy_helper.to_array(b)
        assert (a.name, x.dtype, x.shape) == (b.name, y.dtype, y.shape), (path.name, a.name, b.name)
        if _DRAWN_FROM_LATENTS.fullmatch(a.name):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=f"{path.name}: {a.name}")
            drawn += 1
        else:
            assert np.array_equal(x, y), f"{path.name}: {a.name} differs (it does not depend on float arithmetic)"
        a.ClearField("raw_data")
        b.ClearField("raw_data")
    assert drawn > 0
    assert ours.SerializeToString() == theirs.SerializeToString(), f"{path.name}: the graph's structure differs"
    return False


def test_int8_and_fp16_variants_of_a_deterministic_export(tmp_path):
    """Variants are written and measured; and (seed 0, the fixture's) the fp32 graphs are the graphs of
    tests/fixtures/tiny_24khz, exported in another process at another time: identity comes from the graphs.
    Byte-identical on the fixture's kind of CPU; elsewhere, the values drawn from the encoder's latents may
    differ in their last bits (:func:`_assert_same_graph`) and the model id with them.
    If the exporter changed on purpose, regenerate the fixtures with tests/fixtures/make_fixtures.sh."""
    loaded = load_random_init(str(FIXTURES / "tiny_24khz.json"), seed=0)
    manifest = export_model(loaded, tmp_path / "m", precisions=("int8", "fp16"))
    folder = tmp_path / "m"
    identical = {
        name: _assert_same_graph(folder / name, FIXTURES / "tiny_24khz" / name)
        for name in ("encoder.onnx", "decoder.onnx", "stream.onnx")
    }
    same_id = SnacOnnx(folder).model_id == SnacOnnx(FIXTURES / "tiny_24khz").model_id
    assert same_id == (identical["encoder.onnx"] and identical["decoder.onnx"])  # the id hashes these two
    assert set(manifest["variants"]) == {"int8", "fp16"}
    for _precision, variant in manifest["variants"].items():
        for role in ("encoder", "decoder"):
            assert (folder / variant[role]["path"]).is_file()
        measured = variant["measured"]
        assert measured["runs"], measured
        assert 0 <= measured["encode_code_agreement"] <= 1 and measured["decode_snr_db"] > 0
        assert set(measured["recommended"]) == {"encoder", "decoder"}
    import onnx

    from snac_onnx.model.contract import CONFIG_METADATA_KEY

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
