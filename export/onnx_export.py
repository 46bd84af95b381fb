"""torch.onnx.export (dynamo) of the encoder and decoder graphs with dynamic batch and time axes."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from snac import SNAC
from snac.layers import NoiseBlock
from torch.export import Dim

from snac_onnx.config import ModelConfig
from snac_onnx.model.contract import AUDIO_NAME, CONFIG_METADATA_KEY, decoder_io, encoder_io, noise_names, stream_io
from snac_onnx.model.manifest import STREAM_FILE

from .fuse import (
    drop_unused_initializers,
    fuse_interleave,
    fuse_residual_stream,
    fuse_snake,
    fuse_snake_depthwise,
    fuse_snake_depthwise_snake,
    fuse_snake_stream,
)
from .graphs import (
    EncoderGraph,
    ExportSnake,
    PolyphaseConvTranspose1d,
    decoder_graph_with_named_inputs,
    prepare_for_export,
)
from .noise_gate import gate_model_noise
from .steady import split_steady, steady_branch
from .stream_graph import _Conv, _Noise, _Residual, _Upsample, streaming_decoder_with_named_inputs

OPSET = 18
MAX_BATCH = 4096
MAX_UNITS = 1_000_000


def _is_snake(module: torch.nn.Module) -> bool:
    return isinstance(module, ExportSnake)


def _is_upsampler(module: torch.nn.Module) -> bool:
    if isinstance(module, PolyphaseConvTranspose1d) and module.output_padding != module.stride % 2:
        raise NotImplementedError("PolyphaseInterleave assumes output_padding == stride % 2, as in SNAC's DecoderBlock")
    return isinstance(module, PolyphaseConvTranspose1d)


def _is_depthwise_unit(module: torch.nn.Module) -> bool:
    """A residual unit whose Snake feeds a depthwise convolution (SNAC's ``depthwise=True``)."""
    from snac.layers import ResidualUnit

    if not isinstance(module, ResidualUnit):
        return False
    snake, conv = module.block[0], module.block[1]
    return isinstance(snake, ExportSnake) and isinstance(conv, torch.nn.Conv1d) and conv.groups == conv.in_channels > 1


def _fusion_counts(count: Callable[[Callable[[torch.nn.Module], bool]], int]) -> tuple[int, int, int]:
    """What each fusion pass of :func:`_export` must find, from ``count(kind)``: modules the traced graph runs."""
    return count(_is_snake), count(_is_depthwise_unit), count(_is_upsampler)


def trace(
    module: torch.nn.Module,
    args: tuple[Any, ...],
    inputs: list[str],
    outputs: list[str],
    shapes: Any,
    translations: dict[Any, Any] | None = None,
) -> Any:
    """``module`` traced by torch.onnx's dynamo exporter at :data:`OPSET` (its warnings silenced): the
    ``torch.onnx.ONNXProgram``. ``translations``: its ``custom_translation_table`` (ops of our own domain)."""
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
            custom_translation_table=translations,
        )
    assert program is not None  # dynamo=True always returns a program
    return program


def _export(
    module: torch.nn.Module,
    args: tuple[Any, ...],
    path: Path,
    inputs: list[str],
    outputs: list[str],
    shapes: Any,
    counts: tuple[int, int, int],
    config: ModelConfig,
    steady: dict[str, Any] | None = None,
    noise_blocks: int = 0,
) -> None:
    """torch.onnx.export to ``path``; then every Snake chain becomes one ``ai.snac_onnx.Snake`` node, and
    every residual unit's Snake, depthwise Conv and Snake one ``ai.snac_onnx.SnakeDepthwiseConvSnake`` (export.fuse).

    ``counts``: the Snakes, the depthwise residual units and the polyphase upsamplers the traced graph runs
    (each fusion must find exactly these). The graph keeps its own copy of ``config`` in its metadata
    (``snac_onnx.config``), so the runtime can tell an edited manifest from the graph it describes. Per-node
    debug metadata is dropped, so the same checkpoint always gives byte-identical graphs.
    """
    import onnx

    trace(module, args, inputs, outputs, shapes).save(str(path))
    model = onnx.load(str(path))
    fuse_snake(model, expected=counts[0])
    fuse_snake_depthwise(model, expected=counts[1])
    fuse_snake_depthwise_snake(model, expected=counts[1])  # each depthwise unit's second Snake
    fuse_interleave(model, expected=counts[2])
    if steady is not None:  # the stream graph: its residual units read their state in place
        fuse_residual_stream(model, expected=counts[1])
    for nodes in [model.graph.node, *(function.node for function in model.functions)]:
        for node in nodes:  # torch's per-node debug notes hold memory addresses: they made exports differ
            del node.metadata_props[:]
    if steady is not None:  # the stream graph's mask-free branch; after the notes are gone (it copies the nodes)
        joins = steady.pop("snake_joins")
        split_steady(model, **steady)
        fuse_snake_stream(model, steady_branch(model), expected=joins)
    if noise_blocks:  # each NoiseBlock skips its convolution when its noise is zeros (noise off)
        gate_model_noise(model, noise_names(config.num_noise_blocks), expected=noise_blocks)
        onnx.checker.check_model(model)
    drop_unused_initializers(model)
    entry = model.metadata_props.add()
    entry.key, entry.value = CONFIG_METADATA_KEY, json.dumps(config.to_json(), sort_keys=True)
    onnx.save(model, str(path))


def export_graphs(model: SNAC, snac_config: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Write ``encoder.onnx``, ``decoder.onnx`` and ``stream.onnx`` for ``model`` into ``out_dir``.

    Returns what the manifest records of them: ``{"decoder": {"tail_tiles": n, "tail_halo": h}}`` (see
    :class:`export.graphs.DecoderGraph`) and ``{"stream": ...}`` (:func:`export_stream_graph`).

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
    encoder = EncoderGraph(prepared).eval()
    _export(
        encoder,
        (audio,),
        paths["encoder"],
        enc_in,
        enc_out,
        {AUDIO_NAME: {0: batch, 2: units * config.padding_unit}},
        _fusion_counts(lambda kind: sum(map(kind, encoder.modules()))),
        config,
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
    decoder = decoder_graph_with_named_inputs(prepared, dec_in)
    shortest = config.frames_multiple * config.hop_length * config.vq_strides[0] // decoder.tail_factor
    if decoder.tiles > 1 and shortest // decoder.tiles < decoder.halo:  # a tile must reach past its halo
        raise NotImplementedError(
            f"the decoder tail's {decoder.tiles} tiles of the shortest input ({shortest} steps) are shorter than "
            f"their halo ({decoder.halo}); this config needs fewer tail blocks or tiles"
        )
    _export(
        decoder,
        tuple(args),
        paths["decoder"],
        dec_in,
        dec_out,
        shapes,
        _fusion_counts(decoder.count),
        config,
        noise_blocks=decoder.count(lambda m: isinstance(m, NoiseBlock)),
    )
    tiling = {"tail_tiles": decoder.tiles, "tail_halo": decoder.halo if decoder.tiles > 1 else 0}
    return {"decoder": tiling, "stream": export_stream_graph(prepared, config, out_dir / STREAM_FILE)}


def _is_depthwise_residual(module: torch.nn.Module) -> bool:
    return isinstance(module, _Residual) and module.conv.groups == module.conv.in_channels > 1


def export_stream_graph(prepared: SNAC, config: ModelConfig, path: Path) -> dict[str, Any]:
    """Write the stateful streaming decoder (:mod:`export.stream_graph`) to ``path``; returns its manifest
    entry: the step grid, the audio and noise lags and the state layout (see :func:`snac_onnx.model.manifest.StreamSpec`).

    The time axis is ``steps`` whole steps of ``step_frames`` frames (one step per call when streaming; more
    when frames are waiting); states have a fixed shape per batch row.
    """
    probe = streaming_decoder_with_named_inputs(prepared, [])
    states = [s.__dict__ for s in probe.states]
    inputs, outputs = stream_io(config, len(states))
    graph = streaming_decoder_with_named_inputs(prepared, inputs)
    batch = Dim("batch", min=1, max=MAX_BATCH)
    steps = Dim("steps", min=1, max=MAX_UNITS)
    per_step = [graph.step_frames * n for n in config.codes_per_frame]
    noise_per_step = [graph.step_frames * n for n in config.noise_per_frame]
    args: list[torch.Tensor] = [torch.zeros(2, 2 * n, dtype=torch.long) for n in per_step]
    args += [torch.zeros(2, 1, 2 * n) for n in noise_per_step]
    args.append(torch.tensor([graph.first_frame, graph.first_frame + graph.step_frames]))
    args.append(torch.tensor([1 << 40, 5]))
    args += graph.initial_states(2)
    shapes: dict[str, dict[int, object]] = {}
    names = iter(inputs)
    for n in per_step:
        shapes[next(names)] = {0: batch, 1: steps * n}
    for n in noise_per_step:
        shapes[next(names)] = {0: batch, 2: steps * n}
    shapes[next(names)] = {0: batch}  # frame
    shapes[next(names)] = {0: batch}  # end
    for name in names:
        shapes[name] = {0: batch}

    def count(kind: Callable[[torch.nn.Module], bool]) -> int:
        return sum(map(kind, graph.modules()))

    counts = (count(_is_snake), count(_is_depthwise_residual), count(_is_upsampler))
    masked = [op for op in graph.ops if isinstance(op, (_Conv, _Residual, _Upsample))]
    after_snake = [
        op for prev, op in zip(graph.ops, graph.ops[1:]) if op.state_length and isinstance(getattr(prev, "module", None), ExportSnake)
    ]
    steady = {
        "snake_joins": len(after_snake),  # layers whose state joins a Snake's output (fuse_snake_stream)
        "expected": len(masked),
        "safe_frame": max(-(-op.lag // op.rate) for op in masked),
        "codes_name": inputs[0],
        "codes_per_frame": config.codes_per_frame[0],
    }
    noise_blocks = sum(isinstance(op, _Noise) for op in graph.ops)
    _export(graph, tuple(args), path, inputs, outputs, shapes, counts, config, steady, noise_blocks)
    return {
        "step_frames": graph.step_frames,
        "first_frame": graph.first_frame,
        "audio_lag": graph.audio_lag,
        "noise_lags": [lag for _, lag in graph.noise_lags],
        "states": states,
    }
