"""Shared fixtures: codecs over the tiny exported models of tests/support.py; one local Ray at a time."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import TINY_24, TINY_44


@pytest.fixture(autouse=True)
def _random_weights_warned_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a fresh process would: no model warned about yet (the tiny models have random weights,
    and the warning is logged once per model and process), so what a test sees does not depend on the order."""
    from snac_onnx.model import manifest

    monkeypatch.setattr(manifest, "_warned_random", set())


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


@pytest.fixture(scope="module")
def one_ray_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Held for a whole module that starts a local Ray: under pytest-xdist (scripts/test.sh) two workers would
    otherwise start two Ray instances at once, on one machine's CPUs and ports."""
    import fcntl  # POSIX; the tests run on Linux

    lock = tmp_path_factory.getbasetemp().parent / "ray.lock"  # the workers' base folders share this parent
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
