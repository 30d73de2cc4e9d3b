"""The normalized build context: what BuildKit would receive, with every mode and time fixed.

BuildKit hashes file metadata (mode bits, timestamps) into the context it transfers, so two
checkouts of the same commit give different layers unless the context is normalized first.
:func:`normalize_context` copies the context honouring ``.dockerignore`` exactly as BuildKit
does (moby/patternmatcher semantics, tonistiigi/fsutil walk), and pins modes and times.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from modelseal.bounded import read_input
from modelseal.errors import ConfigError

__all__ = ["NORMALIZATION_VERSION", "ContextSummary", "DockerIgnore", "normalize_context"]

#: The version of the normalization rules in this module (what is copied, with which modes and
#: times). It is part of the build definition: recorded in the report's build facts and in the
#: provenance, so a rebuild can tell it normalizes the same way. Bump it with ANY change that
#: could change the normalized context (tests/publish/test_provenance.py pins a hash of this
#: file beside it and fails until both are updated). Stand-ins (``stand_in``) are not such a
#: change: they never change an image's bytes (tests/imagebuild/test_stand_ins.py builds with
#: and without them and compares the digests).
NORMALIZATION_VERSION = 1

# Go's unicode.IsSpace, which strings.TrimSpace (and BuildKit's Dockerfile parser) uses.
# Python's str.strip() also strips \x1c-\x1f, which Go keeps, so the set is spelled out.
GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

# Characters that make fsutil walk into an excluded directory just in case an exception
# matches something below it (fsutil's onlyPrefixExcludeExceptions).
_PATTERN_CHARS = "*[]?^\\"

# Modes every normalized entry gets, whatever the checkout had: umask and core.fileMode
# differ between machines, and BuildKit hashes mode bits into the context.
_DIR_MODE = 0o755
_EXEC_MODE = 0o755
_FILE_MODE = 0o644

# Characters patternmatcher escapes when it turns a pattern into a regular expression.
_REGEX_ESCAPED = ".+()|{}$"


_CHUNK = 1 << 20


def go_clean(path: str) -> str:
    """Go's ``path.Clean``: ``posixpath.normpath`` keeps a leading ``//``, Go does not."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(seg)
    joined = "/".join(parts)
    if rooted:
        return "/" + joined
    return joined or "."


class _Kind(Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    REGEXP = "regexp"


class _BadPattern(ValueError):
    pass


@dataclass(frozen=True)
class _Pattern:
    """One compiled pattern, as moby/patternmatcher's ``Pattern``."""

    text: str
    exclusion: bool
    kind: _Kind
    regex: re.Pattern[str] | None

    def matches(self, path: str) -> bool:
        if self.kind is _Kind.EXACT:
            return path == self.text
        if self.kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind is _Kind.SUFFIX:
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            # "**/foo" matches "foo" itself.
            return suffix[:1] == "/" and path == suffix[1:]
        assert self.regex is not None
        return self.regex.match(path) is not None

    def without_trailing_glob(self) -> str:
        text = self.text.removesuffix("/**")
        return text.removesuffix("/*")


def _validate_go_match(pattern: str) -> None:
    """Reject what Go's ``filepath.Match`` calls ``ErrBadPattern`` (BuildKit refuses those)."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise _BadPattern("a trailing backslash escapes nothing")
            i += 2
            continue
        if ch != "[":
            i += 1
            continue
        i += 1
        if i < n and pattern[i] == "^":
            i += 1
        ranges = 0
        while True:
            if i < n and pattern[i] == "]" and ranges > 0:
                i += 1
                break
            i = _class_char(pattern, i)
            if pattern[i] == "-":
                i = _class_char(pattern, i + 1)
            ranges += 1


def _class_char(pattern: str, i: int) -> int:
    """Go's ``getEsc``: one character of a ``[...]`` class; the class must go on after it."""
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        raise _BadPattern("malformed character class")
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            raise _BadPattern("malformed character class")
    i += 1
    if i >= n:
        raise _BadPattern("unclosed character class")
    return i


def _compile(text: str, exclusion: bool) -> _Pattern:
    """patternmatcher's ``Pattern.compile``, kept character for character: its quirks (a ``^``
    or ``[^...]`` reaching the regular expression unescaped) are what BuildKit does too."""
    reg = "^"
    kind = _Kind.EXACT
    pos, n, i = 0, len(text), 0
    while pos < n:
        ch = text[pos]
        pos += 1
        if ch == "*":
            if pos < n and text[pos] == "*":
                pos += 1
                if pos < n and text[pos] == "/":
                    pos += 1
                if pos >= n:
                    if kind is _Kind.EXACT:
                        kind = _Kind.PREFIX
                    else:
                        reg += ".*"
                        kind = _Kind.REGEXP
                else:
                    reg += "(.*/)?"
                    kind = _Kind.REGEXP
                if i == 0:
                    kind = _Kind.SUFFIX
            else:
                reg += "[^/]*"
                kind = _Kind.REGEXP
        elif ch == "?":
            reg += "[^/]"
            kind = _Kind.REGEXP
        elif ch in _REGEX_ESCAPED:
            reg += "\\" + ch
        elif ch == "\\":
            if pos < n:
                reg += "\\" + text[pos]
                pos += 1
                kind = _Kind.REGEXP
            else:
                reg += "\\"
        elif ch in "[]":
            reg += ch
            kind = _Kind.REGEXP
        else:
            reg += ch
        i += 1
    regex: re.Pattern[str] | None = None
    if kind is _Kind.REGEXP:
        # Go's "$" is end of text; Python's also matches before a final newline.
        reg += r"\Z"
        try:
            with warnings.catch_warnings():
                # Python warns about "[[" and "&&" inside classes; Go takes them literally,
                # and so does Python today.
                warnings.simplefilter("ignore", FutureWarning)
                regex = re.compile(reg)
        except re.error as e:
            raise _BadPattern(str(e)) from None
    return _Pattern(text, exclusion, kind, regex)


MatchInfo = tuple[bool, ...]
"""Per-pattern results for a directory, handed to its children (patternmatcher's MatchInfo)."""


@dataclass(frozen=True)
class DockerIgnore:
    """``.dockerignore`` rules with BuildKit's semantics.

    ``patterns`` are the cleaned patterns BuildKit receives (``!`` marks an exception); later
    patterns win. Build one with :meth:`from_lines` or :meth:`load`.
    """

    patterns: tuple[str, ...] = ()
    source: str = ".dockerignore"
    _compiled: tuple[_Pattern, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.patterns and not self._compiled:
            compiled = tuple(
                self._compile_one(p, self.source, n) for n, p in enumerate(self.patterns, 1)
            )
            object.__setattr__(self, "_compiled", compiled)

    @staticmethod
    def _compile_one(pattern: str, source: str, line: int) -> _Pattern:
        # patternmatcher.New cleans again, '!' and all.
        text = go_clean(pattern.strip(GO_SPACE))
        exclusion = text.startswith("!")
        if exclusion:
            if len(text) == 1:
                raise ConfigError(
                    f'{source}:{line}: illegal exclusion pattern "!": an exception needs a path.'
                )
            text = text[1:]
        try:
            _validate_go_match(text)
            return _compile(text, exclusion)
        except _BadPattern as e:
            raise ConfigError(
                f"{source}:{line}: invalid pattern {pattern!r} ({e}); BuildKit would refuse it."
            ) from None

    @classmethod
    def from_lines(cls, lines: Iterable[str], *, source: str = ".dockerignore") -> DockerIgnore:
        """Parse ``.dockerignore`` lines (moby's ``ignorefile.ReadAll``).

        A line is a comment only if ``#`` is its very first character; whitespace is trimmed;
        ``!`` marks an exception; each pattern is cleaned and a leading ``/`` dropped.
        ``source`` names the file in error messages.
        """
        patterns: list[str] = []
        compiled: list[_Pattern] = []
        for number, raw in enumerate(lines, 1):
            line = raw.removesuffix("\n").removesuffix("\r")
            if number == 1:
                line = line.removeprefix("\ufeff")
            if line.startswith("#"):
                continue
            line = line.strip(GO_SPACE)
            if not line:
                continue
            invert = line.startswith("!")
            if invert:
                line = line[1:].strip(GO_SPACE)
            if line:
                line = go_clean(line)
                if len(line) > 1 and line.startswith("/"):
                    line = line[1:]
            if invert:
                line = "!" + line
            patterns.append(line)
            compiled.append(cls._compile_one(line, source, number))
        return cls(tuple(patterns), source, tuple(compiled))

    @classmethod
    def load(cls, context_dir: Path, dockerfile: Path | None) -> DockerIgnore:
        """The rules BuildKit applies to ``context_dir``.

        ``<Dockerfile name>.dockerignore`` beside the Dockerfile wins over
        ``<context>/.dockerignore``; ``dockerfile=None`` means ``<context>/Dockerfile``.
        No file means no rules.
        """
        dockerfile = dockerfile if dockerfile is not None else context_dir / "Dockerfile"
        for candidate in (
            dockerfile.parent / (dockerfile.name + ".dockerignore"),
            context_dir / ".dockerignore",
        ):
            if not (candidate.exists() or candidate.is_symlink()):
                continue  # absent; one that is there but no regular file is refused below
            data = read_input(candidate, what="ignore file")
            # Go reads bytes; undecodable ones must survive to match undecodable file names.
            text = data.decode("utf-8", errors="surrogateescape")
            return cls.from_lines(text.split("\n"), source=str(candidate))
        return cls()

    def match(self, path: str, parent: MatchInfo | None = None) -> tuple[bool, MatchInfo]:
        """patternmatcher's ``MatchesUsingParentResults``: whether the cleaned, slash-separated
        ``path`` is excluded, given its directory's :class:`MatchInfo` (``None`` at the top,
        where parents are checked by prefix as ``MatchesOrParentMatches`` does)."""
        matched = False
        info: list[bool] = []
        for index, pattern in enumerate(self._compiled):
            hit = parent[index] if parent else False
            if not hit:
                if pattern.exclusion != matched:
                    info.append(False)
                    continue
                hit = pattern.matches(path)
                if not hit and not parent:
                    parts = path.split("/")[:-1]
                    hit = any(pattern.matches("/".join(parts[: k + 1])) for k in range(len(parts)))
            info.append(hit)
            if hit:
                matched = not pattern.exclusion
        return matched, tuple(info)

    def excluded(self, relpath: str) -> bool:
        """Whether BuildKit leaves ``relpath`` (slash-separated, relative to the context) out.

        The context root itself is never excluded.
        """
        path = go_clean(relpath).lstrip("/")
        if path in (".", "") or not self._compiled:
            return False
        info: MatchInfo | None = None
        parts = path.split("/")
        result = False
        for k in range(len(parts)):
            result, info = self.match("/".join(parts[: k + 1]), info)
        return result

    def must_walk_excluded_dir(self, relpath: str) -> bool:
        """Whether an exception could re-include something below the excluded directory
        ``relpath``; fsutil walks such directories and prunes the others."""
        exceptions = [p for p in self._compiled if p.exclusion]
        if not exceptions:
            return False
        if any(any(c in p.without_trailing_glob() for c in _PATTERN_CHARS) for p in exceptions):
            return True
        dir_slash = relpath + "/"
        return any((p.without_trailing_glob() + "/").startswith(dir_slash) for p in exceptions)


@dataclass(frozen=True)
class ContextSummary:
    """What :func:`normalize_context` wrote.

    ``dirs`` does not count the root. ``excluded`` counts the entries the ignore rules left
    out; an excluded directory that was not walked (nothing below it could be re-included)
    counts once.
    """

    files: int
    dirs: int
    symlinks: int
    bytes: int
    excluded: int


@dataclass(frozen=True)
class _Entry:
    rel: str
    kind: str  # "dir", "file" or "link"
    source: Path
    mode: int = 0


def _describe_special(mode: int) -> str | None:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return None
    return "a special file"


def _plan(src: Path, ignore: DockerIgnore) -> tuple[list[_Entry], int]:
    """Walk ``src`` as fsutil does; return the entries to write, in order, and the count of
    excluded ones."""
    entries: list[_Entry] = []
    emitted_dirs: set[str] = set()
    walked_excluded_dirs: set[str] = set()
    excluded = 0
    # (absolute dir, relative dir, match info of that dir, whether that dir is excluded)
    stack: list[tuple[Path, str, MatchInfo | None, bool]] = [(src, "", None, False)]

    def emit_parents(rel: str) -> None:
        parts = rel.split("/")[:-1]
        for k in range(len(parts)):
            parent = "/".join(parts[: k + 1])
            if parent not in emitted_dirs:
                emitted_dirs.add(parent)
                entries.append(_Entry(parent, "dir", src / parent))

    while stack:
        directory, rel_dir, dir_info, dir_excluded = stack.pop()
        try:
            names = sorted(os.listdir(directory))
        except OSError as e:
            if dir_excluded:
                # fsutil ignores errors below directories it does not send.
                continue
            raise ConfigError(
                f"cannot read directory {directory} in the build context: {e.strerror or e}."
            ) from None
        children: list[tuple[Path, str, MatchInfo | None, bool]] = []
        for name in names:
            path = directory / name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            try:
                st = os.lstat(path)
            except OSError as e:
                if dir_excluded:
                    continue
                raise ConfigError(
                    f"cannot read {path} in the build context: {e.strerror or e}."
                ) from None
            is_excluded, info = ignore.match(rel, dir_info) if ignore.patterns else (False, ())
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                if is_excluded:
                    if ignore.must_walk_excluded_dir(rel):
                        walked_excluded_dirs.add(rel)
                        children.append((path, rel, info, True))
                    else:
                        excluded += 1
                    continue
                emit_parents(rel)
                emitted_dirs.add(rel)
                entries.append(_Entry(rel, "dir", path))
                children.append((path, rel, info, False))
                continue
            if is_excluded:
                excluded += 1
                continue
            special = _describe_special(mode)
            if special is not None:
                raise ConfigError(
                    f"{path} in the build context is {special}; BuildKit cannot send it "
                    "reproducibly. Remove it or list it in .dockerignore."
                )
            emit_parents(rel)
            if stat.S_ISLNK(mode):
                entries.append(_Entry(rel, "link", path))
            else:
                file_mode = _EXEC_MODE if mode & 0o111 else _FILE_MODE
                entries.append(_Entry(rel, "file", path, file_mode))
        # Pushed in reverse so the walk is a sorted pre-order, like fsutil's.
        stack.extend(reversed(children))
    excluded += len(walked_excluded_dirs - emitted_dirs)
    return entries, excluded


def _prepare_dest(src: Path, dest: Path) -> None:
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir() or dest.is_symlink():
            raise ConfigError(f"{dest} exists and is not a directory; cannot write a context.")
        if any(dest.iterdir()):
            raise ConfigError(f"{dest} is not empty; the normalized context needs a fresh one.")
    src_real, dest_real = src.resolve(), dest.resolve()
    if dest_real == src_real or src_real in dest_real.parents:
        raise ConfigError(
            f"{dest} is inside the build context {src}; it would copy itself. "
            "Choose a directory outside the context."
        )
    dest.mkdir(parents=True, exist_ok=True)


def _copy_hashing(src: Path, dst: Path) -> tuple[int, int]:
    """Copy a file; return its size and a content-derived offset in 1..999_999_999 ns.

    Why the offset: BuildKit re-sends only context files whose stat (mtime, size, mode) changed
    since the last build from the same client, so with every mtime set to exactly the epoch a
    same-size edit (one flipped byte of a model) would build from stale content. A sub-second
    offset derived from the content makes every edit visible to that check, keeps unchanged files
    unchanged, and still lands above the epoch, so the layout finalizer
    (:mod:`modelseal.imagebuild.finalize`) clamps it back to the epoch in the image.
    """
    h = hashlib.sha256()
    size = 0
    # The walk saw a regular file; what is opened must still be one (not a FIFO or a symlink
    # swapped in since, which would hang the copy or read outside the context).
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "no longer a regular file")
    with os.fdopen(fd, "rb") as fin, dst.open("xb") as fout:
        while chunk := fin.read(_CHUNK):
            h.update(chunk)
            fout.write(chunk)
            size += len(chunk)
    return size, _content_offset(h.digest())


def _write_stand_in(content: bytes, dst: Path) -> tuple[int, int]:
    """Write a stand-in; its size and a content-derived offset as :func:`_copy_hashing` gives
    (a stand-in names its run: a new run's is a changed file to BuildKit's check)."""
    with dst.open("xb") as fout:
        fout.write(content)
    return len(content), _content_offset(hashlib.sha256(content).digest())


def _content_offset(digest: bytes) -> int:
    """A file's sub-second mtime offset from its content's SHA-256: 1..999_999_999 ns."""
    return 1 + int.from_bytes(digest[:8], "big") % 999_999_999


def normalize_context(
    src: Path, dest: Path, *, epoch: int, ignore: DockerIgnore,
    stand_in: Callable[[str, Path], bytes | None] | None = None,
) -> ContextSummary:  # fmt: skip
    """Copy the build context ``src`` into ``dest`` the way BuildKit would send it, with fixed
    metadata: files 0o644 (0o755 if any execute bit was set), directories 0o755, symlinks kept
    as links (never followed), and every entry's atime and mtime set to ``epoch`` (regular
    files: plus a content-derived fraction of a second, see :func:`_copy_hashing`).

    ``dest`` must not exist or be empty. FIFOs, sockets, device files and unreadable entries
    that would be sent raise :class:`ConfigError` naming the path.

    ``stand_in(rel, source)``: the bytes to write instead of the file ``rel`` (a model stand-in,
    :mod:`modelseal.imagebuild.standins`), or None to copy it; the mode and times are the file's
    as above. The image is the same either way: the layout finalizer puts the file back.
    """
    if epoch < 0:
        raise ConfigError(f"SOURCE_DATE_EPOCH must not be negative (got {epoch}).")
    if not src.is_dir():
        raise ConfigError(f"build context {src} is not a directory.")
    _prepare_dest(src, dest)
    entries, excluded = _plan(src, ignore)
    times = (epoch * 1_000_000_000, epoch * 1_000_000_000)
    files = dirs = links = total = 0
    created_dirs: list[Path] = []
    for entry in entries:
        target = dest / entry.rel
        if entry.kind == "dir":
            target.mkdir()
            os.chmod(target, _DIR_MODE)
            created_dirs.append(target)
            dirs += 1
            continue
        try:
            if entry.kind == "link":
                os.symlink(os.readlink(entry.source), target)
                links += 1
            else:
                content = stand_in(entry.rel, entry.source) if stand_in is not None else None
                if content is not None:
                    size, offset = _write_stand_in(content, target)
                else:
                    size, offset = _copy_hashing(entry.source, target)
                os.chmod(target, entry.mode)
                files += 1
                total += size
                os.utime(target, ns=(times[0], times[1] + offset))
                continue
        except OSError as e:
            raise ConfigError(
                f"cannot read {entry.source} in the build context: {e.strerror or e}."
            ) from None
        os.utime(target, ns=times, follow_symlinks=False)
    # Writing into a directory moves its mtime, so directories are stamped last, deepest
    # first, and the root after everything.
    for directory in sorted(created_dirs, key=lambda p: len(p.parts), reverse=True):
        os.utime(directory, ns=times)
    os.chmod(dest, _DIR_MODE)
    os.utime(dest, ns=times)
    return ContextSummary(files=files, dirs=dirs, symlinks=links, bytes=total, excluded=excluded)
