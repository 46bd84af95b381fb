"""The demo's "Try next" commands run as printed, on the clip the demo made (scripts/try_next.sh is their one
source: the demo prints what it prints), here on the tiny model."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("soundfile")

from tests.support import HANG_GUARD_S, REPO, TINY_24

CLI = str(Path(sys.executable).with_name("snac-onnx"))  # the demo's .venv/bin/snac-onnx, in this environment


def test_the_demo_prints_try_next_with_its_own_model_clip_and_cli():
    demo = (REPO / "scripts" / "demo.sh").read_text()
    assert 'bash scripts/try_next.sh "$MODEL" out/roundtrip_in.wav .venv/bin/snac-onnx' in demo
    assert '$PY scripts/roundtrip.py "$MODEL" --out out' in demo  # which writes out/roundtrip_in.wav
    assert "your.wav" not in demo


def test_try_next_commands_run_as_printed(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # the demo's step 3 makes the clip: scripts/roundtrip.py MODEL --out out
    made = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "roundtrip.py"), str(TINY_24), "--out", "out"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "out" / "roundtrip_in.wav").is_file()
    printed = subprocess.run(
        ["bash", str(REPO / "scripts" / "try_next.sh"), str(TINY_24), "out/roundtrip_in.wav", CLI],
        capture_output=True, text=True, check=True, timeout=HANG_GUARD_S,
    ).stdout  # fmt: skip
    assert "put your own audio file in its place" in printed
    commands = [shlex.split(line.split("#")[0]) for line in printed.splitlines() if line.startswith(f"  {CLI} ")]
    assert [c[1] for c in commands] == ["roundtrip", "encode", "decode", "info", "serve"], printed
    for command in commands[:-1]:  # in order: decode reads what encode wrote
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
        assert result.returncode == 0, (command, result.stderr)
    for name in ("try_roundtrip.wav", "try.npz", "try_decoded.wav"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    _serve_as_printed(commands[-1], tmp_path, env, printed)


def _serve_as_printed(command: list[str], cwd: Path, env: dict[str, str], printed: str) -> None:
    """The printed serve command answers where the line says it listens; then SIGINT (the Ctrl-C it names) stops
    it. Port 8000 may be taken on a shared machine: then the same command on a free port."""
    import socket

    port = int(re.search(r"ws://127\.0\.0\.1:(\d+)/v1/stream", printed).group(1))
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:  # in use
            with socket.socket() as free:
                free.bind(("127.0.0.1", 0))
                port = free.getsockname()[1]
            command = [*command, "--port", str(port)]
    log = cwd / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=HANG_GUARD_S) is not None
    finally:
        proc.kill()
