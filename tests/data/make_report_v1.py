"""Writes the schema_version 1 fixtures ``report-v1.json`` (FAILED: an errored gate, an expired
ignore entry matching nothing, a duplicated advisory) and ``report-v1-passed.json`` (PASSED: an
accepted vulnerability reported by both scanners) as modelseal wrote them before version 2.

Run it with that source tree first on the path, from the repository root::

    git archive 2e3120d src | tar -x -C /tmp/v1
    PYTHONPATH=/tmp/v1/src .venv/bin/python tests/data/make_report_v1.py tests/data
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.judge import judge
from modelseal.policy import load_policy_text
from modelseal.reports import Report
from modelseal.reports.json_report import SCHEMA_VERSION, report_to_json
from modelseal.vuln.findings import vuln_finding

TODAY = date(2026, 11, 23)
PASSED_POLICY = """version: 1
vulnerabilities:
  ignore:
    - {id: CVE-2018-18074, package: requests, reason: no redirects, expires: 2099-01-01}
"""
REQ: dict[str, Any] = {
    "package": "requests", "version": "2.19.0", "ecosystem": "pypi", "severity": Severity.HIGH,
    "title": "requests leaks Authorization on redirect", "fixed_in": "2.20.0",
    "location": "usr/lib/python3/dist-packages/requests-2.19.0.dist-info/METADATA",
}  # fmt: skip


def _trivy() -> GateResult:
    return GateResult("trivy", Status.PASSED, findings=(
        vuln_finding(gate="trivy", id="CVE-2018-18074", cvss=7.5,
                     url="https://avd.aquasec.com/nvd/cve-2018-18074", **REQ),
        vuln_finding(gate="trivy", id="CVE-2023-45853", package="zlib1g",
                     version="1:1.2.13.dfsg-1", ecosystem="debian", severity=Severity.CRITICAL,
                     title="zlib minizip overflow", fixed_in=None, location="debian 12"),
        vuln_finding(gate="trivy", id="CVE-2000-0001", package="tiny", version="1",
                     ecosystem="pypi", severity=Severity.LOW, title="minor", fixed_in="2",
                     location=None),
    ), facts={"trivy.db": "2026-11-20"}, duration_s=3.5)  # fmt: skip


def _pip_audit() -> GateResult:
    aliases = ("CVE-2018-18074", "GHSA-x84v-xcm2-53pg")
    return GateResult("pip-audit", Status.PASSED, findings=(
        vuln_finding(gate="pip-audit", id="PYSEC-2018-28", aliases=aliases, **REQ),
    ), facts={"pip_audit.packages": "3"}, duration_s=1.25)  # fmt: skip


def failed() -> list[GateResult]:
    """Every kind of gate and evidence; judged under report-v1.policy.yml it FAILS."""
    build = GateResult("build", Status.PASSED, findings=(
        Finding("build", "build.unpinned-base", Severity.HIGH,
                "base image python:3.11 is not pinned", "python:3.11", location="Dockerfile:1"),
    ), facts={"image.digest": "sha256:" + "a" * 64, "source_date_epoch": "1700000000"},
        artifacts={"oci_layout": Path("/work/out/oci")}, duration_s=12.3456)  # fmt: skip
    models = GateResult(
        "models",
        Status.ERRORED,
        error="models.lock: cannot read models.lock: No such file",
        duration_s=0.01,
    )
    sbom = GateResult("sbom", Status.SKIPPED, error="switched off by the policy")
    return [build, models, sbom, _trivy(), _pip_audit()]


def passed() -> list[GateResult]:
    """Every gate the default policy switches on; judged under PASSED_POLICY it PASSES, the
    advisory both scanners report accepted by an ignore entry."""
    trivy = _trivy()
    trivy = GateResult("trivy", Status.PASSED, findings=trivy.findings[::2], facts=trivy.facts)
    return [
        GateResult("models", Status.PASSED, facts={"checked": "0"}),
        GateResult("build", Status.PASSED, facts={"image.digest": "sha256:" + "a" * 64}),
        GateResult("sbom", Status.PASSED),
        trivy,
        _pip_audit(),
    ]


def _write(results: list[GateResult], policy_text: str, path: Path) -> None:
    policy = load_policy_text(policy_text, "modelseal.yml")
    verdict = judge(results, policy.policy, today=TODAY)
    report = Report(verdict, policy.source, policy.sha256, 1700000000.0, 1700000100.0, "0.1.0")
    data = report_to_json(report)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def main(out: Path) -> None:
    """Write both fixtures into ``out``."""
    assert SCHEMA_VERSION == 1, "run against the source tree from before schema_version 2"
    _write(failed(), (out / "report-v1.policy.yml").read_text(), out / "report-v1.json")
    _write(passed(), PASSED_POLICY, out / "report-v1-passed.json")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
