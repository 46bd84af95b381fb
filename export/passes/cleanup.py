"""Drop what no output needs (nodes, initializers, functions, opsets) and torch's per-node debug notes
(they hold memory addresses, which made exports differ); onnx_ir's common passes."""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnx_ir.passes import common


def clear_node_metadata(model: ir.Model) -> None:
    """Remove every node's ``metadata_props`` (graphs, subgraphs and functions); the model's own are kept."""
    graphs: list[ir.Graph | ir.Function] = [model.graph, *model.functions.values()]
    for graph_like in graphs:
        for node in ir.traversal.RecursiveGraphIterator(graph_like):
            node.metadata_props.clear()


def cleanup(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` without unused nodes, initializers, functions and opset imports (a new proto)."""
    ir_model = ir.serde.deserialize_model(model)
    steps = [common.RemoveUnusedNodesPass(), common.RemoveUnusedFunctionsPass(), common.RemoveUnusedOpsetsPass()]  # type: ignore[no-untyped-call]
    for step in steps:
        step(ir_model)
    return ir.serde.serialize_model(ir_model)
