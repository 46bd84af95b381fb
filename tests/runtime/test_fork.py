"""A codec survives fork(): multiprocessing's fork start method, gunicorn --preload, prefork pools.

Each case runs in a fresh interpreter with a hard timeout, so a hang fails the test instead of
stalling the suite. Before the fix, a child of a codec with a thread pool (``parallel=2``) that
had run never returned from ``decode``, and a child of any process that had imported
onnxruntime hung at ``sys.exit``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.support import HANG_GUARD_S, REPO, TINY_24

pytestmark = pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")

SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp, os, sys
    import numpy as np
    from snac_onnx import SnacOnnx
    from tests.support import HANG_GUARD_S, pcm

    when, how = sys.argv[1], sys.argv[2]
    codec = SnacOnnx(sys.argv[3], threads=2, parallel=2, max_chunk_seconds=0.2)
    audio = pcm(24000)
    if when == "after":
        codes = codec.encode(audio)
        expected = codec.decode(codes, noise=False)
    codes_in_child = None

    def child(queue):
        codes = codec.encode(audio)
        out = codec.decode(codes, noise=False)
        queue.put((codes[0].tolist(), out.tobytes()))

    if how == "multiprocessing":
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=child, args=(queue,))
        proc.start()
        got_codes, got_audio = queue.get(timeout=HANG_GUARD_S)
        proc.join(HANG_GUARD_S)
        assert proc.exitcode == 0, proc.exitcode
    else:  # a bare fork whose child leaves through sys.exit, as a gunicorn worker does
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            codes = codec.encode(audio)
            out = codec.decode(codes, noise=False)
            with os.fdopen(write, "wb") as handle:
                handle.write(out.tobytes())
            codec.close()
            sys.exit(7)
        os.close(write)
        with os.fdopen(read, "rb") as handle:
            got_audio = handle.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 7, status
        got_codes = None
    codes = codec.encode(audio)  # the parent still works
    expected = codec.decode(codes, noise=False)
    if got_codes is not None:
        assert got_codes == codes[0].tolist()
    assert got_audio == expected.tobytes(), "the child's audio differs from the parent's"
    print("ok")
    """
)


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("how", ["multiprocessing", "sys_exit"])
def test_forked_child_decodes_and_exits(when: str, how: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, when, how, str(TINY_24)],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        cwd=REPO,  # the script imports tests.support, found through the cwd
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr
