"""``snac-onnx``: encode, decode, round-trip audio files, inspect and download models.

Exit codes: 0 ok, 1 failure (one line on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .errors import InvalidArgumentError, MissingDependencyError, SnacOnnxError
from .hub import DEFAULT_MODEL

if TYPE_CHECKING:
    from .codec import SnacOnnx

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snac-onnx", description="SNAC neural audio codec on onnxruntime.")
    parser.add_argument("--version", action="version", version=f"snac-onnx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, model_default: str | None = DEFAULT_MODEL) -> None:
        p.add_argument(
            "-m", "--model", default=model_default, help=f"folder, short name or hub repo (default {model_default})"
        )
        p.add_argument("--revision", help="hub revision to pin")
        p.add_argument("--offline", action="store_true", help="never use the network (also HF_HUB_OFFLINE=1)")
        p.add_argument("--providers", nargs="+", help="onnxruntime execution providers, in order (default CPU)")
        p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: automatic)")
        p.add_argument(
            "--parallel", type=int, default=1, help="split long inputs into this many concurrent chunks (exact)"
        )
        p.add_argument("--precision", default="fp32", help="graph precision from the export (fp32, int8, fp16)")
        p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    def audio_in(p: argparse.ArgumentParser) -> None:
        p.add_argument("input", type=Path, help="audio file (wav, flac, ogg)")
        p.add_argument("--mix", action="store_true", help="average multi-channel audio to mono")
        p.add_argument("--resample", action="store_true", help="resample to the model's rate (soxr)")
        p.add_argument("--window-seconds", type=float, help="audio per encoder run (default: the codec's 5 s budget)")

    def noise(p: argparse.ArgumentParser) -> None:
        p.add_argument("--noise", choices=["off", "on"], default="off", help="decoder noise (on = official behaviour)")
        p.add_argument("--seed", type=int, help="seed for --noise on")

    enc = sub.add_parser("encode", help="audio file -> codes .npz")
    audio_in(enc)
    enc.add_argument("-o", "--output", type=Path, required=True, help="codes file (.npz)")
    enc.add_argument("--layout", choices=["interleaved", "codebook_major", "orpheus"], help="also store flat tokens")
    common(enc)

    dec = sub.add_parser("decode", help="codes .npz -> audio file")
    dec.add_argument("input", type=Path, help="codes file written by 'snac-onnx encode'")
    dec.add_argument("-o", "--output", type=Path, required=True, help="audio file (.wav, .flac, .ogg)")
    dec.add_argument(
        "--force", action="store_true", help="decode even if the model's manifest differs from the encoder's"
    )
    noise(dec)
    common(dec, model_default=None)

    rt = sub.add_parser("roundtrip", help="audio file -> codes -> audio file")
    audio_in(rt)
    rt.add_argument("-o", "--output", type=Path, required=True, help="audio file (.wav, .flac, .ogg)")
    noise(rt)
    common(rt)

    info = sub.add_parser("info", help="versions, providers and a model's manifest")
    common(info, model_default=None)

    tok = sub.add_parser("tokenize", help="a corpus of audio files -> Parquet codes, on Ray Data")
    tok.add_argument("input", help="folder (recursive), glob, or .parquet/.jsonl manifest with a 'path' column")
    tok.add_argument("-o", "--output", type=Path, required=True, help="Parquet output folder (reruns skip done files)")
    tok.add_argument(
        "-m", "--model", default=DEFAULT_MODEL, help=f"folder, short name or hub repo (default {DEFAULT_MODEL})"
    )
    tok.add_argument("--actors", type=int, help="encoder actors (default: cluster CPUs // threads per actor)")
    tok.add_argument("--threads-per-actor", type=int, default=1, help="onnxruntime threads and CPUs per actor")
    tok.add_argument("--address", help="Ray cluster address (default RAY_ADDRESS, else a local Ray)")
    tok.add_argument("--mix", action="store_true", help="average multi-channel audio to mono")
    tok.add_argument("--resample", action="store_true", help="resample to the model's rate (soxr)")
    tok.add_argument("--window-seconds", type=float, help="audio per encoder run (default: the codec's 5 s budget)")
    tok.add_argument("--layout", choices=["interleaved", "codebook_major", "orpheus"], help="also store flat tokens")
    tok.add_argument("--retry-errors", action="store_true", help="encode again files whose earlier row has an error")
    tok.add_argument("--offline", action="store_true", help="never use the network")
    tok.add_argument("--json", action="store_true", help="print a JSON summary on stdout")

    dl = sub.add_parser("download", help="fetch a model into the hub cache for offline use")
    dl.add_argument("name", help="short name or hub repo id")
    dl.add_argument("--revision", help="hub revision to pin")
    dl.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    return parser


@contextlib.contextmanager
def _progress(total: float, unit: str, quiet: bool) -> Iterator[Any]:
    bar = None
    if not quiet and sys.stderr.isatty():
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            bar = None
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


def _codec(args: argparse.Namespace, model: str) -> SnacOnnx:
    from .codec import SnacOnnx

    return SnacOnnx(
        model,
        providers=args.providers,
        threads=args.threads,
        parallel=args.parallel,
        revision=args.revision,
        offline=args.offline or None,
        precision=args.precision,
    )


def _encode_file(args: argparse.Namespace, codec: SnacOnnx) -> tuple[list[np.ndarray], int]:
    from .audio_io import AudioReader
    from .windowed import encode_reader

    reader = AudioReader(args.input, codec.sample_rate, mix=args.mix, resample=args.resample)
    done = 0
    with _progress(round(reader.seconds, 2), "s", args.quiet) as bar:

        def progress(samples: int) -> None:
            nonlocal done
            if bar is not None:
                bar.update(round((samples - done) / codec.sample_rate, 2))
            done = samples

        codes = encode_reader(
            codec, reader.read, reader.num_samples, window_seconds=args.window_seconds, on_progress=progress
        )
    return codes, reader.num_samples


def _decode_to_file(args: argparse.Namespace, codec: SnacOnnx, codes: list[np.ndarray], length: int) -> None:
    from .audio_io import write_audio_atomic
    from .planner import budget_steps

    if args.seed is not None and args.noise != "on":
        raise InvalidArgumentError("--seed applies to --noise on")
    # Decode through a stream (exact, memory flat in the length, progress per chunk) whose window, chunk plus
    # context, is the codec's budget for one graph run.
    config = codec.config
    budget = budget_steps(codec.runner.max_chunk_seconds, config.samples_per_frame, config.sample_rate)
    frames_multiple = config.frames_multiple
    chunk = codes[0].shape[0] if budget is None else budget - sum(config.decoder_context)
    chunk = max(frames_multiple, chunk // frames_multiple * frames_multiple)
    stream = codec.stream(chunk_frames=chunk, noise=args.noise == "on", seed=args.seed)
    per = config.codes_per_frame
    frames = codes[0].shape[0]
    pieces = []
    with _progress(round(frames * codec.samples_per_frame / codec.sample_rate, 2), "s", args.quiet) as bar:
        for start in range(0, frames, chunk):
            piece = stream.push_codes([c[start * p : (start + chunk) * p] for c, p in zip(codes, per, strict=True)])
            pieces.append(piece)
            if bar is not None:
                bar.update(round(piece.size / codec.sample_rate, 2))
        pieces.append(stream.flush())
    audio = np.concatenate(pieces)[:length]
    write_audio_atomic(args.output, audio, codec.sample_rate)


def _emit(args: argparse.Namespace, summary: dict[str, Any], text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(summary))
    else:
        print(text)


def cmd_encode(args: argparse.Namespace) -> int:
    from .codes_file import save_codes
    from .layouts import codes_to_tokens

    codec = _codec(args, args.model)
    codes, length = _encode_file(args, codec)
    meta = {
        "model": codec.name,
        "manifest_sha256": codec.manifest_sha256,
        "sample_rate": codec.sample_rate,
        "length": length,
        "layout": args.layout or "per-codebook",
        "source": str(args.input),
    }
    tokens = codes_to_tokens(codes, codec.vq_strides, args.layout) if args.layout else None
    save_codes(args.output, codes, meta, tokens)
    summary = {**meta, "output": str(args.output), "frames": [int(c.shape[0]) for c in codes]}
    _emit(
        args, summary, f"{args.input} -> {args.output}: {length / codec.sample_rate:.2f} s, codes {summary['frames']}"
    )
    return EXIT_OK


def cmd_decode(args: argparse.Namespace) -> int:
    from .codes_file import load_codes

    data = load_codes(args.input)
    codec = _codec(args, args.model or data.meta["model"])
    sha = codec.manifest_sha256
    if sha != data.meta.get("manifest_sha256") and not args.force:
        raise SnacOnnxError(
            f"{args.input.name} was encoded with model {data.meta.get('model')!r} (manifest "
            f"{str(data.meta.get('manifest_sha256'))[:12]}), not with this one ({codec.name}, {sha[:12]}); "
            "pass --model with the right one, or --force"
        )
    if int(data.meta["sample_rate"]) != codec.sample_rate:
        raise SnacOnnxError(f"codes are for {data.meta['sample_rate']} Hz, the model is {codec.sample_rate} Hz")
    length = int(data.meta["length"])
    _decode_to_file(args, codec, data.codes, length)
    summary = {
        "input": str(args.input),
        "output": str(args.output),
        "seconds": length / codec.sample_rate,
        "model": codec.name,
    }
    _emit(args, summary, f"{args.input} -> {args.output}: {length / codec.sample_rate:.2f} s")
    return EXIT_OK


def cmd_roundtrip(args: argparse.Namespace) -> int:
    codec = _codec(args, args.model)
    codes, length = _encode_file(args, codec)
    _decode_to_file(args, codec, codes, length)
    summary = {
        "input": str(args.input),
        "output": str(args.output),
        "seconds": length / codec.sample_rate,
        "model": codec.name,
    }
    _emit(args, summary, f"{args.input} -> {args.output}: {length / codec.sample_rate:.2f} s through {codec.name}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    import onnxruntime as ort

    from .kernels import snake_library
    from .sessions import conflicting_runtime_packages

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    summary: dict[str, Any] = {
        "snac_onnx": __version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "onnxruntime_packages": conflicting_runtime_packages(),
        "available_providers": ort.get_available_providers(),
        "fused_snake_kernel": str(library) if (library := snake_library()) else None,
        "optional": {d: version(d) for d in ("soundfile", "soxr", "tqdm", "huggingface_hub")},
    }
    lines = [f"{k}: {v}" for k, v in summary.items()]
    if len(summary["onnxruntime_packages"]) > 1:
        lines.append("WARNING: several onnxruntime packages are installed; they shadow each other (often CPU only)")
    if args.model:
        codec = _codec(args, args.model)
        codec.load("decoder")
        manifest = codec.manifest.raw
        summary["model"] = {
            "folder": str(codec.location.folder),
            "repo_id": codec.location.repo_id,
            "providers_in_use": codec.active_providers,
            "fused_snake": codec.fused_snake,
            "manifest": {k: v for k, v in manifest.items() if k != "parity"},
            "parity_passed": manifest.get("parity", {}).get("passed"),
        }
        lines.append(f"model: {codec.name} at {codec.location.folder}")
        lines.append(
            f"  sample rate {codec.sample_rate} Hz, vq_strides {list(codec.vq_strides)}, codebook {codec.codebook_size}"
        )
        lines.append(
            f"  providers in use: {codec.active_providers}; fused Snake kernel: {'yes' if codec.fused_snake else 'no'}"
        )
        if codec.manifest.random_init:
            lines.append(f"  WARNING: {manifest.get('WARNING')}")
    _emit(args, summary, "\n".join(lines))
    return EXIT_OK


def cmd_download(args: argparse.Namespace) -> int:
    from .hub import resolve_model
    from .manifest import load_manifest

    location = resolve_model(args.name, revision=args.revision, offline=False)
    if location.repo_id is None:
        raise SnacOnnxError(f"{args.name} is a local folder; nothing to download")
    manifest = load_manifest(location.folder)
    for role in ("encoder", "decoder"):
        location.fetch(manifest.files[role]["path"])
    summary = {"repo_id": location.repo_id, "folder": str(location.folder), "name": manifest.name}
    _emit(args, summary, f"{location.repo_id} -> {location.folder}")
    return EXIT_OK


def cmd_tokenize(args: argparse.Namespace) -> int:
    try:
        import ray  # noqa: F401

        from .corpus import tokenize_corpus
    except ImportError as exc:
        raise MissingDependencyError(
            f"snac-onnx tokenize needs Ray Data: pip install 'snac-onnx[ray]' ({exc})"
        ) from exc
    summary = tokenize_corpus(
        args.input,
        args.output,
        model=args.model,
        actors=args.actors,
        threads_per_actor=args.threads_per_actor,
        address=args.address,
        resample=args.resample,
        mix=args.mix,
        window_seconds=args.window_seconds,
        layout=args.layout,
        retry_errors=args.retry_errors,
        offline=args.offline or None,
    )
    data = summary.__dict__
    _emit(
        args,
        data,
        f"{summary.processed} file(s) encoded ({summary.errors} with errors, {summary.skipped} already done) "
        f"-> {args.output}: {summary.audio_seconds:.1f} s of audio in {summary.wall_seconds:.1f} s",
    )
    return EXIT_OK


COMMANDS = {
    "encode": cmd_encode,
    "decode": cmd_decode,
    "roundtrip": cmd_roundtrip,
    "info": cmd_info,
    "download": cmd_download,
    "tokenize": cmd_tokenize,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("snac-onnx: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except (SnacOnnxError, OSError, ValueError, ImportError) as exc:
        print(f"snac-onnx: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
