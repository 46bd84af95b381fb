"""The graph contract: the names, dtypes and shapes every exported graph has, for the exporter and the runtime.

Graph input and output names are part of the contract; they are defined here,
once, for the exporter and the runtime alike:

* encoder: input ``audio`` float32 ``(batch, 1, samples)`` (samples a multiple
  of :attr:`ModelConfig.padding_unit`); outputs ``codes_0`` .. ``codes_{n-1}``
  int64 ``(batch, frames_i)``, coarse first.
* decoder: inputs ``codes_0`` .. ``codes_{n-1}`` int64 ``(batch, frames_i)``
  and, when the model has noise blocks, ``noise_0`` .. ``noise_{k-1}`` float32
  ``(batch, 1, steps_j)`` (see :meth:`ModelConfig.noise_lengths`); output
  ``audio`` float32 ``(batch, 1, samples)``.
* stream (optional, ``stream.onnx``; exports since the stateful stream): the decoder with explicit
  state, one call per step of :attr:`StreamSpec.step_frames` frames (or several whole steps).
  Inputs ``codes_i`` int64 ``(batch, steps * step_frames * codes_per_frame_i)``; ``noise_j``
  float32 ``(batch, 1, steps * step_frames * noise_per_frame_j)``; ``frame`` int64 ``(batch,)``,
  the call's first frame (frames before 0 are the left padding, their codes are ignored);
  ``state_0`` .. ``state_{m-1}`` float32 ``(batch, channels_k, length_k)`` (zeros at the start).
  Outputs ``audio`` float32 ``(batch, 1, steps * step_frames * samples_per_frame)``, the samples at
  ``frame * samples_per_frame - audio_lag + [0, n)``, and ``new_state_0`` .. ``new_state_{m-1}``.
  The manifest's ``graphs.stream`` holds the grid, the lags and the state layout.

Layouts. The graphs above are ``channels_first`` (the fp32 export, and the variants of exports before the
channels-last graphs). A ``channels_last`` variant (the manifest's ``variants.<precision>.layout``: ``int8`` and
``fp32-cl``) computes with ``(batch, time, channels)`` activations inside; its decoder and stream graphs have
exactly the names, dtypes and shapes above, except the stream graph's states: ``state_k`` and ``new_state_k``
are ``(batch, length_k, channels_k)`` (:meth:`StateSpec.shape`). Its grid, lags and state list are those of
``graphs.stream``.

:func:`check_graph` compares what a built session says of itself with the manifest's config.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ModelConfig
from ..errors import ModelFormatError

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = [
    "AUDIO_NAME",
    "CHANNELS_FIRST",
    "CHANNELS_LAST",
    "LAYOUTS",
    "FRAME_NAME",
    "END_NAME",
    "CONFIG_METADATA_KEY",
    "code_names",
    "noise_names",
    "encoder_io",
    "decoder_io",
    "stream_io",
    "StateSpec",
    "StreamSpec",
    "first_audio_frame",
    "check_graph",
]

FRAME_NAME = "frame"
END_NAME = "end"
AUDIO_NAME = "audio"
CONFIG_METADATA_KEY = "snac_onnx.config"  # the graph's own copy of the config (ONNX metadata_props), JSON
CHANNELS_FIRST = "channels_first"
CHANNELS_LAST = "channels_last"
LAYOUTS = (CHANNELS_FIRST, CHANNELS_LAST)


def code_names(num_codebooks: int) -> list[str]:
    """Names of the code tensors, coarse first: ``codes_0`` .. ``codes_{n-1}``."""
    return [f"codes_{i}" for i in range(num_codebooks)]


def noise_names(num_noise_blocks: int) -> list[str]:
    """Names of the decoder's noise inputs, one per NoiseBlock, in graph order."""
    return [f"noise_{j}" for j in range(num_noise_blocks)]


def encoder_io(config: ModelConfig) -> tuple[list[str], list[str]]:
    """(input names, output names) of the encoder graph."""
    return [AUDIO_NAME], code_names(config.num_codebooks)


def decoder_io(config: ModelConfig) -> tuple[list[str], list[str]]:
    """(input names, output names) of the decoder graph."""
    return code_names(config.num_codebooks) + noise_names(config.num_noise_blocks), [AUDIO_NAME]


def stream_io(config: ModelConfig, num_states: int) -> tuple[list[str], list[str]]:
    """(input names, output names) of the streaming decoder graph with ``num_states`` state tensors."""
    states = [f"state_{k}" for k in range(num_states)]
    inputs = code_names(config.num_codebooks) + noise_names(config.num_noise_blocks) + [FRAME_NAME, END_NAME, *states]
    return inputs, [AUDIO_NAME, *(f"new_{name}" for name in states)]


@dataclass(frozen=True)
class StateSpec:
    """One state tensor of the streaming graph: float32 ``(batch, channels, length)``.

    Attributes:
        layer: the decoder layer that owns it (the official module path, e.g. ``decoder.model.2.block.3``).
        kind: ``conv`` / ``residual_unit`` (the layer's last ``length`` inputs, its left context),
            ``upsampler`` (the last input of a transposed convolution) or ``attention`` (inputs
            waiting for their window to complete).
        rate: samples per coarse frame at the layer's input.
        lag: samples (at ``rate``) the layer's input runs behind the frames received.
    """

    layer: str
    kind: str
    channels: int
    length: int
    rate: int
    lag: int

    def shape(self, batch: int, layout: str = CHANNELS_FIRST) -> tuple[int, int, int]:
        """The tensor's shape in a graph of ``layout``: ``(batch, channels, length)``, or channels-last
        ``(batch, length, channels)``."""
        if layout == CHANNELS_LAST:
            return batch, self.length, self.channels
        return batch, self.channels, self.length


def first_audio_frame(first_frame: int, frames_per_call: int, audio_lag: int, samples_per_frame: int) -> int:
    """Frames that must have arrived before a stream's first sample is returned: the end of the first call,
    on the grid ``first_frame + k * frames_per_call``, whose audio (``audio_lag`` samples behind) reaches
    position 0."""
    end = first_frame + frames_per_call
    while end * samples_per_frame - audio_lag <= 0:
        end += frames_per_call
    return end


@dataclass(frozen=True)
class StreamSpec:
    """What ``graphs.stream`` in the manifest says of the streaming graph.

    Attributes:
        inputs, outputs: graph names (:func:`stream_io`).
        step_frames: coarse frames per step (1 without attention; one attention window with it).
        first_frame: the first step's first frame (<= 0): steps cover
            ``[first_frame + k * step_frames, ... + step_frames)``; chosen for the least latency.
        audio_lag: output samples the audio runs behind the frames received.
        noise_lags: per NoiseBlock, samples (at its rate) its input runs behind: a call starting at
            ``frame`` processes noise positions ``frame * noise_per_frame_j - noise_lags[j] + [0, n)``.
        states: the state tensors, in input order.
    """

    inputs: list[str]
    outputs: list[str]
    step_frames: int
    first_frame: int
    audio_lag: int
    noise_lags: list[int]
    states: list[StateSpec]

    @classmethod
    def from_json(cls, raw: dict[str, Any], config: ModelConfig) -> StreamSpec:
        """Parse and check ``graphs.stream`` (KeyError, TypeError or ModelFormatError on a bad entry)."""
        states = [StateSpec(**{k: state[k] for k in StateSpec.__dataclass_fields__}) for state in raw["states"]]
        spec = cls(
            inputs=list(raw["inputs"]),
            outputs=list(raw["outputs"]),
            step_frames=int(raw["step_frames"]),
            first_frame=int(raw["first_frame"]),
            audio_lag=int(raw["audio_lag"]),
            noise_lags=[int(v) for v in raw["noise_lags"]],
            states=states,
        )
        ints = [spec.step_frames, -spec.first_frame, spec.audio_lag, *spec.noise_lags]
        ints += [v for s in states for v in (s.channels, s.length, s.rate, s.lag)]
        if spec.step_frames < 1 or min(ints) < 0 or any(isinstance(v, bool) for v in ints):
            raise ModelFormatError("negative or zero sizes in graphs.stream")
        if spec.step_frames % config.frames_multiple or len(spec.noise_lags) != config.num_noise_blocks:
            raise ModelFormatError("graphs.stream does not fit the config (step or noise blocks)")
        if (spec.inputs, spec.outputs) != tuple(stream_io(config, len(states))):
            raise ModelFormatError(f"stream names {spec.inputs} -> {spec.outputs} differ from the contract")
        return spec


_SCALED_DIM = re.compile(r"(?:(\d+)\*)?([A-Za-z_]\w*)")


def _time_dim(dim: object) -> tuple[int, str] | None:
    """A graph's symbolic time axis ``"k*symbol"`` (or ``"symbol"``) as ``(k, symbol)``; None otherwise."""
    match = _SCALED_DIM.fullmatch(dim) if isinstance(dim, str) else None
    return None if match is None else (int(match[1] or 1), match[2])


def check_graph(
    session: ort.InferenceSession, role: str, config: ModelConfig, path: Path, step_frames: int | None = None
) -> None:
    """Check the manifest's ``config`` against what the graph itself says (the graph's sha256 is checked; the
    manifest is not): the config the exporter stored in the graph's metadata, when it did, and the time axes
    of its inputs and outputs (audio in whole padding units; code and noise lengths in the config's ratios).

    ``step_frames``: for the stream graph, frames per step (its time axes come in whole steps).

    Raises:
        ModelFormatError: they disagree (the manifest was edited, or belongs to another export).
    """

    def fail(what: str) -> str:
        return (
            f"{str(path)!r} disagrees with its manifest: {what}. The manifest was edited or comes from another "
            "export; re-export or re-download the model"
        )

    stored = session.get_modelmeta().custom_metadata_map.get(CONFIG_METADATA_KEY)
    if stored is not None:
        try:
            graph_config = json.loads(stored)
        except json.JSONDecodeError as exc:
            raise ModelFormatError(fail(f"its stored config is not JSON ({exc})")) from exc
        manifest_config = config.to_json()
        if graph_config != manifest_config:
            diff = sorted(k for k in {*graph_config, *manifest_config} if graph_config.get(k) != manifest_config.get(k))
            what = ", ".join(f"{k}: graph {graph_config.get(k)!r}, manifest {manifest_config.get(k)!r}" for k in diff)
            raise ModelFormatError(fail(f"config {what}"))
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    expected: dict[str, int]  # tensor -> elements along time per (symbolic) step
    if role == "encoder":
        audio = _time_dim(inputs[AUDIO_NAME].shape[2])
        if audio is not None and audio[0] != config.padding_unit:
            raise ModelFormatError(
                fail(f"its audio input comes in units of {audio[0]} samples, the config says {config.padding_unit}")
            )
        expected = dict(zip(encoder_io(config)[1], config.codes_per_frame, strict=True))
        axes = {name: _time_dim(outputs[name].shape[1]) for name in expected}
    else:
        names = decoder_io(config)[0]
        frames = step_frames if role == "stream" and step_frames is not None else config.frames_multiple
        lengths = config.code_lengths(frames) + config.noise_lengths(frames)
        expected = dict(zip(names, lengths, strict=True))
        axes = {name: _time_dim(inputs[name].shape[-1]) for name in names}
    known = [(name, axis) for name, axis in axes.items() if axis is not None]
    if not known or len({symbol for _, (_, symbol) in known}) > 1:
        return  # time axes not tied to one symbol: nothing to compare
    first, (k_first, _) = known[0]
    for name, (k, _) in known:
        # proportional to the config's lengths (the encoder's symbol counts frames times its own unit)
        if k * expected[first] != k_first * expected[name]:
            raise ModelFormatError(
                fail(
                    f"{name} has {k} steps per {k_first} of {first}, the config implies {expected[name]} per "
                    f"{expected[first]}"
                )
            )
    if role != "encoder" and k_first != expected[first]:
        raise ModelFormatError(fail(f"{first} comes in blocks of {k_first}, the config implies {expected[first]}"))
