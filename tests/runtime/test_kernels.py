"""Finding the fused Snake kernel library on each platform, and what happens without it: one warning per
process, a setting (and an environment variable) that requires it, and two ways to silence the warning.

These run with or without the kernel built (they fake its presence or absence).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from snac_onnx import KernelUnavailableError, SnacOnnx, SnacOnnxError
from snac_onnx.cli import main
from snac_onnx.model import kernels, sessions
from snac_onnx.model.sessions import SessionSettings
from tests.support import TINY_24, pcm

CPU = ["CPUExecutionProvider"]

# importlib.machinery.EXTENSION_SUFFIXES of CPython 3.12 on each platform the wheels are built for.
SUFFIXES = {
    "manylinux_x86_64": ("linux", [".cpython-312-x86_64-linux-gnu.so", ".abi3.so", ".so"]),
    "manylinux_aarch64": ("linux", [".cpython-312-aarch64-linux-gnu.so", ".abi3.so", ".so"]),
    "musllinux_x86_64": ("linux", [".cpython-312-x86_64-linux-musl.so", ".abi3.so", ".so"]),
    "macosx": ("darwin", [".cpython-312-darwin.so", ".abi3.so", ".so"]),
    "win_amd64": ("win32", [".cp312-win_amd64.pyd", ".pyd"]),
}


@pytest.mark.parametrize(
    "target, present, expected",
    [
        ("manylinux_x86_64", ["_snake.abi3.so"], "_snake.abi3.so"),  # the abi3 wheel's file
        ("manylinux_x86_64", ["_snake.cpython-312-x86_64-linux-gnu.so"], "_snake.cpython-312-x86_64-linux-gnu.so"),
        ("manylinux_x86_64", ["_snake.cpython-311-x86_64-linux-gnu.so"], None),  # another interpreter's build
        ("manylinux_aarch64", ["_snake.abi3.so"], "_snake.abi3.so"),
        ("musllinux_x86_64", ["_snake.abi3.so"], "_snake.abi3.so"),
        ("musllinux_x86_64", ["_snake.so"], "_snake.so"),
        ("macosx", ["_snake.abi3.so"], "_snake.abi3.so"),
        ("macosx", ["_snake.dylib"], "_snake.dylib"),  # a build by hand
        ("macosx", ["_snake.dll"], None),
        ("win_amd64", ["_snake.pyd"], "_snake.pyd"),  # the abi3 wheel's file on Windows
        ("win_amd64", ["_snake.cp312-win_amd64.pyd"], "_snake.cp312-win_amd64.pyd"),
        ("win_amd64", ["_snake.dll"], "_snake.dll"),  # a build by hand
        ("win_amd64", ["_snake.abi3.so", "_snake.dylib"], None),  # not Windows names
        ("win_amd64", [], None),
    ],
)
def test_library_lookup_per_platform(tmp_path, target, present, expected):
    platform, extension_suffixes = SUFFIXES[target]
    for name in present:
        (tmp_path / name).write_bytes(b"\x7fELF")
    (tmp_path / "_snake_other.so").write_bytes(b"")  # other names are never taken
    found = kernels.find_library(tmp_path, kernels.library_suffixes(platform, extension_suffixes))
    assert (found.name if found else None) == expected


def test_library_lookup_takes_the_newest_of_several_builds(tmp_path):
    suffixes = kernels.library_suffixes("linux", SUFFIXES["manylinux_x86_64"][1])
    old, new = tmp_path / "_snake.cpython-312-x86_64-linux-gnu.so", tmp_path / "_snake.abi3.so"
    for path, mtime in ((old, 1_000_000), (new, 2_000_000)):  # a stale per-interpreter build beside a new one
        path.write_bytes(b"")
        os.utime(path, (mtime, mtime))
    assert kernels.find_library(tmp_path, suffixes) == new
    os.utime(old, (3_000_000, 3_000_000))
    assert kernels.find_library(tmp_path, suffixes) == old
    os.utime(new, (3_000_000, 3_000_000))  # equally new: the interpreter's own suffix order decides
    assert kernels.find_library(tmp_path, suffixes) == old


def test_library_lookup_skips_folders_and_uses_the_package_folder(tmp_path, monkeypatch):
    (tmp_path / "_snake.abi3.so").mkdir()
    suffixes = kernels.library_suffixes("linux", [".abi3.so", ".so"])
    assert kernels.find_library(tmp_path, suffixes) is None
    (tmp_path / "_snake.so").write_bytes(b"")
    assert kernels.find_library(tmp_path, suffixes) == tmp_path / "_snake.so"
    monkeypatch.setattr(kernels, "_PACKAGE_DIR", tmp_path)
    assert kernels.snake_library() == tmp_path / "_snake.so"
    import importlib.machinery

    assert kernels.library_suffixes()[: len(importlib.machinery.EXTENSION_SUFFIXES)] == importlib.machinery.EXTENSION_SUFFIXES


@pytest.fixture
def no_kernel(monkeypatch):
    """The kernel library absent, the once-per-process warning not yet given, no kernel settings in the environment."""
    monkeypatch.setattr(kernels, "snake_library", lambda: None)
    monkeypatch.setattr(kernels, "_warned", False)
    monkeypatch.delenv(kernels.POLICY_ENV, raising=False)
    monkeypatch.delenv(kernels.QUIET_ENV, raising=False)


def _kernel_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "snac_onnx.model.kernels" and r.levelno == logging.WARNING]


def test_one_warning_per_process_without_the_kernel(no_kernel, caplog):
    with caplog.at_level(logging.WARNING, logger="snac_onnx"):
        first = SnacOnnx(TINY_24)
        out = first.decode(first.encode(pcm(4096)), noise=False)
        second = SnacOnnx(TINY_24)
        second.decode(second.encode(pcm(2048)), noise=False)
    assert not first.fused_snake and not second.fused_snake
    assert np.all(np.isfinite(out))
    (record,) = _kernel_warnings(caplog)  # four CPU sessions, one warning
    text = record.getMessage()
    assert "not installed" in text and kernels.UNFUSED_SLOWDOWN in text
    for hint in ("wheel", "C compiler", "SNAC_ONNX_QUIET_KERNEL=1", "fused_snake=False", "SNAC_ONNX_FUSED_SNAKE=require"):
        assert hint in text, hint


@pytest.mark.parametrize("how", ["environment", "setting"])
def test_the_warning_can_be_silenced(no_kernel, monkeypatch, caplog, how):
    settings = SessionSettings()
    if how == "environment":
        monkeypatch.setenv(kernels.QUIET_ENV, "1")
    else:
        settings = SessionSettings(fused_snake=False)
    with caplog.at_level(logging.WARNING, logger="snac_onnx"):
        codec = SnacOnnx(TINY_24, settings=settings)
        codec.decode(codec.encode(pcm(2048)), noise=False)
    assert _kernel_warnings(caplog) == []


def test_no_warning_where_the_kernel_would_not_be_used(no_kernel, caplog):
    with caplog.at_level(logging.WARNING, logger="snac_onnx"):
        assert sessions.fused_snake_library(None, ["CUDAExecutionProvider"]) is None
        assert sessions.fused_snake_library(None, ["CoreMLExecutionProvider", "CPUExecutionProvider"]) is None
    assert _kernel_warnings(caplog) == []


def test_a_setting_requires_the_kernel(no_kernel):
    with pytest.raises(KernelUnavailableError, match="fused_snake=True.*not installed.*wheel"):
        SnacOnnx(TINY_24, settings=SessionSettings(fused_snake=True)).encode(pcm(2048))


def test_the_environment_chooses_where_the_setting_does_not(no_kernel, monkeypatch, caplog):
    monkeypatch.setenv(kernels.POLICY_ENV, "require")
    with pytest.raises(KernelUnavailableError, match="SNAC_ONNX_FUSED_SNAKE=require.*not installed"):
        SnacOnnx(TINY_24).encode(pcm(2048))
    assert not SnacOnnx(TINY_24).fused_snake  # a prediction does not raise
    # an explicit setting wins over the environment
    codec = SnacOnnx(TINY_24, settings=SessionSettings(fused_snake=False))
    assert codec.decode(codec.encode(pcm(2048)), noise=False).shape == (2048,)
    monkeypatch.setenv(kernels.POLICY_ENV, "off")
    with caplog.at_level(logging.WARNING, logger="snac_onnx"):
        codec = SnacOnnx(TINY_24)
        codec.decode(codec.encode(pcm(2048)), noise=False)
    assert _kernel_warnings(caplog) == []  # off is a choice: nothing to warn about
    monkeypatch.setenv(kernels.POLICY_ENV, "sometimes")
    with pytest.raises(SnacOnnxError, match="SNAC_ONNX_FUSED_SNAKE='sometimes' is not one of"):
        SnacOnnx(TINY_24).encode(pcm(2048))


def test_environment_off_and_auto_with_the_kernel(monkeypatch, tmp_path):
    library = tmp_path / "_snake.so"
    library.write_bytes(b"")
    monkeypatch.setattr(kernels, "snake_library", lambda: library)
    monkeypatch.setenv(kernels.POLICY_ENV, "off")
    assert sessions.fused_snake_library(None, CPU) is None
    assert sessions.fused_snake_library(True, CPU) == library  # the setting wins
    monkeypatch.setenv(kernels.POLICY_ENV, "AUTO")
    assert sessions.fused_snake_library(None, CPU) == library
    monkeypatch.setenv(kernels.POLICY_ENV, "require")
    with pytest.raises(KernelUnavailableError, match="CPU execution provider alone"):
        sessions.fused_snake_library(None, ["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_info_says_the_kernel_is_missing(no_kernel, capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "fused_snake_kernel: None" in out
    assert "WARNING: the fused Snake kernel (snac_onnx._snake) is not installed" in out


def test_a_broken_library_is_an_error_where_the_environment_requires_the_kernel(monkeypatch, tmp_path, caplog):
    bogus = tmp_path / "_snake.so"
    bogus.write_bytes(b"not a shared library")
    monkeypatch.setattr(kernels, "snake_library", lambda: bogus)
    monkeypatch.setenv(kernels.POLICY_ENV, "require")
    with pytest.raises(KernelUnavailableError, match="could not load the fused Snake kernel"):
        SnacOnnx(TINY_24).encode(pcm(2048))
    monkeypatch.setenv(kernels.POLICY_ENV, "auto")  # auto: reported and skipped
    with caplog.at_level(logging.WARNING, logger="snac_onnx"):
        codec = SnacOnnx(TINY_24)
        codec.encode(pcm(2048))
    assert not codec.fused_snake
    assert any("not loaded" in r.getMessage() for r in caplog.records)
