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

PRECISIONS = ("int8", "fp32-cl", "fp16")

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


def _fail(work: Path, out_dir: Path, why: str) -> None:
    """Keep the files in ``<out_dir>.failed`` and raise :class:`ParityError`."""
    failed = out_dir.with_name(out_dir.name + ".failed")
    shutil.rmtree(failed, ignore_errors=True)
    work.rename(failed)
    raise ParityError(f"{why}; files kept in {failed}")


def _file_entry(folder: Path, name: str) -> dict[str, Any]:
    path = folder / name
    return {"path": name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def failed_variants(variants: dict[str, dict[str, Any]]) -> list[str]:
    """The variants whose check failed (an export holding one fails)."""
    return [p for p, v in variants.items() if not v.get("parity", {}).get("passed", True)]


def write_variants(
    loaded: LoadedModel, config: ModelConfig, folder: Path, precisions: tuple[str, ...], log: logging.Logger
) -> dict[str, dict[str, Any]]:
    """Write the variants' graphs into ``folder`` and check each; returns the manifest's ``variants``.

    ``int8`` and ``fp32-cl``: the channels-last decoder and stream graphs (:mod:`export.cl_export`; int8 encodes with
    the fp32 encoder). ``fp32-cl`` is checked against PyTorch with the fp32 limits (:mod:`export.parity`), ``int8``
    against the fp32 graphs with its own gate (:mod:`export.int8_parity`): each entry's ``parity.passed``.
    ``fp16``: encoder and decoder for GPU providers (:mod:`export.precision`), measured, not gated.
    """
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise ValueError(f"precisions must be among {PRECISIONS}, got {unknown}")
    variants: dict[str, dict[str, Any]] = {}
    channels_last = tuple(p for p in PRECISIONS if p in precisions and p != "fp16")
    if channels_last:
        from .cl_export import write_channels_last
        from .graphs import prepare_for_export
        from .int8_parity import measure_int8, summarize_int8

        start = time.perf_counter()
        written = write_channels_last(prepare_for_export(loaded.model, loaded.config), config, folder, channels_last)
        log.info("wrote the channels-last graphs (%s) in %.1f s", ", ".join(channels_last), time.perf_counter() - start)
        for precision, info in written.items():
            variants[precision] = {
                "layout": info["layout"],
                **{role: _file_entry(folder, name) for role, name in info["roles"].items()},
                **({"passes": info["passes"]} if "passes" in info else {}),
            }
        _write_json(folder / MANIFEST_FILE, {**json.loads((folder / MANIFEST_FILE).read_text()), "variants": variants})
        for precision in channels_last:
            start = time.perf_counter()
            if precision == "int8":
                report = measure_int8(folder, precision)
                log.info("%s: %s", loaded.name, summarize_int8(report))
            else:
                report = measure_parity(loaded.model, folder, lengths=None, precision=precision)
                log.info("%s %s: %s", loaded.name, precision, summarize_parity(report))
            report["seconds"] = round(time.perf_counter() - start, 2)
            variants[precision]["parity"] = report
    if "fp16" in precisions:
        from .precision import measure_variant, write_variant

        variants["fp16"] = {"layout": "channels_first", **write_variant(folder, "fp16")}
        _write_json(folder / MANIFEST_FILE, {**json.loads((folder / MANIFEST_FILE).read_text()), "variants": variants})
        variants["fp16"]["measured"] = measured = measure_variant(folder, "fp16")
        log.info("%s fp16 variant: %s", loaded.name, measured)
    return variants


def export_model(
    loaded: LoadedModel,
    out_dir: Path,
    *,
    parity_lengths: list[int] | None = None,
    precisions: tuple[str, ...] = (),
    log: logging.Logger | None = None,
) -> dict[str, Any]:
    """Export ``loaded`` into ``out_dir`` and check parity; returns the manifest.

    ``precisions`` (``int8``, ``fp32-cl``, ``fp16``) adds other graphs, listed in the manifest under
    ``variants`` with their measured error (:func:`write_variants`); a variant that fails its gate fails the export.

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
        _fail(work, out_dir, f"{loaded.name}: parity against PyTorch failed")
    if precisions:
        with _stage(log, start, f"{loaded.name}: writing and checking the {', '.join(precisions)} variant(s)"):
            manifest["variants"] = write_variants(loaded, config, work, precisions, log)
        _write_json(work / MANIFEST_FILE, manifest)
        failed = failed_variants(manifest["variants"])
        if failed:
            _fail(work, out_dir, f"{loaded.name}: the {', '.join(failed)} variant(s) failed their parity gate")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    work.rename(out_dir)
    return manifest
