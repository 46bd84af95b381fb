"""Writing an output file all or nothing: a temporary file beside it, renamed onto it on success.

The finished file has the mode a plain ``open()`` would give it (``0o666`` less the umask),
not the ``0o600`` of a temporary file. A failure (an exception inside the ``with``, a folder
in the way, a folder that cannot be written) leaves nothing behind and says what was wrong
with the *output*, never the temporary name. ``-`` means standard output: the bytes are
collected and written there once complete.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import InvalidArgumentError

__all__ = ["STDIO", "atomic_output", "umask"]

STDIO = "-"
_umask_lock = threading.Lock()


def umask() -> int:
    """This process's umask (read by setting and restoring it, under a lock)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary handle to write ``path`` (or ``-``: standard output); the file appears only on success.

    Raises:
        InvalidArgumentError: ``path`` is a folder, or its folder cannot be made or written.
    """
    if str(path) == STDIO:
        buffer = io.BytesIO()
        yield buffer
        sys.stdout.flush()
        sys.stdout.buffer.write(buffer.getvalue())
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if target.is_dir():
        raise InvalidArgumentError(f"output {str(target)!r} is a folder; give a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot write output {str(target)!r}: {exc.strerror or exc} ({str(target.parent)!r})"
        ) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
        os.chmod(tmp, 0o666 & ~umask())
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise InvalidArgumentError(f"cannot write output {str(target)!r}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
