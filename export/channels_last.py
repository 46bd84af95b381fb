"""SNAC's decoder and stream graph in channels-last form, for torch.onnx (torch code, run at export time only).

Activations are ``(batch, time, channels)``. Every dense layer (1x1 convolutions, the polyphase upsamplers'
phases, NoiseBlocks' convolutions, the 32/44 kHz attention's projections) is ``x @ W + b`` against a constant
``(in, out)`` weight, which torch.onnx writes as ``MatMul`` (and ``Add``): onnxruntime prepacks it, and the int8
pass (:mod:`export.passes.quantize_dense`) finds it. The upsampler's interleave is a ``reshape``: its phases are
the columns ``r * C_out + c`` of one row per input step. The other layers (Snake, depthwise convolutions, the
upsamplers' taps, the last convolution) are the custom operators of :mod:`export.cl_ops`: torch ops here
(``torch.ops.snac_onnx.*``, with a torch reference implementation), written by torch.onnx as one node each.
No Transpose sits between layers; the graphs' inputs and outputs are those of the channels-first graphs
(codes, noise ``(B, 1, n)``, audio ``(B, 1, samples)``) except the stream graph's states, ``(B, S, C)``.

:class:`DecoderGraphCL` and :class:`StreamingDecoderCL` are built on the channels-first
:class:`export.graphs.DecoderGraph` and :class:`export.stream_graph.StreamingDecoder`: the same tail tiles,
step grid, lags, noise positions and states (transposed), and the same padding masks, applied to a layer's
input before its Snake (``Snake(0) = 0``, so masking before or after it is the same).
"""

from __future__ import annotations

import inspect
from typing import Any, cast

import torch
import torch.nn.functional as F
from onnxscript.values import Opset
from snac import SNAC
from snac.layers import DecoderBlock, NoiseBlock, ResidualUnit
from torch import Tensor, nn

from snac_onnx.model.kernels import SNAKE_DOMAIN

from . import cl_ops
from .graphs import DecoderGraph, ExportSnake, FlatLocalMHA, PolyphaseConvTranspose1d
from .stream_graph import StreamingDecoder, _Attention, _Conv, _Noise, _Op, _Pointwise, _Residual, _Upsample

# ---- the custom operators, as torch ops (reference implementations) ------------------------------------------


def _snake(x: Tensor, alpha: Tensor, inv_alpha: Tensor) -> Tensor:
    s = torch.sin(alpha * x)
    return x + inv_alpha * (s * s)


def _depthwise(x: Tensor, weight: Tensor, bias: Tensor, dilation: int, padding: int) -> Tensor:
    kernel = weight.t()[:, None, :]  # (C, 1, K)
    y = F.conv1d(x.transpose(1, 2), kernel, bias, dilation=dilation, padding=padding, groups=x.shape[-1])
    return y.transpose(1, 2).contiguous()


def _taps(buf: Tensor) -> Tensor:
    return torch.cat([buf[:, :-1], buf[:, 1:]], dim=-1)


@torch.library.custom_op("snac_onnx::snake_cl", mutates_args=())
def snake_cl(x: Tensor, alpha: Tensor, inv_alpha: Tensor) -> Tensor:
    return _snake(x, alpha, inv_alpha)


@torch.library.custom_op("snac_onnx::snake_stream_cl", mutates_args=())
def snake_stream_cl(state: Tensor, x: Tensor, alpha: Tensor, inv_alpha: Tensor) -> tuple[Tensor, Tensor]:
    y = torch.cat([state, _snake(x, alpha, inv_alpha)], dim=1)
    return y, y[:, y.shape[1] - state.shape[1] :].clone()


@torch.library.custom_op("snac_onnx::snake_taps_cl", mutates_args=())
def snake_taps_cl(x: Tensor, alpha: Tensor, inv_alpha: Tensor) -> Tensor:
    return _taps(F.pad(_snake(x, alpha, inv_alpha), (0, 0, 1, 1)))


@torch.library.custom_op("snac_onnx::snake_taps_stream_cl", mutates_args=())
def snake_taps_stream_cl(state: Tensor, x: Tensor, alpha: Tensor, inv_alpha: Tensor) -> tuple[Tensor, Tensor]:
    buf = torch.cat([state, _snake(x, alpha, inv_alpha)], dim=1)
    return _taps(buf), buf[:, -1:].clone()


@torch.library.custom_op("snac_onnx::depthwise_conv_cl", mutates_args=())
def depthwise_conv_cl(x: Tensor, weight: Tensor, bias: Tensor, dilation: int, padding: int) -> Tensor:
    return _depthwise(x, weight, bias, dilation, padding)


@torch.library.custom_op("snac_onnx::depthwise_conv_stream_cl", mutates_args=())
def depthwise_conv_stream_cl(state: Tensor, x: Tensor, weight: Tensor, bias: Tensor, dilation: int) -> tuple[Tensor, Tensor]:
    buf = torch.cat([state, x], dim=1)
    return _depthwise(buf, weight, bias, dilation, 0), buf[:, buf.shape[1] - state.shape[1] :].clone()


@torch.library.custom_op("snac_onnx::snake_depthwise_conv_snake_cl", mutates_args=())
def snake_depthwise_conv_snake_cl(
    x: Tensor, alpha: Tensor, inv_alpha: Tensor, weight: Tensor, bias: Tensor, alpha_out: Tensor, inv_alpha_out: Tensor,
    dilation: int, padding: int,
) -> Tensor:
    return _snake(_depthwise(_snake(x, alpha, inv_alpha), weight, bias, dilation, padding), alpha_out, inv_alpha_out)


@torch.library.custom_op("snac_onnx::snake_depthwise_conv_snake_stream_cl", mutates_args=())
def snake_depthwise_conv_snake_stream_cl(
    state: Tensor, x: Tensor, alpha: Tensor, inv_alpha: Tensor, weight: Tensor, bias: Tensor, alpha_out: Tensor,
    inv_alpha_out: Tensor, dilation: int,
) -> tuple[Tensor, Tensor, Tensor]:
    buf = torch.cat([state, x], dim=1)
    held = state.shape[1]
    y = _snake(_depthwise(_snake(buf, alpha, inv_alpha), weight, bias, dilation, 0), alpha_out, inv_alpha_out)
    return y, buf[:, buf.shape[1] - held :].clone(), buf[:, held // 2 : held // 2 + x.shape[1]].clone()


@torch.library.custom_op("snac_onnx::conv_cl", mutates_args=())
def conv_cl(x: Tensor, weight: Tensor, bias: Tensor, padding: int) -> Tensor:
    y = F.conv1d(x.transpose(1, 2), weight.permute(2, 1, 0), bias, padding=padding)
    return y.transpose(1, 2).contiguous()


def _rows_like(x: Tensor, rows: Any, channels: Any) -> Tensor:
    return x.new_empty((x.shape[0], rows, channels))


snake_cl.register_fake(lambda x, alpha, inv_alpha: torch.empty_like(x))
snake_stream_cl.register_fake(
    lambda state, x, alpha, inv_alpha: (_rows_like(x, state.shape[1] + x.shape[1], x.shape[2]), torch.empty_like(state))
)
snake_taps_cl.register_fake(lambda x, alpha, inv_alpha: _rows_like(x, x.shape[1] + 1, 2 * x.shape[2]))
snake_taps_stream_cl.register_fake(
    lambda state, x, alpha, inv_alpha: (_rows_like(x, x.shape[1], 2 * x.shape[2]), torch.empty_like(state))
)
depthwise_conv_cl.register_fake(
    lambda x, weight, bias, dilation, padding: _rows_like(
        x, x.shape[1] + 2 * padding - dilation * (weight.shape[0] - 1), x.shape[2]
    )
)
depthwise_conv_stream_cl.register_fake(lambda state, x, weight, bias, dilation: (torch.empty_like(x), torch.empty_like(state)))
snake_depthwise_conv_snake_cl.register_fake(
    lambda x, a, ia, weight, bias, ao, iao, dilation, padding: _rows_like(
        x, x.shape[1] + 2 * padding - dilation * (weight.shape[0] - 1), x.shape[2]
    )
)
snake_depthwise_conv_snake_stream_cl.register_fake(
    lambda state, x, a, ia, weight, bias, ao, iao, dilation: (torch.empty_like(x), torch.empty_like(state), torch.empty_like(x))
)
conv_cl.register_fake(
    lambda x, weight, bias, padding: _rows_like(x, x.shape[1] + 2 * padding - weight.shape[0] + 1, weight.shape[2])
)

# ---- how torch.onnx writes them: one node of the domain ai.snac_onnx each ----------------------------------------

_CL = Opset(SNAKE_DOMAIN, 1)


def _dw_attrs(weight: Any, dilation: int, padding: int) -> dict[str, Any]:
    return cl_ops.depthwise_attributes(dilation, padding, int(weight.shape[1]))


def translation_table() -> dict[Any, Any]:
    """torch op -> onnxscript function writing its ``ai.snac_onnx`` node (the schemas are registered first)."""
    cl_ops.register_schemas()
    ops = torch.ops.snac_onnx

    def snake(x, alpha, inv_alpha):  # type: ignore[no-untyped-def]
        return _CL.SnakeCL(x, alpha, inv_alpha)

    def snake_stream(state, x, alpha, inv_alpha):  # type: ignore[no-untyped-def]
        return _CL.SnakeStreamCL(state, x, alpha, inv_alpha)

    def taps(x, alpha, inv_alpha):  # type: ignore[no-untyped-def]
        return _CL.SnakeTapsCL(x, alpha, inv_alpha)

    def taps_stream(state, x, alpha, inv_alpha):  # type: ignore[no-untyped-def]
        return _CL.SnakeTapsStreamCL(state, x, alpha, inv_alpha)

    def depthwise(x, weight, bias, dilation: int, padding: int):  # type: ignore[no-untyped-def]
        return _CL.DepthwiseConvCL(x, weight, bias, **_dw_attrs(weight, dilation, padding))

    def depthwise_stream(state, x, weight, bias, dilation: int):  # type: ignore[no-untyped-def]
        return _CL.DepthwiseConvStreamCL(state, x, weight, bias, **_dw_attrs(weight, dilation, 0))

    def unit(x, a, ia, weight, bias, ao, iao, dilation: int, padding: int):  # type: ignore[no-untyped-def]
        return _CL.SnakeDepthwiseConvSnakeCL(x, a, ia, weight, bias, ao, iao, **_dw_attrs(weight, dilation, padding))

    def unit_stream(state, x, a, ia, weight, bias, ao, iao, dilation: int):  # type: ignore[no-untyped-def]
        return _CL.SnakeDepthwiseConvSnakeStreamCL(state, x, a, ia, weight, bias, ao, iao, **_dw_attrs(weight, dilation, 0))

    def conv(x, weight, bias, padding: int):  # type: ignore[no-untyped-def]
        return _CL.ConvCL(x, weight, bias, padding=padding, pads=[padding, padding])

    return {
        ops.snake_cl.default: snake,
        ops.snake_stream_cl.default: snake_stream,
        ops.snake_taps_cl.default: taps,
        ops.snake_taps_stream_cl.default: taps_stream,
        ops.depthwise_conv_cl.default: depthwise,
        ops.depthwise_conv_stream_cl.default: depthwise_stream,
        ops.snake_depthwise_conv_snake_cl.default: unit,
        ops.snake_depthwise_conv_snake_stream_cl.default: unit_stream,
        ops.conv_cl.default: conv,
    }


# ---- channels-last layers -------------------------------------------------------------------------------------


class _Weights(nn.Module):
    """A layer's constants as buffers (so torch.onnx writes them as initializers, already laid out)."""

    def keep(self, **tensors: Tensor) -> None:
        for name, tensor in tensors.items():
            self.register_buffer(name, tensor.detach().clone().contiguous())


def _check_snake(module: nn.Module) -> ExportSnake:
    if not isinstance(module, ExportSnake):
        raise NotImplementedError(f"expected a Snake, got {type(module).__name__}")
    return module


def _padding(conv: nn.Conv1d) -> int:
    if not isinstance(conv.padding, tuple):
        raise NotImplementedError(f"a convolution with numeric padding, not {conv.padding!r}")
    return int(conv.padding[0])


def _depthwise_conv(conv: nn.Module) -> nn.Conv1d:
    if not (isinstance(conv, nn.Conv1d) and conv.groups == conv.in_channels == conv.out_channels > 1 and conv.stride == (1,)):
        raise NotImplementedError(
            "the channels-last graphs need SNAC's depthwise convolutions (config depthwise=True); "
            f"got {conv}. Export this model without --precision int8 / fp32-cl"
        )
    return conv


class Dense(_Weights):
    """A 1x1 convolution (or a NoiseBlock's): ``x @ weight + bias`` (no bias: ``x @ weight``)."""

    weight: Tensor
    bias: Tensor

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        if conv.kernel_size != (1,) or conv.groups != 1:
            raise NotImplementedError(f"not a dense 1x1 convolution: {conv}")
        self.keep(weight=conv.weight[:, :, 0].t())
        self.has_bias = conv.bias is not None
        if conv.bias is not None:
            self.keep(bias=conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.matmul(x, self.weight)
        return y + self.bias if self.has_bias else y


class Depthwise(_Weights):
    """A depthwise convolution without Snake (the decoder's first layer)."""

    weight: Tensor
    bias: Tensor

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        dw = _depthwise_conv(conv)
        assert dw.bias is not None
        self.keep(weight=dw.weight[:, 0, :].t(), bias=dw.bias)
        self.dilation, self.padding = dw.dilation[0], _padding(dw)

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = torch.ops.snac_onnx.depthwise_conv_cl(x, self.weight, self.bias, self.dilation, self.padding)
        return y

    def step(self, state: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        y, new_state = torch.ops.snac_onnx.depthwise_conv_stream_cl(state, x, self.weight, self.bias, self.dilation)
        return y, new_state


class Residual(_Weights):
    """A residual unit: ``x + dense(Snake(depthwise(Snake(x))))``; the first three layers are one operator."""

    alpha: Tensor
    inv_alpha: Tensor
    weight: Tensor
    bias: Tensor
    alpha_out: Tensor
    inv_alpha_out: Tensor

    def __init__(self, unit: Any) -> None:
        super().__init__()
        snake_in, conv_in, snake_out, pointwise = list(unit.block)
        conv = _depthwise_conv(conv_in)
        assert conv.bias is not None
        self.keep(
            alpha=_check_snake(snake_in).alpha.reshape(-1), inv_alpha=snake_in.inv_alpha.reshape(-1),
            weight=conv.weight[:, 0, :].t(), bias=conv.bias,
            alpha_out=_check_snake(snake_out).alpha.reshape(-1), inv_alpha_out=snake_out.inv_alpha.reshape(-1),
        )
        self.dilation, self.padding = conv.dilation[0], _padding(conv)
        self.dense = Dense(pointwise)

    def _weights(self) -> tuple[Tensor, ...]:
        return (self.alpha, self.inv_alpha, self.weight, self.bias, self.alpha_out, self.inv_alpha_out)

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = torch.ops.snac_onnx.snake_depthwise_conv_snake_cl(x, *self._weights(), self.dilation, self.padding)
        result: Tensor = x + self.dense(y)
        return result

    def step(self, state: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        y, new_state, residual = torch.ops.snac_onnx.snake_depthwise_conv_snake_stream_cl(
            state, x, *self._weights(), self.dilation
        )
        return residual + self.dense(y), new_state


class SnakeUpsample(_Weights):
    """A DecoderBlock's Snake and polyphase upsampler: ``taps(Snake(x)) @ W + b``, interleaved by a reshape."""

    alpha: Tensor
    inv_alpha: Tensor
    weight: Tensor
    bias: Tensor

    def __init__(self, snake: nn.Module, up: PolyphaseConvTranspose1d) -> None:
        super().__init__()
        w = up.weight  # (s * out, in, 2): tap 0 reads x[q - 1], tap 1 x[q]
        self.keep(
            alpha=_check_snake(snake).alpha.reshape(-1), inv_alpha=_check_snake(snake).inv_alpha.reshape(-1),
            weight=w.permute(2, 1, 0).reshape(2 * w.shape[1], w.shape[0]),  # row k * in + c: tap k of channel c
            bias=up.bias.reshape(-1).repeat(up.stride),  # column r * out + c: phase r of channel c
        )
        self.stride, self.padding, self.output_padding, self.out_channels = (
            up.stride, up.padding, up.output_padding, up.out_channels
        )

    def _phases(self, cols: Tensor) -> Tensor:
        z = torch.matmul(cols, self.weight) + self.bias  # (B, n, s * out)
        return z.reshape(z.shape[0], -1, self.out_channels)  # (B, n * s, out): row q * s + r

    def forward(self, x: Tensor) -> Tensor:
        steps = x.shape[1]
        z = self._phases(torch.ops.snac_onnx.snake_taps_cl(x, self.alpha, self.inv_alpha))
        length = (steps - 1) * self.stride - 2 * self.padding + 2 * self.stride + self.output_padding
        return z[:, self.padding : self.padding + length]

    def step(self, state: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        cols, new_state = torch.ops.snac_onnx.snake_taps_stream_cl(state, x, self.alpha, self.inv_alpha)
        return self._phases(cols), new_state


class SnakeConv(_Weights):
    """The decoder's last Snake and convolution (few output channels)."""

    alpha: Tensor
    inv_alpha: Tensor
    weight: Tensor
    bias: Tensor

    def __init__(self, snake: nn.Module, conv: nn.Conv1d) -> None:
        super().__init__()
        if conv.groups != 1 or conv.stride != (1,) or conv.dilation != (1,) or conv.bias is None:
            raise NotImplementedError(f"the last convolution must be dense, stride 1, no dilation: {conv}")
        self.keep(
            alpha=_check_snake(snake).alpha.reshape(-1), inv_alpha=_check_snake(snake).inv_alpha.reshape(-1),
            weight=conv.weight.permute(2, 1, 0), bias=conv.bias,  # (K, C, C_out)
        )
        self.padding = _padding(conv)

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = torch.ops.snac_onnx.conv_cl(
            torch.ops.snac_onnx.snake_cl(x, self.alpha, self.inv_alpha), self.weight, self.bias, self.padding
        )
        return y

    def step(self, state: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        y, new_state = torch.ops.snac_onnx.snake_stream_cl(state, x, self.alpha, self.inv_alpha)
        return torch.ops.snac_onnx.conv_cl(y, self.weight, self.bias, 0), new_state


class Noise(nn.Module):
    """A NoiseBlock: ``x + noise * (x @ W)``, ``noise`` ``(B, 1, n)`` as the graph takes it."""

    def __init__(self, block: Any) -> None:
        super().__init__()
        self.linear = Dense(block.linear)

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        result: Tensor = x + noise.reshape(noise.shape[0], noise.shape[2], 1) * self.linear(x)
        return result


class Attention(nn.Module):
    """:class:`export.graphs.FlatLocalMHA` on ``(B, T, C)``: its arithmetic without the transposes around it."""

    def __init__(self, mha: FlatLocalMHA) -> None:
        super().__init__()
        self.mha = mha

    def forward(self, x: Tensor) -> Tensor:
        mha = self.mha
        batch, steps, channels = x.shape
        heads, window = mha.heads, mha.window
        head_dim = channels // heads
        q, k, v = mha.to_qkv(mha.norm(x)).chunk(3, dim=-1)

        def to_windows(t: Tensor) -> Tensor:
            t = t.reshape(batch, steps // window, window, heads, head_dim)
            return t.permute(0, 1, 3, 2, 4).reshape(-1, heads, window, head_dim)

        q, k, v = to_windows(q), to_windows(k), to_windows(v)
        out = F.scaled_dot_product_attention(mha._rotate(q), mha._rotate(k), v)
        out = out.reshape(batch, steps // window, heads, window, head_dim).permute(0, 1, 3, 2, 4)
        result: Tensor = mha.to_out(out.reshape(batch, steps, channels)) + x
        return result


class FromCodes(_Weights):
    """The quantizer's ``from_codes`` in channels-last form: per codebook, the code vectors ``@`` out_proj, each
    repeated ``stride`` times in time, summed in codebook order."""

    def __init__(self, quantizer: Any) -> None:
        super().__init__()
        self.strides = [int(q.stride) for q in quantizer.quantizers]
        for i, q in enumerate(quantizer.quantizers):
            self.keep(**{
                f"codebook_{i}": q.codebook.weight, f"proj_{i}": q.out_proj.weight[:, :, 0].t(), f"proj_bias_{i}": q.out_proj.bias
            })

    def forward(self, codes: list[Tensor]) -> Tensor:
        z: Tensor | float = 0.0
        for i, (c, stride) in enumerate(zip(codes, self.strides)):
            vectors = F.embedding(c, getattr(self, f"codebook_{i}"))  # (B, n, D)
            z_i = torch.matmul(vectors, getattr(self, f"proj_{i}")) + getattr(self, f"proj_bias_{i}")
            z = z + (z_i.repeat_interleave(stride, dim=1) if stride > 1 else z_i)
        assert isinstance(z, Tensor)
        return z


def _convert(layers: list[nn.Module]) -> list[nn.Module]:
    """Channels-last modules for a list of SNAC decoder layers (DecoderBlocks opened; a Snake joins the layer after it)."""
    out: list[nn.Module] = []
    index = 0
    while index < len(layers):
        layer = layers[index]
        after = layers[index + 1] if index + 1 < len(layers) else None
        if isinstance(layer, DecoderBlock):
            out.append(nn.ModuleList(_convert(list(layer.block))))
        elif isinstance(layer, ExportSnake) and isinstance(after, PolyphaseConvTranspose1d):
            out.append(SnakeUpsample(layer, after))
            index += 1
        elif isinstance(layer, ExportSnake) and isinstance(after, nn.Conv1d):
            out.append(SnakeConv(layer, after))
            index += 1
        elif isinstance(layer, ResidualUnit):
            out.append(Residual(layer))
        elif isinstance(layer, NoiseBlock):
            out.append(Noise(layer))
        elif isinstance(layer, FlatLocalMHA):
            out.append(Attention(layer))
        elif isinstance(layer, nn.Conv1d) and layer.kernel_size == (1,):
            out.append(Dense(layer))
        elif isinstance(layer, nn.Conv1d):
            out.append(Depthwise(layer))
        elif isinstance(layer, nn.Tanh):
            out.append(nn.Tanh())
        else:
            raise NotImplementedError(f"no channels-last form for {type(layer).__name__}")
        index += 1
    return out


def _to_audio(y: Tensor) -> Tensor:
    """``(B, n, 1)`` -> ``(B, 1, n)``: the graphs' audio (one channel: a reshape)."""
    return y.reshape(y.shape[0], 1, -1)


class DecoderGraphCL(DecoderGraph):
    """:class:`export.graphs.DecoderGraph` (same inputs, output, tail tiles and halo) in channels-last form."""

    def __init__(self, model: SNAC) -> None:
        super().__init__(model)
        self.from_codes_cl = FromCodes(model.quantizer)
        self.head_cl = nn.ModuleList(_convert(self.head))
        self.tail_cl = nn.ModuleList(_convert(self.tail))

    @staticmethod
    def _apply_cl(layers: nn.ModuleList, x: Tensor, noise: list[Tensor]) -> Tensor:
        index = 0
        for layer in layers:
            for sub in layer if isinstance(layer, nn.ModuleList) else [layer]:
                if isinstance(sub, Noise):
                    x = sub(x, noise[index])
                    index += 1
                else:
                    x = sub(x)
        return x

    def run(self, codes: list[Tensor], noise: list[Tensor]) -> Tensor:
        x = self.from_codes_cl(codes)
        split = self.num_noise - len(self.tail_noise_rates)
        x = self._apply_cl(self.head_cl, x, noise[:split])
        if self.tiles == 1:
            return _to_audio(self._apply_cl(self.tail_cl, x, noise[split:]))
        steps, tiles, halo, factor = x.shape[1], self.tiles, self.halo, self.tail_factor
        pieces = []
        for i in range(tiles):
            a, b = steps * i // tiles, steps * (i + 1) // tiles
            s = a - halo if i > 0 else 0
            e = b + halo if i < tiles - 1 else steps
            tile_noise = [n[..., s * r : e * r] for n, r in zip(noise[split:], self.tail_noise_rates)]
            y = self._apply_cl(self.tail_cl, x[:, s:e], tile_noise)
            pieces.append(y[:, (a - s) * factor : (b - s) * factor])
        return _to_audio(torch.cat(pieces, dim=1))


def _valid_mask_cl(x: Tensor, frame: Tensor, end: Tensor, rate: int, lag: int) -> Tensor:
    """:func:`export.stream_graph._valid_mask` along axis 1: ``x`` with its rows outside the audio set to zero."""
    positions = torch.arange(x.shape[1], device=x.device)[None, :, None] + (frame * rate - lag)[:, None, None]
    inside = (positions >= 0) & (positions < (end * rate)[:, None, None])
    return x * inside.to(x.dtype)


class _StreamLayer(nn.Module):
    """One channels-last stream layer over the rate, lag and state of the channels-first op it replaces."""

    layer: Any

    def __init__(self, op: _Op, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.rate, self.lag, self.state_length = op.rate, op.lag, op.state_length

    def step(self, x: Tensor, frame: Tensor, end: Tensor, state: Tensor | None, noise: Tensor | None) -> tuple[Tensor, Tensor | None]:
        layer = self.layer
        if isinstance(layer, Noise):
            return layer(x, noise), None
        if isinstance(layer, Attention):
            if not self.state_length:
                return layer(x), None
            assert state is not None
            n = x.shape[1]
            buf = torch.cat([state, x], dim=1)
            return layer(buf[:, :n]), buf[:, n:]
        if self.state_length:
            y, new_state = layer.step(state, _valid_mask_cl(x, frame, end, self.rate, self.lag))
            return y, new_state
        y = layer(x)
        return y, None


def _stream_layers(ops: list[_Op]) -> list[_StreamLayer]:
    """Channels-last layers for the channels-first stream ops (a Snake joins the stateful layer after it)."""
    out = []
    index = 0
    while index < len(ops):
        op = ops[index]
        after = ops[index + 1] if index + 1 < len(ops) else None
        if isinstance(op, _Pointwise) and isinstance(op.module, ExportSnake) and isinstance(after, _Upsample):
            out.append(_StreamLayer(after, SnakeUpsample(op.module, after.up)))
            index += 1
        elif isinstance(op, _Pointwise) and isinstance(op.module, ExportSnake) and isinstance(after, _Conv):
            out.append(_StreamLayer(after, SnakeConv(op.module, after.conv)))
            index += 1
        elif isinstance(op, _Residual):
            unit = nn.Module()
            unit.block = nn.Sequential(op.snake_in, op.conv, op.snake_out, op.pointwise)
            out.append(_StreamLayer(op, Residual(unit)))
        elif isinstance(op, _Conv):
            out.append(_StreamLayer(op, Depthwise(op.conv)))
        elif isinstance(op, _Noise):
            block = nn.Module()
            block.linear = op.linear
            out.append(_StreamLayer(op, Noise(block)))
        elif isinstance(op, _Attention):
            out.append(_StreamLayer(op, Attention(op.mha)))
        elif isinstance(op, _Pointwise) and isinstance(op.module, nn.Conv1d):
            out.append(_StreamLayer(op, Dense(op.module)))
        elif isinstance(op, _Pointwise) and isinstance(op.module, nn.Tanh):
            out.append(_StreamLayer(op, nn.Tanh()))
        else:
            raise NotImplementedError(f"no channels-last stream form for {type(op).__name__}")
        index += 1
    return out


class StreamingDecoderCL(StreamingDecoder):
    """:class:`export.stream_graph.StreamingDecoder` (same inputs, grid, lags, noise and states, the states
    ``(B, S, C)``) in channels-last form."""

    def __init__(self, model: SNAC) -> None:
        super().__init__(model)
        self.from_codes_cl = FromCodes(model.quantizer)
        self.layers_cl = nn.ModuleList(_stream_layers(cast("list[_Op]", list(self.ops))))

    def initial_states(self, batch: int) -> list[Tensor]:
        return [torch.zeros(batch, s.length, s.channels) for s in self.states]

    def run(
        self, codes: list[Tensor], noise: list[Tensor], frame: Tensor, end: Tensor, states: list[Tensor]
    ) -> tuple[Tensor, list[Tensor]]:
        x = self.from_codes_cl(codes)
        noise_iter, state_iter = iter(noise), iter(states)
        new_states: list[Tensor] = []
        for layer in cast("list[_StreamLayer]", list(self.layers_cl)):
            state = next(state_iter) if layer.state_length else None
            x, new = layer.step(x, frame, end, state, next(noise_iter) if isinstance(layer.layer, Noise) else None)
            if new is not None:
                new_states.append(new)
        return _to_audio(x), new_states


def _named(graph: nn.Module, forward: Any, input_names: list[str], cls_name: str) -> Any:
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in input_names]
    forward.__signature__ = inspect.Signature(params)
    graph.__class__ = type(cls_name, (type(graph),), {"forward": forward})
    return graph.eval()


def decoder_cl_with_named_inputs(model: SNAC, input_names: list[str]) -> DecoderGraphCL:
    """A :class:`DecoderGraphCL` whose ``forward`` has one named parameter per graph input."""
    graph = DecoderGraphCL(model)
    n_codes = graph.num_codebooks

    def forward(self: DecoderGraphCL, *args: Tensor) -> Tensor:
        return self.run(list(args[:n_codes]), list(args[n_codes:]))

    return _named(graph, forward, input_names, "DecoderGraphCLNamed")  # type: ignore[no-any-return]


def stream_cl_with_named_inputs(model: SNAC, input_names: list[str]) -> StreamingDecoderCL:
    """A :class:`StreamingDecoderCL` whose ``forward`` has one named parameter per graph input."""
    graph = StreamingDecoderCL(model)
    n_codes, n_noise = graph.num_codebooks, len(graph.noise_lags)

    def forward(self: StreamingDecoderCL, *args: Tensor) -> tuple[Tensor, ...]:
        codes, noise = list(args[:n_codes]), list(args[n_codes : n_codes + n_noise])
        frame, end, states = args[n_codes + n_noise], args[n_codes + n_noise + 1], list(args[n_codes + n_noise + 2 :])
        audio, new_states = self.run(codes, noise, frame, end, states)
        return (audio, *new_states)

    return _named(graph, forward, input_names, "StreamingDecoderCLNamed")  # type: ignore[no-any-return]
