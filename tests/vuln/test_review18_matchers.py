"""Review of issue 18 sections 1-3 (ignore matchers, overrides, VEX products): each test here
documents a defect found in review (each was a strict xfail until fixed; now a regression
test).

The findings are built in the shared shape the scanners' parsers produce (the fields Trivy's
and pip-audit's parsers fill, as the real findings in test_vuln_matchers.py show them), so that
each defect is shown on the smallest input that exhibits it.
"""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from tests.support.vuln import judge_policy, pip_audit_requests

from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.judge import Outcome, Verdict
from modelseal.policy import PolicyFileError, load_policy_text
from modelseal.vuln.findings import vuln_finding
from modelseal.vuln.match import compile_glob

TODAY = date(2026, 11, 23)
CVE = "CVE-2018-18074"


def _trivy_pypi(path: str) -> Finding:
    """requests 2.19.0 as Trivy reports a python-pkg: PkgPath, PkgIdentifier.PURL, Status."""
    f = vuln_finding(
        gate="trivy",
        id=CVE,
        package="requests",
        version="2.19.0",
        ecosystem="pypi",
        severity=Severity.HIGH,
        title="requests: redirect from HTTPS to HTTP leaks credentials",
        fixed_in="2.20.0",
        location=path,
        aliases=["GHSA-x84v-xcm2-53pg"],
    )
    evidence = {
        **f.evidence,
        "platform": "linux/amd64",
        "status": "fixed",
        "purl": "pkg:pypi/requests@2.19.0",
    }
    return replace(f, evidence=evidence)


def _pip_audit(path: str) -> Finding:
    """The same advisory as pip-audit reports it for the copy under ``path``."""
    return pip_audit_requests(f"/{path}")


def _trivy_deb(purl: str) -> Finding:
    """zlib1g 1:1.2.13.dfsg-1 as Trivy reports an os-pkgs package."""
    f = vuln_finding(
        gate="trivy",
        id="CVE-2023-45853",
        package="zlib1g",
        version="1:1.2.13.dfsg-1",
        ecosystem="debian",
        severity=Severity.CRITICAL,
        title="zlib: integer overflow in minizip",
        fixed_in=None,
        location="os package database",
    )
    evidence = {
        **f.evidence,
        "platform": "linux/amd64",
        "status": "will_not_fix",
        "purl": purl,
        "os": "image (debian 12.5)",
    }
    return replace(f, evidence=evidence)


def _ignore(**fields: object) -> str:
    entry = {"reason": "accepted", "expires": "2027-01-31", **fields}
    return "vulnerabilities:\n  ignore:\n    - " + json.dumps(entry) + "\n"


def _outcome_of(v: Verdict, finding: Finding) -> Outcome:
    for g in v.gates:
        for d in g.decisions:
            if d.finding is finding:
                return d.outcome
    raise AssertionError(f"no decision for {finding.id} at {finding.location}")


# --- 1. an entry's paths accept another copy of the package through a cross-scanner duplicate --


CONDA = "opt/conda/lib/python3.12/site-packages/requests-2.19.0.dist-info"
LOCAL = "usr/local/lib/python3.12/site-packages/requests-2.19.0.dist-info"


def test_paths_entry_for_one_copy_does_not_accept_another_copy_via_duplicate() -> None:
    conda = _trivy_pypi(f"{CONDA}/METADATA")  # Trivy sorts by location: opt/… comes first
    local = _trivy_pypi(f"{LOCAL}/METADATA")
    pip = _pip_audit(LOCAL)  # pip-audit audits the usr/local environment only
    trivy = GateResult("trivy", Status.PASSED, findings=(conda, local))
    pip_audit = GateResult("pip-audit", Status.PASSED, findings=(pip,))
    policy = _ignore(id=CVE, paths=["usr/local/lib/python3.12/site-packages/**"])
    v = judge_policy(policy, trivy, pip_audit)
    assert _outcome_of(v, local) is Outcome.IGNORED  # the copy the entry names
    # the opt/conda copy is outside every glob of the entry: it must still be judged
    assert _outcome_of(v, conda) is Outcome.FAIL


# --- 2. a hostile paths glob allocates hundreds of MB --------------------------------------------


def test_glob_character_ranges_do_not_allocate_per_character() -> None:
    glob = '["-\u3022]' * 20 + "x"  # 101 characters, 20 ranges of 12289 characters
    tracemalloc.start()
    try:
        compile_glob.cache_clear()
        compiled = compile_glob(glob)
        used, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        compile_glob.cache_clear()
    assert compiled.matches("a" * 20 + "x")
    assert used < 2_000_000, f"{used / 1e6:.0f} MB held for a 101-character glob"


# --- 3. purl matching broader than written ------------------------------------------------------


def test_purl_with_an_empty_version_is_refused() -> None:
    with pytest.raises(PolicyFileError):
        load_policy_text("version: 1\n" + _ignore(id=CVE, purl="pkg:pypi/requests@"), "p.yml")


def test_purl_epoch_qualifier_without_version_is_compared() -> None:
    zlib = _trivy_deb("pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64&distro=debian-12.5&epoch=1")
    trivy = GateResult("trivy", Status.PASSED, findings=(zlib,))
    v = judge_policy(_ignore(id="CVE-2023-45853", purl="pkg:deb/debian/zlib1g?epoch=2"), trivy)
    assert _outcome_of(v, zlib) is Outcome.FAIL


# --- 4. VEX: a statement about another image covers this one ------------------------------------


def test_vex_product_naming_another_image_does_not_cover_this_one(tmp_path: Path) -> None:
    other = "pkg:oci/python@sha256%3A" + "b" * 64
    doc = {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.com/vex/1",
        "author": "base image vendor",
        "timestamp": "2026-11-01T00:00:00Z",
        "version": 1,
        "statements": [
            {
                "vulnerability": {"name": CVE},
                "products": [{"@id": other}],
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
            }
        ],
    }
    (tmp_path / "base.vex.json").write_text(json.dumps(doc))
    build = GateResult("build", Status.PASSED, facts={"image.digest": "sha256:" + "a" * 64})
    req = _trivy_pypi(f"{LOCAL}/METADATA")
    trivy = GateResult("trivy", Status.PASSED, findings=(req,))
    policy = "vulnerabilities:\n  vex: [base.vex.json]\n"
    v = judge_policy(policy, build, trivy, base=tmp_path)
    assert _outcome_of(v, req) is Outcome.FAIL


# --- 5. an expired entry shadowed by a VEX statement is never reported --------------------------


def test_expired_entry_matching_a_vex_covered_finding_is_still_reported(tmp_path: Path) -> None:
    doc = {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.com/vex/2",
        "author": "us",
        "timestamp": "2026-11-01T00:00:00Z",
        "version": 1,
        "statements": [
            {
                "vulnerability": {"name": CVE},
                "products": [{"@id": "pkg:pypi/requests@2.19.0"}],
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
            }
        ],
    }
    (tmp_path / "ours.vex.json").write_text(json.dumps(doc))
    req = _trivy_pypi(f"{LOCAL}/METADATA")
    trivy = GateResult("trivy", Status.PASSED, findings=(req,))
    entry = {"id": CVE, "reason": "old", "expires": "2026-01-31"}  # expired before TODAY
    policy = (
        "vulnerabilities:\n  vex: [ours.vex.json]\n  ignore:\n    - " + json.dumps(entry) + "\n"
    )
    v = judge_policy(policy, trivy, base=tmp_path)
    assert _outcome_of(v, req) is Outcome.IGNORED  # the VEX statement accepts the finding
    assert v.exit_code != 0, "the expired entry is reported nowhere"


# --- 6. a duplicate's own severity is dropped: a second scanner loosens the verdict ---------------


def test_a_duplicates_severity_counts_under_its_scanners_thresholds() -> None:
    low = replace(_trivy_pypi(f"{LOCAL}/METADATA"), severity=Severity.LOW)
    pip = _pip_audit(LOCAL)  # HIGH
    pip_alone = judge_policy("", GateResult("pip-audit", Status.PASSED, findings=(pip,)))
    assert _outcome_of(pip_alone, pip) is Outcome.FAIL
    both = judge_policy(
        "",
        GateResult("trivy", Status.PASSED, findings=(low,)),
        GateResult("pip-audit", Status.PASSED, findings=(pip,)),
    )
    assert both.exit_code != 0, "adding Trivy turned a failing verdict into a pass"


@pytest.mark.parametrize(
    ("purl", "accepted"),
    [
        ("pkg:deb/debian/zlib1g?epoch=1", True),
        ("pkg:deb/debian/zlib1g?epoch=01", True),  # compared as a number
        ("pkg:deb/debian/zlib1g?epoch=0", False),
        ("pkg:deb/debian/zlib1g@1.2.13.dfsg-1?epoch=1", True),  # folded into the version
    ],
)
def test_purl_epoch_qualifier_matches_the_packages_epoch(purl: str, accepted: bool) -> None:
    zlib = _trivy_deb("pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64&distro=debian-12.5&epoch=1")
    v = judge_policy(
        _ignore(id="CVE-2023-45853", purl=purl),
        GateResult("trivy", Status.PASSED, findings=(zlib,)),
    )
    assert (_outcome_of(v, zlib) is Outcome.IGNORED) is accepted


def test_purl_epoch_qualifier_must_be_a_number() -> None:
    with pytest.raises(PolicyFileError):
        load_policy_text(
            "version: 1\n" + _ignore(id=CVE, purl="pkg:deb/debian/zlib1g?epoch=x"), "p.yml"
        )


def test_vex_image_product_naming_the_built_image_covers_it(tmp_path: Path) -> None:
    """The counterpart of the test above: the built image's own digest (a platform manifest's
    too) is what a pkg:oci product must name; no build gate, no image: nothing covered."""
    digest = "sha256:" + "a" * 64
    doc = {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.com/vex/3",
        "author": "us",
        "timestamp": "2026-11-01T00:00:00Z",
        "version": 1,
        "statements": [
            {
                "vulnerability": {"name": CVE},
                "products": [{"@id": "pkg:oci/app@sha256%3A" + "a" * 64}],
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
            }
        ],
    }
    (tmp_path / "ours.vex.json").write_text(json.dumps(doc))
    req = _trivy_pypi(f"{LOCAL}/METADATA")
    trivy = GateResult("trivy", Status.PASSED, findings=(req,))
    policy = "vulnerabilities:\n  vex: [ours.vex.json]\n"
    for facts in ({"image.digest": digest}, {"image.manifest.linux/arm64": digest}):
        build = GateResult("build", Status.PASSED, facts=facts)
        assert (
            _outcome_of(judge_policy(policy, build, trivy, base=tmp_path), req) is Outcome.IGNORED
        )
    assert _outcome_of(judge_policy(policy, trivy, base=tmp_path), req) is Outcome.FAIL


def test_same_copy_from_both_scanners_is_still_one_finding() -> None:
    """Folding per copy keeps Trivy's METADATA and pip-audit's .dist-info of one copy together."""
    trivy = _trivy_pypi(f"{LOCAL}/METADATA")
    pip = _pip_audit(LOCAL)
    v = judge_policy(
        "",
        GateResult("trivy", Status.PASSED, findings=(trivy,)),
        GateResult("pip-audit", Status.PASSED, findings=(pip,)),
    )
    assert _outcome_of(v, pip) is Outcome.IGNORED  # the duplicate
    assert _outcome_of(v, trivy) is Outcome.FAIL
