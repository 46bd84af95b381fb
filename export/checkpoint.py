"""Where SNAC weights come from: the Hugging Face Hub, a local folder, or seeded random weights."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from snac import SNAC

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "pytorch_model.bin"
OFFICIAL_CONFIGS = Path(__file__).with_name("official_configs.json")


class HubUnreachableError(RuntimeError):
    """The Hugging Face Hub could not be reached and the files are not cached."""


@dataclass
class LoadedModel:
    """An official-code SNAC model in eval mode, and where its weights came from.

    Attributes:
        model: ``snac.SNAC`` with the checkpoint's weights (weight norm still parametrized).
        name: short name used for the output folder (``snac_24khz``).
        config: the SNAC ``config.json`` content.
        source: provenance for the manifest (kind, repo/revision/folder, sha256, seed).
        random_init: True when the weights are seeded random, not a trained checkpoint.
    """

    model: SNAC
    name: str
    config: dict[str, Any]
    source: dict[str, Any]
    random_init: bool = False
    notes: list[str] = field(default_factory=list)


def official_configs() -> dict[str, dict[str, Any]]:
    """``{name: {"hub_repo": ..., "config": {...}}}`` for snac_24khz, snac_32khz, snac_44khz."""
    configs: dict[str, dict[str, Any]] = json.loads(OFFICIAL_CONFIGS.read_text())["models"]
    return configs


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _build(config: dict[str, Any], weights: Path) -> SNAC:
    model = SNAC(**config)
    # weights_only: a checkpoint is data, never code. Old checkpoints with weight_g/weight_v
    # are converted by torch's weight-norm load hook.
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_from_folder(folder: str | Path, name: str | None = None) -> LoadedModel:
    """Load ``config.json`` + ``pytorch_model.bin`` from a local folder; never touches the network."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; a checkpoint folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    config = json.loads(config_path.read_text())
    return LoadedModel(
        model=_build(config, weights_path),
        name=name or folder.resolve().name,
        config=config,
        source={"kind": "folder", "folder": str(folder.resolve()), "checkpoint_sha256": _sha256(weights_path)},
    )


def load_from_hub(repo_id: str, revision: str | None = None, name: str | None = None) -> LoadedModel:
    """Download (or take from the local cache) ``repo_id`` via huggingface_hub and load it.

    Raises:
        HubUnreachableError: the hub cannot be reached and the files are not cached.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from snac_onnx.model.hub import hub_unreachable_reason

    def fetch(local_only: bool) -> tuple[Path, Path]:
        return (
            Path(hf_hub_download(repo_id, CONFIG_FILE, revision=revision, local_files_only=local_only)),
            Path(hf_hub_download(repo_id, WEIGHTS_FILE, revision=revision, local_files_only=local_only)),
        )

    try:
        try:
            config_path, weights_path = fetch(local_only=True)  # the cache first: no network at all
        except LocalEntryNotFoundError:
            reason = hub_unreachable_reason()  # one TCP connect, instead of ~25 s of retries
            if reason is not None:
                raise LocalEntryNotFoundError(reason) from None
            config_path, weights_path = fetch(local_only=False)
    except LocalEntryNotFoundError as exc:
        raise HubUnreachableError(
            f"cannot download {repo_id} (revision {revision or 'main'}) from the Hugging Face Hub and it is not "
            f"in the local cache: {exc}. Pass a local checkpoint folder instead, or --random-init for a "
            "seeded model that is NOT the trained one"
        ) from exc
    # hf_hub_download returns .../snapshots/<commit>/<file>: record the commit actually used.
    commit = config_path.parent.name
    config = json.loads(config_path.read_text())
    return LoadedModel(
        model=_build(config, weights_path),
        name=name or repo_id.rsplit("/", 1)[-1],
        config=config,
        source={
            "kind": "hub",
            "repo_id": repo_id,
            "revision": revision or "main",
            "commit": commit,
            "checkpoint_sha256": _sha256(weights_path),
        },
    )


def load_random_init(name_or_config: str, seed: int) -> LoadedModel:
    """An official (or custom, from a JSON file) config with seeded random weights.

    The codebooks are then redrawn from the model's own encoder latents (see
    :mod:`export.codebooks`) so that codes are diverse: a freshly initialised SNAC
    maps almost everything to a handful of codes. The audio such a model makes
    is not meaningful; it exists to test the export and the runtime.
    """
    from .codebooks import codebooks_from_latents

    configs = official_configs()
    key = name_or_config if name_or_config in configs else f"snac_{name_or_config}"
    if key in configs:
        config = dict(configs[key]["config"])
        name = key
    else:
        path = Path(name_or_config)
        if not path.is_file():
            raise FileNotFoundError(
                f"--random-init takes one of {sorted(configs)} (or 24khz/32khz/44khz) or a config JSON file; "
                f"got {name_or_config!r}"
            )
        config = json.loads(path.read_text())
        name = path.stem
    torch.manual_seed(seed)
    model = SNAC(**config).eval()
    stats = codebooks_from_latents(model, seed=seed)
    return LoadedModel(
        model=model,
        name=name,
        config=config,
        source={"kind": "random-init", "config": key if key in configs else str(name_or_config), "seed": seed},
        random_init=True,
        notes=[f"codebooks redrawn from encoder latents: {stats}"],
    )
