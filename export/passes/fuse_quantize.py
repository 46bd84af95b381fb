"""A layer whose only reader is ``QuantizeRowsCL`` quantizes its own output: ``<op>`` + ``QuantizeRowsCL`` ->
``<op>Q`` (:mod:`export.cl_ops`): the float rows never go to memory. Its other outputs (a stream layer's next
state and residual) stay as they were."""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter import pattern

from snac_onnx.model.kernels import SNAKE_DOMAIN

from ..cl_ops import OPS, QUANTIZABLE


def _rule(name: str) -> pattern.RewriteRule:
    extra = len(OPS[name].outputs) - 1

    def target(op, x):  # type: ignore[no-untyped-def]
        outputs = getattr(op, name)(
            x, _domain=SNAKE_DOMAIN, _allow_other_inputs=True, _allow_other_attributes=True,
            _outputs=["y", *(f"out{i}" for i in range(extra))],
        )
        y, rest = (outputs, ()) if extra == 0 else (outputs[0], tuple(outputs[1:]))
        q, scale = op.QuantizeRowsCL(y, _domain=SNAKE_DOMAIN, _outputs=2)
        return (q, scale, *rest)

    def replace(op, x, y, **_):  # type: ignore[no-untyped-def]
        node = y.producer()
        attributes = {a.name: a.value for a in node.attributes.values()}
        return getattr(op, f"{name}Q")(*node.inputs, _domain=SNAKE_DOMAIN, _outputs=2 + extra, **attributes)

    return pattern.RewriteRule(target, replace, name=f"{name}+QuantizeRowsCL")


def fuse_quantize(model: ir.Model) -> int:
    """Rewrite ``model`` in place; returns the number of layers fused with their quantization."""
    return int(pattern.RewriteRuleSet([_rule(name) for name in sorted(QUANTIZABLE)]).apply_to_model(model))
