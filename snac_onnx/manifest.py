"""The manifest that sits beside every exported model, and the graph contract.

An exported model is a folder holding ``encoder.onnx``, ``decoder.onnx`` and
``manifest.json``. The manifest records the model configuration, where the
weights came from, the sha256 of each file, the graphs' input and output names
and the parity measured at export. The runtime reads its configuration from
the manifest only; it never needs torch or the original checkpoint.

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
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ModelConfig
from .errors import ModelFormatError, ModelNotFoundError

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "ENCODER_FILE",
    "DECODER_FILE",
    "AUDIO_NAME",
    "CONFIG_METADATA_KEY",
    "Manifest",
    "code_names",
    "noise_names",
    "encoder_io",
    "decoder_io",
    "stream_io",
    "StreamSpec",
    "StateSpec",
    "first_audio_frame",
    "STREAM_FILE",
    "FRAME_NAME",
    "END_NAME",
    "load_manifest",
    "sha256_file",
]

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
STREAM_FILE = "stream.onnx"
FRAME_NAME = "frame"
END_NAME = "end"
AUDIO_NAME = "audio"
CONFIG_METADATA_KEY = "snac_onnx.config"  # the graph's own copy of the config (ONNX metadata_props), JSON

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Manifest:
    """A parsed ``manifest.json``; ``folder`` is where the graph files lie."""

    folder: Path
    name: str
    config: ModelConfig
    files: dict[str, dict[str, Any]]
    graphs: dict[str, dict[str, list[str]]]
    random_init: bool
    raw: dict[str, Any]
    variants: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    stream: StreamSpec | None = None

    @property
    def model_id(self) -> str:
        """Hex sha256 of what decides the audio: the config and the fp32 graphs' sha256 (not the export's time).

        Two exports of the same checkpoint share it; codes files and corpus rows record it.
        """
        decisive = {
            "config": self.config.to_json(),
            "graphs": {role: str(self.files[role]["sha256"]) for role in ("encoder", "decoder")},
        }
        return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()

    @property
    def precisions(self) -> list[str]:
        """Precisions this export holds: ``fp32`` and any variants (``int8``, ``fp16``)."""
        return ["fp32", *self.variants]

    @property
    def decoder_tail_tiles(self) -> int:
        """Time tiles the decoder graph runs its high-rate tail in (1: untiled, as exports before tiling)."""
        tiles = self.raw["graphs"]["decoder"].get("tail_tiles", 1)
        if isinstance(tiles, bool) or not isinstance(tiles, int) or tiles < 1:
            raise ModelFormatError(f"manifest graphs.decoder.tail_tiles must be an int >= 1, got {tiles!r}")
        return tiles

    def file_entry(self, role: str, precision: str = "fp32") -> dict[str, Any]:
        """The manifest entry (path, sha256, bytes) of ``role``'s graph at ``precision`` (stream: fp32 only)."""
        if precision == "fp32" or role == "stream":
            return self.files[role]
        if precision not in self.variants:
            raise ModelNotFoundError(
                f"precision {precision!r} is not in this export; it has {self.precisions}. "
                f"Export it with 'python -m export ... --precision {precision}'"
            )
        return self.variants[precision][role]

    def file_path(self, role: str, precision: str = "fp32") -> Path:
        """Path of the graph file for ``role`` (``"encoder"`` or ``"decoder"``)."""
        return self.folder / str(self.file_entry(role, precision)["path"])


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(folder: str | Path) -> Manifest:
    """Read and check ``folder/manifest.json``.

    Raises:
        ModelNotFoundError: the folder or its manifest does not exist.
        ModelFormatError: the manifest is not JSON, of another format version,
            or lacks a field; or its graph names differ from the contract.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelNotFoundError(
            f"model folder {str(folder)!r} does not exist; export one with "
            "'python -m export ...' or pass the folder that holds manifest.json"
        )
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{str(path)!r} is missing; {str(folder)!r} is not an exported snac_onnx model")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{str(path)!r} is not valid JSON ({exc}); re-export or re-download the model") from exc
    if not isinstance(raw, dict):
        raise ModelFormatError(f"{str(path)!r} must hold a JSON object")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFormatError(
            f"{str(path)!r} has format_version {version!r}; this snac_onnx reads version {FORMAT_VERSION}. "
            "Re-export the model with this version or install the snac_onnx that wrote it"
        )
    try:
        config = ModelConfig.from_json(raw["config"])
        files = {role: dict(raw["files"][role]) for role in ("encoder", "decoder")}
        graphs = {
            role: {"inputs": list(raw["graphs"][role]["inputs"]), "outputs": list(raw["graphs"][role]["outputs"])}
            for role in ("encoder", "decoder")
        }
        variants = {
            str(p): {role: dict(v[role]) for role in ("encoder", "decoder")} for p, v in raw.get("variants", {}).items()
        }
        for entry in [*files.values(), *(e for v in variants.values() for e in v.values())]:
            entry["path"], entry["sha256"]
        name = str(raw["name"])
    except (KeyError, TypeError) as exc:
        raise ModelFormatError(f"{str(path)!r} lacks a required field: {exc!r}; re-export the model") from exc
    stream = None
    if "stream" in raw["files"]:  # exports before the stateful stream have none
        try:
            files["stream"] = dict(raw["files"]["stream"])
            files["stream"]["path"], files["stream"]["sha256"]
            stream = StreamSpec.from_json(raw["graphs"]["stream"], config)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{str(path)!r}: bad stream graph entry ({exc!r}); re-export the model") from exc
    for role, expected in (("encoder", encoder_io(config)), ("decoder", decoder_io(config))):
        got = (graphs[role]["inputs"], graphs[role]["outputs"])
        if got != expected:
            raise ModelFormatError(
                f"{str(path)!r}: {role} names {got} differ from the contract {expected} for this config"
            )
    manifest = Manifest(
        folder=folder,
        name=name,
        config=config,
        files=files,
        graphs=graphs,
        random_init=bool(raw.get("random_init", False)),
        raw=raw,
        variants=variants,
        stream=stream,
    )
    manifest.decoder_tail_tiles  # noqa: B018 - checked here, so a bad value fails at load
    return manifest
