"""Judging vulnerability findings: one policy for every scanner.

Order of the questions asked of each finding: is it a duplicate of one already judged (the
same advisory on the same package from another scanner)? Does an OpenVEX statement say the
image is not affected? Does an ignore entry accept it (its id and every matcher it gives:
:mod:`modelseal.vuln.match`), and has that entry expired? Then the thresholds: ``fixable_only``,
``fail_on``, ``max_cvss``, with ``unknown_severity`` standing in for a missing severity — each
the global value or the most specific ``overrides`` entry for the finding's scanner and package
type (:func:`thresholds`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from modelseal.bounded import MIB, parse_json, read_input_text, shown_path
from modelseal.errors import ConfigError
from modelseal.findings import Finding, Severity
from modelseal.policy.model import THRESHOLD_KEYS, IgnoreEntry, VulnerabilitiesPolicy
from modelseal.vuln.findings import VULN_TYPE
from modelseal.vuln.match import (
    entry_matches,
    package_dir,
    package_type,
    parse_purl,
    purl_matches,
    same_package_name,
)

#: Gates whose findings this policy judges, in the order duplicates are resolved (the first
#: scanner to report an advisory keeps it; the others point at it).
VULN_GATES = ("trivy", "pip-audit")


def is_vuln(f: Finding) -> bool:
    """Whether a finding is a vulnerability in the shared shape."""
    return f.evidence.get("type") == VULN_TYPE


def ids_of(f: Finding) -> frozenset[str]:
    """The advisory id and its aliases, upper-cased."""
    aliases = [a for a in f.evidence.get("aliases", "").split(",") if a]
    return frozenset(x.upper() for x in (f.id, *aliases))


def norm_package(name: str) -> str:
    """PEP 503 normalisation (also fine for Debian names)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class VexProduct:
    """One product of a statement: a package (purl or name) or an image (``pkg:oci``), and
    the packages inside it the statement is about (its subcomponents; none: all of it)."""

    id: str
    subcomponents: tuple[str, ...] = ()


@dataclass(frozen=True)
class VexStatement:
    """One OpenVEX statement, reduced to what matching needs."""

    ids: frozenset[str]
    products: tuple[VexProduct, ...]  # empty = every product
    status: str
    justification: str
    source: str


MAX_VEX_BYTES = 16 * MIB
"""An OpenVEX document larger than this is refused (exit 2)."""


def load_vex(paths: Sequence[str], base: Path) -> list[VexStatement]:
    """Read OpenVEX documents (JSON); bad documents are ConfigErrors naming the file."""
    out: list[VexStatement] = []
    for rel in paths:
        path = base / rel
        text = read_input_text(path, what="vulnerabilities.vex document", limit=MAX_VEX_BYTES)
        doc = parse_json(text, shown_path(path))
        if not isinstance(doc, dict) or not str(doc.get("@context", "")).startswith(
            "https://openvex.dev/ns"
        ):
            raise ConfigError(f"{path} is not an OpenVEX document (no openvex @context).")
        for i, st in enumerate(doc.get("statements", [])):
            try:
                vuln = st["vulnerability"]
                name = vuln["name"] if isinstance(vuln, dict) else str(vuln)
                aliases = vuln.get("aliases", []) if isinstance(vuln, dict) else []
                products = tuple(_product(p) for p in st.get("products", []))
                out.append(
                    VexStatement(
                        ids=frozenset(x.upper() for x in (name, *aliases)),
                        products=products,
                        status=str(st["status"]),
                        justification=str(st.get("justification", "")),
                        source=str(path.name),
                    )
                )
            except (KeyError, TypeError) as e:
                raise ConfigError(f"{path}: statements[{i}] is malformed ({e}).") from None
    return out


def _component_id(c: object) -> str:
    """A VEX component's id: its ``identifiers.purl`` when given, else its ``@id``."""
    if not isinstance(c, dict):
        return str(c)
    identifiers = c.get("identifiers")
    if isinstance(identifiers, dict) and isinstance(identifiers.get("purl"), str):
        return str(identifiers["purl"])
    return str(c["@id"])


def _product(p: object) -> VexProduct:
    """One statement product and the subcomponents it lists (the statement is about those
    packages inside the product, e.g. an image)."""
    subs = p.get("subcomponents") if isinstance(p, dict) else None
    return VexProduct(
        _component_id(p),
        tuple(_component_id(c) for c in subs) if isinstance(subs, list) else (),
    )


def image_digests(facts: Mapping[str, str]) -> frozenset[str]:
    """The digests that name the built image (the build gate's facts): the image digest, the
    top (index) digest and each platform manifest's."""
    from modelseal.oci import MANIFEST_FACT  # not at start-up: policy validate never needs it

    keys = [k for k in facts if k in ("image.digest", "image.top_digest")]
    keys += [k for k in facts if k.startswith(MANIFEST_FACT)]
    return frozenset(facts[k] for k in keys if facts[k])


def _is_image(product: str, image: frozenset[str]) -> bool | None:
    """None when ``product`` does not name an image; else whether it names the built image:
    a ``pkg:oci`` purl whose version is one of the built image's digests (``image``). One
    without a digest, or judged where the built image is unknown (no build gate), names no
    image this run can confirm: it covers nothing (fail closed) — the image's repository is
    not known when judging, and a digest is what identifies the image."""
    if not product.startswith("pkg:oci/"):
        return None
    try:
        purl = parse_purl(product)
    except ValueError:
        return False
    return bool(purl.version) and str(purl.version) in image


def _package_matches(product: str, f: Finding) -> bool:
    """A package product: a package URL matched precisely
    (:func:`modelseal.vuln.match.purl_matches`: type, namespace, name, and the version and
    qualifiers when given); anything else is read as a package name, as before purls were
    compared (:func:`modelseal.vuln.match.same_package_name`)."""
    if product.startswith("pkg:"):
        try:
            purl = parse_purl(product)
        except ValueError:
            return False  # a product that is no package URL names no package
        return purl.type != "oci" and purl_matches(purl, f)
    return same_package_name(product, f)


def _product_matches(
    products: Iterable[VexProduct], f: Finding, image: frozenset[str] = frozenset()
) -> bool:
    """Whether a statement's products cover the finding: none listed = every product; the
    built image (``pkg:oci/NAME@DIGEST``, a digest in ``image``) = everything in it, or only
    its subcomponents when it lists any; an image of another digest, or of none, covers
    nothing; a package = that package (:func:`_package_matches`); a product of another kind
    with subcomponents = those."""
    products = list(products)
    if not products:
        return True
    for p in products:
        is_image = _is_image(p.id, image)
        if is_image is False:
            continue
        if p.subcomponents:
            if any(_package_matches(c, f) for c in p.subcomponents):
                return True
        elif is_image or _package_matches(p.id, f):
            return True
    return False


@dataclass(frozen=True)
class VulnDecision:
    """What the policy makes of a vulnerability finding: fail / warn / ignored, and why."""

    outcome: str  # "fail" | "warn" | "ignored"
    reason: str
    ignore: IgnoreEntry | None = None


@dataclass(frozen=True)
class Thresholds:
    """The thresholds that judge one finding, and where each came from (``vulnerabilities`` or
    ``vulnerabilities.overrides[N]``)."""

    fail_on: str
    fixable_only: bool
    max_cvss: float | None
    unknown_severity: str
    source: Mapping[str, str]


#: Per threshold, which of two values is stricter (kept when two equally specific overrides
#: disagree: fail closed).
_STRICTER: Mapping[str, Callable[[Any, Any], Any]] = {
    "fail_on": lambda a, b: min(a, b, key=Severity.parse),
    "fixable_only": lambda a, b: a and b,
    "max_cvss": min,
    "unknown_severity": lambda a, b: max(a, b, key=Severity.parse),
}


def thresholds(pol: VulnerabilitiesPolicy, scanner: str, package_type: str) -> Thresholds:
    """The thresholds for findings of ``scanner`` in packages of ``package_type``: for each, the
    most specific override that selects them and sets it (both selectors, then one), the
    stricter one when a scanner and a package_type override tie, else the global value."""
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for key in THRESHOLD_KEYS:
        best: list[tuple[int, Any]] = []
        top = 0
        for i, o in enumerate(pol.overrides):
            if o.scanner not in (None, scanner) or o.package_type not in (None, package_type):
                continue
            value = getattr(o, key)
            if value is None:
                continue
            rank = (o.scanner is not None) + (o.package_type is not None)
            if rank > top:
                best, top = [(i, value)], rank
            elif rank == top:
                best.append((i, value))
        if not best:
            values[key], source[key] = getattr(pol, key), "vulnerabilities"
            continue
        chosen = best[0]
        for cand in best[1:]:
            if _STRICTER[key](chosen[1], cand[1]) != chosen[1]:
                chosen = cand
        values[key], source[key] = chosen[1], f"vulnerabilities.overrides[{chosen[0]}]"
    return Thresholds(**values, source=source)


def _by_thresholds(f: Finding, t: Thresholds) -> VulnDecision:
    severity = f.severity
    if severity is Severity.UNKNOWN:
        severity = Severity.parse(t.unknown_severity)
    threshold = Severity.parse(t.fail_on)
    cvss = _cvss(f)
    src = t.source
    if t.fixable_only and not f.fixed_in:
        return VulnDecision(
            "warn", f"no fixed version exists and {src['fixable_only']}.fixable_only is true"
        )
    if severity >= threshold:
        note = ""
        if f.severity is Severity.UNKNOWN:
            note = f" (severity unknown, counted as such by {src['unknown_severity']}"
            note += ".unknown_severity)"
        return VulnDecision(
            "fail", f"{severity.name} ≥ {src['fail_on']}.fail_on {threshold.name}{note}"
        )
    if t.max_cvss is not None and cvss is not None and cvss > t.max_cvss:
        return VulnDecision("fail", f"CVSS {cvss} > {src['max_cvss']}.max_cvss {t.max_cvss}")
    return VulnDecision(
        "warn", f"{severity.name} is below {src['fail_on']}.fail_on {threshold.name}"
    )


def vex_decision(
    f: Finding, vex: Sequence[VexStatement], image: frozenset[str] = frozenset()
) -> VulnDecision | None:
    """The first VEX statement saying the finding's product is not affected or fixed, as the
    decision it gives (None: no statement does)."""
    ids = ids_of(f)
    for st in vex:
        if st.ids & ids and _product_matches(st.products, f, image):
            if st.status == "not_affected":
                why = f" ({st.justification})" if st.justification else ""
                return VulnDecision("ignored", f"VEX {st.source}: not_affected{why}")
            if st.status == "fixed":
                return VulnDecision("ignored", f"VEX {st.source}: fixed")
    return None


def decide(
    f: Finding,
    pol: VulnerabilitiesPolicy,
    *,
    vex: Sequence[VexStatement],
    today: date,
    duplicate_of: Finding | None = None,
    repeated_by: Sequence[Finding] = (),
    image: frozenset[str] = frozenset(),
) -> VulnDecision:
    """Judge one vulnerability finding. ``repeated_by``: the other scanners' reports of the same
    advisory on the same installed copy (ignored as duplicates of this one): an ignore entry
    matching any report accepts it, and each report is judged on its own severity, CVSS and
    fixed version under the thresholds its scanner and package type pick — the finding fails
    when it fails under any of them. ``image``: the built image's digests
    (:func:`image_digests`), which a VEX statement's ``pkg:oci`` product must name."""
    if duplicate_of is not None:
        return VulnDecision(
            "ignored", f"the same advisory as {duplicate_of.id} reported by {duplicate_of.gate}"
        )
    by_vex = vex_decision(f, vex, image)
    if by_vex is not None:
        return by_vex
    reports = (f, *repeated_by)
    for entry in pol.ignore:
        if any(entry_matches(entry, r, ids_of(r)) for r in reports):
            if entry.expires < today:
                return VulnDecision(
                    "fail",
                    f"the ignore entry for {entry.id} expired on {entry.expires.isoformat()}: "
                    f"renew it or fix the vulnerability",
                    entry,
                )
            return VulnDecision(
                "ignored", f"ignored until {entry.expires.isoformat()}: {entry.reason}", entry
            )
    # Each report is judged on its own severity, CVSS and fixed version under its scanner's
    # thresholds: a second scanner rating the advisory lower never loosens the verdict.
    first: VulnDecision | None = None
    for r in reports:
        d = _by_thresholds(r, thresholds(pol, r.gate, package_type(r)))
        if r is not f:
            d = VulnDecision(d.outcome, f"{d.reason} (as {r.gate} reports it)")
        if d.outcome == "fail":
            return d
        first = first or d
    assert first is not None
    return first


def _cvss(f: Finding) -> float | None:
    try:
        return float(f.evidence["cvss"])
    except (KeyError, ValueError):
        return None


def find_duplicates(findings_by_gate: Mapping[str, Sequence[Finding]]) -> dict[int, Finding]:
    """For each finding (by ``id()``) that repeats one reported earlier (same package, version,
    installed copy — :func:`~modelseal.vuln.match.package_dir` — and overlapping advisory ids),
    the finding it repeats. Two copies of a package in different directories are never folded:
    an ignore entry's ``paths`` or ``scanner`` for one copy must not accept the other."""
    kept: list[Finding] = []
    # (package, version, copy, advisory id) → gate → position in ``kept`` of that gate's first
    # kept finding with this id: the earliest kept finding a new one repeats is found without a
    # scan.
    first: dict[tuple[str, str, str, str], dict[str, int]] = {}
    dups: dict[int, Finding] = {}
    order = [g for g in VULN_GATES if g in findings_by_gate] + [
        g for g in findings_by_gate if g not in VULN_GATES
    ]
    for gate in order:
        for f in findings_by_gate[gate]:
            if not is_vuln(f):
                continue
            pkg = norm_package(f.evidence.get("package", ""))
            version = f.evidence.get("version", "")
            where = package_dir(f)
            ids = ids_of(f)
            best: int | None = None
            for advisory in ids:
                for g, pos in first.get((pkg, version, where, advisory), {}).items():
                    if g != f.gate and (best is None or pos < best):
                        best = pos
            if best is not None:
                dups[id(f)] = kept[best]
                continue
            for advisory in ids:
                first.setdefault((pkg, version, where, advisory), {}).setdefault(f.gate, len(kept))
            kept.append(f)
    return dups


def sources_by_finding(
    findings: Iterable[Finding], dups: Mapping[int, Finding]
) -> dict[int, tuple[str, ...]]:
    """For each kept vulnerability finding (by ``id()``; ``dups`` as :func:`find_duplicates`
    returns it), every scanner that reported its advisory: its own gate, then the gates of the
    findings repeating it, in the order of ``findings``, each once."""
    findings = list(findings)
    repeated_by: dict[int, list[str]] = {}
    for g in findings:
        k = dups.get(id(g))
        if k is not None:
            repeated_by.setdefault(id(k), []).append(g.gate)
    return {
        id(f): tuple(dict.fromkeys([f.gate, *repeated_by.get(id(f), ())]))
        for f in findings
        if is_vuln(f) and id(f) not in dups
    }


def expired_entries(pol: VulnerabilitiesPolicy, today: date) -> list[IgnoreEntry]:
    """Ignore entries past their date."""
    return [e for e in pol.ignore if e.expires < today]


def matched_entries(pol: VulnerabilitiesPolicy, findings: Iterable[Finding]) -> set[int]:
    """The positions in ``vulnerabilities.ignore`` of the entries that match at least one of
    ``findings`` (every matcher, whichever decision the finding got)."""
    by_id: dict[str, list[int]] = {}
    for i, e in enumerate(pol.ignore):
        by_id.setdefault(e.id.upper(), []).append(i)
    out: set[int] = set()
    for f in findings:
        if not is_vuln(f):
            continue
        ids = ids_of(f)
        for advisory in ids:
            for i in by_id.get(advisory, ()):
                if i not in out and entry_matches(pol.ignore[i], f, ids):
                    out.add(i)
    return out
