"""``snac-onnx``: encode, decode, round-trip audio files, inspect and download models.

Exit codes: 0 ok; 2 refused (bad options or input: one line on stderr saying what and what to
do, and no output file); 1 any other failure (one line on stderr). ``-`` as an input reads
standard input, as an output writes standard output (the summary then goes to stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from . import __version__
from .errors import InvalidArgumentError, InvalidCodesError, MissingDependencyError, SnacOnnxError, install_hint
from .files.atomic import STDIO
from .layouts import LAYOUT_NAMES
from .model.hub import DEFAULT_MODEL

if TYPE_CHECKING:
    from .codec import SnacOnnx

EXIT_OK, EXIT_FAILURE, EXIT_REFUSED = 0, 1, 2
LAYOUTS = list(LAYOUT_NAMES)
PRECISIONS = ["fp32", "int8", "fp32-cl", "fp16"]


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help; the examples in the epilog kept as written."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        self.exit(EXIT_REFUSED, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must be > 0 and finite")
    return value


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {low}")
        return value

    parse.__name__ = f"int >= {low}"
    return parse


def _output_rate(text: str) -> str | int:
    return text if text in ("model", "source") else _int_at_least(1)(text)


EXAMPLES = {
    "encode": """examples:
  snac-onnx encode speech.wav -o speech.npz -m models/snac_24khz
  snac-onnx encode talk.flac -o talk.npz -m models/snac_24khz --mix --resample --layout orpheus""",
    "decode": """examples:
  snac-onnx decode speech.npz -o speech.wav            (the model recorded in the codes file)
  snac-onnx decode speech.npz -o - --raw | aplay -f S16_LE -r 24000 -c 1""",
    "roundtrip": """examples:
  snac-onnx roundtrip speech.wav -o through_snac.wav -m models/snac_24khz
  cat talk.flac | snac-onnx roundtrip - -o - -m models/snac_24khz --resample --mix --output-rate source > out.wav""",
    "info": """examples:
  snac-onnx info
  snac-onnx info -m models/snac_24khz --json""",
    "tokenize": """examples:
  snac-onnx tokenize corpus/ -o tokens/ -m models/snac_24khz --resample --mix
  snac-onnx tokenize 'corpus/**/*.mp3' -o tokens/ -m models/snac_24khz --layout orpheus --retry-errors""",
    "serve": """examples:
  snac-onnx serve -m models/snac_24khz                      (127.0.0.1:8000; WebSocket /v1/stream)
  snac-onnx serve -m models/snac_24khz --host 0.0.0.0 --port 9000 --threads 2 --max-streams 32
  snac-onnx serve -m /shared/models/snac_24khz --ray --replicas 4 --address auto   (on a Ray cluster)""",
    "download": """examples:
  snac-onnx download snac_24khz
  snac-onnx download someone/snac_custom --revision v1""",
}


def _parser(serve_flags: bool = False) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="snac-onnx", description="SNAC neural audio codec on onnxruntime.", formatter_class=_Formatter
    )
    parser.add_argument("--version", action="version", version=f"snac-onnx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, epilog=EXAMPLES[name], formatter_class=_Formatter)

    def model_options(p: argparse.ArgumentParser, default: str | None, default_help: str | None = None) -> None:
        p.add_argument(
            "-m",
            "--model",
            default=default,
            help="model folder (e.g. models/snac_24khz, written by 'python -m export'), short name or hub repo"
            + (f"; default: {default_help}" if default_help else ""),
        )
        p.add_argument("--revision", help="hub revision to pin")
        p.add_argument("--offline", action="store_true", help="never use the network (also HF_HUB_OFFLINE=1)")
        p.add_argument("--providers", nargs="+", help="onnxruntime execution providers, in order (default: CPU)")
        p.add_argument(
            "--precision",
            default="fp32",
            choices=PRECISIONS,
            help="which graphs of the export to run: fp32, int8 (CPU: channels-last, int8 dense layers), "
            "fp32-cl (channels-last fp32), fp16 (GPU); the export must hold them",
        )
        p.add_argument("--json", action="store_true", help="print a JSON summary")

    def run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--threads", type=_int_at_least(0), default=0, help="onnxruntime threads (0: automatic)")
        p.add_argument(
            "--parallel", type=_int_at_least(1), default=1, help="split long inputs into this many concurrent chunks"
        )
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    def audio_in(p: argparse.ArgumentParser) -> None:
        p.add_argument("input", help="audio file (wav, flac, ogg, mp3: whatever libsndfile reads), or - for stdin")
        p.add_argument("--mix", action="store_true", help="average multi-channel audio to mono")
        p.add_argument("--resample", action="store_true", help="resample to the model's rate (soxr)")
        p.add_argument(
            "--raw-input",
            type=_int_at_least(1),
            metavar="RATE",
            help="the input is headerless signed 16-bit little-endian mono PCM at RATE Hz (e.g. from arecord)",
        )
        p.add_argument(
            "--window-seconds", type=_seconds, help="audio per encoder run (default: the codec's max_chunk_seconds)"
        )

    def audio_out(p: argparse.ArgumentParser, rate_help: str) -> None:
        p.add_argument("-o", "--output", required=True, help="audio file (.wav, .flac, .ogg), or - for WAV on stdout")
        p.add_argument("--raw", action="store_true", help="write headerless signed 16-bit little-endian PCM instead")
        p.add_argument("--output-rate", type=_output_rate, default="model", help=rate_help)
        p.add_argument(
            "--noise",
            choices=["off", "on"],
            default="off",
            help="decoder noise: off gives the same audio every run; on is SNAC's official behaviour (and the "
            "default of the API's decode())",
        )
        p.add_argument("--seed", type=_int_at_least(0), help="seed for --noise on (reproducible noise)")

    enc = command("encode", "audio file -> codes file (.npz)")
    audio_in(enc)
    enc.add_argument("-o", "--output", required=True, help="codes file (.npz), or - for stdout")
    enc.add_argument("--layout", choices=LAYOUTS, help="also store the codes as flat tokens in this layout")
    model_options(enc, DEFAULT_MODEL, DEFAULT_MODEL)
    run_options(enc)

    dec = command("decode", "codes file (.npz) -> audio file")
    dec.add_argument("input", help="codes file written by 'snac-onnx encode', or - for stdin")
    audio_out(dec, "model (the model's rate), source (the rate of the audio that was encoded), or a rate in Hz")
    dec.add_argument("--force", action="store_true", help="decode even if the codes come from another model")
    model_options(dec, None, "the model recorded in the codes file")
    run_options(dec)

    rt = command("roundtrip", "audio file -> codes -> audio file")
    audio_in(rt)
    audio_out(rt, "model (the model's rate), source (the input's rate), or a rate in Hz")
    model_options(rt, DEFAULT_MODEL, DEFAULT_MODEL)
    run_options(rt)

    info = command("info", "versions, providers and a model's manifest")
    model_options(info, None, "none (versions and providers only)")

    tok = command("tokenize", "a corpus of audio files -> Parquet codes, on Ray Data")
    tok.add_argument("input", help="folder (recursive), glob, or .parquet/.jsonl manifest with a 'path' column")
    tok.add_argument("-o", "--output", type=Path, required=True, help="Parquet output folder (reruns skip done files)")
    tok.add_argument("-m", "--model", default=DEFAULT_MODEL, help="model folder, short name or hub repo")
    tok.add_argument(
        "--actors", type=_int_at_least(1), help="encoder actors (default: cluster CPUs // threads per actor)"
    )
    tok.add_argument(
        "--threads-per-actor", type=_int_at_least(1), default=1, help="onnxruntime threads and CPUs per actor"
    )
    tok.add_argument("--address", help="Ray cluster address (default RAY_ADDRESS, else a local Ray)")
    tok.add_argument("--mix", action="store_true", help="average multi-channel audio to mono")
    tok.add_argument("--resample", action="store_true", help="resample to the model's rate (soxr)")
    tok.add_argument("--window-seconds", type=_seconds, help="audio per encoder run (default: the codec's budget)")
    tok.add_argument("--layout", choices=LAYOUTS, help="also store flat tokens")
    tok.add_argument(
        "--retry-errors", action="store_true", help="encode again the files whose row holds an error (replaced)"
    )
    tok.add_argument("--offline", action="store_true", help="never use the network")
    tok.add_argument("-v", "--verbose", action="store_true", help="show Ray's own log lines")
    tok.add_argument("--json", action="store_true", help="print a JSON summary on stdout")

    srv = command("serve", "decode many streams at once over WebSocket and HTTP (FastAPI on uvicorn, or Ray Serve)")
    if serve_flags:  # from the server's settings (written once there; importing them needs the [serve] extra)
        from .serve.settings import add_arguments

        add_arguments(srv)

    dl = command("download", "fetch a model into the hub cache for offline use")
    dl.add_argument("name", help="short name or hub repo id")
    dl.add_argument("--revision", help="hub revision to pin")
    dl.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    return parser


class _Progress:
    """A labelled progress bar in seconds of real (unpadded) audio that ends at exactly 100 %."""

    def __init__(self, label: str, total_samples: int, rate: int, quiet: bool) -> None:
        self.rate, self.total, self.done = rate, total_samples, 0
        self.bar: Any = None
        if not quiet and sys.stderr.isatty():
            with contextlib.suppress(ImportError):
                from tqdm import tqdm

                self.bar = tqdm(
                    total=round(total_samples / rate, 2), desc=label, unit="s", file=sys.stderr, dynamic_ncols=True
                )

    def to(self, samples: int) -> None:
        """Advance to ``samples`` samples done (clipped to the real length)."""
        self.done = min(max(samples, self.done), self.total)
        if self.bar is not None:
            self.bar.n = round(self.done / self.rate, 2)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.to(self.total)
            self.bar.close()


@contextlib.contextmanager
def _progress(label: str, total_samples: int, rate: int, quiet: bool) -> Iterator[_Progress]:
    progress = _Progress(label, total_samples, rate, quiet)
    try:
        yield progress
    finally:
        progress.close()


def _codec(args: argparse.Namespace, model: str) -> SnacOnnx:
    from .codec import SnacOnnx

    return SnacOnnx(
        model,
        providers=args.providers,
        threads=getattr(args, "threads", 0),
        parallel=getattr(args, "parallel", 1),
        revision=args.revision,
        offline=args.offline or None,
        precision=args.precision,
    )


def _encode_file(args: argparse.Namespace, codec: SnacOnnx) -> tuple[list[np.ndarray], Any]:
    """Codes of the input file, and its reader (rates and lengths)."""
    from .files.audio import AudioReader
    from .windowed import encode_reader

    reader = AudioReader(args.input, codec.sample_rate, mix=args.mix, resample=args.resample, raw_rate=args.raw_input)
    with _progress("encode", reader.num_samples, codec.sample_rate, args.quiet) as bar:
        codes = encode_reader(
            codec, reader.read, reader.num_samples, window_seconds=args.window_seconds, on_progress=bar.to
        )
    return codes, reader


def _decode_to_file(
    args: argparse.Namespace, codec: SnacOnnx, codes: list[np.ndarray], length: int, source: tuple[int, int] | None
) -> tuple[int, int]:
    """Decode ``codes`` to ``length`` samples and write them; ``source``: (rate, length) of the encoded input.

    Returns the written (rate, samples).
    """
    from .files.audio import output_format, resample_audio, write_audio
    from .planner import budget_steps

    if args.seed is not None and args.noise != "on":
        raise InvalidArgumentError("--seed applies to --noise on")
    rate = codec.sample_rate
    if args.output_rate == "source":
        if source is None:
            raise InvalidCodesError(
                "--output-rate source: this codes file does not record the source's rate (written by an older "
                "snac-onnx); give a rate in Hz"
            )
        rate = source[0]
    elif isinstance(args.output_rate, int):
        rate = args.output_rate
    output_format(args.output, raw=args.raw)  # a bad output name is refused before the decode, not after
    # Decode through a stream (exact, memory flat in the length, progress per chunk) whose window, chunk plus
    # context, is the codec's budget for one graph run.
    config = codec.config
    budget = budget_steps(codec.max_chunk_seconds, config.samples_per_frame, config.sample_rate)
    frames_multiple = config.frames_multiple
    chunk = codes[0].shape[0] if budget is None else budget - sum(config.decoder_context)
    chunk = max(frames_multiple, chunk // frames_multiple * frames_multiple)
    stream = codec.stream(chunk_frames=chunk, noise=args.noise == "on", seed=args.seed)
    per = config.codes_per_frame
    frames = codes[0].shape[0]
    pieces = []
    done = 0
    with _progress("decode", length, codec.sample_rate, args.quiet) as bar:
        for start in range(0, frames, chunk):
            piece = stream.push_codes([c[start * p : (start + chunk) * p] for c, p in zip(codes, per, strict=True)])
            pieces.append(piece)
            done += piece.size
            bar.to(done)
        pieces.append(stream.flush())
    audio = np.concatenate(pieces)[:length]
    if rate != codec.sample_rate:
        audio = resample_audio(audio, codec.sample_rate, rate)
        if source is not None and rate == source[0]:
            audio = audio[: source[1]]
    write_audio(args.output, audio, rate, raw=args.raw)
    return rate, int(audio.size)


def _emit(args: argparse.Namespace, summary: dict[str, Any], text: str) -> None:
    to_stdout = str(getattr(args, "output", "")) != STDIO  # stdout carries the data otherwise
    stream = sys.stdout if to_stdout else sys.stderr
    print(json.dumps(summary) if getattr(args, "json", False) else text, file=stream)


def cmd_encode(args: argparse.Namespace) -> int:
    from .files.codes import save_codes
    from .layouts import codes_to_tokens

    if str(args.output) != STDIO and Path(args.output).suffix.lower() != ".npz":
        raise InvalidArgumentError(f"output {args.output!r}: a codes file is an .npz (or - for stdout)")
    codec = _codec(args, args.model)
    codes, reader = _encode_file(args, codec)
    meta: dict[str, Any] = {
        "model": codec.name,
        "model_id": codec.model_id,
        "sample_rate": codec.sample_rate,
        "length": reader.num_samples,
        "source_sample_rate": reader.file_rate,
        "source_length": reader.file_frames,
        "layout": args.layout or "per-codebook",
        "source": str(args.input),
    }
    if codec.location.repo_id is None:
        meta["model_folder"] = str(codec.location.folder.resolve())
    tokens = codes_to_tokens(codes, codec.vq_strides, args.layout) if args.layout else None
    save_codes(args.output, codes, meta, tokens)
    summary = {**meta, "output": str(args.output), "frames": [int(c.shape[0]) for c in codes]}
    _emit(
        args,
        summary,
        f"{args.input} -> {args.output}: {reader.num_samples / codec.sample_rate:.2f} s, codes {summary['frames']}",
    )
    return EXIT_OK


def _model_for_codes(meta: dict[str, Any]) -> str:
    """The model a codes file records: its folder when it still exists, else its name."""
    from .model.manifest import MANIFEST_FILE

    folder = meta.get("model_folder")
    if isinstance(folder, str) and (Path(folder) / MANIFEST_FILE).is_file():
        return folder
    return str(meta["model"])


def cmd_decode(args: argparse.Namespace) -> int:
    from .files.codes import load_codes
    from .model.manifest import MANIFEST_FILE, sha256_file

    data = load_codes(args.input)
    codec = _codec(args, args.model or _model_for_codes(data.meta))
    if data.model_id is not None:
        same = data.model_id == codec.model_id
        recorded = data.model_id
    else:  # version 1 files record the manifest file's hash
        recorded = str(data.meta["manifest_sha256"])
        same = recorded == sha256_file(codec.location.folder / MANIFEST_FILE)
    if not same and not args.force:
        raise InvalidCodesError(
            f"{args.input} was encoded with model {data.meta['model']!r} ({recorded[:12]}), not with this one "
            f"({codec.name}, {codec.model_id[:12]}); pass --model with the right one, or --force"
        )
    data.check_model(codec.config, codec.name)
    source = None
    if "source_sample_rate" in data.meta and "source_length" in data.meta:
        source = (int(data.meta["source_sample_rate"]), int(data.meta["source_length"]))
    rate, samples = _decode_to_file(args, codec, data.codes, data.length, source)
    summary = {
        "input": str(args.input),
        "output": str(args.output),
        "seconds": samples / rate,
        "sample_rate": rate,
        "model": codec.name,
    }
    _emit(args, summary, f"{args.input} -> {args.output}: {samples / rate:.2f} s at {rate} Hz")
    return EXIT_OK


def cmd_roundtrip(args: argparse.Namespace) -> int:
    codec = _codec(args, args.model)
    codes, reader = _encode_file(args, codec)
    rate, samples = _decode_to_file(args, codec, codes, reader.num_samples, (reader.file_rate, reader.file_frames))
    summary = {
        "input": str(args.input),
        "output": str(args.output),
        "seconds": samples / rate,
        "sample_rate": rate,
        "model": codec.name,
    }
    _emit(args, summary, f"{args.input} -> {args.output}: {samples / rate:.2f} s through {codec.name}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    """Versions, providers and a model's manifest. Without onnxruntime it reports what it can (versions, the
    manifest), says what is missing, and exits 2 as the other commands do without it."""
    from .model.kernels import snake_library, unfused_message
    from .model.sessions import conflicting_runtime_packages, onnxruntime

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    try:
        ort = onnxruntime()
    except MissingDependencyError:
        ort = None  # reported below, after what can be told without it
    summary: dict[str, Any] = {
        "snac_onnx": __version__,
        "onnxruntime": ort.__version__ if ort is not None else None,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "onnxruntime_packages": conflicting_runtime_packages(),
        "available_providers": ort.get_available_providers() if ort is not None else [],
        "fused_snake_kernel": str(library) if (library := snake_library()) else None,
        "optional": {d: version(d) for d in ("soundfile", "soxr", "tqdm", "huggingface_hub")},
    }
    lines = [f"{k}: {v}" for k, v in summary.items()]
    if ort is None:
        lines[1] = f"onnxruntime: NOT INSTALLED ({install_hint('cpu')}; [gpu] for onnxruntime-gpu)"
    if len(summary["onnxruntime_packages"]) > 1:
        lines.append("WARNING: several onnxruntime packages are installed; they shadow each other (often CPU only)")
    if library is None:
        lines.append(f"WARNING: {unfused_message()}")
    if args.model:
        lines += _info_model(args, summary, ort is not None)
    _emit(args, summary, "\n".join(lines))
    if ort is None:
        onnxruntime()  # raises again, after the report: the one error line (exit 2) every command gives without it
    return EXIT_OK


def _info_model(args: argparse.Namespace, summary: dict[str, Any], sessions: bool) -> list[str]:
    """``info``'s lines about ``args.model`` (and its part of ``summary``): from the manifest alone, and with
    ``sessions`` (onnxruntime installed) from the decoder's session too."""
    from .model.hub import resolve_model
    from .model.manifest import load_manifest, warn_random_weights

    codec = _codec(args, args.model).load("decoder") if sessions else None
    if codec is not None:
        manifest, location = codec.manifest, codec.location
    else:
        location = resolve_model(args.model, revision=args.revision, offline=args.offline or None)
        manifest = load_manifest(location.folder)
        warn_random_weights(manifest)
    config = manifest.config
    summary["model"] = {
        "folder": str(location.folder),
        "repo_id": location.repo_id,
        "providers_in_use": codec.active_providers if codec is not None else None,
        "fused_snake": codec.fused_snake if codec is not None else None,
        "manifest": {k: v for k, v in manifest.raw.items() if k != "parity"},
        "parity_passed": manifest.raw.get("parity", {}).get("passed"),
    }
    lines = [
        f"model: {manifest.name} at {location.folder}",
        f"  sample rate {config.sample_rate} Hz, vq_strides {list(config.vq_strides)}, codebook {config.codebook_size}",
    ]
    if codec is not None:
        lines.append(
            f"  providers in use: {codec.active_providers}; fused Snake kernel: {'yes' if codec.fused_snake else 'no'}"
        )
    else:
        lines.append("  providers in use: none (onnxruntime is not installed: the graphs cannot run)")
    precision = args.precision
    layout = manifest.layout(precision)
    summary["model"]["variant"] = {"precision": precision, "layout": layout}
    lines.append(
        f"  graphs in use: {precision} ({layout.replace('_', '-')}); this export holds {', '.join(manifest.precisions)}"
    )
    stream = manifest.stream
    if stream is not None and not manifest.has_stream(precision):
        lines.append(f"  streaming: window mode only (no stream graph at precision {precision})")
    elif stream is None:
        lines.append("  streaming: window mode only (this export has no stream graph; re-export for stateful streams)")
    elif codec is not None:
        first = codec.stream().first_audio_frames
        lines.append(
            f"  streaming: stateful, steps of {stream.step_frames} frame(s), first audio after {first} frames "
            f"({first * config.frame_tokens} tokens), {len(stream.states)} state tensors"
        )
    else:
        lines.append(
            f"  streaming: stateful, steps of {stream.step_frames} frame(s), {len(stream.states)} state tensors"
        )
    if manifest.random_init:  # stderr has the warning too
        lines.append("  weights: RANDOM (seeded, not a trained checkpoint): its audio is meaningless")
    return lines


def cmd_download(args: argparse.Namespace) -> int:
    from .model.hub import resolve_model
    from .model.manifest import load_manifest, warn_random_weights

    location = resolve_model(args.name, revision=args.revision, offline=False)
    if location.repo_id is None:
        raise SnacOnnxError(f"{args.name} is a local folder; nothing to download")
    manifest = load_manifest(location.folder)
    warn_random_weights(manifest)
    for entry in manifest.files.values():  # every graph of the export (the stream graph where it has one)
        location.fetch(entry["path"])
    summary = {"repo_id": location.repo_id, "folder": str(location.folder), "name": manifest.name}
    _emit(args, summary, f"{location.repo_id} -> {location.folder}")
    return EXIT_OK


def cmd_tokenize(args: argparse.Namespace) -> int:
    try:
        import ray  # noqa: F401

        from .corpus import tokenize_corpus
    except ImportError as exc:
        raise MissingDependencyError(f"snac-onnx tokenize needs Ray Data: {install_hint('ray')} ({exc})") from exc
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
        verbose=args.verbose,
    )
    data = summary.__dict__
    lines = [
        (
            f"{summary.processed} file(s) encoded ({summary.errors} with errors, {summary.skipped} already done) "
            f"-> {args.output}: {summary.audio_seconds:.1f} s of audio in {summary.wall_seconds:.1f} s"
        )
    ]
    if summary.options_changed:
        lines.append(
            f"the folder now records {', '.join('--' + o for o in summary.options_changed)} (and the earlier "
            f"options in {args.output / '_snac_onnx_job.json'}): no row already there changes with it"
        )
    lines += _tokenize_failures(args, summary)
    _emit(args, data, "\n".join(lines))
    return EXIT_OK


TOKENIZE_FAILURES_SHOWN = 5


def _tokenize_failures(args: argparse.Namespace, summary: Any) -> list[str]:
    """Lines naming a tokenize run's failed files (a few, then a count), their errors, and the command that redoes
    only them with the options their errors ask for (``--mix``, ``--resample``)."""
    lines = []
    for count, failed, what in (
        (summary.errors, summary.failed, "failed"),
        (summary.earlier_errors, summary.earlier_failed, "failed earlier, skipped"),
    ):
        for path, error in failed[:TOKENIZE_FAILURES_SHOWN]:
            lines.append(f"  {what}: {error}" if repr(path) in error else f"  {what}: {path}: {error}")
        if count > TOKENIZE_FAILURES_SHOWN:
            lines.append(
                f"  ... and {count - TOKENIZE_FAILURES_SHOWN} more (every error is in the 'error' column of the rows)"
            )
    if summary.errors or summary.earlier_errors:
        argv = [a for a in args.argv if a != "--retry-errors"]
        errors = [e for _, e in (*summary.failed, *summary.earlier_failed)]
        fixes = [f for f in ("--mix", "--resample") if f not in argv and any(f in e for e in errors)]  # the fix named
        command = shlex.join(["snac-onnx", *argv, "--retry-errors", *fixes])
        if fixes:
            lines.append(f"to redo only the failed files with {' '.join(fixes)}: {command}")
        else:
            lines.append(f"to redo only the failed files (once fixed): {command}")
    return lines


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve
    from .serve.settings import settings_from_arguments

    settings = settings_from_arguments(args)
    if settings.ray:
        from .serve.ray import run_on_ray

        run_on_ray(settings)
    else:
        serve(settings)
    return EXIT_OK


COMMANDS = {
    "encode": cmd_encode,
    "decode": cmd_decode,
    "roundtrip": cmd_roundtrip,
    "info": cmd_info,
    "download": cmd_download,
    "tokenize": cmd_tokenize,
    "serve": cmd_serve,
}


@contextlib.contextmanager
def _warnings_as_lines(command: str) -> Iterator[None]:
    """While a command runs, the package's warnings about the model (random weights: its audio is meaningless)
    are one line each on stderr, ``snac-onnx COMMAND: warning: ...``, instead of going to the root logger."""
    import logging

    from .model.manifest import logger

    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"snac-onnx {command}: warning: %(message)s"))
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    serving = next((a for a in argv if not a.startswith("-")), None) == "serve"
    try:  # the serve command's flags come from its settings, which need the [serve] extra: imported only for it
        parser = _parser(serve_flags=serving)
    except MissingDependencyError as exc:
        print(f"snac-onnx serve: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    args = parser.parse_args(argv)
    args.argv = argv  # as given: tokenize's hint to redo the failed files repeats it
    try:
        with _warnings_as_lines(args.command):
            return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("snac-onnx: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except SnacOnnxError as exc:
        print(f"snac-onnx {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"snac-onnx {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # one line, not a traceback; SNAC_ONNX_DEBUG=1 re-raises
        if os.environ.get("SNAC_ONNX_DEBUG"):
            raise
        print(
            f"snac-onnx {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(a bug: please report it; SNAC_ONNX_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
