"""The channels-last decoder and stream graph in torch (export/channels_last.py) against the channels-first ones, and
each channels-last operator's ONNX function body (export/cl_ops.py) against its torch reference."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("snac")
ort = pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

from export import channels_last as cl  # noqa: E402
from export import cl_ops  # noqa: E402
from export.graphs import DecoderGraph, prepare_for_export  # noqa: E402
from export.stream_graph import StreamingDecoder  # noqa: E402
from snac_onnx.model.kernels import SNAKE_DOMAIN  # noqa: E402
from tests.support import seeded_snac  # noqa: E402

CONFIGS = ["tiny_24khz", "tiny_44khz"]


def _step_inputs(graph, codes, noise, per, frame, frames):
    """One call's codes (zeros before frame 0 and past the end) and noise (zeros outside) at ``frame``."""
    step = graph.step_frames
    sliced = []
    for c, p in zip(codes, per):
        piece = torch.zeros(1, step * p, dtype=torch.long)
        a, b = max(frame, 0), min(frame + step, frames)
        if b > a:
            piece[:, (a - frame) * p : (b - frame) * p] = c[:, a * p : b * p]
        sliced.append(piece)
    noises = []
    for n, (rate, lag) in zip(noise, graph.noise_lags):
        lo, hi = frame * rate - lag, (frame + step) * rate - lag
        piece = torch.zeros(1, 1, hi - lo)
        a, b = max(lo, 0), min(hi, n.shape[-1])
        if b > a:
            piece[..., a - lo : b - lo] = n[..., a:b]
        noises.append(piece)
    return sliced, noises


@torch.no_grad()
@pytest.mark.parametrize("name", CONFIGS)
def test_channels_last_graphs_compute_the_channels_first_ones(name):
    model, config = seeded_snac(name)
    prepared = prepare_for_export(model, config)
    s0 = config["vq_strides"][0]
    per = [s0 // s for s in config["vq_strides"]]
    reference = StreamingDecoder(prepared).eval()
    frames = 8 * reference.step_frames
    torch.manual_seed(1)
    codes = [torch.randint(0, 4096, (2, frames * p)) for p in per]
    noise = [torch.randn(2, 1, frames * rate) for rate, _ in reference.noise_lags]
    offline = DecoderGraph(prepared).eval().run(codes, noise)
    assert float((cl.DecoderGraphCL(prepared).eval().run(codes, noise) - offline).abs().max()) < 1e-5
    ours = cl.StreamingDecoderCL(prepared).eval()
    assert [s.__dict__ for s in ours.states] == [s.__dict__ for s in reference.states]
    assert (ours.step_frames, ours.first_frame, ours.audio_lag, ours.noise_lags) == (
        reference.step_frames, reference.first_frame, reference.audio_lag, reference.noise_lags)
    states_ref, states_cl = reference.initial_states(1), ours.initial_states(1)
    assert [tuple(s.shape) for s in states_cl] == [(1, s.length, s.channels) for s in ours.states]
    end = torch.tensor([frames])
    outs_ref, outs_cl = [], []
    for frame in range(reference.first_frame, frames + 6 * reference.step_frames, reference.step_frames):
        step_codes, step_noise = _step_inputs(reference, [c[:1] for c in codes], [n[:1] for n in noise], per, frame, frames)
        y, states_ref = reference.run(step_codes, step_noise, torch.tensor([frame]), end, states_ref)
        z, states_cl = ours.run(step_codes, step_noise, torch.tensor([frame]), end, states_cl)
        outs_ref.append(y)
        outs_cl.append(z)
        for a, b in zip(states_ref, states_cl, strict=True):
            assert float((a.transpose(1, 2) - b).abs().max()) < 1e-5  # the same states, transposed
    assert float((torch.cat(outs_cl, -1) - torch.cat(outs_ref, -1)).abs().max()) < 1e-5


def _run_body(name, inputs, attrs):
    op = cl_ops.OPS[name]
    names = [n for n, _ in op.inputs]
    node = onnx.helper.make_node(name, names, [n for n, _ in op.outputs], domain=SNAKE_DOMAIN, **attrs)
    graph = onnx.helper.make_graph(
        [node], name, [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, v.shape) for n, v in zip(names, inputs)],
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n, _ in op.outputs],
    )
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", 18), onnx.helper.make_opsetid(SNAKE_DOMAIN, 1)], functions=[op.function()]
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, dict(zip(names, inputs)))


@pytest.mark.parametrize("dilation", [1, 9])
def test_function_bodies_compute_the_torch_operators(dilation):
    rng = np.random.default_rng(dilation)

    def f(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    b, t, c = 2, 13, 20
    held = 6 * dilation
    x, state, state1 = f(b, t, c), f(b, held, c), f(b, 1, c)
    snake, dw, snake_out = [f(c), f(c)], [f(7, c), f(c)], [f(c), f(c)]
    conv = [f(7, c, 3), f(3)]
    ops = torch.ops.snac_onnx
    tt = [torch.from_numpy(v) for v in (x, *snake, *dw, *snake_out)]
    cases = [
        ("SnakeCL", [x, *snake], {}, ops.snake_cl(*tt[:3])),
        ("SnakeStreamCL", [state, x, *snake], {}, ops.snake_stream_cl(torch.from_numpy(state), *tt[:3])),
        ("SnakeTapsCL", [x, *snake], {}, ops.snake_taps_cl(*tt[:3])),
        ("SnakeTapsStreamCL", [state1, x, *snake], {}, ops.snake_taps_stream_cl(torch.from_numpy(state1), *tt[:3])),
        ("DepthwiseConvCL", [x, *dw], cl_ops.depthwise_attributes(dilation, 3 * dilation, c),
         ops.depthwise_conv_cl(tt[0], *tt[3:5], dilation, 3 * dilation)),
        ("DepthwiseConvStreamCL", [state, x, *dw], cl_ops.depthwise_attributes(dilation, 0, c),
         ops.depthwise_conv_stream_cl(torch.from_numpy(state), tt[0], *tt[3:5], dilation)),
        ("SnakeDepthwiseConvSnakeCL", [x, *snake, *dw, *snake_out], cl_ops.depthwise_attributes(dilation, 3 * dilation, c),
         ops.snake_depthwise_conv_snake_cl(*tt, dilation, 3 * dilation)),
        ("SnakeDepthwiseConvSnakeStreamCL", [state, x, *snake, *dw, *snake_out], cl_ops.depthwise_attributes(dilation, 0, c),
         ops.snake_depthwise_conv_snake_stream_cl(torch.from_numpy(state), *tt, dilation)),
        ("ConvCL", [x, *conv], {"padding": 3, "pads": [3, 3]}, ops.conv_cl(tt[0], *map(torch.from_numpy, conv), 3)),
    ]
    assert {name for name, *_ in cases} == {op.name for op in cl_ops.OPS.values() if op.outputs[0][1] == cl_ops.F32 and op.inputs[0][1] == cl_ops.F32}
    for name, inputs, attrs, expected in cases:
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = _run_body(name, inputs, attrs)
        assert len(got) == len(expected), name
        for a, e in zip(got, expected, strict=True):
            assert a.shape == tuple(e.shape), name
            assert float(np.abs(a - e.numpy()).max()) < 1e-4, name
