"""Work started ahead in a forked child while this process does something else.

``modelseal models scan`` spends most of a small run importing pydantic and validating the
policy, work the scan does not depend on; with a second core, a child scans meanwhile. This
module imports nothing heavy, so that the child is forked before the scanner is imported: the
scanner's imports, too, happen in the child.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Ahead(Generic[T]):
    """``work()`` run in a forked child; :meth:`take` gives its result.

    Anything that goes wrong in the child (no ``fork``, one core, an exception, a crash, a
    signal) only means :meth:`take` answers None and the caller does the work itself: the
    result is never a partial one. The result comes back pickled over a private pipe from our
    own child, never from a file.
    """

    def __init__(self, work: Callable[[], T], *, start: bool = True) -> None:
        self.pid = 0
        self._fd = -1
        if not start or not hasattr(os, "fork") or (os.cpu_count() or 1) < 2:
            return
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its result is checked through take()
            code = 1
            try:
                # What the parent made is not the child's garbage: its collections skip it
                # rather than walk (and so copy) every page the parent's objects are on.
                gc.freeze()
                os.close(read_fd)
                data = pickle.dumps(work(), protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(write_fd, "wb") as out:
                    out.write(data)
                code = 0
            finally:
                os._exit(code)  # no traceback, no teardown, no atexit of the parent's
        os.close(write_fd)
        self.pid, self._fd = pid, read_fd

    def take(self) -> T | None:
        """The child's result; None when there was no child or it did not finish cleanly."""
        if not self.pid:
            return None
        with os.fdopen(self._fd, "rb") as src:
            data = src.read()
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        if status != 0:
            return None
        # From our own forked child over a private pipe, never from a model file.
        result: T = pickle.loads(data)  # noqa: S301
        return result

    def cancel(self) -> None:
        """Stop the child (its result would not count)."""
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            os.close(self._fd)
            self.pid = 0
