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

Row schema, the same for every run and option: ``path``, ``duration`` (seconds),
``sample_rate`` (the model's, used for encoding), ``source_sample_rate``, ``model``,
``model_id`` (:attr:`snac_onnx.Manifest.model_id`), ``codes_0`` .. ``codes_{n-1}``
(list<int64>), ``layout`` and ``tokens`` (list<int64>; both null without a layout),
``error`` (null when encoded). One row per file: a retry (``retry_errors``) replaces the
file's error row.

The folder remembers what made it (``_snac_onnx_job.json``: the model's identity and the
options that change codes). A rerun with another model or other options is refused, saying
what differs, instead of reporting "already done".
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputNotFoundError, InvalidArgumentError
from .files.atomic import atomic_output

__all__ = ["audio_suffixes", "list_inputs", "done_paths", "EncodeFiles", "tokenize_corpus", "TokenizeSummary"]

JOB_FILE = "_snac_onnx_job.json"  # "_": readers of the folder (pyarrow, pandas) skip it
_SUFFIX_ALIASES = {"aiff": (".aif", ".aiff"), "ogg": (".ogg", ".oga", ".opus"), "mpeg": (".mp3",), "mp3": (".mp3",)}


def audio_suffixes() -> frozenset[str]:
    """File suffixes of the formats this soundfile/libsndfile reads (``.mp3`` with libsndfile >= 1.1)."""
    try:
        import soundfile
    except ImportError:
        return frozenset({".wav", ".flac", ".ogg"})
    found: set[str] = set()
    for name in soundfile.available_formats():
        if name == "RAW":  # headerless: unreadable without being told its format
            continue
        key = name.lower()
        found.update(_SUFFIX_ALIASES.get(key, (f".{key}",)))
    return frozenset(found)


def list_inputs(source: str | os.PathLike[str]) -> list[str]:
    """Absolute paths of the audio files named by ``source`` (folder, glob, .parquet or .jsonl manifest), sorted."""
    text = str(source)
    path = Path(text)
    if path.is_dir():
        suffixes = audio_suffixes()
        files = [p for p in path.rglob("*") if p.suffix.lower() in suffixes and p.is_file()]
    elif path.suffix.lower() == ".parquet" and path.is_file():
        import pyarrow.parquet as pq

        files = [Path(p) for p in pq.read_table(path, columns=["path"]).column("path").to_pylist()]
    elif path.suffix.lower() in (".jsonl", ".json") and path.is_file():
        files = [Path(json.loads(line)["path"]) for line in path.read_text().splitlines() if line.strip()]
    else:  # a glob names its files itself: every file it matches is tried
        files = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
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


def _schema(num_codebooks: int) -> Any:
    import pyarrow as pa

    fields = [
        ("path", pa.string()),
        ("duration", pa.float64()),
        ("sample_rate", pa.int64()),
        ("source_sample_rate", pa.int64()),
        ("model", pa.string()),
        ("model_id", pa.string()),
    ]
    fields += [(f"codes_{i}", pa.list_(pa.int64())) for i in range(num_codebooks)]
    fields += [("layout", pa.string()), ("tokens", pa.list_(pa.int64())), ("error", pa.string())]
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
        self.schema = _schema(self.codec.num_codebooks)

    def encode_path(self, path: str) -> dict[str, Any]:
        """One output row for ``path``; any failure is captured in ``error``."""
        from .files.audio import AudioReader
        from .layouts import codes_to_tokens
        from .windowed import encode_reader

        codec = self.codec
        row: dict[str, Any] = {
            "path": path,
            "duration": None,
            "sample_rate": codec.sample_rate,
            "source_sample_rate": None,
            "model": codec.name,
            "model_id": codec.model_id,
            "layout": self.layout,
            "tokens": None,
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
            row["tokens"] = None
        return row

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        import pyarrow as pa

        rows = [self.encode_path(str(p)) for p in batch["path"]]
        columns = {name: [r.get(name) for r in rows] for name in self.schema.names}
        for name in columns:
            if name.startswith("codes_") or name == "tokens":
                columns[name] = [None if v is None else np.asarray(v, np.int64).tolist() for v in columns[name]]
        return pa.Table.from_pydict(columns, schema=self.schema)


@dataclass(frozen=True)
class TokenizeSummary:
    found: int
    skipped: int
    processed: int
    errors: int
    audio_seconds: float
    wall_seconds: float


def _job(model: str, offline: bool | None, resample: bool, mix: bool, layout: str | None) -> dict[str, Any]:
    """What decides a folder's rows: the model's identity and the options that change codes."""
    from .model.hub import resolve_model
    from .model.manifest import load_manifest

    manifest = load_manifest(resolve_model(model, offline=offline).folder)
    return {
        "model": manifest.name,
        "model_id": manifest.model_id,
        "sample_rate": manifest.config.sample_rate,
        "resample": bool(resample),
        "mix": bool(mix),
        "layout": layout,
    }


def _check_job(out: Path, job: dict[str, Any]) -> None:
    """Refuse to add rows to a folder written with another model or options (saying what differs)."""
    path = out / JOB_FILE
    has_rows = out.is_dir() and any(out.glob("*.parquet"))
    if not path.is_file():
        if has_rows:
            raise InvalidArgumentError(
                f"{str(out)!r} holds Parquet files but no {JOB_FILE}: it was written by an older snac-onnx or by "
                "something else; tokenize into a new output folder"
            )
        return
    try:
        earlier = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidArgumentError(f"{str(path)!r} is damaged ({exc}); tokenize into a new output folder") from exc
    differ = [k for k in job if earlier.get(k) != job[k]]
    if differ:
        what = "; ".join(f"{k}: this run {job[k]!r}, the folder {earlier.get(k)!r}" for k in differ)
        raise InvalidArgumentError(
            f"{str(out)!r} was tokenized with other settings ({what}); rerun with the folder's settings, "
            "or tokenize into a new output folder"
        )


def _drop_rows(files: set[Path], paths: set[str]) -> None:
    """Remove the rows of ``paths`` from the Parquet ``files`` (each rewritten atomically, or deleted if emptied)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for file in sorted(files):
        table = pq.read_table(file)
        keep = table.filter(pc.invert(pc.is_in(table.column("path"), value_set=_string_array(paths))))
        if keep.num_rows == table.num_rows:
            continue
        if keep.num_rows == 0:
            file.unlink()
            continue
        with atomic_output(file) as handle:
            pq.write_table(keep, handle)


def _string_array(values: set[str]) -> Any:
    import pyarrow as pa

    return pa.array(sorted(values), pa.string())


def _quiet_ray(verbose: bool) -> dict[str, Any]:
    """``ray.init`` arguments, and Ray Data settings, that keep Ray's own lines off the terminal unless ``verbose``."""
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = verbose
    if hasattr(context, "print_on_execution_start"):
        context.print_on_execution_start = verbose
    for name in ("ray", "ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
    return {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR}


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
    verbose: bool = False,
) -> TokenizeSummary:
    """Encode every audio file of ``source`` not yet in ``output_dir``; returns counts and timings.

    Args:
        source: folder, glob, or Parquet/JSONL manifest with a ``path`` column.
        output_dir: Parquet output folder; rerunning with it skips finished files (and is
            refused if the model or ``resample``, ``mix``, ``layout`` differ from the folder's).
        model: folder, short name or hub repo id.
        actors: encoder actors (default: CPUs of the cluster // threads_per_actor).
        threads_per_actor: onnxruntime threads, and CPUs reserved, per actor.
        address: Ray cluster to join (default ``RAY_ADDRESS``, else a local instance).
        resample, mix, window_seconds, layout: as in ``snac-onnx encode``.
        retry_errors: encode again files whose earlier row holds an error; the new row replaces it.
        files_per_batch: files per ``map_batches`` batch.
        offline: never use the network.
        verbose: let Ray print its own logs and progress bars.

    Raises:
        InvalidArgumentError: ``output_dir`` was written with another model or other options.
    """
    import ray

    start = time.perf_counter()
    files = list_inputs(source)
    out = Path(output_dir)
    job = _job(str(model), offline, resample, mix, layout)
    _check_job(out, job)
    done = done_paths(out, include_errors=not retry_errors)
    todo = [p for p in files if p not in done]
    if not todo:
        return TokenizeSummary(len(files), len(files), 0, 0, 0.0, time.perf_counter() - start)
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = _quiet_ray(verbose)
    if not ray.is_initialized():
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(include_dashboard=False, configure_logging=verbose, **quiet)
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
    out.mkdir(parents=True, exist_ok=True)
    if not (out / JOB_FILE).is_file():
        with atomic_output(out / JOB_FILE) as handle:
            handle.write((json.dumps(job, indent=2) + "\n").encode())
    before = set(out.glob("*.parquet"))
    ds.write_parquet(str(out))
    import pyarrow.parquet as pq

    if retry_errors:  # one row per file: the retried files' earlier (error) rows go
        _drop_rows(before, set(todo))
    errors = 0
    seconds = 0.0
    for file in set(out.glob("*.parquet")) - before:  # the rows written by this run
        table = pq.read_table(file, columns=["duration", "error"])
        for dur, err in zip(table.column("duration").to_pylist(), table.column("error").to_pylist(), strict=True):
            errors += err is not None
            seconds += dur or 0.0
    return TokenizeSummary(len(files), len(files) - len(todo), len(todo), errors, seconds, time.perf_counter() - start)
