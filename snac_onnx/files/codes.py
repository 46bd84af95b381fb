"""The ``.npz`` codes file written by ``snac-onnx encode`` and read by ``snac-onnx decode``.

A NumPy ``.npz`` (a zip) holding:

* ``codes_0`` .. ``codes_{n-1}``: int64, 1-D, one per codebook, coarse first;
* ``tokens`` (optional): int64, 1-D, the same codes in the flat layout named by ``layout``;
* ``meta``: a JSON object (a 0-d string array) with these keys:

  ============================  ==========================================================
  ``format``, ``version``       ``"snac-onnx-codes"``, 2 (version 1 files are read too)
  ``num_codebooks``             n, int >= 1
  ``model``                     the model's name (``snac-onnx decode`` loads it when no
                                ``-m`` is given)
  ``model_id``                  :attr:`snac_onnx.Manifest.model_id` of the encoder's model
                                (version 1: ``manifest_sha256``, the manifest file's hash)
  ``sample_rate``               the model's rate in Hz (the codes' audio rate)
  ``length``                    samples of audio at ``sample_rate`` the codes stand for
                                (the decode is trimmed to it)
  ``source_sample_rate``        the input file's own rate in Hz (optional)
  ``source_length``             the input file's length in samples at that rate (optional)
  ``layout``                    ``"per-codebook"`` or the flat layout of ``tokens``
  ``source``                    the input's name (optional, informative)
  ============================  ==========================================================

:func:`load_codes` checks every key's type and value, and that the codes agree with each
other and with ``length``; :meth:`CodesFile.check_model` checks them against the model
that will decode them. Written atomically; read with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..codes import check_codes
from ..config import ModelConfig
from ..errors import InvalidArgumentError, InvalidCodesError
from .atomic import STDIO, atomic_output

__all__ = ["CodesFile", "save_codes", "load_codes", "FORMAT", "VERSION"]

FORMAT = "snac-onnx-codes"
VERSION = 2
_READS = (1, 2)
_ZIP_MAGIC = b"PK\x03\x04"
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class CodesFile:
    """A loaded codes file.

    Attributes:
        codes: int64 1-D arrays, one per codebook, coarse first.
        meta: the checked metadata (see the module docstring for its keys).
        tokens: the flat tokens, when the file holds them.
    """

    codes: list[np.ndarray]
    meta: dict[str, Any]
    tokens: np.ndarray | None = None

    @property
    def length(self) -> int:
        """Samples of audio at :attr:`sample_rate` the codes stand for."""
        return int(self.meta["length"])

    @property
    def sample_rate(self) -> int:
        return int(self.meta["sample_rate"])

    @property
    def model_id(self) -> str | None:
        """The encoder's :attr:`~snac_onnx.Manifest.model_id` (None for version 1 files)."""
        value = self.meta.get("model_id")
        return None if value is None else str(value)

    def check_model(self, config: ModelConfig, name: str = "the model") -> None:
        """Check that ``config`` can decode these codes to :attr:`length` samples.

        Raises:
            InvalidCodesError: another sample rate or number of codebooks, lengths that do not
                fit the model's strides, a code outside its codebook, or a ``length`` that
                is not what the codes decode to.
        """
        if self.sample_rate != config.sample_rate:
            raise InvalidCodesError(
                f"the codes are for {self.sample_rate} Hz audio, {name} is {config.sample_rate} Hz: "
                "decode with the model that encoded them"
            )
        _, frames, _ = check_codes(
            self.codes, config.vq_strides, config.codebook_size, config.frames_multiple, what="the file's codes"
        )
        decoded = frames * config.samples_per_frame
        if not decoded - config.padding_unit < self.length <= decoded:
            raise InvalidCodesError(
                f"the file's length {self.length} does not fit its codes: {frames} frames decode to {decoded} "
                f"samples, so the original length lies in ({decoded - config.padding_unit}, {decoded}]; "
                "the file is damaged or was edited"
            )


def save_codes(
    path: str | os.PathLike[str], codes: list[np.ndarray], meta: dict[str, Any], tokens: np.ndarray | None = None
) -> None:
    """Write a codes file atomically; ``meta`` holds the keys of the module docstring but the format's own."""
    arrays: dict[str, np.ndarray] = {f"codes_{i}": np.asarray(c, np.int64) for i, c in enumerate(codes)}
    if tokens is not None:
        arrays["tokens"] = np.asarray(tokens, np.int64)
    full_meta = {"format": FORMAT, "version": VERSION, "num_codebooks": len(codes), **meta}
    problem = _meta_problem(full_meta, "the metadata to write")
    if problem is not None:
        raise InvalidArgumentError(problem)
    arrays["meta"] = np.array(json.dumps(full_meta))
    with atomic_output(path) as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle


def _meta_problem(meta: object, where: str) -> str | None:
    """What is wrong with ``meta``, key by key (see the module docstring), or None."""
    if not isinstance(meta, dict):
        return f"{where}: meta must be a JSON object, got {type(meta).__name__}"
    version = meta.get("version")
    if (
        meta.get("format") != FORMAT
        or isinstance(version, bool)
        or not isinstance(version, int)
        or version not in _READS
    ):
        return (
            f"{where} is not a {FORMAT} file of a version this snac-onnx reads {list(_READS)} "
            f"(format {meta.get('format')!r}, version {meta.get('version')!r})"
        )

    def positive_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    identity = "model_id" if meta["version"] >= 2 else "manifest_sha256"
    rules: list[tuple[str, bool, str]] = [
        ("num_codebooks", positive_int(meta.get("num_codebooks")), "an int >= 1"),
        ("model", isinstance(meta.get("model"), str) and bool(meta.get("model")), "the model's name"),
        (identity, isinstance(meta.get(identity), str) and bool(_HEX64.fullmatch(meta[identity])), "64 hex digits"),
        ("sample_rate", positive_int(meta.get("sample_rate")), "an int >= 1"),
        ("length", positive_int(meta.get("length")), "an int >= 1"),
        (
            "source_sample_rate",
            meta.get("source_sample_rate") is None or positive_int(meta["source_sample_rate"]),
            "an int >= 1",
        ),
        ("source_length", meta.get("source_length") is None or positive_int(meta["source_length"]), "an int >= 1"),
        ("layout", isinstance(meta.get("layout"), str), "'per-codebook' or a layout name"),
    ]
    for key, ok, allowed in rules:
        if not ok:
            return f"{where}: meta key {key!r} is {meta.get(key)!r}; it must be {allowed}"
    return None


def load_codes(path: str | os.PathLike[str]) -> CodesFile:
    """Read and check a codes file (see the module docstring); ``-`` reads standard input.

    Raises:
        InvalidCodesError: the file is not a snac-onnx codes file, is damaged, or a key or
            array is wrong (the message says which).
    """
    source: Path | io.BytesIO
    if str(path) == STDIO:
        name, source = "standard input", io.BytesIO(sys.stdin.buffer.read())
        magic = source.getvalue()[:4]
    else:
        source = Path(path)
        name = repr(str(source))
        try:
            with open(source, "rb") as handle:
                magic = handle.read(4)
        except IsADirectoryError as exc:
            raise InvalidCodesError(f"{name} is a folder, not a codes file") from exc
        except FileNotFoundError as exc:
            raise InvalidCodesError(f"codes file {name} does not exist") from exc
        except OSError as exc:
            raise InvalidCodesError(f"cannot read codes from {name}: {exc.strerror or exc}") from exc
    if magic != _ZIP_MAGIC:
        kind = {b"RIFF": " (it is a WAV file)", b"fLaC": " (it is a FLAC file)", b"OggS": " (it is an OGG file)"}
        raise InvalidCodesError(
            f"{name} is not a snac-onnx codes file{kind.get(magic, '')}; codes files are the .npz files "
            "'snac-onnx encode' writes"
        )
    try:
        with np.load(source, allow_pickle=False) as data:
            if "meta" not in data.files:
                raise InvalidCodesError(f"{name} is an .npz file but not a snac-onnx codes file (no 'meta')")
            try:
                meta = json.loads(str(data["meta"]))
            except json.JSONDecodeError as exc:
                raise InvalidCodesError(f"{name}: its meta is not JSON ({exc})") from exc
            problem = _meta_problem(meta, name)
            if problem is not None:
                raise InvalidCodesError(problem)
            n = int(meta["num_codebooks"])
            missing = [f"codes_{i}" for i in range(n) if f"codes_{i}" not in data.files]
            if missing:
                raise InvalidCodesError(f"{name} lacks {missing} (meta says {n} codebooks)")
            codes = [np.asarray(data[f"codes_{i}"]) for i in range(n)]
            tokens = np.asarray(data["tokens"]) if "tokens" in data.files else None
    except InvalidCodesError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
        # zipfile: NotImplementedError for an unknown compression method, RuntimeError for an encrypted entry
        raise InvalidCodesError(f"{name} is damaged: {exc}") from exc
    for i, c in enumerate(codes):
        if c.ndim != 1 or c.size == 0 or not np.issubdtype(c.dtype, np.integer):
            raise InvalidCodesError(
                f"{name}: codes_{i} must be a non-empty 1-D integer array, got shape {c.shape} of {c.dtype}"
            )
    if tokens is not None and (tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer)):
        raise InvalidCodesError(f"{name}: tokens must be a 1-D integer array, got shape {tokens.shape}")
    return CodesFile(codes=[c.astype(np.int64) for c in codes], meta=meta, tokens=tokens)
