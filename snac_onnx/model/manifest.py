"""The manifest that sits beside every exported model, and the graph contract.

An exported model is a folder holding ``encoder.onnx``, ``decoder.onnx`` and
``manifest.json``. The manifest records the model configuration, where the
weights came from, the sha256 of each file, the graphs' input and output names
and the parity measured at export. The runtime reads its configuration from
the manifest only; it never needs torch or the original checkpoint.

``variants`` lists other forms of the graphs, by precision name: ``{"int8": {"layout": "channels_last",
"decoder": {path, sha256, bytes}, "stream": {...}, ...}}``. A variant has a decoder graph and may have an
encoder and a stream graph (a role it lacks runs the fp32 graph: an int8 export encodes in fp32; without a
stream graph it streams in window mode). ``layout`` (default ``channels_first``, all exports before the
channels-last graphs) says how the graphs lay out their stream states (:data:`snac_onnx.model.contract.LAYOUTS`).

The graphs' names and shapes are :mod:`snac_onnx.model.contract`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..errors import ModelFormatError, ModelNotFoundError
from .contract import CHANNELS_FIRST, LAYOUTS, StreamSpec, decoder_io, encoder_io, stream_io

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "ENCODER_FILE",
    "DECODER_FILE",
    "STREAM_FILE",
    "Manifest",
    "load_manifest",
    "sha256_file",
    "warn_random_weights",
]

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
STREAM_FILE = "stream.onnx"

logger = logging.getLogger(__name__)  # its one WARNING: a model with random weights (warn_random_weights)
_warned_random: set[str] = set()  # model_ids already warned about in this process
_warned_lock = threading.Lock()


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
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
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
        """Precisions this export holds: ``fp32`` and any variants (``int8``, ``fp32-cl``, ``fp16``)."""
        return ["fp32", *self.variants]

    def layout(self, precision: str = "fp32") -> str:
        """The graphs' layout at ``precision`` (:data:`snac_onnx.model.contract.LAYOUTS`)."""
        if precision == "fp32":
            return CHANNELS_FIRST
        return str(self._variant(precision).get("layout", CHANNELS_FIRST))

    def has_stream(self, precision: str = "fp32") -> bool:
        """Whether the export has a stream graph at ``precision``."""
        if self.stream is None:
            return False
        return precision == "fp32" or "stream" in self._variant(precision)

    def _variant(self, precision: str) -> dict[str, Any]:
        if precision not in self.variants:
            raise ModelNotFoundError(
                f"precision {precision!r} is not in this export; it has {self.precisions}. "
                f"Export it with 'python -m export ... --precision {precision}'"
            )
        return self.variants[precision]

    @property
    def decoder_tail_tiles(self) -> int:
        """Time tiles the decoder graph runs its high-rate tail in (1: untiled, as exports before tiling)."""
        tiles = self.raw["graphs"]["decoder"].get("tail_tiles", 1)
        if isinstance(tiles, bool) or not isinstance(tiles, int) or tiles < 1:
            raise ModelFormatError(f"manifest graphs.decoder.tail_tiles must be an int >= 1, got {tiles!r}")
        return tiles

    def file_entry(self, role: str, precision: str = "fp32") -> dict[str, Any]:
        """The manifest entry (path, sha256, bytes) of ``role``'s graph at ``precision`` (a variant without an encoder
        uses the fp32 one).

        Raises:
            ModelNotFoundError: the export lacks ``precision``, or has no stream graph at it (``role`` ``stream``).
        """
        if precision == "fp32":
            return self.files[role]
        variant = self._variant(precision)
        if role in variant:
            return dict(variant[role])
        if role == "stream":
            raise ModelNotFoundError(
                f"this export has no stream graph at precision {precision!r} (its variants before the channels-last "
                "graphs had none); stream in window mode (mode='window') or re-export with 'python -m export ...'"
            )
        return self.files[role]

    def graph_io(self, role: str) -> tuple[list[str], list[str]]:
        """(input names, output names) the contract gives ``role``'s graph in this export.

        Raises:
            ModelNotFoundError: ``role`` is ``stream`` and the export has no stream graph (exported before it).
        """
        if role == "encoder":
            return encoder_io(self.config)
        if role == "decoder":
            return decoder_io(self.config)
        if self.stream is None:
            raise ModelNotFoundError(
                f"{str(self.folder)!r} has no stream graph (exported before the stateful stream); re-export it "
                "with 'python -m export ...', or stream in window mode (mode='window')"
            )
        return stream_io(self.config, len(self.stream.states))

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


def _file_entry(container: Any, role: str, where: str, path: Path) -> dict[str, Any]:
    """``container[role]``, a graph file's entry: an object with a ``path`` and a ``sha256`` string.

    Raises:
        KeyError: ``container`` has no ``role`` (reported by the caller as a missing field).
        ModelFormatError: the entry is not such an object; the message names it by ``where`` (``files.decoder``).
    """
    if not isinstance(container, dict):
        raise ModelFormatError(
            f"{str(path)!r}: {where.rsplit('.', 1)[0]} must be an object of graph file entries, got {container!r}"
        )
    entry = container[role]
    if not isinstance(entry, dict) or not all(isinstance(entry.get(key), str) for key in ("path", "sha256")):
        raise ModelFormatError(
            f"{str(path)!r}: {where} must be an object with a 'path' and a 'sha256' string, got {entry!r}; "
            "re-export or re-download the model"
        )
    return dict(entry)


def _variant_entry(precision: str, raw: Any, path: Path) -> dict[str, Any]:
    """A checked ``variants`` entry: its role files (a decoder at least, :func:`_file_entry` each) and its layout.

    Raises:
        KeyError: the entry has no decoder.
        ModelFormatError: an entry of the wrong form, the reserved name ``fp32``, or an unknown layout.
    """
    if precision == "fp32":
        raise ModelFormatError(f"{str(path)!r}: variants.fp32 is reserved for the export's own graphs")
    roles = [
        role
        for role in ("encoder", "decoder", "stream")
        if role == "decoder" or (isinstance(raw, dict) and role in raw)
    ]
    entry: dict[str, Any] = {role: _file_entry(raw, role, f"variants.{precision}.{role}", path) for role in roles}
    layout = raw.get("layout", CHANNELS_FIRST)
    if layout not in LAYOUTS:
        raise ModelFormatError(
            f"{str(path)!r}: variants.{precision}.layout must be one of {list(LAYOUTS)}, got {layout!r}"
        )
    entry["layout"] = layout
    return entry


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
        files = {role: _file_entry(raw["files"], role, f"files.{role}", path) for role in ("encoder", "decoder")}
        graphs = {
            role: {"inputs": list(raw["graphs"][role]["inputs"]), "outputs": list(raw["graphs"][role]["outputs"])}
            for role in ("encoder", "decoder")
        }
        variants = {str(p): _variant_entry(str(p), v, path) for p, v in raw.get("variants", {}).items()}
        name = str(raw["name"])
    except (KeyError, TypeError) as exc:
        raise ModelFormatError(f"{str(path)!r} lacks a required field: {exc!r}; re-export the model") from exc
    stream = None
    if "stream" in raw["files"]:  # exports before the stateful stream have none
        files["stream"] = _file_entry(raw["files"], "stream", "files.stream", path)
        try:
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


def warn_random_weights(manifest: Manifest) -> bool:
    """Log one WARNING per model and process when ``manifest`` holds seeded random weights (``random_init``).

    Such a model (exported with ``--random-init``, as where the Hugging Face Hub cannot be reached) runs for
    real, but its audio is meaningless; a user who hears noise would blame the codec. :class:`~snac_onnx.SnacOnnx`
    calls this when it loads a model, ``snac-onnx tokenize`` and ``download`` too; the command line prints the
    warning as one line on stderr. The logger is this module's, ``snac_onnx.model.manifest``.

    Returns:
        True when this call logged the warning (the first for this model in this process).
    """
    if not manifest.random_init:
        return False
    with _warned_lock:
        if manifest.model_id in _warned_random:
            return False
        _warned_random.add(manifest.model_id)
    logger.warning(
        "%s (%s) has RANDOM WEIGHTS, not a trained checkpoint: its audio is meaningless. For real audio, export a "
        "trained checkpoint: python -m export snac_24khz (needs the Hugging Face Hub) or python -m export FOLDER "
        "(with config.json and pytorch_model.bin)",
        manifest.folder,
        manifest.name,
    )
    return True
