"""``vulnerabilities.baseline``: real Trivy and pip-audit findings judged against a baseline.

Two real runs: the "base branch" image holds zlib1g only (Trivy: CVE-2023-45853), the "pull
request" image adds requests 2.19.0 (Trivy: CVE-2018-18074; pip-audit: PYSEC-2018-28, the same
advisory). The pull request's evidence is judged against the base's report in each
``baseline_policy``, against the base image's signed scan-report attestation in a real registry
(and one whose signature is not the expected signer's), and against baselines that cannot be
used (each an ERRORED gate, exit 3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from examples.offline.osv_server import start_osv_server
from examples.offline.trivydb import write_trivy_db
from tests.support import EPOCH, REPO
from tests.support.reports import read_report, report_gates
from tests.support.rootfs import DIST_INFO, debian_rootfs
from tests.support.sigstore_local import DEFAULT_EMAIL, LocalSigstore
from tests.support.statements import statements

from modelseal import app
from modelseal._cli import main
from modelseal.errors import ConfigError
from modelseal.github.summary import render_summary
from modelseal.oci import OciLayout
from modelseal.policy import default_policy, load_policy
from modelseal.publish.publisher import ImageRef, publish
from modelseal.sign.key import KeySigner, generate_ephemeral_key
from modelseal.sign.keyless import KeylessSigner
from modelseal.sign.trust import TrustConfig
from modelseal.vuln.baseline import MAX_BASELINE_BYTES

pytestmark = pytest.mark.engine

SARIF_SCHEMA = json.loads((REPO / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())

ZLIB = "CVE-2023-45853"
REQUESTS = "CVE-2018-18074"
GHSA_REQUESTS = "GHSA-x84v-xcm2-53pg"


@dataclass(frozen=True)
class Scans:
    """The two real runs: ``base`` (zlib only, no baseline) and ``head`` (zlib and requests,
    run with ``--baseline`` the base's report.json), and what judging them needs."""

    base: Path
    head: Path
    head_code: int
    cache: Path
    osv_url: str


@pytest.fixture(scope="module")
def scans(engine: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scans]:
    work = tmp_path_factory.mktemp("baseline-scans")
    cache = work / "trivy-cache"
    write_trivy_db(cache, updated_at=datetime.now(UTC))
    with start_osv_server() as (osv_url, _stop):
        outs = {}
        code = 0
        for name in ("base", "head"):
            ctx = work / name / "ctx"
            debian_rootfs(ctx / "rootfs")
            if name == "base":
                for f in (ctx / "rootfs" / DIST_INFO).iterdir():
                    f.unlink()
                (ctx / "rootfs" / DIST_INFO).rmdir()
            (ctx / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
            out = work / name / "out"
            args = ["run", str(ctx), "--gate", "build", "--gate", "trivy", "--gate",
                    "pip-audit", "--source-date-epoch", str(EPOCH), "-o", str(out),
                    "--policy", str(_policy(work / name, cache, osv_url))]  # fmt: skip
            if name == "head":
                args += ["--baseline", str(outs["base"] / "report.json")]
            code = main(args)
            outs[name] = out
        yield Scans(outs["base"], outs["head"], code, cache, osv_url)


def _policy(where: Path, cache: Path, osv_url: str, extra: str = "") -> Path:
    where.mkdir(parents=True, exist_ok=True)
    p = where / "policy.yml"
    p.write_text(
        "version: 1\nbuild:\n  rebuild_check: false\n"
        f"trivy:\n  db:\n    mode: offline\n    cache_dir: {cache}\n"
        f"pip_audit:\n  osv_url: {osv_url}\n" + extra
    )
    return p


def _vulns(extra: str = "") -> str:
    return "vulnerabilities:\n" + extra if extra else ""


IGNORE_REQUESTS = (
    f"  ignore:\n    - {{id: {GHSA_REQUESTS}, package: requests, reason: no redirects, "
    "expires: 2099-01-01}\n"
)
ZLIB_ENTRY = f"    - {{id: {ZLIB}, reason: minizip not shipped, expires: 2099-01-01}}\n"
IGNORE_ZLIB = "  ignore:\n" + ZLIB_ENTRY


def _judge(
    scans: Scans,
    tmp_path: Path,
    report: Path,
    policy_extra: str,
    baseline: str | None,
    name: str = "judged",
) -> tuple[int, dict[str, Any], Path]:
    """``modelseal judge REPORT --baseline BASELINE`` under the test policy plus
    ``policy_extra``; returns the exit code, the report it wrote and its directory."""
    out = tmp_path / name
    policy = _policy(tmp_path / f"{name}-policy", scans.cache, scans.osv_url, policy_extra)
    args = ["judge", str(report), "--policy", str(policy), "-o", str(out)]
    if baseline is not None:
        args += ["--baseline", baseline]
    code = main(args)
    return code, read_report(out / "report.json"), out


def _outcomes(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(gate, id) → the finding with its decision and baseline state."""
    return {(g, f["id"]): f for g, gate in report_gates(report).items() for f in gate["findings"]}


def _sarif_states(out: Path) -> dict[str, str | None]:
    sarif = json.loads((out / "modelseal.sarif").read_text())
    return {
        f"{r['properties']['gate']}/{r['ruleId']}": r.get("baselineState")
        for r in sarif["runs"][0]["results"]
    }


# --- a report.json baseline, in each baseline_policy ----------------------------------------


def test_run_with_a_baseline_reports_new_and_existing(scans: Scans) -> None:
    """`modelseal run --baseline`: under the default fail-if-worse, the base's zlib finding
    (which the base's verdict failed too) is existing and not worse: a warning; requests is
    new and fails. report.json, summary.md and SARIF say which is which."""
    report = read_report(scans.head / "report.json")
    assert scans.head_code == 1, report
    found = _outcomes(report)
    assert found[("trivy", ZLIB)]["decision"] == "warn"
    assert found[("trivy", ZLIB)]["baseline"] == "existing"
    assert "existing in the baseline and not worse" in found[("trivy", ZLIB)]["reason"]
    assert found[("trivy", REQUESTS)]["decision"] == "fail"
    assert found[("trivy", REQUESTS)]["baseline"] == "new"
    # pip-audit's report of the same advisory is the duplicate, new as well
    assert found[("pip-audit", "PYSEC-2018-28")]["baseline"] == "new"
    baseline = report["baseline"]
    assert baseline["kind"] == "file" and baseline["policy"] == "fail-if-worse"
    assert baseline["source"] == str(scans.base / "report.json")
    assert baseline["digest"].startswith("sha256:") and baseline["error"] is None
    assert baseline["counts"] == {"new": 1, "existing": 1, "worse": 0, "fixed": 0}
    summary = (scans.head / "summary.md").read_text()
    assert "1 new, 0 fixed, 1 unchanged, 0 worse" in summary
    sarif = json.loads((scans.head / "modelseal.sarif").read_text())
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(sarif)
    assert sarif["runs"][0]["properties"]["baseline"]["counts"]["new"] == 1
    assert _sarif_states(scans.head) == {
        f"trivy/{REQUESTS}": "new",
        f"trivy/{ZLIB}": "unchanged",
        "pip-audit/PYSEC-2018-28": "new",
    }


def test_warn_new_finding_fails_existing_never_does(scans: Scans, tmp_path: Path) -> None:
    base = str(scans.base / "report.json")
    head = scans.head / "report.json"
    code, report, _ = _judge(
        scans, tmp_path, head, _vulns("  baseline_policy: warn\n"), base, "warn"
    )
    assert code == 1
    found = _outcomes(report)
    assert [k for k, f in found.items() if f["decision"] == "fail"] == [("trivy", REQUESTS)]
    zlib = found[("trivy", ZLIB)]
    assert zlib["decision"] == "warn" and zlib["baseline"] == "existing"
    assert "baseline_policy warn" in zlib["reason"]
    # With the new finding accepted, the existing one alone passes.
    code, report, _ = _judge(
        scans, tmp_path, head, _vulns("  baseline_policy: warn\n" + IGNORE_REQUESTS), base, "ok"
    )
    assert code == 0, report
    # An expired ignore entry fails an existing finding whatever the baseline_policy.
    expired = f"  ignore:\n    - {{id: {ZLIB}, reason: later, expires: 2020-01-01}}\n"
    code, report, _ = _judge(
        scans, tmp_path, head, _vulns("  baseline_policy: warn\n" + expired), base, "expired"
    )
    assert code == 1
    zlib = _outcomes(report)[("trivy", ZLIB)]
    assert zlib["decision"] == "fail" and "expired on 2020-01-01" in zlib["reason"]
    # Without a baseline the very same evidence fails on zlib.
    code, report, _ = _judge(scans, tmp_path, head, _vulns(IGNORE_REQUESTS), None, "none")
    assert code == 1 and "baseline" not in report


def test_fail_if_worse_fails_an_existing_finding_that_got_worse(
    scans: Scans, tmp_path: Path
) -> None:
    head = scans.head / "report.json"
    policy = _vulns("  baseline_policy: fail-if-worse\n" + IGNORE_REQUESTS)
    # The base failed zlib too, at the same severity: not worse, a warning.
    code, report, _ = _judge(scans, tmp_path, head, policy, str(scans.base / "report.json"))
    assert code == 0, report
    assert _outcomes(report)[("trivy", ZLIB)]["decision"] == "warn"

    # A baseline whose verdict accepted zlib (an ignore entry then, as every sealed image's
    # passing verdict accepts its findings): failing it now is the policy's change, not the
    # advisory's — not worse.
    code, accepted, _ = _judge(
        scans, tmp_path, scans.base / "report.json", _vulns(IGNORE_ZLIB), None, "accepted"
    )
    assert code == 0 and _outcomes(accepted)[("trivy", ZLIB)]["decision"] == "ignored"
    code, report, _ = _judge(
        scans, tmp_path, head, policy, str(tmp_path / "accepted" / "report.json"), "accepted2"
    )
    assert code == 0, report
    assert _outcomes(report)[("trivy", ZLIB)]["decision"] == "warn"

    # Baselines (the base's report, edited) where zlib had a lower severity, or a lower CVSS
    # score: worse by severity, by score.
    for name, field, value, why in (
        ("severity", "severity", "LOW", "severity CRITICAL, was LOW"),
        ("cvss", "cvss", "5.0", "CVSS 9.8, was 5.0"),
    ):
        data = json.loads((scans.base / "report.json").read_text())
        (zlib_then,) = [
            f for g in data["gates"] for f in g["evidence"]["findings"] if f["id"] == ZLIB
        ]
        assert (zlib_then["severity"], zlib_then["evidence"]["cvss"]) == ("CRITICAL", "9.8")
        if field == "severity":
            zlib_then["severity"] = value
        else:
            zlib_then["evidence"]["cvss"] = value
        edited = tmp_path / f"{name}.json"
        edited.write_text(json.dumps(data))
        code, report, _ = _judge(scans, tmp_path, head, policy, str(edited), name)
        assert code == 1
        zlib = _outcomes(report)[("trivy", ZLIB)]
        assert zlib["decision"] == "fail" and zlib["baseline"] == "existing" and zlib["worse"]
        assert f"worse than in the baseline: {why}" in zlib["reason"]
        assert report["baseline"]["counts"]["worse"] == 1
        assert _sarif_states(tmp_path / name)[f"trivy/{ZLIB}"] == "updated"
        assert "0 unchanged, 1 worse" in (tmp_path / name / "summary.md").read_text()


def test_fail_mode_judges_existing_findings_as_new_ones(scans: Scans, tmp_path: Path) -> None:
    code, report, out = _judge(
        scans, tmp_path, scans.head / "report.json",
        _vulns("  baseline_policy: fail\n" + IGNORE_REQUESTS), str(scans.base / "report.json"),
    )  # fmt: skip
    assert code == 1
    zlib = _outcomes(report)[("trivy", ZLIB)]
    assert zlib["decision"] == "fail" and zlib["baseline"] == "existing"
    assert "baseline_policy fail" in zlib["reason"]
    assert report["baseline"]["counts"] == {"new": 1, "existing": 1, "worse": 0, "fixed": 0}
    assert "1 new, 0 fixed, 1 unchanged" in (out / "summary.md").read_text()


def test_the_job_summary_shows_the_counts(scans: Scans, tmp_path: Path) -> None:
    """The Action's step summary (github/summary.py) shows the baseline and its counts."""
    policy = load_policy(_policy(tmp_path, scans.cache, scans.osv_url))
    outcome = app.judge(
        app.JudgeRequest(
            scans.head / "report.json", policy, baseline=str(scans.base / "report.json")
        )
    )
    text = render_summary(outcome.verdict, policy, {"verdict": "FAILED"})
    assert f"baseline file {scans.base / 'report.json'}" in text.replace("\\", "")
    assert "1 new, 0 fixed, 1 unchanged, 0 worse" in text


def test_fixed_findings_are_counted_once(scans: Scans, tmp_path: Path) -> None:
    """The base judged against the pull request's report: requests is gone (reported by two
    scanners, one advisory: fixed once), zlib stays."""
    code, report, out = _judge(
        scans, tmp_path, scans.base / "report.json", _vulns(IGNORE_ZLIB),
        str(scans.head / "report.json"),
    )  # fmt: skip
    assert code == 0, report
    assert report["baseline"]["counts"] == {"new": 0, "existing": 1, "worse": 0, "fixed": 1}
    (fixed,) = report["baseline"]["fixed"]
    assert fixed["id"] == REQUESTS and fixed["subject"] == "requests@2.19.0"
    assert "0 new, 1 fixed, 1 unchanged" in (out / "summary.md").read_text()


# --- baselines that cannot be used: ERRORED, never "no baseline" ---------------------------


def _assert_errored(report: dict[str, Any], *needles: str) -> None:
    gates = {g["gate"]: g for g in report["gates"]}
    for name in ("trivy", "pip-audit"):
        decision = gates[name]["decision"]
        assert decision["status"] == "ERRORED", decision
        for needle in needles:
            assert needle in decision["error"], decision["error"]
    assert report["verdict"] == "ERRORED" and report["exit_code"] == 3
    assert report["baseline"]["error"]


def test_unusable_baseline_files_are_errored(scans: Scans, tmp_path: Path) -> None:
    head = scans.head / "report.json"
    ok = _vulns(IGNORE_REQUESTS + ZLIB_ENTRY)  # would pass: only the baseline can fail it
    missing = tmp_path / "nowhere" / "report.json"
    code, report, out = _judge(scans, tmp_path, head, ok, str(missing), "missing")
    assert code == 3
    _assert_errored(
        report, "the vulnerability baseline could not be used: cannot read baseline report"
    )
    assert "could not be used" in (out / "summary.md").read_text()

    big = tmp_path / "big.json"
    with big.open("wb") as f:
        f.truncate(MAX_BASELINE_BYTES + 1)
    code, report, _ = _judge(scans, tmp_path, head, ok, str(big), "big")
    assert code == 3
    _assert_errored(report, "larger than the 64 MiB limit")

    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 2, "gates": [')
    code, report, _ = _judge(scans, tmp_path, head, ok, str(bad), "bad")
    assert code == 3
    _assert_errored(report, "bad.json:1:", "not valid JSON")

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema_version": 7, "gates": []}))
    code, report, _ = _judge(scans, tmp_path, head, ok, str(other), "other")
    assert code == 3
    _assert_errored(report, "is not a modelseal report of schema_version")

    broken = json.loads(head.read_text())
    del broken["gates"][1]["evidence"]["findings"][0]["severity"]
    malformed = tmp_path / "malformed.json"
    malformed.write_text(json.dumps(broken))
    code, report, _ = _judge(scans, tmp_path, head, ok, str(malformed), "malformed")
    assert code == 3
    _assert_errored(report, "malformed report")


def test_a_run_with_an_unreadable_baseline_is_errored_and_still_reports(
    scans: Scans, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx"
    debian_rootfs(ctx / "rootfs")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
    out = tmp_path / "out"
    policy = _policy(tmp_path, scans.cache, scans.osv_url, _vulns(IGNORE_REQUESTS + ZLIB_ENTRY))
    code = main(["run", str(ctx), "--gate", "build", "--gate", "trivy", "--gate", "pip-audit",
                 "--source-date-epoch", str(EPOCH), "-o", str(out), "--policy", str(policy),
                 "--baseline", str(tmp_path / "missing.json")])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 3
    report = read_report(out / "report.json")
    _assert_errored(report, "the vulnerability baseline could not be used")
    assert "could not be used" in printed


def test_a_baseline_without_a_vulnerability_gate_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    code = main(["run", str(tmp_path), "--gate", "build", "--baseline", "base.json"])
    assert code == 2
    assert "no vulnerability gate runs: add --gate trivy or --gate pip-audit" in (
        capsys.readouterr().err
    )


def test_a_policy_baseline_is_relative_to_the_build_context(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (tmp_path / "policy.yml").write_text(
        "version: 1\nvulnerabilities:\n  baseline: base/report.json\n"
    )
    policy = load_policy(tmp_path / "policy.yml")
    request = app.baseline_request(None, policy, ctx)
    assert request is not None and request.spec.path == ctx / "base" / "report.json"
    # the flag wins, relative to the working directory; an image needs the verify signer
    flagged = app.baseline_request("other.json", policy, ctx)
    assert flagged is not None and flagged.spec.path == Path("other.json")
    with pytest.raises(ConfigError, match="verify section"):
        app.baseline_request("ghcr.io/org/app:main", policy, ctx)
    assert app.baseline_request(None, default_policy(), ctx) is None


# --- an image baseline: the signed scan-report attestation --------------------------------


@dataclass(frozen=True)
class BaseImage:
    """The base run's image in the registry: its reference, digest, and the signer's key."""

    ref: str
    digest: str
    public_key: Path


@pytest.fixture(scope="module")
def base_image(scans: Scans, registry: str, tmp_path_factory: pytest.TempPathFactory) -> BaseImage:
    """The base run's image published to the local registry as REGISTRY/seal/base:main,
    key-signed, its scan-report attestation holding the base's report.json; and the same
    image unsigned as REGISTRY/seal/unsigned:main."""
    work = tmp_path_factory.mktemp("base-image")
    private, public = generate_ephemeral_key(work)
    data = json.loads((scans.base / "report.json").read_text())
    build = next(g for g in data["gates"] if g["gate"] == "build")["evidence"]
    digest = build["facts"]["image.digest"]
    layout = OciLayout(scans.base / "oci")
    ref = ImageRef.parse(f"{registry}/seal/base:main")
    publish(
        ref, layout, digest, signer=KeySigner.from_file(private), pusher="builtin",
        attestations=statements(ref.name, digest, data["finished_at"], report=data),
        out_dir=work / "out",
    )  # fmt: skip
    publish(
        ImageRef.parse(f"{registry}/seal/unsigned:main"), layout, digest, signer=None,
        pusher="builtin", attestations=(), out_dir=work / "unsigned",
    )  # fmt: skip
    return BaseImage(f"{ref.name}:main", digest, public)


def _key_policy(key: Path) -> str:
    """The verify section naming ``key`` as the signer, and requests accepted."""
    return f"verify:\n  public_key: {key}\n" + _vulns(IGNORE_REQUESTS)


def test_image_baseline_signed_by_the_expected_signer(
    scans: Scans, base_image: BaseImage, tmp_path: Path
) -> None:
    code, report, out = _judge(
        scans, tmp_path, scans.head / "report.json", _key_policy(base_image.public_key),
        base_image.ref,
    )  # fmt: skip
    assert code == 0, report
    baseline = report["baseline"]
    assert baseline["kind"] == "image" and baseline["source"] == base_image.ref
    assert baseline["digest"] == base_image.digest and baseline["error"] is None
    assert baseline["signer"] == "the expected key"
    assert baseline["counts"] == {"new": 1, "existing": 1, "worse": 0, "fixed": 0}
    assert f"image {base_image.ref}@{base_image.digest}" in (out / "summary.md").read_text()


def test_image_baseline_not_signed_by_the_expected_signer_is_errored(
    scans: Scans, base_image: BaseImage, tmp_path: Path
) -> None:
    _, other = generate_ephemeral_key(tmp_path / "other")
    head = scans.head / "report.json"
    code, report, _ = _judge(scans, tmp_path, head, _key_policy(other), base_image.ref, "wrong")
    assert code == 3
    _assert_errored(report, "has no scan-report attestation signed by the expected signer")
    unsigned = base_image.ref.replace("/seal/base:", "/seal/unsigned:")
    code, report, _ = _judge(
        scans, tmp_path, head, _key_policy(base_image.public_key), unsigned, "unsigned"
    )
    assert code == 3
    _assert_errored(report, "has no scan-report attestation signed by the expected signer")


def test_image_baseline_needs_a_signer_in_the_policy(
    scans: Scans, base_image: BaseImage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _policy(tmp_path, scans.cache, scans.osv_url)
    code = main(["judge", str(scans.head / "report.json"), "--policy", str(policy),
                 "--baseline", base_image.ref])  # fmt: skip
    assert code == 2
    assert "verify section" in capsys.readouterr().err


def test_keyless_image_baseline_verified_against_the_policys_identity(
    scans: Scans,
    registry: str,
    sigstore_stack: LocalSigstore,
    local_trust: TrustConfig,
    trust_config_path: Path,
    tmp_path: Path,
) -> None:
    """The pull-request setup: the base image sealed keyless (the local Sigstore), its scan
    report verified against verify.issuer/identity with sign.trust_config — and refused for
    another identity."""
    data = json.loads((scans.base / "report.json").read_text())
    build = next(g for g in data["gates"] if g["gate"] == "build")["evidence"]
    digest = build["facts"]["image.digest"]
    ref = ImageRef.parse(f"{registry}/seal/keyless-base:main")
    publish(
        ref, OciLayout(scans.base / "oci"), digest,
        signer=KeylessSigner(local_trust, identity_token=sigstore_stack.token()),
        pusher="builtin", out_dir=tmp_path / "published",
        attestations=statements(ref.name, digest, data["finished_at"], report=data),
    )  # fmt: skip
    head = scans.head / "report.json"
    for name, identity, want in (("right", DEFAULT_EMAIL, 0), ("other", "x@modelseal.test", 3)):
        policy = (
            f"sign:\n  trust_config: {trust_config_path}\n"
            f"verify:\n  issuer: {sigstore_stack.issuer_url}\n  identity: {identity}\n"
            + _vulns(IGNORE_REQUESTS)
        )
        code, report, _ = _judge(scans, tmp_path, head, policy, f"{ref.name}:main", name)
        assert code == want, report["baseline"]
        if want == 0:
            assert DEFAULT_EMAIL in report["baseline"]["signer"]
            assert report["baseline"]["counts"]["existing"] == 1
        else:
            _assert_errored(report, "no scan-report attestation signed by the expected signer")
