"""SARIF and OpenVEX reports."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import jsonschema

from modelseal import __version__
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.judge import Outcome, judge
from modelseal.policy import load_policy_text
from modelseal.reports import Report, write_reports
from modelseal.vuln.findings import vuln_finding

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
POLICY = """version: 1
vulnerabilities:
  ignore:
    - {id: CVE-2023-45853, reason: "minizip is not shipped", expires: 2027-06-30}
"""


def _report(tmp_path: Path) -> dict[str, Path]:
    build = GateResult(
        "build",
        Status.PASSED,
        findings=(
            Finding(
                "build",
                "build.unpinned-base",
                Severity.HIGH,
                "base image python:3.11 is not pinned",
                "python:3.11",
                location="app/Dockerfile:4",
            ),
        ),
        facts={"image.digest": "sha256:" + "a" * 64},
    )
    trivy = GateResult(
        "trivy",
        Status.PASSED,
        findings=(
            vuln_finding(gate="trivy", id="CVE-2018-18074", package="requests", version="2.19.0", ecosystem="pypi",
                         severity=Severity.HIGH, title="requests leaks Authorization", fixed_in="2.20.0",
                         location="usr/lib/python3/dist-packages/requests-2.19.0.dist-info/METADATA", cvss=7.5,
                         url="https://avd.aquasec.com/nvd/cve-2018-18074"),
            vuln_finding(gate="trivy", id="CVE-2023-45853", package="zlib1g", version="1:1.2.13.dfsg-1", ecosystem="debian",
                         severity=Severity.CRITICAL, title="zlib minizip overflow", fixed_in=None, location="debian 12"),
            vuln_finding(gate="trivy", id="CVE-2000-0001", package="tiny", version="1", ecosystem="pypi",
                         severity=Severity.LOW, title="minor", fixed_in="2", location=None),
        ),
    )  # fmt: skip
    policy = load_policy_text(POLICY, "modelseal.yml")
    verdict = judge([build, trivy], policy.policy, today=date(2026, 11, 23))
    report = Report(verdict, policy.source, policy.sha256, 1700000000.0, 1700000100.0, __version__)
    return write_reports(report, tmp_path)


def test_sarif_is_valid_and_ranks_failures_first(tmp_path: Path) -> None:
    sarif = json.loads(_report(tmp_path)["sarif"].read_text())
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    (run,) = sarif["runs"]
    levels = [(r["ruleId"], r["level"]) for r in run["results"]]
    assert {rule for rule, _ in levels[:2]} == {"CVE-2018-18074", "build/build.unpinned-base"}
    assert {level for _, level in levels[:2]} == {"error"}
    by_rule = {r["ruleId"]: r for r in run["results"]}
    assert by_rule["CVE-2000-0001"]["level"] == "warning"
    ignored = by_rule["CVE-2023-45853"]
    assert ignored["level"] == "note"
    assert ignored["suppressions"][0]["justification"].startswith("ignored until 2027-06-30")
    loc = by_rule["build/build.unpinned-base"]["locations"][0]["physicalLocation"]
    assert loc == {"artifactLocation": {"uri": "app/Dockerfile"}, "region": {"startLine": 4}}
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    assert rules["CVE-2018-18074"]["properties"]["security-severity"] == "7.5"
    assert rules["CVE-2018-18074"]["helpUri"].startswith("https://")
    assert all(r["locations"] for r in run["results"])


def test_openvex_records_each_accepted_vulnerability(tmp_path: Path) -> None:
    paths = _report(tmp_path)
    vex = json.loads(paths["openvex"].read_text())
    assert vex["@context"] == "https://openvex.dev/ns/v0.2.0"
    (st,) = vex["statements"]
    assert st["vulnerability"]["name"] == "CVE-2023-45853"
    assert st["status"] == "affected"
    assert (
        "minizip is not shipped" in st["action_statement"]
        and "2027-06-30" in st["action_statement"]
    )
    product = st["products"][0]
    assert product["@id"] == "pkg:oci/image@sha256%3A" + "a" * 64
    assert product["subcomponents"] == [{"@id": "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1"}]


def test_no_accepted_vulnerabilities_no_openvex(tmp_path: Path) -> None:
    policy = load_policy_text("version: 1\n", "p.yml")
    verdict = judge([GateResult("build", Status.PASSED)], policy.policy)
    paths = write_reports(
        Report(verdict, policy.source, policy.sha256, 0.0, 1.0, __version__), tmp_path
    )
    assert "openvex" not in paths and not (tmp_path / "modelseal.openvex.json").exists()
    jsonschema.Draft4Validator(SCHEMA).validate(json.loads(paths["sarif"].read_text()))


def test_openvex_takes_only_live_ignore_entries(tmp_path: Path) -> None:
    # An expired entry fails its finding; a duplicate is ignored without an entry: neither is
    # an accepted risk, so neither is in the OpenVEX document.
    def req(gate: str, id_: str, aliases: tuple[str, ...] = ()) -> Finding:
        return vuln_finding(gate=gate, id=id_, package="requests", version="2.19.0", ecosystem="pypi",
                            severity=Severity.HIGH, title="leak", fixed_in="2.20.0", location=None,
                            aliases=aliases)  # fmt: skip

    trivy = GateResult("trivy", Status.PASSED, findings=(req("trivy", "CVE-2018-18074"),))
    pip_audit = GateResult(
        "pip-audit",
        Status.PASSED,
        findings=(req("pip-audit", "PYSEC-2018-28", ("CVE-2018-18074",)),),
    )
    policy = load_policy_text(
        "version: 1\nvulnerabilities:\n  ignore:\n"
        "    - {id: CVE-2018-18074, reason: old, expires: 2026-01-01}\n",
        "p.yml",
    )
    verdict = judge([trivy, pip_audit], policy.policy, today=date(2026, 11, 23))
    (expired,) = verdict.gates[0].decisions
    assert expired.outcome is Outcome.FAIL and expired.ignore is not None
    (dup,) = verdict.gates[1].decisions
    assert dup.outcome is Outcome.IGNORED and dup.ignore is None
    paths = write_reports(
        Report(verdict, policy.source, policy.sha256, 0.0, 1.0, __version__), tmp_path
    )
    assert "openvex" not in paths
    report = json.loads(paths["json"].read_text())
    assert all("ignore" not in f for g in report["gates"] for f in g["findings"])
