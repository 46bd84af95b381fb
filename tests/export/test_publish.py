"""The CI export job's script, run with --random-init and a local target folder instead of the hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.support import LONG_HANG_GUARD_S, REPO

pytest.importorskip("torch")
pytest.importorskip("snac")

pytestmark = pytest.mark.slow  # exports a model through the publisher (minutes)


def test_publish_random_init_to_local_target(tmp_path):
    result = subprocess.run(
        # the tiny config (the official graph structure, tiny widths): the official 24 kHz export is tested elsewhere
        [sys.executable, "-m", "export.publish", "--models", str(REPO / "tests/fixtures/tiny_24khz.json"), "--random-init",
         "--target-dir", str(tmp_path / "hub"), "--work-dir", str(tmp_path / "work"), "--repo", "tiny_24khz=test/snac_24khz"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=LONG_HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    published = tmp_path / "hub" / "test" / "snac_24khz"
    manifest = json.loads((published / "manifest.json").read_text())
    assert manifest["random_init"] is True and manifest["parity"]["passed"]
    from snac_onnx import SnacOnnx

    codec = SnacOnnx(published)
    codes = codec.encode(np.zeros(5000, np.float32))
    assert codec.decode(codes, length=5000, noise=False).shape == (5000,)


def test_random_init_is_never_uploaded():
    result = subprocess.run(
        [sys.executable, "-m", "export.publish", "--random-init"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=LONG_HANG_GUARD_S,
    )
    assert result.returncode == 2 and "never uploaded" in result.stderr
