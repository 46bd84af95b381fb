"""What the exporter writes into the graphs for speed, checked on the tiny exports (onnx and onnxruntime only).

* Every NoiseBlock is gated: ``If(max |noise_j| == 0)`` passes its input on, else runs the block
  (export/noise_gate.py). Decoding without noise skips the convolutions; a batch where some rows have
  noise and others none still gives each row what it gets alone.
* The stream graph's layers read and write their state in fused kernels (export/fuse.py): each residual
  unit is one ``SnakeDepthwiseConvSnakeStream`` in both branches, and in the steady branch each Snake
  that feeds a state is a ``SnakeStream``. Their function bodies give the same stream (tested against
  the kernels in test_fused_snake.py, and here through the codec with and without the kernel library).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from snac_onnx import SnacOnnx
from snac_onnx.model.kernels import SNAKE_DOMAIN
from snac_onnx.model.sessions import SessionSettings

from ..support import TINY_24, TINY_44, pcm


def _branches(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    return [a.g for n in graph.node if n.op_type == "If" for a in n.attribute if a.name.endswith("_branch")]


def _noise_gates(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The If nodes of ``graph`` whose else branch is a NoiseBlock (Conv, Mul, Add) and whose then branch passes on."""
    gates = []
    for node in graph.node:
        if node.op_type != "If":
            continue
        then = next(a.g for a in node.attribute if a.name == "then_branch")
        other = next(a.g for a in node.attribute if a.name == "else_branch")
        if [n.op_type for n in then.node] == ["Identity"] and [n.op_type for n in other.node] == ["Conv", "Mul", "Add"]:
            gates.append(node)
    return gates


@pytest.mark.parametrize("folder", [TINY_24, TINY_44], ids=["24khz", "44khz"])
def test_every_noise_block_is_gated(folder):
    codec = SnacOnnx(folder)
    blocks = codec.config.num_noise_blocks
    decoder = onnx.load(str(folder / "decoder.onnx")).graph
    gates = _noise_gates(decoder)
    assert len(gates) >= blocks  # the decoder's tail tiles run their blocks once per tile
    assert not [n for n in decoder.node if n.op_type == "Mul" and n.input[0].startswith("noise_")]
    stream = onnx.load(str(folder / "stream.onnx")).graph
    for branch in _branches(stream):
        assert len(_noise_gates(branch)) == blocks, branch.name


@pytest.mark.parametrize("folder", [TINY_24, TINY_44], ids=["24khz", "44khz"])
def test_noise_gate_is_per_call_but_exact_per_row(folder):
    codec = SnacOnnx(folder)
    codes = codec.encode(pcm(3 * codec.config.padding_unit, seed=2))
    frames = codes[0].shape[0]
    noise = codec.stream_noise(frames, seed=7)
    quiet = codec.decode(codes, noise=False)
    noisy = codec.decode(codes, noise=noise)
    assert np.abs(noisy - quiet).max() > 1e-4  # the noise is heard
    zeros = [np.zeros_like(n) for n in noise]
    np.testing.assert_array_equal(codec.decode(codes, noise=zeros), quiet)
    batch = [np.stack([c, c]) for c in codes]  # row 0 without noise, row 1 with: the gate opens for both
    mixed = [np.concatenate([z, n]) for z, n in zip(zeros, noise, strict=True)]
    both = codec.decode(batch, noise=mixed)
    np.testing.assert_allclose(both[0], quiet, atol=1e-6)
    np.testing.assert_allclose(both[1], noisy, atol=1e-6)


@pytest.mark.parametrize("folder", [TINY_24, TINY_44], ids=["24khz", "44khz"])
def test_stream_graph_keeps_its_state_in_the_kernels(folder):
    model = onnx.load(str(folder / "stream.onnx"))
    branches = {b.name: b for b in _branches(model.graph)}
    steady, masked = branches["steady"], branches["masked"]
    units = SnacOnnx(folder).config.num_noise_blocks * 3  # three residual units per decoder block
    for branch in (steady, masked):
        ops = [n.op_type for n in branch.node if n.domain == SNAKE_DOMAIN]
        assert ops.count("SnakeDepthwiseConvSnakeStream") == units, branch.name
        assert "SnakeDepthwiseConvSnake" not in ops
    joined = [n for n in steady.node if n.op_type == "SnakeStream"]
    assert len(joined) == units // 3 + 1  # each upsampler's input and the last convolution's
    states = {o.name for o in steady.output}
    sliced = [n for n in steady.node if n.op_type == "Slice" and n.output[0] in states]
    assert len(sliced) <= 2, [n.output[0] for n in sliced]  # only the first convolution's (and attention's) state
    assert {f.name for f in model.functions} >= {"SnakeDepthwiseConvSnakeStream", "SnakeStream"}


@pytest.mark.parametrize("folder", [TINY_24, TINY_44], ids=["24khz", "44khz"])
def test_stream_with_and_without_the_kernels_agree(folder):
    fused = SnacOnnx(folder)
    plain = SnacOnnx(folder, settings=SessionSettings(fused_snake=False))
    assert fused.fused_snake and not plain.fused_snake
    codes = fused.encode(pcm(5 * fused.config.padding_unit, seed=4))
    offline = fused.decode(codes, noise=False)
    for codec in (fused, plain):
        stream = codec.stream()
        out = np.concatenate([stream.push(codes), stream.flush()])
        np.testing.assert_allclose(out, offline, atol=1e-4)
