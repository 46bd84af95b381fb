"""A residual add after a dequantization joins it: ``Add(DequantizeCL(...), r)`` (either order) ->
``DequantizeAddCL(..., r)`` (:mod:`export.cl_ops`): one pass over the rows instead of two. Float addition is
commutative, so the result is the same bits."""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
from onnxscript.rewriter import pattern

from snac_onnx.model.kernels import SNAKE_DOMAIN


def _dequantize(op: Any, acc: Any, params: Any, weight_scale: Any, weight_sum: Any, bias: Any) -> Any:
    return op.DequantizeCL(acc, params, weight_scale, weight_sum, bias, _domain=SNAKE_DOMAIN)


def _activation(context, residual, **_):  # type: ignore[no-untyped-def]
    return residual.const_value is None  # a constant after a dequantization is a bias, not a residual


def _replace(op, acc, params, weight_scale, weight_sum, bias, residual):  # type: ignore[no-untyped-def]
    return op.DequantizeAddCL(acc, params, weight_scale, weight_sum, bias, residual, _domain=SNAKE_DOMAIN)


def fuse_dequantize_add(model: ir.Model) -> int:
    """Rewrite ``model`` in place; returns the number of adds fused."""
    rules = pattern.RewriteRuleSet(
        [
            pattern.RewriteRule(
                lambda op, acc, params, weight_scale, weight_sum, bias, residual: op.Add(
                    _dequantize(op, acc, params, weight_scale, weight_sum, bias), residual
                ),
                _replace,
                _activation,
                name="DequantizeCL+residual",
            ),
            pattern.RewriteRule(
                lambda op, acc, params, weight_scale, weight_sum, bias, residual: op.Add(
                    residual, _dequantize(op, acc, params, weight_scale, weight_sum, bias)
                ),
                _replace,
                _activation,
                name="residual+DequantizeCL",
            ),
        ]
    )
    return int(rules.apply_to_model(model))
