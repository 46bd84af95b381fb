"""Rules of the exporter's checks: downstream code mismatches, and the Snake fusion pass's refusals."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.fuse import FusionError, fuse_snake
from export.parity import split_mismatches


def test_split_mismatches_counts_finer_codebooks_under_a_coarse_mismatch_as_downstream():
    # 24 kHz strides: codebook 0 covers 4 latent steps, 1 covers 2, 2 covers 1
    d0 = np.array([[False, True]])
    d1 = np.array([[False, False, True, True]])  # codes 2, 3 = steps 4..7: under the coarse mismatch
    d2 = np.array([[True, False, False, False, True, True, False, False]])  # step 0 is primary; 4, 5 downstream
    primary, downstream = split_mismatches([d0, d1, d2], [4, 2, 1])
    assert downstream == 4
    assert primary[0].tolist() == [[False, True]]
    assert not primary[1].any()
    assert primary[2].tolist() == [[True] + [False] * 7]


def test_split_mismatches_without_any():
    diffs = [np.zeros((2, n), bool) for n in (2, 4, 8)]
    primary, downstream = split_mismatches(diffs, [4, 2, 1])
    assert downstream == 0 and not any(p.any() for p in primary)


def _chain_model(extra_sin: bool = False) -> onnx.ModelProto:
    alpha = numpy_helper.from_array(np.full((1, 2, 1), 1.5, np.float32), "alpha")
    inv = numpy_helper.from_array(np.full((1, 2, 1), 1 / 1.5, np.float32), "inv")
    nodes = [
        helper.make_node("Mul", ["alpha", "x"], ["z"]),
        helper.make_node("Sin", ["z"], ["s"]),
        helper.make_node("Mul", ["s", "s"], ["s2"]),
        helper.make_node("Mul", ["inv", "s2"], ["t"]),
        helper.make_node("Add", ["x", "t"], ["y"]),
    ]
    out = "y"
    if extra_sin:
        nodes.append(helper.make_node("Sin", ["y"], ["w"]))
        out = "w"
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, None])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 2, None])],
        [alpha, inv],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_fuse_snake_replaces_a_chain_and_keeps_it_runnable():
    import onnxruntime as ort

    model = _chain_model()
    assert fuse_snake(model, expected=1) == 1
    assert [n.op_type for n in model.graph.node] == ["Snake"]
    x = np.linspace(-3, 3, 20, dtype=np.float32).reshape(1, 2, 10)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    a = np.float32(1.5)
    np.testing.assert_allclose(y, x + np.float32(1 / 1.5) * np.sin(a * x) ** 2, rtol=1e-6, atol=1e-6)


def test_fuse_snake_refuses_stray_sin_and_wrong_counts():
    with pytest.raises(FusionError, match="Sin #1"):
        fuse_snake(_chain_model(extra_sin=True), expected=1)
    with pytest.raises(FusionError, match="expected 2"):
        fuse_snake(_chain_model(), expected=2)


def test_fuse_snake_depthwise_merges_snake_and_depthwise_conv():
    import onnxruntime as ort

    from export.fuse import fuse_snake_depthwise

    model = _chain_model()
    graph = model.graph
    graph.output[0].name = "c"
    w = np.random.default_rng(0).standard_normal((2, 1, 7)).astype(np.float32)
    graph.initializer.extend([numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.ones(2, np.float32), "b")])
    graph.node.append(helper.make_node("Conv", ["y", "w", "b"], ["c"], group=2, dilations=[3], pads=[9, 9]))
    x = np.linspace(-3, 3, 80, dtype=np.float32).reshape(1, 2, 40)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    fuse_snake(model, expected=1)
    with pytest.raises(FusionError, match="expected 2"):
        fuse_snake_depthwise(onnx.ModelProto.FromString(model.SerializeToString()), expected=2)
    assert fuse_snake_depthwise(model, expected=1) == 1
    (node,) = model.graph.node
    assert node.op_type == "SnakeDepthwiseConv"
    assert {a.name: helper.get_attribute_value(a) for a in node.attribute}["dilation"] == 3
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
