"""Export-only rewrites of SNAC and the two graph wrappers (torch code, never run at inference).

``prepare_for_export`` works on a deep copy, so the official model used as the
parity reference stays untouched. It:

* folds weight norm into plain weights with
  ``parametrize.remove_parametrizations(..., leave_parametrized=True)``;
* replaces ``Snake1d`` (a TorchScript function that the exporter cannot trace)
  with the same arithmetic in plain torch; alpha is copied exactly, never
  clamped (it may be negative in trained weights);
* computes each ``ConvTranspose1d`` as a polyphase ``Conv1d`` (faster in onnxruntime);
* replaces ``LocalMHA``: the official code runs a 5-D ``scaled_dot_product_attention``
  that ``torch.onnx.export(dynamo=True)`` rejects; here windows are folded into
  the batch axis (4-D), and the rotary tables, which depend only on the window
  size, are computed once with the official ``SinusoidalEmbeddings``.

``DecoderGraph`` takes each NoiseBlock's noise as an explicit input, so the
runtime can decode without noise, with seeded noise, or like the official model.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.utils.parametrize as parametrize
from snac import SNAC
from snac.attention import LocalMHA
from snac.layers import DecoderBlock, NoiseBlock, Snake1d
from torch import nn


class ExportSnake(nn.Module):
    """Snake activation ``x + 1/(alpha + 1e-9) * sin(alpha * x)^2`` as in ``snac.layers.snake``.

    ``1/(alpha + 1e-9)`` is computed once here with the same float32 ops, and the
    square is a multiplication (one node cheaper than Pow in onnxruntime).
    """

    alpha: torch.Tensor
    inv_alpha: torch.Tensor

    def __init__(self, alpha: torch.Tensor) -> None:
        super().__init__()
        alpha = alpha.detach().clone()
        self.register_buffer("alpha", alpha)
        self.register_buffer("inv_alpha", (alpha + 1e-9).reciprocal())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sin(self.alpha * x)
        return x + self.inv_alpha * (s * s)


class PolyphaseConvTranspose1d(nn.Module):
    """``ConvTranspose1d`` with kernel ``2 * stride`` computed as one ``Conv1d`` plus an interleave.

    Output phase ``r`` of ``y[q * s + r - p]`` is ``sum_j x[q - j] W[:, :, r + j * s]``
    (j = 0, 1): a kernel-2 convolution producing ``s * out`` channels, then the
    phases are interleaved in time and the padding cropped. onnxruntime runs it
    through its parallel GEMM instead of ConvTranspose's col2im (1.1-1.8x per
    node here). Same arithmetic up to float summation order.
    """

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, conv: nn.ConvTranspose1d) -> None:
        super().__init__()
        stride, kernel = conv.stride[0], conv.kernel_size[0]
        if kernel != 2 * stride or conv.groups != 1 or conv.dilation[0] != 1:
            raise NotImplementedError("only SNAC's ConvTranspose1d (kernel 2 * stride, no groups or dilation)")
        weight = conv.weight.detach()  # (in, out, kernel)
        out_ch = conv.out_channels
        poly = torch.empty(stride * out_ch, conv.in_channels, 2)
        for r in range(stride):
            poly[r * out_ch : (r + 1) * out_ch, :, 0] = weight[:, :, r + stride].T  # tap x[q - 1]
            poly[r * out_ch : (r + 1) * out_ch, :, 1] = weight[:, :, r].T  # tap x[q]
        self.register_buffer("weight", poly)
        bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(out_ch)
        self.register_buffer("bias", bias[None, :, None])
        self.stride, self.padding, self.output_padding, self.out_channels = (
            stride, int(conv.padding[0]), int(conv.output_padding[0]), out_ch
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, steps = x.shape
        s = self.stride
        z = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (1, 1)), self.weight)  # (B, s*out, T+1)
        z = z.reshape(batch, s, self.out_channels, steps + 1).permute(0, 2, 3, 1).reshape(batch, self.out_channels, -1)
        length = (steps - 1) * s - 2 * self.padding + 2 * s + self.output_padding
        return z[:, :, self.padding : self.padding + length] + self.bias


class FlatLocalMHA(nn.Module):
    """``snac.attention.LocalMHA`` with windows folded into the batch axis (4-D attention).

    Input and output ``(batch, channels, steps)``; ``steps`` must be a multiple of the window.
    """

    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(self, mha: LocalMHA) -> None:
        super().__init__()
        self.norm = mha.norm
        self.to_qkv = mha.to_qkv
        self.to_out = mha.to_out
        self.heads = mha.heads
        self.window = mha.window_size
        if mha.rel_pos is None:
            raise NotImplementedError("LocalMHA without rotary embeddings is not used by SNAC")
        head_dim = mha.to_qkv.in_features // mha.heads
        probe = torch.zeros(1, 1, 1, self.window, head_dim)
        freqs, scale = mha.rel_pos(probe)
        if scale.numel() != 1 or float(scale.reshape(-1)[0]) != 1.0:
            raise NotImplementedError("xpos-scaled rotary embeddings are not used by SNAC")
        self.register_buffer("cos", freqs.cos(), persistent=False)
        self.register_buffer("sin", freqs.sin(), persistent=False)

    def _rotate(self, t: torch.Tensor) -> torch.Tensor:
        half = t.shape[-1] // 2
        rotated = torch.cat((-t[..., half:], t[..., :half]), dim=-1)
        return t * self.cos + rotated * self.sin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, steps = x.shape
        heads, window = self.heads, self.window
        head_dim = channels // heads
        residual = x
        h = self.norm(x.transpose(1, 2))
        q, k, v = self.to_qkv(h).chunk(3, dim=-1)

        def to_windows(t: torch.Tensor) -> torch.Tensor:
            # (b, (w n), (h d)) -> (b*w, h, n, d)
            t = t.reshape(batch, steps // window, window, heads, head_dim)
            return t.permute(0, 1, 3, 2, 4).reshape(-1, heads, window, head_dim)

        q, k, v = to_windows(q), to_windows(k), to_windows(v)
        out = torch.nn.functional.scaled_dot_product_attention(self._rotate(q), self._rotate(k), v)
        out = out.reshape(batch, steps // window, heads, window, head_dim).permute(0, 1, 3, 2, 4)
        out = self.to_out(out.reshape(batch, steps, channels))
        result: torch.Tensor = out.transpose(1, 2) + residual
        return result


def _replace_modules(root: nn.Module) -> None:
    for name, child in list(root.named_children()):
        if isinstance(child, Snake1d):
            setattr(root, name, ExportSnake(child.alpha))
        elif isinstance(child, nn.ConvTranspose1d):
            setattr(root, name, PolyphaseConvTranspose1d(child))
        elif isinstance(child, LocalMHA):
            setattr(root, name, FlatLocalMHA(child))
        else:
            _replace_modules(child)


def prepare_for_export(model: SNAC, config: dict[str, Any]) -> SNAC:
    """A copy of ``model`` (built from ``config``) with weight norm folded and the rewrites above applied.

    The copy is a fresh ``SNAC(**config)`` loaded with ``model``'s state dict, not a
    ``deepcopy``: a deep-copied parametrized module shares its generated class
    with the original, and folding the copy would strip ``weight`` from the original.
    """
    fresh = SNAC(**config)
    fresh.load_state_dict(model.state_dict(), strict=True)
    model = fresh.eval()
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for param_name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, param_name, leave_parametrized=True)
    _replace_modules(model)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class EncoderGraph(nn.Module):
    """audio ``(batch, 1, samples)`` -> codes, one int64 ``(batch, frames_i)`` per codebook."""

    def __init__(self, model: SNAC) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.quantizer = model.quantizer

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _, codes = self.quantizer(self.encoder(audio))
        return tuple(codes)


# Tail tiling: the last decoder blocks run at the highest rates and hold the largest tensors; their
# receptive field is a few samples of the tail's input, so running them on TAIL_TILES time tiles with
# a small halo costs little and cuts the decoder's peak memory (see tail_start).
TAIL_TILES = 3


def tail_start(blocks: list[DecoderBlock]) -> int:
    """Index of the first block of the tail: the last blocks whose output holds more than half as many
    values per second (channels x rate) as the largest block's.

    24 kHz (channels 512..64, strides 8, 8, 4, 2): values per step of the input 4096, 16384, 32768,
    32768: the last two blocks. 32/44 kHz (768..96, strides 8, 8, 3, 2): 6144, 24576, 36864, 36864:
    the last three. Untiled, the block just before the tail sets the peak only if it is at most half
    the size, so the tiles cut the peak by about half or more.
    """
    values, rate = [], 1
    for block in blocks:
        upsampler = next(m for m in block.modules() if isinstance(m, PolyphaseConvTranspose1d))
        rate *= upsampler.stride
        values.append(upsampler.out_channels * rate)
    start = len(blocks)
    while start > 0 and 2 * values[start - 1] > max(values):
        start -= 1
    return start


def tail_halo(tail: list[nn.Module]) -> int:
    """Samples of context, at the rate of the tail's input, that ``tail`` needs on each side of a tile.

    A conservative sum of each layer's one-sided reach, converted to the tail's input rate:
    an upsampler (polyphase kernel 2 over the input, cropped) reaches at most 2 input samples;
    a convolution with kernel k and dilation d reaches ``(k - 1) // 2 * d`` samples of its own
    rate. Rounded up, plus 2 samples of margin (tested against the untiled decode).
    """
    reach = 0.0  # in samples at the tail's input rate
    rate = 1  # the current rate, as a multiple of the tail's input rate
    for layer in tail:
        for module in layer.modules():
            if isinstance(module, PolyphaseConvTranspose1d):
                reach += 2 / rate
                rate *= module.stride
            elif isinstance(module, nn.Conv1d):
                reach += (module.kernel_size[0] - 1) // 2 * module.dilation[0] / rate
    return math.ceil(reach) + 2


class DecoderGraph(nn.Module):
    """codes (+ one noise tensor per NoiseBlock) -> audio ``(batch, 1, samples)``.

    With noise ``n`` each NoiseBlock computes ``x + n * linear(x)``, exactly the
    official block with ``torch.randn`` replaced by the input.

    The last decoder blocks (:func:`tail_start`) and the output layers (the "tail")
    run on ``tiles`` equal time tiles of their input, each with :func:`tail_halo`
    samples of context on both sides (none at the ends, where the convolutions'
    zero padding is the same as untiled), and only each tile's own part is kept:
    the result equals the untiled decode up to float rounding, while the largest
    tensors are ``tiles`` times smaller (the graph holds the tail's nodes once per
    tile, in order, so onnxruntime frees one tile's tensors before the next).
    """

    def __init__(self, model: SNAC, tiles: int = TAIL_TILES) -> None:
        super().__init__()
        self.quantizer = model.quantizer
        self.decoder = model.decoder
        self.num_codebooks = len(model.vq_strides)
        self.num_noise = sum(isinstance(m, NoiseBlock) for m in model.decoder.modules())
        layers = list(model.decoder.model)
        blocks = [i for i, layer in enumerate(layers) if isinstance(layer, DecoderBlock)]
        first = tail_start([layers[i] for i in blocks])
        split = blocks[first] if tiles > 1 and first < len(blocks) else len(layers)
        self.head, self.tail = layers[:split], layers[split:]
        self.tiles = tiles if self.tail else 1
        self.halo = tail_halo(self.tail)
        # each tail NoiseBlock's rate as a multiple of the tail's input rate; the tail's total upsampling
        self.tail_noise_rates: list[int] = []
        rate = 1
        for layer in self.tail:
            for module in layer.modules():
                if isinstance(module, PolyphaseConvTranspose1d):
                    rate *= module.stride
                elif isinstance(module, NoiseBlock):
                    self.tail_noise_rates.append(rate)
        self.tail_factor = rate

    def count(self, kind: Callable[[nn.Module], bool]) -> int:
        """How many times the traced graph runs a module for which ``kind`` is true (tail modules once per tile)."""
        head = sum(kind(m) for layer in self.head for m in layer.modules())
        tail = sum(kind(m) for layer in self.tail for m in layer.modules())
        return head + self.tiles * tail

    @staticmethod
    def _apply_layers(layers: list[nn.Module], x: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        index = 0
        for layer in layers:
            if not isinstance(layer, DecoderBlock):
                x = layer(x)
                continue
            for sub in layer.block:
                if isinstance(sub, NoiseBlock):
                    x = x + noise[index] * sub.linear(x)
                    index += 1
                else:
                    x = sub(x)
        return x

    def run(self, codes: list[torch.Tensor], noise: list[torch.Tensor]) -> torch.Tensor:
        x = self.quantizer.from_codes(codes)
        split = self.num_noise - len(self.tail_noise_rates)
        x = self._apply_layers(self.head, x, noise[:split])
        if self.tiles == 1:
            return self._apply_layers(self.tail, x, noise[split:])
        steps, tiles, halo, factor = x.shape[-1], self.tiles, self.halo, self.tail_factor
        pieces = []
        for i in range(tiles):
            a, b = steps * i // tiles, steps * (i + 1) // tiles  # the part this tile keeps
            s = a - halo if i > 0 else 0  # the part it runs
            e = b + halo if i < tiles - 1 else steps
            tile_noise = [n[..., s * r : e * r] for n, r in zip(noise[split:], self.tail_noise_rates)]
            y = self._apply_layers(self.tail, x[..., s:e], tile_noise)
            pieces.append(y[..., (a - s) * factor : (b - s) * factor])
        return torch.cat(pieces, dim=-1)


def decoder_graph_with_named_inputs(model: SNAC, input_names: list[str]) -> DecoderGraph:
    """A DecoderGraph whose ``forward`` has one named parameter per graph input.

    torch.onnx's dynamic-shape spec is keyed by parameter name; codebook and
    noise counts differ per config, so the signature is built here.
    """
    graph = DecoderGraph(model)
    n_codes = graph.num_codebooks

    def forward(self: DecoderGraph, *args: torch.Tensor) -> torch.Tensor:
        return self.run(list(args[:n_codes]), list(args[n_codes:]))

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in input_names]
    forward.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    cls = type("DecoderGraphNamed", (DecoderGraph,), {"forward": forward})
    graph.__class__ = cls
    return graph.eval()
