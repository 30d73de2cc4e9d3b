"""Review of issue 18 section 4 (``vulnerabilities.baseline``): each test here documents a
defect found in review and is marked xfail(strict=True) until it is fixed.

Trivy's findings come from its real parser (:func:`modelseal.vuln.trivy.parse_report`) fed a
report in Trivy's documented JSON shape (``Results[].Vulnerabilities[]`` with ``VendorIDs``);
the other findings are built in the shared shape the scanners' parsers produce.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from tests.support import REPO
from tests.support.vuln import baseline_of, pip_audit_requests

from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.judge import Outcome, Verdict, judge
from modelseal.policy import load_policy_text
from modelseal.reports.model import Report
from modelseal.reports.sarif import render_sarif
from modelseal.vuln.findings import vuln_finding
from modelseal.vuln.trivy import parse_report

TODAY = date(2026, 12, 5)


def _trivy_ubuntu(*vulns: tuple[str, str]) -> list[Finding]:
    """libssl3 on Ubuntu 22.04 as Trivy reports it: each (CVE, severity), all fixed by the one
    Ubuntu Security Notice USN-6039-1 (Trivy puts the notice in ``VendorIDs``)."""
    report = {
        "SchemaVersion": 2,
        "ArtifactName": "image",
        "ArtifactType": "container_image",
        "Results": [
            {
                "Target": "image (ubuntu 22.04)",
                "Class": "os-pkgs",
                "Type": "ubuntu",
                "Vulnerabilities": [
                    {
                        "VulnerabilityID": cve,
                        "VendorIDs": ["USN-6039-1"],
                        "PkgID": "libssl3@3.0.2-0ubuntu1.8",
                        "PkgName": "libssl3",
                        "InstalledVersion": "3.0.2-0ubuntu1.8",
                        "FixedVersion": "3.0.2-0ubuntu1.9",
                        "Status": "fixed",
                        "SeveritySource": "ubuntu",
                        "PrimaryURL": f"https://avd.aquasec.com/nvd/{cve.lower()}",
                        "Title": f"openssl: {cve}",
                        "Severity": severity,
                    }
                    for cve, severity in vulns
                ],
            }
        ],
    }
    return parse_report(json.dumps(report), platform="linux/amd64")


def _policy(text: str = "") -> Any:
    return load_policy_text("version: 1\n" + text, "policy.yml").policy


def test_a_cve_sharing_only_a_vendor_notice_with_a_baseline_cve_is_new() -> None:
    """CVE-2023-0465 is another vulnerability than CVE-2023-0464; that one Ubuntu notice fixes
    both does not make them aliases. The baseline holds only CVE-2023-0464 (HIGH); the run adds
    CVE-2023-0465 (HIGH) — a new finding, which fails. Today it matches the baseline's
    CVE-2023-0464 through the shared USN-6039-1 (Trivy's VendorIDs become the finding's
    "aliases") and is judged "existing and not worse": a warning, the run passes."""
    (base,) = _trivy_ubuntu(("CVE-2023-0464", "HIGH"))
    head = _trivy_ubuntu(("CVE-2023-0464", "HIGH"), ("CVE-2023-0465", "HIGH"))
    results = [GateResult("trivy", Status.PASSED, tuple(head))]
    verdict = judge(results, _policy(), today=TODAY, baseline=baseline_of([base]))
    states = {d.finding.id: (d.baseline, d.outcome) for d in verdict.gates[0].decisions}
    assert states["CVE-2023-0464"] == ("existing", Outcome.WARN)
    assert states["CVE-2023-0465"] == ("new", Outcome.FAIL)
    assert verdict.status is Status.FAILED


def test_a_baseline_cve_gone_now_is_fixed_even_if_its_notice_still_names_another() -> None:
    """The other side of the same conflation: the baseline held CVE-2023-0464 and
    CVE-2023-0465; the run has only CVE-2023-0465 — CVE-2023-0464 is fixed. Today both
    baseline findings are "matched" through USN-6039-1 and the fixed count says 0."""
    base = _trivy_ubuntu(("CVE-2023-0464", "HIGH"), ("CVE-2023-0465", "HIGH"))
    head = _trivy_ubuntu(("CVE-2023-0465", "HIGH"))
    results = [GateResult("trivy", Status.PASSED, tuple(head))]
    verdict = judge(results, _policy(), today=TODAY, baseline=baseline_of(base))
    assert verdict.baseline is not None
    assert [b.finding.id for b in verdict.baseline.fixed] == ["CVE-2023-0464"]


# --- SARIF --------------------------------------------------------------------------------


def test_sarif_baseline_state_is_on_every_result_of_the_run() -> None:
    (vuln,) = _trivy_ubuntu(("CVE-2023-0464", "HIGH"))
    other = Finding(
        gate="image",
        id="image.no-healthcheck",
        severity=Severity.LOW,
        title="the image config has no HEALTHCHECK",
        subject="image config",
    )
    results = [
        GateResult("trivy", Status.PASSED, (vuln,)),
        GateResult("image", Status.PASSED, (other,)),
    ]
    # a live ignore entry that matches nothing: the judge makes a stale-ignore warning
    policy = _policy(
        "vulnerabilities:\n  ignore:\n    - {id: CVE-2000-0001, reason: gone, "
        "expires: 2099-01-01}\n"
    )
    verdict = judge(results, policy, today=TODAY, baseline=baseline_of([vuln]))
    assert isinstance(verdict, Verdict) and verdict.baseline is not None
    sarif = render_sarif(
        Report(verdict, "policy.yml", "0" * 64, 0.0, 1.0, "0.0.0", command="judge")
    )
    run_results = sarif["runs"][0]["results"]
    assert len(run_results) >= 3  # the vulnerability, the image finding, the stale ignore
    with_state = [r for r in run_results if "baselineState" in r]
    assert with_state, "the vulnerability result carries baselineState"
    missing = [r["ruleId"] for r in run_results if "baselineState" not in r]
    assert missing == []


# --- the pull-request example -------------------------------------------------------------


def test_the_pull_request_baseline_is_an_image_matrix_moves_main_on() -> None:
    examples = REPO / "workflows-examples"
    pr = YAML(typ="safe").load((examples / "pull-request.yml").read_text())
    matrix = YAML(typ="safe").load((examples / "matrix.yml").read_text())
    (seal_pr,) = [s for s in pr["jobs"]["scan"]["steps"] if "baseline" in s.get("with", {})]
    baseline = seal_pr["with"]["baseline"]
    seal = matrix["jobs"]["seal"]
    (step,) = [s for s in seal["steps"] if s.get("id") == "seal"]
    assert step["with"]["tags"] == "main"
    published = {
        step["with"]["image"].replace("${{ matrix.name }}", m["name"]).rsplit(":", 1)[0]
        for m in seal["strategy"]["matrix"]["include"]
    }
    assert baseline.rsplit(":", 1)[0] in published, (baseline, published)


# --- --policy-ref ---------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
        env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
             "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
             "HOME": str(repo), "PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip


def test_policy_ref_accepts_a_committed_baseline_within_the_baseline_limit(
    tmp_path: Path,
) -> None:
    from modelseal.policy.gitref import check_trust_inputs, load_policy_at_ref

    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "modelseal.yml").write_text("version: 1\nvulnerabilities:\n  baseline: base.json\n")
    body = json.dumps({"schema_version": 2, "gates": [], "pad": "x" * (17 * 1024 * 1024)})
    (repo / "base.json").write_text(body)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    loaded = load_policy_at_ref(repo / "modelseal.yml", "main", repo)
    (checked,) = check_trust_inputs(loaded, repo, repo)
    assert checked.key == "vulnerabilities.baseline" and checked.sha256


def test_policy_ref_checks_a_baseline_file_given_by_the_flag_inside_the_checkout(
    tmp_path: Path,
) -> None:
    from modelseal import app
    from modelseal.errors import ConfigError
    from modelseal.policy.gitref import load_policy_at_ref

    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "modelseal.yml").write_text("version: 1\n")
    (repo / "Dockerfile").write_text("FROM scratch\n")
    (repo / "base.json").write_text(json.dumps({"schema_version": 2, "gates": []}))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    # the pull request rewrites the committed baseline (here: into another report)
    (repo / "base.json").write_text(json.dumps({"schema_version": 2, "gates": [], "x": 1}))
    # pip-audit alone: today the run gets past the trust check and the baseline request and
    # stops later, in the pipeline ("requires gate build"); checked, the baseline stops it first.
    loaded = load_policy_at_ref(repo / "modelseal.yml", "main", repo)
    request = app.RunRequest(
        context=repo, policy=loaded, out_dir=tmp_path / "out", gates=("pip-audit",),
        source_date_epoch=0, baseline=str(repo / "base.json"),
    )  # fmt: skip
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        with pytest.raises(ConfigError, match="baseline"):
            app.run(request)
    finally:
        os.chdir(cwd)


# --- fail-if-worse and the per-package-type thresholds (issue 18 section 2) ------------------


def _requests(severity: Severity) -> Finding:
    """requests 2.19.0's PYSEC-2018-28 as pip-audit reports it (severity as the lookup found)."""
    return pip_audit_requests(
        "/usr/lib/python3/dist-packages/requests-2.19.0.dist-info/METADATA", severity
    )


def test_worse_counts_an_unknown_severity_as_the_threshold_that_judges_it() -> None:
    policy = _policy(
        "vulnerabilities:\n  fail_on: high\n  unknown_severity: low\n"
        "  overrides:\n    - {package_type: language, unknown_severity: critical}\n"
    )
    results = [GateResult("pip-audit", Status.PASSED, (_requests(Severity.UNKNOWN),))]
    # Without a baseline the override makes it CRITICAL: it fails.
    alone = judge(results, policy, today=TODAY)
    assert [d.outcome for d in alone.gates[0].decisions] == [Outcome.FAIL]
    # The baseline had it HIGH: CRITICAL now is worse, so fail-if-worse still fails it.
    verdict = judge(results, policy, today=TODAY, baseline=baseline_of([_requests(Severity.HIGH)]))
    (d,) = verdict.gates[0].decisions
    assert d.baseline == "worse", d.reason
    assert d.outcome is Outcome.FAIL


# --- hostile input: a large baseline --------------------------------------------------------


def test_sarif_stays_inside_the_upload_limit_whatever_the_baseline() -> None:
    import gzip

    fixed = [
        vuln_finding(
            gate="trivy",
            id=f"CVE-2099-{i:05d}",
            package=f"pkg{i}",
            version="1",
            ecosystem="debian",
            severity=Severity.LOW,
            title="t",
            fixed_in=None,
            location="os package database",
        )
        for i in range(40_000)
    ]
    # the subject a parser writes is package@version; a hostile baseline's is anything
    fixed = [replace(f, subject=os.urandom(400).hex()) for f in fixed]
    results = [GateResult("trivy", Status.PASSED, ())]
    verdict = judge(results, _policy(), today=TODAY, baseline=baseline_of(fixed))
    assert verdict.baseline is not None and len(verdict.baseline.fixed) == 40_000
    sarif = render_sarif(
        Report(verdict, "policy.yml", "0" * 64, 0.0, 1.0, "0.0.0", command="judge")
    )
    size = len(gzip.compress(json.dumps(sarif).encode(), compresslevel=6))
    assert size <= 10 * 1000 * 1000, size


# --- the image baseline's signer under --policy-ref -----------------------------------------


def test_policy_ref_refuses_a_verify_key_the_pull_request_changed(tmp_path: Path) -> None:
    from modelseal import app
    from modelseal.errors import ConfigError
    from modelseal.policy.gitref import check_trust_inputs, load_policy_at_ref
    from modelseal.sign.key import generate_ephemeral_key

    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _, base_key = generate_ephemeral_key(tmp_path / "base-key")
    _, pr_key = generate_ephemeral_key(tmp_path / "pr-key")
    (repo / "baseline.pub").write_bytes(base_key.read_bytes())
    (repo / "modelseal.yml").write_text(
        "version: 1\nverify:\n  public_key: baseline.pub\n"
        "vulnerabilities:\n  baseline: ghcr.io/owner/iris-server:main\n"
    )
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    # the pull request replaces the committed key with its own
    (repo / "baseline.pub").write_bytes(pr_key.read_bytes())
    loaded = load_policy_at_ref(repo / "modelseal.yml", "main", repo)
    # what the run would verify the baseline's attestation with: the pull request's key
    request = app.baseline_request(None, loaded, repo)
    assert request is not None and request.expected is not None
    assert request.expected.public_key_pem == pr_key.read_bytes()
    with pytest.raises(ConfigError, match=r"verify\.public_key"):
        check_trust_inputs(loaded, repo, repo)
