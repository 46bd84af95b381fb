"""``python -m export``: export SNAC checkpoints to ONNX folders under ``models/``.

Exit codes: 0 ok, 1 export or parity failure, 2 usage, 3 hub unreachable.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

EXIT_FAILURE, EXIT_USAGE, EXIT_HUB_UNREACHABLE = 1, 2, 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description=(
            "Export a SNAC checkpoint to ONNX (encoder.onnx, decoder.onnx, manifest.json) and check it "
            "against PyTorch. SOURCE is a Hugging Face repo id (hubertsiuzdak/snac_24khz), a short official "
            "name (snac_24khz) or a local folder with config.json and pytorch_model.bin."
        ),
    )
    parser.add_argument("source", nargs="?", help="hub repo id, official short name, or local checkpoint folder")
    parser.add_argument("--revision", help="hub revision (branch, tag or commit) to export")
    parser.add_argument(
        "--random-init",
        metavar="CONFIG",
        help="instead of a checkpoint: the official config 24khz, 32khz or 44khz (or a config JSON file) "
        "with seeded RANDOM weights; for machines without hub access. The audio is NOT meaningful.",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-init (default 0)")
    parser.add_argument("-o", "--output", type=Path, help="output folder (default models/<name>)")
    parser.add_argument("--name", help="model name in the manifest and default folder")
    parser.add_argument(
        "--precision", nargs="+", choices=["int8", "fp32-cl", "fp16"], default=[],
        help="also write other graphs: int8 (CPU: channels-last, int8 dense layers; gated against fp32), fp32-cl "
        "(the channels-last graphs in fp32; checked against PyTorch), fp16 (GPU; measured)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="also the full parity table and torch's notes")
    args = parser.parse_args(argv)
    if (args.source is None) == (args.random_init is None):
        parser.error("give exactly one of SOURCE or --random-init CONFIG")
    if args.revision and args.random_init:
        parser.error("--revision applies to hub sources only")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(name)s: %(message)s")
    log = logging.getLogger("export")

    from .checkpoint import HubUnreachableError, load_from_folder, load_from_hub, load_random_init, official_configs
    from .pipeline import ParityError, export_model

    # The runtime's warning about a random-weight model (parity loads the graphs): this export says it itself.
    logging.getLogger("snac_onnx.model.manifest").setLevel(logging.ERROR)
    if not args.verbose:  # after the imports: torch sets its loggers' levels when it is imported
        for noisy in ("torch", "torch.onnx", "torch.onnx._internal.exporter._registration", "onnx_ir", "onnxscript"):
            logging.getLogger(noisy).setLevel(logging.ERROR)

    log.info("loading %s ...", f"seeded random weights ({args.random_init})" if args.random_init else args.source)
    try:
        if args.random_init:
            loaded = load_random_init(args.random_init, args.seed)
            if args.name:
                loaded.name = args.name
        elif Path(args.source).is_dir():
            loaded = load_from_folder(args.source, name=args.name)
        else:
            official = official_configs()
            repo = official[args.source]["hub_repo"] if args.source in official else args.source
            if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
                log.error(
                    "%r is neither a folder, an official name (%s) nor a hub repo id (owner/name)",
                    args.source,
                    ", ".join(sorted(official)),
                )
                return EXIT_USAGE
            loaded = load_from_hub(repo, revision=args.revision, name=args.name)
        out = args.output or Path("models") / loaded.name
        manifest = export_model(loaded, out, precisions=tuple(args.precision), log=log)
    except HubUnreachableError as exc:
        log.error("%s", exc)
        return EXIT_HUB_UNREACHABLE
    except (ParityError, FileNotFoundError, ValueError, RuntimeError) as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    sizes = {role: f"{info['bytes'] / 1e6:.1f} MB" for role, info in manifest["files"].items()}
    log.info("wrote %s (%s); export %.1f s, parity %.1f s", out, sizes, manifest["export_seconds"], manifest["parity"]["seconds"])
    if manifest["random_init"]:
        log.warning("%s holds RANDOM weights (see manifest WARNING); do not use its audio", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
