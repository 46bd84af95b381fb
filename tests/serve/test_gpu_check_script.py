"""bench/gpu_check.py, the prepared GPU check, runs end to end (against the CPU provider here), so that a session
lent a GPU finds it working; and it says so plainly when the provider asked for is missing (no torch)."""

from __future__ import annotations

import subprocess
import sys

from tests.support import HANG_GUARD_S, REPO, TINY_24


def _run(tmp_path, *args):
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check.py"), str(TINY_24), "--out", str(tmp_path / "gpu.md"), *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )


def test_gpu_check_runs_against_the_cpu_provider(tmp_path):
    result = _run(tmp_path, "--provider", "CPUExecutionProvider", "--seconds", "1", "--streams", "1", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    report = (tmp_path / "gpu.md").read_text()
    assert "every graph on CPUExecutionProvider: yes" in report
    pool_rows = [line for line in report.splitlines() if line.startswith("| | ")]
    assert len(pool_rows) == 4  # 2 stream counts, batching on and off
    assert all(float(line.split("|")[-2]) <= 1e-4 for line in pool_rows)  # pooled audio equals the offline decode


def test_gpu_check_says_when_the_provider_is_missing(tmp_path):
    result = _run(tmp_path, "--provider", "NoSuchExecutionProvider")
    assert result.returncode == 1
    assert "is not available" in (tmp_path / "gpu.md").read_text()
