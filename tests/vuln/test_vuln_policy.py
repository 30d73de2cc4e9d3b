"""One vulnerability policy for both scanners: thresholds, ignores that expire, VEX, dedup."""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path

import pytest
from tests.support.vuln import judge_policy

from modelseal.errors import ConfigError, ExitCode
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.judge import Outcome
from modelseal.vuln.findings import vuln_finding
from modelseal.vuln.match import package_dir
from modelseal.vuln.policy import (
    VULN_GATES,
    find_duplicates,
    ids_of,
    is_vuln,
    norm_package,
    sources_by_finding,
)

TODAY = date(2026, 11, 23)


def requests_vuln(
    gate: str, id_: str = "CVE-2018-18074", aliases: tuple[str, ...] = (), **kw: object
):
    args: dict[str, object] = {
        "gate": gate,
        "id": id_,
        "package": "requests",
        "version": "2.19.0",
        "ecosystem": "pypi",
        "severity": Severity.MEDIUM,
        "title": "requests: Authorization header leaked on redirect",
        "fixed_in": "2.20.0",
        "location": "usr/lib/python3/dist-packages/requests-2.19.0.dist-info",
        "aliases": aliases,
        "cvss": 6.1,
    }
    args.update(kw)
    return vuln_finding(**args)  # type: ignore[arg-type]


def _decisions(verdict) -> list[tuple[str, str, Outcome]]:
    return [(g.result.gate, d.finding.id, d.outcome) for g in verdict.gates for d in g.decisions]


def test_fail_on_threshold() -> None:
    r = GateResult("trivy", Status.PASSED, findings=(requests_vuln("trivy"),))
    assert judge_policy("", r).status is Status.PASSED  # MEDIUM < default fail_on high
    v = judge_policy("vulnerabilities:\n  fail_on: medium\n", r)
    assert v.status is Status.FAILED and v.exit_code is ExitCode.BREACHED
    assert "MEDIUM ≥ vulnerabilities.fail_on MEDIUM" in v.gates[0].decisions[0].reason


def test_max_cvss_fails_below_the_severity_threshold() -> None:
    r = GateResult("trivy", Status.PASSED, findings=(requests_vuln("trivy"),))
    v = judge_policy("vulnerabilities:\n  max_cvss: 6.0\n", r)
    assert v.status is Status.FAILED
    assert "CVSS 6.1 > vulnerabilities.max_cvss 6.0" in v.gates[0].decisions[0].reason
    assert judge_policy("vulnerabilities:\n  max_cvss: 6.1\n", r).status is Status.PASSED


def test_fixable_only() -> None:
    unfixed = requests_vuln("trivy", severity=Severity.CRITICAL, fixed_in=None)
    r = GateResult("trivy", Status.PASSED, findings=(unfixed,))
    assert judge_policy("", r).status is Status.FAILED
    v = judge_policy("vulnerabilities:\n  fixable_only: true\n", r)
    assert v.status is Status.PASSED and v.gates[0].decisions[0].outcome is Outcome.WARN


def test_unknown_severity_is_judged_by_policy() -> None:
    r = GateResult(
        "pip-audit",
        Status.PASSED,
        findings=(requests_vuln("pip-audit", severity=Severity.UNKNOWN),),
    )
    v = judge_policy("", r)
    assert v.status is Status.FAILED and "severity unknown" in v.gates[0].decisions[0].reason
    assert judge_policy("vulnerabilities:\n  unknown_severity: low\n", r).status is Status.PASSED


def test_ignore_by_alias_until_it_expires() -> None:
    f = requests_vuln(
        "pip-audit",
        "PYSEC-2018-28",
        aliases=("CVE-2018-18074", "GHSA-x84v-xcm2-53pg"),
        severity=Severity.HIGH,
    )
    r = GateResult("pip-audit", Status.PASSED, findings=(f,))
    live = "vulnerabilities:\n  ignore:\n    - {id: cve-2018-18074, package: Requests, reason: not reachable, expires: 2027-01-31}\n"
    v = judge_policy(live, r)
    assert v.status is Status.PASSED
    d = v.gates[0].decisions[0]
    assert d.outcome is Outcome.IGNORED and d.reason == "ignored until 2027-01-31: not reachable"
    expired = live.replace("2027-01-31", "2026-11-01")
    v = judge_policy(expired, r)
    assert v.status is Status.FAILED
    assert "expired on 2026-11-01" in v.gates[0].decisions[0].reason
    other_pkg = live.replace("package: Requests", "package: urllib3")
    assert judge_policy(other_pkg, r).status is Status.FAILED


def test_an_expired_entry_fails_even_when_nothing_matches() -> None:
    r = GateResult("trivy", Status.PASSED, findings=())
    v = judge_policy(
        "vulnerabilities:\n  ignore:\n    - {id: CVE-1999-0001, reason: old, expires: 2020-01-01}\n",
        r,
    )
    assert v.status is Status.FAILED
    (d,) = v.gates[0].decisions
    assert (
        d.finding.id == "vulnerabilities.expired-ignore"
        and "expired on 2020-01-01" in d.finding.title
    )


def test_same_advisory_from_both_scanners_is_one_finding_with_two_sources() -> None:
    t = GateResult(
        "trivy", Status.PASSED, findings=(requests_vuln("trivy", severity=Severity.HIGH),)
    )
    p = GateResult(
        "pip-audit",
        Status.PASSED,
        findings=(
            requests_vuln(
                "pip-audit", "PYSEC-2018-28", aliases=("CVE-2018-18074",), severity=Severity.HIGH
            ),
        ),
    )
    v = judge_policy("", p, t)
    failing = [d for g in v.gates for d in g.failing]
    assert len(failing) == 1
    assert (
        failing[0].finding.gate == "trivy"
        and failing[0].sources == ("trivy", "pip-audit")
        and "sources" not in failing[0].finding.evidence
    )
    dup = next(d for d in v.gates[0].decisions)
    assert dup.outcome is Outcome.IGNORED and "reported by trivy" in dup.reason
    # A different version of the package is not the same finding.
    p2 = GateResult(
        "pip-audit",
        Status.PASSED,
        findings=(requests_vuln("pip-audit", version="2.18.0", severity=Severity.HIGH),),
    )
    assert len([d for g in judge_policy("", p2, t).gates for d in g.failing]) == 2


def _vex(tmp_path: Path, status: str, product: str) -> None:
    doc = {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.invalid/vex/1",
        "author": "security@example.invalid",
        "timestamp": "2026-11-01T00:00:00Z",
        "version": 1,
        "statements": [
            {
                "vulnerability": {"name": "CVE-2018-18074"},
                "products": [{"@id": product}],
                "status": status,
                "justification": "vulnerable_code_not_in_execute_path",
            }
        ],
    }
    (tmp_path / "app.openvex.json").write_text(json.dumps(doc))


def test_vex_not_affected_suppresses(tmp_path: Path) -> None:
    r = GateResult(
        "trivy", Status.PASSED, findings=(requests_vuln("trivy", severity=Severity.HIGH),)
    )
    policy = "vulnerabilities:\n  vex: [app.openvex.json]\n"
    _vex(tmp_path, "not_affected", "pkg:pypi/requests@2.19.0")
    v = judge_policy(policy, r, base=tmp_path)
    assert v.status is Status.PASSED
    assert v.gates[0].decisions[0].reason.startswith("VEX app.openvex.json: not_affected")
    _vex(tmp_path, "affected", "pkg:pypi/requests@2.19.0")
    assert judge_policy(policy, r, base=tmp_path).status is Status.FAILED
    _vex(tmp_path, "not_affected", "pkg:pypi/urllib3@1.0")
    assert judge_policy(policy, r, base=tmp_path).status is Status.FAILED


def test_bad_vex_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "v.json").write_text('{"statements": []}')
    r = GateResult("trivy", Status.PASSED, findings=())
    with pytest.raises(ConfigError, match="not an OpenVEX document"):
        judge_policy("vulnerabilities:\n  vex: [v.json]\n", r, base=tmp_path)


def _reference_duplicates(by_gate: dict[str, list[Finding]]) -> dict[int, Finding]:
    """The plain pairwise definition of :func:`find_duplicates`."""
    kept: list[Finding] = []
    dups: dict[int, Finding] = {}
    order = [g for g in VULN_GATES if g in by_gate] + [g for g in by_gate if g not in VULN_GATES]
    for gate in order:
        for f in by_gate[gate]:
            if not is_vuln(f):
                continue
            key = (norm_package(f.evidence["package"]), f.evidence["version"], package_dir(f))
            for k in kept:
                same = (
                    norm_package(k.evidence["package"]),
                    k.evidence["version"],
                    package_dir(k),
                ) == key
                if same and k.gate != f.gate and ids_of(k) & ids_of(f):
                    dups[id(f)] = k
                    break
            else:
                kept.append(f)
    return dups


def test_duplicates_and_sources_in_one_pass() -> None:
    def v(gate: str, id_: str, *aliases: str, package: str = "requests") -> Finding:
        return requests_vuln(gate, id_, aliases=aliases, package=package)

    a, b, f = v("trivy", "CVE-1"), v("trivy", "CVE-2"), v("trivy", "CVE-1", package="Requests")
    c, g = v("pip-audit", "PYSEC-1", "CVE-2", "CVE-1"), v("pip-audit", "PYSEC-2", "CVE-3")
    d, e = v("other", "cve-2"), v("other", "GHSA-1", "CVE-1")
    note = Finding("other", "other.note", Severity.LOW, "not a vulnerability", "x")
    by_gate = {"other": [d, note, e], "pip-audit": [c, g], "trivy": [a, b, f]}
    dups = find_duplicates(by_gate)
    # Each repeats the earliest kept finding (trivy's first) with an id in common.
    assert {k: x.id for k, x in dups.items()} == {id(c): "CVE-1", id(d): "CVE-2", id(e): "CVE-1"}
    assert dups[id(c)] is a and dups[id(e)] is a and dups[id(d)] is b
    everything = [x for fs in by_gate.values() for x in fs]
    assert sources_by_finding(everything, dups) == {
        id(a): ("trivy", "other", "pip-audit"),
        id(b): ("trivy", "other"),
        id(f): ("trivy",),
        id(g): ("pip-audit",),
    }


def test_find_duplicates_matches_the_pairwise_definition() -> None:
    rng = random.Random(7)
    gates = ["pip-audit", "extra", "trivy"]
    by_gate: dict[str, list[Finding]] = {g: [] for g in gates}
    for _ in range(400):
        gate = rng.choice(gates)
        ids = [f"CVE-{rng.randrange(12)}" for _ in range(rng.randrange(1, 4))]
        by_gate[gate].append(
            requests_vuln(
                gate,
                ids[0],
                aliases=tuple(ids[1:]),
                package=rng.choice(["requests", "Requests", "urllib3", "zlib1g"]),
                version=rng.choice(["1", "2"]),
                location=rng.choice(
                    [
                        "/usr/lib/python3/dist-packages/requests-1.dist-info",
                        "usr/lib/python3/dist-packages/requests-1.dist-info/METADATA",
                        "opt/conda/lib/python3.12/site-packages/requests-1.dist-info/METADATA",
                    ]
                ),
            )
        )
    got, want = find_duplicates(by_gate), _reference_duplicates(by_gate)
    assert got.keys() == want.keys() and all(got[k] is want[k] for k in want)
