"""cosign's registry formats: byte-for-byte against what cosign 2.5 wrote (tests/data/cosign-2.5),
and interop both ways with the real cosign on a local registry."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.support.statements import statements
from tests.support.tools import CosignRunner

from modelseal.oci import OciLayout
from modelseal.publish.cosign import (
    BUNDLE_CONTENT_ANNOTATION,
    BUNDLE_PREDICATE_TYPE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    CREATED_ANNOTATION,
    DSSE_MEDIA_TYPE,
    EMPTY_BLOB,
    EMPTY_DIGEST,
    PREDICATE_TYPE_ANNOTATION,
    REKOR_BUNDLE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    CosignFormatError,
    att_manifest,
    bundle_referrer_manifest,
    cosign_tag,
    decode_envelope,
    parse_att_manifest,
    parse_sig_manifest,
    parse_simple_signing_payload,
    sig_manifest,
    simple_signing_payload,
)
from modelseal.publish.registry import OCI_MANIFEST, RegistryClient, sha256_digest
from modelseal.publish.statements import (
    REBUILD_PREDICATE,
    SCAN_REPORT_PREDICATE,
    openvex_statement,
    rebuild_statement,
)
from modelseal.sign.dsse import dsse_pae
from modelseal.sign.interface import IN_TOTO_PAYLOAD_TYPE, Signed
from modelseal.sign.key import KeySigner, generate_ephemeral_key

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "cosign-2.5"
GOLDEN_IMAGE = "sha256:8f456fe77c8faa7caacae58d654356559b98f4c22c6807a75b9c2544757d335c"
GOLDEN_REF = "127.0.0.1:47879/seal/app"


def _golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def _cosign_pub(path: Path) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def _ecdsa_ok(pub: ec.EllipticCurvePublicKey, sig_b64: str | bytes, data: bytes) -> bool:
    sig = base64.b64decode(sig_b64) if isinstance(sig_b64, str) else sig_b64
    try:
        pub.verify(sig, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# -- byte-for-byte against cosign 2.5 --------------------------------------------------------------


def test_simple_signing_payload_is_cosigns() -> None:
    payload = simple_signing_payload(GOLDEN_REF, GOLDEN_IMAGE)
    assert payload == _golden("sig-layer.json")
    assert parse_simple_signing_payload(payload) == (GOLDEN_REF, GOLDEN_IMAGE)
    with_optional = json.loads(
        simple_signing_payload(GOLDEN_REF, GOLDEN_IMAGE, {"b": "2", "a": "1"})
    )
    assert list(with_optional["optional"]) == ["a", "b"]
    with pytest.raises(CosignFormatError):
        simple_signing_payload(GOLDEN_REF, "sha256:abc")
    with pytest.raises(CosignFormatError):
        parse_simple_signing_payload(b'{"critical": {}}')


def test_sig_manifest_is_byte_identical_to_cosigns() -> None:
    golden = json.loads(_golden("sig-manifest.json"))
    signature = golden["layers"][0]["annotations"][SIGNATURE_ANNOTATION]
    signed = Signed("message-signature", {}, _golden("sig-layer.json"), signature)
    manifest, blobs = sig_manifest([signed])
    assert manifest == _golden("sig-manifest.json")
    assert set(blobs) == {golden["config"]["digest"], golden["layers"][0]["digest"]}
    assert all(sha256_digest(b) == d for d, b in blobs.items())
    # and cosign's signature is plain ECDSA-SHA256 over the payload
    layers = parse_sig_manifest(manifest, blobs.__getitem__)
    assert [layer.content for layer in layers] == [_golden("sig-layer.json")]
    pub = _cosign_pub(GOLDEN / "cosign.pub")
    assert _ecdsa_ok(pub, layers[0].annotations[SIGNATURE_ANNOTATION], layers[0].content)
    tampered = layers[0].content.replace(b"seal/app", b"seal/apq")
    assert not _ecdsa_ok(pub, layers[0].annotations[SIGNATURE_ANNOTATION], tampered)


def test_att_manifest_is_byte_identical_to_cosigns() -> None:
    envelope = _golden("att-layer.json")
    payload_type, payload, sigs = decode_envelope(envelope)
    signed = Signed(
        "dsse-envelope", {}, payload, base64.b64encode(sigs[0][1]).decode(), dsse_envelope=envelope
    )
    manifest, blobs = att_manifest([signed])
    assert manifest == _golden("att-manifest.json")
    [layer] = parse_att_manifest(manifest, blobs.__getitem__)
    assert layer.annotations[PREDICATE_TYPE_ANNOTATION] == "https://slsa.dev/provenance/v1"
    assert layer.annotations[SIGNATURE_ANNOTATION] == ""
    payload_type, payload, sigs = decode_envelope(layer.content)
    assert payload_type == IN_TOTO_PAYLOAD_TYPE and sigs[0][0] == ""
    pub = _cosign_pub(GOLDEN / "cosign.pub")
    assert _ecdsa_ok(pub, sigs[0][1], dsse_pae(payload_type, payload))
    assert not _ecdsa_ok(pub, sigs[0][1], dsse_pae(payload_type, payload + b" "))


def test_bundle_referrer_has_cosigns_shape() -> None:
    golden = json.loads(_golden("bundle-referrer-manifest.json"))
    signer = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    signed = signer.sign_statement(
        {"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://slsa.dev/provenance/v1",
         "subject": [{"name": GOLDEN_REF, "digest": {"sha256": GOLDEN_IMAGE[7:]}}], "predicate": {}}
    )  # fmt: skip
    created = "2026-11-23T13:40:03Z"
    manifest_bytes, blobs = bundle_referrer_manifest(
        signed, GOLDEN_IMAGE, 411, OCI_MANIFEST, created=1795441203
    )
    manifest = json.loads(manifest_bytes)
    assert manifest["annotations"][CREATED_ANNOTATION] == created
    # everything but the bundle layer's digest and size is what cosign wrote
    for doc in (manifest, golden):
        del doc["layers"][0]["digest"], doc["layers"][0]["size"]
    assert manifest == golden
    assert list(json.loads(manifest_bytes)) == list(
        json.loads(_golden("bundle-referrer-manifest.json"))
    )
    assert blobs[EMPTY_DIGEST] == EMPTY_BLOB == b"{}"
    [bundle] = [b for d, b in blobs.items() if d != EMPTY_DIGEST]
    assert json.loads(bundle) == signed.bundle
    # a message signature: content annotation says so; no predicate unless one is given
    message = signer.sign_message(simple_signing_payload(GOLDEN_REF, GOLDEN_IMAGE))
    annotations = json.loads(bundle_referrer_manifest(message, GOLDEN_IMAGE, 411)[0])["annotations"]
    assert annotations == {BUNDLE_CONTENT_ANNOTATION: "message-signature"}
    annotations = json.loads(
        bundle_referrer_manifest(
            message, GOLDEN_IMAGE, 411, predicate_type="https://sigstore.dev/cosign/sign/v1"
        )[0]
    )["annotations"]
    assert annotations[BUNDLE_PREDICATE_TYPE_ANNOTATION] == "https://sigstore.dev/cosign/sign/v1"


def test_keyless_annotations_and_parsing_checks() -> None:
    rekor = {
        "SignedEntryTimestamp": "MEUC",
        "Payload": {"body": "e30=", "integratedTime": 1, "logIndex": 2, "logID": "ab"},
    }
    signed = Signed(
        "message-signature", {}, simple_signing_payload(GOLDEN_REF, GOLDEN_IMAGE), "c2ln",
        certificate_pem="-----BEGIN CERTIFICATE-----\nleaf\n-----END CERTIFICATE-----\n",
        chain_pem="-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n",
        rekor_bundle=rekor,
    )  # fmt: skip
    manifest, blobs = sig_manifest([signed, replace(signed, signature_b64="b3RoZXI=")])
    layers = parse_sig_manifest(manifest, blobs.__getitem__)
    assert len(layers) == 2
    assert layers[0].annotations[CERTIFICATE_ANNOTATION] == signed.certificate_pem
    assert layers[0].annotations[CHAIN_ANNOTATION] == signed.chain_pem
    assert json.loads(layers[0].annotations[REKOR_BUNDLE_ANNOTATION]) == rekor
    assert layers[1].annotations[SIGNATURE_ANNOTATION] == "b3RoZXI="
    config = json.loads(blobs[json.loads(manifest)["config"]["digest"]])
    assert len(config["history"]) == len(config["rootfs"]["diff_ids"]) == 2
    # a blob that does not match its digest is refused; other media types are skipped
    layer_digest = json.loads(manifest)["layers"][0]["digest"]
    with pytest.raises(CosignFormatError, match="does not match"):
        parse_sig_manifest(manifest, lambda d: b"x" if d == layer_digest else blobs[d])
    assert parse_att_manifest(manifest, blobs.__getitem__) == []
    with pytest.raises(CosignFormatError):
        parse_sig_manifest(b"not json", blobs.__getitem__)
    with pytest.raises(ValueError, match="message signatures"):
        sig_manifest([replace(signed, content="dsse-envelope")])
    with pytest.raises(ValueError, match="DSSE"):
        att_manifest([signed])
    assert cosign_tag(GOLDEN_IMAGE, "sig") == "sha256-" + GOLDEN_IMAGE[7:] + ".sig"
    assert cosign_tag(GOLDEN_IMAGE, "att").endswith(".att")


# -- interop with the real cosign on a local registry -------------------------------------------


def _push_image(
    registry: str, busybox_layout: tuple[OciLayout, str], repository: str
) -> tuple[RegistryClient, str, int]:
    layout, digest = busybox_layout
    client = RegistryClient(registry, repository, backoff=0.01)
    client.push_layout(layout, digest)
    return client, digest, len(client.get_manifest(digest)[1])


def _push(client: RegistryClient, tag: str, manifest: bytes, blobs: dict[str, bytes]) -> None:
    for digest, blob in blobs.items():
        client.push_blob(digest, blob)
    client.push_manifest(tag, manifest, OCI_MANIFEST)


def _fetch_blob(client: RegistryClient) -> Any:
    def fetch(digest: str) -> bytes:
        return client._request("GET", f"/v2/{client.repository}/blobs/{digest}").body

    return fetch


VERIFY = ("--insecure-ignore-tlog=true", "--allow-http-registry")


def test_cosign_verifies_what_we_push(
    registry: str, busybox_layout: tuple[OciLayout, str], cosign: CosignRunner, tmp_path: Path
) -> None:
    private, public = generate_ephemeral_key(tmp_path / "keys")
    signer = KeySigner.from_file(private)
    repo = "seal/ours"
    client, digest, size = _push_image(registry, busybox_layout, repo)
    image = f"{registry}/{repo}"
    ref = f"{image}@{digest}"

    sig = signer.sign_message(simple_signing_payload(image, digest))
    _push(client, cosign_tag(digest, "sig"), *sig_manifest([sig]))
    att, sbom, scan = (signer.sign_statement(a.statement) for a in statements(image, digest))
    _push(client, cosign_tag(digest, "att"), *att_manifest([att, sbom, scan]))

    proc = cosign("verify", "--key", str(public), *VERIFY, ref)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["critical"]["image"]["docker-manifest-digest"] == digest

    for kind, signed in (
        ("slsaprovenance1", att),
        ("cyclonedx", sbom),
        (SCAN_REPORT_PREDICATE, scan),
    ):
        proc = cosign("verify-attestation", "--key", str(public), *VERIFY, "--type", kind, ref)
        assert proc.returncode == 0, (kind, proc.stderr)
        payloads = [
            json.loads(base64.b64decode(json.loads(line)["payload"]))
            for line in proc.stdout.splitlines()
        ]
        assert payloads == [json.loads(signed.payload)], kind

    # the Sigstore bundle as an OCI referrer, alone in its own repository, so that only the
    # --new-bundle-format path can find it (distribution 2.8: through the fallback tag)
    bundle_repo = "seal/bundle-only"
    bundle_client, _, _ = _push_image(registry, busybox_layout, bundle_repo)
    manifest, blobs = bundle_referrer_manifest(att, digest, size, OCI_MANIFEST, created=1700000060)
    for blob_digest, blob in blobs.items():
        bundle_client.push_blob(blob_digest, blob)
    bundle_client.add_referrer(digest, manifest)
    bundle_ref = f"{registry}/{bundle_repo}@{digest}"
    proc = cosign(
        "verify-attestation", "--new-bundle-format", "--trusted-root", str(cosign.trusted_root),
        "--key", str(public), *VERIFY, "--type", "slsaprovenance1", bundle_ref,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # the legacy path finds nothing there
    proc = cosign(
        "verify-attestation", "--key", str(public), *VERIFY, "--type", "slsaprovenance1", bundle_ref
    )
    assert proc.returncode != 0

    # another key does not verify
    _, stranger = generate_ephemeral_key(tmp_path / "stranger")
    proc = cosign("verify", "--key", str(stranger), *VERIFY, ref)
    assert proc.returncode != 0


def test_cosign_rejects_tampered_payloads(
    registry: str, busybox_layout: tuple[OciLayout, str], cosign: CosignRunner, tmp_path: Path
) -> None:
    private, public = generate_ephemeral_key(tmp_path / "keys")
    signer = KeySigner.from_file(private)
    repo = "seal/tampered"
    client, digest, _ = _push_image(registry, busybox_layout, repo)
    image = f"{registry}/{repo}"
    ref = f"{image}@{digest}"

    sig = signer.sign_message(simple_signing_payload(image, digest))
    forged = replace(sig, payload=simple_signing_payload(image, digest, {"env": "prod"}))
    _push(client, cosign_tag(digest, "sig"), *sig_manifest([forged]))
    proc = cosign("verify", "--key", str(public), *VERIFY, ref)
    assert proc.returncode != 0
    assert "invalid signature" in proc.stderr

    att = signer.sign_statement(statements(image, digest)[0].statement)
    envelope = json.loads(att.dsse_envelope or b"")
    statement = json.loads(att.payload)
    statement["predicate"]["runDetails"]["builder"]["id"] = "https://evil.example/builder"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    tampered = replace(att, dsse_envelope=json.dumps(envelope).encode())
    _push(client, cosign_tag(digest, "att"), *att_manifest([tampered]))
    proc = cosign(
        "verify-attestation", "--key", str(public), *VERIFY, "--type", "slsaprovenance1", ref
    )
    assert proc.returncode != 0
    assert "no matching attestations" in proc.stderr


def test_we_read_and_verify_what_cosign_pushes(
    registry: str, busybox_layout: tuple[OciLayout, str], cosign: CosignRunner
) -> None:
    proc = cosign("generate-key-pair")
    assert proc.returncode == 0, proc.stderr
    pub = _cosign_pub(cosign.home / "cosign.pub")
    repo = "seal/theirs"
    client, digest, _ = _push_image(registry, busybox_layout, repo)
    image = f"{registry}/{repo}"
    ref = f"{image}@{digest}"
    fetch = _fetch_blob(client)

    proc = cosign(
        "sign", "--key", "cosign.key", "--tlog-upload=false", "-y", "--allow-http-registry", ref
    )
    assert proc.returncode == 0, proc.stderr
    [layer] = parse_sig_manifest(client.get_manifest(cosign_tag(digest, "sig"))[1], fetch)
    assert parse_simple_signing_payload(layer.content) == (image, digest)
    assert layer.content == simple_signing_payload(image, digest)
    assert _ecdsa_ok(pub, layer.annotations[SIGNATURE_ANNOTATION], layer.content)
    assert not _ecdsa_ok(pub, layer.annotations[SIGNATURE_ANNOTATION], layer.content + b"\n")

    predicate = cosign.home / "predicate.json"
    predicate.write_text(json.dumps(statements(image, digest)[0].statement["predicate"]))
    proc = cosign(
        "attest", "--key", "cosign.key", "--tlog-upload=false", "-y", "--allow-http-registry",
        "--type", "slsaprovenance1", "--predicate", str(predicate), ref,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifest = client.get_manifest(cosign_tag(digest, "att"))[1]
    assert json.loads(manifest)["layers"][0]["mediaType"] == DSSE_MEDIA_TYPE
    [layer] = parse_att_manifest(manifest, fetch)
    assert layer.annotations[PREDICATE_TYPE_ANNOTATION] == "https://slsa.dev/provenance/v1"
    payload_type, payload, sigs = decode_envelope(layer.content)
    assert payload_type == IN_TOTO_PAYLOAD_TYPE
    statement = json.loads(payload)
    assert statement["subject"][0]["digest"] == {"sha256": digest.removeprefix("sha256:")}
    # cosign 2.5 re-serializes the predicate through in-toto-golang's struct: empty lists are
    # dropped, metadata.invocationId becomes "invocationID", _type stays Statement/v0.1
    ours = json.loads(predicate.read_text())
    for key in ("buildType", "externalParameters"):
        assert statement["predicate"]["buildDefinition"][key] == ours["buildDefinition"][key]
    assert statement["predicate"]["runDetails"]["builder"] == ours["runDetails"]["builder"]
    assert _ecdsa_ok(pub, sigs[0][1], dsse_pae(payload_type, payload))
    assert not _ecdsa_ok(
        pub, sigs[0][1], dsse_pae(payload_type, payload.replace(b"Dockerfile", b"Evilfile"))
    )
    # the .sig layer's media type is cosign's, not a look-alike
    assert json.loads(client.get_manifest(cosign_tag(digest, "sig"))[1])["layers"][0][
        "mediaType"
    ] == (SIMPLE_SIGNING_MEDIA_TYPE)


def test_cosign_verifies_our_bundle_referrers_alone(
    registry: str, busybox_layout: tuple[OciLayout, str], cosign: CosignRunner, tmp_path: Path
) -> None:
    """The README's cosign 2.5 commands for the bundle referrers, on a repository holding only
    those (no .sig/.att): every attestation kind, including OpenVEX, verifies with
    --new-bundle-format; the image signature does not (cosign 2.5 reads it from .sig only)."""
    private, public = generate_ephemeral_key(tmp_path / "keys")
    signer = KeySigner.from_file(private)
    repo = "seal/referrers-only"
    client, digest, size = _push_image(registry, busybox_layout, repo)
    image = f"{registry}/{repo}"
    ref = f"{image}@{digest}"
    vex = {
        "@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://modelseal.dev/vex/1",
        "author": "modelseal", "timestamp": "2026-11-23T10:00:00Z", "version": 1,
        "statements": [{
            "vulnerability": {"name": "CVE-2023-45853"}, "status": "not_affected",
            "justification": "vulnerable_code_not_present",
            "products": [{"@id": f"pkg:oci/referrers-only@{digest}"}],
        }],
    }  # fmt: skip
    rebuild = rebuild_statement(image, digest, {"verdict": "reproduced", "rebuiltDigest": digest})
    atts = [signer.sign_statement(a.statement) for a in statements(image, digest)] + [
        signer.sign_statement(openvex_statement(image, digest, vex)),
        signer.sign_statement(rebuild),
    ]  # fmt: skip
    signed = [signer.sign_message(client.get_manifest(digest)[1]), *atts]
    for s in signed:
        manifest, blobs = bundle_referrer_manifest(s, digest, size, OCI_MANIFEST)
        for blob_digest, blob in blobs.items():
            client.push_blob(blob_digest, blob)
        client.add_referrer(digest, manifest)
    bundle = ("--new-bundle-format", "--trusted-root", str(cosign.trusted_root))

    # cosign 2.5 reads no image signature from a bundle referrer, with or without
    # --new-bundle-format (the README says so: it verifies the image by the cosign .sig)
    proc = cosign("verify", *bundle, "--key", str(public), *VERIFY, ref)
    assert proc.returncode != 0 and "no signatures found" in proc.stderr
    assert cosign("verify", "--key", str(public), *VERIFY, ref).returncode != 0  # no .sig
    kinds = ("slsaprovenance1", "cyclonedx", SCAN_REPORT_PREDICATE, "openvex", REBUILD_PREDICATE)
    for kind in kinds:
        proc = cosign("verify-attestation", *bundle, "--key", str(public), *VERIFY, "--type", kind, ref)  # fmt: skip
        assert proc.returncode == 0, (kind, proc.stderr)
        proc = cosign("verify-attestation", "--key", str(public), *VERIFY, "--type", kind, ref)
        assert proc.returncode != 0, kind  # no .att
    # and each from the cosign .att, cosign's default
    _push(client, cosign_tag(digest, "att"), *att_manifest(atts))
    for kind, att in zip(kinds, atts, strict=True):
        proc = cosign("verify-attestation", "--key", str(public), *VERIFY, "--type", kind, ref)
        assert proc.returncode == 0, (kind, proc.stderr)
        assert [json.loads(base64.b64decode(json.loads(line)["payload"])) for line in proc.stdout.splitlines()] == [json.loads(att.payload)], kind  # fmt: skip
    # another key verifies none of them
    _, stranger = generate_ephemeral_key(tmp_path / "stranger")
    proc = cosign("verify-attestation", *bundle, "--key", str(stranger), *VERIFY, "--type", "openvex", ref)  # fmt: skip
    assert proc.returncode != 0
