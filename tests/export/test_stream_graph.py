"""The stateful streaming decoder (export.stream_graph), each layer on its own against the official modules.

Every streaming layer is fed an input in pieces of random sizes, with garbage before it (negative
positions: the mask must make it the left padding) and after it (positions past ``end``: the mask must
make it the right padding), and its outputs, placed at their lagged positions, must equal the official
module run once over the whole input, first and last samples included. Then the whole chain against
``SNAC.decode`` with noise off and with given noise, flushed the way the runtime does.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
snac = pytest.importorskip("snac")

from snac.layers import DecoderBlock, NoiseBlock  # noqa: E402

from export.graphs import prepare_for_export  # noqa: E402
from export.stream_graph import (  # noqa: E402
    StreamingDecoder,
    _Attention,
    _Conv,
    _Residual,
    _Upsample,
    first_audio_frames,
)
from tests.support import FIXTURES, seeded_snac  # noqa: E402

pytestmark = pytest.mark.slow  # exports the stream graph of each tiny config (minutes)

CONFIGS = ["tiny_24khz", "tiny_44khz"]


def _models(name: str):
    model, config = seeded_snac(name)
    return model, prepare_for_export(model, config), config


def _official_layers(model):
    layers = []
    for layer in model.decoder.model:
        layers.extend(layer.block if isinstance(layer, DecoderBlock) else [layer])
    return layers


def _stream_op(op, x: torch.Tensor, sizes: list[int], lag_before: int, after: int) -> tuple[torch.Tensor, int]:
    """Run ``op`` over ``x`` in pieces of ``sizes``, with ``lag_before`` garbage samples first (negative
    positions) and ``after`` garbage samples past the end. Returns the outputs and their lag."""
    op.rate, op.lag = 1, lag_before
    stream = torch.cat([torch.randn(x.shape[0], x.shape[1], lag_before) * 5, x, torch.randn(*x.shape[:2], after) * 5], -1)
    state = torch.zeros(x.shape[0], op.state_channels, op.state_length) if op.state_length else None
    end = torch.full((x.shape[0],), x.shape[-1], dtype=torch.long)  # rate 1: frames are samples
    outs, pos = [], 0
    for n in sizes:
        frame = torch.full((x.shape[0],), pos, dtype=torch.long)
        y, state = op.step(stream[..., pos : pos + n], frame, end, state, None)
        outs.append(y)
        pos += n
    _, lag = op.out_rate_lag()
    return torch.cat(outs, dim=-1), lag


def _pieces(total: int, rng: np.random.Generator) -> list[int]:
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(rng.integers(1, 9)))
    sizes[-1] -= sum(sizes) - total
    return [s for s in sizes if s]


@torch.no_grad()
@pytest.mark.parametrize("name", CONFIGS)
def test_each_streaming_layer_equals_the_official_module(name):
    model, prepared, _ = _models(name)
    graph = StreamingDecoder(prepared)
    official = _official_layers(model)
    rng = np.random.default_rng(0)
    kinds = set()
    for op, ref in zip(graph.ops, official, strict=True):
        if not isinstance(op, (_Conv, _Residual, _Upsample)):
            continue
        kinds.add(type(op).__name__)
        x = torch.randn(2, op.state_channels, 300)
        expected = ref(x)  # the official module over the whole input, its own zero padding at both ends
        stride = op.up.stride if isinstance(op, _Upsample) else 1
        for lag_before in (0, 7):
            after = 40  # more than any layer's reach: every output of the input comes out
            streamed, lag = _stream_op(op, x, _pieces(300 + lag_before + after, rng), lag_before, after)
            own_lag = lag - lag_before * stride  # the layer's own delay (upsampler: its crop)
            final = streamed[..., lag_before * stride + own_lag :][..., : expected.shape[-1]]
            assert final.shape == expected.shape, type(op).__name__
            assert float((final - expected).abs().max()) < 1e-5, (type(op).__name__, lag_before)
    assert kinds == {"_Conv", "_Residual", "_Upsample"}


@torch.no_grad()
def test_attention_keeps_windows_aligned_to_frame_zero():
    model, prepared, config = _models("tiny_44khz")
    graph = StreamingDecoder(prepared)
    attention = next(op for op in graph.ops if isinstance(op, _Attention))
    official = next(layer for layer in model.decoder.model if type(layer).__name__ == "LocalMHA")
    window = official.window_size
    assert attention.lag == 3 and attention.state_length == (graph.first_frame * config["vq_strides"][0] - 3) % window
    x = torch.randn(2, attention.state_channels, 8 * window)
    # the stream at this layer runs `lag` samples behind: feed it that way, whole steps of one window
    lagged = torch.cat([torch.zeros(2, x.shape[1], attention.lag + graph.first_frame * -config["vq_strides"][0]), x], -1)
    state = torch.zeros(2, attention.state_channels, attention.state_length)
    outs = []
    for pos in range(0, lagged.shape[-1] - window + 1, window):
        zero, end = torch.zeros(2, dtype=torch.long), torch.full((2,), 1 << 40)
        y, state = attention.step(lagged[..., pos : pos + window], zero, end, state, None)
        outs.append(y)
    streamed = torch.cat(outs, -1)
    offset = attention.lag + attention.state_length + graph.first_frame * -config["vq_strides"][0]
    expected = official(x)
    got = streamed[..., offset : offset + 6 * window]
    assert float((got - expected[..., : got.shape[-1]]).abs().max()) < 1e-5


@torch.no_grad()
@pytest.mark.parametrize("name", CONFIGS)
def test_whole_stream_equals_official_decode_with_and_without_noise(name):
    model, prepared, config = _models(name)
    graph = StreamingDecoder(prepared)
    s0 = config["vq_strides"][0]
    per = [s0 // s for s in config["vq_strides"]]
    frames = 24
    codes = [torch.randint(0, 4096, (1, frames * p)) for p in per]
    rates = [r for r, _ in graph.noise_lags]
    noise = [torch.randn(1, 1, frames * r) for r in rates]

    class Given(torch.nn.Module):
        def __init__(self, block, n):
            super().__init__()
            self.linear, self.n = block.linear, n

        def forward(self, x):
            return x + self.n * self.linear(x)

    for with_noise in (False, True):
        reference = snac.SNAC(**config).eval()
        reference.load_state_dict(model.state_dict())
        arrays = iter(noise)
        for module in list(reference.modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, NoiseBlock):
                    setattr(module, child_name, Given(child, next(arrays)) if with_noise else torch.nn.Identity())
        expected = reference.decode(codes)[0, 0]
        states = graph.initial_states(1)
        out = []
        start = graph.first_frame
        end = torch.tensor([frames])
        past = frames + graph.audio_lag // graph.samples_per_frame + 2 * graph.step_frames  # the flush's steps
        while start + graph.step_frames <= past:
            piece = []
            for c, p in zip(codes, per):
                a, b = start * p, (start + graph.step_frames) * p
                real = c[:, max(a, 0) : max(min(b, c.shape[1]), 0)]
                garbage = torch.randint(0, 4096, (1, (b - a) - real.shape[1]))  # left padding / past the end
                piece.append(torch.cat([garbage[:, : max(0, -a)], real, garbage[:, max(0, -a) :]], 1))
            step_noise = []
            for n, (rate, lag) in zip(noise, graph.noise_lags):
                a, b = start * rate - lag, (start + graph.step_frames) * rate - lag
                inside = n[..., max(a, 0) : max(min(b, n.shape[-1]), 0)]
                padded = torch.cat([torch.randn(1, 1, (b - a) - inside.shape[-1]), inside], -1)
                if a >= 0:  # the noise past the end comes last
                    padded = torch.cat([inside, padded[..., : (b - a) - inside.shape[-1]]], -1)
                step_noise.append(padded if with_noise else torch.zeros_like(padded))
            y, states = graph.run(piece, step_noise, torch.tensor([start]), end, states)
            out.append((start * graph.samples_per_frame - graph.audio_lag, y[0, 0]))
            start += graph.step_frames
        final = torch.cat([y[max(0, -pos) :] for pos, y in out if pos + y.shape[0] > 0])[: expected.shape[0]]
        assert final.shape == expected.shape  # every sample, the last ones too
        assert float((final - expected).abs().max()) < 1e-5, with_noise
    assert first_audio_frames(graph) == (3 if name == "tiny_24khz" else 5)


@pytest.mark.parametrize("name", CONFIGS)
def test_steady_branch_equals_the_masked_graph(name, tmp_path):
    """The exported stream graph is If(steady): its mask-free branch must give what the masked one gives
    wherever it is taken (here: the same inputs run with the condition forced to the masked branch)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    from snac_onnx import SnacOnnx

    folder = FIXTURES / name
    codec = SnacOnnx(folder)
    spec = codec.manifest.stream
    model = onnx.load(str(folder / "stream.onnx"))
    top = [n.op_type for n in model.graph.node]
    assert top.count("If") == 1
    branch = next(n for n in model.graph.node if n.op_type == "If")
    steady = next(a.g for a in branch.attribute if a.name == "then_branch")
    assert not any(n.op_type == "And" for n in steady.node)  # no masks left in the steady branch
    forced = onnx.load(str(folder / "stream.onnx"))
    cond = next(n for n in forced.graph.node if n.op_type == "If").input[0]
    for node in forced.graph.node:
        if cond in node.output:  # replace the condition by False: always the masked branch
            node.CopyFrom(helper.make_node("Constant", [], [cond], value=helper.make_tensor("f", onnx.TensorProto.BOOL, [], [False])))
    path = tmp_path / "forced.onnx"
    onnx.save(forced, str(path))
    plain = ort.SessionOptions()
    sessions = [ort.InferenceSession(str(folder / "stream.onnx"), plain), ort.InferenceSession(str(path), plain)]
    rng = np.random.default_rng(0)
    steps = 2
    for frame in (0, 3, 8, 40):  # before and after the safe frame
        values = [rng.integers(0, 4096, (2, steps * spec.step_frames * n)) for n in codec.config.codes_per_frame]
        values += [rng.standard_normal((2, 1, steps * spec.step_frames * n)).astype(np.float32) for n in codec.config.noise_per_frame]
        values += [np.array([frame, frame + 4], np.int64), np.array([1 << 40, 1 << 40], np.int64)]
        values += [rng.standard_normal((2, s.channels, s.length)).astype(np.float32) for s in spec.states]
        feeds = dict(zip(spec.inputs, values))
        ours, masked = (s.run(None, feeds) for s in sessions)
        for a, b in zip(ours, masked):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
