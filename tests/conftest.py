"""Shared fixtures: codecs over the tiny exported models of tests/support.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import TINY_24, TINY_44


@pytest.fixture(scope="session")
def tiny24():
    from snac_onnx import SnacOnnx

    return SnacOnnx(TINY_24)


@pytest.fixture(scope="session")
def tiny44():
    from snac_onnx import SnacOnnx

    return SnacOnnx(TINY_44)


@pytest.fixture
def tiny24_copy(tmp_path: Path) -> Path:
    """A writable copy of the tiny 24 kHz model, for corrupting."""
    dest = tmp_path / "tiny_24khz"
    shutil.copytree(TINY_24, dest)
    return dest
