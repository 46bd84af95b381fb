"""int8 dense layers: ``MatMul(x, W) [+ b]`` -> ``QuantizeRowsCL``, ``MatMulInteger``, ``DequantizeCL``.

A dense layer is a ``MatMul`` whose second input is a constant float ``(K, N)`` weight with ``K`` and ``N`` at
least :data:`MIN_DIM` (the quantizer's 8-wide code projections, the attention's score products and the last
convolution stay float). Its weight is quantized per output column (symmetric: ``scale_n = max_k |W[k, n]| /
levels``, ``W_q = round_half_even(W / scale_n)``, int8; with its column sums for the activations' zero points),
its activations per row at run time (:mod:`export.cl_ops`: uint8, a scale and zero point per row), and
onnxruntime multiplies them exactly in int32. A bias ``Add`` of a constant ``(N,)`` right after the MatMul joins
the dequantization; without one the bias is zeros. Weights shared by several MatMuls (the decoder's tail tiles) are
quantized once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from snac_onnx.model.kernels import SNAKE_DOMAIN

MIN_DIM = 16
WEIGHT_LEVELS = 127  # int8 weights in [-127, 127]


def quantize_weight(weight: np.ndarray, levels: int = WEIGHT_LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """``(W_q int8 (K, N), scale float32 (N,))`` with ``W ~= W_q * scale`` per column; a zero column gets scale 1."""
    w = np.asarray(weight, np.float32)
    peak = np.abs(w).max(axis=0)
    scale = np.where(peak > 0, peak / np.float32(levels), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(w / scale), -levels, levels).astype(np.int8)
    return q, scale


def _dense_weight(w: ir.Value) -> np.ndarray | None:
    value = w.const_value
    if value is None or value.dtype != ir.DataType.FLOAT or len(value.shape) != 2:
        return None
    array = value.numpy()
    return array if min(array.shape) >= MIN_DIM else None


class _Quantizer:
    """The rules, with the quantized weights made so far (by the weight's name) so each is made once."""

    def __init__(self, levels: int) -> None:
        self.levels = levels
        self.made: dict[str, tuple[ir.Value, ...]] = {}

    def constants(self, op: Any, w: ir.Value, bias: ir.Value | None) -> tuple[ir.Value, ...]:
        name = str(w.name)
        if name not in self.made:
            weight = _dense_weight(w)
            assert weight is not None  # the rules' conditions checked it
            q, scale = quantize_weight(weight, self.levels)
            sums = q.astype(np.int32).sum(axis=0, dtype=np.int32)
            zeros = np.zeros(q.shape[1], np.float32)
            self.made[name] = tuple(
                op.initializer(ir.tensor(value), f"{name}/{suffix}")
                for value, suffix in ((q, "int8"), (scale, "scale"), (sums, "sum"), (zeros, "zero_bias"))
            )
        q_value, scale_value, sums_value, zeros_value = self.made[name]
        return q_value, scale_value, sums_value, bias if bias is not None else zeros_value

    def replace(self, op: Any, x: ir.Value, w: ir.Value, bias: ir.Value | None) -> ir.Value:
        q_w, scale, sums, b = self.constants(op, w, bias)
        q, params = op.QuantizeRowsCL(x, _domain=SNAKE_DOMAIN, _outputs=2)
        acc = op.MatMulInteger(q, q_w)
        result: ir.Value = op.DequantizeCL(acc, params, scale, sums, b, _domain=SNAKE_DOMAIN)
        return result


def _is_bias(b: ir.Value, w: ir.Value) -> bool:
    value = b.const_value
    return value is not None and value.dtype == ir.DataType.FLOAT and tuple(value.shape) == (w.shape[1],)  # type: ignore[index]


def rules(levels: int = WEIGHT_LEVELS) -> pattern.RewriteRuleSet:
    """The pass's rules (a MatMul with its bias first, then one without)."""
    quantizer = _Quantizer(levels)

    def with_bias(op, x, w, b):  # type: ignore[no-untyped-def]
        return op.Add(op.MatMul(x, w), b)

    def without_bias(op, x, w):  # type: ignore[no-untyped-def]
        return op.MatMul(x, w, _outputs=["product"])

    def dense_with_bias(context, x, w, b, **_):  # type: ignore[no-untyped-def]
        return _dense_weight(w) is not None and _is_bias(b, w)

    def dense(context, x, w, product, **_):  # type: ignore[no-untyped-def]
        # a MatMul whose bias Add follows is left to the rule above (the matcher may reach the MatMul first)
        followed_by_bias = any(
            user.op_type == "Add" and not user.domain and any(i is not product and i is not None and _is_bias(i, w) for i in user.inputs)
            for user, _ in product.uses()
        )
        return _dense_weight(w) is not None and not followed_by_bias

    return pattern.RewriteRuleSet(
        [
            pattern.RewriteRule(with_bias, lambda op, x, w, b: quantizer.replace(op, x, w, b), dense_with_bias, name="dense+bias"),
            pattern.RewriteRule(without_bias, lambda op, x, w, **_: quantizer.replace(op, x, w, None), dense, name="dense"),
        ]
    )


def quantize_dense(model: ir.Model, levels: int = WEIGHT_LEVELS) -> int:
    """Rewrite ``model`` in place; returns the number of dense layers quantized."""
    return int(rules(levels).apply_to_model(model))
