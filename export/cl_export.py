"""Write the channels-last decoder and stream graphs (fp32, and int8 through :mod:`export.passes`).

Both graphs keep the contract of the channels-first ones (:mod:`snac_onnx.model.contract`): the same input and
output names and shapes, the same tail tiles, step grid, lags and states, except that the stream graph's states are
``(batch, length, channels)``. Each is traced once by torch.onnx (:mod:`export.channels_last`); the int8 graph is
that trace after the int8 passes. Then, as for the channels-first graphs: the stream graph's ``If`` whose steady
branch has no padding masks (:mod:`export.steady`), every NoiseBlock gated (:mod:`export.noise_gate`), the
operators' function bodies, unused parts dropped, the config in the metadata. Deterministic: the same prepared
model gives the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir
import torch
from snac.layers import NoiseBlock
from torch.export import Dim

from snac_onnx.config import ModelConfig
from snac_onnx.model.contract import CONFIG_METADATA_KEY, decoder_io, noise_names, stream_io

from .channels_last import decoder_cl_with_named_inputs, stream_cl_with_named_inputs, translation_table
from .noise_gate import gate_model_noise
from .onnx_export import trace
from .passes.cleanup import cleanup, clear_node_metadata
from .passes.functions import attach_functions
from .passes.fuse_dequantize_add import fuse_dequantize_add
from .passes.fuse_quantize import fuse_quantize
from .passes.quantize_dense import WEIGHT_LEVELS, quantize_dense
from .steady import split_steady
from .stream_graph import _Conv, _Noise, _Residual, _Upsample

MAX_BATCH = 4096
MAX_UNITS = 1_000_000
CL_PRECISIONS = ("fp32-cl", "int8")
LAYOUT = "channels_last"


def _trace(module: torch.nn.Module, args: tuple[Any, ...], inputs: list[str], outputs: list[str], shapes: Any) -> ir.Model:
    program = trace(module, args, inputs, outputs, shapes, translations=translation_table())
    model = ir.serde.deserialize_model(program.model_proto)
    clear_node_metadata(model)
    return model


def int8_passes(model: ir.Model, levels: int = WEIGHT_LEVELS) -> dict[str, int]:
    """The int8 rewrite of a traced fp32 channels-last graph, in place; returns what each pass changed."""
    return {
        "dense_layers": quantize_dense(model, levels),
        "fused_quantize": fuse_quantize(model),
        "fused_residual_adds": fuse_dequantize_add(model),
    }


def _finish(
    model: ir.Model, config: ModelConfig, noise_blocks: int, steady: dict[str, Any] | None = None
) -> onnx.ModelProto:
    """The steady split (stream graph), the noise gates, the function bodies, cleanup and the config metadata."""
    proto = ir.serde.serialize_model(model)
    if steady is not None:
        split_steady(proto, **steady)
    if noise_blocks:
        gate_model_noise(proto, noise_names(config.num_noise_blocks), expected=noise_blocks)
    attach_functions(proto)
    proto = cleanup(proto)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = CONFIG_METADATA_KEY, json.dumps(config.to_json(), sort_keys=True)
    onnx.checker.check_model(proto)
    return proto


def trace_decoder(prepared: torch.nn.Module, config: ModelConfig) -> tuple[ir.Model, int]:
    """The fp32 channels-last decoder, traced; and its NoiseBlocks as the graph runs them (tail ones per tile)."""
    dec_in, dec_out = decoder_io(config)
    batch = Dim("batch", min=1, max=MAX_BATCH)
    blocks = Dim("blocks", min=1, max=MAX_UNITS)
    frames = config.frames_multiple * 2
    args: list[torch.Tensor] = [torch.zeros(2, n, dtype=torch.long) for n in config.code_lengths(frames)]
    args += [torch.zeros(2, 1, n) for n in config.noise_lengths(frames)]
    lengths = config.code_lengths(config.frames_multiple) + config.noise_lengths(config.frames_multiple)
    shapes = {
        name: {0: batch, (1 if name.startswith("codes_") else 2): blocks * length} for name, length in zip(dec_in, lengths)
    }
    graph = decoder_cl_with_named_inputs(prepared, dec_in)
    return _trace(graph, tuple(args), dec_in, dec_out, shapes), graph.count(lambda m: isinstance(m, NoiseBlock))


def trace_stream(prepared: torch.nn.Module, config: ModelConfig) -> tuple[ir.Model, int, dict[str, Any]]:
    """The fp32 channels-last stream graph, traced; its NoiseBlocks; and :func:`export.steady.split_steady`'s arguments."""
    probe = stream_cl_with_named_inputs(prepared, [])
    inputs, outputs = stream_io(config, len(probe.states))
    graph = stream_cl_with_named_inputs(prepared, inputs)
    batch = Dim("batch", min=1, max=MAX_BATCH)
    steps = Dim("steps", min=1, max=MAX_UNITS)
    per_step = [graph.step_frames * n for n in config.codes_per_frame]
    noise_per_step = [graph.step_frames * n for n in config.noise_per_frame]
    args: list[torch.Tensor] = [torch.zeros(2, 2 * n, dtype=torch.long) for n in per_step]
    args += [torch.zeros(2, 1, 2 * n) for n in noise_per_step]
    args.append(torch.tensor([graph.first_frame, graph.first_frame + graph.step_frames]))
    args.append(torch.tensor([1 << 40, 5]))
    args += graph.initial_states(2)
    names = iter(inputs)
    shapes: dict[str, dict[int, Any]] = {}
    for n in per_step:
        shapes[next(names)] = {0: batch, 1: steps * n}
    for n in noise_per_step:
        shapes[next(names)] = {0: batch, 2: steps * n}
    shapes[next(names)] = {0: batch}
    shapes[next(names)] = {0: batch}
    for name in names:
        shapes[name] = {0: batch}
    masked = [op for op in graph.ops if isinstance(op, (_Conv, _Residual, _Upsample))]
    steady = {
        "expected": len(masked),
        "safe_frame": max(-(-op.lag // op.rate) for op in masked),
        "codes_name": inputs[0],
        "codes_per_frame": config.codes_per_frame[0],
    }
    noise_blocks = sum(isinstance(op, _Noise) for op in graph.ops)
    return _trace(graph, tuple(args), inputs, outputs, shapes), noise_blocks, steady


def _copy(model: ir.Model) -> ir.Model:
    return ir.serde.deserialize_model(ir.serde.serialize_model(model))


def write_channels_last(
    prepared: torch.nn.Module, config: ModelConfig, folder: Path, precisions: tuple[str, ...], levels: int = WEIGHT_LEVELS
) -> dict[str, dict[str, Any]]:
    """Write ``decoder.<precision>.onnx`` and ``stream.<precision>.onnx`` for each of ``precisions`` (``fp32-cl``,
    ``int8``) into ``folder``; returns per precision what the manifest's ``variants`` entry needs besides the file
    entries: ``{"layout": "channels_last", "roles": {role: path}, "passes": {...}}``."""
    out: dict[str, dict[str, Any]] = {}
    decoder, decoder_noise = trace_decoder(prepared, config)
    stream, stream_noise, steady = trace_stream(prepared, config)
    traced: dict[str, tuple[ir.Model, int, dict[str, Any] | None]] = {
        "decoder": (decoder, decoder_noise, None),
        "stream": (stream, stream_noise, steady),
    }
    for precision in precisions:
        if precision not in CL_PRECISIONS:
            raise ValueError(f"channels-last precisions are {CL_PRECISIONS}, got {precision!r}")
        roles, passes = {}, {}
        for role, (model, noise_blocks, split) in traced.items():
            graph = _copy(model)
            if precision == "int8":
                passes[role] = int8_passes(graph, levels)
            proto = _finish(graph, config, noise_blocks, split)
            path = folder / f"{role}.{precision}.onnx"
            onnx.save(proto, str(path))
            roles[role] = path.name
        out[precision] = {"layout": LAYOUT, "roles": roles, **({"passes": passes} if passes else {})}
    return out
