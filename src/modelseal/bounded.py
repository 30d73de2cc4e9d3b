"""Reading the files users hand us (policy, keys, trust configs, VEX, locks, reports, Dockerfile)
without trusting them to be small, regular or where they claim to be.

Every such file is read through :func:`read_input`:

* it is opened without blocking (a FIFO would otherwise hang the run forever) and refused unless
  ``fstat`` says it is a regular file (``/dev/zero`` would otherwise fill memory);
* at most ``limit`` bytes are read (``fstat``'s size can lie: ``/proc`` files say 0) and a larger
  file is refused, naming the file and the limit;
* a file named inside the working directory (the checked-out repository, in CI) must resolve
  inside it: a repository that makes ``modelseal.yml`` a symlink to ``/etc/shadow`` must not get
  that file's lines echoed back as error messages (and, in the Action, as public annotations).

Every refusal is a :class:`~modelseal.errors.ConfigError` (exit 2).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Final

from modelseal.errors import ConfigError

__all__ = ["KIB", "MAX_INPUT_BYTES", "MIB", "read_input", "read_input_text", "shown_path"]

KIB: Final = 1 << 10
MIB: Final = 1 << 20
GIB: Final = 1 << 30
MAX_INPUT_BYTES: Final = 1 * MIB
"""The default limit: a policy, key, trust config or Dockerfile is a few KiB."""

_NAME_LIMIT: Final = 200


def shown_path(path: str | os.PathLike[str]) -> str:
    """A file name for a message: one line, printable, clipped (names come from repositories
    and images)."""
    from modelseal.untrusted import untrusted

    return untrusted(os.fspath(path), limit=_NAME_LIMIT, markup=False)


def size_text(n: int) -> str:
    """``n`` bytes as a limit is written: "4 MiB", "64 KiB", else "N bytes"."""
    if n >= GIB and n % GIB == 0:
        return f"{n // GIB} GiB"
    if n >= MIB and n % MIB == 0:
        return f"{n // MIB} MiB"
    if n >= KIB and n % KIB == 0:
        return f"{n // KIB} KiB"
    return f"{n} bytes"


def file_kind(mode: int) -> str:
    """What ``st_mode`` says a directory entry is: ``file``, ``dir``, ``symlink``, ``fifo``,
    ``socket``, ``device`` or ``special file``."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file"


_KIND_PHRASES: Final = {
    "dir": "a directory",
    "fifo": "a FIFO (named pipe)",
    "socket": "a socket",
}


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return _KIND_PHRASES.get(file_kind(mode), "not a regular file")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _check_containment(path: Path, what: str) -> str:
    """The path to open: the resolved one. A name inside the working directory must resolve
    inside it; a name outside it was chosen by whoever runs modelseal, symlinks and all."""
    literal = os.path.abspath(path)
    real = os.path.realpath(path)
    cwd_literal = os.path.abspath(os.curdir)
    cwd_real = os.path.realpath(os.curdir)
    if _inside(literal, cwd_literal) and not _inside(real, cwd_real):
        raise ConfigError(
            f"{what} {shown_path(path)} is a symbolic link to a file outside the working "
            f"directory ({shown_path(cwd_real)}); refusing to read it. Copy the file into the "
            "repository instead."
        )
    return real


def read_input(
    path: Path, *, what: str, limit: int = MAX_INPUT_BYTES, contained: bool = True
) -> bytes:
    """The bytes of the user-supplied file ``path`` (``what`` names it in messages, e.g.
    ``"policy file"``): a regular file of at most ``limit`` bytes, resolving inside the working
    directory when named inside it. Raises :class:`ConfigError` otherwise.

    ``contained=False`` drops the last condition, for files whose content no message quotes
    (modelseal's own outputs, OCI layouts), which may well sit behind a symlinked directory."""
    name = shown_path(path)
    real = _check_containment(path, what) if contained else os.path.realpath(path)
    try:
        # O_NONBLOCK: opening a FIFO for reading would wait for a writer; O_NOCTTY: a terminal
        # device must not become our controlling terminal. The resolved path is opened, so a
        # symlink swapped in after the check above is not followed.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {name}: {e.strerror or type(e).__name__}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what} {name} is {_kind(st.st_mode)}, not a regular file.")
        if st.st_size > limit:
            raise ConfigError(_too_large(what, name, limit, st.st_size))
        chunks: list[bytes] = []
        left = limit + 1  # one byte more than allowed tells "exactly at the limit" from "over"
        while left > 0:
            chunk = os.read(fd, min(left, 1 * MIB))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {name}: {e.strerror or type(e).__name__}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise ConfigError(_too_large(what, name, limit, None))
    return data


def read_input_text(
    path: Path, *, what: str, limit: int = MAX_INPUT_BYTES, contained: bool = True
) -> str:
    """:func:`read_input`, decoded as UTF-8 (an undecodable file is a ConfigError naming the
    byte's offset)."""
    data = read_input(path, what=what, limit=limit, contained=contained)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{what} {shown_path(path)} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
            f"{e.start})."
        ) from None


def parse_json(text: str, shown: str) -> Any:
    """``text`` parsed as JSON; bad JSON is a ConfigError naming ``shown`` (the file as shown
    in messages) with the line and column, or saying it is nested too deeply."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{shown}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}.") from None
    except RecursionError:
        raise ConfigError(f"{shown}: JSON nested too deeply.") from None


def _too_large(what: str, name: str, limit: int, size: int | None) -> str:
    actual = f" ({size} bytes)" if size is not None else ""
    return (
        f"{what} {name} is larger than the {size_text(limit)} limit{actual}; refusing to read it."
    )
