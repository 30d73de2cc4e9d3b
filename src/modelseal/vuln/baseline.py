"""Fail only on what a change adds: ``vulnerabilities.baseline``.

A baseline is the report of an earlier run — a ``report.json`` file, or the scan-report
attestation of an image (typically the base branch's last sealed image), verified as ``modelseal
verify`` verifies it (:func:`modelseal.publish.verify_image.gather_signed`: the statement counts
only when its signature verifies as the expected signer's and its subject is the image digest).
The image may have another name than the one this run builds; the report names the baseline
used (its path or reference, and digest).

**Existing.** A vulnerability finding of this run is *existing* when the baseline holds one with
an advisory id or alias in common, the same package name (PEP 503-normalised) and the same
package type (``ecosystem``: pypi, debian, …); the version, the location and the scanner may
differ. A vendor notice (USN-…, DSA-…, RHSA-…: one update fixing several
CVEs) is no alias (:func:`advisory_ids`). Every other finding is *new*; a baseline finding no finding of this run matches is
*fixed* (counted only for the scanners that collected evidence in this run).

**Worse.** An existing finding is *worse* when its severity (an unknown one counted as the
``unknown_severity`` that judges it: the override for its scanner and package type, else the
global value) is higher than the highest of the baseline findings it matches, or when
both have a CVSS score and this one is higher: the advisory got worse, not the policy. What the
baseline's verdict made of it does not count: an image baseline was published, so its verdict
passed and accepted every finding, and "fails now, was accepted then" would fail every existing
finding the policy fails today — debt the change did not create (a fix published since, a
stricter policy).

**Judging** (``baseline_policy``; new findings are always judged as without a baseline):

* ``warn`` — an existing finding never fails: what would fail is a warning;
* ``fail-if-worse`` (the default) — an existing finding that would fail fails only when worse;
* ``fail`` — existing findings are judged as new ones (the report still tells them apart).

An expired ignore entry fails in every mode: the date is the security team's, not the baseline's.

A baseline that cannot be read, is larger than :data:`MAX_BASELINE_BYTES`, is not a modelseal
report, or (an image) has no scan-report attestation signed by the expected signer makes the
vulnerability gates ERRORED (exit 3) — never a run judged as if there were no baseline.

Here: what a baseline is and how findings compare with it; loading it is
:mod:`modelseal.vuln.baseline_load`, judging by it :func:`modelseal.vuln.rules.apply_baseline`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from modelseal.bounded import MIB
from modelseal.errors import ConfigError
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.vuln.findings import is_alias_id
from modelseal.vuln.match import package_type
from modelseal.vuln.policy import ids_of, is_vuln, norm_package, thresholds

if TYPE_CHECKING:
    from modelseal.policy.model import VulnerabilitiesPolicy

MAX_BASELINE_BYTES: Final = 64 * MIB
"""A baseline report (file, or the report in an attestation) larger than this is refused."""
MAX_BASELINE_FINDINGS: Final = 100_000
"""A baseline with more vulnerability findings than this is refused."""
MAX_FIXED_LISTED: Final = 1000
"""report.json lists at most this many fixed findings (``counts.fixed`` is the total; SARIF
lists fewer: :data:`modelseal.reports.sarif.MAX_FIXED_LISTED`)."""
MAX_LISTED_TEXT: Final = 1000
"""Each text of the baseline a report repeats (a fixed finding's id or subject, the source,
signer, verdict, error) is clipped to this many characters: they come from the baseline."""

BaselineMode = Literal["warn", "fail-if-worse", "fail"]
#: A finding's state against the baseline: ``worse`` is existing and worse.
State = Literal["new", "existing", "worse"]


def advisory_ids(f: Finding) -> frozenset[str]:
    """The ids that name ``f``'s vulnerability: its id and the aliases of a database naming
    one vulnerability per id (:func:`modelseal.vuln.findings.is_alias_id`). A vendor notice a
    report written before notices were set apart lists among the aliases (USN-…, DSA-…: one
    update fixing several CVEs) is left out: sharing one makes two CVEs neither the same
    finding nor one count."""
    own = f.id.upper()
    return frozenset(a for a in ids_of(f) if a == own or is_alias_id(a))


# --- what a baseline is --------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineSpec:
    """Where a baseline comes from: a report file or an image reference (one of the two)."""

    text: str
    """As written (flag, input or policy key)."""
    path: Path | None = None
    image: str | None = None

    @property
    def kind(self) -> Literal["file", "image"]:
        """``file`` or ``image``."""
        return "file" if self.path is not None else "image"


def parse_spec(text: str, base: Path) -> BaselineSpec:
    """Read a baseline as written: a file path (relative to ``base``) when it starts with
    ``/``, ``./`` or ``../``, ends with ``.json``, or names no registry host; otherwise an image
    reference ``REGISTRY/REPOSITORY[:TAG][@sha256:…]``."""
    from modelseal.publish.publisher import ImageRef

    if not text.strip():
        raise ConfigError("the baseline is empty: give a report.json path or an image reference.")
    if text.startswith(("/", "./", "../")) or text.endswith(".json"):
        return BaselineSpec(text, path=base / text)
    try:
        ImageRef.parse(text, what="baseline", allow_digest=True)
    except ConfigError:
        return BaselineSpec(text, path=base / text)
    return BaselineSpec(text, image=text)


@dataclass(frozen=True)
class BaselineFinding:
    """One vulnerability finding of the baseline."""

    finding: Finding

    @property
    def package(self) -> str:
        """The normalised package name."""
        return norm_package(self.finding.evidence.get("package", ""))

    @property
    def ecosystem(self) -> str:
        """The package type (pypi, debian, …)."""
        return self.finding.evidence.get("ecosystem", "").lower()

    def match_keys(self) -> Iterator[tuple[str, str, str]]:
        """(package, type, advisory id) for the id and each alias."""
        for advisory in advisory_ids(self.finding):
            yield (self.package, self.ecosystem, advisory)

    def to_json(self, max_text: int = MAX_LISTED_TEXT) -> dict[str, Any]:
        """The fields a report lists of a fixed finding, each clipped to ``max_text``
        characters (the baseline wrote them)."""
        f = self.finding
        return {
            "gate": _clip(f.gate, max_text),
            "id": _clip(f.id, max_text),
            "severity": f.severity.name,
            "subject": _clip(f.subject, max_text),
            "ecosystem": _clip(self.ecosystem, max_text),
        }


@dataclass(frozen=True)
class Baseline:
    """A loaded baseline, or why it could not be loaded (``error``)."""

    spec: BaselineSpec
    digest: str | None = None
    """The image's manifest digest, or the file's ``sha256:``."""
    signer: str | None = None
    """Who signed the scan-report attestation (an image)."""
    verdict: str | None = None
    finished_at: str | None = None
    findings: tuple[BaselineFinding, ...] = ()
    error: str | None = None

    @property
    def source(self) -> str:
        """``file PATH`` or ``image REF``, with the digest when known."""
        pinned = self.spec.kind == "file" or not self.digest or "@" in self.spec.text
        at = "" if pinned else f"@{self.digest}"
        return f"{self.spec.kind} {self.spec.text}{at}"

    def to_json(self, max_text: int = MAX_LISTED_TEXT) -> dict[str, Any]:
        """What the report says of the baseline used (each text clipped to ``max_text``)."""
        return {
            "kind": self.spec.kind,
            "source": _clip(self.spec.text, max_text),
            "digest": _clip(self.digest, max_text),
            "signer": _clip(self.signer, max_text),
            "verdict": _clip(self.verdict, max_text),
            "finished_at": _clip(self.finished_at, max_text),
            "error": _clip(self.error, max_text),
        }


# --- comparing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """A finding of this run against the baseline."""

    state: State
    why: str = ""
    """Why it is worse (``state`` worse)."""


class BaselineIndex:
    """The baseline's findings by (package, type, advisory id), for :meth:`compare`."""

    def __init__(self, baseline: Baseline, policy: VulnerabilitiesPolicy) -> None:
        self.baseline = baseline
        self.policy = policy
        self._by_key: dict[tuple[str, str, str], list[int]] = {}
        for i, b in enumerate(baseline.findings):
            for key in b.match_keys():
                self._by_key.setdefault(key, []).append(i)

    def matches(self, f: Finding) -> list[BaselineFinding]:
        """The baseline findings ``f`` matches (empty: ``f`` is new)."""
        pkg = norm_package(f.evidence.get("package", ""))
        eco = f.evidence.get("ecosystem", "").lower()
        seen: dict[int, None] = {}
        for advisory in sorted(advisory_ids(f)):
            for i in self._by_key.get((pkg, eco, advisory), ()):
                seen[i] = None
        return [self.baseline.findings[i] for i in seen]

    def _severity(self, f: Finding, gates: Iterable[str] = ()) -> Severity:
        """``f``'s severity, an unknown one counted as the ``unknown_severity`` of the
        thresholds that judge it (:func:`modelseal.vuln.policy.thresholds`: the override for its
        scanner and package type, else the global value); with ``gates`` (the other scanners
        that reported it), the highest of theirs, as a finding fails under any of them."""
        if f.severity is not Severity.UNKNOWN:
            return f.severity
        kind = package_type(f)
        return max(
            Severity.parse(thresholds(self.policy, gate, kind).unknown_severity)
            for gate in (f.gate, *gates)
        )

    def compare(self, f: Finding, gates: Iterable[str] = ()) -> Comparison:
        """New, existing or worse (``gates``: every scanner that reported ``f``)."""
        matched = self.matches(f)
        if not matched:
            return Comparison("new")
        reasons = []
        then = max(self._severity(b.finding) for b in matched)
        now = self._severity(f, gates)
        if now > then:
            reasons.append(f"severity {now.name}, was {then.name}")
        scores = [s for s in (_cvss(b.finding) for b in matched) if s is not None]
        score = _cvss(f)
        if score is not None and scores and score > max(scores):
            reasons.append(f"CVSS {score}, was {max(scores)}")
        return Comparison("worse", "; ".join(reasons)) if reasons else Comparison("existing")


def _cvss(f: Finding) -> float | None:
    try:
        return float(f.evidence["cvss"])
    except (KeyError, ValueError):
        return None


# --- the run's summary ---------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineSummary:
    """What the verdict says of the baseline: which one, the mode, and the counts (each
    advisory on a package once, however many scanners reported it)."""

    baseline: Baseline
    mode: BaselineMode
    new: int = 0
    existing: int = 0
    """Existing and not worse (SARIF's unchanged)."""
    worse: int = 0
    fixed: tuple[BaselineFinding, ...] = field(default=())

    def line(self) -> str:
        """One line for the console and the summaries (plain text)."""
        b = self.baseline
        if b.error is not None:
            return f"baseline {b.source}: could not be used — {b.error.splitlines()[0]}"
        counts = (
            f"{self.new} new, {len(self.fixed)} fixed, {self.existing} unchanged, "
            f"{self.worse} worse"
        )
        return f"baseline {b.source} (baseline_policy {self.mode}): {counts}"

    def to_json(
        self, max_fixed: int = MAX_FIXED_LISTED, max_text: int = MAX_LISTED_TEXT
    ) -> dict[str, Any]:
        """The report's ``baseline`` object: the counts, and at most ``max_fixed`` of the fixed
        findings (a baseline may hold 100,000: listing them all would make the report, and a
        SARIF past GitHub's upload limit, as large as the baseline). When some are left out,
        ``fixed_omitted`` says how many and ``note`` why."""
        listed = self.fixed[:max_fixed]
        out = {
            **self.baseline.to_json(max_text),
            "policy": self.mode,
            "counts": {
                "new": self.new,
                "existing": self.existing,
                "worse": self.worse,
                "fixed": len(self.fixed),
            },
            "fixed": [b.to_json(max_text) for b in listed],
        }
        if len(listed) < len(self.fixed):
            omitted = len(self.fixed) - len(listed)
            out["fixed_omitted"] = omitted
            out["note"] = (
                f"{len(listed)} of the {len(self.fixed)} fixed findings listed; {omitted} left "
                "out (counts.fixed is the total)"
            )
        return out


def _clip(text: str | None, n: int) -> str | None:
    return text if text is None or len(text) <= n else text[: n - 1] + "…"


def _distinct(findings: Iterable[Finding]) -> Iterator[Finding]:
    """Each advisory on a package once: a finding sharing a (package, type, id) with one
    before it (another scanner's report of it) is left out."""
    seen: set[tuple[str, str, str]] = set()
    for f in findings:
        pkg = norm_package(f.evidence.get("package", ""))
        keys = {(pkg, f.evidence.get("ecosystem", "").lower(), a) for a in advisory_ids(f)}
        if keys & seen:
            continue
        seen |= keys
        yield f


def summarize(
    baseline: Baseline,
    policy: VulnerabilitiesPolicy,
    results: Sequence[GateResult],
    states: Sequence[tuple[Finding, str]],
) -> BaselineSummary:
    """The counts of a judged run against ``baseline``: ``states`` holds each vulnerability
    finding judged with its baseline state (new, existing or worse)."""
    mode: BaselineMode = policy.baseline_policy
    if baseline.error is not None:
        return BaselineSummary(baseline, mode)
    state = {id(f): s for f, s in states}
    counts = {"new": 0, "existing": 0, "worse": 0}
    for f in _distinct(f for f, _ in states):
        counts[state[id(f)]] += 1
    index = BaselineIndex(baseline, policy)
    current = [f for r in results for f in r.findings if is_vuln(f)]
    matched = {id(b) for f in current for b in index.matches(f)}
    # A baseline finding of a scanner that did not run now is not fixed, only not compared.
    ran = {r.gate for r in results if r.status is Status.PASSED}
    unmatched = [b for b in baseline.findings if id(b) not in matched and b.finding.gate in ran]
    by_finding = {id(b.finding): b for b in unmatched}
    fixed = tuple(by_finding[id(f)] for f in _distinct(b.finding for b in unmatched))
    return BaselineSummary(
        baseline, mode, counts["new"], counts["existing"], counts["worse"], fixed
    )
