"""Export one loaded model to a versioned folder: graphs, manifest, parity."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import platform
import shutil
import threading
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import snac_onnx
from snac_onnx.config import ModelConfig
from snac_onnx.model.contract import decoder_io, encoder_io, stream_io
from snac_onnx.model.manifest import DECODER_FILE, ENCODER_FILE, FORMAT_VERSION, MANIFEST_FILE, STREAM_FILE, sha256_file

from .checkpoint import LoadedModel
from .onnx_export import OPSET, export_graphs
from .parity import format_parity, measure_parity, summarize_parity

RANDOM_INIT_WARNING = (
    "RANDOM WEIGHTS: this model was exported with seeded random weights (config named in 'source', "
    "codebooks redrawn from encoder latents), NOT from a trained checkpoint. Its audio is meaningless; "
    "it exists to test the export and the runtime."
)


PROGRESS_EVERY_S = 30.0  # a stage still running says so this often: a long export is never silent


@contextlib.contextmanager
def _stage(log: logging.Logger, started: float, name: str) -> Iterator[None]:
    """Log ``name`` as it starts, every :data:`PROGRESS_EVERY_S` while it runs and with its time as it ends; each
    line begins with the time since ``started`` (the export's start, ``time.perf_counter()``) as ``[m:ss]``."""

    def say(what: str) -> None:
        total = int(time.perf_counter() - started)
        log.info("[%d:%02d] %s", total // 60, total % 60, what)

    begin = time.perf_counter()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(PROGRESS_EVERY_S):
            say(f"{name}: still running ({time.perf_counter() - begin:.0f} s)")

    say(f"{name} ...")
    thread = threading.Thread(target=beat, name="export-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    say(f"{name}: done in {time.perf_counter() - begin:.0f} s")


class ParityError(RuntimeError):
    """The exported graphs do not match the PyTorch reference within the limits."""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def build_manifest(
    loaded: LoadedModel, config: ModelConfig, folder: Path, graphs: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The manifest for graphs already written in ``folder`` (parity filled in later).

    ``graphs``: what :func:`export.onnx_export.export_graphs` returned (the decoder's tiling, the
    stream graph's grid and state layout).
    """
    enc_in, enc_out = encoder_io(config)
    dec_in, dec_out = decoder_io(config)
    files = {}
    for role, filename in (("encoder", ENCODER_FILE), ("decoder", DECODER_FILE), ("stream", STREAM_FILE)):
        path = folder / filename
        files[role] = {"path": filename, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest: dict[str, Any] = {"format_version": FORMAT_VERSION, "name": loaded.name}
    if loaded.random_init:
        manifest["WARNING"] = RANDOM_INIT_WARNING
    manifest.update(
        {
            "random_init": loaded.random_init,
            "source": loaded.source,
            "config": config.to_json(),
            "snac_config": loaded.config,
            "files": files,
            "graphs": {
                "encoder": {"inputs": enc_in, "outputs": enc_out},
                "decoder": {"inputs": dec_in, "outputs": dec_out, **graphs["decoder"]},
                "stream": dict(zip(("inputs", "outputs"), stream_io(config, len(graphs["stream"]["states"]))))
                | graphs["stream"],
            },
            "opset": OPSET,
            "exporter": {
                "method": "torch.onnx.export(dynamo=True)",
                "snac_onnx": snac_onnx.__version__,
                **{dist: _version(dist) for dist in ("torch", "snac", "onnx", "onnxscript", "onnxruntime")},
                "python": platform.python_version(),
            },
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "notes": loaded.notes,
        }
    )
    return manifest


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def export_model(
    loaded: LoadedModel,
    out_dir: Path,
    *,
    parity_lengths: list[int] | None = None,
    precisions: tuple[str, ...] = (),
    log: logging.Logger | None = None,
) -> dict[str, Any]:
    """Export ``loaded`` into ``out_dir`` and check parity; returns the manifest.

    ``precisions`` (``int8``, ``fp16``) adds reduced-precision graphs, listed
    in the manifest under ``variants`` with their measured error and speed.

    Work happens in ``<out_dir>.partial`` and replaces ``out_dir`` only once
    parity passed. On a parity failure the files stay in ``<out_dir>.failed``
    for inspection and :class:`ParityError` is raised.
    """
    log = log or logging.getLogger("export")
    config = ModelConfig.from_json(loaded.config)
    out_dir = Path(out_dir)
    work = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if loaded.random_init:
        log.warning(RANDOM_INIT_WARNING)
    start = time.perf_counter()
    with _stage(log, start, f"{loaded.name}: exporting the encoder, decoder and stream graphs (torch.onnx)"):
        graphs = export_graphs(loaded.model, loaded.config, work)
    export_seconds = time.perf_counter() - start
    manifest = build_manifest(loaded, config, work, graphs)
    manifest["export_seconds"] = round(export_seconds, 2)
    _write_json(work / MANIFEST_FILE, manifest)
    parity_start = time.perf_counter()
    with _stage(log, start, f"{loaded.name}: checking the graphs against PyTorch (parity)"):
        report = measure_parity(loaded.model, work, lengths=parity_lengths)
    report["seconds"] = round(time.perf_counter() - parity_start, 2)
    manifest["parity"] = report
    _write_json(work / MANIFEST_FILE, manifest)
    log.info("%s: %s", loaded.name, summarize_parity(report))
    log.debug("parity for %s:\n%s", loaded.name, format_parity(report))
    if not report["passed"]:
        failed = out_dir.with_name(out_dir.name + ".failed")
        shutil.rmtree(failed, ignore_errors=True)
        work.rename(failed)
        raise ParityError(f"{loaded.name}: parity against PyTorch failed; files kept in {failed}")
    if precisions:
        from .precision import measure_variant, write_variant

        with _stage(log, start, f"{loaded.name}: writing the {', '.join(precisions)} variant(s)"):
            manifest["variants"] = {p: write_variant(work, p) for p in precisions}
        _write_json(work / MANIFEST_FILE, manifest)
        for precision in precisions:
            with _stage(log, start, f"{loaded.name}: measuring the {precision} variant against fp32"):
                manifest["variants"][precision]["measured"] = measured = measure_variant(work, precision)
            log.info("%s %s variant: %s", loaded.name, precision, measured)
        _write_json(work / MANIFEST_FILE, manifest)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    work.rename(out_dir)
    return manifest
