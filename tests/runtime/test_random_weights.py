"""A model with seeded random weights says so wherever it is loaded: the API logs one WARNING per model and process,
every command of the command line that loads one prints one warning line on stderr (the server's log included)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from snac_onnx import SnacOnnx
from snac_onnx.cli import main
from tests.support import HANG_GUARD_S, RANDOM_WEIGHTS_WARNING, REPO, TINY_24, TINY_44, pcm

sf = pytest.importorskip("soundfile")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and RANDOM_WEIGHTS_WARNING in r.getMessage()]


def _trained(folder: Path) -> Path:
    """Mark the copy of a tiny model as if it held a trained checkpoint (what the warning depends on)."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["random_init"] = False
    manifest.pop("WARNING")
    path.write_text(json.dumps(manifest))
    return folder


def test_the_api_logs_one_warning_per_model_and_process(caplog, tiny24_copy):
    caplog.set_level(logging.WARNING, logger="snac_onnx")
    SnacOnnx(TINY_24)
    warned = _warnings(caplog)
    assert len(warned) == 1 and "tiny_24khz" in warned[0] and "python -m export" in warned[0], warned
    assert caplog.records[0].name == "snac_onnx.model.manifest"
    SnacOnnx(TINY_24).close()
    SnacOnnx(TINY_24).load("decoder")
    assert len(_warnings(caplog)) == 1  # the same model again: no second warning
    SnacOnnx(TINY_44)
    assert len(_warnings(caplog)) == 2 and "tiny_44khz" in _warnings(caplog)[1]
    caplog.clear()
    SnacOnnx(_trained(tiny24_copy))
    assert _warnings(caplog) == []


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "speech.wav"
    sf.write(path, pcm(24000, seed=3), 24000, subtype="FLOAT")
    return path


def _one_warning_line(err: str, command: str) -> None:
    lines = [line for line in err.splitlines() if RANDOM_WEIGHTS_WARNING in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"snac-onnx {command}: warning: ") and "tiny_24khz" in lines[0], lines


@pytest.mark.parametrize("command", ["encode", "decode", "roundtrip", "info"])
def test_each_command_that_loads_it_prints_one_warning_line(tmp_path, capsys, wav, command):
    codes = tmp_path / "speech.npz"
    if command == "decode":
        assert main(["encode", str(wav), "-o", str(codes), "-m", str(TINY_24), "-q"]) == 0
        capsys.readouterr()
        from snac_onnx.model import manifest

        manifest._warned_random.clear()  # a new process, as each command is
    args = {
        "encode": ["encode", str(wav), "-o", str(codes), "-m", str(TINY_24), "-q"],
        "decode": ["decode", str(codes), "-o", str(tmp_path / "out.wav"), "-q"],
        "roundtrip": ["roundtrip", str(wav), "-o", str(tmp_path / "out.wav"), "-m", str(TINY_24), "-q"],
        "info": ["info", "-m", str(TINY_24)],
    }[command]
    assert main(args) == 0
    captured = capsys.readouterr()
    _one_warning_line(captured.err, command)
    assert RANDOM_WEIGHTS_WARNING not in captured.out  # stdout carries data and summaries only
    if command == "info":
        assert "weights: RANDOM" in captured.out


def test_a_trained_model_prints_no_warning(tmp_path, capsys, wav, tiny24_copy):
    model = _trained(tiny24_copy)
    assert main(["roundtrip", str(wav), "-o", str(tmp_path / "out.wav"), "-m", str(model), "-q"]) == 0
    assert main(["info", "-m", str(model)]) == 0
    captured = capsys.readouterr()
    assert RANDOM_WEIGHTS_WARNING not in captured.err + captured.out
    assert "warning" not in captured.err.lower(), captured.err


def test_the_warning_reaches_the_terminal_of_a_real_process(tmp_path, wav):
    """Without pytest's log capture: ``python -m snac_onnx`` prints the line itself, once."""
    result = subprocess.run(
        [sys.executable, "-m", "snac_onnx", "roundtrip", str(wav), "-o", str(tmp_path / "o.wav"), "-m", str(TINY_24)],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr
    _one_warning_line(result.stderr, "roundtrip")


def test_the_server_log_shows_it(tmp_path):
    pytest.importorskip("uvicorn")
    from tests.serve.support import free_port, start_server

    log = tmp_path / "server.log"
    proc = start_server(TINY_24, free_port(), log=log)
    try:
        proc.terminate()
        proc.wait(timeout=HANG_GUARD_S)
    finally:
        proc.kill()
    lines = [line for line in log.read_text().splitlines() if RANDOM_WEIGHTS_WARNING in line]
    assert len(lines) == 1 and "tiny_24khz" in lines[0], log.read_text()



def test_download_of_such_a_model_says_so(tmp_path, capsys, monkeypatch):
    from tests.runtime.test_hub import _cache

    _cache(tmp_path, "someone/snac_random", files=("manifest.json", "encoder.onnx", "decoder.onnx", "stream.onnx"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    assert main(["download", "someone/snac_random"]) == 0, capsys.readouterr().err
    _one_warning_line(capsys.readouterr().err, "download")
