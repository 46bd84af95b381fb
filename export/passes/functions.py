"""Every ``ai.snac_onnx`` channels-last node gets its operator's function body (:mod:`export.cl_ops`) as a
model-local function, so a session without the kernel library runs the graph; functions no node uses are dropped."""

from __future__ import annotations

import onnx

from snac_onnx.model.kernels import SNAKE_DOMAIN

from ..cl_ops import OPS


def _op_types(graph: onnx.GraphProto) -> set[str]:
    found = set()
    for node in graph.node:
        if node.domain == SNAKE_DOMAIN:
            found.add(node.op_type)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found |= _op_types(attribute.g)
    return found


def attach_functions(model: onnx.ModelProto) -> list[str]:
    """Replace ``model``'s ``ai.snac_onnx`` functions by those its nodes use; returns their names (sorted).

    Raises:
        KeyError: a node of the domain that :mod:`export.cl_ops` does not define.
    """
    used = sorted(_op_types(model.graph))
    functions = [OPS[name].function() for name in used]
    kept = [f for f in model.functions if f.domain != SNAKE_DOMAIN]
    del model.functions[:]
    model.functions.extend(kept + functions)
    if not any(o.domain == SNAKE_DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(SNAKE_DOMAIN, 1))
    return used
