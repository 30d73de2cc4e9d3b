"""``models.lock``: the model files a team pinned — path, size, SHA-256, format, source.

JSON, sorted, one entry per file; paths are relative to the lock file's directory and use ``/``.
``roots`` are the files and directories that were locked: a file that later appears under a root
without an entry is *extra*, and fails verification unless the policy ignores it by pattern.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import locale
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from modelseal.bounded import MIB, file_kind, read_input
from modelseal.errors import ConfigError
from modelseal.fsio import shown

# Hashing (its thread pool, and with it `logging`) is imported where files are hashed:
# `models scan` walks directories and matches globs with this module, and hashes nothing.
if TYPE_CHECKING:
    from modelseal.models.hashing import FileDigest

LOCK_VERSION = 1


@dataclass(frozen=True)
class Source:
    """Where a model file came from (e.g. a hub repository at a commit). ``path`` is the
    file's path inside that repository (``models fetch`` records it; older locks lack it)."""

    uri: str
    revision: str | None = None
    path: str | None = None
    endpoint: str | None = None
    """The hub's endpoint, when it was not the public Hub (``HF_ENDPOINT`` at fetch time,
    without credentials)."""

    def to_json(self) -> dict[str, str]:
        """The source as stored."""
        data = {"uri": self.uri}
        if self.revision:
            data["revision"] = self.revision
        if self.path:
            data["path"] = self.path
        if self.endpoint:
            data["endpoint"] = self.endpoint
        return data


@dataclass(frozen=True)
class LockEntry:
    """One pinned file."""

    path: str
    size: int
    sha256: str
    format: str
    source: Source | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry as stored."""
        data: dict[str, Any] = {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "format": self.format,
        }
        if self.source is not None:
            data["source"] = self.source.to_json()
        return data


@dataclass(frozen=True)
class ModelsLock:
    """A whole lock file."""

    roots: tuple[str, ...]
    entries: tuple[LockEntry, ...]
    path: Path | None = None
    #: SHA-256 of the file's bytes as :func:`load_lock` read them (``None`` when not read).
    sha256: str | None = field(default=None, compare=False)

    @property
    def base(self) -> Path:
        """The directory lock paths are relative to."""
        return (self.path.parent if self.path else Path.cwd()).resolve()

    def by_path(self) -> dict[str, LockEntry]:
        """Entries keyed by path."""
        return {e.path: e for e in self.entries}

    def to_text(self) -> str:
        """The file's exact text (stable: sorted entries, two-space indent, newline)."""
        data = {
            "version": LOCK_VERSION,
            "roots": sorted(self.roots),
            "files": [e.to_json() for e in sorted(self.entries, key=lambda e: e.path)],
        }
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


MAX_LOCK_BYTES = 64 * MIB
"""A lock entry is ~250 bytes: this is room for a quarter of a million files."""


def load_lock(path: Path) -> ModelsLock:
    """Read and validate a lock file; every problem is a ConfigError naming the file."""
    content = read_input(path, what="lock file", limit=MAX_LOCK_BYTES)
    try:
        # Decoded as Path.read_text would: the lock is written with Path.write_text.
        data = json.loads(content.decode(locale.getpreferredencoding(False)))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}.") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: byte {e.start} is not valid text ({e.reason}).") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a models.lock.") from None
    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION:
        raise ConfigError(f"{path}: not a models.lock of version {LOCK_VERSION}.")
    for key in ("files", "roots"):
        if not isinstance(data.get(key, []), list):
            raise ConfigError(f"{path}: {key} must be a list.")
    entries = []
    seen: set[str] = set()
    for i, raw in enumerate(data.get("files", [])):
        where = f"{path}: files[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected an object.")
        try:
            rel = _clean_rel(str(raw["path"]), where)
            size = raw["size"]
            digest = str(raw["sha256"])
            fmt = str(raw.get("format", "unknown"))
        except KeyError as e:
            raise ConfigError(f"{where}: missing {e.args[0]!r}.") from None
        if not isinstance(size, int) or size < 0:
            raise ConfigError(f"{where}.size: expected a non-negative integer.")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(f"{where}.sha256: expected 64 lower-case hex digits.")
        if rel in seen:
            raise ConfigError(f"{where}: {rel} is listed twice.")
        seen.add(rel)
        src = raw.get("source")
        source = None
        if src is not None:
            if not isinstance(src, dict) or not isinstance(src.get("uri"), str):
                raise ConfigError(f"{where}.source: expected {{uri, revision?, path?}}.")
            rev, in_repo, endpoint = src.get("revision"), src.get("path"), src.get("endpoint")
            if in_repo is not None and not isinstance(in_repo, str):
                raise ConfigError(f"{where}.source.path: expected a string.")
            if endpoint is not None and not (
                isinstance(endpoint, str) and re.fullmatch(r"https?://[^\s@]{1,500}", endpoint)
            ):
                raise ConfigError(f"{where}.source.endpoint: expected an http(s) URL.")
            source = Source(src["uri"], str(rev) if rev is not None else None, in_repo, endpoint)
        entries.append(LockEntry(rel, size, digest, fmt, source))
    roots = tuple(_clean_rel(str(r), f"{path}: roots") for r in data.get("roots", []))
    sha256 = hashlib.sha256(content).hexdigest()
    return ModelsLock(roots=roots, entries=tuple(entries), path=path, sha256=sha256)


def _clean_rel(rel: str, where: str) -> str:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or rel in ("", "."):
        raise ConfigError(
            f"{where}: path {rel!r} must be relative and stay inside the lock's directory."
        )
    return str(p)


def collect_files(base: Path, roots: Sequence[str], ignore: Sequence[str] = ()) -> list[str]:
    """Every regular file under ``roots`` (relative to ``base``), as sorted relative paths,
    minus those matching an ``ignore`` glob. Symlinks are refused: a link can point outside
    what was reviewed."""
    return [r for r in walk_files(base, roots) if not is_ignored(r, ignore)]


def walk_files(base: Path, roots: Sequence[str]) -> list[str]:
    """:func:`collect_files` without the ``ignore`` globs: every regular file under ``roots``.
    A symlink at or above a model path (every component below ``base`` is checked), a fifo,
    socket or device under one is a ConfigError naming it: models must be regular files."""
    out: set[str] = set()
    for root in roots:
        _utf8_rel(root)
        kind = path_kind(base, root)
        if kind == "file":
            out.add(root)
            continue
        if kind == "missing":
            raise ConfigError(f"model path {root} does not exist under {base}.")
        start = base / root
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            for name in sorted(filenames + dirnames):
                full = Path(dirpath) / name
                rel = _utf8_rel(full.relative_to(base).as_posix())
                kind = file_kind(full.lstat().st_mode)
                if kind == "file":
                    out.add(rel)
                elif kind != "dir":
                    _refuse(rel, kind)
    return sorted(out)


def _utf8_rel(rel: str) -> str:
    """``rel`` when it is UTF-8; a name that is not cannot be pinned, reported or matched
    exactly (the lock, models.json and the reports are UTF-8), so it is refused."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"model path {shown(rel)} is not valid UTF-8; rename the file (model files are "
            "pinned and reported by name)."
        ) from None
    return rel


def path_kind(base: Path, rel: str) -> str:
    """``file``, ``dir`` or ``missing`` for ``base/rel``, checking every component below
    ``base`` without following links: a symlink on the way, or a special file, is a
    ConfigError naming it (a lock pins files, never what a link leads to)."""
    here = base
    parts = PurePosixPath(rel).parts
    for i, part in enumerate(parts):
        here = here / part
        try:
            mode = here.lstat().st_mode
        except FileNotFoundError:
            return "missing"
        except OSError as e:
            raise ConfigError(f"cannot read model path {rel}: {e.strerror}.") from None
        kind = file_kind(mode)
        if kind == "dir" or (kind == "file" and i == len(parts) - 1):
            continue
        if kind == "file":
            return "missing"  # a file where a directory should be: the path does not exist
        _refuse("/".join(parts[: i + 1]), kind)
    return "dir" if rel in ("", ".") else file_kind(here.lstat().st_mode)


def _refuse(rel: str, kind: str) -> None:
    if kind == "symlink":
        raise ConfigError(
            f"model path {rel} is a symlink; models must be real files (lock the file it "
            "points to)."
        )
    raise ConfigError(f"model path {rel} is a {kind}; models must be regular files.")


def is_ignored(rel: str, patterns: Iterable[str]) -> bool:
    """Whether the relative, ``/``-separated path ``rel`` matches one of the ``ignore`` globs,
    as a whole or by its file name."""
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def make_lock(
    base: Path,
    roots: Sequence[str],
    *,
    detect: Callable[[Path], str],
    ignore: Sequence[str] = (),
    previous: ModelsLock | None = None,
    source: Source | None = None,
) -> ModelsLock:
    """Hash and describe every file under ``roots``. Sources recorded in ``previous`` are kept
    for files whose digest did not change; ``source`` applies to every file otherwise."""
    clean = tuple(
        _clean_rel(Path(os.path.relpath(base / r, base)).as_posix(), "model path") for r in roots
    )
    from modelseal.models.hashing import hash_files

    rels = collect_files(base, clean, ignore)
    digests = hash_files([base / r for r in rels])
    old = previous.by_path() if previous else {}
    entries = []
    for rel in rels:
        d: FileDigest = digests[base / rel]
        prior = old.get(rel)
        kept = prior.source if prior is not None and prior.sha256 == d.sha256 else None
        entries.append(LockEntry(rel, d.size, d.sha256, detect(base / rel), source or kept))
    return ModelsLock(roots=clean, entries=tuple(entries))


@dataclass(frozen=True)
class LockMismatch:
    """One way the files on disk differ from the lock."""

    kind: str  # "changed", "missing", "extra"
    path: str
    expected: str | None = None  # sha256 in the lock
    actual: str | None = None  # sha256 on disk
    detail: Mapping[str, str] = field(default_factory=dict)


def verify_lock(
    lock: ModelsLock,
    *,
    ignore: Sequence[str] = (),
    digests: Mapping[str, FileDigest] | None = None,
    walked: Sequence[str] | None = None,
) -> tuple[list[LockMismatch], dict[str, FileDigest]]:
    """Compare the files under the lock's roots with the lock. Returns the mismatches and the
    digests computed (path → digest), so callers need not hash twice. ``walked`` is
    ``walk_files(lock.base, lock.roots)`` when the caller already has it (so the roots are
    walked once)."""
    from modelseal.models.hashing import hash_files

    base = lock.base
    if walked is None:
        walked = walk_files(base, lock.roots) if lock.roots else []
    present = [r for r in walked if not is_ignored(r, ignore)]
    expected = lock.by_path()
    on_disk = set(present) | {p for p in expected if path_kind(base, p) == "file"}
    computed = dict(digests or {})
    todo = [base / p for p in sorted(on_disk) if p not in computed]
    for path, d in hash_files(todo).items():
        computed[path.relative_to(base).as_posix()] = d
    problems = []
    for rel, entry in sorted(expected.items()):
        if rel not in on_disk:
            problems.append(LockMismatch("missing", rel, expected=entry.sha256))
            continue
        got = computed[rel]
        if got.sha256 != entry.sha256 or got.size != entry.size:
            problems.append(
                LockMismatch(
                    "changed",
                    rel,
                    expected=entry.sha256,
                    actual=got.sha256,
                    detail={"expected_size": str(entry.size), "actual_size": str(got.size)},
                )
            )
    for rel in sorted(on_disk - expected.keys()):
        problems.append(LockMismatch("extra", rel, actual=computed[rel].sha256))
    return problems, computed
