"""The ``.npz`` codes file written by ``snac-onnx encode`` and read by ``snac-onnx decode``.

Arrays ``codes_0`` .. ``codes_{n-1}`` (int64, one per codebook, coarse first),
optionally ``tokens`` (a flat layout), and ``meta``: a JSON string with the
model name, the sha256 of its manifest, the sample rate, the original length
in samples, and the layout. Written atomically; read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audio_io import atomic_output
from .errors import InvalidCodesError

__all__ = ["CodesFile", "save_codes", "load_codes", "FORMAT"]

FORMAT = "snac-onnx-codes"
VERSION = 1


@dataclass(frozen=True)
class CodesFile:
    codes: list[np.ndarray]
    meta: dict[str, Any]
    tokens: np.ndarray | None = None


def save_codes(
    path: str | os.PathLike[str], codes: list[np.ndarray], meta: dict[str, Any], tokens: np.ndarray | None = None
) -> None:
    arrays: dict[str, np.ndarray] = {f"codes_{i}": np.asarray(c, np.int64) for i, c in enumerate(codes)}
    if tokens is not None:
        arrays["tokens"] = np.asarray(tokens, np.int64)
    full_meta = {"format": FORMAT, "version": VERSION, "num_codebooks": len(codes), **meta}
    arrays["meta"] = np.array(json.dumps(full_meta))
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle


def load_codes(path: str | os.PathLike[str]) -> CodesFile:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise InvalidCodesError(f"{path.name} is not a {FORMAT} v{VERSION} file (meta {meta})")
            codes = [np.asarray(data[f"codes_{i}"]) for i in range(int(meta["num_codebooks"]))]
            tokens = np.asarray(data["tokens"]) if "tokens" in data else None
    except InvalidCodesError:
        raise
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise InvalidCodesError(f"cannot read codes from {str(path)!r}: {exc}") from exc
    return CodesFile(codes=codes, meta=meta, tokens=tokens)
