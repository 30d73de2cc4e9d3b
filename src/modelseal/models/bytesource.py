"""Bounded random-access reads of one model file.

Every model reader (format detection, structure checks, the pickle scanner) reads through
:class:`ByteSource`: it refuses anything but a regular file before reading, turns OS errors into
:class:`ConfigError`, and reads only what callers ask for, never the whole file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

from modelseal.errors import ConfigError

#: The largest read a sequential walk over a file makes at once.
READ_CHUNK: Final = 1 << 20


class ByteSource:
    """A regular file opened for bounded random-access reads.

    Opening refuses anything but a regular file *before* reading (a FIFO would block forever),
    and turns OS errors into :class:`ConfigError`. :meth:`read` keeps one small block cached,
    so walking a header field by field costs one system call per block, not per field.
    """

    BLOCK: Final = 64 << 10

    def __init__(self, path: Path) -> None:
        self.path = path
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags)
        except OSError as e:
            raise ConfigError(f"cannot read model file {path}: {e.strerror}.") from None
        try:
            st = os.fstat(fd)
        except OSError as e:
            os.close(fd)
            raise ConfigError(f"cannot read model file {path}: {e.strerror}.") from None
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise ConfigError(f"model file {path} is not a regular file.")
        self.file: BinaryIO = os.fdopen(fd, "rb", buffering=0)
        self.size: int = st.st_size
        self._cache_start = 0
        self._cache = b""

    def __enter__(self) -> ByteSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self.file.close()

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset``; fewer at the end of the file, empty past it.

        Callers bound ``n``; nothing here ever reads the whole file.
        """
        if offset < 0 or n <= 0 or offset >= self.size:
            return b""
        n = min(n, self.size - offset)
        start = self._cache_start
        if start <= offset and offset + n <= start + len(self._cache):
            return self._cache[offset - start : offset - start + n]
        if n <= self.BLOCK:
            self._cache = self._pread(offset, self.BLOCK)
            self._cache_start = offset
            return self._cache[:n]
        return self._pread(offset, n)

    def _pread(self, offset: int, n: int) -> bytes:
        parts: list[bytes] = []
        try:
            self.file.seek(offset)
            while n > 0:
                chunk = self.file.read(n)
                if not chunk:
                    break  # the file shrank under us: a short read, which callers handle
                parts.append(chunk)
                n -= len(chunk)
        except OSError as e:
            raise ConfigError(f"cannot read model file {self.path}: {e.strerror}.") from None
        return b"".join(parts)

    def find(self, needle: bytes, start: int, end: int) -> int:
        """Offset of the first ``needle`` in ``[start, end)``, or -1; reads chunk by chunk."""
        end = min(end, self.size)
        overlap = max(len(needle) - 1, 0)
        pos = start
        while pos < end:
            chunk = self.read(pos, min(READ_CHUNK, end - pos))
            if not chunk:
                return -1
            i = chunk.find(needle)
            if i >= 0 and pos + i + len(needle) <= end:
                return pos + i
            if pos + len(chunk) >= end:
                return -1
            pos += max(len(chunk) - overlap, 1)
        return -1
