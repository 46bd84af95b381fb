"""Export the official checkpoints, check parity, and publish the folders.

``python -m export.publish`` is what the CI export job (.github/workflows/export.yml)
runs. It publishes to the hub repos in ``--repo`` (default: snac_onnx.model.hub.MODEL_REPOS)
with ``huggingface_hub.HfApi.upload_folder`` and the token in ``HF_TOKEN``. Where the
hub is out of reach the same steps run with ``--random-init`` and ``--target-dir``:
each folder is then copied to ``TARGET_DIR/<repo id>/`` instead of uploaded.
Before publishing, each exported folder is loaded back with snac_onnx (checksums,
names) and must carry a passing parity report.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

from snac_onnx import SnacOnnx
from snac_onnx.model.hub import MODEL_REPOS

from .checkpoint import load_from_hub, load_random_init, official_configs
from .pipeline import export_model

log = logging.getLogger("export.publish")


def verify_folder(folder: Path) -> None:
    """Load the folder with the runtime (checksums, graph names) and require passing parity."""
    with SnacOnnx(folder) as codec:
        codec.load()  # every graph of the export
        passed = codec.manifest.raw.get("parity", {}).get("passed")
    if not passed:
        raise RuntimeError(f"{folder}: no passing parity report in the manifest")


def publish(folder: Path, repo_id: str, target_dir: Path | None, revision_note: str) -> str:
    if target_dir is not None:
        dest = target_dir / repo_id
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(folder, dest)
        return str(dest)
    from huggingface_hub import HfApi

    token = os.environ.get("HF_TOKEN")
    if not token:
        raise RuntimeError("HF_TOKEN is not set; the export job reads it from a repository secret")
    api = HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=revision_note)
    return str(info)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.publish", description=__doc__)
    parser.add_argument(
        "--models", nargs="+", default=sorted(official_configs()),
        help="official names to export (with --random-init also a config JSON file, named by its stem)",
    )
    parser.add_argument("--repo", action="append", default=[], metavar="NAME=OWNER/REPO", help="target repo per model")
    parser.add_argument("--random-init", action="store_true", help="seeded random weights instead of the hub checkpoints")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-dir", type=Path, help="copy folders here instead of uploading to the hub")
    parser.add_argument("--work-dir", type=Path, default=Path("models"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for noisy in ("torch.onnx", "onnx_ir", "onnxscript"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if args.random_init and args.target_dir is None:
        parser.error("--random-init exports are never uploaded to the hub; pass --target-dir")
    repos = dict(MODEL_REPOS)
    for item in args.repo:
        name, _, repo = item.partition("=")
        repos[name] = repo
    official = official_configs()
    for model in args.models:
        custom = args.random_init and model.endswith(".json") and Path(model).is_file()
        if model not in official and not custom:
            parser.error(f"{model} is not one of {sorted(official)} (or, with --random-init, a config JSON file)")
        name = Path(model).stem if custom else model
        loaded = load_random_init(model, args.seed) if args.random_init else load_from_hub(official[model]["hub_repo"])
        loaded.name = name
        folder = args.work_dir / name
        manifest = export_model(loaded, folder, log=log)
        verify_folder(folder)
        note = f"snac-onnx export of {name} from {manifest['source']}"
        where = publish(folder, repos[name], args.target_dir, note)
        log.info("published %s -> %s", name, where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
