"""``import snac_onnx`` and its NumPy-only modules work without onnxruntime; making a model says what to install.

Proven in a fresh interpreter where onnxruntime (and huggingface_hub) are import-blocked.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import HANG_GUARD_S, REPO, TINY_24

SCRIPT = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("onnxruntime", "huggingface_hub", "torch", "snac"):
            raise ImportError(f"blocked import of {name}")
sys.meta_path.insert(0, Block())
import numpy as np
import snac_onnx
from snac_onnx import ORPHEUS, MissingDependencyError, SnacOnnx, SessionSettings, codes_to_tokens, tokens_to_codes
from snac_onnx import audio, codes, config, layouts, planner
from snac_onnx.model import manifest
# the NumPy-only modules work
cfg = manifest.load_manifest(sys.argv[1]).config
assert cfg.samples_per_frame == 2048 and cfg.decoder_context == (3, 3)
c = [np.arange(n) % 4096 for n in cfg.code_lengths(3)]
back = tokens_to_codes(codes_to_tokens(c, cfg.vq_strides, ORPHEUS), cfg.vq_strides, 4096, ORPHEUS)
assert all((a == b).all() for a, b in zip(c, back))
assert audio.prepare_audio(np.zeros(100, np.float32), 2048).items[0].shape == (2048,)
assert planner.chunk_spans(100, 2, 1, 5, 5)[0] == planner.Chunk(0, 50, 0, 55)
SessionSettings(intra_op_threads=1)  # settings are checked without onnxruntime too
try:
    SnacOnnx(sys.argv[1])
except MissingDependencyError as exc:
    assert "snac-onnx[cpu]" in str(exc) and "snac-onnx[gpu]" in str(exc), exc
    assert isinstance(exc, ImportError)
else:
    raise AssertionError("SnacOnnx without onnxruntime did not raise")
assert not [m for m in sys.modules if m.split(".")[0] in ("onnxruntime", "huggingface_hub")]
print("OK")
"""


def test_import_and_numpy_modules_without_onnxruntime():
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(TINY_24)], capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"


def test_version_without_onnxruntime():
    script = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'onnxruntime':\n"
        "            raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from snac_onnx.cli import main\n"
        "sys.exit(main(['--version']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert result.returncode == 0, result.stderr
    import snac_onnx

    assert result.stdout.strip() == f"snac-onnx {snac_onnx.__version__}"


INFO = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "onnxruntime":
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
from snac_onnx.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _info_without_onnxruntime(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", INFO, "info", *args], capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=REPO
    )


def test_info_without_onnxruntime_reports_what_is_missing_and_the_rest():
    """The check a user runs after forgetting the [cpu] extra: a report, then the one error line, exit 2."""
    result = _info_without_onnxruntime()
    assert result.returncode == 2, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    out = result.stdout
    assert "onnxruntime: NOT INSTALLED (pip install 'snac-onnx[cpu] @ file:" in out, out
    assert "snac_onnx: " in out and "numpy: " in out and "python: " in out
    [error] = result.stderr.splitlines()
    assert error.startswith("snac-onnx info: error: snac_onnx needs onnxruntime: pip install 'snac-onnx[cpu] @ file:"), error


def test_info_of_a_model_without_onnxruntime_reads_its_manifest():
    result = _info_without_onnxruntime("-m", str(TINY_24), "--json")
    assert result.returncode == 2, result.stderr
    summary = json.loads(result.stdout)
    assert summary["onnxruntime"] is None and summary["available_providers"] == []
    model = summary["model"]
    assert model["manifest"]["config"]["vq_strides"] == [4, 2, 1] and model["providers_in_use"] is None
    text = _info_without_onnxruntime("-m", str(TINY_24)).stdout
    assert "model: tiny_24khz at " in text and "sample rate 24000 Hz" in text
    assert "providers in use: none (onnxruntime is not installed" in text, text
