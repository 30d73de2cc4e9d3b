"""Vulnerability findings and judging shared by the vulnerability policy tests."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from modelseal.findings import Finding, GateResult, Severity
from modelseal.judge import Verdict, judge
from modelseal.policy import load_policy_text
from modelseal.vuln.baseline import Baseline, BaselineFinding, BaselineSpec
from modelseal.vuln.findings import vuln_finding

#: The day the vulnerability policy tests judge on (ignore entries' expiry is relative to it).
TODAY = date(2026, 11, 23)


def judge_policy(
    policy: str, *results: GateResult, base: Path | None = None, today: date = TODAY
) -> Verdict:
    """The verdict on ``results`` under the policy ``version: 1`` + ``policy``."""
    return judge(
        list(results),
        load_policy_text("version: 1\n" + policy, "p.yml").policy,
        base_dir=base,
        today=today,
    )


def pip_audit_requests(location: str, severity: Severity = Severity.HIGH) -> Finding:
    """requests 2.19.0's PYSEC-2018-28 as pip-audit reports it for the copy at ``location``
    (severity as the lookup found)."""
    return vuln_finding(
        gate="pip-audit",
        id="PYSEC-2018-28",
        package="requests",
        version="2.19.0",
        ecosystem="pypi",
        severity=severity,
        title="requests 2.19.0: credentials leak",
        fixed_in="2.20.0",
        location=location,
        aliases=["CVE-2018-18074", "GHSA-x84v-xcm2-53pg"],
    )


def baseline_of(findings: list[Finding]) -> Baseline:
    """A loaded baseline (a report file's) holding ``findings``."""
    spec = BaselineSpec("base/report.json", path=Path("base/report.json"))
    return Baseline(
        spec, digest="sha256:" + "0" * 64, findings=tuple(map(BaselineFinding, findings))
    )
