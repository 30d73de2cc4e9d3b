"""publish(): sign first, push by digest (skopeo), attach, tag last — against the real
docker-registry on 127.0.0.1, with a key signer."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from tests.support.statements import statements
from tests.support.tools import require

from modelseal.errors import ConfigError, ExitCode, PublishError
from modelseal.oci import OciLayout
from modelseal.policy import PolicyFileError, default_policy, load_policy_text
from modelseal.publish.cosign import cosign_tag
from modelseal.publish.publisher import ImageRef, publish
from modelseal.publish.registry import RegistryClient
from modelseal.publish.registry_limits import RegistryError
from modelseal.sign.interface import BUNDLE_MEDIA_TYPE, Signed, Signer, SigningError
from modelseal.sign.key import KeySigner


def test_image_ref_parsing() -> None:
    ref = ImageRef.parse("127.0.0.1:5000/seal/app:1.0")
    assert (ref.host, ref.repository, ref.tag, ref.name, ref.is_local) == (
        "127.0.0.1:5000", "seal/app", "1.0", "127.0.0.1:5000/seal/app", True,
    )  # fmt: skip
    assert ImageRef.parse("ghcr.io/org/model-server").tag is None
    assert not ImageRef.parse("ghcr.io/org/model-server").is_local
    with pytest.raises(ConfigError, match="not a digest"):
        ImageRef.parse("ghcr.io/org/app@sha256:" + "0" * 64)
    for bad in ("app:1.0", "org/app", "ghcr.io/Org/App", "ghcr.io/org/app:bad tag", ""):
        with pytest.raises(ConfigError, match="REGISTRY/REPOSITORY"):
            ImageRef.parse(bad)


def test_publish_signs_pushes_attaches_then_tags(
    registry: str, busybox_layout: tuple[OciLayout, str], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    require(shutil.which("skopeo") is not None, "skopeo")
    layout, digest = busybox_layout
    ref = ImageRef.parse(f"{registry}/seal/published:1.0")
    result = publish(
        ref, layout, digest,
        signer=KeySigner.from_file(keys[0]),
        attestations=statements(ref.name, digest),
        out_dir=tmp_path, extra_tags=("stable",), created=1700000000,
    )  # fmt: skip
    assert result.pushed_with == "skopeo"
    assert result.reference == f"{ref.name}@{digest}"
    assert result.tags == ("1.0", "stable")
    client = RegistryClient(registry, "seal/published")
    # the digest the gates judged is the digest that ships, under both tags
    assert client.get_manifest("1.0")[2] == digest
    assert client.get_manifest("stable")[2] == digest
    assert client.get_manifest(digest)[1] == layout.blob(digest).read_bytes()
    # cosign v2 tags and Sigstore bundle referrers (fallback tag on distribution 2.8)
    assert client.get_manifest(cosign_tag(digest, "sig"))[0]
    att = json.loads(client.get_manifest(cosign_tag(digest, "att"))[1])
    assert [layer["annotations"]["predicateType"] for layer in att["layers"]] == [
        "https://slsa.dev/provenance/v1",
        "https://cyclonedx.org/bom",
        "https://modelseal.dev/attestations/scan-report/v1",
    ]
    referrers = client.referrers(digest, BUNDLE_MEDIA_TYPE)
    kinds = sorted(
        (r["annotations"]["dev.sigstore.bundle.content"], r["annotations"].get("dev.sigstore.bundle.predicateType", ""))
        for r in referrers
    )  # fmt: skip
    assert kinds == [
        ("dsse-envelope", "https://cyclonedx.org/bom"),
        ("dsse-envelope", "https://modelseal.dev/attestations/scan-report/v1"),
        ("dsse-envelope", "https://slsa.dev/provenance/v1"),
        ("message-signature", ""),
    ]
    assert sorted(result.bundles) == ["image", "image-cosign", "provenance", "sbom", "scan-report"]
    for path in result.bundles.values():
        bundle = json.loads(path.read_text())
        assert bundle["mediaType"] == BUNDLE_MEDIA_TYPE
    # idempotent: a second publish of the same digest succeeds and moves nothing else
    again = publish(
        ref, layout, digest, signer=KeySigner.from_file(keys[0]),
        attestations=statements(ref.name, digest), out_dir=tmp_path / "again",
    )  # fmt: skip
    assert again.digest == digest
    assert client.get_manifest("1.0")[2] == digest
    # the first run's signatures are kept beside the second's, as cosign keeps them
    sig = json.loads(client.get_manifest(cosign_tag(digest, "sig"))[1])
    assert len(sig["layers"]) == 2
    att = json.loads(client.get_manifest(cosign_tag(digest, "att"))[1])
    assert len(att["layers"]) == 6
    config = json.loads(client.get_blob(sig["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [d["digest"] for d in sig["layers"]]


class _FailOn(RegistryClient):
    """The real client, except that pushing the manifest ``fail_ref`` fails like a dying
    registry (5xx after retries)."""

    fail_ref = ""

    def push_manifest(self, ref: str, body: bytes, media_type: str) -> str:
        if ref == self.fail_ref:
            raise RegistryError("registry answered 503", method="PUT", path=ref, status=503)
        return super().push_manifest(ref, body, media_type)


def test_registry_failing_mid_publish_moves_no_tag(
    registry: str, busybox_layout: tuple[OciLayout, str], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    layout, digest = busybox_layout
    ref = ImageRef.parse(f"{registry}/seal/halfway:1.0")
    client = _FailOn(registry, "seal/halfway", retries=0)
    client.fail_ref = cosign_tag(digest, "att")
    with pytest.raises(PublishError, match=r"No tag was moved \(1\.0 still point where they did\)"):
        publish(
            ref, layout, digest, signer=KeySigner.from_file(keys[0]),
            attestations=statements(ref.name, digest), out_dir=tmp_path, client=client,
        )  # fmt: skip
    probe = RegistryClient(registry, "seal/halfway")
    assert probe.get_manifest(digest)[2] == digest  # the image went up, by digest only
    with pytest.raises(RegistryError) as e:
        probe.get_manifest("1.0")
    assert e.value.status == 404


class _Down(Signer):
    mode = "keyless"

    def sign_message(self, payload: bytes) -> Signed:
        raise SigningError("Rekor at http://127.0.0.1:9 is unreachable after 3 attempts.")

    def sign_statement(self, statement: Mapping[str, Any]) -> Signed:
        raise AssertionError("not reached")


def test_signing_failure_pushes_nothing(
    registry: str, busybox_layout: tuple[OciLayout, str], tmp_path: Path
) -> None:
    layout, digest = busybox_layout
    ref = ImageRef.parse(f"{registry}/seal/neverpushed:1.0")
    with pytest.raises(SigningError, match="unreachable"):
        publish(
            ref, layout, digest, signer=_Down(), attestations=statements(ref.name, digest),
            out_dir=tmp_path,
        )  # fmt: skip
    with pytest.raises(RegistryError) as e:
        RegistryClient(registry, "seal/neverpushed").get_manifest(digest)
    assert e.value.status == 404


def test_registry_credentials_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelseal.publish.publisher import registry_credentials

    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text(
        json.dumps(
            {"auths": {"ghcr.io": {"auth": "ZG9ja2VyOmZyb20tY29uZmln"}}}
        )  # docker:from-config
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    creds = registry_credentials("ghcr.io", {})
    assert creds is not None and (creds.username, creds.password) == ("docker", "from-config")
    creds = registry_credentials("ghcr.io", {"GITHUB_TOKEN": "ghs_secret", "GITHUB_ACTOR": "bot"})
    assert creds is not None and (creds.username, creds.password) == ("bot", "ghs_secret")
    assert "ghs_secret" not in repr(creds)
    env = {
        "MODELSEAL_REGISTRY_USERNAME": "u",
        "MODELSEAL_REGISTRY_PASSWORD": "p",
        "GITHUB_TOKEN": "t",
    }
    creds = registry_credentials("ghcr.io", env)
    assert creds is not None and (creds.username, creds.password) == ("u", "p")
    # GitHub's token is only ever sent to GitHub's registry
    assert registry_credentials("registry.example.com", {"GITHUB_TOKEN": "t"}) is None


def test_skopeo_gets_credentials_by_file_not_argv(
    registry: str,
    busybox_layout: tuple[OciLayout, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require(shutil.which("skopeo") is not None, "skopeo")
    import modelseal.publish.publisher as publisher
    from modelseal.publish.registry_auth import Credentials

    seen: list[list[str]] = []
    real = publisher.run_tool

    def spy(argv: list[str], **kw: Any) -> Any:
        seen.append(list(argv))
        authfile = Path(argv[argv.index("--dest-authfile") + 1])
        assert oct(authfile.stat().st_mode & 0o777) == "0o600"
        assert "s3cr3t" not in " ".join(argv)
        return real(argv, **kw)

    monkeypatch.setattr(publisher, "run_tool", spy)
    layout, digest = busybox_layout
    ref = ImageRef.parse(f"{registry}/seal/authfile")
    # distribution without auth ignores the credentials; what matters is how they travel
    publish(ref, layout, digest, signer=None, attestations=[], out_dir=tmp_path,
            credentials=Credentials("user", "s3cr3t"))  # fmt: skip
    assert seen and not any("s3cr3t" in a for a in seen[0])
    assert not Path(seen[0][seen[0].index("--dest-authfile") + 1]).exists()  # removed after


def test_explicit_credentials_can_be_scoped_to_one_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelseal.publish.publisher import registry_credentials

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no config.json: nothing to fall back on

    env = {
        "MODELSEAL_REGISTRY_USERNAME": "u",
        "MODELSEAL_REGISTRY_PASSWORD": "p",
        "MODELSEAL_REGISTRY_HOST": "registry.example.com",
    }
    assert registry_credentials("registry.example.com", env) is not None
    assert registry_credentials("evil.example", env) is None


class _MustNotSign(Signer):
    mode = "key"

    def sign_message(self, payload: bytes) -> Signed:
        raise AssertionError("signed although the image cannot be pushed")

    def sign_statement(self, statement: Mapping[str, Any]) -> Signed:
        raise AssertionError("signed although the image cannot be pushed")


def _tiny_layout(root: Path, media_type: str) -> tuple[OciLayout, str]:
    """An OCI layout whose one top-level blob has ``media_type`` (enough for publish() to
    decide how to push; nothing here reaches a registry)."""
    body = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": []}).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(body)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": media_type, "digest": digest, "size": len(body)}
    ]}  # fmt: skip
    (root / "index.json").write_text(json.dumps(index))
    return OciLayout(root), digest


def test_missing_skopeo_without_the_opt_in_is_errored_before_signing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No silent fallback: skopeo is the pusher unless the policy says publish.pusher: builtin."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    layout, digest = _tiny_layout(tmp_path / "layout", "application/vnd.oci.image.manifest.v1+json")
    ref = ImageRef.parse("127.0.0.1:9/seal/noskopeo:1.0")
    with pytest.raises(PublishError) as e:
        publish(
            ref, layout, digest, signer=_MustNotSign(), attestations=[], out_dir=tmp_path / "out",
        )  # fmt: skip
    assert e.value.exit_code is ExitCode.ERRORED
    assert "skopeo was not found on PATH" in e.value.message
    assert "publish: {pusher: builtin}" in e.value.diagnostics()  # names the fix
    assert not (tmp_path / "out" / "bundles").exists()  # nothing signed, nothing written


def test_the_builtin_pusher_refuses_a_multi_platform_index(tmp_path: Path) -> None:
    layout, digest = _tiny_layout(tmp_path / "layout", "application/vnd.oci.image.index.v1+json")
    ref = ImageRef.parse("127.0.0.1:9/seal/index:1.0")
    with pytest.raises(PublishError, match="not a multi-platform index") as e:
        publish(
            ref, layout, digest, signer=_MustNotSign(), attestations=[], out_dir=tmp_path,
            pusher="builtin",
        )  # fmt: skip
    assert e.value.exit_code is ExitCode.ERRORED


def test_the_builtin_pusher_publishes_without_skopeo_when_opted_in(
    registry: str,
    busybox_layout: tuple[OciLayout, str],
    keys: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    layout, digest = busybox_layout
    ref = ImageRef.parse(f"{registry}/seal/builtin:1.0")
    result = publish(
        ref, layout, digest, signer=KeySigner.from_file(keys[0]),
        attestations=statements(ref.name, digest), out_dir=tmp_path, pusher="builtin",
    )  # fmt: skip
    assert result.pushed_with == "modelseal"
    client = RegistryClient(registry, "seal/builtin")
    assert client.get_manifest("1.0")[2] == digest
    assert client.get_manifest(digest)[1] == layout.blob(digest).read_bytes()
    assert client.get_manifest(cosign_tag(digest, "sig"))[0]


def test_the_policy_key_takes_skopeo_or_builtin_only() -> None:
    assert default_policy().policy.publish.pusher == "skopeo"
    loaded = load_policy_text("version: 1\npublish:\n  pusher: builtin\n", "modelseal.yml")
    assert loaded.policy.publish.pusher == "builtin"
    with pytest.raises(PolicyFileError, match=r"publish\.pusher"):
        load_policy_text("version: 1\npublish:\n  pusher: crane\n", "modelseal.yml")
