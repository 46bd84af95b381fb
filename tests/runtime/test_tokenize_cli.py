"""``snac-onnx tokenize`` as a user runs it, in fresh processes: the failed files are named with their fix, the
printed command redoes only them, and stderr holds our lines only (Ray quiet unless -v)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")
sf = pytest.importorskip("soundfile")

from tests.support import HANG_GUARD_S, RANDOM_WEIGHTS_WARNING, REPO, TINY_24  # noqa: E402

pytestmark = pytest.mark.slow  # starts a local Ray in each of its processes


def _tokenize(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snac_onnx", "tokenize", *args],
        capture_output=True, text=True, cwd=cwd, timeout=HANG_GUARD_S,
        env={**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""},
    )  # fmt: skip


def _only_our_lines(err: str) -> None:
    """stderr: the one warning line about the tiny model's random weights, nothing of Ray's."""
    lines = err.splitlines()
    assert len(lines) == 1 and RANDOM_WEIGHTS_WARNING in lines[0] and lines[0].startswith("snac-onnx tokenize: "), err


@pytest.fixture
def corpus(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        sf.write(src / f"mono{i}.wav", (0.1 * np.sin(np.arange(6000 + 500 * i) * 0.05)).astype(np.float32), 24000)
    sf.write(src / "stereo.wav", np.full((7000, 2), 0.1, np.float32), 24000)
    return src


def test_failed_files_are_named_and_the_printed_command_redoes_only_them(tmp_path, corpus, one_ray_at_a_time):
    model = str(TINY_24)
    first = _tokenize("src", "-o", "out", "-m", model, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    _only_our_lines(first.stderr)
    out = first.stdout
    assert "5 file(s) encoded (1 with errors" in out
    assert "stereo.wav' has 2 channels; SNAC is mono: average them with --mix" in out, out
    redo = [line for line in out.splitlines() if line.startswith("to redo only the failed files with --mix: ")]
    assert len(redo) == 1, out
    command = shlex.split(redo[0].split(": ", 1)[1])
    assert command[:2] == ["snac-onnx", "tokenize"] and command[-2:] == ["--retry-errors", "--mix"], command
    mono_before = {r["path"]: r for r in pq.read_table(tmp_path / "out").to_pylist() if r["error"] is None}

    second = _tokenize(*command[2:], cwd=tmp_path)  # as printed
    assert second.returncode == 0, second.stderr
    _only_our_lines(second.stderr)  # --retry-errors printed a UserWarning of Ray's
    assert "1 file(s) encoded (0 with errors, 4 already done)" in second.stdout, second.stdout
    assert "the folder now records --mix" in second.stdout
    rows = pq.read_table(tmp_path / "out").to_pylist()
    assert len(rows) == 5 and all(r["error"] is None for r in rows)  # one row per file
    for row in rows:  # the rows encoded without --mix are kept as they were
        if row["path"] in mono_before:
            assert row == mono_before[row["path"]]
    job = json.loads((tmp_path / "out" / "_snac_onnx_job.json").read_text())
    assert job["mix"] is True and [h["mix"] for h in job["history"]] == [False], job

    third = _tokenize("src", "-o", "out", "-m", model, cwd=tmp_path)  # turning --mix off again: refused
    assert third.returncode == 2 and "mix: this run False, the folder True" in third.stderr, third.stderr


def test_a_rerun_names_the_errors_it_skipped(tmp_path, corpus, one_ray_at_a_time):
    assert _tokenize("src", "-o", "out", "-m", str(TINY_24), cwd=tmp_path).returncode == 0
    again = _tokenize("src", "-o", "out", "-m", str(TINY_24), "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["processed"] == 0 and summary["earlier_errors"] == 1
    [(path, error)] = summary["earlier_failed"]
    assert path.endswith("stereo.wav") and "with --mix" in error
    text = _tokenize("src", "-o", "out", "-m", str(TINY_24), cwd=tmp_path).stdout
    assert "failed earlier, skipped: " in text and "--retry-errors --mix" in text, text
