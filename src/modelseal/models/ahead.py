"""Work started ahead in a forked child while this process does something else.

``modelseal models scan`` spends most of a small run importing pydantic and validating the
policy, work the scan does not depend on; with a second core, a child scans meanwhile. This
module imports nothing heavy, so that the child is forked before the scanner is imported: the
scanner's imports, too, happen in the child.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import struct
from collections.abc import Callable
from typing import Any, BinaryIO, Generic, TypeVar

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


def idle_core() -> bool:
    """Whether a forked child would likely have a core to itself: this process may run on two
    CPUs or more, and the 1-minute load average leaves one of them idle (less than the CPUs
    minus half a job; this process's own runs count in it). When every core is busy the child
    only takes turns with this process and the other jobs, and the fork, the imports both make
    and the results' way back are extra work: measured at load 4 on 2 cores, a 200-file
    ``models scan`` took 0.27 s CPU and 0.42 s wall with its child, 0.23 and 0.35 s without.
    Only how fast: the results are the same either way."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    if cpus < 2:
        return False
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return True
    return load < cpus - 0.5


ItemT = TypeVar("ItemT")

_LEN = struct.Struct("<Q")


class Shared(Generic[ItemT, T]):
    """Items done one by one in a forked child, front to back, while this process does
    something else; then this process takes the back half of what is left (:meth:`finish`).

    ``items()`` runs in the child (e.g. walking directories) and is what both share, so the
    two cannot disagree on it. The child looks between items whether it was asked for a share
    and then answers where it stops, with the items past that: no item is done twice or left
    out. When fewer than ``min_share`` are left, it keeps them all (this process then never
    needs what ``work`` imports). As with :class:`Ahead`, anything that goes wrong (no fork,
    one core, an exception or crash in the child) only makes :meth:`finish` answer None, and
    the caller does all the work itself: a result is whole or absent.
    """

    def __init__(
        self,
        items: Callable[[], list[ItemT]],
        work: Callable[[ItemT], T],
        *,
        min_share: int,
        start: bool = True,
    ) -> None:
        self.pid = 0
        self._ask = self._fd = -1
        if not start or not hasattr(os, "fork") or (os.cpu_count() or 1) < 2:
            return
        ask_r, ask_w = os.pipe()
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its results are checked through finish()
            code = 1
            try:
                gc.freeze()  # as in Ahead
                os.close(ask_w)
                os.close(out_r)
                os.set_blocking(ask_r, False)
                with os.fdopen(out_w, "wb") as out:
                    _share_loop(items(), work, min_share, ask_r, out)
                code = 0
            finally:
                os._exit(code)
        os.close(ask_r)
        os.close(out_w)
        self.pid, self._ask, self._fd = pid, ask_w, out_r

    def finish(self, work: Callable[[ItemT], T]) -> list[tuple[ItemT, T]] | None:
        """Every item with its result, in order: the child's, and those of the share it hands
        over, done here with ``work``. None when there was no child or it did not finish
        cleanly."""
        if not self.pid:
            return None
        try:
            with contextlib.suppress(OSError):  # the child may be done and gone already
                os.write(self._ask, b"?")
            os.close(self._ask)
            self._ask = -1
            src, self._fd = os.fdopen(self._fd, "rb"), -1
            with src:
                head = _read_frame(src)
                if head is None:
                    return self._reap(None)
                stop, rest = head
                mine = [(item, work(item)) for item in rest]
                tail = _read_frame(src)
            if tail is None or len(tail[0]) != stop:
                return self._reap(None)
            theirs, results = tail
            return self._reap([*zip(theirs, results, strict=True), *mine])
        except BaseException:
            self.cancel()
            raise

    def _reap(self, done: list[tuple[ItemT, T]] | None) -> list[tuple[ItemT, T]] | None:
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        return done if status == 0 else None

    def cancel(self) -> None:
        """Stop the child (its results would not count)."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            for fd in (self._ask, self._fd):
                if fd >= 0:
                    os.close(fd)
            self._ask = self._fd = -1
            self.pid = 0


def _share_loop(
    items: list[ItemT], work: Callable[[ItemT], T], min_share: int, ask: int, out: BinaryIO
) -> None:
    """The child of :class:`Shared`: items from the front; asked, it hands over the back half
    of what is left (when that is at least ``min_share``) and says where it stops."""
    stop = len(items)
    answered = False
    results: list[T] = []
    i = 0
    while i < stop:
        if not answered:
            try:
                asked = os.read(ask, 1)
            except BlockingIOError:
                asked = None
            if asked == b"":  # the parent is gone (it stopped on an error): so is the point
                raise EOFError("no parent")
            if asked:
                left = stop - i
                if left >= min_share:
                    stop = i + (left + 1) // 2
                _write_frame(out, (stop, items[stop:]))
                answered = True
        results.append(work(items[i]))
        i += 1
    if not answered:
        _write_frame(out, (stop, []))
    _write_frame(out, (items[:stop], results))


def _write_frame(out: BinaryIO, value: object) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LEN.pack(len(data)) + data)
    out.flush()


def _read_frame(src: BinaryIO) -> Any:
    """One frame our own child wrote; None when it ended before the frame did."""
    head = src.read(_LEN.size)
    if len(head) != _LEN.size:
        return None
    (size,) = _LEN.unpack(head)
    data = src.read(size)
    if len(data) != size:
        return None
    # From our own forked child over a private pipe, never from a model file.
    return pickle.loads(data)  # noqa: S301
