"""Exporter sources (local folder, hub cache, offline hub), negative Snake alpha, CLI usage."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("snac")

from snac.layers import Snake1d  # noqa: E402

from export.checkpoint import load_from_folder, load_random_init  # noqa: E402
from export.pipeline import export_model  # noqa: E402
from tests.support import FIXTURES, LONG_HANG_GUARD_S, REPO  # noqa: E402

TINY_CONFIG = FIXTURES / "tiny_24khz.json"


def _save_checkpoint(folder: Path, legacy_weight_norm: bool = False) -> dict:
    loaded = load_random_init(str(TINY_CONFIG), seed=3)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(loaded.config))
    state = loaded.model.state_dict()
    if legacy_weight_norm:  # the pre-parametrization layout: weight_g / weight_v
        state = {
            k.replace("parametrizations.weight.original0", "weight_g").replace(
                "parametrizations.weight.original1", "weight_v"
            ): v
            for k, v in state.items()
        }
    torch.save(state, folder / "pytorch_model.bin")
    return loaded.model.state_dict()


@pytest.mark.parametrize("legacy", [False, True])
def test_local_folder_loads_without_network(tmp_path, monkeypatch, legacy):
    expected = _save_checkpoint(tmp_path / "ckpt", legacy_weight_norm=legacy)

    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    loaded = load_from_folder(tmp_path / "ckpt")
    got = loaded.model.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert loaded.source["kind"] == "folder" and len(loaded.source["checkpoint_sha256"]) == 64
    assert loaded.random_init is False


def test_missing_checkpoint_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin is missing"):
        load_from_folder(tmp_path)


@pytest.mark.slow  # a whole export
def test_negative_snake_alpha_is_exported_exactly(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="export")
    loaded = load_random_init(str(TINY_CONFIG), seed=5)
    snakes = [m for m in loaded.model.modules() if isinstance(m, Snake1d)]
    with torch.no_grad():
        for i, snake in enumerate(snakes):
            if i % 2 == 0:
                snake.alpha.mul_(-torch.rand_like(snake.alpha) * 2)
    assert any((s.alpha < 0).any() for s in snakes)
    manifest = export_model(loaded, tmp_path / "neg")
    assert manifest["parity"]["passed"]
    assert max(r["noise_off"]["max_abs"] for r in manifest["parity"]["rows"]) <= 1e-4
    # The long stages say what they are, with the time since the export began: never a silent stretch.
    stages = [r.getMessage() for r in caplog.records if r.name == "export" and r.getMessage().startswith("[")]
    for stage in ("exporting the encoder, decoder and stream graphs", "checking the graphs against PyTorch"):
        assert any(stage in m and m.endswith(" ...") for m in stages), stages
        assert any(stage in m and re.search(r"done in \d+ s$", m) for m in stages), stages
    assert all(re.match(r"\[\d+:\d\d\] ", m) for m in stages), stages


def test_a_long_stage_says_it_is_still_running(monkeypatch, caplog):
    import threading

    from export import pipeline

    caplog.set_level(logging.INFO, logger="export")
    monkeypatch.setattr(pipeline, "PROGRESS_EVERY_S", 0.01)
    heard = threading.Event()

    class Ear(logging.Handler):
        def emit(self, record):
            if "still running" in record.getMessage():
                heard.set()

    log = logging.getLogger("export")
    ear = Ear()
    log.addHandler(ear)
    try:
        with pipeline._stage(log, time.perf_counter(), "a stage"):
            assert heard.wait(600)  # a hang guard: the first beat comes after 0.01 s
    finally:
        log.removeHandler(ear)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "[0:00] a stage ..." and re.match(r"\[0:\d\d\] a stage: still running \(\d+ s\)", lines[1])
    assert lines[-1].startswith("[0:") and "a stage: done in" in lines[-1]


def _run_export(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "export", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=LONG_HANG_GUARD_S,  # an export alone takes ~2 min; a loaded machine's took 5
    )


@pytest.mark.slow  # a whole export, in a subprocess
def test_hub_source_from_a_cache_laid_out_like_huggingface_hub(tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = tmp_path / "hub" / "models--someone--snac_tiny"
    _save_checkpoint(repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    result = _run_export(["someone/snac_tiny", "-o", str(tmp_path / "out"), "-q"], env, REPO)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "hub"
    assert manifest["source"]["repo_id"] == "someone/snac_tiny"
    assert manifest["source"]["commit"] == commit
    assert manifest["random_init"] is False and "WARNING" not in manifest


def test_unreachable_hub_fails_clearly(tmp_path):
    env = {"HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    result = _run_export(["hubertsiuzdak/snac_24khz", "-o", str(tmp_path / "out")], env, REPO)
    assert result.returncode == 3, result.stderr
    assert "--random-init" in result.stderr and "not in the local cache" in result.stderr
    assert not (tmp_path / "out").exists()


def test_unreachable_hub_fails_fast(tmp_path, monkeypatch):
    """One refused connect, not huggingface_hub's ~23 s of retries (in-process: a subprocess's start under load
    would swamp the difference)."""
    from export.checkpoint import HubUnreachableError, load_from_hub

    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr("snac_onnx.model.hub.hub_unreachable_reason", lambda: "huggingface.co:443 is unreachable (test)")
    start = time.monotonic()
    with pytest.raises(HubUnreachableError, match="is unreachable"):
        load_from_hub("hubertsiuzdak/snac_24khz")
    assert time.monotonic() - start < 20  # far above the ms it takes; below the retries it replaces


@pytest.mark.parametrize(
    "args,message",
    [([], "exactly one of SOURCE or --random-init"), (["--random-init", "24khz", "--revision", "x"], "hub sources only")],
)
def test_cli_usage_errors(tmp_path, args, message):
    result = _run_export(args, {}, REPO)
    assert result.returncode == 2 and message in result.stderr


def test_cli_rejects_unknown_source(tmp_path):
    result = _run_export(["not a repo"], {}, REPO)
    assert result.returncode == 2 and "neither a folder" in result.stderr

