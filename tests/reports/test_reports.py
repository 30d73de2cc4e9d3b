"""The reports: report.json (evidence kept apart from decisions, re-judgeable, version 1 still
read), SARIF and OpenVEX."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from tests.support.reports import REPORT_SCHEMA, read_report

from modelseal import __version__
from modelseal._cli import main
from modelseal.app import rejudger
from modelseal.errors import ConfigError
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.judge import Outcome, judge
from modelseal.policy import load_policy_text
from modelseal.reports import Report, write_reports
from modelseal.reports.json_report import (
    SCHEMA_ID,
    SCHEMA_VERSION,
    gate_summary,
    read_results,
    report_to_json,
    results_from_data,
)
from modelseal.vuln.findings import vuln_finding

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "sarif-schema-2.1.0.json").read_text())
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
    # the epoch is a qualifier, as Trivy writes the package's purl (its --vex matches by it)
    assert product["subcomponents"] == [{"@id": "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?epoch=1"}]


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
    report = read_report(paths["json"])
    outcomes = [o for g in report["gates"] for o in g["decision"]["outcomes"]]
    assert [o["decision"] for o in outcomes] == ["fail", "ignored"]
    assert all("ignore" not in o for o in outcomes)


# --- report.json: evidence apart from decisions ------------------------------------------------

DATA = Path(__file__).parents[1] / "data"
EXPIRED = """version: 1
vulnerabilities:
  ignore:
    - {id: CVE-1999-0001, reason: long gone, expires: 2020-01-01}
"""
RENEWED = EXPIRED.replace("2020-01-01", "2099-01-01")


def _low(gate: str) -> Finding:
    return vuln_finding(gate=gate, id="CVE-2000-0001", package="tiny", version="1", ecosystem="pypi",
                        severity=Severity.LOW, title="minor", fixed_in="2", location=None)  # fmt: skip


def _every_gate_passed() -> list[GateResult]:
    """Evidence from every gate the default policy switches on (verify's re-judging wants them
    all), one low vulnerability the default policy lets through."""
    return [
        GateResult("models", Status.PASSED, facts={"checked": "0"}),
        GateResult("build", Status.PASSED, facts={"image.digest": "sha256:" + "b" * 64}),
        GateResult("image", Status.PASSED),
        GateResult("sbom", Status.PASSED),
        GateResult("trivy", Status.PASSED, findings=(_low("trivy"),), duration_s=1.5),
        GateResult("pip-audit", Status.PASSED),
    ]


def test_rejudging_a_report_recomputes_what_the_judge_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Regression: the judge's own finding for an expired ignore entry was stored with the
    # evidence, so a policy renewing the entry still FAILED on the report but PASSED fresh.
    evidence = _every_gate_passed()
    expired = load_policy_text(EXPIRED, "expired.yml")
    verdict = judge(evidence, expired.policy)
    assert verdict.status is Status.FAILED
    report = Report(verdict, expired.source, expired.sha256, 0.0, 1.0, __version__)
    path = write_reports(report, tmp_path / "out")["json"]
    data = read_report(path)
    trivy = next(g for g in data["gates"] if g["gate"] == "trivy")
    assert [f["id"] for f in trivy["evidence"]["findings"]] == ["CVE-2000-0001"]
    assert [f["id"] for f in trivy["decision"]["findings"]] == ["vulnerabilities.expired-ignore"]
    assert [(o["from"], o["index"], o["decision"]) for o in trivy["decision"]["outcomes"]] == [
        ("evidence", 0, "warn"),
        ("decision", 0, "fail"),
    ]

    renewed_file = tmp_path / "renewed.yml"
    renewed_file.write_text(RENEWED)
    renewed = load_policy_text(RENEWED, str(renewed_file))
    fresh = judge(evidence, renewed.policy)
    assert fresh.status is Status.PASSED
    stored, _ = read_results(path)
    assert stored == evidence
    assert judge(stored, renewed.policy) == fresh
    # The same through both commands that re-judge a report: `judge` and `verify --policy`.
    assert main(["judge", str(path), "--policy", str(renewed_file)]) == 0
    assert "PASSED" in capsys.readouterr().out
    assert rejudger(renewed)(data) == (True, f"PASSED under {renewed_file}")
    assert rejudger(expired)(data) == (False, "FAILED under expired.yml")


def _all_kinds_of_evidence() -> list[GateResult]:
    """Every gate, every kind of evidence: findings with and without optional fields, facts,
    artifacts, an errored and a skipped gate, a duplicate advisory across scanners."""
    req = {"package": "requests", "version": "2.19.0", "ecosystem": "pypi",
           "severity": Severity.HIGH, "title": "leak", "fixed_in": "2.20.0", "location": None}  # fmt: skip
    return [
        GateResult("models", Status.PASSED, findings=(
            Finding("models", "models.unsafe-global", Severity.CRITICAL, "os.system in pickle",
                    "model/evil.pkl", location="model/evil.pkl (data.pkl)",
                    evidence={"global": "os.system", "opcode": "STACK_GLOBAL"}),
            Finding("models", "models.format", Severity.UNKNOWN, "numpy file", "model/a.npy",
                    evidence={"format": "numpy", "pickle": "no"}),
        ), facts={"lock.sha256": "c" * 64}, artifacts={"models_json": Path("/out/models.json")},
            duration_s=0.25),
        GateResult("build", Status.PASSED, findings=(
            Finding("build", "build.unpinned-base", Severity.HIGH, "python:3.11 is not pinned",
                    "python:3.11", location="Dockerfile:1"),
        ), facts={"image.digest": "sha256:" + "a" * 64}, artifacts={"oci_layout": Path("/out/oci")},
            duration_s=12.345),
        GateResult("models-image", Status.ERRORED, error="cannot read layer 3:\n  truncated"),
        GateResult("sbom", Status.SKIPPED, error="switched off by the policy"),
        GateResult("trivy", Status.PASSED, findings=(
            vuln_finding(gate="trivy", id="CVE-2018-18074", cvss=7.5, **req),
            _low("trivy"),
        )),
        GateResult("pip-audit", Status.PASSED, findings=(
            vuln_finding(gate="pip-audit", id="PYSEC-2018-28", aliases=("CVE-2018-18074",), **req),
        )),
    ]  # fmt: skip


def test_report_round_trip_keeps_every_gates_evidence_and_judgement(tmp_path: Path) -> None:
    evidence = _all_kinds_of_evidence()
    policy = load_policy_text(EXPIRED, "modelseal.yml")
    today = date(2026, 11, 23)
    verdict = judge(evidence, policy.policy, today=today)
    path = write_reports(
        Report(verdict, policy.source, policy.sha256, 0.0, 1.0, __version__), tmp_path
    )["json"]
    data = read_report(path)
    stored, _ = read_results(path)
    assert stored == evidence  # every gate's findings, facts, artifacts, status, error, time
    assert judge(stored, policy.policy, today=today) == verdict
    # What the judge decided is in the decision, not in the evidence.
    trivy = next(g for g in data["gates"] if g["gate"] == "trivy")
    assert all("sources" not in f["evidence"] for f in trivy["evidence"]["findings"])
    assert trivy["decision"]["outcomes"][0]["sources"] == ["trivy", "pip-audit"]
    assert verdict.gates[4].decisions[0].sources == ("trivy", "pip-audit")
    assert [f.id for g in verdict.gates for f in g.made] == ["vulnerabilities.expired-ignore"]


def test_a_version_1_report_is_read_and_judged_the_same(tmp_path: Path) -> None:
    # tests/data/report-v1.json was written by modelseal before schema_version 2 (the commit
    # that added this test says how); it validates against the version 1 schema.
    import jsonschema

    v1 = json.loads((DATA / "report-v1.json").read_text())
    schema = json.loads((DATA / "report-v1.schema.json").read_text())
    jsonschema.validate(v1, schema, cls=jsonschema.Draft202012Validator)
    results = results_from_data(v1, "report-v1.json")
    # What the version 1 judge wrote into the evidence is dropped: its expired-ignore finding
    # and the scanners it added to a duplicated advisory.
    ids = [f.id for r in results for f in r.findings]
    assert "vulnerabilities.expired-ignore" not in ids and "CVE-2018-18074" in ids
    assert all("sources" not in f.evidence for r in results for f in r.findings)
    assert [(r.gate, r.status) for r in results] == [(g["gate"], Status(g["collected"])) for g in v1["gates"]]  # fmt: skip
    assert results[0].facts["image.digest"] == "sha256:" + "a" * 64
    assert results[0].artifacts["oci_layout"] == Path("/work/out/oci")
    assert "cannot read models.lock" in (results[1].error or "")

    policy = load_policy_text((DATA / "report-v1.policy.yml").read_text(), "modelseal.yml")
    assert policy.sha256 == v1["policy"]["sha256"]
    verdict = judge(results, policy.policy, today=date(2026, 11, 23))
    assert verdict.status.value == v1["verdict"] and int(verdict.exit_code) == v1["exit_code"]
    assert [g.status.value for g in verdict.gates] == [g["status"] for g in v1["gates"]]
    judged = [
        (g.result.gate, d.finding.id, d.finding.subject, d.outcome.value, ",".join(d.sources))
        for g in verdict.gates
        for d in g.decisions
    ]
    recorded = [
        (g["gate"], f["id"], f["subject"], f["decision"], f["evidence"].get("sources", ""))
        for g in v1["gates"]
        for f in g["findings"]
    ]
    assert judged == recorded
    # Written again, it is a version 2 report with the same evidence.
    path = write_reports(
        Report(verdict, policy.source, policy.sha256, 0.0, 1.0, __version__), tmp_path
    )["json"]
    assert read_report(path)["schema_version"] == 2
    assert read_results(path)[0] == results


def test_decided_findings_reads_both_versions() -> None:
    v1 = json.loads((DATA / "report-v1.json").read_text())
    policy = load_policy_text((DATA / "report-v1.policy.yml").read_text(), "modelseal.yml")
    verdict = judge(results_from_data(v1, "v1"), policy.policy, today=date(2026, 11, 23))
    v2 = report_to_json(Report(verdict, policy.source, policy.sha256, 0.0, 1.0, __version__))

    def rows(report: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [
            (g["gate"], g["status"], f["id"], f["decision"], f["sources"], f["made"])
            for g in map(gate_summary, report["gates"])
            for f in g["findings"]
        ]

    assert rows(v1) == rows(v2)
    assert ("trivy", "FAILED", "vulnerabilities.expired-ignore", "fail", [], True) in rows(v2)
    assert [gate_summary(g)["facts"] for g in v1["gates"]] == [
        gate_summary(g)["facts"] for g in v2["gates"]
    ]


def test_report_schema_follows_the_code() -> None:
    # Drift: the committed schema names the version and the fields the writer writes.
    import jsonschema

    schema = json.loads(REPORT_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == SCHEMA_ID and schema["properties"]["$schema"]["const"] == SCHEMA_ID
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    defs = schema["$defs"]
    finding = _all_kinds_of_evidence()[0].findings[0].to_json()
    assert set(defs["finding"]["required"]) == set(defs["finding"]["properties"]) == set(finding)
    assert set(defs["finding"]["properties"]["severity"]["enum"]) == {s.name for s in Severity}
    assert set(defs["outcome"]["properties"]["decision"]["enum"]) == {o.value for o in Outcome}
    assert set(defs["decision"]["properties"]["status"]["enum"]) == {s.value for s in Status}
    assert "FAILED" not in defs["evidence"]["properties"]["status"]["enum"]


def test_reports_that_are_not_reports_are_refused(tmp_path: Path) -> None:
    good = json.loads((DATA / "report-v1.json").read_text())
    bad: list[Any] = [
        [],
        {"schema_version": 3, "gates": []},
        {"schema_version": True, "gates": []},
        {"schema_version": 2, "gates": {}},
        {"schema_version": 2, "gates": [{"gate": "x", "decision": {}}]},
        {**good, "gates": [{**good["gates"][0], "collected": "FAILED"}]},
    ]
    for data in bad:
        with pytest.raises(ConfigError, match=r"report|collecting"):
            results_from_data(data, "r.json")


@pytest.mark.parametrize(
    ("ecosystem", "package", "version", "purl"),
    [
        ("debian", "zlib1g", "1:1.2.13.dfsg-1", "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?epoch=1"),
        ("ubuntu", "libssl3", "3.0.2-0ubuntu1.10", "pkg:deb/ubuntu/libssl3@3.0.2-0ubuntu1.10"),
        ("redhat", "openssl-libs", "1:3.0.7-24.el9", "pkg:rpm/redhat/openssl-libs@3.0.7-24.el9?epoch=1"),
        ("rocky", "glibc", "2.34-60.el9", "pkg:rpm/rocky/glibc@2.34-60.el9"),
        ("suse linux enterprise server", "libz1", "1.2.13-1", "pkg:rpm/sles/libz1@1.2.13-1"),
        ("alpine", "libcrypto3", "3.1.4-r5", "pkg:apk/alpine/libcrypto3@3.1.4-r5"),
        ("wolfi", "glibc", "2.38-r5", "pkg:apk/wolfi/glibc@2.38-r5"),
        ("pypi", "Typing_Extensions", "4.8.0+local", "pkg:pypi/typing-extensions@4.8.0%2Blocal"),
        ("npm", "@Babel/Core", "7.23.0", "pkg:npm/%40babel/core@7.23.0"),
        ("npm", "lodash", "4.17.20", "pkg:npm/lodash@4.17.20"),
    ],
)  # fmt: skip
def test_openvex_package_purls_are_trivy_s(
    ecosystem: str, package: str, version: str, purl: str
) -> None:
    """Trivy's --vex matches a statement to a package by its purl: the OS family of the image
    decides deb/rpm/apk and the namespace (an Ubuntu package is not pkg:ubuntu/…)."""
    from packageurl import PackageURL

    from modelseal.reports.vex import _package_purl

    got = _package_purl({"ecosystem": ecosystem, "package": package, "version": version})
    assert got == purl
    parsed = PackageURL.from_string(got)  # a purl parser reads it back to the same parts
    assert parsed.name == purl.split("/")[-1].split("@")[0].replace("%40", "@")


def test_a_not_affected_statement_says_until_when_it_holds(tmp_path: Path) -> None:
    """OpenVEX has no expiry field; a signed not_affected statement outlives the ignore entry
    in the registry, so its notes name the expiry and tell consumers to re-check."""
    policy = load_policy_text(
        "version: 1\nvulnerabilities:\n  ignore:\n"
        "    - {id: CVE-2018-18074, reason: not reachable, expires: 2027-03-01,\n"
        "       justification: vulnerable_code_not_present}\n",
        "p.yml",
    )
    finding = vuln_finding(gate="trivy", id="CVE-2018-18074", package="requests", version="2.19.0",
                           ecosystem="pypi", severity=Severity.HIGH, title="leak", fixed_in="2.20.0",
                           location=None)  # fmt: skip
    verdict = judge(
        [GateResult("trivy", Status.PASSED, findings=(finding,))], policy.policy,
        today=date(2026, 11, 23),
    )  # fmt: skip
    paths = write_reports(
        Report(verdict, policy.source, policy.sha256, 0.0, 1.0, __version__), tmp_path
    )
    (st,) = json.loads(paths["openvex"].read_text())["statements"]
    assert st["status"] == "not_affected"
    assert "Valid until 2027-03-01 only" in st["status_notes"]
    assert "consumers must re-check" in st["status_notes"]
