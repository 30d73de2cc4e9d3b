"""Streaming, parallel SHA-256 of model files: memory flat in file size, every core busy.

hashlib releases the GIL while it digests a large buffer, so plain threads hash several files
at once; each thread reuses one buffer (``readinto``), so memory is ``workers × CHUNK`` whatever
the file sizes. Files are handed out largest first, so one huge file does not start last.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from modelseal.errors import ConfigError

#: Bytes read per call: large enough that the digest, not the syscalls, dominates.
CHUNK = 1 << 20


@dataclass(frozen=True)
class FileDigest:
    """A file's size and SHA-256."""

    size: int
    sha256: str


def hash_file(path: Path, *, chunk: int = CHUNK) -> FileDigest:
    """SHA-256 of one file, streamed."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    size = 0
    try:
        # Not through a final symlink, and never blocking on a fifo swapped in after the walk.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise ConfigError(f"cannot read model file {path}: {e.strerror}.") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"model file {path} is not a regular file.")
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while n := os.readv(fd, [view]):
            h.update(view[:n])
            size += n
    except OSError as e:
        raise ConfigError(f"cannot read model file {path}: {e.strerror}.") from None
    finally:
        os.close(fd)
    return FileDigest(size, h.hexdigest())


def hash_files(paths: Iterable[Path], *, workers: int | None = None) -> dict[Path, FileDigest]:
    """Hash many files concurrently; returns path → digest."""
    todo = sorted(set(paths), key=lambda p: _size(p), reverse=True)
    if not todo:
        return {}
    n = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    if n == 1:
        return {p: hash_file(p) for p in todo}
    with ThreadPoolExecutor(max_workers=n) as pool:
        return dict(zip(todo, pool.map(hash_file, todo), strict=True))


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0
