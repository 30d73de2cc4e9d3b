"""Writing files where others may have planted things: the one way modelseal writes.

The output directory often sits in a checked-out repository, and a pull request can commit a
symbolic link under any name (``modelseal-out/summary.md -> ~/.bashrc``). So every file is
written fresh and atomically: a temporary file created with ``O_EXCL | O_NOFOLLOW`` in the same
directory, written, ``fsync``-ed, then renamed over the final name. ``rename`` replaces a link
at the final name instead of writing through it, and a failed write leaves the previous file
as it was. Directories are walked from ``/`` one component at a time with ``O_NOFOLLOW`` and
the writes happen relative to the directory's file descriptor, so no symbolic link is followed
anywhere on the way, not even one swapped in while modelseal runs: a path with a link in it is
refused (:class:`UnsafePathError`, exit 2) — pass the real path (``realpath DIR``) instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modelseal.errors import ConfigError

__all__ = [
    "UnsafePathError",
    "absolute",
    "append_text",
    "directory",
    "ensure_dir",
    "ensure_private_dir",
    "make_temp_dir",
    "open_append",
    "private_temp_dir",
    "remove",
    "replace_dir",
    "shown",
    "write_bytes_atomic",
    "write_text_atomic",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePathError(ConfigError):
    """A path modelseal was to write through holds a symbolic link, or something other than
    what it must be (a directory where a file goes, a file where a directory goes)."""


def shown(path: Path | str) -> str:
    """A path for a message: file names are hostile too, so control characters and bytes
    that are not UTF-8 are shown escaped (:func:`modelseal.untrusted.untrusted`)."""
    from modelseal.untrusted import untrusted

    return untrusted(os.fspath(path), markup=False)


def absolute(path: Path | str) -> Path:
    """``path`` made absolute without resolving links (they are checked, not followed)."""
    return Path(os.path.abspath(path))


def _refuse(path: Path, what: str) -> UnsafePathError:
    return UnsafePathError(
        f"{shown(path)} {what}; modelseal writes only into real directories it reaches "
        "without following a symbolic link.",
        hint="A link there could point anywhere (one committed in a pull request, for "
        "instance). Give the real path (`realpath DIR`) or remove the link.",
    )


def _not_a_dir(parent: int, name: str, full: Path) -> UnsafePathError:
    """Why ``name`` could not be opened as a directory (O_NOFOLLOW says ELOOP or ENOTDIR for
    a link, depending on the kernel and flags): a link, or something else."""
    try:
        st = os.lstat(name, dir_fd=parent)
    except OSError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        return _refuse(full, "is a symbolic link")
    return UnsafePathError(f"{shown(full)} is not a directory; cannot write under it.")


def _open_component(parent: int, name: str, create: bool, mode: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
    # Made meanwhile by someone else: opened (and so checked) below like any other.
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, mode, dir_fd=parent)
    return os.open(name, _DIR_FLAGS, dir_fd=parent)


def _open_dir(path: Path, *, create: bool, mode: int = 0o777) -> int:
    """An ``O_DIRECTORY`` descriptor of ``path``, reached from ``/`` without following a link;
    missing directories are made (with ``mode``, under the umask) when ``create``."""
    full = absolute(path)
    fd = os.open("/", _DIR_FLAGS)
    walked = Path("/")
    try:
        for name in full.parts[1:]:
            walked = walked / name
            try:
                nxt = _open_component(fd, name, create, mode)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise _not_a_dir(fd, name, walked) from None
                if isinstance(e, FileNotFoundError):
                    raise
                raise UnsafePathError(
                    f"cannot use the directory {shown(walked)}: {e.strerror}."
                ) from None
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def directory(path: Path, *, create: bool = True) -> Iterator[int]:
    """A descriptor of the directory ``path`` (see :func:`ensure_dir`), closed on exit."""
    fd = _open_dir(path, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> Path:
    """Make ``path`` a directory (parents too) unless it is one; refuse a path with a link in
    it. Returns the absolute path, for tools that need a name rather than a descriptor."""
    with directory(path):
        pass
    return absolute(path)


def _temp_name(name: str) -> str:
    return f".{name}.{secrets.token_hex(6)}.tmp"


def _final_name(path: Path) -> str:
    name = absolute(path).name
    if not name:
        raise UnsafePathError(f"{shown(path)} names no file.")
    return name


def write_bytes_atomic(
    path: Path, data: bytes, *, mode: int = 0o666, like: os.stat_result | None = None
) -> None:
    """Write ``data`` as a new file at ``path`` (made with ``mode``, under the umask) and
    rename it into place: a link at ``path`` is replaced, never written through, and the
    previous file stays whole until the new one is complete. Parents are made as needed.
    ``like``: the file being replaced, whose permission bits the new file gets exactly (and its
    owner, when running as root) before it is renamed into place — a 0600 file stays 0600."""
    name = _final_name(path)
    with directory(absolute(path).parent) as dfd:
        tmp = _temp_name(name)
        fd = os.open(tmp, _NEW_FILE_FLAGS, mode if like is None else 0o600, dir_fd=dfd)
        try:
            try:
                if like is not None:
                    if os.geteuid() == 0:
                        os.fchown(fd, like.st_uid, like.st_gid)
                    os.fchmod(fd, stat.S_IMODE(like.st_mode))
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except IsADirectoryError:
                raise UnsafePathError(
                    f"{shown(path)} is a directory; a file was to be written there."
                ) from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        os.fsync(dfd)


def write_text_atomic(
    path: Path,
    text: str,
    *,
    encoding: str = "utf-8",
    errors: str = "strict",
    mode: int = 0o666,
    like: os.stat_result | None = None,
) -> None:
    """:func:`write_bytes_atomic` for text. The text is encoded before anything is touched;
    with ``errors="strict"`` a character that does not encode (a file name that was not UTF-8)
    is a :class:`ConfigError`, and the previous file is left alone."""
    try:
        data = text.encode(encoding, errors)
    except UnicodeEncodeError as e:
        bad = shown(e.object[max(0, e.start - 20) : e.end + 20])
        raise ConfigError(
            f"cannot write {shown(path)}: its text holds characters that are not {encoding} "
            f"(near {bad!r}); the previous file is left as it was."
        ) from None
    write_bytes_atomic(path, data, mode=mode, like=like)


def open_append(path: Path, *, create: bool = True) -> int:
    """A descriptor appending to the regular file ``path`` (made when ``create``); a link at
    ``path`` is refused, not followed. For the files a CI runner hands over
    (``$GITHUB_OUTPUT``) and logs that grow."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    if create:
        flags |= os.O_CREAT
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refuse(absolute(path), "is a symbolic link") from None
        raise UnsafePathError(f"cannot append to {shown(path)}: {e.strerror}.") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePathError(f"{shown(path)} is not a regular file; nothing was appended.")
    os.set_blocking(fd, True)
    return fd


def append_text(path: Path, text: str) -> None:
    """Append ``text`` (UTF-8) to the regular file ``path``; see :func:`open_append`."""
    fd = open_append(path)
    try:
        view = memoryview(text.encode("utf-8", "backslashreplace"))
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    """Remove whatever is at ``path`` — a file, a link (not what it points to) or a whole
    directory tree (links inside it are removed, never followed). Nothing there is fine; a
    link among the parents is refused."""
    name = _final_name(path)
    try:
        dfd = _open_dir(absolute(path).parent, create=False)
    except FileNotFoundError:
        return
    try:
        try:
            st = os.lstat(name, dir_fd=dfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)
    finally:
        os.close(dfd)


def private_temp_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A new private (0700, ``mkdtemp``) working directory under the system's temporary
    directory, reached by that directory's real path: a link above it (``TMPDIR`` or ``/tmp``
    being one on some systems) is the machine's own, and would otherwise make every write
    modelseal makes inside the directory refused. Nothing can be planted in the new directory
    itself: modelseal makes it, with a random name, only for itself."""
    return tempfile.TemporaryDirectory(prefix=prefix, dir=os.path.realpath(tempfile.gettempdir()))


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new, empty, private (0700) directory with a random name in ``parent`` (made as
    needed): for tools that write a tree by path, before it is renamed into place."""
    with directory(parent) as dfd:
        for _ in range(16):
            name = f".{prefix}.{secrets.token_hex(6)}.tmp"
            try:
                os.mkdir(name, 0o700, dir_fd=dfd)
            except FileExistsError:
                continue
            return absolute(parent) / name
    raise UnsafePathError(f"cannot make a temporary directory in {shown(parent)}.")


def replace_dir(src: Path, dst: Path, *, mode: int = 0o755) -> None:
    """Put the directory ``src`` (from :func:`make_temp_dir`, same parent) at ``dst``: what was
    at ``dst`` (a directory, a file, a link) is removed, never followed; ``src`` gets ``mode``
    (under the umask)."""
    src, dst = absolute(src), absolute(dst)
    if src.parent != dst.parent:
        raise ValueError(f"{src} and {dst} must share a directory")
    umask = os.umask(0)
    os.umask(umask)
    with directory(dst.parent, create=False) as dfd:
        os.chmod(src.name, mode & ~umask, dir_fd=dfd, follow_symlinks=False)
        old = None
        try:
            st = os.lstat(dst.name, dir_fd=dfd)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                old = _temp_name(dst.name)
                os.rename(dst.name, old, src_dir_fd=dfd, dst_dir_fd=dfd)
            else:
                os.unlink(dst.name, dir_fd=dfd)
        os.rename(src.name, dst.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        if old is not None:
            shutil.rmtree(old, dir_fd=dfd)
        os.fsync(dfd)


def ensure_private_dir(path: Path, *, create: bool = True) -> Path:
    """Make ``path`` a directory that only this user controls, or refuse it: reached without
    a link, owned by the effective user, not writable by group or others (made 0700 when
    missing and ``create``; else :class:`FileNotFoundError`). What another user can write
    into, another user can plant links and pid files in. Returns the absolute path."""
    full = absolute(path)
    with directory(full.parent, create=create) as pfd:
        parent = os.fstat(pfd)
        # Whoever owns the parent, or may write to it without the sticky bit, can rename the
        # directory checked below and put theirs in its place.
        foreign = parent.st_uid not in (0, os.geteuid())
        if foreign or (parent.st_mode & 0o022 and not parent.st_mode & stat.S_ISVTX):
            raise UnsafePathError(
                f"{shown(full.parent)} belongs to another user or is writable by others (and "
                f"not sticky); {shown(full.name)} in it could be replaced by someone else."
            )
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(full.name, 0o700, dir_fd=pfd)
        try:
            fd = os.open(full.name, _DIR_FLAGS, dir_fd=pfd)
        except FileNotFoundError:
            raise
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                raise _not_a_dir(pfd, full.name, full) from None
            raise UnsafePathError(
                f"cannot use the directory {shown(full)}: {e.strerror}."
            ) from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if st.st_uid != os.geteuid():
        raise UnsafePathError(
            f"{shown(full)} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()}); "
            "its contents cannot be trusted.",
            hint="Use a directory of your own, made with mode 0700 (e.g. `mkdir -m 700 DIR`).",
        )
    if st.st_mode & 0o022:
        raise UnsafePathError(
            f"{shown(full)} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            "another user could plant files in it.",
            hint=f"Restrict it: chmod 700 {shown(full)}",
        )
    return full
