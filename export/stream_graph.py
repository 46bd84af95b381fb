"""The stateful streaming decoder: SNAC's decoder rewritten as layers that carry explicit state.

Built from a model prepared by :func:`export.graphs.prepare_for_export` (torch code, run at export
time only). One call decodes ``steps * step_frames`` new coarse frames, starting at frame
``frame`` (per batch row), and returns the audio samples that this input made final plus the
new state. Nothing is ever recomputed: every layer keeps the end of its own input.

How each of SNAC's layers streams (``n`` new input samples of the layer, ``D`` the layer's input
lag: the stream at that layer runs ``D`` samples behind the latest code received):

* **Convolution** (kernel ``k``, dilation ``d``, symmetric zero padding ``p = (k - 1) d / 2``):
  the state is the last ``2p`` inputs (initially zeros: the left padding); the ``n`` outputs of
  ``[state, x]`` (no padding) are final. Lag ``+p``.
* **Residual unit** (Snake, dilated depthwise conv, Snake, 1x1 conv, plus the input): as a
  convolution; the residual path is the input delayed by ``p``, taken from the same buffer.
* **Transposed convolution** (computed polyphase, :class:`export.graphs.PolyphaseConvTranspose1d`):
  phase ``q`` needs inputs ``q - 1`` and ``q``: the state is the last input (initially the zero
  padding). Output lag ``D * stride + padding`` (the crop becomes lag).
* **LocalMHA** (32/44 kHz): windows stay aligned to frame 0 as offline: the state holds the
  ``r = (frame * s0 - D) mod window`` inputs that complete the next window; lag ``+r``. The step
  grid (``first_frame``) is chosen so that ``r`` is least.
* **Pointwise** layers (Snake, 1x1 convolutions, NoiseBlock with its noise input, Tanh, the
  quantizer's ``from_codes``) need nothing.

The start and the end: the first outputs of a layer lie at negative positions (before the audio
starts) and are not zeros; before each layer with temporal reach, inputs at negative positions are
replaced by zeros, exactly the layer's own left padding (``frame`` tells each row where it is). The
end is the same on the other side: when the stream's length is known (``end`` frames; a huge value
while streaming), inputs at positions from ``end * rate`` on are zeros, exactly each layer's right
padding, so the last steps (fed any codes past the end) give the offline decode's last samples. The
end of a stream is not zero codes; this is.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from snac import SNAC
from snac.layers import DecoderBlock, NoiseBlock, ResidualUnit
from torch import Tensor, nn

from snac_onnx.model.contract import first_audio_frame

from .graphs import ExportSnake, FlatLocalMHA, PolyphaseConvTranspose1d

StepResult = tuple[Tensor, Tensor | None]  # a layer's output and its next state (None: the layer has none)


@dataclass(frozen=True)
class StateSpec:
    """One state tensor: ``(batch, channels, length)`` float32, what it holds, and its layer's rate and lag."""

    layer: str
    kind: str
    channels: int
    length: int
    rate: int  # samples per coarse frame at the layer's input
    lag: int  # input lag of the layer, in samples of its rate


def _valid_mask(x: torch.Tensor, frame: torch.Tensor, end: torch.Tensor, rate: int, lag: int) -> torch.Tensor:
    """``x`` with its samples outside the audio (before position 0, from ``end * rate`` on) set to zero."""
    positions = torch.arange(x.shape[-1], device=x.device)[None, None, :] + (frame * rate - lag)[:, None, None]
    inside = (positions >= 0) & (positions < (end * rate)[:, None, None])
    return x * inside.to(x.dtype)  # a Mul: onnxruntime's broadcast Where is several times slower


class _Op(nn.Module):
    """One streaming layer; ``rate`` and ``lag`` describe its input (set when the chain is built)."""

    rate: int
    lag: int
    state_length: int = 0
    state_channels: int = 0
    kind: str = "pointwise"

    def out_rate_lag(self) -> tuple[int, int]:
        return self.rate, self.lag

    def step(self, x: Tensor, frame: Tensor, end: Tensor, state: Tensor | None, noise: Tensor | None) -> StepResult:
        raise NotImplementedError

    def _buffer(self, x: Tensor, frame: Tensor, end: Tensor, state: Tensor | None) -> Tensor:
        """``[state, x with its padding positions zeroed]``: what the layer runs over."""
        assert state is not None
        return torch.cat([state, _valid_mask(x, frame, end, self.rate, self.lag)], dim=-1)

    def _new_state(self, buf: torch.Tensor) -> torch.Tensor:
        """The next call's state: the buffer's last ``state_length`` samples."""
        return buf[..., -self.state_length :]  # a constant negative start: no shape arithmetic in the graph


# A one-step input of at most this many samples makes a layer weight-bound (each weight is read for a few
# columns): such a layer runs as a MatMul of the transposed input by the transposed weight, which
# onnxruntime prepacks; measured (2 threads) 1.7x faster than Conv for 24 kHz's first upsampler (5 columns,
# 33 MB of weights) and 2x for its first 1x1 convolution, and slower than Conv from about 16 columns.
MATMUL_MAX_COLUMNS = 8


def _matmul_columns(x: torch.Tensor, weight_t: torch.Tensor) -> torch.Tensor:
    """``weight_t.T @ x`` per batch row, as ``(x^T @ weight_t)^T``: x ``(B, K, n)``, weight_t ``(K, M)`` -> ``(B, M, n)``."""
    return torch.matmul(x.transpose(1, 2), weight_t).transpose(1, 2)


class _Pointwise(_Op):
    weight_t: Tensor | None
    bias_col: Tensor | None

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("weight_t", None)  # set by use_matmul
        self.register_buffer("bias_col", None)

    def use_matmul(self) -> None:
        """Run this 1x1 convolution as a MatMul against its transposed weight (see MATMUL_MAX_COLUMNS)."""
        conv = self.module  # a dense 1x1 nn.Conv1d (_weight_bound)
        assert isinstance(conv, nn.Conv1d)
        assert conv.bias is not None
        self.weight_t = conv.weight.detach()[:, :, 0].T.contiguous()
        self.bias_col = conv.bias.detach()[None, :, None].clone()

    def step(self, x: Tensor, frame: Tensor, end: Tensor, state: Tensor | None, noise: Tensor | None) -> StepResult:
        if self.weight_t is not None and self.bias_col is not None:
            return _matmul_columns(x, self.weight_t) + self.bias_col, None
        y: Tensor = self.module(x)
        return y, None


class _Noise(_Op):
    kind = "noise"

    def __init__(self, block: NoiseBlock) -> None:
        super().__init__()
        self.linear = block.linear

    def step(self, x: Tensor, frame: Tensor, end: Tensor, state: Tensor | None, noise: Tensor | None) -> StepResult:
        assert noise is not None
        return x + noise * self.linear(x), None


def _conv_padding(conv: nn.Conv1d) -> int:
    (k,), (d,), (s,) = conv.kernel_size, conv.dilation, conv.stride
    p = conv.padding[0] if isinstance(conv.padding, tuple) else -1
    if s != 1 or not isinstance(p, int) or 2 * p != (k - 1) * d:
        raise NotImplementedError(f"a streaming convolution needs stride 1 and 'same' padding, got {conv}")
    return p


class _Buffered(_Op):
    """A layer around a convolution with symmetric padding ``p``: state = its last ``2p`` (masked) inputs."""

    def _keep_inputs_of(self, conv: nn.Conv1d) -> None:
        self.pad = _conv_padding(conv)
        self.state_length = 2 * self.pad
        self.state_channels = conv.in_channels

    def out_rate_lag(self) -> tuple[int, int]:
        return self.rate, self.lag + self.pad


class _Conv(_Buffered):
    """A convolution with symmetric padding ``p``, run over ``[state, x]`` without padding. Lag ``+p``."""

    kind = "conv"

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.conv = conv
        self._keep_inputs_of(conv)

    def step(self, x: Tensor, frame: Tensor, end: Tensor, state: Tensor | None, noise: Tensor | None) -> StepResult:
        buf = self._buffer(x, frame, end, state)
        c = self.conv
        y = F.conv1d(buf, c.weight, c.bias, dilation=c.dilation, groups=c.groups)
        return y, self._new_state(buf)


class _Residual(_Buffered):
    """``x + block(x)`` of a ResidualUnit, the block over ``[state, x]``, the residual delayed by ``p``."""

    kind = "residual_unit"

    def __init__(self, unit: ResidualUnit) -> None:
        super().__init__()
        snake_in, conv, snake_out, pointwise = list(unit.block)
        if not (isinstance(snake_in, ExportSnake) and isinstance(snake_out, ExportSnake)):
            raise NotImplementedError("a ResidualUnit is Snake, Conv, Snake, Conv")
        self.snake_in, self.conv, self.snake_out, self.pointwise = snake_in, conv, snake_out, pointwise
        self._keep_inputs_of(conv)

    def step(self, x: Tensor, frame: Tensor, end: Tensor, state: Tensor | None, noise: Tensor | None) -> StepResult:
        buf = self._buffer(x, frame, end, state)
        c = self.conv
        y = F.conv1d(self.snake_in(buf), c.weight, c.bias, dilation=c.dilation, groups=c.groups)
        y = self.pointwise(self.snake_out(y))
        return buf[..., self.pad : -self.pad] + y, self._new_state(buf)  # the n inputs delayed by p


class _Upsample(_Op):
    """The polyphase transposed convolution: state = the last (masked) input."""

    kind = "upsampler"

    def __init__(self, up: PolyphaseConvTranspose1d) -> None:
        super().__init__()
        self.up = up
        self.state_length = 1
        self.state_channels = up.weight.shape[1]
        self.register_buffer("weight_t", None)  # set by use_matmul

    def use_matmul(self) -> None:
        """Compute the phases as one MatMul of ``[x[q-1], x[q]]`` by the transposed weight (MATMUL_MAX_COLUMNS)."""
        w = self.up.weight  # (s * out, in, 2): row k * in + c of weight_t is tap k of input channel c
        self.weight_t = w.permute(2, 1, 0).reshape(2 * w.shape[1], w.shape[0]).contiguous()

    def out_rate_lag(self) -> tuple[int, int]:
        return self.rate * self.up.stride, self.lag * self.up.stride + self.up.padding

    def step(self, x: Tensor, frame: Tensor, end: Tensor, state: Tensor | None, noise: Tensor | None) -> StepResult:
        batch, _, n = x.shape
        up = self.up
        buf = self._buffer(x, frame, end, state)
        if self.weight_t is not None:
            z = _matmul_columns(torch.cat([buf[..., :-1], buf[..., 1:]], dim=1), self.weight_t)
        else:
            z = F.conv1d(buf, up.weight)  # (B, s * out, n): phase q from inputs q - 1 and q
        z = z.reshape(batch, up.stride, up.out_channels, n).permute(0, 2, 3, 1).reshape(batch, up.out_channels, -1)
        return z + up.bias, self._new_state(buf)


class _Attention(_Op):
    """LocalMHA over windows aligned to frame 0: state = the ``r`` inputs that complete the next window."""

    kind = "attention"

    def __init__(self, mha: FlatLocalMHA, delay: int) -> None:
        super().__init__()
        self.mha = mha
        self.state_length = delay
        self.state_channels = mha.to_out.out_features

    def out_rate_lag(self) -> tuple[int, int]:
        return self.rate, self.lag + self.state_length

    def step(self, x: Tensor, frame: Tensor, end: Tensor, state: Tensor | None, noise: Tensor | None) -> StepResult:
        if self.state_length == 0:
            return self.mha(x), None
        assert state is not None
        n = x.shape[-1]
        buf = torch.cat([state, x], dim=-1)
        return self.mha(buf[..., :n]), buf[..., n:]


def _weight_bound(op: _Op) -> bool:
    """A layer that :data:`MATMUL_MAX_COLUMNS` applies to: an upsampler, or a dense 1x1 convolution."""
    if isinstance(op, _Upsample):
        return True
    conv = op.module if isinstance(op, _Pointwise) else None
    return isinstance(conv, nn.Conv1d) and conv.kernel_size == (1,) and conv.groups == 1


def _flatten(model: SNAC) -> list[nn.Module]:
    """The decoder's layers in order, DecoderBlocks opened."""
    layers: list[nn.Module] = []
    for layer in model.decoder.model:
        layers.extend(layer.block if isinstance(layer, DecoderBlock) else [layer])
    return layers


def stream_grid(model: SNAC) -> tuple[int, int]:
    """(frames per step, first frame of the step grid) for the least first-audio latency.

    Without attention a step is one frame from frame 0. With attention a step is one window
    (``window / s0`` frames), and the grid starts at ``-j`` frames, ``j`` chosen so that the
    attention layer's alignment delay is least (the latest window completes as soon as its last
    code arrives). Negative frames of the first step are masked: they are the left padding.
    """
    window = model.attn_window_size
    s0 = model.vq_strides[0]
    if window is None:
        return 1, 0
    if window % s0:
        raise NotImplementedError(f"attention window {window} is not a whole number of frames ({s0} latent steps)")
    frames = window // s0
    reach = 0  # latent lag before attention
    for layer in _flatten(model):
        if isinstance(layer, FlatLocalMHA):
            break
        if isinstance(layer, nn.Conv1d):
            reach += _conv_padding(layer)
    best = min(range(frames), key=lambda j: (-j * s0 - reach) % window)
    return frames, -best


class StreamingDecoder(nn.Module):
    """codes + noise + frame + states -> audio + new states (see the module docstring).

    Inputs: ``codes_i`` int64 ``(B, steps * step_frames * codes_per_frame_i)``; ``noise_j`` float32
    ``(B, 1, steps * step_frames * noise_per_frame_j)`` at the positions the NoiseBlock processes
    in this call (:attr:`noise_lags`); ``frame`` int64 ``(B,)``: the first frame of the call; ``end`` int64
    ``(B,)``: the stream's length in frames, or more than it will ever reach while unknown; one ``state_k``
    per :attr:`states`. Outputs: ``audio`` ``(B, 1, steps * step_frames * samples_per_frame)``,
    the samples at positions ``frame * samples_per_frame - audio_lag + [0, n)``; one ``new_state_k`` each.
    """

    quantizer: Any  # snac's ResidualVectorQuantize (the snac package has no type information)

    def __init__(self, model: SNAC) -> None:
        super().__init__()
        self.quantizer = model.quantizer
        self.step_frames, self.first_frame = stream_grid(model)
        s0 = model.vq_strides[0]
        rate, lag = s0, 0
        ops: list[_Op] = []
        names: list[str] = []
        for name, layer in zip(self._names(model), _flatten(model), strict=True):
            if isinstance(layer, ResidualUnit):
                op: _Op = _Residual(layer)
            elif isinstance(layer, PolyphaseConvTranspose1d):
                op = _Upsample(layer)
            elif isinstance(layer, NoiseBlock):
                op = _Noise(layer)
            elif isinstance(layer, FlatLocalMHA):
                delay = (self.first_frame * s0 - lag) % layer.window
                op = _Attention(layer, delay)
            elif isinstance(layer, nn.Conv1d) and layer.kernel_size[0] > 1:
                op = _Conv(layer)
            elif isinstance(layer, (ExportSnake, nn.Conv1d, nn.Tanh)):
                op = _Pointwise(layer)
            else:
                raise NotImplementedError(f"no streaming form for {type(layer).__name__}")
            op.rate, op.lag = rate, lag
            if op.rate * self.step_frames <= MATMUL_MAX_COLUMNS and _weight_bound(op):
                assert isinstance(op, (_Pointwise, _Upsample))
                op.use_matmul()
            rate, lag = op.out_rate_lag()
            ops.append(op)
            names.append(name)
        self.ops = nn.ModuleList(ops)
        self.samples_per_frame = rate
        self.audio_lag = lag
        self.states = [
            StateSpec(name, op.kind, op.state_channels, op.state_length, op.rate, op.lag)
            for name, op in zip(names, ops, strict=True)
            if op.state_length
        ]
        self.noise_lags = [(op.rate, op.lag) for op in ops if isinstance(op, _Noise)]
        self.num_codebooks = len(model.vq_strides)

    @staticmethod
    def _names(model: SNAC) -> list[str]:
        names: list[str] = []
        for i, layer in enumerate(model.decoder.model):
            if isinstance(layer, DecoderBlock):
                names.extend(f"decoder.model.{i}.block.{j}" for j in range(len(layer.block)))
            else:
                names.append(f"decoder.model.{i}")
        return names

    def initial_states(self, batch: int) -> list[torch.Tensor]:
        return [torch.zeros(batch, s.channels, s.length) for s in self.states]

    def run(
        self,
        codes: list[torch.Tensor],
        noise: list[torch.Tensor],
        frame: torch.Tensor,
        end: torch.Tensor,
        states: list[torch.Tensor],
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.quantizer.from_codes(codes)
        noise_iter, state_iter = iter(noise), iter(states)
        new_states: list[torch.Tensor] = []
        for op in cast("list[_Op]", list(self.ops)):
            state = next(state_iter) if op.state_length else None
            x, new = op.step(x, frame, end, state, next(noise_iter) if isinstance(op, _Noise) else None)
            if new is not None:
                new_states.append(new)
        return x, new_states


def streaming_decoder_with_named_inputs(model: SNAC, input_names: list[str]) -> StreamingDecoder:
    """A StreamingDecoder whose ``forward`` has one named parameter per graph input (as the exporter needs)."""
    graph = StreamingDecoder(model)
    n_codes, n_noise = graph.num_codebooks, len(graph.noise_lags)

    def forward(self: StreamingDecoder, *args: torch.Tensor) -> tuple[Tensor, ...]:
        codes, noise = list(args[:n_codes]), list(args[n_codes : n_codes + n_noise])
        frame, end, states = args[n_codes + n_noise], args[n_codes + n_noise + 1], list(args[n_codes + n_noise + 2 :])
        audio, new_states = self.run(codes, noise, frame, end, states)
        return (audio, *new_states)

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in input_names]
    forward.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    graph.__class__ = type("StreamingDecoderNamed", (StreamingDecoder,), {"forward": forward})
    return graph.eval()


def first_audio_frames(graph: StreamingDecoder) -> int:
    """Frames that must have arrived before the stream's first sample is final, one step per call (the
    physical minimum at this step grid); :func:`snac_onnx.model.manifest.first_audio_frame` of the graph's grid."""
    return first_audio_frame(graph.first_frame, graph.step_frames, graph.audio_lag, graph.samples_per_frame)


__all__ = ["StateSpec", "StreamingDecoder", "first_audio_frames", "stream_grid", "streaming_decoder_with_named_inputs"]
