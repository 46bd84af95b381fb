"""Mark every Snake activation in an exported graph as one ``ai.snac_onnx.Snake`` node.

torch.onnx writes Snake (see :class:`export.graphs.ExportSnake`) as five nodes::

    z = Mul(alpha, x); s = Sin(z); s2 = Mul(s, s); t = Mul(inv_alpha, s2); y = Add(x, t)

This pass replaces each such chain with a single node ``Snake(x, alpha, inv_alpha)``
in the domain ``ai.snac_onnx`` and adds a model-local ONNX function of that
name whose body is exactly the five nodes above. So the file stays a standard
ONNX model that any onnxruntime runs (it inlines the function), and a CPU
session that registers snac_onnx's Snake kernel library runs the whole
activation as one fused, vectorised pass instead (see ``csrc/snake.c``).

The pass is strict: every ``Sin`` in the graph must belong to a chain, and the
number of chains must equal the number of Snake modules, or it raises.
"""

from __future__ import annotations

from collections import defaultdict

import onnx
from onnx import helper

from snac_onnx.model.kernels import SNAKE_DOMAIN  # the domain the runtime's kernel library registers

SNAKE_OP = "Snake"
SNAKE_FUNCTION_OPSET = 18


class FusionError(RuntimeError):
    """The exported graph does not have the expected Snake chains."""


def _snake_nodes(output: str, x: str = "x", alpha: str = "alpha", inv_alpha: str = "inv_alpha", tag: str = "snake") -> list[onnx.NodeProto]:
    """``output = x + inv_alpha * sin(alpha * x)^2`` as the five nodes torch.onnx writes for Snake.

    ``tag`` prefixes the intermediate values (two Snakes in one function body need different ones).
    """
    return [
        helper.make_node("Mul", [alpha, x], [f"{tag}_z"]),
        helper.make_node("Sin", [f"{tag}_z"], [f"{tag}_s"]),
        helper.make_node("Mul", [f"{tag}_s", f"{tag}_s"], [f"{tag}_s2"]),
        helper.make_node("Mul", [inv_alpha, f"{tag}_s2"], [f"{tag}_t"]),
        helper.make_node("Add", [x, f"{tag}_t"], [output]),
    ]


def snake_function() -> onnx.FunctionProto:
    """The reference body of ``ai.snac_onnx.Snake``: ``x + inv_alpha * sin(alpha * x)^2``."""
    return helper.make_function(
        SNAKE_DOMAIN,
        SNAKE_OP,
        inputs=["x", "alpha", "inv_alpha"],
        outputs=["y"],
        nodes=_snake_nodes("y"),
        opset_imports=[helper.make_opsetid("", SNAKE_FUNCTION_OPSET)],
    )


def _other(node: onnx.NodeProto, name: str) -> str | None:
    """The input of a two-input node that is not ``name`` (None if the node does not take ``name``)."""
    if len(node.input) != 2 or name not in node.input:
        return None
    a, b = node.input
    return str(b if a == name else a)


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """The nodes reading each value; a node reading a value twice (``s * s``) counts once."""
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in dict.fromkeys(node.input):
            consumers[name].append(node)
    return consumers


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes of ``graph`` and of its subgraphs (an ``If``'s branches), in order."""
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                nodes += _all_nodes(attribute.g)
    return nodes


def _rewrite(
    model: onnx.ModelProto,
    replaced: dict[int, onnx.NodeProto],
    removed: set[int],
    function: onnx.FunctionProto,
    graph: onnx.GraphProto | None = None,
) -> None:
    """Put ``replaced[id(node)]`` in place of those nodes of ``graph`` (default: the model's; or one of its
    branches), drop the ``removed`` ones, add ``function``, drop every function no node (branches included)
    uses any more (e.g. ``SnakeDepthwiseConv`` once all were merged further), check."""
    graph = model.graph if graph is None else graph
    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in removed]
    del graph.node[:]
    graph.node.extend(nodes)
    model.functions.append(function)
    used = {(n.domain, n.op_type) for n in _all_nodes(model.graph)}
    kept = [f for f in model.functions if (f.domain, f.name) in used]
    del model.functions[:]
    model.functions.extend(kept)
    onnx.checker.check_model(model)


def fuse_snake(model: onnx.ModelProto, expected: int) -> int:
    """Rewrite ``model`` in place; returns the number of Snake nodes made (always ``expected``)."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    consumers = _consumers(graph)
    producer = {out: node for node in graph.node for out in node.output}

    def only_consumer(name: str, op_type: str) -> onnx.NodeProto | None:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    replaced: dict[int, onnx.NodeProto] = {}  # id(first node of a chain) -> Snake node
    removed: set[int] = set()
    sins = [node for node in graph.node if node.op_type == "Sin"]
    for index, sin in enumerate(sins):
        scale = producer.get(sin.input[0])
        if scale is None or scale.op_type != "Mul":
            raise FusionError(f"Sin #{index} is not fed by Mul(alpha, x)")
        alpha = next((n for n in scale.input if n in initializers), None)
        x = _other(scale, alpha) if alpha is not None else None
        square = only_consumer(sin.output[0], "Mul")
        if x is None or square is None or list(square.input) != [sin.output[0], sin.output[0]]:
            raise FusionError(f"Sin #{index}: not the Snake chain Mul(alpha, x) -> Sin -> Mul(s, s)")
        weigh = only_consumer(square.output[0], "Mul")
        inv_alpha = _other(weigh, square.output[0]) if weigh is not None else None
        add = only_consumer(weigh.output[0], "Add") if weigh is not None else None
        if weigh is None or inv_alpha not in initializers or add is None or _other(add, weigh.output[0]) != x:
            raise FusionError(f"Sin #{index}: not followed by Mul(inv_alpha, s2) -> Add(x, .)")
        assert alpha is not None
        assert inv_alpha is not None
        if len(consumers[scale.output[0]]) != 1:
            raise FusionError(f"Sin #{index}: alpha * x is used outside the Snake chain")
        snake = helper.make_node(
            SNAKE_OP, [x, alpha, inv_alpha], [add.output[0]], name=f"snake_{index}", domain=SNAKE_DOMAIN
        )
        replaced[id(scale)] = snake
        removed.update(id(n) for n in (sin, square, weigh, add))
    if len(replaced) != expected:
        raise FusionError(f"found {len(replaced)} Snake chains, expected {expected}")
    model.opset_import.append(helper.make_opsetid(SNAKE_DOMAIN, 1))
    _rewrite(model, replaced, removed, snake_function())
    return len(replaced)


DEPTHWISE_OP = "SnakeDepthwiseConv"
_DEPTHWISE_ATTRIBUTES = ["dilation", "padding", "dilations", "pads", "group"]


def _depthwise_conv_node(x: str, y: str) -> onnx.NodeProto:
    """The function bodies' depthwise ``Conv(x, weight, bias)``, its attributes taken from the node's."""
    conv = helper.make_node("Conv", [x, "weight", "bias"], [y])
    for name, kind in (("dilations", onnx.AttributeProto.INTS), ("pads", onnx.AttributeProto.INTS), ("group", onnx.AttributeProto.INT)):
        conv.attribute.append(helper.make_attribute_ref(name, kind))
    return conv


def snake_depthwise_function() -> onnx.FunctionProto:
    """``ai.snac_onnx.SnakeDepthwiseConv``: Snake, then a depthwise ``Conv`` (stride 1, bias).

    Attributes: ``dilations``/``pads``/``group`` as for ``Conv`` (used by the body), and the
    same as scalars ``dilation``/``padding`` (read by the fused kernel).
    """
    conv = _depthwise_conv_node("s", "y")
    return helper.make_function(
        SNAKE_DOMAIN,
        DEPTHWISE_OP,
        inputs=["x", "alpha", "inv_alpha", "weight", "bias"],
        outputs=["y"],
        nodes=[*_snake_nodes("s"), conv],
        opset_imports=[helper.make_opsetid("", SNAKE_FUNCTION_OPSET)],
        attributes=_DEPTHWISE_ATTRIBUTES,
    )


def fuse_snake_depthwise(model: onnx.ModelProto, expected: int) -> int:
    """Merge each ``Snake`` whose only consumer is a depthwise ``Conv`` into one ``SnakeDepthwiseConv``.

    Run after :func:`fuse_snake`. A depthwise Conv here: weight initializer ``(C, 1, K)``,
    ``group == C``, bias initializer, stride 1, symmetric ``pads``. Returns the number merged,
    which must equal ``expected`` (the residual units with depthwise convolutions).
    """
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    consumers = _consumers(graph)
    replaced: dict[int, onnx.NodeProto] = {}
    removed: set[int] = set()
    for snake in [n for n in graph.node if n.domain == SNAKE_DOMAIN and n.op_type == SNAKE_OP]:
        users = consumers.get(snake.output[0], [])
        if len(users) != 1 or users[0].op_type != "Conv" or len(users[0].input) != 3:
            continue
        conv = users[0]
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        weight, bias = inits.get(conv.input[1]), inits.get(conv.input[2])
        if weight is None or bias is None or len(weight.dims) != 3 or weight.dims[1] != 1 or weight.dims[2] < 1:
            continue
        channels = int(weight.dims[0])
        dilations = list(attrs.get("dilations", [1]))
        pads = list(attrs.get("pads", [0, 0]))
        if (
            int(attrs.get("group", 1)) != channels
            or channels < 2
            or list(attrs.get("strides", [1])) != [1]
            or len(dilations) != 1
            or len(pads) != 2
            or pads[0] != pads[1]
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or conv.input[0] != snake.output[0]
        ):
            continue
        fused = helper.make_node(
            DEPTHWISE_OP,
            [*snake.input, conv.input[1], conv.input[2]],
            [conv.output[0]],
            name=f"{snake.name}_depthwise",
            domain=SNAKE_DOMAIN,
            dilation=int(dilations[0]),
            padding=int(pads[0]),
            dilations=dilations,
            pads=pads,
            group=channels,
        )
        replaced[id(snake)] = fused
        removed.add(id(conv))
    if len(replaced) != expected:
        raise FusionError(f"found {len(replaced)} Snake + depthwise Conv pairs, expected {expected}")
    _rewrite(model, replaced, removed, snake_depthwise_function())
    return len(replaced)


DEPTHWISE_SNAKE_OP = "SnakeDepthwiseConvSnake"


def snake_depthwise_snake_function() -> onnx.FunctionProto:
    """``ai.snac_onnx.SnakeDepthwiseConvSnake``: :func:`snake_depthwise_function`, then Snake with ``alpha_out``."""
    conv = _depthwise_conv_node("s", "c")
    return helper.make_function(
        SNAKE_DOMAIN,
        DEPTHWISE_SNAKE_OP,
        inputs=["x", "alpha", "inv_alpha", "weight", "bias", "alpha_out", "inv_alpha_out"],
        outputs=["y"],
        nodes=[*_snake_nodes("s"), conv, *_snake_nodes("y", "c", "alpha_out", "inv_alpha_out", tag="snake_out")],
        opset_imports=[helper.make_opsetid("", SNAKE_FUNCTION_OPSET)],
        attributes=_DEPTHWISE_ATTRIBUTES,
    )


def fuse_snake_depthwise_snake(model: onnx.ModelProto, expected: int) -> int:
    """Merge each ``SnakeDepthwiseConv`` whose only consumer is a ``Snake`` into one ``SnakeDepthwiseConvSnake``.

    Run after :func:`fuse_snake_depthwise`: in a SNAC residual unit (Snake, depthwise Conv, Snake,
    1x1 Conv) this leaves one node for the first three layers, which the kernel runs in one pass over
    each row (the depthwise output never goes to memory). Returns the number merged, which must equal
    ``expected``.
    """
    graph = model.graph
    consumers = _consumers(graph)
    replaced: dict[int, onnx.NodeProto] = {}
    removed: set[int] = set()
    for first in [n for n in graph.node if n.domain == SNAKE_DOMAIN and n.op_type == DEPTHWISE_OP]:
        users = consumers.get(first.output[0], [])
        if len(users) != 1 or users[0].domain != SNAKE_DOMAIN or users[0].op_type != SNAKE_OP:
            continue
        second = users[0]
        if second.input[0] != first.output[0]:
            continue
        fused = helper.make_node(
            DEPTHWISE_SNAKE_OP,
            [*first.input, second.input[1], second.input[2]],
            [second.output[0]],
            name=f"{first.name}_snake",
            domain=SNAKE_DOMAIN,
        )
        fused.attribute.extend(first.attribute)
        replaced[id(first)] = fused
        removed.add(id(second))
    if len(replaced) != expected:
        raise FusionError(f"found {len(replaced)} SnakeDepthwiseConv + Snake pairs, expected {expected}")
    _rewrite(model, replaced, removed, snake_depthwise_snake_function())
    return len(replaced)


INTERLEAVE_OP = "PolyphaseInterleave"


def _int_constant(output: str, attribute: str) -> onnx.NodeProto:
    """``Constant`` whose scalar int value is the function attribute ``attribute``."""
    node = helper.make_node("Constant", [], [output])
    ref = onnx.AttributeProto(name="value_int", ref_attr_name=attribute, type=onnx.AttributeProto.INT)
    node.attribute.append(ref)
    return node


def interleave_function() -> onnx.FunctionProto:
    """``ai.snac_onnx.PolyphaseInterleave(z, bias)``: the interleave half of ``PolyphaseConvTranspose1d``.

    ``z`` (B, stride * C, T) -> (B, stride, C, T) -> (B, C, T, stride) -> (B, C, T * stride), cropped to
    ``[padding, T * stride - padding + output_padding)``, plus ``bias`` (1, C, 1): what torch.onnx
    writes for that module after its Conv, with the sizes computed from ``z``'s shape.
    """
    one = helper.make_tensor("one", onnx.TensorProto.INT64, [1], [0])
    nodes = [
        *(_int_constant(f"{name}_scalar", name) for name in ("stride", "padding", "output_padding")),
        helper.make_node("Constant", [], ["axis0"], value=one),
        *(helper.make_node("Unsqueeze", [f"{name}_scalar", "axis0"], [name]) for name in ("stride", "padding", "output_padding")),
        helper.make_node("Constant", [], ["keep"], value_ints=[0]),
        helper.make_node("Constant", [], ["rest"], value_ints=[-1]),
        helper.make_node("Constant", [], ["time_axis"], value_ints=[2]),
        helper.make_node("Shape", ["z"], ["steps"], start=2),
        helper.make_node("Concat", ["keep", "stride", "rest", "steps"], ["phases_shape"], axis=0),
        helper.make_node("Reshape", ["z", "phases_shape"], ["phases"]),
        helper.make_node("Transpose", ["phases"], ["interleaved"], perm=[0, 2, 3, 1]),
        helper.make_node("Concat", ["keep", "keep", "rest"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["interleaved", "flat_shape"], ["flat"]),
        helper.make_node("Mul", ["steps", "stride"], ["full"]),
        helper.make_node("Sub", ["full", "padding"], ["cut"]),
        helper.make_node("Add", ["cut", "output_padding"], ["end"]),
        helper.make_node("Slice", ["flat", "padding", "end", "time_axis"], ["cropped"]),
        helper.make_node("Add", ["cropped", "bias"], ["y"]),
    ]
    return helper.make_function(
        SNAKE_DOMAIN,
        INTERLEAVE_OP,
        inputs=["z", "bias"],
        outputs=["y"],
        nodes=nodes,
        opset_imports=[helper.make_opsetid("", SNAKE_FUNCTION_OPSET)],
        attributes=["stride", "padding", "output_padding"],
    )


def _phase_rows(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto]) -> int | None:
    """``stride * channels`` of a polyphase upsampler's phases ``node`` (None if it is not one): a kernel-2
    ``Conv`` (weight ``(s * C, in, 2)``), or the stream graph's ``Transpose(MatMul(cols^T, weight_t))`` with
    weight_t ``(2 * in, s * C)`` (see ``export.stream_graph.MATMUL_MAX_COLUMNS``)."""
    if node.op_type == "Conv" and not node.domain:
        weight = inits.get(node.input[1])
        return int(weight.dims[0]) if weight is not None and len(weight.dims) == 3 and weight.dims[2] == 2 else None
    if node.op_type != "Transpose" or node.domain:
        return None
    perm = next((list(helper.get_attribute_value(a)) for a in node.attribute if a.name == "perm"), None)
    matmul = producer.get(node.input[0])
    if perm != [0, 2, 1] or matmul is None or matmul.op_type != "MatMul" or matmul.domain:
        return None
    weight = inits.get(matmul.input[1])
    return int(weight.dims[1]) if weight is not None and len(weight.dims) == 2 and weight.dims[0] % 2 == 0 else None


def fuse_interleave(model: onnx.ModelProto, expected: int) -> int:
    """Replace each polyphase interleave (Reshape, Transpose, Reshape, Slice, Add bias after the phases: a
    kernel-2 Conv, or the stream graph's MatMul form, see :func:`_phase_rows`) with one
    ``ai.snac_onnx.PolyphaseInterleave``; returns the number replaced, which must equal ``expected``.

    ``stride`` comes from the phases' weight and the bias (``stride * C`` rows for ``C`` channels),
    ``padding`` from the Slice's start, ``output_padding`` is ``stride % 2`` as in every SNAC
    ``DecoderBlock`` (the exporter checks the modules; parity against PyTorch checks the result).
    Without a Slice (the stream graph, whose upsamplers are not cropped) both are 0.
    """
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    consumers = _consumers(graph)
    producer = {out: node for node in graph.node for out in node.output}

    def single_producer(name: str, op_type: str) -> onnx.NodeProto | None:
        node = producer.get(name)
        ok = node is not None and node.op_type == op_type and not node.domain and len(consumers.get(name, [])) == 1
        return node if ok else None

    replaced: dict[int, onnx.NodeProto] = {}
    removed: set[int] = set()
    for add in [n for n in graph.node if n.op_type == "Add" and not n.domain and len(n.input) == 2]:
        bias = inits.get(add.input[1])
        crop = single_producer(add.input[0], "Slice")
        # the stream graph's upsamplers are not cropped (the crop became lag): Reshape straight into Add
        flat = single_producer(crop.input[0] if crop is not None else add.input[0], "Reshape")
        interleaved = single_producer(flat.input[0], "Transpose") if flat is not None else None
        phases = single_producer(interleaved.input[0], "Reshape") if interleaved is not None else None
        conv = producer.get(phases.input[0]) if phases is not None else None
        if bias is None or conv is None or len(bias.dims) != 3 or bias.dims[0] != 1:
            continue
        assert interleaved is not None  # conv was found through it and phases
        assert phases is not None
        perm = next((list(helper.get_attribute_value(a)) for a in interleaved.attribute if a.name == "perm"), None)
        phase_rows = _phase_rows(conv, producer, inits)
        start = inits.get(crop.input[1]) if crop is not None else None
        channels = int(bias.dims[1])
        if perm != [0, 2, 3, 1] or phase_rows is None or phase_rows % channels or (crop is not None and start is None):
            continue
        stride = phase_rows // channels
        padding = int(onnx.numpy_helper.to_array(start).reshape(-1)[0]) if start is not None else 0
        fused = helper.make_node(
            INTERLEAVE_OP, [phases.input[0], add.input[1]], [add.output[0]], name=f"{conv.name}_interleave",
            domain=SNAKE_DOMAIN, stride=stride, padding=padding, output_padding=stride % 2 if crop is not None else 0,
        )
        replaced[id(phases)] = fused
        removed.update(id(n) for n in (interleaved, flat, add, *([crop] if crop is not None else [])))
    if len(replaced) != expected:
        raise FusionError(f"found {len(replaced)} polyphase interleaves, expected {expected}")
    _rewrite(model, replaced, removed, interleave_function())
    return len(replaced)


# ---- the stream graph's stateful layers (export.stream_graph) --------------------------------------

DEPTHWISE_SNAKE_STREAM_OP = "SnakeDepthwiseConvSnakeStream"
SNAKE_STREAM_OP = "SnakeStream"
_TIME_AXIS = 2
_LAST = (1 << 63) - 1  # the end torch.onnx writes for an open slice ``[start:]``


def _state_slice_nodes(buf: str, state: str, outputs: dict[str, str]) -> list[onnx.NodeProto]:
    """Function-body nodes slicing ``buf`` (``[state, x]`` in time) by the length ``S`` of ``state``:
    ``outputs["new_state"] = buf[..., -S:]`` and, if asked, ``outputs["residual"] = buf[..., S/2 : -S/2]``."""
    def ints(name: str, values: list[int]) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, onnx.TensorProto.INT64, [len(values)], values))

    nodes = [
        helper.make_node("Shape", [state], ["held"], start=_TIME_AXIS, end=_TIME_AXIS + 1),
        helper.make_node("Neg", ["held"], ["minus_held"]),
        ints("last", [_LAST]),
        ints("time_axis", [_TIME_AXIS]),
        helper.make_node("Slice", [buf, "minus_held", "last", "time_axis"], [outputs["new_state"]]),
    ]
    if "residual" in outputs:
        nodes += [
            ints("two", [2]),
            helper.make_node("Div", ["held", "two"], ["half"]),
            helper.make_node("Neg", ["half"], ["minus_half"]),
            helper.make_node("Slice", [buf, "half", "minus_half", "time_axis"], [outputs["residual"]]),
        ]
    return nodes


def depthwise_snake_stream_function() -> onnx.FunctionProto:
    """``ai.snac_onnx.SnakeDepthwiseConvSnakeStream(state, x, ...) -> (y, new_state, residual)``: a residual unit's
    Snake, depthwise Conv and Snake over ``buf = [state, x]`` (time axis, no padding), ``new_state = buf[..., -S:]``
    and ``residual = buf[..., S/2 : -S/2]`` (the unit's input delayed by its padding), ``S`` the state's length
    (``(taps - 1) * dilation``). Attributes as :func:`snake_depthwise_function` (``pads`` ``[0, 0]``)."""
    conv = _depthwise_conv_node("s", "c")
    nodes = [
        helper.make_node("Concat", ["state", "x"], ["buf"], axis=_TIME_AXIS),
        *_snake_nodes("s", "buf"),
        conv,
        *_snake_nodes("y", "c", "alpha_out", "inv_alpha_out", tag="snake_out"),
        *_state_slice_nodes("buf", "state", {"new_state": "new_state", "residual": "residual"}),
    ]
    return helper.make_function(
        SNAKE_DOMAIN,
        DEPTHWISE_SNAKE_STREAM_OP,
        inputs=["state", "x", "alpha", "inv_alpha", "weight", "bias", "alpha_out", "inv_alpha_out"],
        outputs=["y", "new_state", "residual"],
        nodes=nodes,
        opset_imports=[helper.make_opsetid("", SNAKE_FUNCTION_OPSET)],
        attributes=_DEPTHWISE_ATTRIBUTES,
    )


def snake_stream_function() -> onnx.FunctionProto:
    """``ai.snac_onnx.SnakeStream(state, x, alpha, inv_alpha) -> (y, new_state)``: ``y = [state, Snake(x)]`` in time
    and ``new_state = y[..., -S:]``, ``S`` the state's length: the input of an upsampler or of the last convolution."""
    nodes = [
        *_snake_nodes("s"),
        helper.make_node("Concat", ["state", "s"], ["y"], axis=_TIME_AXIS),
        *_state_slice_nodes("y", "state", {"new_state": "new_state"}),
    ]
    return helper.make_function(
        SNAKE_DOMAIN,
        SNAKE_STREAM_OP,
        inputs=["state", "x", "alpha", "inv_alpha"],
        outputs=["y", "new_state"],
        nodes=nodes,
        opset_imports=[helper.make_opsetid("", SNAKE_FUNCTION_OPSET)],
    )


def drop_unused_initializers(model: onnx.ModelProto) -> int:
    """Remove the initializers no node reads any more (e.g. the Slice bounds a fusion replaced); returns how many."""
    used = {name for node in _all_nodes(model.graph) for name in node.input}
    kept = [init for init in model.graph.initializer if init.name in used]
    dropped = len(model.graph.initializer) - len(kept)
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return dropped


def _constant_ints(name: str, inits: dict[str, onnx.TensorProto]) -> list[int] | None:
    tensor = inits.get(name)
    return [int(v) for v in onnx.numpy_helper.to_array(tensor).reshape(-1)] if tensor is not None else None


def _time_slice(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple[int, int] | None:
    """``(start, end)`` of a ``Slice`` along the time axis with constant bounds and step 1, else None."""
    if node.op_type != "Slice" or node.domain or len(node.input) < 4:
        return None
    starts, ends, axes = (_constant_ints(n, inits) for n in node.input[1:4])
    steps = _constant_ints(node.input[4], inits) if len(node.input) > 4 else [1]
    if starts is None or ends is None or axes not in ([_TIME_AXIS], [-1]) or steps != [1] or len(starts) != 1 or len(ends) != 1:
        return None
    return starts[0], ends[0]


def _state_length(graph: onnx.GraphProto, outer: onnx.GraphProto, name: str) -> int | None:
    """The fixed time length of the state input ``name`` (an input of ``graph`` or of the ``outer`` graph)."""
    for value in [*graph.input, *outer.input]:
        if value.name == name:
            dims = value.type.tensor_type.shape.dim
            return int(dims[_TIME_AXIS].dim_value) if len(dims) == 3 and dims[_TIME_AXIS].HasField("dim_value") else None
    return None


def _state_concat(node: onnx.NodeProto, graph: onnx.GraphProto, outer: onnx.GraphProto) -> int | None:
    """The state length ``S`` if ``node`` is ``Concat(state, x)`` in time with ``state`` a graph input, else None."""
    axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), None)
    if node.op_type != "Concat" or node.domain or len(node.input) != 2 or axis not in (_TIME_AXIS, -1):
        return None
    return _state_length(graph, outer, node.input[0])


def fuse_residual_stream(model: onnx.ModelProto, expected: int) -> int:
    """In the stream graph, merge each residual unit's ``buf = Concat(state, x)``, its ``SnakeDepthwiseConvSnake``
    over ``buf`` (no padding) and the two Slices of ``buf`` (the new state ``buf[..., -S:]`` and the residual
    ``buf[..., S/2:-S/2]``) into one ``SnakeDepthwiseConvSnakeStream``, which reads the state and ``x`` in place
    and writes the three outputs in one pass. Run after :func:`fuse_snake_depthwise_snake`, before
    ``export.steady.split_steady`` (both branches get it). Returns the number merged, which must be ``expected``."""
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    consumers = _consumers(graph)
    producer = {out: node for node in graph.node for out in node.output}
    replaced: dict[int, onnx.NodeProto] = {}
    removed: set[int] = set()
    for unit in [n for n in graph.node if n.domain == SNAKE_DOMAIN and n.op_type == DEPTHWISE_SNAKE_OP]:
        attrs = {a.name: helper.get_attribute_value(a) for a in unit.attribute}
        cat = producer.get(unit.input[0])
        held = _state_concat(cat, graph, graph) if cat is not None else None
        weight = inits.get(unit.input[3])
        if cat is None or held is None or attrs.get("padding") != 0 or weight is None or len(weight.dims) != 3:
            continue
        if held != int(attrs["dilation"]) * (int(weight.dims[2]) - 1) or held % 2:
            continue
        slices = {_time_slice(n, inits): n for n in consumers[cat.output[0]] if n is not unit}
        state, residual = slices.get((-held, _LAST)), slices.get((held // 2, -(held // 2)))
        if len(consumers[cat.output[0]]) != 3 or state is None or residual is None:
            continue
        fused = helper.make_node(
            DEPTHWISE_SNAKE_STREAM_OP,
            [*cat.input, *unit.input[1:]],
            [unit.output[0], state.output[0], residual.output[0]],
            name=f"{unit.name}_stream",
            domain=SNAKE_DOMAIN,
        )
        fused.attribute.extend(unit.attribute)
        replaced[id(unit)] = fused
        removed.update(id(n) for n in (cat, state, residual))
    if len(replaced) != expected:
        raise FusionError(f"found {len(replaced)} stream residual units, expected {expected}")
    _rewrite(model, replaced, removed, depthwise_snake_stream_function())
    return len(replaced)


def fuse_snake_stream(model: onnx.ModelProto, branch: onnx.GraphProto, expected: int) -> int:
    """In ``branch`` (the stream graph's steady branch, where no mask sits between a Snake and the state it is
    joined to), merge each ``Snake`` (possibly through an ``Identity``) whose output only goes into
    ``buf = Concat(state, .)``, and the Slice ``buf[..., -S:]`` giving the new state, into one ``SnakeStream``:
    the inputs of the upsamplers and of the last convolution. Returns the number merged (must be ``expected``)."""
    inits = {init.name: init for init in model.graph.initializer}
    consumers = _consumers(branch)
    producer = {out: node for node in branch.node for out in node.output}
    replaced: dict[int, onnx.NodeProto] = {}
    removed: set[int] = set()
    for cat in branch.node:
        held = _state_concat(cat, branch, model.graph)
        source = producer.get(cat.input[1]) if held is not None else None
        link = None
        if source is not None and source.op_type == "Identity" and not source.domain:
            link, source = source, producer.get(source.input[0])
        if held is None or source is None or source.domain != SNAKE_DOMAIN or source.op_type != SNAKE_OP:
            continue
        if len(consumers[source.output[0]]) != 1 or (link is not None and len(consumers[link.output[0]]) != 1):
            continue
        states = [n for n in consumers[cat.output[0]] if _time_slice(n, inits) == (-held, _LAST)]
        if len(states) != 1:
            continue
        fused = helper.make_node(
            SNAKE_STREAM_OP,
            [cat.input[0], *source.input],
            [cat.output[0], states[0].output[0]],
            name=f"{source.name}_stream",
            domain=SNAKE_DOMAIN,
        )
        replaced[id(cat)] = fused
        removed.update(id(n) for n in (source, states[0], *([link] if link is not None else [])))
    if len(replaced) != expected:
        raise FusionError(f"found {len(replaced)} stream Snake + state joins, expected {expected}")
    _rewrite(model, replaced, removed, snake_stream_function(), branch)
    return len(replaced)
