"""Model resolution against a cache laid out exactly like huggingface_hub's (no network, no torch)."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from snac_onnx import ModelNotFoundError, SnacOnnx
from snac_onnx.model.hub import MODEL_REPOS, resolve_model
from tests.support import TINY_24, pcm

COMMIT = "a" * 40
OTHER = "b" * 40


def _cache(root: Path, repo: str, files=("manifest.json", "encoder.onnx", "decoder.onnx"), commit=COMMIT, ref="main") -> Path:
    """Lay files out as huggingface_hub does: blobs, snapshots/<commit>/<file> links, refs/<ref>."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo_dir / "blobs").mkdir(exist_ok=True)
    for name in files:
        blob = repo_dir / "blobs" / f"{commit[:8]}-{name}"
        shutil.copyfile(TINY_24 / name, blob)
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def refuse(self, address):
        calls.append(address)
        raise ConnectionRefusedError("network refused by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return calls


def test_short_name_from_cache_without_network(tmp_path, no_network):
    snapshot = _cache(tmp_path, MODEL_REPOS["snac_24khz"])
    codec = SnacOnnx("snac_24khz", cache_dir=tmp_path)  # not offline: cache first means no network needed
    assert codec.location.repo_id == MODEL_REPOS["snac_24khz"]
    assert codec.location.folder == snapshot
    codes = codec.encode(pcm(3000))
    assert codec.decode(codes, length=3000, noise=False).shape == (3000,)
    assert no_network == []


def test_default_model_is_snac_24khz(tmp_path, no_network):
    _cache(tmp_path, MODEL_REPOS["snac_24khz"])
    assert SnacOnnx(cache_dir=tmp_path).location.repo_id == MODEL_REPOS["snac_24khz"]


def test_decode_only_never_needs_the_encoder(tmp_path):
    _cache(tmp_path, "someone/snac_custom", files=("manifest.json", "decoder.onnx"))
    codec = SnacOnnx("someone/snac_custom", cache_dir=tmp_path, offline=True)
    codes = [np.zeros(n, np.int64) for n in (2, 4, 8)]
    assert codec.decode(codes, noise=False).shape == (4096,)
    with pytest.raises(ModelNotFoundError, match="encoder.onnx.*not in the local cache and offline mode"):
        codec.encode(pcm(100))


def test_offline_missing_model_fails_immediately(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError, match="snac-onnx download"):
        SnacOnnx("someone/snac_custom", cache_dir=tmp_path)
    assert time.monotonic() - start < 20  # far above the ms it takes (a loaded machine); below hf's ~23 s of retries
    assert no_network == []


def test_unreachable_hub_fails_fast_without_offline_flag(tmp_path, monkeypatch, no_network):
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError, match="cannot be reached: .*:443 is unreachable"):
        SnacOnnx("someone/snac_custom", cache_dir=tmp_path)
    assert time.monotonic() - start < 20  # far above the ms it takes; huggingface_hub alone retries for ~23 s


def test_revision_pins_a_snapshot(tmp_path, no_network):
    _cache(tmp_path, "someone/snac_custom", commit=COMMIT, ref="main")
    other = _cache(tmp_path, "someone/snac_custom", commit=OTHER, ref="v2")
    location = resolve_model("someone/snac_custom", revision="v2", cache_dir=tmp_path, offline=True)
    assert location.folder == other
    location = resolve_model("someone/snac_custom", revision=OTHER, cache_dir=tmp_path, offline=True)
    assert location.folder == other


def test_repo_table_is_overridable(tmp_path):
    _cache(tmp_path, "mine/snac", files=("manifest.json",))
    location = resolve_model("snac_24khz", repos={"snac_24khz": "mine/snac"}, cache_dir=tmp_path, offline=True)
    assert location.repo_id == "mine/snac"


def test_cached_file_with_wrong_checksum_is_refused(tmp_path):
    snapshot = _cache(tmp_path, "someone/snac_custom")
    blob = (snapshot / "decoder.onnx").resolve()
    data = bytearray(blob.read_bytes())
    data[100] ^= 1
    blob.write_bytes(bytes(data))
    codec = SnacOnnx("someone/snac_custom", cache_dir=tmp_path, offline=True)
    with pytest.raises(Exception, match="sha256"):
        codec.decode([np.zeros(n, np.int64) for n in (1, 2, 4)])


def test_names_that_are_not_models(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a folder, a known name"):
        resolve_model("snac_99khz", offline=True)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model("./models/nothing_here", offline=True)


@pytest.mark.parametrize("name", ["snac_24khz", "snac_44khz", "snac-onnx/snac_32khz"])
def test_unpublished_repos_say_how_to_make_the_model(tmp_path, monkeypatch, no_network, name):
    """The project's repos are not on the hub yet: no circular 'run snac-onnx download', no network tries."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    short = name.rsplit("/", 1)[-1]
    with pytest.raises(ModelNotFoundError, match=f"not published.*python -m export {short}.*-m models/{short}"):
        SnacOnnx(name, cache_dir=tmp_path)
    assert no_network == []


def test_a_graph_file_given_as_the_model_names_its_folder(tmp_path):
    with pytest.raises(ModelNotFoundError, match=f"is a file.*pass the folder that holds it: '{TINY_24}'"):
        SnacOnnx(TINY_24 / "encoder.onnx")
