"""Baseline matching without an engine: which ids make two findings the same advisory, and
which thresholds count an unknown severity when "worse" is asked (issue 18 section 4)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from tests.support.vuln import baseline_of

from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.judge import Outcome, judge
from modelseal.policy import load_policy_text
from modelseal.vuln.baseline import advisory_ids
from modelseal.vuln.findings import vuln_finding
from modelseal.vuln.policy import ids_of
from modelseal.vuln.trivy import parse_report

TODAY = date(2026, 12, 5)


def _policy(text: str = "") -> Any:
    return load_policy_text("version: 1\n" + text, "policy.yml").policy


def _trivy(vendor_ids: list[str], *, os_pkg: bool) -> Finding:
    result: dict[str, Any] = {
        "Target": "image (ubuntu 22.04)" if os_pkg else "Python",
        "Class": "os-pkgs" if os_pkg else "lang-pkgs",
        "Type": "ubuntu" if os_pkg else "python-pkg",
        "Vulnerabilities": [
            {
                "VulnerabilityID": "CVE-2023-0464",
                "VendorIDs": vendor_ids,
                "PkgName": "libssl3",
                "InstalledVersion": "3.0.2-0ubuntu1.8",
                "FixedVersion": "3.0.2-0ubuntu1.9",
                "Status": "fixed",
                "Severity": "HIGH",
            }
        ],
    }
    report = {"SchemaVersion": 2, "Results": [result]}
    (f,) = parse_report(json.dumps(report), platform="linux/amd64")
    return f


def test_trivy_vendor_notices_are_kept_apart_from_aliases() -> None:
    """A notice fixing several CVEs (USN-…) is recorded as a notice, not an alias; a GHSA
    (the same advisory under another name, as Trivy's language DB lists it) stays an alias."""
    f = _trivy(["USN-6039-1", "GHSA-aaaa-bbbb-cccc"], os_pkg=True)
    assert f.evidence["aliases"] == "GHSA-aaaa-bbbb-cccc"
    assert f.evidence["notices"] == "USN-6039-1"
    assert ids_of(f) == {"CVE-2023-0464", "GHSA-AAAA-BBBB-CCCC"}


def test_a_notice_an_older_report_lists_as_an_alias_matches_nothing() -> None:
    """A baseline report written before notices were set apart lists USN-6039-1 among the
    aliases of CVE-2023-0464: CVE-2023-0465, which the same notice fixes, is still new."""

    def libssl(cve: str) -> Finding:
        return vuln_finding(
            gate="trivy", id=cve, package="libssl3", version="3.0.2-0ubuntu1.8",
            ecosystem="ubuntu", severity=Severity.HIGH, title=cve, fixed_in="3.0.2-0ubuntu1.9",
            location="os package database", aliases=["USN-6039-1"],
        )  # fmt: skip

    old = libssl("CVE-2023-0464")
    assert advisory_ids(old) == {"CVE-2023-0464"}
    new = libssl("CVE-2023-0465")
    results = [GateResult("trivy", Status.PASSED, (new,))]
    verdict = judge(results, _policy(), today=TODAY, baseline=baseline_of([old]))
    (d,) = verdict.gates[0].decisions
    assert (d.baseline, d.outcome) == ("new", Outcome.FAIL)
    assert verdict.baseline is not None
    assert [b.finding.id for b in verdict.baseline.fixed] == ["CVE-2023-0464"]


def _requests(gate: str, severity: Severity) -> Finding:
    return vuln_finding(
        gate=gate, id="CVE-2018-18074" if gate == "trivy" else "PYSEC-2018-28",
        package="requests", version="2.19.0", ecosystem="pypi", severity=severity,
        title="requests", fixed_in="2.20.0", location="/usr/lib/python3/dist-packages",
        aliases=[] if gate == "trivy" else ["CVE-2018-18074"],
    )  # fmt: skip


def test_worse_counts_an_unknown_severity_by_every_scanner_that_reported_it() -> None:
    """The same advisory from Trivy and pip-audit (one finding with two sources) fails under
    pip-audit's override (unknown counted CRITICAL); the baseline had it HIGH: worse."""
    policy = _policy(
        "vulnerabilities:\n  fail_on: high\n  unknown_severity: low\n"
        "  overrides:\n    - {scanner: pip-audit, unknown_severity: critical}\n"
    )
    results = [
        GateResult("trivy", Status.PASSED, (_requests("trivy", Severity.UNKNOWN),)),
        GateResult("pip-audit", Status.PASSED, (_requests("pip-audit", Severity.UNKNOWN),)),
    ]
    base = baseline_of([_requests("pip-audit", Severity.HIGH)])
    verdict = judge(results, policy, today=TODAY, baseline=base)
    kept = [d for g in verdict.gates for d in g.decisions if d.outcome is not Outcome.IGNORED]
    assert [(d.finding.gate, d.baseline, d.outcome) for d in kept] == [
        ("trivy", "worse", Outcome.FAIL)
    ]


def test_report_json_lists_a_bounded_number_of_fixed_findings() -> None:
    """A baseline's fixed findings in report.json: at most MAX_FIXED_LISTED, each text clipped,
    the rest counted (fixed_omitted, note); counts.fixed stays the total; the schema holds."""
    import jsonschema
    from tests.support.reports import REPORT_SCHEMA

    from modelseal.reports.json_report import report_to_json
    from modelseal.reports.model import Report
    from modelseal.vuln.baseline import MAX_FIXED_LISTED, MAX_LISTED_TEXT

    total = MAX_FIXED_LISTED + 7
    fixed = [
        vuln_finding(
            gate="trivy",
            id=f"CVE-2099-{i:05d}",
            package=f"p{i}" + "x" * 3000,
            version="1",
            ecosystem="debian",
            severity=Severity.LOW,
            title="t",
            fixed_in=None,
            location="os package database",
        )
        for i in range(total)
    ]
    results = [GateResult("trivy", Status.PASSED, ())]
    verdict = judge(results, _policy(), today=TODAY, baseline=baseline_of(fixed))
    data = report_to_json(Report(verdict, "policy.yml", "0" * 64, 0.0, 1.0, "0.0.0"))
    jsonschema.validate(data, json.loads(REPORT_SCHEMA.read_text()))
    base = data["baseline"]
    assert base["counts"]["fixed"] == total
    assert len(base["fixed"]) == MAX_FIXED_LISTED and base["fixed_omitted"] == 7
    assert f"{MAX_FIXED_LISTED} of the {total} fixed findings listed" in base["note"]
    assert max(len(b["subject"]) for b in base["fixed"]) == MAX_LISTED_TEXT
    # Nothing left out: no note.
    few = judge(results, _policy(), today=TODAY, baseline=baseline_of(fixed[:3]))
    data = report_to_json(Report(few, "policy.yml", "0" * 64, 0.0, 1.0, "0.0.0"))
    assert len(data["baseline"]["fixed"]) == 3 and "note" not in data["baseline"]
