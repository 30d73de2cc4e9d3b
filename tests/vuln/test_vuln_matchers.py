"""Precise ignore entries (purl, versions, paths, fix_state, scanner), thresholds per scanner
and package type, stale ignores and VEX products matched by purl — on the findings the real
Trivy (a rootfs scan against the test DB) and the real pip-audit (against the local OSV server)
report, and dpkg's version ordering checked against dpkg itself."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from examples.offline.osv_server import start_osv_server
from examples.offline.trivydb import write_trivy_db
from tests.support.rootfs import DIST_INFO, debian_rootfs
from tests.support.tools import require
from tests.support.vuln import judge_policy

from modelseal._cli import main
from modelseal.errors import ExitCode
from modelseal.findings import GateResult, Status
from modelseal.judge import Outcome, Verdict, judge
from modelseal.policy import PolicyFileError, load_policy_text
from modelseal.reports.model import Report
from modelseal.reports.sarif import render_sarif
from modelseal.reports.vex import render_openvex
from modelseal.vuln.match import compile_glob, fix_state, package_type
from modelseal.vuln.osv import AdvisoryLookup, OsvEndpoint
from modelseal.vuln.pip_audit import _findings, run_pip_audit
from modelseal.vuln.trivy import parse_report
from modelseal.vuln.versions import DpkgVersion, VersionRange, dpkg_compare

TODAY = date(2026, 11, 23)
SITE = DIST_INFO.rsplit("/", 1)[0]  # usr/lib/python3/dist-packages, where Trivy finds requests


# --- real findings ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trivy_result(tmp_path_factory: pytest.TempPathFactory) -> GateResult:
    """Trivy's findings on the Debian rootfs: requests 2.19.0 (PyPI, PkgPath, fixed) and zlib1g
    1:1.2.13.dfsg-1 (an OS package, will_not_fix)."""
    from tests.vuln.test_trivy import _rootfs_scan

    tmp = tmp_path_factory.mktemp("trivy")
    write_trivy_db(tmp / "cache", updated_at=datetime.now(UTC))
    data = _rootfs_scan(tmp / "cache", debian_rootfs(tmp / "root"))
    found = parse_report(json.dumps(data), platform="linux/amd64")
    assert sorted(f.subject for f in found) == ["requests@2.19.0", "zlib1g@1:1.2.13.dfsg-1"]
    return GateResult("trivy", Status.PASSED, findings=tuple(found))


@pytest.fixture(scope="module")
def pip_result(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateResult]:
    """pip-audit's findings on the same site directory: PYSEC-2018-28 (requests, alias
    CVE-2018-18074, fixed in 2.20.0) and PYSEC-2021-108 (urllib3, no severity in OSV)."""
    from modelseal.vuln.site_packages import InstalledPackage

    exe = Path(sys.executable).parent / "pip-audit"
    require(exe.exists(), "pip-audit")
    tmp = tmp_path_factory.mktemp("pip")
    pkgs = {"requests": "2.19.0", "urllib3": "1.26.4"}
    installed = []
    for name, version in pkgs.items():
        d = tmp / "site" / f"{name}-{version}.dist-info"
        d.mkdir(parents=True)
        (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (d / "RECORD").write_text(f"{d.name}/METADATA,,\n{d.name}/RECORD,,\n")
        installed.append(InstalledPackage(name, version, SITE, f"{SITE}/{d.name}"))
    with start_osv_server() as (url, _stop):
        endpoint = OsvEndpoint.from_policy(f"{url}/v1/query")
        lookup = AdvisoryLookup(endpoint)
        deps = run_pip_audit(str(exe), tmp / "site", endpoint, tmp / "cache", installed, lookup)
        found = tuple(_findings(deps, installed, SITE, lookup))
    assert sorted(f.id for f in found) == ["PYSEC-2018-28", "PYSEC-2021-108"]
    yield GateResult("pip-audit", Status.PASSED, findings=found)


def _outcomes(v: Verdict) -> dict[tuple[str, str], tuple[Outcome, str]]:
    """(gate, finding id) → (outcome, reason), for the findings the scanners reported."""
    return {
        (g.result.gate, d.finding.id): (d.outcome, d.reason)
        for g in v.gates
        for d in g.decisions
        if not d.made
    }


def _made(v: Verdict) -> list[tuple[str, str, Outcome, str]]:
    return [
        (g.result.gate, d.finding.id, d.outcome, d.reason)
        for g in v.gates
        for d in g.decisions
        if d.made
    ]


def _ignore(**fields: object) -> str:
    entry = {"reason": "accepted", "expires": "2027-01-31", **fields}
    return "vulnerabilities:\n  ignore:\n    - " + json.dumps(entry) + "\n"


ZLIB, REQUESTS, PYSEC, URLLIB3 = (
    "CVE-2023-45853",
    "CVE-2018-18074",
    "PYSEC-2018-28",
    "PYSEC-2021-108",
)


def test_the_real_findings_as_the_matchers_see_them(
    trivy_result: GateResult, pip_result: GateResult
) -> None:
    t = {f.id: f for f in trivy_result.findings}
    p = {f.id: f for f in pip_result.findings}
    assert (package_type(t[ZLIB]), fix_state(t[ZLIB])) == ("os", "wont-fix")
    assert (package_type(t[REQUESTS]), fix_state(t[REQUESTS])) == ("language", "fixed")
    assert (package_type(p[PYSEC]), fix_state(p[PYSEC])) == ("language", "fixed")
    assert t[ZLIB].evidence["purl"].startswith("pkg:deb/debian/zlib1g@1.2.13.dfsg-1?")
    assert t[REQUESTS].location == f"{DIST_INFO}/METADATA"
    assert p[PYSEC].location == f"/{DIST_INFO}"


# --- each matcher, positive and negative ---------------------------------------------------------


def _accepted(v: Verdict, gate: str, fid: str) -> bool:
    return _outcomes(v)[(gate, fid)][0] is Outcome.IGNORED


@pytest.mark.parametrize(
    ("purl", "accepted"),
    [
        ("pkg:deb/debian/zlib1g", True),
        ("pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1", True),  # epoch in the version
        ("pkg:deb/debian/zlib1g@1.2.13.dfsg-1?epoch=1", True),  # or as a qualifier
        ("pkg:deb/debian/zlib1g?arch=amd64", True),
        ("pkg:deb/debian/zlib1g@1.2.13.dfsg-1", False),  # epoch 0 is another version
        ("pkg:deb/debian/zlib1g?arch=arm64", False),
        ("pkg:deb/ubuntu/zlib1g", False),
        ("pkg:rpm/debian/zlib1g", False),
        ("pkg:deb/debian/zlib", False),
    ],
)
def test_purl_on_trivy_os_package(trivy_result: GateResult, purl: str, accepted: bool) -> None:
    v = judge_policy(_ignore(id=ZLIB, purl=purl), trivy_result)
    assert _accepted(v, "trivy", ZLIB) is accepted


@pytest.mark.parametrize(
    ("purl", "accepted"),
    [
        ("pkg:pypi/requests", True),
        ("pkg:pypi/Requests@2.19", True),  # PEP 503 name, PEP 440 version equality
        ("pkg:pypi/requests@2.19.0", True),
        ("pkg:pypi/requests@2.19.1", False),
        ("pkg:pypi/urllib3", False),
        ("pkg:deb/debian/requests@2.19.0", False),  # another ecosystem's requests
    ],
)
def test_purl_on_language_packages_of_both_scanners(
    trivy_result: GateResult, pip_result: GateResult, purl: str, accepted: bool
) -> None:
    v = judge_policy(_ignore(id=REQUESTS, purl=purl), trivy_result)
    assert _accepted(v, "trivy", REQUESTS) is accepted
    v = judge_policy(_ignore(id=REQUESTS, purl=purl), pip_result)
    assert _accepted(v, "pip-audit", PYSEC) is accepted  # by its alias


@pytest.mark.parametrize(
    ("fid", "versions", "accepted"),
    [
        (ZLIB, ">= 1:1.2.13, << 1:1.2.13.dfsg-1+deb12u1", True),
        (ZLIB, "= 1:1.2.13.dfsg-1", True),
        (ZLIB, ">>1:1.2.13~rc1", True),
        (ZLIB, "<< 1:1.2.13.dfsg-1", False),
        (ZLIB, "<= 1.9", False),  # epoch 0 < epoch 1
        (ZLIB, "<3", False),  # PEP 440 only: never a Debian package's range
        (REQUESTS, ">=2.0,<2.20", True),
        (REQUESTS, "==2.19.*", True),
        (REQUESTS, ">=2.20", False),
        (REQUESTS, "<< 3.0", False),  # dpkg relations only: never a PyPI package's range
    ],
)
def test_versions_in_each_ecosystems_syntax(
    trivy_result: GateResult, fid: str, versions: str, accepted: bool
) -> None:
    v = judge_policy(_ignore(id=fid, versions=versions), trivy_result)
    assert _accepted(v, "trivy", fid) is accepted


def test_versions_on_pip_audit(pip_result: GateResult) -> None:
    assert _accepted(
        judge_policy(_ignore(id=URLLIB3, versions="<1.26.5"), pip_result), "pip-audit", URLLIB3
    )
    assert not _accepted(
        judge_policy(_ignore(id=URLLIB3, versions=">=1.26.5"), pip_result), "pip-audit", URLLIB3
    )


@pytest.mark.parametrize(
    ("glob", "trivy", "pip"),
    [
        (f"/{SITE}/requests-*/**", True, True),  # ** matches zero segments: the .dist-info too
        (f"{SITE}/requests-2.19.0.dist-info/METADATA", True, False),  # Trivy's PkgPath
        (f"/{SITE}/requests-2.19.0.dist-info", False, True),  # pip-audit's metadata path
        ("/usr/**/dist-packages/*/METADATA", True, False),
        ("**/requests-2.19.?.dist-info", False, True),
        ("/usr/lib/python3/dist-packages/[!r]*/**", False, False),
        ("/usr/local/**", False, False),
        ("/usr/lib/*/requests-*/**", False, False),  # * stays within one segment
    ],
)
def test_paths(
    trivy_result: GateResult, pip_result: GateResult, glob: str, trivy: bool, pip: bool
) -> None:
    assert (
        _accepted(judge_policy(_ignore(id=REQUESTS, paths=[glob]), trivy_result), "trivy", REQUESTS)
        is trivy
    )
    assert (
        _accepted(judge_policy(_ignore(id=REQUESTS, paths=[glob]), pip_result), "pip-audit", PYSEC)
        is pip
    )


def test_paths_never_match_os_packages(trivy_result: GateResult) -> None:
    """Trivy names no file for an OS package: not even ``**`` matches it."""
    assert not _accepted(judge_policy(_ignore(id=ZLIB, paths=["**"]), trivy_result), "trivy", ZLIB)
    assert _accepted(
        judge_policy(_ignore(id=REQUESTS, paths=["**"]), trivy_result), "trivy", REQUESTS
    )


@pytest.mark.parametrize(
    ("fid", "state", "accepted"),
    [
        (ZLIB, "wont-fix", True),
        (ZLIB, "not-fixed", False),
        (ZLIB, "fixed", False),
        (REQUESTS, "fixed", True),
        (REQUESTS, "unknown", False),
    ],
)
def test_fix_state_from_trivy_status(
    trivy_result: GateResult, fid: str, state: str, accepted: bool
) -> None:
    assert (
        _accepted(judge_policy(_ignore(id=fid, fix_state=state), trivy_result), "trivy", fid)
        is accepted
    )


def test_fix_state_from_pip_audit_fix_versions(pip_result: GateResult) -> None:
    assert _accepted(
        judge_policy(_ignore(id=URLLIB3, fix_state="fixed"), pip_result), "pip-audit", URLLIB3
    )
    assert not _accepted(
        judge_policy(_ignore(id=URLLIB3, fix_state="not-fixed"), pip_result), "pip-audit", URLLIB3
    )


def test_scanner(trivy_result: GateResult, pip_result: GateResult) -> None:
    only_pip = _ignore(id=REQUESTS, scanner="pip-audit")
    assert not _accepted(judge_policy(only_pip, trivy_result), "trivy", REQUESTS)
    assert _accepted(judge_policy(only_pip, pip_result), "pip-audit", PYSEC)
    # Both scanners report the advisory: Trivy's finding is kept, pip-audit's is its duplicate,
    # and an entry for pip-audit's report accepts the advisory.
    v = judge_policy(only_pip, trivy_result, pip_result)
    assert _accepted(v, "trivy", REQUESTS)
    assert v.status is Status.FAILED  # zlib1g still fails
    assert _outcomes(v)[("trivy", ZLIB)][0] is Outcome.FAIL


def test_matchers_combine(trivy_result: GateResult) -> None:
    both = {"purl": "pkg:deb/debian/zlib1g", "fix_state": "wont-fix", "scanner": "trivy"}
    assert _accepted(judge_policy(_ignore(id=ZLIB, **both), trivy_result), "trivy", ZLIB)
    for key, wrong in (("fix_state", "fixed"), ("scanner", "pip-audit"), ("versions", "<< 1.0")):
        entry = {**both, key: wrong}
        assert not _accepted(
            judge_policy(_ignore(id=ZLIB, **entry), trivy_result), "trivy", ZLIB
        ), key


def test_accepted_findings_stay_suppressed_in_sarif_and_openvex(
    trivy_result: GateResult, pip_result: GateResult
) -> None:
    policy = load_policy_text(
        "version: 1\nvulnerabilities:\n  ignore:\n"
        "    - {id: CVE-2023-45853, purl: 'pkg:deb/debian/zlib1g', fix_state: wont-fix,\n"
        "       reason: no zip writing, expires: 2027-01-31}\n"
        "    - {id: CVE-2018-18074, versions: '<2.20', scanner: pip-audit,\n"
        "       paths: ['/usr/lib/python3/dist-packages/**'], reason: no redirects,\n"
        "       expires: 2027-01-31, justification: vulnerable_code_not_in_execute_path}\n",
        "p.yml",
    )
    v = judge([trivy_result, pip_result], policy.policy, today=TODAY)
    assert v.status is Status.FAILED  # urllib3: severity unknown, counted high
    report = Report(v, policy.source, policy.sha256, 0.0, 1.0, "test")
    sarif = render_sarif(report)
    suppressed = {
        r["ruleId"]: r["suppressions"][0]["justification"]
        for run in sarif["runs"]
        for r in run["results"]
        if r.get("suppressions") and r["properties"]["gate"] == "trivy"
    }
    assert suppressed == {
        ZLIB: "ignored until 2027-01-31: no zip writing",
        REQUESTS: "ignored until 2027-01-31: no redirects",
    }
    vex = render_openvex(report)
    assert vex is not None
    by_vuln = {st["vulnerability"]["name"]: st for st in vex["statements"]}
    assert by_vuln[ZLIB]["status"] == "affected"
    assert by_vuln[ZLIB]["products"][0]["@id"].startswith("pkg:deb/debian/zlib1g@")
    assert by_vuln[REQUESTS]["status"] == "not_affected"
    assert by_vuln[REQUESTS]["products"][0]["@id"] == "pkg:pypi/requests@2.19.0"


# --- stale and expired entries -------------------------------------------------------------------


def test_an_entry_matching_nothing_is_a_stale_ignore_warning(
    trivy_result: GateResult, pip_result: GateResult
) -> None:
    # The id matches, the purl does not: the entry accepts nothing and is stale.
    v = judge_policy(
        _ignore(id=ZLIB, purl="pkg:deb/debian/zlib1g?arch=arm64")
        + '    - {"id": "CVE-2018-18074", "reason": "r", "expires": "2027-01-31"}\n',
        trivy_result,
        pip_result,
    )
    made = _made(v)
    assert [(g, i, o) for g, i, o, _ in made] == [
        ("trivy", "vulnerabilities.stale-ignore", Outcome.WARN)
    ]
    assert (
        "vulnerabilities.ignore[0] (CVE-2023-45853) matched no finding of trivy and pip-audit"
        in made[0][3]
    )
    assert _outcomes(v)[("trivy", ZLIB)][0] is Outcome.FAIL  # not accepted
    # An entry whose scanner did not run is not called stale (it could not have matched).
    v = judge_policy(_ignore(id=ZLIB, scanner="trivy"), pip_result)
    assert _made(v) == []
    # A scanner-less entry when only one scanner ran: stale, saying which did not run.
    v = judge_policy(_ignore(id="CVE-1999-0001"), pip_result)
    assert [(g, i) for g, i, *_ in _made(v)] == [("pip-audit", "vulnerabilities.stale-ignore")]
    assert "(trivy did not run)" in _made(v)[0][3]
    assert v.status is Status.FAILED  # urllib3 (unknown severity) — the warning never fails


def test_an_expired_entry_whose_matchers_miss_still_fails(trivy_result: GateResult) -> None:
    """Its id matches a finding but its purl does not: it matched nothing, so it is reported
    as expired (a failure), not silently dropped."""
    v = judge_policy(
        _ignore(id=ZLIB, purl="pkg:deb/ubuntu/zlib1g", expires="2026-01-01"), trivy_result
    )
    made = _made(v)
    assert [(i, o) for _, i, o, _ in made] == [("vulnerabilities.expired-ignore", Outcome.FAIL)]
    assert v.status is Status.FAILED and v.exit_code is ExitCode.BREACHED
    # The same entry matching: the finding itself fails, naming the expiry.
    v = judge_policy(
        _ignore(id=ZLIB, purl="pkg:deb/debian/zlib1g", expires="2026-01-01"), trivy_result
    )
    assert _made(v) == []
    outcome, reason = _outcomes(v)[("trivy", ZLIB)]
    assert outcome is Outcome.FAIL and "expired on 2026-01-01" in reason


# --- thresholds per scanner and package type --------------------------------------------------


def test_override_per_package_type(trivy_result: GateResult) -> None:
    """Hold the distribution to fixable-only: zlib1g (CRITICAL, will_not_fix) warns, requests
    (a language package) still fails, and the reason names the override."""
    policy = "vulnerabilities:\n  overrides:\n    - {package_type: os, fixable_only: true}\n"
    o = _outcomes(judge_policy(policy, trivy_result))
    assert o[("trivy", ZLIB)] == (
        Outcome.WARN,
        "no fixed version exists and vulnerabilities.overrides[0].fixable_only is true",
    )
    assert o[("trivy", REQUESTS)] == (Outcome.FAIL, "HIGH ≥ vulnerabilities.fail_on HIGH")
    # The override for language packages does not touch the OS package.
    policy = "vulnerabilities:\n  overrides:\n    - {package_type: language, fixable_only: true}\n"
    assert _outcomes(judge_policy(policy, trivy_result))[("trivy", ZLIB)][0] is Outcome.FAIL


def test_override_per_scanner(trivy_result: GateResult, pip_result: GateResult) -> None:
    policy = "vulnerabilities:\n  overrides:\n    - {scanner: trivy, fail_on: critical}\n"
    o = _outcomes(judge_policy(policy, trivy_result))
    assert o[("trivy", REQUESTS)] == (
        Outcome.WARN,
        "HIGH is below vulnerabilities.overrides[0].fail_on CRITICAL",
    )
    assert o[("trivy", ZLIB)] == (
        Outcome.FAIL,
        "CRITICAL ≥ vulnerabilities.overrides[0].fail_on CRITICAL",
    )
    # pip-audit's findings keep the global threshold.
    o = _outcomes(judge_policy(policy, pip_result))
    assert o[("pip-audit", PYSEC)] == (Outcome.FAIL, "HIGH ≥ vulnerabilities.fail_on HIGH")
    # Reported by both: kept as Trivy's, but it fails under pip-audit's thresholds.
    o = _outcomes(judge_policy(policy, trivy_result, pip_result))
    assert o[("trivy", REQUESTS)] == (
        Outcome.FAIL,
        "HIGH ≥ vulnerabilities.fail_on HIGH (as pip-audit reports it)",
    )


def test_unknown_severity_and_max_cvss_overrides(pip_result: GateResult) -> None:
    base = "vulnerabilities:\n  overrides:\n"
    o = _outcomes(
        judge_policy(base + "    - {scanner: pip-audit, unknown_severity: low}\n", pip_result)
    )
    assert o[("pip-audit", URLLIB3)] == (
        Outcome.WARN,
        "LOW is below vulnerabilities.fail_on HIGH",
    )
    o = _outcomes(
        judge_policy(
            base + "    - {scanner: pip-audit, fail_on: critical, max_cvss: 7.0}\n", pip_result
        )
    )
    assert o[("pip-audit", PYSEC)] == (
        Outcome.FAIL,
        "CVSS 7.5 > vulnerabilities.overrides[0].max_cvss 7.0",
    )
    o = _outcomes(
        judge_policy(
            base + "    - {package_type: os, max_cvss: 7.0, fail_on: critical}\n", pip_result
        )
    )
    assert o[("pip-audit", PYSEC)] == (Outcome.FAIL, "HIGH ≥ vulnerabilities.fail_on HIGH")


def test_most_specific_override_wins_and_ties_take_the_stricter(trivy_result: GateResult) -> None:
    policy = (
        "vulnerabilities:\n  fail_on: low\n  overrides:\n"
        "    - {package_type: os, fail_on: critical}\n"
        "    - {scanner: trivy, fail_on: medium}\n"
        "    - {scanner: trivy, package_type: language, fail_on: critical}\n"
    )
    o = _outcomes(judge_policy(policy, trivy_result))
    # requests: both selectors (override 2) beat scanner-only (override 1).
    assert o[("trivy", REQUESTS)] == (
        Outcome.WARN,
        "HIGH is below vulnerabilities.overrides[2].fail_on CRITICAL",
    )
    # zlib1g: package_type-only and scanner-only tie; the stricter (medium) wins.
    assert o[("trivy", ZLIB)] == (
        Outcome.FAIL,
        "CRITICAL ≥ vulnerabilities.overrides[1].fail_on MEDIUM",
    )
    # Each threshold is resolved on its own: fixable_only from one override, fail_on global.
    policy = (
        "vulnerabilities:\n  fail_on: critical\n  overrides:\n"
        "    - {scanner: trivy, fixable_only: true}\n"
        "    - {scanner: trivy, package_type: os, fixable_only: false}\n"
    )
    o = _outcomes(judge_policy(policy, trivy_result))
    assert o[("trivy", ZLIB)] == (Outcome.FAIL, "CRITICAL ≥ vulnerabilities.fail_on CRITICAL")


# --- policy validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        (
            "  ignore:\n    - {id: X, reason: r, expires: 2027-01-31, purl: 'pkg:pypi'}\n",
            "p.yml:4:53: vulnerabilities.ignore[0].purl: not a package URL",
        ),
        (
            "  ignore:\n    - {id: X, reason: r, expires: 2027-01-31, purl: 'pkg:pypi/x#a/b'}\n",
            "vulnerabilities.ignore[0].purl: not a package URL: a purl subpath",
        ),
        (
            "  ignore:\n    - {id: X, reason: r, expires: 2027-01-31, purl: 'pkg:pypi/x@not-a-version'}\n",
            "vulnerabilities.ignore[0].purl: not a package URL: 'not-a-version' is not a PEP 440",
        ),
        (
            "  ignore:\n    - {id: X, reason: r, expires: 2027-01-31, versions: '<1:2'}\n",
            "vulnerabilities.ignore[0].versions: not a PEP 440 specifier set",
        ),
        (
            "  ignore:\n    - {id: X, reason: r, expires: 2027-01-31, purl: 'pkg:deb/debian/x', versions: '>=1,<2'}\n",
            "vulnerabilities.ignore[0].versions: not dpkg relations",
        ),
        (
            "  ignore:\n    - {id: X, reason: r, expires: 2027-01-31, purl: 'pkg:npm/x', versions: '<2'}\n",
            'vulnerabilities.ignore[0].versions: ranges are read for pypi and deb packages only, not for the purl\'s type "npm"',
        ),
        (
            "  ignore:\n    - {id: X, reason: r, expires: 2027-01-31, paths: ['a/[b']}\n",
            "vulnerabilities.ignore[0].paths: glob 0: 'a/[b': '[' without its ']'",
        ),
        (
            "  ignore:\n    - {id: X, reason: r, expires: 2027-01-31, paths: ['a/b**']}\n",
            "vulnerabilities.ignore[0].paths: glob 0: 'a/b**': ** must be a whole path segment",
        ),
        (
            "  ignore:\n    - {id: X, reason: r, expires: 2027-01-31, fix_state: wontfix}\n",
            "vulnerabilities.ignore[0].fix_state:",
        ),
        (
            "  ignore:\n    - {id: X, reason: r, expires: 2027-01-31, scanner: grype}\n",
            "vulnerabilities.ignore[0].scanner:",
        ),
        (
            "  ignore:\n    - {reason: r, expires: 2027-01-31, purl: 'pkg:pypi/x'}\n",
            "vulnerabilities.ignore[0].id: required",
        ),
        (
            "  overrides:\n    - {scanner: trivy, fail_on: low}\n    - {scanner: trivy, max_cvss: 5}\n",
            "vulnerabilities.overrides: overrides[0] and overrides[1] have the same selectors "
            "(scanner: trivy)",
        ),
        (
            "  overrides:\n    - {fail_on: low}\n",
            "vulnerabilities.overrides[0]: an override needs scanner, package_type or both",
        ),
        (
            "  overrides:\n    - {package_type: os}\n",
            "vulnerabilities.overrides[0]: an override sets at least one of",
        ),
        (
            "  overrides:\n    - {package_type: os, fail_on: low, ignore: []}\n",
            "vulnerabilities.overrides[0].ignore: unknown key",
        ),
        (
            "  overrides:\n    - {package_type: distro, fail_on: low}\n",
            "vulnerabilities.overrides[0].package_type:",
        ),
    ],
)
def test_bad_matchers_and_overrides_are_policy_errors(
    yaml: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    text = "version: 1\nvulnerabilities:\n" + yaml
    with pytest.raises(PolicyFileError) as info:
        load_policy_text(text, "p.yml")
    assert info.value.exit_code is ExitCode.USAGE
    assert expected in str(info.value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yml").write_text(text)
    assert main(["policy", "validate", "p.yml"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


# --- dpkg's version ordering -------------------------------------------------------------------

#: (a, b, sign of a − b) — dpkg's documented ordering (deb-version(7), lib/dpkg/t/t-version.c).
DPKG_VECTORS = [
    ("1.0~rc1", "1.0", -1),
    ("1:0.1", "2.0", 1),
    ("1.0-1", "1.0-1+b1", -1),
    ("1.0", "1.0-0", 0),
    ("0:1.0", "1.0", 0),
    ("1.0~~", "1.0~~a", -1),
    ("1.0~~a", "1.0~", -1),
    ("1.0~", "1.0", -1),
    ("1.0", "1.0a", -1),
    ("1.0a", "1.0+", -1),  # letters sort before non-letters
    ("1.0+", "1.0.", -1),
    ("1.2.3", "1.2.10", -1),
    ("1.001", "1.1", 0),
    ("1.0", "1.0.0", -1),
    ("2.2~rc-4", "2.2-1", -1),
    ("7.6p2-4", "7.6-0", 1),
    ("1.0.3-3", "1.0-1", 1),
    ("1.3", "1.2.2-2", 1),
    ("0.9", "1:0.1", -1),
    ("1.0-1~bpo1", "1.0-1", -1),
    ("1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1+deb12u1", -1),
    ("2:1.0", "10:0.1", -1),
    ("1.0-a", "1.0-1", 1),
]


@pytest.mark.parametrize(("a", "b", "sign"), DPKG_VECTORS)
def test_dpkg_compare_known_vectors(a: str, b: str, sign: int) -> None:
    got = dpkg_compare(a, b)
    assert (got > 0) - (got < 0) == sign
    back = dpkg_compare(b, a)
    assert (back > 0) - (back < 0) == -sign


def _dpkg_sign(dpkg: str, a: str, b: str) -> int:
    def holds(op: str) -> bool:
        rc = subprocess.run([dpkg, "--compare-versions", a, op, b], check=False).returncode
        assert rc in (0, 1), (a, op, b)
        return rc == 0

    return 0 if holds("eq") else -1 if holds("lt") else 1


def test_dpkg_compare_agrees_with_dpkg() -> None:
    """The known vectors and 300 random pairs built from the characters that matter (digits,
    letters, ``~ + .``, epochs, revisions), compared by the real dpkg."""
    dpkg = shutil.which("dpkg")
    require(dpkg is not None, "dpkg")
    assert dpkg is not None
    rng = random.Random(18)

    def part(alphabet: str) -> str:
        return rng.choice("0123456789") + "".join(
            rng.choice(alphabet) for _ in range(rng.randint(0, 5))
        )

    def version() -> str:
        v = part("0123456789.~+ab")
        if rng.random() < 0.3:
            v = f"{rng.randint(0, 2)}:{v}"
        if rng.random() < 0.5:
            v += "-" + part("0123456789.~+b")
        return v

    pairs = [(a, b) for a, b, _ in DPKG_VECTORS]
    for _ in range(300):
        a = version()
        pairs.append((a, version() if rng.random() < 0.8 else a.replace("0", "00", 1)))
    for a, b in pairs:
        got = dpkg_compare(a, b)
        assert (got > 0) - (got < 0) == _dpkg_sign(dpkg, a, b), (a, b)


@pytest.mark.parametrize("bad", ["", "a1.0", "x:1.0", "1.0-", "1.0_1", "1:", "1.0-1:2", "1 .0"])
def test_not_debian_versions(bad: str) -> None:
    with pytest.raises(ValueError):
        DpkgVersion.parse(bad)


def test_dpkg_ranges() -> None:
    r = VersionRange.parse(">= 1:1.2.13, << 1:1.2.13.dfsg-1+deb12u1", "deb")
    assert r.contains("deb", "1:1.2.13.dfsg-1")
    assert not r.contains("deb", "1:1.2.13.dfsg-1+deb12u1")
    assert not r.contains("deb", "1.2.13.dfsg-1")  # epoch 0
    assert not r.contains("pypi", "1.2.13")  # a dpkg range never reads a PyPI version
    assert VersionRange.parse(">> 1.0~rc1").contains("deb", "1.0")
    assert not VersionRange.parse(">> 1.0").contains("deb", "1.0~rc1")
    both = VersionRange.parse(">=1.0")  # fits both syntaxes: each reads it its own way
    assert both.contains("pypi", "1.0.post1") and both.contains("deb", "1.0+b1")
    assert not both.contains(None, "2.0")  # other ecosystems: never
    with pytest.raises(ValueError, match="<< <= = >= >>"):
        VersionRange.parse("< 1.0", "deb")


@pytest.mark.parametrize(
    ("glob", "path", "hit"),
    [
        ("**", "a/b/c", True),
        ("/a/**", "a", True),
        ("a/**/c", "a/c", True),
        ("a/**/c", "a/x/y/c", True),
        ("a/**/c", "a/x/y/cd", False),
        ("a/*", "a/b/c", False),
        ("a/?", "a/b", True),
        ("a/[bc]", "a/c", True),
        ("a/[!bc]", "a/c", False),
        ("a/[!bc]", "a/d", True),
        ("a/[]]", "a/]", True),
        ("a/b.c", "a/bxc", False),  # . is literal
    ],
)
def test_glob_semantics(glob: str, path: str, hit: bool) -> None:
    assert compile_glob(glob).matches(path) is hit


# --- VEX products matched by purl ----------------------------------------------------------------


def _vex(tmp_path: Path, vuln: str, *products: object) -> str:
    doc = {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.invalid/vex/18",
        "author": "security@example.invalid",
        "timestamp": "2026-11-01T00:00:00Z",
        "version": 1,
        "statements": [
            {
                "vulnerability": {"name": vuln},
                "products": list(products),
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
            }
        ],
    }
    (tmp_path / "app.openvex.json").write_text(json.dumps(doc))
    return "vulnerabilities:\n  vex: [app.openvex.json]\n"


@pytest.mark.parametrize(
    ("fid", "product", "suppressed"),
    [
        (REQUESTS, {"@id": "pkg:pypi/requests@2.19.0"}, True),
        (REQUESTS, {"@id": "pkg:pypi/Requests@2.19"}, True),  # PEP 503 / PEP 440 equality
        (REQUESTS, {"@id": "requests"}, True),  # a bare name, as before purls were compared
        (
            REQUESTS,
            {"@id": "https://example.invalid/x", "identifiers": {"purl": "pkg:pypi/requests"}},
            True,
        ),
        (REQUESTS, {"@id": "pkg:pypi/requests@2.20.0"}, False),
        (REQUESTS, {"@id": "pkg:deb/debian/requests@2.19.0"}, False),  # another ecosystem
        (REQUESTS, {"@id": "pkg:oci/app@sha256%3Aabc"}, True),  # the image: all it holds
        (REQUESTS, {"@id": "pkg:oci/base@sha256%3Abbb"}, False),  # another image
        (REQUESTS, {"@id": "pkg:oci/app?repository_url=r.invalid/app"}, False),  # no digest
        (
            REQUESTS,
            {"@id": "pkg:oci/base@sha256%3Abbb", "subcomponents": [{"@id": "pkg:pypi/requests"}]},
            False,  # requests inside another image
        ),
        (
            REQUESTS,
            {"@id": "pkg:oci/app@sha256%3Aabc", "subcomponents": [{"@id": "pkg:pypi/urllib3"}]},
            False,  # about urllib3 inside the image, not requests
        ),
        (
            REQUESTS,
            {"@id": "pkg:oci/app@sha256%3Aabc", "subcomponents": [{"@id": "pkg:pypi/requests"}]},
            True,
        ),
        (ZLIB, {"@id": "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?epoch=1"}, True),
        (ZLIB, {"@id": "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1"}, True),
        (ZLIB, {"@id": "pkg:deb/debian/zlib1g@1.2.13.dfsg-1"}, False),  # epoch 0
        (ZLIB, {"@id": "pkg:deb/ubuntu/zlib1g"}, False),
        (ZLIB, {"@id": "pkg:deb/debian/zlib1g?arch=arm64"}, False),
    ],
)
def test_vex_products_are_matched_by_purl(
    trivy_result: GateResult, tmp_path: Path, fid: str, product: object, suppressed: bool
) -> None:
    policy = _vex(tmp_path, fid, product)
    build = GateResult("build", Status.PASSED, facts={"image.digest": "sha256:abc"})
    outcome, reason = _outcomes(judge_policy(policy, build, trivy_result, base=tmp_path))[
        ("trivy", fid)
    ]
    assert (outcome is Outcome.IGNORED) is suppressed, reason
    if suppressed:
        assert reason.startswith("VEX app.openvex.json: not_affected")


def test_glob_classes_with_ranges() -> None:
    g = compile_glob("/usr/lib/python3.[0-9]*/site-packages/[a-q]*/**")
    assert g.matches("usr/lib/python3.11/site-packages/numpy-2.0.dist-info")
    assert not g.matches("usr/lib/python3.11/site-packages/requests-2.19.0.dist-info")
    assert not g.matches("usr/lib/python3.x/site-packages/numpy-2.0.dist-info")


def test_hostile_globs_match_in_linear_time() -> None:
    """Globs a regular expression would backtrack on for ever (nested ``**``, many ``*``)
    against long paths: each answers at once."""
    import time

    path = "a/" * 2000 + "b"
    segment = "usr/" + "a" * 250
    start = time.monotonic()
    assert not compile_glob("**/a/**/a/**/a/**/a/**/a/**/c").matches(path)
    assert compile_glob("/".join(["**"] * 100) + "/b").matches(path)
    assert not compile_glob("usr/" + "*a" * 100 + "*b").matches(segment)
    assert compile_glob("usr/" + "*a" * 100).matches(segment)
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize(
    ("advisory", "status", "state"),
    [
        ({"Status": 2, "Severity": 0}, "affected", "not-fixed"),
        ({"Status": 6, "Severity": 0}, "fix_deferred", "not-fixed"),
        ({"FixedVersion": "1:1.2.13.dfsg-1+deb12u1"}, "fixed", "fixed"),
    ],
)
def test_fix_state_of_each_trivy_status(
    tmp_path: Path, advisory: dict[str, object], status: str, state: str
) -> None:
    """The Debian advisory's state as the real Trivy reports it, and the ignore entries that
    select it and the ones that do not."""
    from examples.offline.trivydb import DEFAULT
    from tests.vuln.test_trivy import _rootfs_scan

    zlib = next(a for a in DEFAULT if a[2] == ZLIB)
    write_trivy_db(
        tmp_path / "cache",
        updated_at=datetime.now(UTC),
        advisories=((zlib[0], zlib[1], zlib[2], advisory, zlib[4]),),
    )
    data = _rootfs_scan(tmp_path / "cache", debian_rootfs(tmp_path / "root"))
    (f,) = parse_report(json.dumps(data), platform="linux/amd64")
    assert (f.evidence["status"], fix_state(f)) == (status, state)
    r = GateResult("trivy", Status.PASSED, findings=(f,))
    for other in ("fixed", "not-fixed", "wont-fix", "unknown"):
        assert _accepted(judge_policy(_ignore(id=ZLIB, fix_state=other), r), "trivy", ZLIB) is (
            other == state
        )
