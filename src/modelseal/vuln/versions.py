"""Version ranges in each ecosystem's own syntax, for ``vulnerabilities.ignore[].versions``.

* **PyPI**: a PEP 440 specifier set (``>=2.0,<2.20``), compared by :mod:`packaging`.
* **Debian** (``deb`` packages): dpkg relations ``<<``, ``<=``, ``=``, ``>=``, ``>>`` joined
  by commas (all must hold), e.g. ``>= 1:1.2.13, << 1:1.2.13.dfsg-1+deb12u1``, compared with
  dpkg's own algorithm (:func:`dpkg_compare`): epoch first, then the upstream version and the
  Debian revision, each split into runs of non-digits (``~`` before the end of the string
  before letters before everything else) and numbers.

A range is parsed once when the policy is loaded, in each syntax it fits (with the entry's
purl, only in the purl type's); one that fits neither is a policy error. A finding is compared
by its own ecosystem's reading only: a range that fits one syntax alone never matches the other
ecosystem's packages, but one written without a purl that fits both (``>= 1.0``, ``<= 2.0``)
matches PyPI and Debian packages alike, each by its own ordering — give a purl to hold it to
one. No range matches packages of other ecosystems (apk, rpm, npm, …), so an entry with
``versions`` never silently covers them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

Ecosystem = Literal["pypi", "deb"]

MAX_RANGE_CHARS: Final = 1000
"""A longer ``versions`` string is refused (the policy is hostile input)."""
MAX_RANGE_CLAUSES: Final = 32
"""Comma-separated clauses one range may hold."""
MAX_DPKG_VERSION_CHARS: Final = 256
"""A longer Debian version is not compared (it is not a version dpkg would write)."""

_DPKG_RELATIONS: Final = ("<<", "<=", ">=", ">>", "=")
_DPKG_UPSTREAM: Final = re.compile(r"[0-9][A-Za-z0-9.+~:-]*")
_DPKG_REVISION: Final = re.compile(r"[A-Za-z0-9.+~]+")


@dataclass(frozen=True)
class DpkgVersion:
    """A Debian version split as dpkg splits it: ``[epoch:]upstream[-revision]``."""

    epoch: int
    upstream: str
    revision: str

    @classmethod
    def parse(cls, text: str) -> DpkgVersion:
        """Parse a Debian version (dpkg's ``parseversion`` rules); ValueError when it is not
        one: the epoch must be a number, the upstream version start with a digit and hold only
        letters, digits and ``. + ~ - :``, the revision only letters, digits and ``. + ~``."""
        text = text.strip()
        if not text or len(text) > MAX_DPKG_VERSION_CHARS:
            raise ValueError(f"{text[:40]!r} is not a Debian version")
        epoch_text, colon, rest = text.partition(":")
        if colon:
            if not epoch_text.isascii() or not epoch_text.isdigit() or len(epoch_text) > 9:
                raise ValueError(f"{text!r}: the epoch before ':' must be a number")
            epoch = int(epoch_text)
        else:
            epoch, rest = 0, text
        upstream, hyphen, revision = rest.rpartition("-")
        if not hyphen:
            upstream, revision = rest, ""
        elif not revision:
            raise ValueError(f"{text!r}: empty Debian revision after '-'")
        if not _DPKG_UPSTREAM.fullmatch(upstream) or (":" in upstream and not colon):
            raise ValueError(
                f"{text!r}: the upstream version must start with a digit and hold only "
                "letters, digits and . + ~ - :"
            )
        if revision and not _DPKG_REVISION.fullmatch(revision):
            raise ValueError(f"{text!r}: the Debian revision holds only letters, digits and . + ~")
        return cls(epoch, upstream, revision)


def _order(c: str) -> int:
    """dpkg's weight of one non-digit character (``""`` is the end of the string)."""
    if not c or c.isdigit():
        return 0
    if c.isascii() and c.isalpha():
        return ord(c)
    if c == "~":
        return -1
    return ord(c) + 256


def _verrevcmp(a: str, b: str) -> int:
    """dpkg's ``verrevcmp`` (lib/dpkg/version.c), on an upstream version or a revision."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i] if i < len(a) else "")
            bc = _order(b[j] if j < len(b) else "")
            if ac != bc:
                return ac - bc
            i, j = i + 1, j + 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i, j = i + 1, j + 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def dpkg_compare(a: str | DpkgVersion, b: str | DpkgVersion) -> int:
    """Compare two Debian versions as ``dpkg --compare-versions`` does: negative, zero or
    positive (ValueError when either is not a Debian version)."""
    va = a if isinstance(a, DpkgVersion) else DpkgVersion.parse(a)
    vb = b if isinstance(b, DpkgVersion) else DpkgVersion.parse(b)
    if va.epoch != vb.epoch:
        return -1 if va.epoch < vb.epoch else 1
    return _verrevcmp(va.upstream, vb.upstream) or _verrevcmp(va.revision, vb.revision)


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


_DPKG_HOLDS: Final = {
    "<<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    "=": lambda c: c == 0,
    ">=": lambda c: c >= 0,
    ">>": lambda c: c > 0,
}


@dataclass(frozen=True)
class DpkgRange:
    """dpkg relations that must all hold, e.g. ``>= 1.0, << 2.0``."""

    clauses: tuple[tuple[str, DpkgVersion], ...]

    @classmethod
    def parse(cls, text: str) -> DpkgRange:
        """Parse comma-separated ``RELATION VERSION`` clauses; ValueError naming the clause."""
        clauses = []
        parts = text.split(",")
        if len(parts) > MAX_RANGE_CLAUSES:
            raise ValueError(f"more than {MAX_RANGE_CLAUSES} clauses")
        for part in parts:
            part = part.strip()
            rel = next((r for r in _DPKG_RELATIONS if part.startswith(r)), None)
            if rel is None:
                if part[:1] in ("<", ">"):
                    raise ValueError(
                        f"{part!r}: dpkg's relations are << <= = >= >> ('<' and '>' alone "
                        "are ambiguous)"
                    )
                raise ValueError(f"{part!r} does not start with one of << <= = >= >>")
            clauses.append((rel, DpkgVersion.parse(part[len(rel) :])))
        return cls(tuple(clauses))

    def contains(self, version: str) -> bool:
        """Whether every relation holds for ``version`` (False when it is no Debian
        version)."""
        try:
            v = DpkgVersion.parse(version)
        except ValueError:
            return False
        return all(_DPKG_HOLDS[rel](_sign(dpkg_compare(v, bound))) for rel, bound in self.clauses)


@dataclass(frozen=True)
class VersionRange:
    """A ``versions`` value: its text, and its reading in each ecosystem whose syntax it
    fits (``None`` where it does not)."""

    text: str
    pep440: SpecifierSet | None
    dpkg: DpkgRange | None

    @classmethod
    def parse(cls, text: str, ecosystem: Ecosystem | None = None) -> VersionRange:
        """Read ``text`` as a PEP 440 specifier set and as dpkg relations (only as the one of
        ``ecosystem`` when given); ValueError, saying why each reading failed, when none
        fits."""
        if len(text) > MAX_RANGE_CHARS:
            raise ValueError(f"longer than {MAX_RANGE_CHARS} characters")
        if not text.strip():
            raise ValueError("empty range")
        pep: SpecifierSet | None = None
        deb: DpkgRange | None = None
        why: list[str] = []
        if ecosystem in (None, "pypi"):
            try:
                if text.count(",") >= MAX_RANGE_CLAUSES:
                    raise InvalidSpecifier(f"more than {MAX_RANGE_CLAUSES} clauses")
                pep = SpecifierSet(text)
                if not len(pep):
                    raise InvalidSpecifier("no specifier")
            except InvalidSpecifier as e:
                pep = None
                why.append(f"not a PEP 440 specifier set ({e})")
        if ecosystem in (None, "deb"):
            try:
                deb = DpkgRange.parse(text)
            except ValueError as e:
                why.append(f"not dpkg relations ({e})")
        if pep is None and deb is None:
            raise ValueError("; ".join(why))
        return cls(text, pep, deb)

    def contains(self, ecosystem: Ecosystem | None, version: str) -> bool:
        """Whether ``version`` of a package of ``ecosystem`` is in the range; False for an
        ecosystem the range is not written for, or a version that ecosystem cannot read."""
        if ecosystem == "pypi" and self.pep440 is not None:
            try:
                return self.pep440.contains(Version(version), prereleases=True)
            except InvalidVersion:
                return False
        if ecosystem == "deb" and self.dpkg is not None:
            return self.dpkg.contains(version)
        return False
