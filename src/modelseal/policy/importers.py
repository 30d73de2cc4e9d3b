"""``modelseal policy import``: the ignore rules teams already keep for Trivy and Grype, turned
into ``vulnerabilities.ignore`` entries — and a list of every rule, or part of one, that a
modelseal entry cannot say.

The formats, as their projects document them:

* Trivy's ``.trivyignore.yaml`` (Trivy docs, *Configuration › Filtering › By Finding IDs ›
  .trivyignore.yaml*, ``docs/docs/configuration/filtering.md``; matching in
  ``pkg/result/ignore.go``): lists ``vulnerabilities``, ``misconfigurations``, ``secrets``,
  ``licenses`` of ``{id, paths, purls, expired_at, statement}``. ``id`` must equal the finding's
  id; ``paths`` are doublestar globs over the finding's file path or package path; ``purls``
  match the package (a PURL without version matches every version); an entry whose
  ``expired_at`` (a date, midnight UTC) is before now is dropped; ``statement`` is not used for
  matching. Any of the lists, any of the paths, any of the purls: the entry applies.
* Trivy's plain ``.trivyignore`` (same page, *.trivyignore*): one id per line, ``#`` starts a
  comment line, an ``exp:YYYY-MM-DD`` field sets the expiry (a line whose date does not parse is
  skipped by Trivy). Trivy applies these ids to vulnerabilities, misconfigurations and secrets
  alike; a file name ending in ``.yml``/``.yaml`` is read as YAML, as Trivy does.
* Grype's ``ignore:`` rules in ``.grype.yaml`` (Grype README, *Specifying matches to ignore*;
  matching in ``grype/match/ignore.go``, VEX rules in ``grype/vex/openvex/implementation.go``):
  ``vulnerability``, ``reason``, ``namespace``, ``fix-state`` (``fixed | not-fixed | wont-fix |
  unknown``), ``include-aliases``, ``vex-status``, ``vex-justification``, ``match-type`` and
  ``package: {name, version, language, type, location, upstream-name}``. Every condition given
  must hold; ``package.name`` is an anchored regular expression, ``version`` an exact string,
  ``location`` a doublestar glob over the package's real or access path. A rule with
  ``vex-status`` is not an ignore of its own: Grype applies it only to a match a VEX document
  gives that status.

How they become modelseal entries (``id``, ``package``, ``purl``, ``versions``, ``paths``,
``fix_state``, ``reason``, ``expires``) — never broader than the rule:

* a rule with a condition modelseal cannot express (Grype ``namespace``, ``match-type``,
  ``upstream-name``, a package name that is a regular expression, a package type without a
  name, a version whose ecosystem is unknown; any key the format does not define, since the
  tool would drop it and match more than its author wrote) is not imported, and listed;
* so is a rule without a vulnerability id (modelseal ignores one vulnerability at a time; a
  Grype ``fix-state: not-fixed`` rule alone is what ``vulnerabilities.fixable_only`` says), a
  ``vex-status`` rule (list the VEX document in ``vulnerabilities.vex``), misconfiguration,
  secret and license entries, and a Trivy entry already expired (Trivy no longer applies it;
  modelseal would fail on it);
* Trivy's ``expired_at`` D becomes ``expires`` D − 1 day: Trivy stops applying the entry at the
  start of D, modelseal applies it through its ``expires`` date;
* one modelseal entry per Trivy PURL (``purl`` holds one; these entries count toward
  :data:`MAX_RULES`); Grype ``location`` globs lose their leading ``/`` (image paths are written
  relative to the root, as Trivy reports them), and a ``location`` that is ``/`` alone (it
  matches only that path, never a package) is not imported;
* doublestar ``{a,b}`` alternations (Trivy ``paths``, Grype ``location``) are expanded into
  one glob per alternative (noted); past :data:`MAX_EXPANDED_GLOBS`, or with a backslash escape
  (a literal character in modelseal's globs), the rule is not imported;
* every entry is checked by modelseal's own validator (the policy model): one it refuses (a
  glob such as ``usr/lib/**.so``, a purl with a subpath) is listed as not imported, naming the
  file, the rule and why, and the rest are imported;
* Grype ``package.type``/``language`` ``python`` with a name becomes ``purl: pkg:pypi/NAME``
  (``@VERSION`` with ``version``); ``deb`` with a name becomes ``package`` (and ``versions:
  "=VERSION"``), noting that the type is not kept; other types keep the name only when no
  version is given (``package`` is compared exactly, as Grype does, but PEP 503 normalised
  for PyPI packages);
* a Grype ``vex-justification`` on a rule without ``vex-status`` is not kept, and noted: Grype
  reads it only beside ``vex-status``, and modelseal's ``justification`` would publish a
  ``not_affected`` claim consumers suppress on.

modelseal matches an id against a finding's aliases as well (the same advisory under another
name, e.g. a GHSA of a CVE); Trivy, and Grype without ``include-aliases``, match the id alone.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from modelseal.bounded import MAX_INPUT_BYTES, read_input_text, shown_path
from modelseal.errors import ConfigError

if TYPE_CHECKING:  # pydantic's models are imported when a policy is checked, not at start-up
    from modelseal.policy.model import Policy

__all__ = [
    "ImportResult",
    "Imported",
    "Problem",
    "complete",
    "fragment_text",
    "merge_into_policy",
    "new_entries",
    "read_grype",
    "read_trivyignore",
]

MAX_IGNORE_FILE_BYTES: Final = MAX_INPUT_BYTES
"""A larger ignore file is refused (exit 2) before it is parsed."""
MAX_RULES: Final = 5000
"""Rules (entries, lines) read from one file at most; more is refused."""
MAX_TEXT: Final = 1000
"""Longest id, PURL, glob, name or reason accepted, in characters."""

_TRIVY_SECTIONS: Final = ("vulnerabilities", "misconfigurations", "secrets", "licenses")
_TRIVY_KEYS: Final = frozenset({"id", "paths", "purls", "expired_at", "statement"})
_GRYPE_KEYS: Final = frozenset(
    {"vulnerability", "reason", "namespace", "fix-state", "include-aliases", "package",
     "vex-status", "vex-justification", "match-type"}
)  # fmt: skip
_GRYPE_PACKAGE_KEYS: Final = frozenset(
    {"name", "version", "language", "type", "location", "upstream-name"}
)
FIX_STATES: Final = ("fixed", "not-fixed", "wont-fix", "unknown")
#: Ids a plain ``.trivyignore`` line must start with to be taken for a vulnerability (Trivy
#: applies the same lines to misconfigurations, e.g. AVD-DS-0002, and secret rules).
_VULN_ID: Final = re.compile(
    r"(CVE|GHSA|PYSEC|OSV|GO|RUSTSEC|GSD|DSA|DLA|DTSA|USN|RHSA|RHBA|RHEA|ALAS2?|ALSA|ELSA|"
    r"SUSE-SU|openSUSE-SU|TEMP|BIT|MAL|PSF|CGA|MGASA|UVI)-[A-Za-z0-9._:-]+"
)
_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_PURL: Final = re.compile(r"pkg:[A-Za-z][A-Za-z0-9.+-]*/[^\s]+")
#: A Grype package name that means itself as an anchored regular expression, or something
#: narrower ("." matches any character, so the exact name is one of its matches).
_PLAIN_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Problem:
    """Something about one rule: why it was not imported, or what changed on the way."""

    source: str
    """The file, as shown in messages (escaped, clipped)."""
    where: str
    """The rule: ``vulnerabilities[3]``, ``ignore[0]``, ``line 7``."""
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.where}: {self.message}"


@dataclass(frozen=True)
class Imported:
    """One ignore entry made from a rule, in the policy's field names; ``expires`` and
    ``reason`` may still be missing (:func:`complete` fills or refuses them)."""

    fields: Mapping[str, object]
    source: str
    where: str


@dataclass(frozen=True)
class ImportResult:
    """What one file gave."""

    entries: tuple[Imported, ...] = ()
    skipped: tuple[Problem, ...] = ()
    """Rules not imported, each with why."""
    notes: tuple[Problem, ...] = ()
    """Rules imported with something the entry does not keep, or changed."""


@dataclass
class _Collector:
    source: str
    positions: Mapping[tuple[str | int, ...], tuple[int, int]] = field(default_factory=dict)
    entries: list[Imported] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    full: bool = False
    """:data:`MAX_RULES` entries were reached (an error): nothing more is read."""

    def error(self, path: tuple[str | int, ...], message: str) -> None:
        line, col = self._position(path)
        self.errors.append(f"{self.source}:{line}:{col}: {_where(path)}: {message}")

    def _position(self, path: tuple[str | int, ...]) -> tuple[int, int]:
        for end in range(len(path), -1, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                return found
        return (1, 1)

    def skip(self, where: str, message: str) -> None:
        self.skipped.append(Problem(self.source, where, message))

    def note(self, where: str, message: str) -> None:
        self.notes.append(Problem(self.source, where, message))

    def result(self, what: str) -> ImportResult:
        if self.errors:
            raise ConfigError(
                f"invalid {what} {self.source}; nothing was imported:\n" + "\n".join(self.errors)
            )
        return ImportResult(tuple(self.entries), tuple(self.skipped), tuple(self.notes))


def _where(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "top level"


def _shown(text: str) -> str:
    """A value quoted in a message: escaped and clipped."""
    return shown_path(text)[:80]


def _text(c: _Collector, path: tuple[str | int, ...], value: object) -> str | None:
    """A string field: printable, at most :data:`MAX_TEXT` characters (None after an error)."""
    if not isinstance(value, str):
        c.error(path, "expected a string")
        return None
    if len(value) > MAX_TEXT:
        c.error(path, f"longer than {MAX_TEXT} characters")
        return None
    if not value.isprintable():
        c.error(path, "holds a control or invisible formatting character")
        return None
    return value


def _reason(c: _Collector, path: tuple[str | int, ...], value: object) -> str | None:
    """A statement or reason: whitespace (line breaks too) folded to single spaces."""
    if not isinstance(value, str):
        c.error(path, "expected a string")
        return None
    return _text(c, path, " ".join(value.split())) or None


def _glob(c: _Collector, path: tuple[str | int, ...], value: object) -> str | None:
    text = _text(c, path, value)
    if text is None:
        return None
    if not text or text.count("[") != text.count("]") or text.count("{") != text.count("}"):
        c.error(path, f"{_shown(text)} is not a valid glob")
        return None
    return text


def _expiry(c: _Collector, path: tuple[str | int, ...], value: object) -> dt.date | None:
    """Trivy's ``expired_at``: a date, or a timestamp whose date counts (Trivy compares the
    instant; the day it falls on is the first day it no longer applies, taken whole)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).date() if value.tzinfo else value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    c.error(path, "expected a date YYYY-MM-DD")
    return None


# --- Trivy ---------------------------------------------------------------------------------


def read_trivyignore(path: Path, *, today: dt.date) -> ImportResult:
    """The vulnerability ignores of a Trivy ignore file: ``.trivyignore.yaml`` when the name ends
    in ``.yml`` or ``.yaml`` (as Trivy decides), else the plain ``.trivyignore`` format."""
    text = read_input_text(path, what="Trivy ignore file", limit=MAX_IGNORE_FILE_BYTES)
    source = shown_path(path)
    if path.suffix in (".yml", ".yaml"):
        return _trivy_yaml(text, source, today)
    return _trivy_plain(text, source, today)


def _trivy_yaml(text: str, source: str, today: dt.date) -> ImportResult:
    data, positions = _yaml(text, source)
    c = _Collector(source, positions)
    if data is None or data == {}:
        return c.result("Trivy ignore file")
    if not isinstance(data, dict):
        c.error((), "expected a mapping with vulnerabilities, misconfigurations, secrets, licenses")
        return c.result("Trivy ignore file")
    for key in data:
        if key not in _TRIVY_SECTIONS:
            c.skip(key, "not a section of .trivyignore.yaml (Trivy does not read it)")
    total = 0
    for section in _TRIVY_SECTIONS:
        items = data.get(section)
        if items is None:
            continue
        if not isinstance(items, list):
            c.error((section,), "expected a list")
            continue
        total += len(items)
        if total > MAX_RULES:
            c.error((section,), f"more than {MAX_RULES} entries")
            break
        for index, item in enumerate(items):
            if section == "vulnerabilities":
                _trivy_entry(c, (section, index), item, today)
                if c.full:
                    break
            else:
                ident = item.get("id") if isinstance(item, dict) else None
                label = f" ({_shown(ident)})" if isinstance(ident, str) else ""
                c.skip(
                    f"{section}[{index}]{label}",
                    f"Trivy {section} ignores have no modelseal equivalent (modelseal judges "
                    "vulnerabilities only)",
                )
    return c.result("Trivy ignore file")


def _trivy_entry(c: _Collector, path: tuple[str | int, ...], item: object, today: dt.date) -> None:
    where = _where(path)
    if not isinstance(item, dict):
        c.error(path, "expected a mapping {id, paths, purls, expired_at, statement}")
        return
    errors = len(c.errors)
    unknown = sorted(k for k in item if k not in _TRIVY_KEYS)
    ident = _text(c, (*path, "id"), item["id"]) if item.get("id") is not None else None
    paths = _list(c, (*path, "paths"), item.get("paths"), _glob)
    purls = _list(c, (*path, "purls"), item.get("purls"), _purl)
    expired_at = (
        _expiry(c, (*path, "expired_at"), item["expired_at"])
        if item.get("expired_at") is not None
        else None
    )
    reason = (
        _reason(c, (*path, "statement"), item["statement"])
        if item.get("statement") is not None
        else None
    )
    if len(c.errors) > errors:
        return
    label = f"{where} ({_shown(ident)})" if ident else where
    if unknown:
        c.skip(label, _unknown_keys(unknown, "Trivy", _TRIVY_KEYS))
        return
    if not ident:
        c.skip(label, "no id: Trivy matches nothing with it")
        return
    if not _ID.fullmatch(ident):
        c.error((*path, "id"), f"{_shown(ident)} is not a vulnerability id")
        return
    expires = None
    if expired_at is not None:
        if expired_at <= today:
            c.skip(
                label,
                f"expired_at {expired_at.isoformat()} has passed: Trivy no longer applies it, "
                "and modelseal would fail on an expired entry",
            )
            return
        expires = expired_at - dt.timedelta(days=1)
    if len(c.entries) + max(1, len(purls)) > MAX_RULES:
        c.error(path, f"more than {MAX_RULES} entries once each purl is an entry of its own")
        c.full = True
        return
    base: dict[str, object] = {"id": ident}
    if paths:
        globs = _doublestar(c, label, "paths", paths)
        if globs is None:
            return
        base["paths"] = globs
    if reason:
        base["reason"] = reason
    if expires is not None:
        base["expires"] = expires
    if len(purls) > 1:
        c.note(label, f"one entry for each of its {len(purls)} purls")
    for index, purl in enumerate(purls):
        _add(c, f"{where}.purls[{index}] ({_shown(ident)})", {**base, "purl": purl}, where)
    if not purls:
        _add(c, label, base, where)


def _purl(c: _Collector, path: tuple[str | int, ...], value: object) -> str | None:
    text = _text(c, path, value)
    if text is None:
        return None
    if not _PURL.fullmatch(text):
        c.error(path, f"{_shown(text)} is not a package URL (pkg:TYPE/NAMESPACE/NAME@VERSION)")
        return None
    return text


def _list(
    c: _Collector,
    path: tuple[str | int, ...],
    value: object,
    each: Callable[[_Collector, tuple[str | int, ...], object], str | None],
) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        c.error(path, "expected a list")
        return []
    if len(value) > MAX_RULES:
        c.error(path, f"more than {MAX_RULES} items")
        return []
    out: dict[str, None] = {}  # ordered, each once, in linear time
    for index, item in enumerate(value):
        got = each(c, (*path, index), item)
        if got is not None:
            out[got] = None
    return list(out)


#: Globs one doublestar glob may expand into ({a,b} alternations): the policy's paths limit.
MAX_EXPANDED_GLOBS: Final = 64


def _expand_braces(glob: str) -> list[str]:
    """A doublestar glob's ``{a,b}`` alternations (nested too) expanded into plain globs, each
    once; ValueError past :data:`MAX_EXPANDED_GLOBS` or on an unbalanced brace."""
    done: dict[str, None] = {}
    todo = [glob]
    while todo:
        text = todo.pop()
        start = text.find("{")
        if start < 0:
            if "}" in text:
                raise ValueError("has a '}' without its '{'")
            done[text] = None
            if len(done) > MAX_EXPANDED_GLOBS:
                raise ValueError(f"expands into more than {MAX_EXPANDED_GLOBS} globs")
            continue
        depth, cuts, end = 0, [start], -1
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    end = i
                    break
            elif text[i] == "," and depth == 1:
                cuts.append(i)
        if end < 0:
            raise ValueError("has a '{' without its '}'")
        cuts.append(end)
        head, tail = text[:start], text[end + 1 :]
        alternatives = [text[a + 1 : b] for a, b in itertools.pairwise(cuts)]
        if len(done) + len(todo) + len(alternatives) > MAX_EXPANDED_GLOBS:
            raise ValueError(f"expands into more than {MAX_EXPANDED_GLOBS} globs")
        todo.extend(head + alt + tail for alt in reversed(alternatives))
    return list(done)


def _doublestar(c: _Collector, label: str, key: str, globs: Sequence[str]) -> list[str] | None:
    """Doublestar globs (Trivy's paths, Grype's location) as modelseal globs: ``{a,b}``
    alternations expanded (noted); None, and the rule skipped, when they cannot be — too many
    alternatives, or a backslash escape (modelseal's globs have none)."""
    out: dict[str, None] = {}
    for glob in globs:
        if "\\" in glob:
            c.skip(label, f"{key} {_shown(glob)}: a backslash escape, which modelseal's globs do "
                   "not have (there it is a literal character)")  # fmt: skip
            return None
        try:
            expanded = _expand_braces(glob)
        except ValueError as e:
            c.skip(label, f"{key} {_shown(glob)}: its {{a,b}} alternation {e}")
            return None
        if expanded != [glob]:
            c.note(label, f"{key} {_shown(glob)}: the {{a,b}} alternation is written as "
                   f"{len(expanded)} globs")  # fmt: skip
        out.update(dict.fromkeys(expanded))
    if len(out) > MAX_EXPANDED_GLOBS:
        c.skip(label, f"{key}: more than {MAX_EXPANDED_GLOBS} globs once alternations are "
               "expanded (an entry holds at most that many)")  # fmt: skip
        return None
    return list(out)


def _add(c: _Collector, label: str, fields: Mapping[str, object], where: str) -> None:
    """Keep one entry made from a rule when modelseal's own validator accepts it (the policy
    model, with a stand-in date and reason where the rule gives none); else skip it, saying
    why: one rule modelseal cannot read never fails the whole import."""
    from pydantic import ValidationError

    from modelseal.policy.model import IgnoreEntry

    stand_in = {"expires": dt.date(2000, 1, 1), "reason": "imported", **fields}
    try:
        IgnoreEntry.model_validate(stand_in)
    except ValidationError as e:
        why = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'entry'}: {err['msg']}"
            for err in e.errors()[:3]
        )
        c.skip(label, f"modelseal's policy cannot hold it ({_shown(why)})")
        return
    c.entries.append(Imported(fields, c.source, where))


def _trivy_plain(text: str, source: str, today: dt.date) -> ImportResult:
    c = _Collector(source)
    comment: list[str] = []
    count = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"line {number}"
        if not line:
            comment = []
            continue
        if not line.replace("\t", " ").isprintable():
            c.errors.append(
                f"{source}:{number}:1: holds a control or invisible formatting character"
            )
            continue
        if line.startswith("#"):
            comment.append(line.lstrip("#").strip())
            continue
        above, comment = " ".join(x for x in comment if x), []
        count += 1
        if count > MAX_RULES:
            c.errors.append(f"{source}:{number}:1: more than {MAX_RULES} ids")
            break
        if len(line) > MAX_TEXT:
            c.errors.append(f"{source}:{number}:1: longer than {MAX_TEXT} characters")
            continue
        fields = line.split()
        ident = fields[0]
        label = f"{where} ({_shown(ident)})"
        if not _VULN_ID.fullmatch(ident):
            c.skip(
                label,
                "not a vulnerability id (Trivy applies .trivyignore ids to misconfigurations "
                "and secrets too; modelseal judges vulnerabilities only)",
            )
            continue
        exp = next((f.removeprefix("exp:") for f in fields[1:] if f.startswith("exp:")), None)
        expires = None
        if exp is not None:
            try:
                if not _DATE.fullmatch(exp):
                    raise ValueError(exp)
                expired_at = dt.date.fromisoformat(exp)
            except ValueError:
                c.skip(label, f"exp:{_shown(exp)} is not a date YYYY-MM-DD; Trivy skips this line")
                continue
            if expired_at <= today:
                c.skip(
                    label,
                    f"exp:{expired_at.isoformat()} has passed: Trivy no longer applies it, and "
                    "modelseal would fail on an expired entry",
                )
                continue
            expires = expired_at - dt.timedelta(days=1)
        entry: dict[str, object] = {"id": ident}
        if above:
            entry["reason"] = above[:MAX_TEXT]
        if expires is not None:
            entry["expires"] = expires
        _add(c, label, entry, where)
    return c.result("Trivy ignore file")


# --- Grype ---------------------------------------------------------------------------------


def read_grype(path: Path) -> ImportResult:
    """The ``ignore:`` rules of a Grype configuration file."""
    text = read_input_text(path, what="Grype configuration", limit=MAX_IGNORE_FILE_BYTES)
    source = shown_path(path)
    data, positions = _yaml(text, source)
    c = _Collector(source, positions)
    if data is None or data == {}:
        return c.result("Grype configuration")
    if not isinstance(data, dict):
        c.error((), "expected a mapping (a Grype configuration with an ignore: list)")
        return c.result("Grype configuration")
    others = sorted(k for k in data if k != "ignore")
    if others:
        c.note(
            "top level",
            "Grype settings other than ignore are not imported: "
            + ", ".join(_shown(k) for k in others[:10])
            + (" …" if len(others) > 10 else ""),
        )
    rules = data.get("ignore")
    if rules is None:
        return c.result("Grype configuration")
    if not isinstance(rules, list):
        c.error(("ignore",), "expected a list of rules")
        return c.result("Grype configuration")
    if len(rules) > MAX_RULES:
        c.error(("ignore",), f"more than {MAX_RULES} rules")
        return c.result("Grype configuration")
    for index, rule in enumerate(rules):
        _grype_rule(c, ("ignore", index), rule)
    return c.result("Grype configuration")


def _grype_rule(c: _Collector, path: tuple[str | int, ...], rule: object) -> None:
    where = _where(path)
    if not isinstance(rule, dict):
        c.error(path, "expected a mapping (an ignore rule)")
        return
    errors = len(c.errors)
    values: dict[str, str] = {}
    for key in ("vulnerability", "namespace", "fix-state", "vex-status", "vex-justification",
                "match-type"):  # fmt: skip
        if rule.get(key) is not None:
            got = _text(c, (*path, key), rule[key])
            if got:
                values[key] = got
    reason = _reason(c, (*path, "reason"), rule["reason"]) if rule.get("reason") else None
    aliases = rule.get("include-aliases")
    if aliases is not None and not isinstance(aliases, bool):
        c.error((*path, "include-aliases"), "expected true or false")
    package: dict[str, str] = {}
    pkg = rule.get("package")
    unknown = sorted(k for k in rule if k not in _GRYPE_KEYS)
    if isinstance(pkg, dict):
        unknown += sorted(f"package.{k}" for k in pkg if k not in _GRYPE_PACKAGE_KEYS)
        for key in sorted(_GRYPE_PACKAGE_KEYS):
            if pkg.get(key) is not None:
                got = _text(c, (*path, "package", key), pkg[key])
                if got:
                    package[key] = got
    elif pkg is not None:
        c.error((*path, "package"), "expected a mapping {name, version, type, …}")
    if len(c.errors) > errors:
        return
    vid = values.get("vulnerability")
    label = f"{where} ({_shown(vid)})" if vid else where
    if unknown:
        c.skip(label, _unknown_keys(unknown, "Grype", _GRYPE_KEYS))
        return
    if "vex-status" in values:
        c.skip(
            label,
            f"vex-status {_shown(values['vex-status'])}: Grype applies this rule only to what a "
            "VEX document says; list that document in vulnerabilities.vex (modelseal honours "
            "its not_affected and fixed statements) instead of an unconditional ignore",
        )
        return
    if not vid:
        hint = ""
        if set(values) == {"fix-state"} and not package:
            hint = (
                " (ignoring every not-fixed finding is what vulnerabilities.fixable_only: true "
                "says)"
            )
        c.skip(label, "no vulnerability id: modelseal ignores one vulnerability at a time" + hint)
        return
    if not _ID.fullmatch(vid):
        c.error((*path, "vulnerability"), f"{_shown(vid)} is not a vulnerability id")
        return
    for key, why in (
        ("namespace", "modelseal has no vulnerability namespace (data source) condition"),
        ("match-type", "modelseal has no match-type condition"),
    ):
        if key in values:
            c.skip(label, f"{key} {_shown(values[key])}: {why}")
            return
    if "upstream-name" in package:
        c.skip(label, "package.upstream-name: modelseal matches the package's own name only")
        return
    entry: dict[str, object] = {"id": vid}
    if not _grype_package(c, label, package, entry):
        return
    state = values.get("fix-state")
    if state is not None:
        if state not in FIX_STATES:
            c.skip(label, f"fix-state {_shown(state)} is none of {', '.join(FIX_STATES)}: "
                   "Grype matches nothing with it")  # fmt: skip
            return
        entry["fix_state"] = state
    if reason:
        entry["reason"] = reason
    justification = values.get("vex-justification")
    if justification is not None:
        # Grype reads it only beside vex-status (a filter on what a VEX document says): alone
        # it is no condition and no claim, so it never becomes a published not_affected.
        c.note(label, f"vex-justification {_shown(justification)} without vex-status is not "
               "a condition in Grype, nor a claim that the image is not affected: not kept "
               "(add justification to the entry yourself only if that is so)")  # fmt: skip
    _add(c, label, entry, where)


def _grype_package(
    c: _Collector, label: str, package: Mapping[str, str], entry: dict[str, object]
) -> bool:
    """Put the package conditions into ``entry``; False (and a skip) when they cannot be."""
    name, version = package.get("name"), package.get("version")
    kinds = {k for k in (package.get("type"), package.get("language")) if k}
    ecosystems = {"pypi" if k == "python" else k for k in kinds}
    if name is not None and not _PLAIN_NAME.fullmatch(name):
        c.skip(label, f"package.name {_shown(name)} is a regular expression in Grype; "
               "modelseal's package is an exact name")  # fmt: skip
        return False
    if kinds and name is None:
        c.skip(label, "package type or language without a name: modelseal has no "
               "package-type condition")  # fmt: skip
        return False
    if len(ecosystems) > 1:
        c.skip(label, f"package type and language disagree ({', '.join(sorted(kinds))}): "
               "Grype matches nothing with it")  # fmt: skip
        return False
    ecosystem = next(iter(ecosystems), None)
    if version is not None and ecosystem not in ("pypi", "deb"):
        c.skip(label, "package.version needs package.type python or deb: modelseal's versions "
               "are written in the ecosystem's own syntax")  # fmt: skip
        return False
    if version is not None and (" " in version or "," in version):
        c.skip(label, f"package.version {_shown(version)} is not a single version")
        return False
    if name is not None:
        if ecosystem == "pypi":
            normal = re.sub(r"[-_.]+", "-", name).lower()
            entry["purl"] = f"pkg:pypi/{normal}" + (f"@{version}" if version else "")
        else:
            entry["package"] = name
            if version is not None:
                entry["versions"] = f"={version}"
            if ecosystem is not None:
                c.note(label, f"package type {_shown(ecosystem)} is not kept (modelseal has no "
                       "package-type condition): the entry matches that name in any ecosystem "
                       "(exactly, as Grype does; PEP 503 normalised for PyPI packages)")  # fmt: skip
    location = package.get("location")
    if location is not None:
        if not location.strip("/"):
            c.skip(label, f"package.location {_shown(location)} matches only that path itself, "
                   "never a package's file: Grype ignores nothing with it")  # fmt: skip
            return False
        globs = _doublestar(c, label, "package.location", [location.lstrip("/")])
        if globs is None:
            return False
        entry["paths"] = globs
        if location.startswith("/"):
            c.note(label, "package.location is written without its leading / (image paths are "
                   "relative to the root, as Trivy reports them)")  # fmt: skip
    return True


def _unknown_keys(unknown: Sequence[str], tool: str, known: Iterable[str]) -> str:
    listed = ", ".join(_shown(k) for k in unknown[:5])
    return (
        f"unknown key {listed}: {tool} drops it and matches more than the rule says; fix or "
        f"remove it (known: {', '.join(sorted(known))})"
    )


def _yaml(text: str, source: str) -> tuple[object, dict[tuple[str | int, ...], tuple[int, int]]]:
    from modelseal.policy.loader import PolicyFileError, parse_yaml

    try:
        return parse_yaml(text, source)
    except PolicyFileError as e:
        raise ConfigError(f"invalid YAML in {source}:\n" + "\n".join(e.problems)) from None


# --- completing and writing ------------------------------------------------------------------


def complete(
    results: Sequence[ImportResult], *, expires: dt.date | None, reason: str | None
) -> list[dict[str, object]]:
    """The entries of ``results``, each with an ``expires`` (its own, else ``expires``) and a
    ``reason`` (its own, else ``reason``, else one naming the file and rule), in the order the
    policy keys are documented, duplicates once.

    Raises :class:`ConfigError` naming every entry without a date when ``expires`` is None:
    modelseal requires one, and inventing it is the user's call, not ours.
    """
    undated = list(
        {
            (i.source, i.where): i for r in results for i in r.entries if "expires" not in i.fields
        }.values()
    )
    if undated and expires is None:
        listed = "\n".join(
            f"  {i.source}: {i.where} ({_shown(str(i.fields['id']))})" for i in undated[:50]
        )
        more = f"\n  … and {len(undated) - 50} more" if len(undated) > 50 else ""
        raise ConfigError(
            f"{len(undated)} imported rule(s) have no expiry date, and every modelseal ignore "
            f"entry needs one (vulnerabilities.ignore[].expires):\n{listed}{more}",
            hint="Give --expires YYYY-MM-DD for them (rules with their own date keep it).",
        )
    order = ("id", "package", "purl", "versions", "paths", "fix_state", "reason", "expires",
             "justification")  # fmt: skip
    out: dict[tuple[object, ...], dict[str, object]] = {}  # de-duplicated in linear time
    for r in results:
        for i in r.entries:
            fields = dict(i.fields)
            fields.setdefault("expires", expires)
            fields.setdefault(
                "reason", reason or f"imported from {i.source} ({i.where}), which gives no reason"
            )
            entry = {k: fields[k] for k in order if k in fields}
            out.setdefault(_key(entry), entry)
    return list(out.values())


def _key(entry: Mapping[str, object]) -> tuple[object, ...]:
    """An entry as a hashable value, whatever the order of its keys (None values left out)."""
    items = ((k, tuple(v) if isinstance(v, list) else v) for k, v in entry.items())
    return tuple(sorted((k, v) for k, v in items if v is not None))


def _yaml_entries(entries: Sequence[Mapping[str, object]]) -> object:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    seq = CommentedSeq()
    for entry in entries:
        item = CommentedMap()
        for key, value in entry.items():
            if isinstance(value, dt.date):
                item[key] = value
            elif isinstance(value, list):
                paths = CommentedSeq(value)
                paths.fa.set_flow_style()
                item[key] = paths
            else:
                item[key] = value
        seq.append(item)
    return seq


def _dump(data: object) -> str:
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    # Entries share one --expires date object: written out each time, never as &anchor/*alias
    # (which the policy loader refuses).
    yaml.representer.ignore_aliases = lambda _data: True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # one entry field, one line
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def fragment_text(entries: Sequence[Mapping[str, object]], sources: Sequence[str]) -> str:
    """A ``vulnerabilities.ignore`` fragment to paste into a policy (checked: with ``version:
    1`` above it, it is a valid policy)."""
    from ruamel.yaml.comments import CommentedMap

    doc = CommentedMap({"vulnerabilities": CommentedMap({"ignore": _yaml_entries(entries)})})
    header = "# modelseal policy import from " + ", ".join(sources) + "\n"
    text = header + _dump(doc)
    _check(f"version: 1\n{text}", "the imported fragment")
    return text


def new_entries(
    text: str, name: str, entries: Sequence[dict[str, object]]
) -> list[dict[str, object]]:
    """The ``entries`` the policy ``text`` does not hold yet (the policy is validated)."""
    policy = _check(text, name)
    have = {_key(e.model_dump(exclude_defaults=True)) for e in policy.vulnerabilities.ignore}
    return [e for e in entries if _key(e) not in have]


def merge_into_policy(
    text: str, name: str, entries: Sequence[dict[str, object]]
) -> tuple[str, int]:
    """The policy ``text`` with ``entries`` appended to ``vulnerabilities.ignore`` (entries it
    already holds are left out) and how many were added. Comments are kept; ruamel.yaml may
    re-indent the rest of the file. The result is validated before it is returned."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    new = new_entries(text, name, entries)
    if not new:
        return text, 0
    doc = YAML(typ="rt").load(text) if text.strip() else None
    if doc is None:
        doc = CommentedMap({"version": 1})
    vulns = doc.get("vulnerabilities")
    if vulns is None:
        vulns = doc["vulnerabilities"] = CommentedMap()
    ignore = vulns.get("ignore")
    if ignore is None:
        ignore = vulns["ignore"] = CommentedSeq()
    for item in _yaml_entries(new):  # type: ignore[attr-defined]
        ignore.append(item)
    merged = _dump(doc)
    _check(merged, name)
    return merged, len(new)


def _check(text: str, name: str) -> Policy:
    from modelseal.policy.loader import load_policy_text

    return load_policy_text(text, name).policy
