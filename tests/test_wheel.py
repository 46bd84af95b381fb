"""The wheel: snac_onnx only (no top-level export), installs into a fresh venv without torch, CLI runs."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.support import LONG_HANG_GUARD_S, TINY_24

pytestmark = pytest.mark.slow  # builds the wheel and installs it into a fresh venv

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)], check=True, timeout=LONG_HANG_GUARD_S)
    (path,) = out.glob("snac_onnx-*.whl")
    return path


def test_wheel_ships_snac_onnx_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"snac_onnx"}
    assert "snac_onnx/py.typed" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "snac-onnx = snac_onnx.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_fresh_venv_without_torch_runs_the_cli(wheel, tmp_path):
    sf = pytest.importorskip("soundfile")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # A clean environment: PYTHONPATH pointing at the checkout would make pip see snac-onnx as installed.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(py), "-m", "pip", "install", "-q", f"{wheel}[cpu,audio]"], check=True, timeout=LONG_HANG_GUARD_S, env=env, cwd=tmp_path)
    probe = subprocess.run([str(py), "-c", "import torch"], capture_output=True, env=env, cwd=tmp_path)
    assert probe.returncode != 0, "torch must not be installed by snac-onnx"
    wav = tmp_path / "in.wav"
    sf.write(wav, (0.2 * np.sin(np.arange(30000) / 5)).astype(np.float32), 24000)
    result = subprocess.run(
        [str(env_dir / "bin" / "snac-onnx"), "roundtrip", str(wav), "-o", str(tmp_path / "out.wav"), "-m", str(TINY_24), "--json"],
        capture_output=True, text=True, timeout=LONG_HANG_GUARD_S, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert sf.info(tmp_path / "out.wav").frames == 30000
