"""NoiseBlocks that skip their convolution when their noise is all zeros.

Each SNAC NoiseBlock computes ``x + noise * linear(x)`` (``linear`` a 1x1 convolution without bias);
torch.onnx writes it as ``Add(x, Mul(noise, Conv(x)))``, ``noise`` a graph input ``noise_j`` or a Slice of
one (the decoder's tail tiles). In the channels-last graphs ``linear(x)`` is ``MatMul(x, W)`` (int8: the
nodes the quantization pass made of it) and ``noise`` is reshaped to ``(B, n, 1)`` first. Decoding without noise, the default, feeds zeros: then the block is
``x`` exactly (``0 * finite = 0``), and the convolution is wasted work (about a tenth of a decode). This
pass wraps each block in ``If(max |noise_j| == 0)``: ``then`` passes ``x`` on, ``else`` is the block as it
was. A NaN in the noise takes ``else`` (``NaN == 0`` is false), so it still reaches the audio. With
noise, the cost is one ``Abs`` and ``ReduceMax`` per noise input and call.
"""

from __future__ import annotations

import onnx
from onnx import helper

from .fuse import _consumers


class NoiseGateError(RuntimeError):
    """The exported graph does not have the expected NoiseBlocks."""


def _noise_input(name: str, producer: dict[str, onnx.NodeProto], noise_inputs: set[str]) -> str | None:
    """The noise graph input that ``name`` is (or is a Slice of, or a Reshape of either), else None."""
    if name in noise_inputs:
        return name
    node = producer.get(name)
    if node is not None and node.op_type in ("Slice", "Reshape") and not node.domain:
        return _noise_input(node.input[0], producer, noise_inputs) if node.op_type == "Reshape" else (
            node.input[0] if node.input[0] in noise_inputs else None
        )
    return None


_LINEAR_NODES = 4  # the most nodes a block's linear(x) is made of (int8: QuantizeRows, MatMulInteger, Dequantize)


def _linear_nodes(
    h: str, x: str, graph: onnx.GraphProto, producer: dict[str, onnx.NodeProto], consumers: dict[str, list[onnx.NodeProto]],
    mul: onnx.NodeProto,
) -> list[onnx.NodeProto] | None:
    """The nodes computing ``h = linear(x)`` that nothing else reads (a Conv; a MatMul; int8: its quantized form), in
    graph order; None if ``h`` is not such a function of ``x`` alone (besides initializers and constants)."""
    found: dict[int, onnx.NodeProto] = {}
    pending = [h]
    while pending:
        node = producer.get(pending.pop())
        if node is None or id(node) in found:
            continue
        if node.op_type not in ("Conv", "MatMul", "MatMulInteger", "QuantizeRowsCL", "DequantizeCL") or len(found) == _LINEAR_NODES:
            return None
        found[id(node)] = node
        pending += [i for i in node.input if i and i != x and i in producer and producer[i].op_type != "Constant"]
    inside = {*found, id(mul)}
    if any(id(c) not in inside for node in found.values() for out in node.output for c in consumers.get(out, [])):
        return None
    if not any(x in node.input for node in found.values()):
        return None
    order = {id(node): index for index, node in enumerate(graph.node)}
    return sorted(found.values(), key=lambda node: order[id(node)])


def gate_noise(graph: onnx.GraphProto, noise_inputs: list[str], expected: int, prefix: str = "") -> int:
    """Rewrite ``graph`` (a model's graph or a branch of it) in place; ``noise_inputs``: the noise inputs' names
    (inputs of ``graph`` or of the graph around it); ``prefix``: for the names this pass adds (each branch of a
    graph needs its own). Returns the blocks gated, which must be ``expected``."""
    names = set(noise_inputs)
    producer = {out: node for node in graph.node for out in node.output}
    consumers = _consumers(graph)
    replaced: dict[int, onnx.NodeProto] = {}
    removed: set[int] = set()
    flags: dict[str, str] = {}  # noise input -> its "all zeros" flag
    for mul in graph.node:
        if mul.op_type != "Mul" or mul.domain or len(mul.input) != 2:
            continue
        noise = _noise_input(mul.input[0], producer, names)
        users = consumers.get(mul.output[0], [])
        if noise is None or len(users) != 1:
            continue
        add = users[0]
        if add.op_type != "Add" or add.domain or mul.output[0] not in add.input:
            continue
        x = add.input[1] if add.input[0] == mul.output[0] else add.input[0]
        linear = _linear_nodes(mul.input[1], x, graph, producer, consumers, mul)
        if linear is None:
            continue
        flag = flags.setdefault(noise, f"{prefix}{noise}_is_zero")
        out = add.output[0]
        skip = helper.make_graph(
            [helper.make_node("Identity", [x], [f"{out}/skipped"])], f"{out}/skip", [],
            [helper.make_tensor_value_info(f"{out}/skipped", onnx.TensorProto.FLOAT, None)],
        )
        block_nodes = []
        inner = {o for node in (*linear, mul) for o in node.output}
        for node in (*linear, mul, add):
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.output[:] = [f"{o}/noisy" for o in node.output]
            copy.input[:] = [f"{i}/noisy" if i in inner else i for i in node.input]
            block_nodes.append(copy)
        block = helper.make_graph(
            block_nodes, f"{out}/block", [], [helper.make_tensor_value_info(f"{out}/noisy", onnx.TensorProto.FLOAT, None)]
        )
        replaced[id(add)] = helper.make_node(
            "If", [flag], [out], name=f"{add.name or out}_noise_gate", then_branch=skip, else_branch=block
        )
        removed.update({id(mul), *(id(node) for node in linear)})
    if len(replaced) != expected:
        raise NoiseGateError(f"found {len(replaced)} NoiseBlocks, expected {expected}")
    zero = f"{prefix}noise_zero"
    head = [helper.make_node("Constant", [], [zero], value=helper.make_tensor(zero, onnx.TensorProto.FLOAT, [], [0.0]))] if flags else []
    for noise, flag in flags.items():
        head += [
            helper.make_node("Abs", [noise], [f"{flag}_abs"]),
            helper.make_node("ReduceMax", [f"{flag}_abs"], [f"{flag}_max"], keepdims=0),
            helper.make_node("Equal", [f"{flag}_max", zero], [flag]),
        ]
    nodes = head + [replaced.get(id(n), n) for n in graph.node if id(n) not in removed]
    del graph.node[:]
    graph.node.extend(nodes)
    return len(replaced)


def gate_model_noise(model: onnx.ModelProto, noise_inputs: list[str], expected: int) -> None:
    """:func:`gate_noise` over ``model``'s graph, or over each branch of its ``If`` nodes where it has them (the stream
    graph's two branches, each with a prefix of its own); each must gate ``expected`` blocks."""
    branches = [(a.g, f"{a.g.name}/") for n in model.graph.node if n.op_type == "If" for a in n.attribute]
    for graph, prefix in branches or [(model.graph, "")]:
        gate_noise(graph, noise_inputs, expected=expected, prefix=prefix)
