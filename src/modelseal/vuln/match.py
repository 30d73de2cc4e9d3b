"""What a vulnerability finding is, for the policy's matchers: its package URL, ecosystem,
package type (OS or language), fix state and the file that carries it; and the matchers of an
ignore entry (``purl``, ``versions``, ``paths``, ``fix_state``, ``scanner``) and of an OpenVEX
product.

Purl matching (ignore entries and VEX products alike): the type, namespace and name must be
equal — names compared as the ecosystem compares them (PyPI: PEP 503 normalised) — and the
version too when the pattern gives one (PyPI: PEP 440 equality, so ``1.0`` is ``1.0.0``;
Debian: dpkg equality, the ``epoch`` qualifier folded into the version — without a version it
is compared with the package's epoch on its own); qualifiers are only compared when the pattern
gives them (each given one must be equal), so ``pkg:deb/debian/zlib1g`` matches whatever the
architecture or distro release. A purl whose ``@`` has no version after it is refused (never
read as "every version").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from packageurl import PackageURL
from packaging.version import InvalidVersion, Version

from modelseal.findings import Finding
from modelseal.vuln.findings import package_purl
from modelseal.vuln.versions import DpkgVersion, Ecosystem, VersionRange, dpkg_compare

if TYPE_CHECKING:
    from modelseal.policy.model import IgnoreEntry

T = TypeVar("T")
U = TypeVar("U")

FixState = Literal["fixed", "not-fixed", "wont-fix", "unknown"]
PackageType = Literal["os", "language"]

MAX_PURL_CHARS: Final = 1000
"""A longer purl (in the policy or a VEX document) is refused / never matches."""
MAX_GLOB_CHARS: Final = 1000
"""A longer ``paths`` glob is refused."""

#: Trivy's ``Status`` of a vulnerability → the fix state (Trivy's pkg/types: fix_deferred means a
#: fix is planned but not out; end_of_life that none will come).
_TRIVY_FIX_STATE: Final[dict[str, FixState]] = {
    "fixed": "fixed",
    "affected": "not-fixed",
    "fix_deferred": "not-fixed",
    "will_not_fix": "wont-fix",
    "end_of_life": "wont-fix",
}


def package_type(f: Finding) -> PackageType:
    """``os`` for a package of the image's distribution (Trivy's ``os-pkgs`` results), else
    ``language``."""
    return "os" if "os" in f.evidence else "language"


def fix_state(f: Finding) -> FixState:
    """Trivy: its ``Status`` (fixed; affected and fix_deferred → not-fixed; will_not_fix and
    end_of_life → wont-fix; anything else unknown, unless a fixed version is given).
    pip-audit: ``fixed`` when the advisory lists a fixed version, else ``not-fixed`` (OSV
    records without a fix event)."""
    status = f.evidence.get("status", "")
    if status in _TRIVY_FIX_STATE:
        return _TRIVY_FIX_STATE[status]
    if f.fixed_in:
        return "fixed"
    return "not-fixed" if f.gate == "pip-audit" else "unknown"


@functools.lru_cache(maxsize=4096)
def parse_purl(text: str) -> PackageURL:
    """A package URL, normalised by its type's rules; ValueError when it is not one."""
    if len(text) > MAX_PURL_CHARS:
        raise ValueError(f"longer than {MAX_PURL_CHARS} characters")
    if text.partition("#")[0].partition("?")[0].endswith("@"):
        # packageurl reads "name@" as no version, i.e. every version: an empty template
        # variable must not widen an entry or a VEX product to the whole package.
        raise ValueError("an '@' without a version (leave out the '@' to mean every version)")
    try:
        return PackageURL.from_string(text)
    except ValueError:
        raise
    except Exception as e:  # the library's own checks raise a few other kinds
        raise ValueError(str(e)) from None


def finding_purl(f: Finding) -> PackageURL | None:
    """The finding's package URL: the one the scanner reported (Trivy's ``PkgIdentifier``),
    else the one Trivy would write for its ecosystem, name and version."""
    for text in (f.evidence.get("purl", ""), package_purl(f.evidence)):
        if text:
            try:
                return parse_purl(text)
            except ValueError:
                continue
    return None


def purl_ecosystem(p: PackageURL) -> Ecosystem | None:
    """The ecosystem whose version syntax a purl's versions use (``pypi``, ``deb``), or
    None."""
    return "pypi" if p.type == "pypi" else "deb" if p.type == "deb" else None


def _norm_name(kind: str, name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower() if kind == "pypi" else name


def same_package_name(name: str, f: Finding) -> bool:
    """Whether ``name`` is the finding's package name: PEP 503 normalised for a PyPI package
    (``Foo_Bar`` is ``foo-bar``), exactly in every other ecosystem (npm's ``Foo_Bar`` and
    ``foo-bar`` are two packages)."""
    kind = "pypi" if f.evidence.get("ecosystem") == "pypi" else ""
    return _norm_name(kind, name) == _norm_name(kind, f.evidence.get("package", ""))


def _version_of(p: PackageURL) -> str | None:
    """The purl's version, a Debian or RPM epoch qualifier folded in (``1:1.2.13``)."""
    version = p.version
    epoch = (p.qualifiers or {}).get("epoch") if isinstance(p.qualifiers, dict) else None
    if version and epoch and ":" not in version:
        return f"{epoch}:{version}"
    return version


def _qualifiers(p: PackageURL) -> dict[str, str]:
    return p.qualifiers if isinstance(p.qualifiers, dict) else {}


def _epoch_of(version: str) -> str:
    """A Debian or RPM version's epoch (``1:1.2.13`` → ``1``), ``0`` when it gives none."""
    epoch, colon, _ = version.partition(":")
    return epoch if colon else "0"


def _number(text: str) -> int | str:
    """An epoch as a number (``01`` is ``1``); the text when it is none."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else text


def same_version(kind: str, a: str, b: str) -> bool:
    """Versions compared as the ecosystem compares them (strings when it cannot read them)."""
    try:
        if kind == "pypi":
            return Version(a) == Version(b)
        if kind == "deb":
            return dpkg_compare(a, b) == 0
    except (InvalidVersion, ValueError):
        pass
    return a == b


def purl_matches(pattern: PackageURL, f: Finding) -> bool:
    """Whether the finding's package is the one ``pattern`` names (see the module docstring)."""
    got = finding_purl(f)
    if got is None or got.type != pattern.type:
        return False
    if (pattern.namespace or "") != (got.namespace or ""):
        return False
    if _norm_name(got.type, pattern.name) != _norm_name(got.type, got.name):
        return False
    want = _version_of(pattern)
    have = _version_of(got) or f.evidence.get("version", "")
    if want is not None and not same_version(got.type, want, have):
        return False
    epoch = _qualifiers(pattern).get("epoch")
    if want is None and epoch is not None and _number(epoch) != _number(_epoch_of(have)):
        # No version to fold the epoch into: it is compared on its own, as any given qualifier
        # is, with the finding's epoch (its version's "1:", else 0).
        return False
    have_q = _qualifiers(got)
    return all(have_q.get(k) == v for k, v in _qualifiers(pattern).items() if k != "epoch")


def check_ignore_purl(text: str) -> PackageURL:
    """An ignore entry's purl, validated: ValueError saying what is wrong."""
    p = parse_purl(text)
    if p.subpath:
        raise ValueError("a purl subpath (#…) names a file inside a package: use paths")
    if p.type == "oci":
        raise ValueError("pkg:oci names the image, not a package in it")
    epoch = _qualifiers(p).get("epoch")
    if epoch is not None and not isinstance(_number(epoch), int):
        raise ValueError(f"the epoch qualifier {epoch!r} is not a number")
    version = _version_of(p)
    if version is not None:
        if p.type == "pypi":
            try:
                Version(version)
            except InvalidVersion:
                raise ValueError(f"{version!r} is not a PEP 440 version") from None
        elif p.type == "deb":
            DpkgVersion.parse(version)
    return p


# --- globs over image paths ---------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    """One element of a path segment's pattern: a literal character (``char``), ``?`` (``any``),
    a class (``class``: its single members and its ranges as inclusive code point intervals,
    negated?) or ``*`` (``star``). Ranges stay intervals: each costs two integers, not a set of its
    up to 12 289 characters (a hostile policy holds hundreds of them)."""

    kind: Literal["char", "any", "class", "star"]
    char: str = ""
    members: frozenset[str] = frozenset()
    ranges: tuple[tuple[int, int], ...] = ()
    negate: bool = False


def _one(token: _Token, c: str) -> bool:
    if token.kind == "char":
        return c == token.char
    if token.kind == "any":
        return True
    if token.kind == "class":
        hit = c in token.members or any(lo <= ord(c) <= hi for lo, hi in token.ranges)
        return hit != token.negate
    return False


def _wildcard(
    pattern: Sequence[T], items: Sequence[U], star: T, one: Callable[[T, U], bool]
) -> bool:
    """Whether ``items`` match ``pattern``, where ``star`` matches any run of items and every
    other element one item (``one`` says whether it does): the two-pointer algorithm that
    resumes at the last star only, O(len(pattern) × len(items)) — no backtracking blow-up on a
    hostile glob or path."""
    p = i = 0
    resume_p, resume_i = -1, 0
    while i < len(items):
        if p < len(pattern) and pattern[p] != star and one(pattern[p], items[i]):
            p, i = p + 1, i + 1
        elif p < len(pattern) and pattern[p] == star:
            resume_p, resume_i = p, i
            p += 1
        elif resume_p >= 0:
            p, resume_i = resume_p + 1, resume_i + 1
            i = resume_i
        else:
            return False
    while p < len(pattern) and pattern[p] == star:
        p += 1
    return p == len(pattern)


_STAR: Final = _Token("star")


def _segment_tokens(seg: str, glob: str) -> tuple[_Token, ...]:
    out: list[_Token] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            if seg.startswith("**", i):
                raise ValueError(f"{glob!r}: ** must be a whole path segment (a/**/b)")
            out.append(_STAR)
        elif c == "?":
            out.append(_Token("any"))
        elif c == "[":
            j = i + 1
            negate = seg[j : j + 1] in ("!", "^")
            j += negate
            end = seg.find("]", j + 1)  # a "]" right after "[" or "[!" is a member
            if end < 0:
                raise ValueError(f"{glob!r}: '[' without its ']'")
            body, members, ranges = seg[j:end], set[str](), list[tuple[int, int]]()
            k = 0
            while k < len(body):
                if k + 2 < len(body) and body[k + 1] == "-":
                    lo, hi = body[k], body[k + 2]
                    if ord(hi) < ord(lo) or ord(hi) - ord(lo) > 0x3000:
                        raise ValueError(f"{glob!r}: bad range {lo}-{hi}")
                    ranges.append((ord(lo), ord(hi)))
                    k += 3
                else:
                    members.add(body[k])
                    k += 1
            out.append(
                _Token("class", members=frozenset(members), ranges=tuple(ranges), negate=negate)
            )
            i = end
        else:
            out.append(_Token("char", c))
        i += 1
    return tuple(out)


_DEEP: Final = "**"


@dataclass(frozen=True)
class Glob:
    """A ``paths`` glob: ``*`` any characters but ``/``, ``?`` one of them, ``[abc]`` /
    ``[a-z]`` / ``[!abc]`` a class, ``**`` (a whole segment) zero or more segments; matched
    against an image path without its leading ``/`` (the glob's own leading ``/`` is
    optional)."""

    text: str
    segments: tuple[tuple[_Token, ...] | str, ...]

    def matches(self, path: str) -> bool:
        """Whether ``path`` (leading ``/`` optional) matches the glob."""
        parts = path.strip("/").split("/")
        if len(path) > MAX_MATCHED_PATH:
            return False

        def seg_matches(pattern: tuple[_Token, ...] | str, part: str) -> bool:
            assert not isinstance(pattern, str)
            return _wildcard(pattern, part, _STAR, _one)

        return _wildcard(self.segments, parts, _DEEP, seg_matches)


MAX_MATCHED_PATH: Final = 4096
"""A longer package path never matches a glob."""


@functools.lru_cache(maxsize=1024)
def compile_glob(glob: str) -> Glob:
    """Parse a ``paths`` glob (see :class:`Glob`); ValueError when it is malformed."""
    if len(glob) > MAX_GLOB_CHARS:
        raise ValueError(f"longer than {MAX_GLOB_CHARS} characters")
    if not glob.isprintable():
        raise ValueError(f"{glob!r}: control characters")
    segs = glob.strip("/").split("/") if glob.strip("/") else []
    if not segs or any(not s for s in segs):
        raise ValueError(f"{glob!r}: empty path segment")
    out: list[tuple[_Token, ...] | str] = []
    for seg in segs:
        if seg == _DEEP:
            if out and out[-1] == _DEEP:
                continue  # a/**/**/b is a/**/b
            out.append(_DEEP)
        else:
            out.append(_segment_tokens(seg, glob))
    return Glob(glob, tuple(out))


def package_file(f: Finding) -> str | None:
    """The image file that carries the finding's package, without the leading ``/``: Trivy's
    ``PkgPath`` (``…/requests-2.19.0.dist-info/METADATA``), pip-audit's ``.dist-info`` /
    ``.egg-info`` path; None for OS packages (Trivy names no file for them)."""
    if package_type(f) == "os" or not f.location:
        return None
    return f.location.lstrip("/")


_METADATA_FILES: Final = frozenset({"METADATA", "PKG-INFO"})


def package_dir(f: Finding) -> str:
    """Which installed copy of the package the finding is about, comparable across scanners:
    :func:`package_file` with a metadata file inside a ``.dist-info`` / ``.egg-info`` directory
    taken as that directory (Trivy names ``…/requests-2.19.0.dist-info/METADATA``, pip-audit
    ``/…/requests-2.19.0.dist-info``); ``""`` when no file is named (OS packages)."""
    path = package_file(f)
    if path is None:
        return ""
    parent, _, name = path.rpartition("/")
    if name in _METADATA_FILES and parent.endswith((".dist-info", ".egg-info")):
        return parent
    return path


# --- ignore entries ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _range(text: str) -> VersionRange:
    return VersionRange.parse(text)


def entry_matches(entry: IgnoreEntry, f: Finding, ids: frozenset[str]) -> bool:
    """Whether an ignore entry names this finding (``ids``: its advisory id and aliases,
    upper-cased): its id and every matcher it gives."""
    if entry.id.upper() not in ids:
        return False
    if entry.package is not None and not same_package_name(entry.package, f):
        return False
    if entry.scanner is not None and entry.scanner != f.gate:
        return False
    if entry.fix_state is not None and entry.fix_state != fix_state(f):
        return False
    if entry.purl is not None and not purl_matches(parse_purl(entry.purl), f):
        return False
    if entry.versions is not None:
        got = finding_purl(f)
        ecosystem = purl_ecosystem(got) if got is not None else None
        version = f.evidence.get("version", "")
        if not _range(entry.versions).contains(ecosystem, version):
            return False
    if entry.paths:
        path = package_file(f)
        if path is None or not any(compile_glob(g).matches(path) for g in entry.paths):
            return False
    return True
