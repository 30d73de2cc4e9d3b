"""`modelseal verify --require-rebuild-by`: an image in the real local registry, signed by its
builder's key, with rebuild attestations (``rebuild_statement``) attached as Sigstore bundle
referrers (and a cosign ``.att``) by rebuilders A and B (keys), a keyless rebuilder (the local
Sigstore) and strangers. Each negative case asserts the reason the rebuild check gives."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from tests.support.sigstore_local import LocalSigstore
from tests.support.statements import statements

from modelseal._cli import main
from modelseal.oci import OciLayout
from modelseal.publish.cosign import att_manifest, bundle_referrer_manifest, cosign_tag
from modelseal.publish.publisher import ImageRef, publish
from modelseal.publish.registry import OCI_MANIFEST, RegistryClient
from modelseal.publish.registry_limits import RegistryLimitError, RegistryLimits
from modelseal.publish.statements import REBUILD_PREDICATE, image_statement, rebuild_statement
from modelseal.publish.verify_image import (
    Rebuilder,
    VerifyOptions,
    VerifyResult,
    verify_image,
)
from modelseal.sign.interface import Signer
from modelseal.sign.key import KeySigner, generate_ephemeral_key
from modelseal.sign.keyless import KeylessSigner
from modelseal.sign.trust import TrustConfig
from modelseal.sign.verify import ExpectedSigner

FINISHED = "2026-11-23T10:00:00Z"
REBUILDER_EMAIL = "rebuilder@modelseal.test"
OTHER_DIGEST = "sha256:" + "ab" * 32


@dataclasses.dataclass(frozen=True)
class Keys:
    """Key pairs ``(private, public)`` by name: main (the image's signer), a, b, c, d."""

    pairs: dict[str, tuple[Path, Path]]

    def signer(self, name: str) -> KeySigner:
        return KeySigner.from_file(self.pairs[name][0])

    def public(self, name: str) -> Path:
        return self.pairs[name][1]

    def expected(self, name: str) -> ExpectedSigner:
        return ExpectedSigner(public_key_pem=self.public(name).read_bytes())

    def rebuilder(self, name: str) -> Rebuilder:
        return Rebuilder(f"key:{name}.pub", self.expected(name))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    root = tmp_path_factory.mktemp("rebuild-keys")
    return Keys({n: generate_ephemeral_key(root / n) for n in ("main", "a", "b", "c", "d", "x")})


@dataclasses.dataclass(frozen=True)
class Image:
    """One sealed image in its own repository."""

    ref: str
    digest: str
    client: RegistryClient
    size: int

    def attest(
        self,
        signer: Signer,
        verdict: str = "reproduced",
        rebuilt: str | None = None,
        subject: str | None = None,
        tamper: dict[str, Any] | None = None,
    ) -> None:
        """Attach a signed rebuild attestation as a bundle referrer of the image."""
        # image_statement: rebuild_statement itself refuses a verdict other than the two
        statement = image_statement(
            self.ref.rsplit(":", 1)[0], subject or self.digest, REBUILD_PREDICATE,
            _predicate(self.digest, verdict, rebuilt),
        )  # fmt: skip
        signed = signer.sign_statement(statement)
        if tamper:
            signed = dataclasses.replace(signed, bundle={**signed.bundle, **tamper})
        body, blobs = bundle_referrer_manifest(signed, self.digest, self.size, OCI_MANIFEST)
        for blob_digest, blob in blobs.items():
            self.client.push_blob(blob_digest, blob)
        self.client.add_referrer(self.digest, body)


def _predicate(digest: str, verdict: str, rebuilt: str | None) -> dict[str, Any]:
    rebuilt = rebuilt or (digest if verdict == "reproduced" else OTHER_DIGEST)
    predicate: dict[str, Any] = {
        "verdict": verdict,
        "rebuiltDigest": rebuilt,
        "platforms": {"linux/amd64": {"expected": digest, "rebuilt": rebuilt}},
        "provenance": {"digest": {"sha256": "cd" * 32}, "builderId": "https://modelseal.dev/builders/local/v1"},
        "source": {"commit": "0" * 40},
        "rebuilder": {"modelseal": "0.0.0", "builder": {"name": "fresh", "driver": "docker"}},
        "rebuiltOn": "2026-12-01T00:00:00Z",
    }  # fmt: skip
    if verdict == "differs":
        predicate["differences"] = [{"platform": "linux/amd64", "part": "layer 0", "detail": "/srv/x"}]  # fmt: skip
    return predicate


def _seal(registry: str, repo: str, layout: tuple[OciLayout, str], keys: Keys, tmp: Path) -> Image:
    oci, digest = layout
    ref = ImageRef.parse(f"{registry}/{repo}:1.0")
    publish(
        ref, oci, digest, signer=keys.signer("main"), pusher="builtin",
        attestations=statements(ref.name, digest, FINISHED), out_dir=tmp,
    )  # fmt: skip
    client = RegistryClient(registry, repo)
    return Image(f"{ref.name}:1.0", digest, client, len(oci.blob(digest).read_bytes()))


@pytest.fixture(scope="module")
def rebuilt(
    registry: str,
    busybox_layout: tuple[OciLayout, str],
    keys: Keys,
    local_trust: TrustConfig,
    sigstore_stack: LocalSigstore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Image:
    """Reproduced by A and by the keyless rebuilder; B never attested."""
    image = _seal(registry, "rb/agreed", busybox_layout, keys, tmp_path_factory.mktemp("agreed"))
    image.attest(keys.signer("a"))
    token = sigstore_stack.token(sub=REBUILDER_EMAIL, email=REBUILDER_EMAIL)
    image.attest(KeylessSigner(local_trust, identity_token=token))
    return image


def _verify(image: Image | str, keys: Keys, *rebuilders: Rebuilder, **kw: Any) -> VerifyResult:
    ref = image.ref if isinstance(image, Image) else image
    factory = kw.pop("client_factory", None)
    options = VerifyOptions(keys.expected("main"), rebuilders=rebuilders, **kw)
    return verify_image(ref, options, client_factory=factory)


def _rebuild(result: VerifyResult) -> tuple[bool, str]:
    (check,) = [c for c in result.checks if c.name == "rebuild"]
    return check.ok, check.detail


def _keyless(stack: LocalSigstore, trust: Path, identity: str = REBUILDER_EMAIL) -> Rebuilder:
    expected = ExpectedSigner(issuer=stack.issuer_url, identity=identity, trust_config=trust)
    return Rebuilder(identity, expected)


def test_agreeing_rebuilders_pass_and_a_missing_one_is_named(rebuilt: Image, keys: Keys) -> None:
    result = _verify(rebuilt, keys, keys.rebuilder("a"))
    assert result.ok, result.checks
    assert [c.name for c in result.checks][-1] == "rebuild"
    assert _rebuild(result) == (
        True, "1 of 1 rebuilders reproduced the digest (need 1); agreed: key:a.pub; "
        "1 rebuild attestation(s) signed by none of them ignored",  # the keyless rebuilder's
    )  # fmt: skip
    # A and B required, only A attested: fails, naming B and why
    both = _verify(rebuilt, keys, keys.rebuilder("a"), keys.rebuilder("b"))
    ok, detail = _rebuild(both)
    assert not ok and not both.ok
    assert detail.startswith("only 1 of 2 rebuilders reproduced the digest (need 2)")
    assert "agreed: key:a.pub; not: key:b.pub (no rebuild attestation by it verifies)" in detail
    # the other checks are unaffected: the image's own signer still verifies everything else
    assert all(c.ok for c in both.checks if c.name != "rebuild"), both.checks
    # --min-rebuilds 1 of A, B
    one = _verify(rebuilt, keys, keys.rebuilder("a"), keys.rebuilder("b"), min_rebuilds=1)
    assert one.ok and _rebuild(one)[1].startswith(
        "1 of 2 rebuilders reproduced the digest (need 1)"
    )
    assert [(v.rebuilder, v.agrees) for v in one.rebuilds] == [("key:a.pub", True), ("key:b.pub", False)]  # fmt: skip
    assert one.to_json()["rebuilds"][1] == {
        "rebuilder": "key:b.pub", "agrees": False, "why": "no rebuild attestation by it verifies",
    }  # fmt: skip
    # without rebuilders there is no rebuild check at all
    plain = _verify(rebuilt, keys)
    assert "rebuild" not in [c.name for c in plain.checks] and "rebuilds" not in plain.to_json()


def test_keyless_rebuilder_by_exact_identity(
    rebuilt: Image, keys: Keys, sigstore_stack: LocalSigstore, trust_config_path: Path
) -> None:
    result = _verify(
        rebuilt, keys, _keyless(sigstore_stack, trust_config_path), keys.rebuilder("a")
    )
    assert result.ok, result.checks
    assert f"agreed: {REBUILDER_EMAIL}, key:a.pub" in _rebuild(result)[1]
    wrong = _verify(
        rebuilt, keys, _keyless(sigstore_stack, trust_config_path, "mallory@modelseal.test")
    )
    ok, detail = _rebuild(wrong)
    assert not ok
    assert "not: mallory@modelseal.test (no rebuild attestation by it verifies)" in detail
    # A's and the keyless rebuilder's attestations were seen, signed by no required rebuilder
    assert detail.endswith("2 rebuild attestation(s) signed by none of them ignored")


def test_attestations_that_do_not_count(
    registry: str, busybox_layout: tuple[OciLayout, str], keys: Keys, tmp_path: Path
) -> None:
    image = _seal(registry, "rb/disagreed", busybox_layout, keys, tmp_path)
    image.attest(keys.signer("a"))
    image.attest(keys.signer("a"), verdict="differs")  # A contradicts itself
    image.attest(keys.signer("b"), verdict="differs")
    image.attest(keys.signer("c"), rebuilt=OTHER_DIGEST)  # "reproduced", but another digest
    image.attest(keys.signer("d"), subject=OTHER_DIGEST)  # about another image
    image.attest(keys.signer("x"), verdict="probably", rebuilt=image.digest)
    cases = {
        "a": f"key:a.pub (conflicting: it attested both reproduced and differs (rebuilt "
        f"{OTHER_DIGEST}) for this digest)",
        "b": f"key:b.pub (its rebuild differs (rebuilt {OTHER_DIGEST}))",
        "c": f"key:c.pub (it says reproduced but rebuilt {OTHER_DIGEST}, not the image digest)",
        "d": f"key:d.pub (its rebuild attestation is about another image (subject {OTHER_DIGEST}))",
        "x": "key:x.pub (its rebuild attestation's verdict is probably)",
    }
    for name, reason in cases.items():
        result = _verify(image, keys, keys.rebuilder(name))
        ok, detail = _rebuild(result)
        assert not ok and not result.ok, (name, detail)
        assert detail.startswith("only 0 of 1 rebuilders reproduced the digest (need 1)"), detail
        assert f"; not: {reason}" in detail, (name, detail)
    # every one of them at once, one needed: still none agrees
    everyone = _verify(image, keys, *(keys.rebuilder(n) for n in cases), min_rebuilds=1)
    assert not everyone.ok and all(not v.agrees for v in everyone.rebuilds)


def test_a_stranger_claiming_to_be_a_rebuilder_is_ignored(
    registry: str, busybox_layout: tuple[OciLayout, str], keys: Keys, tmp_path: Path
) -> None:
    image = _seal(registry, "rb/stranger", busybox_layout, keys, tmp_path)
    # signed by X, its (unauthenticated) key hint naming A's key
    a_hint = keys.signer("a").hint
    x_bundle = keys.signer("x").sign_statement(rebuild_statement("x", image.digest, _predicate(image.digest, "reproduced", None))).bundle  # fmt: skip
    material = {**x_bundle["verificationMaterial"], "publicKey": {"hint": a_hint}}
    image.attest(keys.signer("x"), tamper={"verificationMaterial": material})
    result = _verify(image, keys, keys.rebuilder("a"))
    ok, detail = _rebuild(result)
    assert not ok
    assert detail == (
        "only 0 of 1 rebuilders reproduced the digest (need 1); not: key:a.pub (no rebuild "
        "attestation by it verifies); 1 rebuild attestation(s) signed by none of them ignored"
    )


def test_rebuild_attestations_in_a_cosign_att_count_too(
    registry: str, busybox_layout: tuple[OciLayout, str], keys: Keys
) -> None:
    oci, digest = busybox_layout
    client = RegistryClient(registry, "rb/att")
    client.push_layout(oci, digest)
    client.tag("1.0", digest)
    signed = keys.signer("a").sign_statement(
        rebuild_statement(f"{registry}/rb/att", digest, _predicate(digest, "reproduced", None))
    )
    body, blobs = att_manifest([signed])
    for blob_digest, blob in blobs.items():
        client.push_blob(blob_digest, blob)
    client.push_manifest(cosign_tag(digest, "att"), body, OCI_MANIFEST)
    result = _verify(f"{registry}/rb/att:1.0", keys, keys.rebuilder("a"), keys.rebuilder("b"), min_rebuilds=1)  # fmt: skip
    assert _rebuild(result) == (
        True,
        "1 of 2 rebuilders reproduced the digest (need 1); agreed: key:a.pub; not: key:b.pub "
        "(no rebuild attestation by it verifies)",
    )


def test_the_annotation_is_only_a_hint(rebuilt: Image, keys: Keys, registry: str) -> None:
    """Anyone who may push can write referrer annotations: calling every referrer a rebuild
    attestation costs work, never a verdict — the image's own attestations still verify."""

    class Relabelling(RegistryClient):
        def get_manifest(self, ref: str) -> tuple[str, bytes, str]:
            media, body, got = super().get_manifest(ref)
            doc = json.loads(body)
            if got == rebuilt.digest:
                return media, body, got
            if doc.get("artifactType") == "application/vnd.dev.sigstore.bundle.v0.3+json":
                doc["annotations"]["dev.sigstore.bundle.predicateType"] = REBUILD_PREDICATE
            for layer in doc.get("layers", []):  # the cosign .att
                if "predicateType" in layer.get("annotations", {}):
                    layer["annotations"]["predicateType"] = REBUILD_PREDICATE
            return media, json.dumps(doc).encode(), got

    # The image's signer as a rebuilder too: its relabelled provenance, SBOM and scan report
    # verify as its, are not rebuild statements, and still count for their own checks.
    result = _verify(
        rebuilt, keys, keys.rebuilder("a"), keys.rebuilder("main"), min_rebuilds=1,
        client_factory=lambda host, repo: Relabelling(host, repo),
    )  # fmt: skip
    assert result.ok, result.checks
    assert result.rebuilds[1].why.startswith(
        "not a rebuild attestation (predicateType https://slsa.dev/provenance/v1)"
    ), result.rebuilds

    # and a rebuild attestation by A labelled as something else is not tried at all
    class Hiding(RegistryClient):
        def get_manifest(self, ref: str) -> tuple[str, bytes, str]:
            media, body, got = super().get_manifest(ref)
            doc = json.loads(body)
            if doc.get("annotations", {}).get("dev.sigstore.bundle.predicateType") == "https://modelseal.dev/rebuild/v1":  # fmt: skip
                doc["annotations"]["dev.sigstore.bundle.predicateType"] = "https://example.com/x"
                body = json.dumps(doc).encode()
            return media, body, got

    hidden = _verify(
        rebuilt, keys, keys.rebuilder("a"), client_factory=lambda host, repo: Hiding(host, repo)
    )
    assert _rebuild(hidden) == (
        False,
        "only 0 of 1 rebuilders reproduced the digest (need 1); not: key:a.pub (no rebuild "
        "attestation by it verifies)",
    )


def test_more_referrers_than_the_cap_stop_the_verification(rebuilt: Image, keys: Keys) -> None:
    """Every rebuild attestation costs a verification per rebuilder: the referrers verify
    reads stay under max_referrers, rebuilders or not."""

    # rb/agreed has 6 bundle referrers: the image signature, 3 attestations, 2 rebuilds
    def capped(cap: int) -> VerifyResult:
        limits = RegistryLimits(max_referrers=cap)
        return _verify(
            rebuilt, keys, keys.rebuilder("a"), keys.rebuilder("b"), min_rebuilds=1,
            client_factory=lambda host, repo: RegistryClient(host, repo, limits=limits),
        )  # fmt: skip

    assert capped(6).ok
    with pytest.raises(RegistryLimitError, match=r"has 6 referrers .*more than the limit max_referrers \(5\)"):  # fmt: skip
        capped(5)


# -- the command line and the policy ----------------------------------------------------------


def test_cli_flags_and_json(
    rebuilt: Image, keys: Keys, sigstore_stack: LocalSigstore, trust_config_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    main_key = ["--key", str(keys.public("main"))]
    a, b = f"key:{keys.public('a')}", f"key:{keys.public('b')}"
    assert main(["verify", rebuilt.ref, *main_key, "--require-rebuild-by", a]) == 0
    out = capsys.readouterr().out
    assert f"✓ rebuild      1 of 1 rebuilders reproduced the digest (need 1); agreed: {a}" in out
    assert f"      ✓ {a}: reproduced the digest" in out
    code = main(["verify", rebuilt.ref, *main_key, "--require-rebuild-by", a, "--require-rebuild-by", b, "--format", "json"])  # fmt: skip
    assert code == 1
    result = json.loads(capsys.readouterr().out)
    assert not result["verified"]
    check = result["checks"][-1]
    assert check["name"] == "rebuild" and not check["ok"]
    assert f"not: {b} (no rebuild attestation by it verifies)" in check["detail"]
    assert [r["agrees"] for r in result["rebuilds"]] == [True, False]
    assert main(["verify", rebuilt.ref, *main_key, "--require-rebuild-by", a, "--require-rebuild-by", b, "--min-rebuilds", "1"]) == 0  # fmt: skip
    capsys.readouterr()
    # the keyless rebuilder: its issuer from --rebuild-oidc-issuer, or from the signer's flag
    keyless = ["--require-rebuild-by", REBUILDER_EMAIL, "--trust-config", str(trust_config_path)]
    assert main(["verify", rebuilt.ref, *main_key, *keyless, "--rebuild-oidc-issuer", sigstore_stack.issuer_url]) == 0  # fmt: skip
    assert f"✓ {REBUILDER_EMAIL}: reproduced the digest" in capsys.readouterr().out
    # main signer keyless (identity and issuer flags): the rebuilder takes that issuer
    signer = ["--certificate-identity", "release-bot@modelseal.test", "--certificate-oidc-issuer", sigstore_stack.issuer_url]  # fmt: skip
    code = main(["verify", rebuilt.ref, *signer, *keyless])
    printed = capsys.readouterr().out
    assert "✓ rebuild" in printed and code == 1  # the image itself is signed with a key
    wrong = ["--require-rebuild-by", "mallory@modelseal.test", "--trust-config", str(trust_config_path)]  # fmt: skip
    assert main(["verify", rebuilt.ref, *main_key, *wrong, "--rebuild-oidc-issuer", sigstore_stack.issuer_url]) == 1  # fmt: skip
    assert (
        "✗ mallory@modelseal.test: no rebuild attestation by it verifies" in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--min-rebuilds", "2"], "--min-rebuilds and --rebuild-oidc-issuer go with --require-rebuild-by"),
        (["--rebuild-oidc-issuer", "https://issuer.example"], "go with --require-rebuild-by"),
        (["--require-rebuild-by", "KEY_A", "--min-rebuilds", "2"], "--min-rebuilds 2: must be from 1 to the number of rebuilders required (1;"),
        (["--require-rebuild-by", "bot@example.com"], "--require-rebuild-by bot@example.com: a keyless rebuilder needs its OIDC issuer"),
        (["--require-rebuild-by", "key:"], "--require-rebuild-by key: needs a file"),
        (["--require-rebuild-by", "key:nope.pem"], "rebuilder key:nope.pem: cannot read rebuilder public key nope.pem"),
        (["--require-rebuild-by", "KEY_A", "--require-rebuild-by", "KEY_A_COPY"], "is the same rebuilder as key:"),
        (["--require-rebuild-by", "KEY_PRIVATE"], "is not a PEM public key"),
        (["--require-rebuild-by", "KEY_A"] * 17, "at most 16 rebuilders can be required"),
    ],
)  # fmt: skip
def test_cli_usage_errors_exit_2(
    extra: list[str], message: str, keys: Keys, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Caught before the registry is asked anything (the image names a closed port)."""
    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "a-copy.pub"
    copy.write_bytes(keys.public("a").read_bytes())
    names = {"KEY_A": f"key:{keys.public('a')}", "KEY_A_COPY": f"key:{copy}",
             "KEY_PRIVATE": f"key:{keys.pairs['a'][0]}"}  # fmt: skip
    argv = [names.get(x, x) for x in extra]
    code = main(["verify", "127.0.0.1:9/rb/x:1.0", "--key", str(keys.public("main")), *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in " ".join(err.split()), err


@pytest.mark.parametrize("value", ["0", "17", "two", "-1"])
def test_min_rebuilds_out_of_range_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main(["verify", "127.0.0.1:9/rb/x:1.0", "--key", "k.pub", "--require-rebuild-by", "key:a", "--min-rebuilds", value])  # fmt: skip
    assert e.value.code == 2
    assert "expected a whole number from 1 to 16" in capsys.readouterr().err


def test_policy_section(
    rebuilt: Image, keys: Keys, sigstore_stack: LocalSigstore, trust_config_path: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    for name in ("main", "a", "b"):
        (tmp_path / f"{name}.pub").write_bytes(keys.public(name).read_bytes())
    (tmp_path / "trust.json").write_bytes(trust_config_path.read_bytes())
    monkeypatch.chdir(tmp_path)
    policy = tmp_path / "modelseal.yml"
    policy.write_text(
        "version: 1\n"
        "sign: {trust_config: trust.json}\n"
        "verify:\n"
        "  public_key: main.pub\n"
        "  require_rebuild_by:\n"
        "    - key: a.pub\n"
        "    - key: b.pub\n"
        f"    - {{identity: {REBUILDER_EMAIL}, issuer: {sigstore_stack.issuer_url}}}\n"
        "  min_rebuilds: 2\n"
    )
    assert main(["verify", rebuilt.ref, "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["checks"][-1]["detail"] == (
        f"2 of 3 rebuilders reproduced the digest (need 2); agreed: key:a.pub, {REBUILDER_EMAIL}; "
        "not: key:b.pub (no rebuild attestation by it verifies)"
    )
    # flags replace the policy's list whole (and its min_rebuilds): B alone, not agreed
    assert main(["verify", rebuilt.ref, "--require-rebuild-by", "key:b.pub", "--format", "json"]) == 1  # fmt: skip
    detail = json.loads(capsys.readouterr().out)["checks"][-1]["detail"]
    assert detail == (
        "only 0 of 1 rebuilders reproduced the digest (need 1); not: key:b.pub (no rebuild "
        "attestation by it verifies); 2 rebuild attestation(s) signed by none of them ignored"
    )
    # all three required (no min_rebuilds): B is missing
    policy.write_text(policy.read_text().replace("  min_rebuilds: 2\n", ""))
    assert main(["verify", rebuilt.ref]) == 1
    assert "only 2 of 3 rebuilders reproduced the digest (need 3)" in capsys.readouterr().out
    # a keyless entry with no issuer anywhere, and min_rebuilds over the list
    policy.write_text(
        f"version: 1\nverify:\n  public_key: main.pub\n  require_rebuild_by: [{{identity: {REBUILDER_EMAIL}}}]\n"
    )
    assert main(["verify", rebuilt.ref]) == 2
    assert "needs an issuer (on the entry, or verify.issuer)" in capsys.readouterr().err
    policy.write_text(
        "version: 1\nverify:\n  public_key: main.pub\n  require_rebuild_by: [{key: a.pub}]\n  min_rebuilds: 2\n"
    )
    assert main(["verify", rebuilt.ref]) == 2
    assert (
        "min_rebuilds is 2, more than the 1 rebuilders require_rebuild_by lists"
        in capsys.readouterr().err
    )
