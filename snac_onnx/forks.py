"""Fork safety: what a forked child must rebuild instead of inheriting.

A ``fork()`` (``multiprocessing``'s fork start method, gunicorn ``--preload``, Ray's and
celery's prefork workers) copies the process's memory but only the calling thread. An
onnxruntime session built before the fork keeps handles on intra-op threads that do not
exist in the child, and destroying it there waits on them forever; a thread pool made
before the fork holds work that no thread will ever pick up; a lock held by another
thread at the moment of the fork stays locked. So an object that owns such things
registers here, and right after a fork, in the child, before any other code runs, its
``after_fork_in_child()`` drops them (to be rebuilt on first use). What it drops and must
never be destroyed in the child (onnxruntime sessions) it hands to :func:`keep_forever`.

The fused Snake kernels have no threads of their own (they run on the session's). On
platforms without ``os.fork`` this module does nothing.

One more trap is onnxruntime's own, and it needs no session: ``import onnxruntime`` (1.32)
starts a helper thread that waits on a condition variable, and a child forked after that
import hangs in onnxruntime's C++ static destructors when it exits normally (``sys.exit``,
as a gunicorn worker does; ``multiprocessing`` children leave through ``os._exit`` and are
not affected). So in such a child, :func:`_after_fork_in_child` asks glibc (``on_exit``) to
end the process with ``_exit(status)`` once Python has finalized: Python's own shutdown
(``atexit`` handlers, flushed files) runs as usual; C-level exit handlers and static
destructors registered before the fork (onnxruntime's among them) are skipped.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import weakref
from typing import Protocol

__all__ = ["ForkAware", "register", "keep_forever"]


class ForkAware(Protocol):
    def after_fork_in_child(self) -> None:
        """Drop what did not survive the fork; called once in the child, single-threaded."""


_registered: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_registered_lock = threading.Lock()


def register(obj: ForkAware) -> None:
    """Call ``obj.after_fork_in_child()`` in every child forked while ``obj`` is alive (held weakly)."""
    with _registered_lock:
        _registered.add(obj)


def keep_forever(obj: object) -> None:
    """Keep ``obj`` alive for the life of this process, interpreter shutdown included (its destructor would hang).

    A reference owned by no one: module globals are cleared at shutdown, a leaked count is not.
    """
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


def _skip_inherited_c_exit_handlers() -> bool:
    """Make this process's ``exit()`` end in ``_exit(status)`` before older C exit handlers run (glibc)."""
    try:
        libc = ctypes.CDLL(None)
        on_exit, exit_now = libc.on_exit, libc._exit
    except (OSError, AttributeError):  # not glibc
        return False
    on_exit.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    on_exit.restype = ctypes.c_int
    # on_exit calls fn(status, arg); _exit(status) ignores the second argument.
    return int(on_exit(ctypes.cast(exit_now, ctypes.c_void_p), None)) == 0


def _after_fork_in_child() -> None:
    global _registered_lock
    _registered_lock = threading.Lock()  # another thread may have held it at the fork
    if "onnxruntime" in sys.modules:
        _skip_inherited_c_exit_handlers()
    for obj in list(_registered):
        obj.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
