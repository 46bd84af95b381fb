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
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ModelFormatError, ModelNotFoundError

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "ENCODER_FILE",
    "DECODER_FILE",
    "AUDIO_NAME",
    "ModelConfig",
    "Manifest",
    "code_names",
    "noise_names",
    "encoder_io",
    "decoder_io",
    "load_manifest",
    "sha256_file",
]

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
AUDIO_NAME = "audio"


def code_names(num_codebooks: int) -> list[str]:
    """Names of the code tensors, coarse first: ``codes_0`` .. ``codes_{n-1}``."""
    return [f"codes_{i}" for i in range(num_codebooks)]


def noise_names(num_noise_blocks: int) -> list[str]:
    """Names of the decoder's noise inputs, one per NoiseBlock, in graph order."""
    return [f"noise_{j}" for j in range(num_noise_blocks)]


@dataclass(frozen=True)
class ModelConfig:
    """The parts of a SNAC configuration the runtime needs.

    Attributes:
        sample_rate: audio sample rate in Hz.
        encoder_rates: strides of the encoder blocks; their product is the hop.
        decoder_rates: strides of the decoder blocks, in order.
        vq_strides: temporal stride of each codebook, coarse first.
        codebook_size: number of entries per codebook; codes lie in ``[0, size)``.
        codebook_dim: dimension of each codebook entry.
        attn_window_size: local attention window in latent steps, or None.
        noise: whether the decoder has NoiseBlocks (and so noise inputs).
    """

    sample_rate: int
    encoder_rates: tuple[int, ...]
    decoder_rates: tuple[int, ...]
    vq_strides: tuple[int, ...]
    codebook_size: int
    codebook_dim: int
    attn_window_size: int | None
    noise: bool

    @property
    def hop_length(self) -> int:
        """Audio samples per latent step (the finest codebook's frame)."""
        return math.prod(self.encoder_rates)

    @property
    def num_codebooks(self) -> int:
        return len(self.vq_strides)

    @property
    def latent_multiple(self) -> int:
        """Latent steps must be a multiple of this (coarsest stride and attention window)."""
        return math.lcm(self.vq_strides[0], self.attn_window_size or 1)

    @property
    def padding_unit(self) -> int:
        """Audio is right-padded to a multiple of this many samples, as SNAC's ``preprocess``."""
        return self.hop_length * self.latent_multiple

    @property
    def frames_multiple(self) -> int:
        """The coarse code count must be a multiple of this (1 without attention)."""
        return self.latent_multiple // self.vq_strides[0]

    @property
    def num_noise_blocks(self) -> int:
        return len(self.decoder_rates) if self.noise else 0

    def code_lengths(self, coarse_frames: int) -> list[int]:
        """Per-codebook lengths for ``coarse_frames`` frames of the coarsest codebook."""
        top = self.vq_strides[0]
        return [coarse_frames * top // s for s in self.vq_strides]

    def noise_lengths(self, coarse_frames: int) -> list[int]:
        """Time length of each decoder noise input for ``coarse_frames`` coarse frames."""
        if not self.noise:
            return []
        steps = coarse_frames * self.vq_strides[0]
        lengths = []
        for rate in self.decoder_rates:
            steps *= rate
            lengths.append(steps)
        return lengths

    def to_json(self) -> dict[str, Any]:
        return {
            "sampling_rate": self.sample_rate,
            "encoder_rates": list(self.encoder_rates),
            "decoder_rates": list(self.decoder_rates),
            "vq_strides": list(self.vq_strides),
            "codebook_size": self.codebook_size,
            "codebook_dim": self.codebook_dim,
            "attn_window_size": self.attn_window_size,
            "noise": self.noise,
            "hop_length": self.hop_length,
            "padding_unit": self.padding_unit,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ModelConfig":
        """Build from a manifest's ``config`` (or an official SNAC ``config.json``)."""
        try:
            window = data.get("attn_window_size")
            cfg = cls(
                sample_rate=int(data["sampling_rate"]),
                encoder_rates=tuple(int(r) for r in data["encoder_rates"]),
                decoder_rates=tuple(int(r) for r in data["decoder_rates"]),
                vq_strides=tuple(int(s) for s in data["vq_strides"]),
                codebook_size=int(data["codebook_size"]),
                codebook_dim=int(data.get("codebook_dim", 8)),
                attn_window_size=None if window is None else int(window),
                noise=bool(data.get("noise", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"model config is incomplete or malformed: {exc!r}") from exc
        strides = cfg.vq_strides
        if not strides or any(s <= 0 for s in strides) or any(strides[0] % s for s in strides):
            raise ModelFormatError(f"vq_strides {list(strides)} must be positive divisors of the first")
        if "hop_length" in data and int(data["hop_length"]) != cfg.hop_length:
            raise ModelFormatError(
                f"config hop_length {data['hop_length']} differs from prod(encoder_rates) = {cfg.hop_length}"
            )
        return cfg


def encoder_io(config: ModelConfig) -> tuple[list[str], list[str]]:
    """(input names, output names) of the encoder graph."""
    return [AUDIO_NAME], code_names(config.num_codebooks)


def decoder_io(config: ModelConfig) -> tuple[list[str], list[str]]:
    """(input names, output names) of the decoder graph."""
    return code_names(config.num_codebooks) + noise_names(config.num_noise_blocks), [AUDIO_NAME]


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
        """The manifest entry (path, sha256, bytes) of ``role``'s graph at ``precision``."""
        if precision == "fp32":
            return self.files[role]
        if precision not in self.variants:
            raise ModelNotFoundError(
                f"precision {precision!r} is not in this export; it has {self.precisions}. "
                f"Export it with 'python -m export ... --precision {precision}'"
            )
        return self.variants[precision][role]

    def file_path(self, role: str, precision: str = "fp32") -> Path:
        """Path of the graph file for ``role`` (``"encoder"`` or ``"decoder"``)."""
        return self.folder / self.file_entry(role, precision)["path"]


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
            entry["path"], entry["sha256"]  # noqa: B018 - presence check
        name = str(raw["name"])
    except (KeyError, TypeError) as exc:
        raise ModelFormatError(f"{str(path)!r} lacks a required field: {exc!r}; re-export the model") from exc
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
    )
    manifest.decoder_tail_tiles  # noqa: B018 - checked here, so a bad value fails at load
    return manifest
