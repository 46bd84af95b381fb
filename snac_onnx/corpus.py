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
what differs, instead of reporting "already done". One change is accepted: turning ``mix`` or
``resample`` on. It changes no row already encoded (a mono file is read the same with ``mix``, a
file at the model's rate the same with ``resample``; the files it changes are the ones that failed
without it), so the folder stays what the new options make; its job file then records the new
options and, under ``history``, the earlier ones. With ``retry_errors`` such a rerun redoes only
the error rows: the way to fix a stereo file (``--retry-errors --mix``) in the same folder.
"""

from __future__ import annotations

import contextlib
import glob
import inspect
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputNotFoundError, InvalidArgumentError
from .files.atomic import atomic_output

__all__ = ["audio_suffixes", "list_inputs", "done_paths", "EncodeFiles", "tokenize_corpus", "TokenizeSummary"]

JOB_FILE = "_snac_onnx_job.json"  # "_": readers of the folder (pyarrow, pandas) skip it
WIDENING_OPTIONS = ("mix", "resample")  # turned on, they change no row encoded without them (only failed ones)
MAX_FAILED_LISTED = 100  # error rows a summary lists by name (all of them are in the folder)
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


def _rows(files: Any) -> dict[str, str | None]:
    """``{path: error or None}`` of the rows in the Parquet ``files``."""
    import pyarrow.parquet as pq

    rows: dict[str, str | None] = {}
    for file in sorted(files):
        table = pq.read_table(file, columns=["path", "error"])
        rows.update(zip(table.column("path").to_pylist(), table.column("error").to_pylist(), strict=True))
    return rows


def done_paths(output_dir: str | os.PathLike[str], include_errors: bool = True) -> set[str]:
    """Paths already written to ``output_dir`` (with errors too unless ``include_errors`` is False)."""
    out = Path(output_dir)
    if not out.is_dir():
        return set()
    return {p for p, err in _rows(out.glob("*.parquet")).items() if include_errors or err is None}


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
    """What a run did.

    Attributes:
        found: audio files the input names.
        skipped: of them, files already in the folder (their rows kept).
        processed: files encoded by this run (a row each, encoded or with an error).
        errors: rows of this run that hold an error.
        audio_seconds: audio encoded by this run, in seconds.
        wall_seconds: the run's time, in seconds.
        failed: ``(path, error)`` of this run's error rows, sorted by path, the first
            :data:`MAX_FAILED_LISTED` of them (every error is in the folder's ``error`` column).
        earlier_errors: skipped files whose earlier row holds an error (``retry_errors`` redoes them).
        earlier_failed: ``(path, error)`` of those rows, as ``failed``.
        options_changed: the options this run turned on for the folder (``mix``, ``resample``).
    """

    found: int
    skipped: int
    processed: int
    errors: int
    audio_seconds: float
    wall_seconds: float
    failed: tuple[tuple[str, str], ...] = ()
    earlier_errors: int = 0
    earlier_failed: tuple[tuple[str, str], ...] = ()
    options_changed: tuple[str, ...] = ()


def _job(model: str, offline: bool | None, resample: bool, mix: bool, layout: str | None) -> dict[str, Any]:
    """What decides a folder's rows: the model's identity and the options that change codes."""
    from .model.hub import resolve_model
    from .model.manifest import load_manifest, warn_random_weights

    manifest = load_manifest(resolve_model(model, offline=offline).folder)
    warn_random_weights(manifest)  # here, in the driver: the actors' own logs stay in Ray's files
    return {
        "model": manifest.name,
        "model_id": manifest.model_id,
        "sample_rate": manifest.config.sample_rate,
        "resample": bool(resample),
        "mix": bool(mix),
        "layout": layout,
    }


def _check_job(out: Path, job: dict[str, Any]) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    """Refuse to add rows to a folder written with another model or options (saying what differs).

    Returns the folder's job (None for a new folder) and the options this run turns on for it (``mix``,
    ``resample``: accepted, see the module docstring).
    """
    path = out / JOB_FILE
    has_rows = out.is_dir() and any(out.glob("*.parquet"))
    if not path.is_file():
        if has_rows:
            raise InvalidArgumentError(
                f"{str(out)!r} holds Parquet files but no {JOB_FILE}: it was written by an older snac-onnx or by "
                "something else; tokenize into a new output folder"
            )
        return None, ()
    try:
        earlier = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidArgumentError(f"{str(path)!r} is damaged ({exc}); tokenize into a new output folder") from exc
    if not isinstance(earlier, dict):
        raise InvalidArgumentError(f"{str(path)!r} is damaged (not a JSON object); tokenize into a new output folder")
    differ = [k for k in job if earlier.get(k) != job[k]]
    widened = tuple(k for k in differ if k in WIDENING_OPTIONS and earlier.get(k) is False and job[k] is True)
    refused = [k for k in differ if k not in widened]
    if refused:
        what = "; ".join(f"{k}: this run {job[k]!r}, the folder {earlier.get(k)!r}" for k in refused)
        raise InvalidArgumentError(
            f"{str(out)!r} was tokenized with other settings ({what}); rerun with the folder's settings, "
            "or tokenize into a new output folder (only turning --mix or --resample on is accepted in the same "
            "folder: it changes no row already encoded)"
        )
    return earlier, widened


def _write_job(out: Path, job: dict[str, Any], earlier: dict[str, Any] | None, widened: tuple[str, ...]) -> None:
    """Write the folder's job file: ``job``, and when this run turned options on, the earlier jobs in ``history``."""
    if earlier is not None and not widened:
        return  # the folder's job stands
    record = dict(job)
    if earlier is not None:
        record["history"] = [
            *earlier.get("history", []),
            {
                **{k: v for k, v in earlier.items() if k != "history"},
                "replaced_by": f"a run that turned on {', '.join(widened)}: it changes no row encoded without "
                "them (mono files, files at the model's rate); the rows it changed had failed without them",
            },
        ]
    with atomic_output(out / JOB_FILE) as handle:
        handle.write((json.dumps(record, indent=2) + "\n").encode())


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
    """``ray.init`` arguments, and Ray Data settings, that keep Ray's own lines off the terminal unless ``verbose``.

    The actors' logs stay in Ray's session files (``log_to_driver``); Ray's Python loggers log errors only;
    Ray Data shows no progress bars. The lines these leave are avoided where they arise: see
    :func:`_no_restarts` and :func:`_ray_warnings_off`.
    """
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = verbose
    if hasattr(context, "print_on_execution_start"):
        context.print_on_execution_start = verbose
    for name in ("ray", "ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
    return {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR}


def _no_restarts(map_batches: Any) -> dict[str, Any]:
    """``map_batches`` arguments that keep its actors from being restarted, where this Ray takes them.

    Ray Data restarts crashed actors by default; for such actors Ray's core prints an error-level
    ``core_worker.cc`` line on every run (their constructor arguments are in the object store, where a
    restart may not find them). Without restarts a crashed actor fails the run: rerun it to resume (done
    files are skipped), rather than restarting, possibly in a loop on a file that crashes it. Ray takes
    ``max_restarts`` only through ``**ray_remote_args`` (deprecated; to go in Ray 2.64): a Ray without them
    gets no such argument, and keeps its defaults.
    """
    parameters = inspect.signature(map_batches).parameters.values()
    return {"max_restarts": 0} if any(p.kind is p.VAR_KEYWORD for p in parameters) else {}


@contextlib.contextmanager
def _ray_warnings_off(verbose: bool) -> Iterator[None]:
    """Ray's Python warnings that are not ours to act on, off unless ``verbose``: the deprecation of
    ``**ray_remote_args`` (:func:`_no_restarts`), and the hint that a pool has more actors than inputs (the pool
    is sized to the batches; Ray's count of inputs may still differ by one)."""
    with warnings.catch_warnings():
        if not verbose:
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")
        yield


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
            refused if the model or ``resample``, ``mix``, ``layout`` differ from the folder's,
            except for turning ``mix`` or ``resample`` on; see the module docstring).
        model: folder, short name or hub repo id.
        actors: encoder actors (default: CPUs of the cluster // threads_per_actor).
        threads_per_actor: onnxruntime threads, and CPUs reserved, per actor.
        address: Ray cluster to join (default ``RAY_ADDRESS``, else a local instance).
        resample, mix, window_seconds, layout: as in ``snac-onnx encode``.
        retry_errors: encode again files whose earlier row holds an error; the new row replaces it.
            With ``mix`` or ``resample`` turned on for the folder, this redoes the files that failed for
            want of them (``TokenizeSummary.failed`` lists them, and their errors).
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
    earlier_job, widened = _check_job(out, job)
    rows = _rows(out.glob("*.parquet")) if out.is_dir() else {}
    todo = [p for p in files if p not in rows or (retry_errors and rows[p] is not None)]
    earlier_failed = sorted((p, error) for p in set(files) - set(todo) if (error := rows.get(p)) is not None)
    summary = TokenizeSummary(
        len(files), len(files) - len(todo), len(todo), 0, 0.0, 0.0,
        earlier_errors=len(earlier_failed), earlier_failed=tuple(earlier_failed[:MAX_FAILED_LISTED]),
        options_changed=widened,
    )  # fmt: skip
    if not todo:
        if widened:
            _write_job(out, job, earlier_job, widened)
        return replace(summary, wall_seconds=time.perf_counter() - start)
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = _quiet_ray(verbose)
    if not ray.is_initialized():
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(include_dashboard=False, configure_logging=verbose, **quiet)
    cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
    actors = actors or max(1, cpus // threads_per_actor)
    actors = min(actors, -(-len(todo) // files_per_batch))  # no more actors (models loaded) than batches
    items = ray.data.from_items([{"path": p} for p in todo], override_num_blocks=max(1, min(len(todo), 4 * actors)))
    with _ray_warnings_off(verbose):
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
            **_no_restarts(items.map_batches),
        )
        out.mkdir(parents=True, exist_ok=True)
        _write_job(out, job, earlier_job, widened)
        before = set(out.glob("*.parquet"))
        ds.write_parquet(str(out))
    import pyarrow.parquet as pq

    if retry_errors:  # one row per file: the retried files' earlier (error) rows go
        _drop_rows(before, set(todo))
    errors = 0
    seconds = 0.0
    failed: list[tuple[str, str]] = []
    for file in set(out.glob("*.parquet")) - before:  # the rows written by this run
        table = pq.read_table(file, columns=["path", "duration", "error"])
        columns = (table.column(name).to_pylist() for name in ("path", "duration", "error"))
        for path, dur, err in zip(*columns, strict=True):
            if err is not None:
                errors += 1
                failed.append((path, err))
            seconds += dur or 0.0
    return replace(
        summary, errors=errors, audio_seconds=seconds, wall_seconds=time.perf_counter() - start,
        failed=tuple(sorted(failed)[:MAX_FAILED_LISTED]),
    )  # fmt: skip
