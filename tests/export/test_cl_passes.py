"""The channels-last graph passes (export/passes), each on a small graph built here, run through onnxruntime on the
operators' function bodies (no kernel library): what each pass rewrites, what it leaves, and that the rewritten
graph computes what it should."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ir = pytest.importorskip("onnx_ir")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from export import cl_ops  # noqa: E402
from export.passes.cleanup import cleanup  # noqa: E402
from export.passes.functions import attach_functions  # noqa: E402
from export.passes.fuse_dequantize_add import fuse_dequantize_add  # noqa: E402
from export.passes.fuse_quantize import fuse_quantize  # noqa: E402
from export.passes.quantize_dense import quantize_dense, quantize_weight  # noqa: E402
from snac_onnx.model.kernels import SNAKE_DOMAIN  # noqa: E402

F32 = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(SNAKE_DOMAIN, 1)])


def _rewrite(model: onnx.ModelProto, *passes) -> tuple[onnx.ModelProto, list[int]]:
    ir_model = ir.serde.deserialize_model(model)
    counts = [p(ir_model) for p in passes]
    proto = ir.serde.serialize_model(ir_model)
    attach_functions(proto)
    return proto, counts


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    attach_functions(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def test_quantize_weight_is_per_column_symmetric_within_half_a_step():
    w = np.random.default_rng(0).standard_normal((40, 24)).astype(np.float32) * np.linspace(0.01, 3, 24, dtype=np.float32)
    w[:, 5] = 0.0
    q, scale = quantize_weight(w)
    assert q.dtype == np.int8 and scale.shape == (24,) and np.abs(q).max() == 127
    assert np.all(np.abs(q.astype(np.float32) * scale - w) <= 0.5 * scale + 1e-7)
    assert scale[5] == 1.0 and not q[:, 5].any()


def test_quantize_dense_rewrites_dense_layers_only_and_shares_weights():
    rng = np.random.default_rng(1)
    w, b, small, narrow = (rng.standard_normal(s).astype(np.float32) for s in ((32, 48), (48,), (8, 32), (48, 8)))
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["dense"]),  # a dense layer with its bias
        helper.make_node("MatMul", ["x", "w"], ["again"]),  # the same weight, no bias (the tail tiles)
        helper.make_node("MatMul", ["codes", "small"], ["projected"]),  # K = 8: stays float
        helper.make_node("MatMul", ["dense", "narrow"], ["last"]),  # N = 8: stays float
    ]
    x = helper.make_tensor_value_info("x", F32, ["b", "t", 32])
    codes = helper.make_tensor_value_info("codes", F32, ["b", "t", 8])
    outputs = [helper.make_tensor_value_info(n, F32, None) for n in ("dense", "again", "projected", "last")]
    model = _model(nodes, [x, codes], outputs, {"w": w, "b": b, "small": small, "narrow": narrow})
    rewritten, (count,) = _rewrite(model, quantize_dense)
    assert count == 2
    assert _ops(rewritten).count("MatMulInteger") == 2 and _ops(rewritten).count("MatMul") == 2
    assert "Add" not in _ops(rewritten)  # the bias went into the dequantization
    names = [i.name for i in rewritten.graph.initializer]
    assert names.count("w/int8") == 1 and "w" not in [i.name for i in cleanup(rewritten).graph.initializer]
    feeds = {"x": rng.standard_normal((2, 5, 32)).astype(np.float32), "codes": rng.standard_normal((2, 5, 8)).astype(np.float32)}
    for ours, ref in zip(_run(rewritten, feeds), _run(model, feeds), strict=True):
        assert ours.shape == ref.shape
        assert float(np.abs(ours - ref).max()) <= 0.02 * float(np.abs(ref).max())  # int8 error, not a wrong layer


def test_quantize_dense_rows_are_independent():
    """Each row's result depends on that row alone: a row decoded among others equals it decoded alone."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [helper.make_tensor_value_info("x", F32, ["b", "t", 64])],
                   [helper.make_tensor_value_info("y", F32, None)], {"w": w})
    rewritten, _ = _rewrite(model, quantize_dense)
    x = (rng.standard_normal((1, 9, 64)) * np.linspace(0.1, 10, 9)[None, :, None]).astype(np.float32)
    (together,) = _run(rewritten, {"x": x})
    alone = np.concatenate([_run(rewritten, {"x": x[:, t : t + 1]})[0] for t in range(9)], axis=1)
    assert np.array_equal(together, alone)


def _stream_unit(name_suffix: str = "") -> onnx.ModelProto:
    channels, held = 24, 6
    op = f"SnakeDepthwiseConvSnakeStreamCL{name_suffix}"
    weights = {n: np.random.default_rng(3).standard_normal(s).astype(np.float32) for n, s in (
        ("a", (channels,)), ("ia", (channels,)), ("w", (7, channels)), ("bias", (channels,)), ("ao", (channels,)), ("iao", (channels,)))}
    nodes = [
        helper.make_node("SnakeTapsCL", ["x", "a", "ia"], ["cols"], domain=SNAKE_DOMAIN),
        helper.make_node("QuantizeRowsCL", ["cols"], ["q_cols", "p_cols"], domain=SNAKE_DOMAIN),
        helper.make_node(op, ["state", "x", "a", "ia", "w", "bias", "ao", "iao"], ["y", "new_state", "residual"],
                         domain=SNAKE_DOMAIN, **cl_ops.depthwise_attributes(1, 0, channels)),
        helper.make_node("QuantizeRowsCL", ["y"], ["q_y", "p_y"], domain=SNAKE_DOMAIN),
        helper.make_node("SnakeCL", ["x", "a", "ia"], ["kept"], domain=SNAKE_DOMAIN),  # read by two nodes: not fused
        helper.make_node("QuantizeRowsCL", ["kept"], ["q_kept", "p_kept"], domain=SNAKE_DOMAIN),
        helper.make_node("Identity", ["kept"], ["kept_too"]),
    ]
    inputs = [helper.make_tensor_value_info("x", F32, ["b", "t", channels]), helper.make_tensor_value_info("state", F32, ["b", held, channels])]
    outputs = [helper.make_tensor_value_info(n, TensorProto.UINT8 if n.startswith("q_") else F32, None)
               for n in ("q_cols", "p_cols", "q_y", "p_y", "new_state", "residual", "q_kept", "p_kept", "kept_too")]
    return _model(nodes, inputs, outputs, weights)


def test_fuse_quantize_makes_the_layer_write_its_quantized_rows_with_the_same_results():
    model = _stream_unit()
    rewritten, (count,) = _rewrite(model, fuse_quantize)
    assert count == 2
    assert sorted(_ops(rewritten)) == sorted(["SnakeTapsCLQ", "SnakeDepthwiseConvSnakeStreamCLQ", "SnakeCL", "QuantizeRowsCL", "Identity"])
    fused = next(n for n in rewritten.graph.node if n.op_type == "SnakeDepthwiseConvSnakeStreamCLQ")
    assert {a.name for a in fused.attribute} == set(cl_ops.OPS["SnakeDepthwiseConvSnakeStreamCL"].attributes)
    rng = np.random.default_rng(4)
    feeds = {"x": rng.standard_normal((2, 7, 24)).astype(np.float32), "state": rng.standard_normal((2, 6, 24)).astype(np.float32)}
    for ours, ref in zip(_run(rewritten, feeds), _run(_stream_unit(), feeds), strict=True):
        assert np.array_equal(ours, ref)  # the fused form's body is the two bodies: the same ops


def test_fuse_dequantize_add_takes_residuals_either_side_but_never_a_bias():
    rng = np.random.default_rng(5)
    n = 16
    consts = {"ws": np.abs(rng.standard_normal(n)).astype(np.float32), "sums": rng.integers(-500, 500, n).astype(np.int32),
              "bias": rng.standard_normal(n).astype(np.float32), "more_bias": rng.standard_normal(n).astype(np.float32)}
    nodes = []
    for k in range(3):
        nodes.append(helper.make_node("DequantizeCL", ["acc", "params", "ws", "sums", "bias"], [f"d{k}"], domain=SNAKE_DOMAIN))
    nodes += [
        helper.make_node("Add", ["d0", "r"], ["left"]),
        helper.make_node("Add", ["r", "d1"], ["right"]),
        helper.make_node("Add", ["d2", "more_bias"], ["biased"]),  # a constant: a bias, left alone
    ]
    inputs = [helper.make_tensor_value_info("acc", TensorProto.INT32, ["b", "t", n]), helper.make_tensor_value_info("params", F32, ["b", "t", 2]),
              helper.make_tensor_value_info("r", F32, ["b", "t", n])]
    outputs = [helper.make_tensor_value_info(o, F32, None) for o in ("left", "right", "biased")]
    model = _model(nodes, inputs, outputs, consts)
    rewritten, (count,) = _rewrite(model, fuse_dequantize_add)
    assert count == 2 and _ops(rewritten).count("DequantizeAddCL") == 2 and _ops(rewritten).count("Add") == 1
    params = np.stack([np.abs(rng.standard_normal((2, 3))) * 1e-2, rng.integers(0, 256, (2, 3))], -1).astype(np.float32)
    feeds = {"acc": rng.integers(-10000, 10000, (2, 3, n)).astype(np.int32), "params": params, "r": rng.standard_normal((2, 3, n)).astype(np.float32)}
    for ours, ref in zip(_run(rewritten, feeds), _run(model, feeds), strict=True):
        assert np.array_equal(ours, ref)  # float addition commutes: the same bits


def test_attach_functions_gives_each_used_operator_its_body_and_no_other():
    model = _stream_unit()
    model.functions.append(cl_ops.OPS["ConvCL"].function())  # stale: no node uses it
    used = attach_functions(model)
    assert used == ["QuantizeRowsCL", "SnakeCL", "SnakeDepthwiseConvSnakeStreamCL", "SnakeTapsCL"]
    assert sorted(f.name for f in model.functions) == used
    with pytest.raises(KeyError):
        attach_functions(_model([helper.make_node("NoSuchOpCL", ["x"], ["y"], domain=SNAKE_DOMAIN)],
                                [helper.make_tensor_value_info("x", F32, [1])], [helper.make_tensor_value_info("y", F32, None)], {}))
