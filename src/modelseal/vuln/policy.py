"""Judging vulnerability findings: one policy for every scanner.

Order of the questions asked of each finding: is it a duplicate of one already judged (the
same advisory on the same package from another scanner)? Does an OpenVEX statement say the
image is not affected? Does an ignore entry accept it, and has that entry expired? Then the
thresholds: ``fixable_only``, ``fail_on``, ``max_cvss``, with ``unknown_severity`` standing in
for a missing severity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from modelseal.bounded import MIB, read_input_text, shown_path
from modelseal.errors import ConfigError
from modelseal.findings import Finding, Severity
from modelseal.policy.model import IgnoreEntry, VulnerabilitiesPolicy
from modelseal.vuln.findings import VULN_TYPE

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
class VexStatement:
    """One OpenVEX statement, reduced to what matching needs."""

    ids: frozenset[str]
    products: tuple[str, ...]  # purls or names; empty = every product
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
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"{shown_path(path)}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}."
            ) from None
        except RecursionError:
            raise ConfigError(f"{shown_path(path)}: JSON nested too deeply.") from None
        if not isinstance(doc, dict) or not str(doc.get("@context", "")).startswith(
            "https://openvex.dev/ns"
        ):
            raise ConfigError(f"{path} is not an OpenVEX document (no openvex @context).")
        for i, st in enumerate(doc.get("statements", [])):
            try:
                vuln = st["vulnerability"]
                name = vuln["name"] if isinstance(vuln, dict) else str(vuln)
                aliases = vuln.get("aliases", []) if isinstance(vuln, dict) else []
                products = tuple(
                    str(p["@id"] if isinstance(p, dict) else p) for p in st.get("products", [])
                )
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


def _product_matches(products: Iterable[str], f: Finding) -> bool:
    products = list(products)
    if not products:
        return True
    pkg = norm_package(f.evidence.get("package", ""))
    version = f.evidence.get("version", "")
    for p in products:
        if p.startswith("pkg:oci/"):
            return True  # a statement about the image covers everything in it
        m = re.match(r"^pkg:[^/]+/(?:[^/]+/)?([^@?#]+)(?:@([^?#]+))?", p)
        name, ver = (m.group(1), m.group(2)) if m else (p, None)
        if norm_package(name) == pkg and (ver is None or ver == version):
            return True
    return False


@dataclass(frozen=True)
class VulnDecision:
    """What the policy makes of a vulnerability finding: fail / warn / ignored, and why."""

    outcome: str  # "fail" | "warn" | "ignored"
    reason: str
    ignore: IgnoreEntry | None = None


def decide(
    f: Finding,
    pol: VulnerabilitiesPolicy,
    *,
    vex: Sequence[VexStatement],
    today: date,
    duplicate_of: Finding | None = None,
) -> VulnDecision:
    """Judge one vulnerability finding."""
    if duplicate_of is not None:
        return VulnDecision(
            "ignored", f"the same advisory as {duplicate_of.id} reported by {duplicate_of.gate}"
        )
    ids = ids_of(f)
    for st in vex:
        if st.ids & ids and _product_matches(st.products, f):
            if st.status == "not_affected":
                why = f" ({st.justification})" if st.justification else ""
                return VulnDecision("ignored", f"VEX {st.source}: not_affected{why}")
            if st.status == "fixed":
                return VulnDecision("ignored", f"VEX {st.source}: fixed")
    pkg = norm_package(f.evidence.get("package", ""))
    for entry in pol.ignore:
        if entry.id.upper() in ids and (
            entry.package is None or norm_package(entry.package) == pkg
        ):
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
    severity = f.severity
    if severity is Severity.UNKNOWN:
        severity = Severity.parse(pol.unknown_severity)
    threshold = Severity.parse(pol.fail_on)
    cvss = _cvss(f)
    if pol.fixable_only and not f.fixed_in:
        return VulnDecision(
            "warn", "no fixed version exists and vulnerabilities.fixable_only is true"
        )
    if severity >= threshold:
        note = " (severity unknown, counted as such)" if f.severity is Severity.UNKNOWN else ""
        return VulnDecision(
            "fail", f"{severity.name} ≥ vulnerabilities.fail_on {threshold.name}{note}"
        )
    if pol.max_cvss is not None and cvss is not None and cvss > pol.max_cvss:
        return VulnDecision("fail", f"CVSS {cvss} > vulnerabilities.max_cvss {pol.max_cvss}")
    return VulnDecision(
        "warn", f"{severity.name} is below vulnerabilities.fail_on {threshold.name}"
    )


def _cvss(f: Finding) -> float | None:
    try:
        return float(f.evidence["cvss"])
    except (KeyError, ValueError):
        return None


def find_duplicates(findings_by_gate: Mapping[str, Sequence[Finding]]) -> dict[int, Finding]:
    """For each finding (by ``id()``) that repeats one reported earlier (same package, version
    and overlapping advisory ids), the finding it repeats."""
    kept: list[Finding] = []
    # (package, version, advisory id) → gate → position in ``kept`` of that gate's first kept
    # finding with this id: the earliest kept finding a new one repeats is found without a scan.
    first: dict[tuple[str, str, str], dict[str, int]] = {}
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
            ids = ids_of(f)
            best: int | None = None
            for advisory in ids:
                for g, pos in first.get((pkg, version, advisory), {}).items():
                    if g != f.gate and (best is None or pos < best):
                        best = pos
            if best is not None:
                dups[id(f)] = kept[best]
                continue
            for advisory in ids:
                first.setdefault((pkg, version, advisory), {}).setdefault(f.gate, len(kept))
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
