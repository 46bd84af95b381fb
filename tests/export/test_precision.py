"""Variants (int8, fp32-cl, fp16): written on request, listed in the manifest with their checks, selectable; the int8
gate fails an export that breaks it."""

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


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """tests/fixtures/tiny_24khz's config and seed, exported again with every variant (once for this module)."""
    folder = tmp_path_factory.mktemp("precision") / "m"
    loaded = load_random_init(str(FIXTURES / "tiny_24khz.json"), seed=0)
    return loaded, folder, export_model(loaded, folder, precisions=("int8", "fp32-cl", "fp16"))


def test_variants_of_a_deterministic_export(exported):
    """Variants are written and checked; and (seed 0, the fixture's) the graphs are the graphs of tests/fixtures/tiny_24khz,
    exported in another process at another time: identity comes from the graphs. Byte-identical on the fixture's kind of
    CPU; elsewhere, the values drawn from the encoder's latents may differ in their last bits (:func:`_assert_same_graph`)
    and the model id with them. If the exporter changed on purpose, regenerate the fixtures with
    tests/fixtures/make_fixtures.sh."""
    _, folder, manifest = exported
    identical = {
        name: _assert_same_graph(folder / name, FIXTURES / "tiny_24khz" / name)
        for name in ("encoder.onnx", "decoder.onnx", "stream.onnx", "decoder.int8.onnx", "stream.int8.onnx")
    }
    same_id = SnacOnnx(folder).model_id == SnacOnnx(FIXTURES / "tiny_24khz").model_id
    assert same_id == (identical["encoder.onnx"] and identical["decoder.onnx"])  # the id hashes these two
    assert set(manifest["variants"]) == {"int8", "fp32-cl", "fp16"}
    for precision in ("int8", "fp32-cl"):
        variant = manifest["variants"][precision]
        assert variant["layout"] == "channels_last" and set(variant) >= {"decoder", "stream", "parity"} and "encoder" not in variant
        assert variant["parity"]["passed"], precision
    # fp32-cl against PyTorch, with the fp32 limits, the stream included; int8 against fp32, its stream equal to its offline
    assert all("stream_noise_off" in row for row in manifest["variants"]["fp32-cl"]["parity"]["rows"] if row["batch"] == 1)
    int8 = manifest["variants"]["int8"]["parity"]
    assert int8["worst"]["stream_max_abs"] == 0.0 and int8["worst"]["snr_db"] >= int8["limits"]["min_snr_db"]
    assert {r["kernel"] for r in int8["rows"]} >= {"plain"}
    fp16 = manifest["variants"]["fp16"]
    assert fp16["measured"]["runs"] and set(fp16["measured"]["recommended"]) == {"encoder", "decoder"}
    import onnx

    from snac_onnx.model.contract import CONFIG_METADATA_KEY

    def weight_bytes(path):  # the weights, not the graph structure (which dominates a tiny model's file)
        model = onnx.load(str(path))
        return sum(len(t.raw_data) for t in model.graph.initializer), {p.key for p in model.metadata_props}

    int8_weights, int8_keys = weight_bytes(folder / manifest["variants"]["int8"]["decoder"]["path"])
    fp32_weights, _ = weight_bytes(folder / "decoder.onnx")
    assert int8_weights < fp32_weights  # only dense weights are int8: the tiny model has many others (codebooks)
    assert CONFIG_METADATA_KEY in int8_keys
    codec = SnacOnnx(folder, precision="int8")
    assert codec.precision == "int8" and codec.manifest.precisions == ["fp32", "int8", "fp32-cl", "fp16"]
    audio = codec.decode(SnacOnnx(folder).encode(pcm(5000)), length=5000, noise=False)
    assert audio.shape == (5000,) and np.isfinite(audio).all()
    with pytest.raises(ModelNotFoundError, match="precision 'int4' is not in this export"):
        SnacOnnx(folder, precision="int4")


def test_an_int8_variant_that_breaks_its_gate_fails_the_export(exported, tmp_path, monkeypatch):
    """The gate is real: with a limit no int8 graph meets, the variant's parity fails and so does the export."""
    import logging
    import shutil

    from export import int8_parity
    from export.pipeline import failed_variants, write_variants
    from snac_onnx.config import ModelConfig

    loaded, folder, _ = exported
    copy = tmp_path / "m"
    shutil.copytree(folder, copy)
    monkeypatch.setattr(int8_parity, "MIN_SNR_DB", 200.0)
    variants = write_variants(loaded, ModelConfig.from_json(loaded.config), copy, ("int8",), logging.getLogger("test"))
    report = variants["int8"]["parity"]
    assert not report["passed"] and report["worst"]["snr_db"] < 200 and report["worst"]["stream_max_abs"] == 0.0
    assert failed_variants(variants) == ["int8"]  # export_model then keeps the files in <out>.failed and raises
