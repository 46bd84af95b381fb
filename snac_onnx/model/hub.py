"""Model resolution: a local folder, a short name or a Hugging Face repo id, cache first.

* A path to an existing folder is used as is (no network).
* A short name (``snac_24khz``, ``snac_32khz``, ``snac_44khz``) maps to the repo
  the project publishes to, through :data:`MODEL_REPOS` (edit it, or pass
  ``repos=``, to point at your own repos).
* Anything shaped ``owner/name`` is a hub repo id.

Hub files are looked up in the local huggingface_hub cache first; the network is
used only for what is missing, and never when ``offline=True`` or
``HF_HUB_OFFLINE=1``. huggingface_hub does the transport and the cache. Only
``manifest.json`` is fetched up front; each graph is fetched when its session
is first needed, so a decode-only user never downloads the encoder.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingDependencyError, ModelNotFoundError
from .manifest import MANIFEST_FILE

logger = logging.getLogger(__name__)

__all__ = [
    "MODEL_REPOS",
    "UNPUBLISHED_REPOS",
    "DEFAULT_MODEL",
    "hub_unreachable_reason",
    "ModelLocation",
    "resolve_model",
]

DEFAULT_MODEL = "snac_24khz"
MODEL_REPOS: dict[str, str] = {
    "snac_24khz": "snac-onnx/snac_24khz",
    "snac_32khz": "snac-onnx/snac_32khz",
    "snac_44khz": "snac-onnx/snac_44khz",
}
# The project's own repos that are not on the hub yet: looked up in the cache only, and when missing the
# error says how to make the model instead (never a download that cannot succeed). Empty it once published.
UNPUBLISHED_REPOS: frozenset[str] = frozenset(MODEL_REPOS.values())
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _env_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ModelLocation:
    """Where a model's files are: a local folder, or a hub repo whose files land in the cache.

    Attributes:
        folder: folder holding (or that will hold) the files.
        repo_id: hub repo, or None for a local folder.
        revision: hub revision asked for (None: the default branch).
        offline: never touch the network.
        cache_dir: huggingface_hub cache folder (None: its default).
    """

    folder: Path
    repo_id: str | None = None
    revision: str | None = None
    offline: bool = False
    cache_dir: str | None = None

    def fetch(self, filename: str) -> Path:
        """Path of ``filename``, downloading it (cache first) for hub models.

        Raises:
            ModelNotFoundError: the file is missing (folder), or not cached and
                the hub cannot be used (offline or unreachable).
        """
        if self.repo_id is None:
            return self.folder / filename
        return Path(_hub_file(self.repo_id, filename, self.revision, self.offline, self.cache_dir))


_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")


def hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why the hub's endpoint cannot be reached (one TCP connect), or None if it can or we cannot tell.

    huggingface_hub retries a failing request for about 23 s; this probe makes an
    unreachable hub fail at once. With a proxy configured only huggingface_hub
    can tell, so the probe steps aside.
    """
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return None
    try:
        import socket  # here, not at import: only the network check needs it

        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}:{port} is unreachable ({exc})"


def _hub_file(repo_id: str, filename: str, revision: str | None, offline: bool, cache_dir: str | None) -> str:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError(
            f"loading {repo_id!r} from the hub needs huggingface_hub: pip install huggingface_hub, "
            "or pass a local model folder"
        ) from exc
    try:
        cached: str = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, local_files_only=True)
        logger.debug("hub: %s/%s (revision %s) from the local cache: %s", repo_id, filename, revision, cached)
        return cached
    except LocalEntryNotFoundError:
        if offline:
            raise ModelNotFoundError(
                f"{repo_id}/{filename} (revision {revision or 'default'}) is not in the local cache and offline mode "
                "is on (offline=True or HF_HUB_OFFLINE=1); run 'snac-onnx download "
                f"{repo_id}' on a connected machine first, or pass a local model folder"
            ) from None
    reason = hub_unreachable_reason()
    if reason is not None:
        raise ModelNotFoundError(
            f"{repo_id}/{filename} is not in the local cache and the hub cannot be reached: {reason}. "
            "Pass a local model folder, or run 'snac-onnx download' on a connected machine and copy the cache"
        )
    logger.debug("hub: downloading %s/%s (revision %s)", repo_id, filename, revision)
    try:
        downloaded: str = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir)
        logger.debug("hub: downloaded %s", downloaded)
        return downloaded
    except LocalEntryNotFoundError as exc:
        raise ModelNotFoundError(
            f"cannot download {repo_id}/{filename}: the hub is unreachable and the file is not cached ({exc}). "
            "Pass a local model folder, or download it on a connected machine with 'snac-onnx download'"
        ) from None
    except (EntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise ModelNotFoundError(
            f"cannot fetch {repo_id}/{filename} (revision {revision or 'default'}): {exc}"
        ) from None


def _looks_like_path(model: str | os.PathLike[str]) -> bool:
    """A Path object, or a string that can only be a path (``./x``, ``/x``, ``~/x``, ``a/b/c``, ``models/x``)."""
    if not isinstance(model, str):
        return True
    if model.startswith((".", "/", "~", "\\")) or model.count("/") > 1 or (os.sep != "/" and os.sep in model):
        return True
    first = model.split("/", 1)[0]
    return "/" in model and Path(first).is_dir()


def resolve_model(
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    *,
    revision: str | None = None,
    offline: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    repos: Mapping[str, str] | None = None,
) -> ModelLocation:
    """Resolve ``model`` to a :class:`ModelLocation` and make sure its manifest is local.

    Args:
        model: a folder, a short name from ``repos`` (default :data:`MODEL_REPOS`), or ``owner/name``.
        revision: hub branch, tag or commit to pin.
        offline: never use the network; None follows ``HF_HUB_OFFLINE``.
        cache_dir: huggingface_hub cache folder.
        repos: short-name table to use instead of :data:`MODEL_REPOS`.
    """
    path = Path(model)
    if path.is_dir():
        logger.debug("model %s: a local folder", path)
        return ModelLocation(folder=path)
    name = str(model)
    if path.is_file():
        hint = (
            f"; pass the folder that holds it: {str(path.parent)!r}" if (path.parent / MANIFEST_FILE).is_file() else ""
        )
        raise ModelNotFoundError(
            f"model {name!r} is a file; a model is the folder holding manifest.json, encoder.onnx and "
            f"decoder.onnx{hint}"
        )
    if _looks_like_path(model):
        raise ModelNotFoundError(
            f"model folder {name!r} does not exist; export one with 'python -m export ...', "
            "or pass a short name or hub repo id"
        )
    table = MODEL_REPOS if repos is None else repos
    repo_id = table.get(name, name)
    if not _REPO_ID.match(repo_id):
        raise ModelNotFoundError(
            f"model {name!r} is not a folder, a known name ({', '.join(sorted(table))}) or a hub repo id (owner/name)"
        )
    offline = _env_offline() if offline is None else bool(offline)
    cache = None if cache_dir is None else str(cache_dir)
    logger.debug("model %r: hub repo %s (revision %s, offline %s)", name, repo_id, revision, offline)
    if repo_id in UNPUBLISHED_REPOS:
        try:
            manifest = Path(_hub_file(repo_id, MANIFEST_FILE, revision, True, cache))
        except ModelNotFoundError:
            short = name if name in table else repo_id.rsplit("/", 1)[-1]
            raise ModelNotFoundError(
                f"{repo_id} is not published on the Hugging Face Hub yet, so {name!r} cannot be downloaded. Export "
                f"the model from the official PyTorch weights with 'python -m export {short}' in a snac-onnx checkout "
                f"(it writes models/{short}), then pass that folder: SnacOnnx('models/{short}'), "
                f"or -m models/{short} on the command line"
            ) from None
        return ModelLocation(folder=manifest.parent, repo_id=repo_id, revision=revision, offline=True, cache_dir=cache)
    manifest = Path(_hub_file(repo_id, MANIFEST_FILE, revision, offline, cache))
    return ModelLocation(folder=manifest.parent, repo_id=repo_id, revision=revision, offline=offline, cache_dir=cache)
