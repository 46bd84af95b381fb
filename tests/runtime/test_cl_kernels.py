"""The channels-last kernels (csrc/snake.c) against their operators' ONNX function bodies (export/cl_ops.py).

Every operator runs as a one-node model twice: on the kernel library, and on the function body (the same graph
without the library). Float outputs agree to float rounding; a quantized output's codes may differ by one step
only where that rounding moved a value across a rounding boundary (the quantization itself is the body's
arithmetic exactly: QuantizeRowsCL matches bit for bit); the dequantization takes the zero point off in int32
exactly, then the body's float ops. Each kernel gives the same bits on 1 and 2 threads (rows are computed the same way whoever
computes them). Shapes cover channel counts that are not a multiple of the kernels' 16 lanes, one time step,
several batch rows, every dilation SNAC uses, and values beyond the float sine reduction (redone in double).
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from export import cl_ops  # noqa: E402
from snac_onnx.model.kernels import SNAKE_DOMAIN, fused_snake_available, snake_library  # noqa: E402

pytestmark = pytest.mark.skipif(not fused_snake_available(), reason="the kernel library is not built")

_TYPES = {"tensor(float)": onnx.TensorProto.FLOAT, "tensor(uint8)": onnx.TensorProto.UINT8, "tensor(int32)": onnx.TensorProto.INT32}


def _run(name: str, inputs: list[np.ndarray], attrs: dict[str, object], fused: bool, threads: int = 1) -> list[np.ndarray]:
    op = cl_ops.OPS[name]
    names = [n for n, _ in op.inputs]
    node = onnx.helper.make_node(name, names, [n for n, _ in op.outputs], domain=SNAKE_DOMAIN, **attrs)
    graph = onnx.helper.make_graph(
        [node],
        name,
        [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for n, v in zip(names, inputs)],
        [onnx.helper.make_tensor_value_info(n, _TYPES[t], None) for n, t in op.outputs],
    )
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", 18), onnx.helper.make_opsetid(SNAKE_DOMAIN, 1)], functions=[op.function()]
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if fused:
        options.register_custom_ops_library(str(snake_library()))
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, dict(zip(names, inputs)))


def _cases(batch: int, steps: int, channels: int, dilation: int, scale: float, seed: int):
    rng = np.random.default_rng(seed)

    def f(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    held = 6 * dilation
    x, state, state1 = f(batch, steps, channels), f(batch, held, channels), f(batch, 1, channels)
    snake = [f(channels), f(channels)]
    depthwise = [f(7, channels), f(channels)]
    snake_out = [f(channels), f(channels)]
    offline = cl_ops.depthwise_attributes(dilation, 3 * dilation, channels)
    stream = cl_ops.depthwise_attributes(dilation, 0, channels)
    yield "SnakeCL", [x, *snake], {}
    yield "SnakeStreamCL", [state, x, *snake], {}
    yield "SnakeTapsCL", [x, *snake], {}
    yield "SnakeTapsStreamCL", [state1, x, *snake], {}
    yield "DepthwiseConvCL", [x, *depthwise], offline
    yield "DepthwiseConvStreamCL", [state, x, *depthwise], stream
    yield "SnakeDepthwiseConvSnakeCL", [x, *snake, *depthwise, *snake_out], offline
    yield "SnakeDepthwiseConvSnakeStreamCL", [state, x, *snake, *depthwise, *snake_out], stream
    yield "ConvCL", [x, f(7, channels, 2), f(2)], {"padding": 3, "pads": [3, 3]}
    for name in sorted(cl_ops.QUANTIZABLE):
        yield f"{name}Q", None, name  # the quantized form of the case above (filled in by the test)
    yield "QuantizeRowsCL", [x], {}


SHAPES = [(1, 1, 16, 1, 1.0), (3, 37, 40, 9, 1.0), (2, 300, 64, 3, 2.0), (1, 513, 5, 1, 1.0), (1, 40, 24, 1, 3e4)]


@pytest.mark.parametrize(("batch", "steps", "channels", "dilation", "scale"), SHAPES)
def test_kernels_equal_function_bodies(batch, steps, channels, dilation, scale):
    float_cases = {}
    for name, inputs, attrs in _cases(batch, steps, channels, dilation, scale, seed=steps):
        if inputs is None:  # the quantized form: the same inputs
            inputs, attrs = float_cases[attrs]
        else:
            float_cases[name] = (inputs, attrs)
        ours, body = _run(name, inputs, attrs, fused=True), _run(name, inputs, attrs, fused=False)
        assert len(ours) == len(body)
        for k, (a, b) in enumerate(zip(ours, body)):
            assert a.shape == b.shape and a.dtype == b.dtype, (name, k)
            if a.dtype == np.uint8:
                step = np.abs(a.astype(np.int16) - b.astype(np.int16))
                assert step.max() <= 1, (name, k)
                if name == "QuantizeRowsCL":
                    assert np.array_equal(a, b), name  # nothing before the quantization: the body's arithmetic exactly
                else:
                    assert step.mean() < 1e-3, (name, step.mean())
            else:
                tolerance = 2e-5 * max(1.0, float(np.abs(b).max()))
                assert np.isfinite(a).all() and float(np.abs(a - b).max()) <= tolerance, (name, k, float(np.abs(a - b).max()))
        two = _run(name, inputs, attrs, fused=True, threads=2)
        for a, b in zip(ours, two):
            assert np.array_equal(a, b), (name, "1 vs 2 threads")


def test_dequantize_takes_the_zero_point_off_exactly_in_int32():
    rng = np.random.default_rng(5)
    acc = rng.integers(-(1 << 22), 1 << 22, (2, 9, 40)).astype(np.int32)
    zero = rng.integers(0, 256, (2, 9, 1))
    weight_sum = rng.integers(-4000, 4000, 40).astype(np.int32)
    ones, nothing = np.ones(40, np.float32), np.zeros(40, np.float32)
    params = np.concatenate([np.ones((2, 9, 1)), zero], -1).astype(np.float32)
    (y,) = _run("DequantizeCL", [acc, params, ones, weight_sum, nothing], {}, fused=True)
    assert np.array_equal(y, (acc - zero * weight_sum).astype(np.float32))  # integers below 2^24: exact in float
    # with scales, bias and a residual: the body's float ops (the kernel may fuse a multiply-add: one rounding less)
    params = np.concatenate([np.abs(rng.standard_normal((2, 9, 1))) * 1e-3, zero], -1).astype(np.float32)
    scale, bias = (np.abs(rng.standard_normal(40)) * 1e-2).astype(np.float32), rng.standard_normal(40).astype(np.float32)
    residual = rng.standard_normal((2, 9, 40)).astype(np.float32)
    inputs = [acc, params, scale, weight_sum, bias, residual]
    (ours,), (body,) = _run("DequantizeAddCL", inputs, {}, fused=True), _run("DequantizeAddCL", inputs, {}, fused=False)
    np.testing.assert_allclose(ours, body, rtol=1e-6, atol=1e-6)


def test_quantized_rows_reconstruct_within_half_a_step_and_zero_is_exact():
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((2, 50, 33)) + rng.uniform(-3, 3, (2, 50, 1))).astype(np.float32)
    x[0, 3] = 0.0  # a row of zeros
    x[1, 4] = np.abs(x[1, 4])  # a row without negatives: its zero point is 0
    q, params = _run("QuantizeRowsCL", [x], {}, fused=True)
    scale, zero = params[..., :1], params[..., 1:]
    back = (q.astype(np.float32) - zero) * scale
    assert np.all(np.abs(back - x) <= 0.5 * scale * (1 + 1e-5))
    assert np.all(zero == np.round(zero)) and np.all((zero >= 0) & (zero <= 255))
    assert np.all(back[0, 3] == 0.0) and zero[1, 4, 0] == 0.0
    assert np.all((q.astype(np.float32) - zero)[x == 0] == 0)  # a zero value is exactly the zero point


def test_non_finite_rows_are_never_silently_finite():
    x = np.ones((1, 4, 20), np.float32)
    x[0, 2, 7] = np.nan
    alpha = np.ones(20, np.float32)
    _, params = _run("QuantizeRowsCL", [x], {}, fused=True)
    assert np.isnan(params[0, 2, 0]) and np.isfinite(params[0, [0, 1, 3], 0]).all()
    acc = np.ones((1, 4, 20), np.int32)
    (y,) = _run("DequantizeCL", [acc, params, alpha, np.zeros(20, np.int32), alpha], {}, fused=True)
    assert np.isnan(y[0, 2]).all() and np.isfinite(y[0, [0, 1, 3]]).all()
    (y,) = _run("SnakeCL", [x, alpha, alpha], {}, fused=True)
    assert np.isnan(y[0, 2, 7]) and np.isfinite(np.delete(y.reshape(-1), 2 * 20 + 7)).all()


def test_shapes_the_graphs_never_give_are_nan_not_garbage():
    x = np.ones((1, 4, 8), np.float32)
    (y,) = _run("SnakeCL", [x, np.ones(8, np.float32), np.ones(7, np.float32)], {}, fused=True)
    assert np.isnan(y).all()
