"""The stream graph's fast path: an ``If`` whose ``then`` branch drops the padding masks.

The stream graph (:mod:`export.stream_graph`) multiplies each temporal layer's input by a mask that
zeroes the positions before the audio and from ``end`` on: each layer's own padding. Away from both
ends every mask is all ones, and the masks cost about a tenth of a one-frame step (a Mul and a few
small nodes per layer). This pass wraps the graph in ``If(steady)``:

* ``then`` (steady): the same nodes with every mask Mul replaced by Identity (and the mask arithmetic
  dropped), taken when every row has ``frame >= safe_frame`` (every layer's input is past position 0)
  and ``end - frame >= frames`` (the call ends before the stream does);
* ``else``: the graph as it was.

Both branches read the weights from the outer graph, so they are stored once. The graph's inputs,
outputs and results are unchanged (the same arithmetic, the Identity replacing a multiply by one).
"""

from __future__ import annotations

import copy

import onnx
from onnx import helper

from snac_onnx.model.contract import END_NAME, FRAME_NAME

STEADY_PREFIX = "steady/"
MASKED_PREFIX = "masked/"


def _is_mask_mul(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto]) -> bool:
    """``Mul(x, Cast(And(...)))``: the masks written by ``export.stream_graph._valid_mask``."""
    if node.op_type != "Mul" or node.domain or len(node.input) != 2:
        return False
    cast = producer.get(node.input[1])
    if cast is None or cast.op_type != "Cast":
        return False
    both = producer.get(cast.input[0])
    return both is not None and both.op_type == "And"


def _branch(graph: onnx.GraphProto, prefix: str, steady: bool, producer: dict[str, onnx.NodeProto]) -> onnx.GraphProto:
    outer = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    outputs = [o.name for o in graph.output]
    nodes = []
    for node in graph.node:
        if steady and _is_mask_mul(node, producer):
            nodes.append(helper.make_node("Identity", [node.input[0]], [node.output[0]]))
        else:
            nodes.append(copy.deepcopy(node))
    if steady:  # drop what only the masks used
        needed, kept = set(outputs), []
        for node in reversed(nodes):
            if any(o in needed for o in node.output):
                kept.append(node)
                needed.update(node.input)
        nodes = kept[::-1]

    def rename(name: str) -> str:
        return name if name in outer or not name else prefix + name

    for index, node in enumerate(nodes):
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
        node.name = f"{prefix}{node.name or index}"
    values = [helper.make_tensor_value_info(prefix + o.name, o.type.tensor_type.elem_type, None) for o in graph.output]
    return helper.make_graph(nodes, prefix.strip("/"), [], values)


def split_steady(model: onnx.ModelProto, *, expected: int, safe_frame: int, codes_name: str, codes_per_frame: int) -> int:
    """Rewrite the stream graph ``model`` in place as ``If(steady, then=mask-free, else=as is)``.

    ``expected``: the number of masks (temporal layers) the graph must have; ``safe_frame``: the first
    frame from which every layer's input is past position 0; ``codes_name``/``codes_per_frame``: a code
    input and its codes per frame (the call's frame count is its length over that). Returns the masks.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    found = sum(_is_mask_mul(node, producer) for node in graph.node)
    if found != expected:
        raise RuntimeError(f"found {found} padding masks in the stream graph, expected {expected}")
    steady = _branch(graph, STEADY_PREFIX, True, producer)
    masked = _branch(graph, MASKED_PREFIX, False, producer)

    def const(name: str, value: int) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, onnx.TensorProto.INT64, [1], [value]))

    frame, end = FRAME_NAME, END_NAME
    nodes = [
        helper.make_node("Shape", [codes_name], ["steady_codes"], start=1, end=2),
        const("steady_per_frame", codes_per_frame),
        helper.make_node("Div", ["steady_codes", "steady_per_frame"], ["steady_frames"]),
        helper.make_node("Sub", [end, frame], ["steady_room"]),
        helper.make_node("ReduceMin", ["steady_room"], ["steady_room_min"], keepdims=1),
        helper.make_node("GreaterOrEqual", ["steady_room_min", "steady_frames"], ["steady_before_end"]),
        helper.make_node("ReduceMin", [frame], ["steady_first"], keepdims=1),
        const("steady_safe", safe_frame),
        helper.make_node("GreaterOrEqual", ["steady_first", "steady_safe"], ["steady_after_start"]),
        helper.make_node("And", ["steady_before_end", "steady_after_start"], ["steady_both"]),
        helper.make_node("Squeeze", ["steady_both"], ["steady"]),
        helper.make_node("If", ["steady"], [o.name for o in graph.output], then_branch=steady, else_branch=masked),
    ]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return found


def steady_branch(model: onnx.ModelProto) -> onnx.GraphProto:
    """The ``then`` (steady) branch of a graph rewritten by :func:`split_steady`."""
    (node,) = [n for n in model.graph.node if n.op_type == "If"]
    branch: onnx.GraphProto = next(a.g for a in node.attribute if a.name == "then_branch")
    return branch
