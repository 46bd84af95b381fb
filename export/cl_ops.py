"""The channels-last operators of the domain ``ai.snac_onnx``: what each computes, as an ONNX function body.

The channels-last graphs (:mod:`export.channels_last`) hold activations as ``(batch, time, channels)``:
every dense layer is then a ``MatMul`` against a constant ``(in, out)`` weight, and the polyphase
upsampler's interleave is a ``Reshape``. The layers that are not dense run as the operators below, which
``csrc/snake.c`` implements for onnxruntime's CPU provider (one pass over memory, no Transpose); each also
carries the standard ONNX function body written here, so a session without the kernel library runs the same
graph (onnxruntime inlines the function; the bodies transpose around ``Conv``, which the kernels never do).

Shapes: ``x`` float32 ``(B, T, C)``; ``state`` ``(B, S, C)`` (a stream layer's last inputs); ``alpha``,
``inv_alpha`` ``(C,)``; a depthwise weight ``(K, C)`` (taps first), its bias ``(C,)``; ``Snake(v) = v +
inv_alpha * sin(alpha * v)^2``.

float32 forms (the fp32 channels-last graphs):

* ``SnakeCL(x, alpha, inv_alpha) -> y``.
* ``SnakeStreamCL(state, x, alpha, inv_alpha) -> (y, new_state)``: ``y = [state, Snake(x)]`` in time,
  ``new_state`` its last ``S`` rows.
* ``SnakeTapsCL(x, alpha, inv_alpha) -> cols (B, T + 1, 2C)``: row ``q`` is ``[s[q - 1], s[q]]`` of ``s =
  Snake(x)`` zero-padded by one row on each side: the two taps of the polyphase upsampler.
* ``SnakeTapsStreamCL(state (B, 1, C), x, alpha, inv_alpha) -> (cols (B, T, 2C), new_state)``: the same over
  ``[state, Snake(x)]`` without padding; ``new_state`` its last row.
* ``DepthwiseConvCL(x, weight, bias) -> y``: a depthwise convolution (stride 1; int attributes ``dilation``,
  ``padding``, and ``dilations``/``pads``/``group`` for the body's ``Conv``).
* ``DepthwiseConvStreamCL(state, x, weight, bias) -> (y, new_state)``: over ``[state, x]`` without padding
  (``S = (K - 1) * dilation``, so ``y`` has ``T`` rows).
* ``SnakeDepthwiseConvSnakeCL(x, alpha, inv_alpha, weight, bias, alpha_out, inv_alpha_out) -> y``: Snake,
  depthwise convolution, Snake: a residual unit but its last 1x1 convolution.
* ``SnakeDepthwiseConvSnakeStreamCL(state, x, ...) -> (y, new_state, residual)``: the same over ``[state, x]``
  without padding; ``residual`` is ``[state, x][S/2 : S/2 + T]``, the unit's input delayed by its padding.
* ``ConvCL(x, weight (K, C, C_out), bias (C_out,)) -> y``: a dense convolution (the decoder's last layer,
  one output channel; attributes ``padding``/``pads``).

int8 forms (the int8 graphs; written by :mod:`export.passes`). Activations are quantized per row (one time
step, or one row of taps), asymmetrically: ``lo = min(min row, 0)``, ``hi = max(max row, 0)``, ``scale =
max(hi - lo, 1e-30) / 255``, ``inverse = 1 / scale``, ``zero = round_half_even(-lo * inverse)``, ``q =
clip(round_half_even(v * inverse) + zero, 0, 255)`` as uint8, so a row's arithmetic never depends on the other rows (or on how a stream was cut).
onnxruntime's ``MatMulInteger`` (uint8 x int8) multiplies them exactly in int32, and the zero point comes off
exactly in int32 too: ``acc - zero * sum_k W_q[k, n]``. A row's ``params`` are ``[scale, zero]`` (float32,
the zero an integer):

* ``QuantizeRowsCL(x) -> (q uint8, params (B, T, 2))``; and each layer above whose output feeds a dense layer
  has a form ``<name>Q`` whose first output is that pair instead of ``y`` (its other outputs as before).
* ``DequantizeCL(acc int32 (B, T, N), params (B, T, 2), weight_scale (N,), weight_sum int32 (N,), bias (N,))
  -> (acc - zero * weight_sum) * weight_scale * scale + bias`` (in that order), and ``DequantizeAddCL(...,
  residual)``, which adds ``residual`` after that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import onnx
from onnx import TensorProto, helper

from snac_onnx.model.kernels import SNAKE_DOMAIN

from .fuse import SNAKE_FUNCTION_OPSET as FUNCTION_OPSET

TIME_AXIS = 1
_LAST = (1 << 63) - 1  # an open end for Slice
ROW_SCALE_FLOOR = 1e-30  # a row of zeros gets this range (its codes are all zero points)
QUANT_LEVELS = 255.0

_DEPTHWISE_ATTRIBUTES = ["dilation", "padding", "dilations", "pads", "group"]


class _Body:
    """Nodes of one function body, with fresh names for intermediate values."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self._count = 0

    def __call__(self, op: str, inputs: list[str], outputs: int | list[str] = 1, **attrs: object) -> list[str]:
        if isinstance(outputs, int):
            names = [f"t{self._count + i}" for i in range(outputs)]
            self._count += outputs
        else:
            names = outputs
        node = helper.make_node(op, inputs, names, **attrs)  # type: ignore[arg-type]
        self.nodes.append(node)
        return names

    def one(self, op: str, inputs: list[str], output: str | None = None, **attrs: object) -> str:
        return self(op, inputs, [output] if output else 1, **attrs)[0]

    def ints(self, values: list[int]) -> str:
        tensor = helper.make_tensor("value", TensorProto.INT64, [len(values)], values)
        return self.one("Constant", [], value=tensor)

    def scalar(self, value: float) -> str:
        return self.one("Constant", [], value=helper.make_tensor("value", TensorProto.FLOAT, [], [value]))

    def attr_ref(self, op: str, inputs: list[str], refs: dict[str, Any], output: str | None = None) -> str:
        """A node whose attributes are references to the function's own attributes (``refs``: name -> type)."""
        name = output or f"t{self._count}"
        if output is None:
            self._count += 1
        node = helper.make_node(op, inputs, [name])
        for attr, kind in refs.items():
            node.attribute.append(helper.make_attribute_ref(attr, kind))
        self.nodes.append(node)
        return name

    # ---- the arithmetic the operators share
    def snake(self, x: str, alpha: str, inv_alpha: str, output: str | None = None) -> str:
        """``x + inv_alpha * sin(alpha * x)^2`` as torch writes it (Mul, Sin, Mul, Mul, Add)."""
        s = self.one("Sin", [self.one("Mul", [alpha, x])])
        return self.one("Add", [x, self.one("Mul", [inv_alpha, self.one("Mul", [s, s])])], output)

    def transpose(self, x: str, perm: list[int]) -> str:
        return self.one("Transpose", [x], perm=perm)

    def depthwise(self, x: str, weight: str, bias: str, output: str | None = None) -> str:
        """A depthwise Conv of channels-last ``x`` with a ``(K, C)`` weight (transposed around ``Conv``)."""
        kernel = self.one("Unsqueeze", [self.transpose(weight, [1, 0]), self.ints([1])])  # (C, 1, K)
        refs = {"dilations": onnx.AttributeProto.INTS, "pads": onnx.AttributeProto.INTS, "group": onnx.AttributeProto.INT}
        conv = self.attr_ref("Conv", [self.transpose(x, [0, 2, 1]), kernel, bias], refs)
        return self.one("Transpose", [conv], output, perm=[0, 2, 1])

    def join(self, state: str, x: str) -> str:
        return self.one("Concat", [state, x], axis=TIME_AXIS)

    def rows(self, x: str, start: str, end: str) -> str:
        return self.one("Slice", [x, start, end, self.ints([TIME_AXIS])])

    def held(self, state: str) -> str:
        """``S``, the state's rows, as a 1-element int64 tensor."""
        return self.one("Shape", [state], start=TIME_AXIS, end=TIME_AXIS + 1)

    def last_rows(self, buf: str, state: str, output: str) -> str:
        """``buf[:, -S:]`` with ``S`` the state's rows: a stream layer's next state."""
        return self.one("Slice", [buf, self.one("Neg", [self.held(state)]), self.ints([_LAST]), self.ints([TIME_AXIS])], output)

    def taps(self, buf: str, output: str) -> str:
        """Rows ``q`` = ``[buf[q], buf[q + 1]]``: ``(B, R, C) -> (B, R - 1, 2C)``."""
        left = self.rows(buf, self.ints([0]), self.ints([-1]))
        right = self.rows(buf, self.ints([1]), self.ints([_LAST]))
        return self.one("Concat", [left, right], output, axis=2)

    def quantize(self, x: str, q: str, params: str) -> None:
        """Per-row (last axis) asymmetric quantization of ``x`` to uint8, and the rows' ``[scale, zero]``."""
        zero = self.scalar(0.0)
        low = self.one("Min", [self.one("ReduceMin", [x, self.ints([-1])], keepdims=1), zero])
        high = self.one("Max", [self.one("ReduceMax", [x, self.ints([-1])], keepdims=1), zero])
        span = self.one("Max", [self.one("Sub", [high, low]), self.scalar(ROW_SCALE_FLOOR)])
        scale = self.one("Div", [span, self.scalar(QUANT_LEVELS)])
        inverse = self.one("Reciprocal", [scale])
        point = self.one("Round", [self.one("Mul", [self.one("Neg", [low]), inverse])])
        shifted = self.one("Add", [self.one("Round", [self.one("Mul", [x, inverse])]), point])
        clipped = self.one("Clip", [shifted, zero, self.scalar(QUANT_LEVELS)])
        self.one("Cast", [clipped], q, to=TensorProto.UINT8)
        self.one("Concat", [scale, point], params, axis=-1)


@dataclass(frozen=True)
class ClOp:
    """One operator: its name, inputs and outputs (name, ONNX type string), attributes, and body builder."""

    name: str
    inputs: list[tuple[str, str]]
    outputs: list[tuple[str, str]]
    attributes: list[str]
    build: Callable[[_Body], None]

    def function(self) -> onnx.FunctionProto:
        body = _Body()
        self.build(body)
        return helper.make_function(
            SNAKE_DOMAIN,
            self.name,
            inputs=[n for n, _ in self.inputs],
            outputs=[n for n, _ in self.outputs],
            nodes=body.nodes,
            opset_imports=[helper.make_opsetid("", FUNCTION_OPSET)],
            attributes=self.attributes,
        )

    def schema(self) -> onnx.defs.OpSchema:
        """An ONNX schema for tracing (torch.onnx needs one to write a node of this operator)."""
        schema_cls = onnx.defs.OpSchema
        types = sorted({t for _, t in self.inputs + self.outputs})
        var = {t: f"T{i}" for i, t in enumerate(types)}
        return schema_cls(
            self.name,
            SNAKE_DOMAIN,
            1,
            inputs=[schema_cls.FormalParameter(n, var[t]) for n, t in self.inputs],
            outputs=[schema_cls.FormalParameter(n, var[t]) for n, t in self.outputs],
            type_constraints=[(var[t], [t], "") for t in types],
            attributes=[schema_cls.Attribute(a, _ATTRIBUTE_TYPES[a], "", required=False) for a in self.attributes],
        )


_INT, _INTS = onnx.defs.OpSchema.AttrType.INT, onnx.defs.OpSchema.AttrType.INTS
_ATTRIBUTE_TYPES = {"dilation": _INT, "padding": _INT, "group": _INT, "dilations": _INTS, "pads": _INTS}
F32, U8, I32 = "tensor(float)", "tensor(uint8)", "tensor(int32)"
_SNAKE_IN = [("alpha", F32), ("inv_alpha", F32)]
_DW_IN = [("weight", F32), ("bias", F32)]
_SNAKE_OUT_IN = [("alpha_out", F32), ("inv_alpha_out", F32)]


def _snake(b: _Body) -> None:
    b.snake("x", "alpha", "inv_alpha", "y")


def _snake_stream(b: _Body) -> None:
    y = b.join("state", b.snake("x", "alpha", "inv_alpha"))
    b.one("Identity", [y], "y")
    b.last_rows(y, "state", "new_state")


def _snake_taps(b: _Body) -> None:
    padded = b.one("Pad", [b.snake("x", "alpha", "inv_alpha"), b.ints([0, 1, 0, 0, 1, 0])])
    b.taps(padded, "y")


def _snake_taps_stream(b: _Body) -> None:
    buf = b.join("state", b.snake("x", "alpha", "inv_alpha"))
    b.taps(buf, "y")
    b.last_rows(buf, "state", "new_state")


def _depthwise(b: _Body) -> None:
    b.depthwise("x", "weight", "bias", "y")


def _depthwise_stream(b: _Body) -> None:
    buf = b.join("state", "x")
    b.depthwise(buf, "weight", "bias", "y")
    b.last_rows(buf, "state", "new_state")


def _unit(b: _Body) -> None:
    conv = b.depthwise(b.snake("x", "alpha", "inv_alpha"), "weight", "bias")
    b.snake(conv, "alpha_out", "inv_alpha_out", "y")


def _unit_stream(b: _Body) -> None:
    buf = b.join("state", "x")
    conv = b.depthwise(b.snake(buf, "alpha", "inv_alpha"), "weight", "bias")
    b.snake(conv, "alpha_out", "inv_alpha_out", "y")
    b.last_rows(buf, "state", "new_state")
    half = b.one("Div", [b.held("state"), b.ints([2])])
    b.one("Slice", [buf, half, b.one("Neg", [half]), b.ints([TIME_AXIS])], "residual")


def _conv(b: _Body) -> None:
    kernel = b.transpose("weight", [2, 1, 0])  # (C_out, C, K)
    conv = b.attr_ref("Conv", [b.transpose("x", [0, 2, 1]), kernel, "bias"], {"pads": onnx.AttributeProto.INTS})
    b.one("Transpose", [conv], "y", perm=[0, 2, 1])


def _quantize_rows(b: _Body) -> None:
    b.quantize("x", "q", "params")


def _dequantize(b: _Body, residual: bool) -> None:
    # The zero point comes off in int32; then (acc * weight_scale) * scale: onnxruntime's MatMulIntegerToFloat fusion
    # takes MatMulInteger, Cast, Mul for per-tensor scales and would compute other forms wrongly.
    scale = b.one("Slice", ["params", b.ints([0]), b.ints([1]), b.ints([-1])])
    zero = b.one("Cast", [b.one("Slice", ["params", b.ints([1]), b.ints([2]), b.ints([-1])])], to=TensorProto.INT32)
    exact = b.one("Sub", ["acc", b.one("Mul", [zero, "weight_sum"])])
    scaled = b.one("Mul", [b.one("Mul", [b.one("Cast", [exact], to=TensorProto.FLOAT), "weight_scale"]), scale])
    if residual:
        b.one("Add", [b.one("Add", [scaled, "bias"]), "residual"], "y")
    else:
        b.one("Add", [scaled, "bias"], "y")


def _quantized(build: Callable[[_Body], None]) -> Callable[[_Body], None]:
    """The body of ``build`` with its output ``y`` quantized per row into ``q`` and ``scale``."""

    def body(b: _Body) -> None:
        build(b)
        for node in b.nodes:
            node.output[:] = ["y_float" if name == "y" else name for name in node.output]
        b.quantize("y_float", "q", "params")

    return body


_FLOAT_OPS = [
    ClOp("SnakeCL", [("x", F32), *_SNAKE_IN], [("y", F32)], [], _snake),
    ClOp("SnakeStreamCL", [("state", F32), ("x", F32), *_SNAKE_IN], [("y", F32), ("new_state", F32)], [], _snake_stream),
    ClOp("SnakeTapsCL", [("x", F32), *_SNAKE_IN], [("y", F32)], [], _snake_taps),
    ClOp("SnakeTapsStreamCL", [("state", F32), ("x", F32), *_SNAKE_IN], [("y", F32), ("new_state", F32)], [], _snake_taps_stream),
    ClOp("DepthwiseConvCL", [("x", F32), *_DW_IN], [("y", F32)], _DEPTHWISE_ATTRIBUTES, _depthwise),
    ClOp("DepthwiseConvStreamCL", [("state", F32), ("x", F32), *_DW_IN], [("y", F32), ("new_state", F32)], _DEPTHWISE_ATTRIBUTES, _depthwise_stream),
    ClOp("SnakeDepthwiseConvSnakeCL", [("x", F32), *_SNAKE_IN, *_DW_IN, *_SNAKE_OUT_IN], [("y", F32)], _DEPTHWISE_ATTRIBUTES, _unit),
    ClOp(
        "SnakeDepthwiseConvSnakeStreamCL",
        [("state", F32), ("x", F32), *_SNAKE_IN, *_DW_IN, *_SNAKE_OUT_IN],
        [("y", F32), ("new_state", F32), ("residual", F32)],
        _DEPTHWISE_ATTRIBUTES,
        _unit_stream,
    ),
    ClOp("ConvCL", [("x", F32), ("weight", F32), ("bias", F32)], [("y", F32)], ["padding", "pads"], _conv),
]

QUANTIZABLE = {op.name for op in _FLOAT_OPS if op.name not in ("SnakeCL", "SnakeStreamCL", "ConvCL")}
"""The float operators with a ``<name>Q`` form (their output feeds a dense layer in SNAC's decoder)."""


def _quantized_op(op: ClOp) -> ClOp:
    return ClOp(f"{op.name}Q", op.inputs, [("q", U8), ("params", F32), *op.outputs[1:]], op.attributes, _quantized(op.build))


_INT8_OPS = [
    ClOp("QuantizeRowsCL", [("x", F32)], [("q", U8), ("params", F32)], [], _quantize_rows),
    *(_quantized_op(op) for op in _FLOAT_OPS if op.name in QUANTIZABLE),
    ClOp(
        "DequantizeCL", [("acc", I32), ("params", F32), ("weight_scale", F32), ("weight_sum", I32), ("bias", F32)], [("y", F32)], [],
        lambda b: _dequantize(b, residual=False),
    ),
    ClOp(
        "DequantizeAddCL",
        [("acc", I32), ("params", F32), ("weight_scale", F32), ("weight_sum", I32), ("bias", F32), ("residual", F32)],
        [("y", F32)],
        [],
        lambda b: _dequantize(b, residual=True),
    ),
]

OPS: dict[str, ClOp] = {op.name: op for op in _FLOAT_OPS + _INT8_OPS}


def register_schemas() -> None:
    """Make the operators known to onnx (for torch.onnx's tracer); idempotent."""
    for op in OPS.values():
        try:
            onnx.defs.get_schema(op.name, 1, SNAKE_DOMAIN)
        except onnx.defs.SchemaError:
            onnx.defs.register_schema(op.schema())


def depthwise_attributes(dilation: int, padding: int, channels: int) -> dict[str, object]:
    """The attributes of a depthwise operator node: the kernel's ints and the body's Conv attributes."""
    return {"dilation": dilation, "padding": padding, "dilations": [dilation], "pads": [padding, padding], "group": channels}
