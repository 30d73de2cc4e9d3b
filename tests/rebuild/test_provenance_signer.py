"""The signer a rebuild reports is the provenance's, not whichever signature of the image
verified first: here the image is signed by one keyless identity and its provenance (a cosign
``.att``, read after the bundle referrers) by another, both matching the signer flags' regexp."""

from __future__ import annotations

from pathlib import Path

from tests.support.sigstore_local import LocalSigstore

from modelseal.imagebuild.context import NORMALIZATION_VERSION
from modelseal.oci import OciLayout
from modelseal.publish.cosign import att_manifest, cosign_tag
from modelseal.publish.provenance import ProvenanceInput, provenance_statement
from modelseal.publish.publisher import ImageRef, publish
from modelseal.publish.registry import OCI_MANIFEST, RegistryClient
from modelseal.rebuild.plan import provenance_from_image
from modelseal.sign.keyless import KeylessSigner
from modelseal.sign.trust import TrustConfig
from modelseal.sign.verify import ExpectedSigner


def test_the_reported_signer_is_the_provenances(
    registry: str,
    busybox_layout: tuple[OciLayout, str],
    sigstore_stack: LocalSigstore,
    local_trust: TrustConfig,
    trust_config_path: Path,
    tmp_path: Path,
) -> None:
    oci, digest = busybox_layout
    ref = ImageRef.parse(f"{registry}/rb/signer:1.0")

    def signer(email: str) -> KeylessSigner:
        return KeylessSigner(
            local_trust, identity_token=sigstore_stack.token(sub=email, email=email)
        )

    # The image signature (a bundle referrer) by the release bot ...
    publish(
        ref, oci, digest, signer=signer("release-bot@modelseal.test"), pusher="builtin",
        attestations=(), out_dir=tmp_path,
    )  # fmt: skip
    # ... the provenance (a cosign .att) by the build bot.
    statement = provenance_statement(
        ProvenanceInput(
            image_name=ref.name, manifest_digest=digest, builder_id="https://example.com/b",
            invocation_id="run-1", started_on="2026-01-01T00:00:00Z",
            finished_on="2026-01-01T00:00:01Z", source_date_epoch=1700000000,
            dockerfile="Dockerfile", commit="1" * 40, context_path=".",
            dockerfile_path="Dockerfile", normalization_version=NORMALIZATION_VERSION,
        )
    )  # fmt: skip
    body, blobs = att_manifest([signer("build-bot@modelseal.test").sign_statement(statement)])
    client = RegistryClient(registry, "rb/signer")
    for blob_digest, blob in blobs.items():
        client.push_blob(blob_digest, blob)
    client.push_manifest(cosign_tag(digest, "att"), body, OCI_MANIFEST)
    expected = ExpectedSigner(
        issuer=sigstore_stack.issuer_url, identity_regexp=r"^[a-z-]+@modelseal\.test$",
        trust_config=trust_config_path,
    )  # fmt: skip
    signed, got, _, _ = provenance_from_image(
        client, ImageRef.parse(f"{ref.name}@{digest}", allow_digest=True), expected
    )
    assert got == digest
    assert signed.signer.startswith("build-bot@modelseal.test"), signed.signer
