"""The fused Snake kernel (csrc/snake.c) against float64 arithmetic and against the graphs' own
ONNX function bodies; when sessions use it; what happens when it is missing or broken (no torch).

The kernel is built by ``pip install`` wherever a C compiler exists (CI has one). Set
SNAC_ONNX_ALLOW_NO_KERNEL=1 to run these tests on an install without it (they then skip).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from snac_onnx import SnacOnnx, SnacOnnxError
from snac_onnx.model import kernels, sessions
from snac_onnx.model.kernels import SNAKE_DOMAIN, fused_snake_available, snake_library
from snac_onnx.model.sessions import SessionSettings
from tests.support import HANG_GUARD_S, TINY_24, TINY_44, pcm

if not fused_snake_available():
    if os.environ.get("SNAC_ONNX_ALLOW_NO_KERNEL"):
        pytest.skip("fused Snake kernel not built (SNAC_ONNX_ALLOW_NO_KERNEL set)", allow_module_level=True)
    pytest.fail("the fused Snake kernel snac_onnx/_snake* was not built by pip install -e .", pytrace=False)

EPS32 = float(np.finfo(np.float32).eps)


def _snake_model(alpha: np.ndarray) -> bytes:
    """One Snake node (x: (batch, C, time)) with the body the exporter writes (export.fuse, onnx only: no torch)."""
    from export.fuse import snake_function

    channels = alpha.size
    alpha = alpha.reshape(1, channels, 1).astype(np.float32)
    inv_alpha = (np.float32(1.0) / (alpha + np.float32(1e-9))).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Snake", ["x", "alpha", "inv_alpha"], ["y"], domain=SNAKE_DOMAIN)],
        "snake",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, channels, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, channels, None])],
        [numpy_helper.from_array(alpha, "alpha"), numpy_helper.from_array(inv_alpha, "inv_alpha")],
    )
    model = helper.make_model(
        graph, functions=[snake_function()], opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(SNAKE_DOMAIN, 1)]
    )
    return model.SerializeToString()


def _session(model: bytes, fused: bool, threads: int = 0) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if fused:
        options.register_custom_ops_library(str(snake_library()))
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _reference(x: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """snac's snake in float64, from the same float32 product alpha * x torch computes; and 1/alpha."""
    a = alpha.reshape(1, -1, 1).astype(np.float32)
    inv = (np.float32(1.0) / (a + np.float32(1e-9))).astype(np.float64)
    z = (a * x).astype(np.float64)
    return x.astype(np.float64) + inv * np.sin(z) ** 2, inv


ALPHAS = np.array([1.0, 0.37, -2.5, 7.0, 1e-3, -1e-3, 25.0, 0.0], np.float32)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0, 1e3, 2e4, 1e6])
@pytest.mark.parametrize("steps", [1, 15, 16, 17, 4099])
def test_kernel_matches_float64(scale, steps):
    rng = np.random.default_rng(steps)
    x = (rng.standard_normal((2, ALPHAS.size, steps)) * scale).astype(np.float32)
    model = _snake_model(ALPHAS)
    fused = _session(model, fused=True).run(None, {"x": x})[0]
    want, inv = _reference(x, ALPHAS)
    # float32 rounding of y (|y| ulps) and of sin^2 scaled by 1/alpha; 4 ulp of slack each
    bound = 4 * EPS32 * (np.abs(want) + np.abs(inv))
    err = np.abs(fused - want)
    assert fused.dtype == np.float32 and fused.shape == x.shape
    assert np.all(err <= bound), f"max err/bound {np.max(err / bound):.2f} at scale {scale}"


def test_kernel_agrees_with_the_function_body():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, ALPHAS.size, 10_000)) * 5).astype(np.float32)
    model = _snake_model(ALPHAS)
    fused = _session(model, fused=True).run(None, {"x": x})[0]
    plain = _session(model, fused=False).run(None, {"x": x})[0]
    want, inv = _reference(x, ALPHAS)
    assert np.max(np.abs(fused - plain) / (np.abs(want) + np.abs(inv))) < 8 * EPS32


def test_kernel_special_values():
    x = np.array([[[0.0, -0.0, np.nan, np.inf, -np.inf, 3e38, 1e-38, 5.0]]], np.float32)
    model = _snake_model(np.array([1.5], np.float32))
    fused = _session(model, fused=True).run(None, {"x": x})[0]
    plain = _session(model, fused=False).run(None, {"x": x})[0]
    assert fused[0, 0, 0] == 0.0 and fused[0, 0, 1] == 0.0
    assert np.isnan(fused[0, 0, 2]) and np.isnan(plain[0, 0, 2])  # NaN stays NaN
    assert np.isnan(fused[0, 0, 3]) and np.isnan(plain[0, 0, 3])  # sin(inf) is NaN, in both
    assert np.isnan(fused[0, 0, 4])
    np.testing.assert_allclose(fused[0, 0, 5:], plain[0, 0, 5:], rtol=1e-6)


def test_empty_time_axis():
    model = _snake_model(np.array([1.0, 2.0], np.float32))
    out = _session(model, fused=True).run(None, {"x": np.zeros((1, 2, 0), np.float32)})[0]
    assert out.shape == (1, 2, 0)


def test_exported_graphs_carry_snake_nodes_with_a_function_body():
    for folder in (TINY_24, TINY_44):
        for role in ("encoder", "decoder"):
            model = onnx.load(str(folder / f"{role}.onnx"))
            ops = {n.op_type for n in model.graph.node if n.domain == SNAKE_DOMAIN}
            wanted = {"Snake", "SnakeDepthwiseConvSnake"} | ({"PolyphaseInterleave"} if role == "decoder" else set())
            assert ops == wanted, f"{folder.name}/{role}: {ops}"
            assert not [n for n in model.graph.node if n.op_type == "Sin"], "a Snake chain was left unfused"
            bodies = {f.name: [n.op_type for n in f.node] for f in model.functions if f.domain == SNAKE_DOMAIN}
            snake = ["Mul", "Sin", "Mul", "Mul", "Add"]
            expected = {"Snake": snake, "SnakeDepthwiseConvSnake": [*snake, "Conv", *snake]}
            if role == "decoder":
                expected["PolyphaseInterleave"] = bodies.get("PolyphaseInterleave")  # its body: test_interleave_*
                assert "Transpose" in expected["PolyphaseInterleave"]
            assert bodies == expected


def _snake_depthwise_model(
    alpha: np.ndarray, weight: np.ndarray, bias: np.ndarray, dilation: int, padding: int, alpha_out: np.ndarray | None = None
) -> bytes:
    """One SnakeDepthwiseConv node (or, with ``alpha_out``, SnakeDepthwiseConvSnake) with the exporter's
    function body (export.fuse, onnx only: no torch)."""
    from export.fuse import snake_depthwise_function, snake_depthwise_snake_function

    channels = alpha.size

    def alphas(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = a.reshape(1, channels, 1).astype(np.float32)
        return a, (np.float32(1.0) / (a + np.float32(1e-9))).astype(np.float32)

    alpha, inv_alpha = alphas(alpha)
    inputs = [(alpha, "alpha"), (inv_alpha, "inv_alpha"), (weight, "weight"), (bias, "bias")]
    op, function = "SnakeDepthwiseConv", snake_depthwise_function()
    if alpha_out is not None:
        inputs += list(zip(alphas(alpha_out), ("alpha_out", "inv_alpha_out")))
        op, function = "SnakeDepthwiseConvSnake", snake_depthwise_snake_function()
    node = helper.make_node(
        op, ["x", *(name for _, name in inputs)], ["y"], domain=SNAKE_DOMAIN,
        dilation=dilation, padding=padding, dilations=[dilation], pads=[padding, padding], group=channels,
    )
    graph = helper.make_graph(
        [node], "snake_dw",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, channels, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, channels, None])],
        [numpy_helper.from_array(a, n) for a, n in inputs],
    )
    model = helper.make_model(
        graph, functions=[function],
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(SNAKE_DOMAIN, 1)],
    )
    return model.SerializeToString()


@pytest.mark.parametrize("taps,dilation,padding", [(7, 1, 3), (7, 3, 9), (7, 9, 27), (3, 2, 2), (7, 1, 0), (5, 2, 1)])
@pytest.mark.parametrize("steps", [1, 30, 1000, 40_000])
@pytest.mark.parametrize("snake_after", [False, True], ids=["SnakeDepthwiseConv", "SnakeDepthwiseConvSnake"])
def test_snake_depthwise_kernel_matches_function_body(taps, dilation, padding, steps, snake_after):
    rng = np.random.default_rng(taps * 100 + dilation + steps)
    weight = (rng.standard_normal((ALPHAS.size, 1, taps)) * 0.5).astype(np.float32)
    bias = rng.standard_normal(ALPHAS.size).astype(np.float32)
    if steps + 2 * padding - dilation * (taps - 1) < 0:
        pytest.skip("no output for this length")
    alpha_out = ALPHAS[::-1].copy() * 1.3 if snake_after else None  # other alphas, negative ones among them
    model = _snake_depthwise_model(ALPHAS, weight, bias, dilation, padding, alpha_out)
    x = (rng.standard_normal((2, ALPHAS.size, steps)) * 3).astype(np.float32)
    fused = _session(model, fused=True).run(None, {"x": x})[0]
    plain = _session(model, fused=False).run(None, {"x": x})[0]
    assert fused.shape == plain.shape
    # the snake values differ by float rounding only; the 7-tap sums in summation order
    scale = np.abs(weight).sum(axis=2).reshape(1, -1, 1) * (np.abs(x).max() + np.abs(1 / (ALPHAS + 1e-9))).reshape(1, -1, 1) + 1
    if alpha_out is not None:  # d snake(c)/dc = 1 + sin(2 alpha c) is at most 2 in size, plus the second Snake's rounding
        scale = 2 * scale + np.abs(plain) + np.abs(1 / (alpha_out + 1e-9)).reshape(1, -1, 1)
    assert np.all(np.abs(fused - plain) <= 8 * EPS32 * scale)


def _interleave_model(channels: int, stride: int, padding: int, output_padding: int, bias: np.ndarray) -> bytes:
    """One PolyphaseInterleave node with the exporter's function body (export.fuse, onnx only: no torch)."""
    from export.fuse import interleave_function

    node = helper.make_node(
        "PolyphaseInterleave", ["z", "bias"], ["y"], domain=SNAKE_DOMAIN,
        stride=stride, padding=padding, output_padding=output_padding,
    )
    graph = helper.make_graph(
        [node], "interleave",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, stride * channels, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, channels, None])],
        [numpy_helper.from_array(bias.reshape(1, channels, 1).astype(np.float32), "bias")],
    )
    model = helper.make_model(
        graph, functions=[interleave_function()],
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(SNAKE_DOMAIN, 1)],
    )
    return model.SerializeToString()


@pytest.mark.parametrize("stride", [2, 3, 4, 8])
@pytest.mark.parametrize("steps", [1, 2, 7, 1000])
def test_interleave_kernel_matches_function_body_and_numpy(stride, steps):
    """SNAC's upsamplers: padding ceil(stride / 2), output_padding stride % 2."""
    channels, batch = 5, 2
    padding, output_padding = -(-stride // 2), stride % 2
    rng = np.random.default_rng(stride * 1000 + steps)
    bias = rng.standard_normal(channels).astype(np.float32)
    z = rng.standard_normal((batch, stride * channels, steps)).astype(np.float32)
    model = _interleave_model(channels, stride, padding, output_padding, bias)
    fused = _session(model, fused=True).run(None, {"z": z})[0]
    plain = _session(model, fused=False).run(None, {"z": z})[0]
    # numpy: phase r of channel c is row r * channels + c; time t of the full signal is q * stride + r
    full = z.reshape(batch, stride, channels, steps).transpose(0, 2, 3, 1).reshape(batch, channels, steps * stride)
    expected = full[:, :, padding : steps * stride - padding + output_padding] + bias.reshape(1, -1, 1)
    assert fused.shape == plain.shape == expected.shape == (batch, channels, steps * stride - 2 * padding + output_padding)
    assert np.array_equal(fused, expected) and np.array_equal(plain, expected)


def _stream_model(op: str, channels: int, held: int, inputs: list[tuple[np.ndarray, str]], outputs: list[str], **attrs) -> bytes:
    """One node of the stream graph's stateful ops (inputs state, x, then ``inputs``) with the exporter's body."""
    from export.fuse import depthwise_snake_stream_function, snake_stream_function

    function = snake_stream_function() if op == "SnakeStream" else depthwise_snake_stream_function()
    node = helper.make_node(op, ["state", "x", *(n for _, n in inputs)], outputs, domain=SNAKE_DOMAIN, **attrs)
    graph = helper.make_graph(
        [node], "stream_op",
        [helper.make_tensor_value_info("state", TensorProto.FLOAT, [None, channels, held]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, channels, None])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(a, n) for a, n in inputs],
    )
    model = helper.make_model(
        graph, functions=[function], opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(SNAKE_DOMAIN, 1)]
    )
    return model.SerializeToString()


def _alphas(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = a.reshape(1, -1, 1).astype(np.float32)
    return a, (np.float32(1.0) / (a + np.float32(1e-9))).astype(np.float32)


@pytest.mark.parametrize("taps,dilation", [(7, 1), (7, 3), (7, 9), (3, 2)])
@pytest.mark.parametrize("steps", [1, 2, 5, 30, 40_000])
def test_depthwise_snake_stream_kernel_matches_function_body_and_offline(taps, dilation, steps):
    """SnakeDepthwiseConvSnakeStream over [state, x] is SnakeDepthwiseConvSnake of the joined buffer with no padding;
    its new state is the buffer's last S samples and its residual the samples [S/2, S/2 + n), for n below S/2,
    below S and above both (the windows then come from the state, from both, from x)."""
    rng = np.random.default_rng(taps * 1000 + dilation * 10 + steps)
    held, channels = dilation * (taps - 1), ALPHAS.size
    weight = (rng.standard_normal((channels, 1, taps)) * 0.5).astype(np.float32)
    bias = rng.standard_normal(channels).astype(np.float32)
    alpha, inv = _alphas(ALPHAS)
    alpha_out, inv_out = _alphas(ALPHAS[::-1] * 1.3)
    params = [(alpha, "alpha"), (inv, "inv_alpha"), (weight, "weight"), (bias, "bias"), (alpha_out, "alpha_out"), (inv_out, "inv_alpha_out")]
    model = _stream_model(
        "SnakeDepthwiseConvSnakeStream", channels, held, params, ["y", "new_state", "residual"],
        dilation=dilation, padding=0, dilations=[dilation], pads=[0, 0], group=channels,
    )
    state = (rng.standard_normal((2, channels, held)) * 3).astype(np.float32)
    x = (rng.standard_normal((2, channels, steps)) * 3).astype(np.float32)
    fused = _session(model, fused=True, threads=2).run(None, {"state": state, "x": x})
    plain = _session(model, fused=False).run(None, {"state": state, "x": x})
    buf = np.concatenate([state, x], axis=2)
    offline = _session(_snake_depthwise_model(ALPHAS, weight, bias, dilation, 0, ALPHAS[::-1] * 1.3), fused=True).run(None, {"x": buf})[0]
    assert [a.shape for a in fused] == [(2, channels, steps), (2, channels, held), (2, channels, steps)]
    np.testing.assert_array_equal(fused[0], offline)  # the same kernel arithmetic, read in place
    np.testing.assert_array_equal(fused[1], buf[:, :, -held:])
    np.testing.assert_array_equal(fused[2], buf[:, :, held // 2 : held // 2 + steps])
    np.testing.assert_array_equal(plain[1], fused[1])
    np.testing.assert_array_equal(plain[2], fused[2])
    scale = np.abs(weight).sum(axis=2).reshape(1, -1, 1) * (np.abs(buf).max() + np.abs(inv)) + 1
    scale = 2 * scale + np.abs(plain[0]) + np.abs(inv_out)
    assert np.all(np.abs(fused[0] - plain[0]) <= 8 * EPS32 * scale)


@pytest.mark.parametrize("held", [1, 6])
@pytest.mark.parametrize("steps", [1, 4, 3000])
def test_snake_stream_kernel_matches_function_body(held, steps):
    rng = np.random.default_rng(held * 10 + steps)
    channels = ALPHAS.size
    alpha, inv = _alphas(ALPHAS)
    model = _stream_model("SnakeStream", channels, held, [(alpha, "alpha"), (inv, "inv_alpha")], ["y", "new_state"])
    state = rng.standard_normal((3, channels, held)).astype(np.float32)
    x = (rng.standard_normal((3, channels, steps)) * 4).astype(np.float32)
    fused = _session(model, fused=True, threads=2).run(None, {"state": state, "x": x})
    plain = _session(model, fused=False).run(None, {"state": state, "x": x})
    snake = _session(_snake_model(ALPHAS), fused=True).run(None, {"x": x})[0]
    want = np.concatenate([state, snake], axis=2)
    np.testing.assert_array_equal(fused[0], want)
    np.testing.assert_array_equal(fused[1], want[:, :, -held:])
    np.testing.assert_array_equal(plain[0][:, :, :held], state)
    ref, inv64 = _reference(x, ALPHAS)
    assert np.all(np.abs(plain[0][:, :, held:] - ref) <= 4 * EPS32 * (np.abs(ref) + np.abs(inv64)))


def test_stream_kernels_refuse_a_state_of_the_wrong_length():
    """A state whose length is not (taps - 1) * dilation gives NaN (which the runtime reports), not wrong audio."""
    channels = ALPHAS.size
    alpha, inv = _alphas(ALPHAS)
    weight = np.ones((channels, 1, 7), np.float32)
    bias = np.zeros(channels, np.float32)
    params = [(alpha, "alpha"), (inv, "inv_alpha"), (weight, "weight"), (bias, "bias"), (alpha, "alpha_out"), (inv, "inv_alpha_out")]
    model = _stream_model(
        "SnakeDepthwiseConvSnakeStream", channels, 5, params, ["y", "new_state", "residual"],
        dilation=1, padding=0, dilations=[1], pads=[0, 0], group=channels,
    )
    out = _session(model, fused=True).run(None, {"state": np.zeros((1, channels, 5), np.float32), "x": np.ones((1, channels, 9), np.float32)})
    assert all(np.isnan(a).all() for a in out)


@pytest.mark.parametrize("folder", [TINY_24, TINY_44], ids=["24khz", "44khz"])
def test_codec_fused_equals_plain(folder):
    fused = SnacOnnx(folder, settings=SessionSettings(fused_snake=True))
    plain = SnacOnnx(folder, settings=SessionSettings(fused_snake=False))
    assert fused.fused_snake and not plain.fused_snake
    audio = pcm(3 * fused.padding_unit + 123, seed=5, batch=2)
    codes_f, codes_p = fused.encode(audio), plain.encode(audio)
    agreement = np.mean(np.concatenate([(a == b).ravel() for a, b in zip(codes_f, codes_p)]))
    assert agreement >= 0.99, agreement  # float near-ties may flip a code, rarely
    out_f = fused.decode(codes_p, noise=False)
    out_p = plain.decode(codes_p, noise=False)
    assert np.max(np.abs(out_f - out_p)) < 1e-5
    assert np.sqrt(np.mean((out_f - out_p) ** 2)) < 1e-6 * max(1.0, float(np.sqrt(np.mean(out_p**2)))) * 10


def test_auto_uses_the_kernel_on_cpu_only():
    assert SnacOnnx(TINY_24).fused_snake
    assert sessions.fused_snake_library(None, ["CPUExecutionProvider"]) == snake_library()
    assert sessions.fused_snake_library(None, ["CUDAExecutionProvider", "CPUExecutionProvider"]) is None
    assert sessions.fused_snake_library(False, ["CPUExecutionProvider"]) is None


def test_required_kernel_errors_clearly(monkeypatch):
    with pytest.raises(SnacOnnxError, match="CPU execution provider alone"):
        sessions.fused_snake_library(True, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(kernels, "snake_library", lambda: None)
    with pytest.raises(SnacOnnxError, match="not installed"):
        SnacOnnx(TINY_24, settings=SessionSettings(fused_snake=True)).encode(pcm(2048))
    # auto without the kernel: the same graphs run their function bodies
    codec = SnacOnnx(TINY_24)
    assert not codec.fused_snake
    assert codec.decode(codec.encode(pcm(2048)), noise=False).shape == (2048,)


def test_broken_kernel_library_falls_back_with_a_warning(monkeypatch, tmp_path, caplog):
    bogus = tmp_path / "_snake.so"
    bogus.write_bytes(b"not a shared library")
    monkeypatch.setattr(kernels, "snake_library", lambda: bogus)
    codec = SnacOnnx(TINY_24)
    with caplog.at_level(logging.WARNING, logger="snac_onnx"):
        out = codec.decode(codec.encode(pcm(2048)), noise=False)
    assert np.all(np.isfinite(out))
    assert any("not loaded" in r.getMessage() for r in caplog.records)
    with pytest.raises(SnacOnnxError, match="could not load the fused Snake kernel"):
        SnacOnnx(TINY_24, settings=SessionSettings(fused_snake=True)).encode(pcm(2048))


def test_kernel_module_has_no_side_effects():
    assert kernels.snake_library() is not None and kernels.snake_library().name.startswith("_snake")


def _big_input(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((2, ALPHAS.size, 40_000)) * 4).astype(np.float32)


def test_session_threads_give_identical_results():
    x = _big_input()  # large enough to be shared between the session's intra-op threads
    one = _session(_snake_model(ALPHAS), fused=True, threads=1).run(None, {"x": x})[0]
    four = _session(_snake_model(ALPHAS), fused=True, threads=4).run(None, {"x": x})[0]
    np.testing.assert_array_equal(one, four)  # rows are independent: bit-identical
    want, inv = _reference(x, ALPHAS)
    assert np.all(np.abs(four - want) <= 4 * EPS32 * (np.abs(want) + np.abs(inv)))


def test_concurrent_runs_of_one_session_agree():
    import concurrent.futures

    session = _session(_snake_model(ALPHAS), fused=True, threads=3)
    inputs = [_big_input(seed) for seed in range(8)]
    serial = [session.run(None, {"x": x})[0] for x in inputs]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda x: session.run(None, {"x": x})[0], inputs * 3))
    for i, out in enumerate(parallel):
        np.testing.assert_array_equal(out, serial[i % len(inputs)])


def _run_in_forked_child(queue) -> None:
    x = _big_input(1)
    out = _session(_snake_model(ALPHAS), fused=True, threads=2).run(None, {"x": x})[0]
    queue.put(float(np.abs(out).sum()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kernels_work_in_a_forked_child():
    import multiprocessing

    session = _session(_snake_model(ALPHAS), fused=True, threads=2)
    want = float(np.abs(session.run(None, {"x": _big_input(1)})[0]).sum())  # the parent's pool has run the kernel
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_run_in_forked_child, args=(queue,))
    child.start()
    child.join(HANG_GUARD_S)
    assert child.exitcode == 0, "forked child hung or crashed in the Snake kernel"
    assert queue.get(timeout=HANG_GUARD_S) == want


def test_non_finite_decoder_output_is_an_error(monkeypatch):
    codec = SnacOnnx(TINY_24)
    codes = codec.encode(pcm(2048))
    session = codec.session("decoder")
    real_run = session.run

    def nan_run(names, feeds):
        (audio,) = real_run(names, feeds)
        audio[..., 5] = np.nan  # what the kernel writes for inputs it cannot handle
        return [audio]

    monkeypatch.setattr(session, "run", nan_run)
    with pytest.raises(SnacOnnxError, match="NaN or infinite"):
        codec.decode(codes, noise=False)
