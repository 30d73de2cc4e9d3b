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
differ. Every other finding is *new*; a baseline finding no finding of this run matches is
*fixed* (counted only for the scanners that collected evidence in this run).

**Worse.** An existing finding is *worse* when its severity (an unknown one counted as
``unknown_severity``) is higher than the highest of the baseline findings it matches, when both
have a CVSS score and this one is higher, or — for a finding that would fail — when the
baseline's verdict failed none of them (the baseline accepted it, this run would not).

**Judging** (``baseline_policy``; new findings are always judged as without a baseline):

* ``warn`` — an existing finding never fails: what would fail is a warning;
* ``fail-if-worse`` (the default) — an existing finding that would fail fails only when worse;
* ``fail`` — existing findings are judged as new ones (the report still tells them apart).

An expired ignore entry fails in every mode: the date is the security team's, not the baseline's.

A baseline that cannot be read, is larger than :data:`MAX_BASELINE_BYTES`, is not a modelseal
report, or (an image) has no scan-report attestation signed by the expected signer makes the
vulnerability gates ERRORED (exit 3) — never a run judged as if there were no baseline.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from modelseal.bounded import MIB, read_input, shown_path
from modelseal.errors import ConfigError, Error
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.untrusted import untrusted
from modelseal.vuln.policy import ids_of, is_vuln, norm_package

if TYPE_CHECKING:
    from modelseal.judge import Decision, GateVerdict
    from modelseal.policy.model import VulnerabilitiesPolicy
    from modelseal.sign.verify import ExpectedSigner

MAX_BASELINE_BYTES: Final = 64 * MIB
"""A baseline report (file, or the report in an attestation) larger than this is refused."""
MAX_BASELINE_FINDINGS: Final = 100_000
"""A baseline with more vulnerability findings than this is refused."""

BaselineMode = Literal["warn", "fail-if-worse", "fail"]
#: A finding's state against the baseline: ``worse`` is existing and worse.
State = Literal["new", "existing", "worse"]


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
    """One vulnerability finding of the baseline, with the baseline's decision on it."""

    finding: Finding
    decision: str | None
    """fail / warn / ignored, as the baseline's verdict decided (None: not recorded)."""

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
        for advisory in ids_of(self.finding):
            yield (self.package, self.ecosystem, advisory)

    def to_json(self) -> dict[str, Any]:
        """The fields a report lists of a fixed finding."""
        f = self.finding
        return {
            "gate": f.gate,
            "id": f.id,
            "severity": f.severity.name,
            "subject": f.subject,
            "ecosystem": self.ecosystem,
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

    def to_json(self) -> dict[str, Any]:
        """What the report says of the baseline used."""
        return {
            "kind": self.spec.kind,
            "source": self.spec.text,
            "digest": self.digest,
            "signer": self.signer,
            "verdict": self.verdict,
            "finished_at": self.finished_at,
            "error": self.error,
        }


# --- loading -------------------------------------------------------------------------------


def load_baseline(
    spec: BaselineSpec, *, expected: ExpectedSigner | None = None, timeout_s: float = 300.0
) -> Baseline:
    """Read and check the baseline ``spec`` names: a file, or the newest scan-report
    attestation of the image signed as ``expected`` (required for an image). Never raises
    for a bad baseline: the returned one carries the ``error`` (the gates are ERRORED)."""
    try:
        if spec.path is not None:
            data, digest = _read_file(spec.path)
            return _from_report(spec, data, digest, None, str(spec.path))
        if expected is None:
            raise ConfigError("an image baseline needs an expected signer (the verify section).")
        return _from_image(spec, expected, timeout_s)
    except Error as e:
        return Baseline(spec, error=untrusted(e.diagnostics(), markup=False, multiline=True))


def _read_file(path: Path) -> tuple[Any, str]:
    raw = read_input(path, what="baseline report", limit=MAX_BASELINE_BYTES, contained=False)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    try:
        return json.loads(raw.decode("utf-8")), digest
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"baseline report {shown_path(path)} is not UTF-8 (offset {e.start})."
        ) from None
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"baseline report {shown_path(path)}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}."
        ) from None
    except RecursionError:
        raise ConfigError(f"baseline report {shown_path(path)}: JSON nested too deeply.") from None


def _from_image(spec: BaselineSpec, expected: ExpectedSigner, timeout_s: float) -> Baseline:
    from modelseal.publish.publisher import ImageRef, registry_credentials, registry_token_hosts
    from modelseal.publish.registry import RegistryClient, sha256_digest
    from modelseal.publish.statements import SCAN_REPORT_PREDICATE
    from modelseal.publish.verify_image import gather_signed
    from modelseal.sign.interface import VerificationError

    assert spec.image is not None
    ref = ImageRef.parse(spec.image, what="baseline", allow_digest=True)
    client = RegistryClient(
        ref.host,
        ref.repository,
        auth=registry_credentials(ref.host),
        token_hosts=registry_token_hosts(),
    )
    client.set_deadline(timeout_s, "baseline timeout (verify.timeout_seconds)")
    _, body, digest = client.get_manifest(ref.digest or ref.tag or "latest")
    if sha256_digest(body) != digest or (ref.digest and digest != ref.digest):
        raise VerificationError(
            f"{spec.image}: the registry's manifest does not match {ref.digest or digest}."
        )
    found = gather_signed(client, digest, body, expected)
    reports = found.statements.get(SCAN_REPORT_PREDICATE, [])
    if not reports:
        why = f" ({'; '.join(found.problems[:3])})" if found.problems else ""
        raise VerificationError(
            f"{spec.image}@{digest} has no scan-report attestation signed by the expected "
            f"signer ({expected.describe()}){why}."
        )
    # The newest report counts (an image may be attested again, e.g. rescanned).
    statement = max(reports, key=lambda st: _finished(st.get("predicate")))
    # Its size is bounded by the registry client (RegistryLimits.attestation_bytes).
    report = statement["predicate"].get("report")
    return _from_report(
        spec, report, digest, found.signer_of(statement), f"the scan report of {spec.image}"
    )


def _finished(predicate: Any) -> float:
    try:
        return float(
            calendar.timegm(time.strptime(str(predicate["finished_at"]), "%Y-%m-%dT%H:%M:%SZ"))
        )
    except (KeyError, TypeError, ValueError):
        return 0.0


def _from_report(
    spec: BaselineSpec, data: Any, digest: str, signer: str | None, source: str
) -> Baseline:
    """The vulnerability findings of a report object, checked as ``modelseal judge`` checks a
    report (:func:`~modelseal.reports.json_report.results_from_data`)."""
    from modelseal.reports.json_report import decided_findings, results_from_data

    results_from_data(data, source)  # the schema: a ConfigError naming what is wrong
    out: list[BaselineFinding] = []
    try:
        for g in data["gates"]:
            for row in decided_findings(g):
                if row.get("made") or (row.get("evidence") or {}).get("type") != "vulnerability":
                    continue
                finding = Finding.from_json(row)
                decision = row.get("decision")
                out.append(BaselineFinding(finding, str(decision) if decision else None))
                if len(out) > MAX_BASELINE_FINDINGS:
                    raise ConfigError(
                        f"{source} holds more than {MAX_BASELINE_FINDINGS} vulnerability "
                        "findings; refusing it as a baseline."
                    )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{source}: malformed report ({type(e).__name__}: {e}).") from None
    verdict = data.get("verdict")
    finished = data.get("finished_at")
    return Baseline(
        spec,
        digest=digest,
        signer=signer,
        verdict=str(verdict) if verdict is not None else None,
        finished_at=str(finished) if finished is not None else None,
        findings=tuple(out),
    )


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
        for advisory in sorted(ids_of(f)):
            for i in self._by_key.get((pkg, eco, advisory), ()):
                seen[i] = None
        return [self.baseline.findings[i] for i in seen]

    def _severity(self, f: Finding) -> Severity:
        if f.severity is Severity.UNKNOWN:
            return Severity.parse(self.policy.unknown_severity)
        return f.severity

    def compare(self, f: Finding, fails: bool) -> Comparison:
        """New, existing or worse (``fails``: this run's policy would fail ``f``)."""
        matched = self.matches(f)
        if not matched:
            return Comparison("new")
        reasons = []
        then = max(self._severity(b.finding) for b in matched)
        now = self._severity(f)
        if now > then:
            reasons.append(f"severity {now.name}, was {then.name}")
        scores = [s for s in (_cvss(b.finding) for b in matched) if s is not None]
        score = _cvss(f)
        if score is not None and scores and score > max(scores):
            reasons.append(f"CVSS {score}, was {max(scores)}")
        if fails and not any(b.decision == "fail" for b in matched):
            reasons.append("the baseline's verdict did not fail it")
        return Comparison("worse", "; ".join(reasons)) if reasons else Comparison("existing")


def _cvss(f: Finding) -> float | None:
    try:
        return float(f.evidence["cvss"])
    except (KeyError, ValueError):
        return None


def apply_baseline(
    d: Decision, index: BaselineIndex, mode: BaselineMode, *, duplicate: bool = False
) -> Decision:
    """``d`` (the decision without a baseline) with the finding's baseline state, and the
    outcome ``mode`` gives an existing finding that would fail."""
    from modelseal.judge import Outcome

    if not is_vuln(d.finding):
        return d
    cmp = index.compare(d.finding, d.outcome is Outcome.FAIL)
    d = replace(d, baseline=cmp.state)
    if cmp.state == "new" or d.outcome is not Outcome.FAIL or duplicate:
        return d
    if d.ignore is not None:  # an expired ignore entry: its date decides, not the baseline
        return replace(d, reason=f"{d.reason} (existing in the baseline; expired entries fail)")
    if mode == "fail":
        return replace(d, reason=f"{d.reason} (existing in the baseline; baseline_policy fail)")
    if mode == "fail-if-worse" and cmp.state == "worse":
        return replace(d, reason=f"{d.reason}; worse than in the baseline: {cmp.why}")
    why = "" if mode == "warn" else " and not worse"
    return replace(
        d,
        outcome=Outcome.WARN,
        reason=f"existing in the baseline{why}, allowed by vulnerabilities.baseline_policy "
        f"{mode} (would fail: {d.reason})",
    )


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

    def to_json(self) -> dict[str, Any]:
        """The report's ``baseline`` object."""
        return {
            **self.baseline.to_json(),
            "policy": self.mode,
            "counts": {
                "new": self.new,
                "existing": self.existing,
                "worse": self.worse,
                "fixed": len(self.fixed),
            },
            "fixed": [b.to_json() for b in self.fixed],
        }


def _distinct(findings: Iterable[Finding]) -> Iterator[Finding]:
    """Each advisory on a package once: a finding sharing a (package, type, id) with one
    before it (another scanner's report of it) is left out."""
    seen: set[tuple[str, str, str]] = set()
    for f in findings:
        pkg = norm_package(f.evidence.get("package", ""))
        keys = {(pkg, f.evidence.get("ecosystem", "").lower(), a) for a in ids_of(f)}
        if keys & seen:
            continue
        seen |= keys
        yield f


def summarize(
    baseline: Baseline,
    policy: VulnerabilitiesPolicy,
    results: Sequence[GateResult],
    verdicts: Sequence[GateVerdict],
) -> BaselineSummary:
    """The counts of a judged run against ``baseline``."""
    mode: BaselineMode = policy.baseline_policy
    if baseline.error is not None:
        return BaselineSummary(baseline, mode)
    decisions = [d for g in verdicts for d in g.decisions if d.baseline is not None]
    state = {id(d.finding): d.baseline for d in decisions}
    counts = {"new": 0, "existing": 0, "worse": 0}
    for f in _distinct(d.finding for d in decisions):
        counts[str(state[id(f)])] += 1
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
