"""The int8 variant on the tiny exports (onnxruntime only): channels-last graphs whose dense layers are int8.

Exact by construction: each activation row (time step) is quantized with its own scale and zero point, so its codes
depend on that row alone; int8 products are summed exactly in int32 (onnxruntime's MatMulInteger), and the zero point
comes off exactly in int32; every other value (Snake, depthwise, dequantization, residual adds) is computed by the
same code for every row, wherever it sits in a call or however the calls cut the sequence. So the int8 stream equals
the int8 offline decode of the same codes bit for bit. By test: here, for every push pattern, lengths 1 to 11 frames,
noise off and seeded noise, both fixtures, with the kernel library and on the plain function bodies, and through the
StreamPool; and the exporter checks it on every int8 export (export/int8_parity.py).
"""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import onnx
import pytest

from snac_onnx import InvalidArgumentError, SnacOnnx, StreamPool
from snac_onnx.model.contract import CHANNELS_FIRST, CHANNELS_LAST
from snac_onnx.model.kernels import fused_snake_available
from snac_onnx.model.sessions import SessionSettings

from ..support import TINY_24, TINY_44, pcm
from .test_pool import _pieces
from .test_streaming import _codes, _patterns, _run

FOLDERS = {"tiny24": TINY_24, "tiny44": TINY_44}
KERNELS = ["fused", "plain"] if fused_snake_available() else ["plain"]


@pytest.fixture(scope="module")
def codecs():
    made = {}
    for model, folder in FOLDERS.items():
        for kernel in KERNELS:
            made[model, kernel] = SnacOnnx(folder, precision="int8", settings=SessionSettings(fused_snake=kernel == "fused"))
    yield made
    for codec in made.values():
        codec.close()


@pytest.mark.parametrize("model", list(FOLDERS))
def test_the_export_holds_the_int8_variant(model):
    codec = SnacOnnx(FOLDERS[model], precision="int8")
    manifest = codec.manifest
    assert "int8" in manifest.precisions and manifest.layout("int8") == CHANNELS_LAST and manifest.layout() == CHANNELS_FIRST
    assert manifest.has_stream("int8") and manifest.file_entry("stream", "int8")["path"] == "stream.int8.onnx"
    assert manifest.file_entry("encoder", "int8") == manifest.files["encoder"]  # int8 exports encode in fp32
    report = manifest.raw["variants"]["int8"]["parity"]
    assert report["passed"] and report["worst"]["stream_max_abs"] == 0.0
    assert report["worst"]["snr_db"] >= report["limits"]["min_snr_db"]
    session = codec.session("stream")  # its states are (batch, length, channels)
    shapes = {i.name: i.shape for i in session.get_inputs()}
    for k, state in enumerate(manifest.stream.states):
        assert shapes[f"state_{k}"][1:] == [state.length, state.channels]


@pytest.mark.parametrize("model", list(FOLDERS))
def test_channels_last_graphs_have_no_transpose_and_int8_dense_layers(model):
    for role in ("decoder", "stream"):
        graph = onnx.load(str(FOLDERS[model] / f"{role}.int8.onnx")).graph
        nodes = list(graph.node)
        for node in graph.node:  # the stream graph's If branches (steady and masked) and the noise gates
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    nodes += list(attribute.g.node)
        kinds = [n.op_type for n in nodes]
        assert "Conv" not in kinds and "PolyphaseInterleave" not in kinds, (role, set(kinds))
        assert kinds.count("MatMulInteger") >= 4, role
        # no Transpose between layers: none at all at 24 kHz; at 44 kHz only inside the attention (its heads and windows)
        producer = {o: n for n in nodes for o in n.output}
        layers = {"MatMulInteger", "MatMul", *(n.op_type for n in nodes if n.domain == "ai.snac_onnx")}
        transposes = [n for n in nodes if n.op_type == "Transpose"]
        if model == "tiny24":
            assert not transposes, role
        for node in transposes:
            source = producer.get(node.input[0])
            users = [n for n in nodes if node.output[0] in n.input]
            assert source is not None and source.op_type not in layers, (role, node.name)
            assert not [u for u in users if u.op_type in layers], (role, node.name)
        float_dense = {i.name for i in graph.initializer if len(i.dims) == 2 and min(i.dims) >= 16 and i.data_type == 1}
        assert not [n for n in nodes if n.op_type == "MatMul" and n.input[1] in float_dense], role


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("model", list(FOLDERS))
def test_int8_stream_equals_int8_offline_bit_for_bit(model, kernel, codecs):
    codec = codecs[model, kernel]
    multiple = codec.config.frames_multiple
    per = codec.config.codes_per_frame
    for frames in range(1, 12):
        codes = _codes(codec, frames, seed=frames)
        padded = frames + (-frames % multiple)  # offline 44 kHz takes whole windows: pad as the stream does
        full = [np.concatenate([c, np.tile(c[-p:], padded - frames)]) for c, p in zip(codes, per)]
        offline = codec.decode(full, noise=False)[: frames * codec.samples_per_frame]
        patterns = _patterns(codec, codes, seed=frames).items() if frames > 1 else [("one", [codes])]
        for name, pieces in patterns:
            np.testing.assert_array_equal(_run(codec.stream(mode="stateful"), pieces), offline, err_msg=f"{frames} {name}")


@pytest.mark.parametrize("model", list(FOLDERS))
def test_int8_stream_with_noise_equals_int8_offline_fed_the_same_noise(model, codecs):
    codec = codecs[model, KERNELS[0]]
    frames = 13 if model == "tiny24" else 16
    codes = _codes(codec, frames, seed=4)
    offline = codec.decode(codes, noise=codec.stream_noise(frames, 11))
    assert np.abs(offline - codec.decode(codes, noise=False)).max() > 1e-2  # the noise is there
    for name, pieces in _patterns(codec, codes, seed=2).items():
        np.testing.assert_array_equal(_run(codec.stream(mode="stateful", noise=True, seed=11), pieces), offline, err_msg=name)


@pytest.mark.parametrize("model", list(FOLDERS))
def test_int8_is_close_to_fp32_and_the_kernels_to_the_function_bodies(model, codecs):
    fp32 = SnacOnnx(FOLDERS[model])
    codes = fp32.encode(pcm(4 * fp32.config.padding_unit, seed=3))
    ref = fp32.decode(codes, noise=False).astype(np.float64)
    decoded = {kernel: codecs[model, kernel].decode(codes, noise=False) for kernel in KERNELS}
    for audio in decoded.values():
        snr = 10 * np.log10(np.sum(ref**2) / np.sum((audio - ref) ** 2))
        assert snr > 35, snr
    if len(decoded) == 2:  # the kernels and the bodies differ by float rounding (and the quantization steps it moves)
        assert np.abs(decoded["fused"] - decoded["plain"]).max() < 1e-2 * np.abs(ref).max()


@pytest.mark.parametrize("model", list(FOLDERS))
def test_pool_runs_int8_streams_exactly(model):
    codec = SnacOnnx(FOLDERS[model], precision="int8", threads=1)
    m = codec.config.frames_multiple
    lengths = [m * n for n in (1, 2, 3, 5, 8)]
    expected, outputs = {}, {}
    with StreamPool(codec, collect_ms=5, workers=2) as pool:

        def client(i: int) -> None:
            codes = _codes(codec, lengths[i], seed=i)
            expected[i] = codec.decode(codes, noise=False)
            stream = pool.open()
            for piece in _pieces(codec, codes, seed=i):
                stream.push(piece)
            stream.end()
            outputs[i] = np.concatenate(list(stream))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(lengths))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    for i in range(len(lengths)):
        np.testing.assert_array_equal(outputs[i], expected[i], err_msg=str(i))


def test_a_variant_without_a_stream_graph_streams_in_window_mode(tmp_path):
    """Exports before the channels-last graphs listed variants without a layout or a stream graph: they still load."""
    folder = tmp_path / "m"
    shutil.copytree(TINY_24, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["variants"]["old"] = {"encoder": manifest["files"]["encoder"], "decoder": manifest["files"]["decoder"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    codec = SnacOnnx(folder, precision="old")
    assert codec.manifest.layout("old") == CHANNELS_FIRST and not codec.manifest.has_stream("old")
    assert codec.stream().mode == "window"
    with pytest.raises(InvalidArgumentError, match="no stream graph at precision 'old'"):
        codec.stream(mode="stateful")
    with pytest.raises(InvalidArgumentError, match="no stream graph at precision 'old'"):
        StreamPool(codec)
    manifest["variants"]["bad"] = {"decoder": manifest["files"]["decoder"], "layout": "diagonal"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    from snac_onnx import ModelFormatError

    with pytest.raises(ModelFormatError, match="layout"):
        SnacOnnx(folder)


def test_cli_info_says_which_graphs_run(capsys):
    from snac_onnx.cli import main

    assert main(["info", "-m", str(TINY_24), "--precision", "int8", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"]["variant"] == {"precision": "int8", "layout": CHANNELS_LAST}
    assert main(["info", "-m", str(TINY_24), "--precision", "int8"]) == 0
    assert "graphs in use: int8 (channels-last)" in capsys.readouterr().out


@pytest.mark.parametrize("model", list(FOLDERS))
def test_every_int8_noise_block_is_gated(model):
    """As in the fp32 graphs (test_graph_forms.py): each NoiseBlock, here QuantizeRows, MatMulInteger, Dequantize, Mul
    and Add (a narrow one: MatMul, Mul, Add), sits in the else branch of an If that passes its input on when the noise
    is zeros."""

    def gates(graph: onnx.GraphProto) -> int:
        found = 0
        for node in graph.node:
            branches = {a.name: a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}
            if node.op_type == "If" and "else_branch" in branches:
                then, other = branches["then_branch"], branches["else_branch"]
                kinds = [n.op_type for n in other.node]
                dense = "MatMulInteger" in kinds or kinds == ["MatMul", "Mul", "Add"]  # the tiny models' narrow layers: float
                if [n.op_type for n in then.node] == ["Identity"] and kinds[-2:] == ["Mul", "Add"] and dense:
                    found += 1
        return found

    blocks = SnacOnnx(FOLDERS[model]).config.num_noise_blocks
    assert gates(onnx.load(str(FOLDERS[model] / "decoder.int8.onnx")).graph) >= blocks  # tail tiles run theirs per tile
    stream = onnx.load(str(FOLDERS[model] / "stream.int8.onnx")).graph
    branches = [a.g for n in stream.node if n.op_type == "If" for a in n.attribute if a.name.endswith("_branch")]
    assert len(branches) == 2 and all(gates(branch) == blocks for branch in branches)


def test_int8_without_vnni_is_a_warning(monkeypatch, caplog):
    """On an x86 CPU without VNNI onnxruntime's uint8 x int8 products can saturate: int8 sessions say so there."""
    from snac_onnx.model import sessions

    monkeypatch.setattr(sessions, "_int8_products_exact", lambda: False)
    with caplog.at_level("WARNING", logger="snac_onnx.model.sessions"):
        SnacOnnx(TINY_24, precision="int8").load("decoder", "encoder")
        SnacOnnx(TINY_24).load("decoder")
    warned = [r.getMessage() for r in caplog.records if "without VNNI" in r.getMessage()]
    assert len(warned) == 1 and "decoder.int8.onnx" in warned[0]  # not the fp32 encoder, not fp32
    monkeypatch.undo()
    assert isinstance(sessions._int8_products_exact(), bool)
