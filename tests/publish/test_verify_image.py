"""`modelseal verify` on images in a real registry: published keyless against the local test
Sigstore (Fulcio/Rekor/OIDC from tests/support/sigstore_local.py), checked by us and by cosign 2.5,
and images signed by cosign checked by us. Negative cases: wrong identity, a tag moved to an
unsigned image, a tampered manifest, a missing attestation, a stale scan, Rekor down."""

from __future__ import annotations

import calendar
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.data.make_report_v1 import PASSED_POLICY, passed
from tests.support import REPO
from tests.support.sigstore_local import DEFAULT_EMAIL, LocalSigstore, Service
from tests.support.statements import statements
from tests.support.tools import build_layout, require

from modelseal.app import rejudger
from modelseal.imagebuild.engine import PrivateEngine
from modelseal.judge import judge
from modelseal.oci import OciLayout
from modelseal.policy import load_policy_text
from modelseal.publish.publisher import ImageRef, publish
from modelseal.publish.registry import RegistryClient
from modelseal.publish.registry_limits import RegistryError
from modelseal.publish.verify_image import VerifyOptions, VerifyResult, verify_image
from modelseal.reports import Report
from modelseal.reports.json_report import report_to_json
from modelseal.sign.interface import SigningError, VerificationError
from modelseal.sign.key import KeySigner, generate_ephemeral_key
from modelseal.sign.keyless import KeylessSigner
from modelseal.sign.trust import TrustConfig
from modelseal.sign.verify import ExpectedSigner

FINISHED = "2026-11-23T10:00:00Z"
NOW = calendar.timegm(time.strptime(FINISHED, "%Y-%m-%dT%H:%M:%SZ")) + 3600


@pytest.fixture(scope="module")
def published(
    registry: str,
    busybox_layout: tuple[OciLayout, str],
    local_trust: TrustConfig,
    sigstore_stack: LocalSigstore,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, str]:
    """busybox published keyless to REGISTRY/seal/keyless:1.0; yields (ref, digest)."""
    layout, digest = busybox_layout
    ref = ImageRef.parse(f"{registry}/seal/keyless:1.0")
    signer = KeylessSigner(local_trust, identity_token=sigstore_stack.token())
    publish(
        ref, layout, digest, signer=signer,
        attestations=statements(ref.name, digest, FINISHED),
        out_dir=tmp_path_factory.mktemp("published"),
    )  # fmt: skip
    return f"{ref.name}:1.0", digest


@pytest.fixture(scope="module")
def example_layout(
    engine: PrivateEngine, tmp_path_factory: pytest.TempPathFactory
) -> tuple[OciLayout, str]:
    """A second, unrelated one-file image."""
    work = tmp_path_factory.mktemp("other-image")
    ctx = work / "ctx"
    ctx.mkdir()
    (ctx / "note.txt").write_text("not what was signed\n")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY note.txt /\n")
    digest = build_layout(ctx, work / "oci")
    return OciLayout(work / "oci"), digest


def _expected(stack: Any, trust_path: Path, **kw: Any) -> ExpectedSigner:
    args = {"issuer": stack.issuer_url, "identity": DEFAULT_EMAIL} | kw
    return ExpectedSigner(trust_config=trust_path, **args)


def _verify(
    ref: str,
    expected: ExpectedSigner,
    client_factory: Callable[[str, str], RegistryClient] | None = None,
    **kw: Any,
) -> VerifyResult:
    """verify_image with ``VerifyOptions(expected, **kw)``, judged at ``NOW`` unless ``now=``."""
    options = VerifyOptions(expected, **({"now": NOW} | kw))
    return verify_image(ref, options, client_factory=client_factory)


def test_keyless_image_verifies(
    published: tuple[str, str], sigstore_stack: LocalSigstore, trust_config_path: Path
) -> None:
    ref, digest = published
    result = _verify(
        ref,
        _expected(sigstore_stack, trust_config_path),
        builder_id="https://modelseal.dev/builders/local/v1",
        source_repository="https://github.com/example/seal",
    )
    assert result.digest == digest
    assert [(c.name, c.ok) for c in result.checks] == [
        ("signature", True), ("provenance", True), ("sbom", True), ("scan-report", True),
    ], result.checks  # fmt: skip
    assert DEFAULT_EMAIL in (result.signer or "")
    # pinned by digest works too, and an anchored regexp identity
    regexp = "^" + DEFAULT_EMAIL.replace(".", r"\.") + "$"
    by_digest = _verify(
        f"{ref.rsplit(':', 1)[0]}@{digest}",
        _expected(sigstore_stack, trust_config_path, identity=None, identity_regexp=regexp),
    )
    assert by_digest.ok, by_digest.checks


def test_wrong_identity_and_issuer_are_refused(
    published: tuple[str, str], sigstore_stack: LocalSigstore, trust_config_path: Path
) -> None:
    ref, _ = published
    for kw in ({"identity": "mallory@example.com"}, {"issuer": "https://accounts.example.com"}):
        result = _verify(ref, _expected(sigstore_stack, trust_config_path, **kw))
        assert not result.ok
        assert all(not c.ok for c in result.checks), result.checks
        assert "does not match the expected" in result.checks[0].detail


def test_stale_scan_and_builder_mismatch_fail_their_checks(
    published: tuple[str, str], sigstore_stack: LocalSigstore, trust_config_path: Path
) -> None:
    ref, _ = published
    result = _verify(
        ref,
        _expected(sigstore_stack, trust_config_path),
        builder_id="https://github.com/actions/runner/github-hosted",
        max_scan_age_days=7,
        now=NOW + 40 * 86400,
    )
    checks = {c.name: c for c in result.checks}
    assert checks["signature"].ok and checks["sbom"].ok
    assert not checks["provenance"].ok and "builder" in checks["provenance"].detail
    assert not checks["scan-report"].ok and "more than 7" in checks["scan-report"].detail
    rejudged = _verify(
        ref,
        _expected(sigstore_stack, trust_config_path),
        rejudge=lambda report: (False, "FAILED under strict.yml"),
    )
    assert "FAILED under strict.yml" in rejudged.checks[-1].detail and not rejudged.ok


def test_tag_moved_to_an_unsigned_image_is_refused(
    registry: str, busybox_layout: tuple[OciLayout, str], example_layout: tuple[OciLayout, str],
    sigstore_stack: LocalSigstore, trust_config_path: Path,
) -> None:  # fmt: skip
    # An attacker with push rights points the tag at another image: no signature covers it.
    _, digest = busybox_layout
    other_layout, other = example_layout
    client = RegistryClient(registry, "seal/moved")
    client.push_layout(other_layout, other)
    client.tag("1.0", other)
    result = _verify(f"{registry}/seal/moved:1.0", _expected(sigstore_stack, trust_config_path))
    assert result.digest == other != digest
    assert not result.ok and "no valid signature" in result.checks[0].detail


def test_tampered_manifest_is_refused(
    published: tuple[str, str],
    sigstore_stack: LocalSigstore,
    trust_config_path: Path,
    registry: str,
) -> None:
    ref, digest = published

    class Tampering(RegistryClient):
        def get_manifest(self, ref: str) -> tuple[str, bytes, str]:
            media, body, got = super().get_manifest(ref)
            if got == digest:  # the registry (or a proxy) serves other bytes for the digest
                body = body.replace(b"{", b'{"annotations":{"x":"y"},', 1)
            return media, body, got

    with pytest.raises(VerificationError, match="does not match"):
        _verify(
            f"{ref.rsplit(':', 1)[0]}@{digest}",
            _expected(sigstore_stack, trust_config_path),
            client_factory=lambda host, repo: Tampering(host, repo),
        )


def test_missing_attestations_fail(
    registry: str, busybox_layout: tuple[OciLayout, str], tmp_path: Path
) -> None:
    layout, digest = busybox_layout
    private, public = generate_ephemeral_key(tmp_path / "keys")
    ref = ImageRef.parse(f"{registry}/seal/provenance-only:1.0")
    only = [a for a in statements(ref.name, digest, FINISHED) if a.name == "provenance"]
    publish(
        ref, layout, digest, signer=KeySigner.from_file(private), attestations=only,
        out_dir=tmp_path,
    )  # fmt: skip
    result = _verify(f"{ref.name}:1.0", ExpectedSigner(public_key_pem=public.read_bytes()))
    assert [(c.name, c.ok) for c in result.checks] == [
        ("signature", True), ("provenance", True), ("sbom", False), ("scan-report", False),
    ]  # fmt: skip
    # and another key's signatures do not count at all
    _, stranger = generate_ephemeral_key(tmp_path / "stranger")
    result = _verify(f"{ref.name}:1.0", ExpectedSigner(public_key_pem=stranger.read_bytes()))
    assert not any(c.ok for c in result.checks)


def test_verify_rejudges_version_2_and_version_1_scan_reports(
    registry: str, busybox_layout: tuple[OciLayout, str], tmp_path: Path
) -> None:
    # The scan-report attestation carries the whole report.json: this version's (2), and an
    # older release's (1, written by modelseal before version 2), are both judged again.
    layout, digest = busybox_layout
    private, public = generate_ephemeral_key(tmp_path / "keys")
    signer = KeySigner.from_file(private)
    # Both reports predate the image gate: a policy accepting them switches it off.
    accepted = load_policy_text(PASSED_POLICY + "image:\n  enabled: false\n", "release.yml")
    imaged = load_policy_text(PASSED_POLICY, "imaged.yml")
    verdict = judge(passed(), accepted.policy)
    v2 = report_to_json(Report(verdict, accepted.source, accepted.sha256, 0.0, 1.0, "0.2.0"))
    v1 = json.loads((REPO / "tests" / "data" / "report-v1-passed.json").read_text())
    strict = load_policy_text("version: 1\nimage:\n  enabled: false\n", "strict.yml")
    expected = ExpectedSigner(public_key_pem=public.read_bytes())
    for version, report in ((2, v2), (1, v1)):
        assert report["schema_version"] == version and report["verdict"] == "PASSED"
        report = {**report, "finished_at": FINISHED}
        ref = ImageRef.parse(f"{registry}/seal/report-v{version}:1.0")
        publish(
            ref, layout, digest, signer=signer, out_dir=tmp_path / f"v{version}",
            attestations=statements(ref.name, digest, FINISHED, report),
        )  # fmt: skip
        ok = _verify(f"{ref.name}:1.0", expected, rejudge=rejudger(accepted))
        assert ok.ok and ok.checks[-1].detail.endswith("PASSED under release.yml"), ok.checks
        # A policy switching the image gate on (the default) refuses a report without it.
        gated = _verify(f"{ref.name}:1.0", expected, rejudge=rejudger(imaged))
        assert not gated.ok and (
            "imaged.yml requires gates the attested run did not run: image"
            in gated.checks[-1].detail
        ), gated.checks
        # Without the ignore entry the accepted advisory fails: the evidence was re-read.
        bad = _verify(f"{ref.name}:1.0", expected, rejudge=rejudger(strict))
        assert not bad.ok and "judged again under the given policy: FAILED under strict.yml" in (
            bad.checks[-1].detail
        )


def test_rekor_down_fails_closed_and_pushes_nothing(
    registry: str, busybox_layout: tuple[OciLayout, str], local_trust: TrustConfig, sigstore_stack: LocalSigstore,
    rekor_failing: Service, tmp_path: Path,
) -> None:  # fmt: skip
    layout, digest = busybox_layout
    ref = ImageRef.parse(f"{registry}/seal/rekor-down:1.0")
    signer = KeylessSigner(
        local_trust, identity_token=sigstore_stack.token(), attempts=2, backoff_s=0.01
    )
    with pytest.raises(SigningError):
        publish(
            ref, layout, digest, signer=signer,
            attestations=statements(ref.name, digest, FINISHED), out_dir=tmp_path,
        )  # fmt: skip
    assert rekor_failing.calls == 2
    assert not RegistryClient(registry, "seal/rekor-down").referrers(digest)
    with pytest.raises(RegistryError) as e:
        RegistryClient(registry, "seal/rekor-down").get_manifest("1.0")
    assert e.value.status == 404


# -- cosign 2.5, both ways ------------------------------------------------------------------------


def test_cosign_verifies_our_keyless_image(
    published: tuple[str, str], sigstore_stack: LocalSigstore, tmp_path: Path
) -> None:
    require(shutil.which("cosign") is not None, "cosign")
    ref, digest = published
    who = ["--certificate-identity", DEFAULT_EMAIL, "--certificate-oidc-issuer", sigstore_stack.issuer_url]  # fmt: skip
    pinned = f"{ref.rsplit(':', 1)[0]}@{digest}"
    proc = sigstore_stack.run_cosign(tmp_path, "verify", "--offline", "--allow-http-registry", *who, pinned)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert digest in proc.stdout
    for kind in (
        "slsaprovenance1",
        "cyclonedx",
        "https://modelseal.dev/attestations/scan-report/v1",
    ):
        proc = sigstore_stack.run_cosign(
            tmp_path, "verify-attestation", "--offline", "--allow-http-registry",
            "--type", kind, *who, pinned,
        )  # fmt: skip
        assert proc.returncode == 0, (kind, proc.stderr)
    wrong = sigstore_stack.run_cosign(
        tmp_path, "verify", "--offline", "--allow-http-registry",
        "--certificate-identity", "mallory@example.com",
        "--certificate-oidc-issuer", sigstore_stack.issuer_url, pinned,
    )  # fmt: skip
    assert wrong.returncode != 0


def test_we_verify_an_image_cosign_signed_keyless(
    registry: str, busybox_layout: tuple[OciLayout, str], sigstore_stack: LocalSigstore,
    trust_config_path: Path, tmp_path: Path,
) -> None:  # fmt: skip
    require(shutil.which("cosign") is not None, "cosign")
    layout, digest = busybox_layout
    client = RegistryClient(registry, "seal/by-cosign")
    client.push_layout(layout, digest)
    pinned = f"{registry}/seal/by-cosign@{digest}"
    flags = ["--yes", "--allow-http-registry", "--fulcio-url", sigstore_stack.fulcio.url,
             "--rekor-url", sigstore_stack.rekor.url, "--oidc-issuer", sigstore_stack.issuer_url]  # fmt: skip
    token = {"SIGSTORE_ID_TOKEN": sigstore_stack.token()}
    proc = sigstore_stack.run_cosign(tmp_path, "sign", *flags, pinned, **token)
    assert proc.returncode == 0, proc.stderr
    predicates = tmp_path / "predicates"
    predicates.mkdir()
    for att in statements(f"{registry}/seal/by-cosign", digest, FINISHED)[1:]:
        (predicates / f"{att.name}.json").write_text(json.dumps(att.statement["predicate"]))
        proc = sigstore_stack.run_cosign(
            tmp_path, "attest", *flags, "--type", att.statement["predicateType"],
            "--predicate", str(predicates / f"{att.name}.json"), pinned, **token,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    result = _verify(pinned, _expected(sigstore_stack, trust_config_path))
    checks = {c.name: c for c in result.checks}
    assert checks["signature"].ok, checks["signature"]
    assert checks["sbom"].ok and checks["scan-report"].ok, result.checks
    assert not checks["provenance"].ok  # cosign was not asked for one


def test_hostile_referrers_are_ignored_not_fatal(
    published: tuple[str, str], sigstore_stack: LocalSigstore, trust_config_path: Path
) -> None:
    """Anyone who can push to the repository can add referrers: garbage among them must
    neither crash verify nor stop it from finding the valid signatures."""
    ref, _ = published

    class Hostile(RegistryClient):
        def referrers(self, digest: str, artifact_type: str | None = None) -> list[dict[str, Any]]:
            real = super().referrers(digest, artifact_type)
            junk: list[Any] = [
                {"digest": "x\n::warning title=pwn::injected"},
                {"digest": 42},
                {"no": "digest"},
            ]
            return [*junk, *real]

        def get_manifest(self, ref: str) -> tuple[str, bytes, str]:
            media, body, got = super().get_manifest(ref)
            doc = json.loads(body)
            if doc.get("artifactType") == "application/vnd.dev.sigstore.bundle.v0.3+json":
                doc["annotations"] = ["not", "a", "map"]  # malformed, yet signature-checked
                body = json.dumps(doc).encode()
            return media, body, got

    result = _verify(
        ref,
        _expected(sigstore_stack, trust_config_path),
        client_factory=lambda host, repo: Hostile(host, repo),
    )
    assert result.checks[0].ok  # the cosign .sig still carries the valid signature
    assert all("\n" not in c.detail for c in result.checks)


def test_a_scan_report_from_the_future_is_not_fresh(
    published: tuple[str, str], sigstore_stack: LocalSigstore, trust_config_path: Path
) -> None:
    ref, _ = published
    result = _verify(ref, _expected(sigstore_stack, trust_config_path), now=NOW - 86400)
    assert not result.checks[-1].ok and "future" in result.checks[-1].detail
