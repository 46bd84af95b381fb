"""torch.onnx.export (dynamo) of the encoder and decoder graphs with dynamic batch and time axes."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from snac import SNAC
from torch.export import Dim

from snac_onnx.manifest import AUDIO_NAME, ModelConfig, decoder_io, encoder_io

from .fuse import fuse_snake, fuse_snake_depthwise
from .graphs import EncoderGraph, ExportSnake, decoder_graph_with_named_inputs, prepare_for_export

OPSET = 18
MAX_BATCH = 4096
MAX_UNITS = 1_000_000


def _depthwise_residual_units(module: torch.nn.Module) -> int:
    """Residual units whose Snake feeds a depthwise convolution (SNAC's ``depthwise=True``)."""
    from snac.layers import ResidualUnit

    count = 0
    for unit in module.modules():
        if isinstance(unit, ResidualUnit):
            snake, conv = unit.block[0], unit.block[1]
            if isinstance(snake, ExportSnake) and isinstance(conv, torch.nn.Conv1d) and conv.groups == conv.in_channels > 1:
                count += 1
    return count


def _export(module: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], shapes) -> None:
    """torch.onnx.export to ``path``; then every Snake chain becomes one ``ai.snac_onnx.Snake`` node, and
    every Snake feeding a residual unit's depthwise Conv one ``ai.snac_onnx.SnakeDepthwiseConv`` (export.fuse)."""
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes=shapes,
            opset_version=OPSET,
            external_data=False,
            verbose=False,
        )
    program.save(str(path))
    model = onnx.load(str(path))
    fuse_snake(model, expected=sum(isinstance(m, ExportSnake) for m in module.modules()))
    fuse_snake_depthwise(model, expected=_depthwise_residual_units(module))
    onnx.save(model, str(path))


def export_graphs(model: SNAC, snac_config: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``encoder.onnx`` and ``decoder.onnx`` for ``model`` into ``out_dir``.

    Time axes are tied to one symbol each, so the graphs themselves say which
    lengths are valid: audio ``padding_unit * k`` samples; codes
    ``frames_multiple * k * s0 / s_i`` per codebook; noise likewise.
    """
    config = ModelConfig.from_json(snac_config)
    prepared = prepare_for_export(model, snac_config)
    batch = Dim("batch", min=1, max=MAX_BATCH)
    paths = {"encoder": out_dir / "encoder.onnx", "decoder": out_dir / "decoder.onnx"}

    enc_in, enc_out = encoder_io(config)
    units = Dim("units", min=1, max=MAX_UNITS)
    audio = torch.zeros(2, 1, config.padding_unit * 2)
    _export(
        EncoderGraph(prepared).eval(),
        (audio,),
        paths["encoder"],
        enc_in,
        enc_out,
        {AUDIO_NAME: {0: batch, 2: units * config.padding_unit}},
    )

    dec_in, dec_out = decoder_io(config)
    blocks = Dim("blocks", min=1, max=MAX_UNITS)
    frames = config.frames_multiple * 2
    code_lengths = config.code_lengths(config.frames_multiple)
    noise_lengths = config.noise_lengths(config.frames_multiple)
    args = [torch.zeros(2, n, dtype=torch.long) for n in config.code_lengths(frames)]
    args += [torch.zeros(2, 1, n) for n in config.noise_lengths(frames)]
    shapes: dict[str, dict[int, object]] = {}
    for name, length in zip(dec_in, code_lengths + noise_lengths):
        time_axis = 1 if name.startswith("codes_") else 2
        shapes[name] = {0: batch, time_axis: blocks * length}
    _export(
        decoder_graph_with_named_inputs(prepared, dec_in),
        tuple(args),
        paths["decoder"],
        dec_in,
        dec_out,
        shapes,
    )
    return paths
