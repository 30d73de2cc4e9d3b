"""The evidence cache: what a scanner found in an image, kept by content so that the next run
on the same image does not scan it again.

An entry is the output of one expensive, deterministic step (syft's SBOM of a manifest, Trivy's
report of a manifest under one DB, the package metadata in a manifest, the models-in-image
comparison), stored under a key that is a SHA-256 over *everything* that output depends on: the
image manifest digest, the tool's identity (version, and the executable's path, size and mtime),
modelseal's version, the policy subsection the step reads, the Trivy DB's metadata and file, the
models.lock's digest. Any of those changing is a different key, so an entry is never stale; it
is only ever a copy of what the step printed for exactly those inputs.

What is never cached: anything not a pure function of its key. pip-audit's answers come from a
live OSV service (only the package extraction is cached); the Trivy DB's age is checked on every
run; the SBOM is still enriched, validated and written each run.

Trust: the cache directory is as trusted as the Trivy DB beside it (``$MODELSEAL_CACHE_DIR``,
default ``~/.cache/modelseal``; the Action keeps it under ``runner.temp``, never in the
pull request's workspace). It must be a private directory (owned by this user, not writable by
others). Still, an entry is read as untrusted bytes: at most :data:`MAX_ENTRY_BYTES`, a regular
file reached without a symlink, JSON of the expected shape naming its own key; anything else is
ignored (the step runs again and the entry is replaced by a fresh file, never written through).
The caller validates the payload as it validates the tool's own output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from modelseal import __version__, fsio
from modelseal.bounded import MIB
from modelseal.errors import Error

log = logging.getLogger(__name__)

#: Bytes one cache entry may have (syft's SBOM of a large image is a few MiB).
MAX_ENTRY_BYTES = 64 * MIB
#: Entry format; part of every key, so a format change is a miss, never a misread.
FORMAT = 1
#: The cache's directory below ``$MODELSEAL_CACHE_DIR`` (beside ``trivy/``).
SUBDIR = "evidence"

_KIND = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_KEY = re.compile(r"^[a-z][a-z0-9-]{0,39}-[0-9a-f]{64}$")
T = TypeVar("T")


def default_dir() -> Path:
    """``$MODELSEAL_CACHE_DIR/evidence``, else ``~/.cache/modelseal/evidence``."""
    base = os.environ.get("MODELSEAL_CACHE_DIR")
    root = Path(base) if base else Path.home() / ".cache" / "modelseal"
    return root / SUBDIR


def file_identity(path: str | os.PathLike[str]) -> str:
    """A cheap identity of a file for a key: resolved path, size, mtime (ns). Used for tool
    executables and the Trivy DB, whose contents are too large to hash on every run."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return f"{real}:missing"
    return f"{real}:{st.st_size}:{st.st_mtime_ns}"


def file_digest(path: str | os.PathLike[str], limit: int = 16 * MIB) -> str:
    """sha256 of a small file (a lock, a DB's metadata), or ``unreadable`` (then the key is one
    that nothing was stored under with a readable file)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return "unreadable"
    if len(data) > limit:
        return "too-large"
    return hashlib.sha256(data).hexdigest()


def tool_settings(prefix: str, ours: Iterable[str] = ()) -> list[str]:
    """The environment variables named ``PREFIX…`` (other than ``ours``, which modelseal sets
    itself): a tool configured from the environment (``TRIVY_*``, ``SYFT_*``) may print
    something else, and the values may be secrets that must not go into a key shown in reports,
    so the step is then not cached (:meth:`EvidenceCache.unless`)."""
    skip = set(ours)
    return sorted(k for k in os.environ if k.startswith(prefix) and k not in skip)


@dataclass(frozen=True)
class EvidenceCache:
    """A cache directory, or none (``root`` None: every lookup misses, nothing is stored)."""

    root: Path | None = None

    @classmethod
    def open(cls, root: Path | None) -> EvidenceCache:
        """The cache at ``root``, made private (0700) when missing; a directory that is not
        private, or cannot be made, switches the cache off (logged), never fails the run."""
        if root is None:
            return cls(None)
        try:
            return cls(fsio.ensure_private_dir(root))
        except (OSError, Error) as e:
            log.warning("evidence cache %s not used: %s", fsio.shown(root), e)
            return cls(None)

    def unless(self, reasons: list[str], facts: dict[str, str], label: str) -> EvidenceCache:
        """This cache, or none when ``reasons`` (environment variable names) is not empty; the
        fact ``label`` then says so."""
        if not reasons or self.root is None:
            return self
        _note(facts, label, "off: " + ", ".join(reasons) + " set")
        return EvidenceCache(None)

    @property
    def enabled(self) -> bool:
        """Whether lookups can hit."""
        return self.root is not None

    @staticmethod
    def key(kind: str, **inputs: str) -> str:
        """The key of a ``kind`` of entry: ``KIND-SHA256`` over modelseal's version, the entry
        format and ``inputs`` (every value the entry depends on, by name)."""
        if not _KIND.match(kind):
            raise ValueError(f"bad cache entry kind {kind!r}")
        blob = json.dumps(
            {"format": FORMAT, "modelseal": __version__, "kind": kind, "inputs": inputs},
            sort_keys=True,
        )
        return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()}"

    def get(self, key: str) -> Any | None:
        """The payload stored under ``key``, or None when there is none or it is unusable
        (too large, not a regular file, a symlink, not JSON, another key's): ignored, logged."""
        if self.root is None or not _KEY.match(key):
            return None
        name = f"{key}.json"
        try:
            with fsio.directory(self.root, create=False) as dfd:
                fd = os.open(
                    name,
                    os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                    dir_fd=dfd,
                )
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_ENTRY_BYTES:
                    raise ValueError("not a regular file of at most the entry size limit")
                chunks: list[bytes] = []
                left = MAX_ENTRY_BYTES + 1
                while left > 0:
                    chunk = os.read(fd, min(left, MIB))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    left -= len(chunk)
            finally:
                os.close(fd)
            data = b"".join(chunks)
            if len(data) > MAX_ENTRY_BYTES:
                raise ValueError("larger than the entry size limit")
            doc = json.loads(data)
            if (
                not isinstance(doc, dict)
                or doc.get("format") != FORMAT
                or doc.get("key") != key
                or "payload" not in doc
            ):
                raise ValueError("not an evidence cache entry for this key")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError, Error) as e:
            # json.JSONDecodeError and UnicodeDecodeError are ValueErrors; ELOOP is a symlink.
            log.warning("evidence cache entry %s ignored: %s", name, e)
            return None
        return doc["payload"]

    def put(self, key: str, payload: Any) -> bool:
        """Store ``payload`` (JSON-ready) under ``key`` as a new file renamed into place (a
        link there is replaced, not followed). Too large or unwritable: not stored, logged."""
        if self.root is None or not _KEY.match(key):
            return False
        text = json.dumps({"format": FORMAT, "key": key, "payload": payload}, sort_keys=True)
        if len(text.encode()) > MAX_ENTRY_BYTES:
            log.info("evidence cache entry %s not stored: over %d bytes", key, MAX_ENTRY_BYTES)
            return False
        try:
            fsio.write_text_atomic(self.root / f"{key}.json", text, mode=0o600)
        except (OSError, Error) as e:
            log.warning("evidence cache entry %s not stored: %s", key, e)
            return False
        return True

    def through(
        self,
        key: str,
        compute: Callable[[], T],
        *,
        dump: Callable[[T], Any],
        load: Callable[[Any], T],
        facts: dict[str, str],
        label: str = "cache",
    ) -> T:
        """``compute()``, or what is stored under ``key``: a stored payload goes through
        ``load`` (which validates it and raises ValueError/KeyError/TypeError when it cannot be
        trusted: the entry is then ignored and recomputed). A computed value is stored (via
        ``dump``) only once ``compute`` returned, i.e. never for a step that failed.
        ``facts[label]`` says which: ``hit KEY`` or ``miss KEY``."""
        if self.root is None:
            return compute()
        stored = self.get(key)
        if stored is not None:
            try:
                value = load(stored)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                log.warning("evidence cache entry %s ignored: %s", key, e)
            else:
                _note(facts, label, f"hit {key}")
                return value
        value = compute()
        with contextlib.suppress(ValueError, TypeError):
            self.put(key, dump(value))
        _note(facts, label, f"miss {key}")
        return value


def _note(facts: dict[str, str], label: str, text: str) -> None:
    facts[label] = f"{facts[label]}; {text}" if label in facts else text
