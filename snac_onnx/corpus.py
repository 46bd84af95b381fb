"""Tokenize an audio corpus with Ray Data: files in, one Parquet row per file out.

``tokenize_corpus(INPUT, OUTPUT_DIR)`` (and ``snac-onnx tokenize``) lists the
audio files of INPUT (a folder, searched recursively; a glob; or a Parquet or
JSONL manifest with a ``path`` column), skips those already in OUTPUT_DIR, and
encodes the rest with Ray Data: ``map_batches`` with a callable class that holds
one :class:`SnacOnnx` per actor. Each actor reserves ``threads_per_actor`` CPUs
and gives onnxruntime that many threads, so actors x threads never oversubscribe
the cores. Long files go through the windowed encode (codes equal to one-shot
encoding, memory flat). A file that cannot be read becomes a row with an
``error``, never a failed job. Ray is imported only here (extra ``[ray]``).

Row schema: ``path``, ``duration`` (seconds), ``sample_rate`` (the model's, used
for encoding), ``source_sample_rate``, ``model``, ``manifest_sha256``,
``codes_0`` .. ``codes_{n-1}`` (list<int64>), ``tokens`` (list<int64>, when a
layout is asked for), ``error`` (null when encoded).
"""

from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputNotFoundError

__all__ = ["AUDIO_SUFFIXES", "list_inputs", "done_paths", "EncodeFiles", "tokenize_corpus", "TokenizeSummary"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def list_inputs(source: str | os.PathLike[str]) -> list[str]:
    """Absolute paths of the audio files named by ``source`` (folder, glob, .parquet or .jsonl manifest), sorted."""
    text = str(source)
    path = Path(text)
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()]
    elif path.suffix.lower() == ".parquet" and path.is_file():
        import pyarrow.parquet as pq

        files = [Path(p) for p in pq.read_table(path, columns=["path"]).column("path").to_pylist()]
    elif path.suffix.lower() in (".jsonl", ".json") and path.is_file():
        files = [Path(json.loads(line)["path"]) for line in path.read_text().splitlines() if line.strip()]
    else:
        files = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).suffix.lower() in AUDIO_SUFFIXES]
        if not files and not any(ch in text for ch in "*?["):
            raise InputNotFoundError(f"{text!r} is not a folder, a glob, or a .parquet/.jsonl manifest")
    return sorted({str(p.resolve()) for p in files})


def done_paths(output_dir: str | os.PathLike[str], include_errors: bool = True) -> set[str]:
    """Paths already written to ``output_dir`` (with errors too unless ``include_errors`` is False)."""
    out = Path(output_dir)
    if not out.is_dir():
        return set()
    import pyarrow.parquet as pq

    done: set[str] = set()
    for file in sorted(out.glob("*.parquet")):
        table = pq.read_table(file, columns=["path", "error"])
        for p, err in zip(table.column("path").to_pylist(), table.column("error").to_pylist(), strict=True):
            if include_errors or err is None:
                done.add(p)
    return done


def _schema(num_codebooks: int, with_tokens: bool) -> Any:
    import pyarrow as pa

    fields = [
        ("path", pa.string()),
        ("duration", pa.float64()),
        ("sample_rate", pa.int64()),
        ("source_sample_rate", pa.int64()),
        ("model", pa.string()),
        ("manifest_sha256", pa.string()),
    ]
    fields += [(f"codes_{i}", pa.list_(pa.int64())) for i in range(num_codebooks)]
    if with_tokens:
        fields.append(("tokens", pa.list_(pa.int64())))
    fields.append(("error", pa.string()))
    return pa.schema(fields)


class EncodeFiles:
    """Ray Data callable class: one model per actor, a batch of paths in, a pyarrow table out.

    Args are plain values so Ray can ship them: the model (folder, name or repo),
    onnxruntime threads, and the encoding options of the CLI.
    """

    def __init__(
        self,
        model: str,
        threads: int = 1,
        resample: bool = False,
        mix: bool = False,
        window_seconds: float | None = None,
        layout: str | None = None,
        offline: bool | None = None,
    ) -> None:
        from .codec import SnacOnnx

        self.codec = SnacOnnx(model, threads=threads, offline=offline)
        self.resample, self.mix, self.window_seconds, self.layout = resample, mix, window_seconds, layout
        self.schema = _schema(self.codec.num_codebooks, layout is not None)

    def encode_path(self, path: str) -> dict[str, Any]:
        """One output row for ``path``; any failure is captured in ``error``."""
        from .audio_io import AudioReader
        from .layouts import codes_to_tokens
        from .windowed import encode_reader

        codec = self.codec
        row: dict[str, Any] = {
            "path": path,
            "duration": None,
            "sample_rate": codec.sample_rate,
            "source_sample_rate": None,
            "model": codec.name,
            "manifest_sha256": codec.manifest_sha256,
            "error": None,
        }
        empty: list[int] = []
        try:
            reader = AudioReader(path, codec.sample_rate, mix=self.mix, resample=self.resample)
            row["source_sample_rate"] = reader.file_rate
            row["duration"] = reader.seconds
            codes = encode_reader(codec, reader.read, reader.num_samples, window_seconds=self.window_seconds)
            for i, c in enumerate(codes):
                row[f"codes_{i}"] = c
            if self.layout is not None:
                row["tokens"] = codes_to_tokens(codes, codec.vq_strides, self.layout)
        except Exception as exc:  # noqa: BLE001 - a bad file is a row, never a failed job
            row["error"] = f"{type(exc).__name__}: {exc}"
            for i in range(codec.num_codebooks):
                row[f"codes_{i}"] = empty
            if self.layout is not None:
                row["tokens"] = empty
        return row

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        import pyarrow as pa

        rows = [self.encode_path(str(p)) for p in batch["path"]]
        columns = {name: [r.get(name) for r in rows] for name in self.schema.names}
        for name in columns:
            if name.startswith("codes_") or name == "tokens":
                columns[name] = [np.asarray(v, np.int64).tolist() for v in columns[name]]
        return pa.Table.from_pydict(columns, schema=self.schema)


@dataclass(frozen=True)
class TokenizeSummary:
    found: int
    skipped: int
    processed: int
    errors: int
    audio_seconds: float
    wall_seconds: float


def tokenize_corpus(
    source: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    model: str = "snac_24khz",
    actors: int | None = None,
    threads_per_actor: int = 1,
    address: str | None = None,
    resample: bool = False,
    mix: bool = False,
    window_seconds: float | None = None,
    layout: str | None = None,
    retry_errors: bool = False,
    files_per_batch: int = 4,
    offline: bool | None = None,
) -> TokenizeSummary:
    """Encode every audio file of ``source`` not yet in ``output_dir``; returns counts and timings.

    Args:
        source: folder, glob, or Parquet/JSONL manifest with a ``path`` column.
        output_dir: Parquet output folder; rerunning with it skips finished files.
        model: folder, short name or hub repo id.
        actors: encoder actors (default: CPUs of the cluster // threads_per_actor).
        threads_per_actor: onnxruntime threads, and CPUs reserved, per actor.
        address: Ray cluster to join (default ``RAY_ADDRESS``, else a local instance).
        resample, mix, window_seconds, layout: as in ``snac-onnx encode``.
        retry_errors: encode again files whose earlier row holds an error.
        files_per_batch: files per ``map_batches`` batch.
    """
    import ray

    start = time.perf_counter()
    files = list_inputs(source)
    done = done_paths(output_dir, include_errors=not retry_errors)
    todo = [p for p in files if p not in done]
    if not todo:
        return TokenizeSummary(len(files), len(files), 0, 0, 0.0, time.perf_counter() - start)
    address = address or os.environ.get("RAY_ADDRESS")
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
    actors = actors or max(1, cpus // threads_per_actor)
    items = ray.data.from_items([{"path": p} for p in todo], override_num_blocks=max(1, min(len(todo), 4 * actors)))
    ds = items.map_batches(
        EncodeFiles,
        fn_constructor_kwargs={
            "model": str(model),
            "threads": threads_per_actor,
            "resample": resample,
            "mix": mix,
            "window_seconds": window_seconds,
            "layout": layout,
            "offline": offline,
        },
        batch_size=files_per_batch,
        batch_format="numpy",
        num_cpus=threads_per_actor,
        compute=ray.data.ActorPoolStrategy(size=actors),
    )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.glob("*.parquet"))
    ds.write_parquet(str(out))
    import pyarrow.parquet as pq

    errors = 0
    seconds = 0.0
    for file in set(out.glob("*.parquet")) - before:  # the rows written by this run
        table = pq.read_table(file, columns=["duration", "error"])
        for dur, err in zip(table.column("duration").to_pylist(), table.column("error").to_pylist(), strict=True):
            errors += err is not None
            seconds += dur or 0.0
    return TokenizeSummary(len(files), len(files) - len(todo), len(todo), errors, seconds, time.perf_counter() - start)
