"""Verification: expected signers, Sigstore bundles, cosign v2 layers, real public bundles."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.support.sigstore_local import (
    DEFAULT_EMAIL,
    SIMPLE_SIGNING_PAYLOAD,
    cosign_annotations,
    sample_statement,
)

from modelseal.errors import ConfigError
from modelseal.sign.interface import (
    BUNDLE_MEDIA_TYPE,
    IN_TOTO_PAYLOAD_TYPE,
    Signed,
    VerificationError,
)
from modelseal.sign.key import KeySigner
from modelseal.sign.keyless import KeylessSigner
from modelseal.sign.trust import TrustConfig, production_trust
from modelseal.sign.verify import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    ExpectedSigner,
    verify_bundle,
    verify_cosign_attestation,
    verify_cosign_signature,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "sigstore"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
WHEEL = DATA / "rfc8785-0.1.2-py3-none-any.whl"
WHEEL_BUNDLE = DATA / "rfc8785-0.1.2-py3-none-any.whl.sigstore.json"
WHEEL_SIGNER = (
    "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"
)
NPM_BUNDLE = DATA / "npm-sigstore-3.1.0.provenance.sigstore.json"
NPM_SIGNER = "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main"
PAYLOAD = SIMPLE_SIGNING_PAYLOAD
statement = sample_statement


@pytest.fixture(scope="module")
def message(keyless_signer: KeylessSigner) -> Signed:
    return keyless_signer.sign_message(PAYLOAD)


@pytest.fixture(scope="module")
def attestation(keyless_signer: KeylessSigner) -> Signed:
    return keyless_signer.sign_statement(statement())


@pytest.fixture(scope="module")
def key_signer() -> KeySigner:
    return KeySigner(ec.generate_private_key(ec.SECP256R1()))


def key_expected(signer: KeySigner) -> ExpectedSigner:
    return ExpectedSigner(public_key_pem=signer.public_key_pem.encode())


# --- the expected signer ------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        "https://github.com/org/",
        "^https://github.com/org/.*",
        ".*@refs/tags/v1$",
        r"^x\$",
        "release-bot",
    ],
)
def test_unanchored_identity_regexp_is_refused(pattern: str) -> None:
    with pytest.raises(ConfigError, match="not anchored"):
        ExpectedSigner(issuer=GITHUB_ISSUER, identity_regexp=pattern)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"identity": "a@b"}, "needs the OIDC issuer"),
        ({"issuer": GITHUB_ISSUER}, "exactly one of"),
        ({"issuer": GITHUB_ISSUER, "identity": "a", "identity_regexp": "^a$"}, "exactly one of"),
        ({"issuer": GITHUB_ISSUER, "identity_regexp": "^(a$"}, "is invalid"),
        ({"public_key_pem": b"not a key"}, "not a PEM public key"),
        ({}, "needs the OIDC issuer"),
    ],
)
def test_expected_signer_refuses_incomplete_input(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ExpectedSigner(**kwargs)


def test_expected_key_must_be_p256() -> None:
    pem = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ConfigError, match="P-256"):
        ExpectedSigner(public_key_pem=pem)
    with pytest.raises(ConfigError, match="not both"):
        ExpectedSigner(public_key_pem=pem, issuer=GITHUB_ISSUER, identity="x")


def test_trust_file_is_loaded_up_front(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ExpectedSigner(issuer=GITHUB_ISSUER, identity="x", trust_config=tmp_path / "none.json")


# --- keyless bundles from the local stack -------------------------------------------------


def test_wrong_identity(message: Signed, local_trust: TrustConfig, issuer_url: str) -> None:
    expected = ExpectedSigner(
        issuer=issuer_url, identity="someone@else.test", trust_config=local_trust
    )
    with pytest.raises(VerificationError) as info:
        verify_bundle(message.bundle, payload=PAYLOAD, expected=expected)
    assert str(info.value) == (
        f"The certificate identity {DEFAULT_EMAIL} does not match the expected identity someone@else.test."
    )


def test_wrong_issuer(message: Signed, local_trust: TrustConfig, issuer_url: str) -> None:
    expected = ExpectedSigner(
        issuer=GITHUB_ISSUER, identity=DEFAULT_EMAIL, trust_config=local_trust
    )
    with pytest.raises(VerificationError) as info:
        verify_bundle(message.bundle, payload=PAYLOAD, expected=expected)
    assert str(info.value) == (
        f"The certificate issuer {issuer_url} does not match the expected issuer {GITHUB_ISSUER}."
    )


def test_identity_regexp(message: Signed, local_trust: TrustConfig, issuer_url: str) -> None:
    good = ExpectedSigner(
        issuer=issuer_url,
        identity_regexp=r"^release-bot@modelseal\.test$",
        trust_config=local_trust,
    )
    assert verify_bundle(message.bundle, payload=PAYLOAD, expected=good).identity == DEFAULT_EMAIL
    # anchored: a prefix of the identity is not enough
    bad = ExpectedSigner(
        issuer=issuer_url, identity_regexp=r"^release-bot$", trust_config=local_trust
    )
    with pytest.raises(VerificationError, match="does not match the expected identity regexp"):
        verify_bundle(message.bundle, payload=PAYLOAD, expected=bad)


def test_tampered_payload(message: Signed, expected: ExpectedSigner) -> None:
    with pytest.raises(VerificationError, match="payload was changed"):
        verify_bundle(message.bundle, payload=PAYLOAD + b" ", expected=expected)


def test_tampered_signature(message: Signed, expected: ExpectedSigner) -> None:
    bundle = copy.deepcopy(dict(message.bundle))
    other = ec.generate_private_key(ec.SECP256R1()).sign(PAYLOAD, ec.ECDSA(hashes.SHA256()))
    bundle["messageSignature"]["signature"] = base64.b64encode(other).decode()
    with pytest.raises(VerificationError, match="signature does not verify"):
        verify_bundle(bundle, payload=PAYLOAD, expected=expected)


def test_message_bundle_needs_the_payload(message: Signed, expected: ExpectedSigner) -> None:
    with pytest.raises(VerificationError, match="needs the signed payload"):
        verify_bundle(message.bundle, payload=None, expected=expected)


def test_tampered_statement(attestation: Signed, expected: ExpectedSigner) -> None:
    bundle = copy.deepcopy(dict(attestation.bundle))
    changed = json.dumps(statement(b"other model"), sort_keys=True, separators=(",", ":")).encode()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(changed).decode()
    with pytest.raises(VerificationError, match="signature does not verify"):
        verify_bundle(bundle, payload=None, expected=expected)


def test_dsse_payload_must_be_the_expected_statement(
    attestation: Signed, expected: ExpectedSigner
) -> None:
    verify_bundle(attestation.bundle, payload=attestation.payload, expected=expected)
    with pytest.raises(VerificationError, match="not the expected Statement"):
        verify_bundle(attestation.bundle, payload=b"{}", expected=expected)


def test_no_transparency_log_proof(message: Signed, expected: ExpectedSigner) -> None:
    bundle = copy.deepcopy(dict(message.bundle))
    bundle["verificationMaterial"]["tlogEntries"] = []
    with pytest.raises(VerificationError, match="No transparency log proof"):
        verify_bundle(bundle, payload=PAYLOAD, expected=expected)


def test_forged_log_promise(message: Signed, expected: ExpectedSigner) -> None:
    bundle = copy.deepcopy(dict(message.bundle))
    entry = bundle["verificationMaterial"]["tlogEntries"][0]
    entry["integratedTime"] = str(int(entry["integratedTime"]) - 3600)
    with pytest.raises(
        VerificationError, match=r"promise \(signed entry timestamp\) does not verify"
    ):
        verify_bundle(bundle, payload=PAYLOAD, expected=expected)


def test_untrusted_deployment(message: Signed, issuer_url: str) -> None:
    expected = ExpectedSigner(issuer=issuer_url, identity=DEFAULT_EMAIL)  # public instance
    with pytest.raises(VerificationError, match="Rekor keys of the public Sigstore instance"):
        verify_bundle(message.bundle, payload=PAYLOAD, expected=expected)


def test_untrusted_fulcio(
    message: Signed, trusted_root_path: Path, tmp_path: Path, issuer_url: str
) -> None:
    # The local Rekor and CT keys, but the public Fulcio CAs: the certificate must not pass.
    root = json.loads(trusted_root_path.read_text())
    public = production_trust().trusted_root._inner.to_dict()
    root["certificateAuthorities"] = public["certificateAuthorities"]
    mixed = tmp_path / "mixed_root.json"
    mixed.write_text(json.dumps(root))
    expected = ExpectedSigner(issuer=issuer_url, identity=DEFAULT_EMAIL, trust_config=mixed)
    with pytest.raises(
        VerificationError, match=f"does not chain to a Fulcio CA trusted by {mixed}"
    ):
        verify_bundle(message.bundle, payload=PAYLOAD, expected=expected)
    with pytest.raises(
        VerificationError, match=f"does not chain to a Fulcio CA trusted by {mixed}"
    ):
        verify_cosign_signature(PAYLOAD, cosign_annotations(message), expected)


def test_verify_only_trust(message: Signed, trusted_root_path: Path, issuer_url: str) -> None:
    expected = ExpectedSigner(
        issuer=issuer_url, identity=DEFAULT_EMAIL, trust_config=trusted_root_path
    )
    assert (
        verify_bundle(message.bundle_json(), payload=PAYLOAD, expected=expected).mode == "keyless"
    )


def test_mode_mismatch(message: Signed, key_signer: KeySigner, expected: ExpectedSigner) -> None:
    with pytest.raises(VerificationError, match=r"is keyless .* but public key"):
        verify_bundle(message.bundle, payload=PAYLOAD, expected=key_expected(key_signer))
    keyed = key_signer.sign_message(PAYLOAD)
    with pytest.raises(VerificationError, match="signed with a key, not keyless"):
        verify_bundle(keyed.bundle, payload=PAYLOAD, expected=expected)


def test_malformed_bundle(expected: ExpectedSigner) -> None:
    with pytest.raises(VerificationError, match="not JSON"):
        verify_bundle(b"{", payload=PAYLOAD, expected=expected)
    with pytest.raises(VerificationError, match="malformed"):
        verify_bundle(
            {"mediaType": BUNDLE_MEDIA_TYPE, "verificationMaterial": {"certificate": {}}},
            payload=PAYLOAD,
            expected=expected,
        )


# --- key bundles --------------------------------------------------------------------------


def test_key_message_bundle(key_signer: KeySigner) -> None:
    signed = key_signer.sign_message(PAYLOAD)
    verified = verify_bundle(
        signed.bundle_json(), payload=PAYLOAD, expected=key_expected(key_signer)
    )
    assert verified.mode == "key"
    assert (
        verified.key_hint
        == hashlib.sha256(
            key_signer.public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).hexdigest()
    )
    with pytest.raises(VerificationError, match="payload was changed"):
        verify_bundle(signed.bundle, payload=PAYLOAD + b"x", expected=key_expected(key_signer))


def test_key_statement_bundle(key_signer: KeySigner) -> None:
    signed = key_signer.sign_statement(statement())
    verified = verify_bundle(signed.bundle, payload=None, expected=key_expected(key_signer))
    assert verified.statement == statement()
    assert verified.payload_type == IN_TOTO_PAYLOAD_TYPE


def test_key_bundle_by_another_key(key_signer: KeySigner) -> None:
    other = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    signed = other.sign_message(PAYLOAD)
    with pytest.raises(VerificationError, match=r"names key .* not the expected key"):
        verify_bundle(signed.bundle, payload=PAYLOAD, expected=key_expected(key_signer))
    # without the (unauthenticated) hint the signature itself is what fails
    bundle = copy.deepcopy(dict(signed.bundle))
    bundle["verificationMaterial"]["publicKey"] = {}
    with pytest.raises(VerificationError, match="signature does not verify"):
        verify_bundle(bundle, payload=PAYLOAD, expected=key_expected(key_signer))


def test_key_bundle_with_hex_hint(key_signer: KeySigner) -> None:
    bundle = copy.deepcopy(dict(key_signer.sign_statement(statement()).bundle))
    hint = base64.b64decode(bundle["verificationMaterial"]["publicKey"]["hint"]).hex()
    bundle["verificationMaterial"]["publicKey"]["hint"] = hint
    bundle["dsseEnvelope"]["signatures"][0]["keyid"] = hint
    assert verify_bundle(bundle, payload=None, expected=key_expected(key_signer)).key_hint == hint


# --- cosign v2 layers ---------------------------------------------------------------------


def test_cosign_sig_wrong_identity(
    message: Signed, local_trust: TrustConfig, issuer_url: str
) -> None:
    expected = ExpectedSigner(issuer=issuer_url, identity="x@y.test", trust_config=local_trust)
    with pytest.raises(VerificationError, match=f"identity {DEFAULT_EMAIL} does not match"):
        verify_cosign_signature(PAYLOAD, cosign_annotations(message), expected)


def test_cosign_sig_tampered_payload(message: Signed, expected: ExpectedSigner) -> None:
    with pytest.raises(VerificationError, match="signature does not verify"):
        verify_cosign_signature(
            PAYLOAD.replace(b"model-server", b"evil-server"), cosign_annotations(message), expected
        )


def test_cosign_sig_needs_the_log_promise(message: Signed, expected: ExpectedSigner) -> None:
    annotations = cosign_annotations(message)
    del annotations[BUNDLE_ANNOTATION]
    with pytest.raises(VerificationError, match="No transparency log proof"):
        verify_cosign_signature(PAYLOAD, annotations, expected)
    annotations = cosign_annotations(message)
    del annotations[CERTIFICATE_ANNOTATION]
    with pytest.raises(VerificationError, match="not a keyless signature"):
        verify_cosign_signature(PAYLOAD, annotations, expected)


def test_cosign_sig_forged_promise(message: Signed, expected: ExpectedSigner) -> None:
    annotations = cosign_annotations(message)
    rekor = json.loads(annotations[BUNDLE_ANNOTATION])
    rekor["Payload"]["integratedTime"] -= 3600
    annotations[BUNDLE_ANNOTATION] = json.dumps(rekor)
    with pytest.raises(VerificationError, match=r"promise .* does not verify"):
        verify_cosign_signature(PAYLOAD, annotations, expected)


def test_cosign_sig_with_another_signatures_log_entry(
    message: Signed, keyless_signer: KeylessSigner, expected: ExpectedSigner
) -> None:
    # A valid promise, but for another signature (CVE-2022-36056): the entry must match.
    other = keyless_signer.sign_message(b"something else")
    annotations = cosign_annotations(message)
    annotations[BUNDLE_ANNOTATION] = json.dumps(other.rekor_bundle)
    with pytest.raises(VerificationError, match="does not describe this signature"):
        verify_cosign_signature(PAYLOAD, annotations, expected)


def test_cosign_sig_untrusted_deployment(message: Signed, issuer_url: str) -> None:
    expected = ExpectedSigner(
        issuer=issuer_url, identity=DEFAULT_EMAIL, trust_config=production_trust()
    )
    with pytest.raises(VerificationError, match="Rekor keys of the public"):
        verify_cosign_signature(PAYLOAD, cosign_annotations(message), expected)


def test_cosign_att_envelope_must_be_the_logged_one(
    attestation: Signed, expected: ExpectedSigner
) -> None:
    reserialized = json.dumps(json.loads(attestation.dsse_envelope), indent=1).encode()
    with pytest.raises(VerificationError, match="envelope differs from the one logged"):
        verify_cosign_attestation(reserialized, cosign_annotations(attestation), expected)


def test_cosign_att_tampered(attestation: Signed, expected: ExpectedSigner) -> None:
    envelope = json.loads(attestation.dsse_envelope)
    envelope["payloadType"] = "application/json"
    with pytest.raises(VerificationError, match="signature does not verify"):
        verify_cosign_attestation(
            json.dumps(envelope).encode(), cosign_annotations(attestation), expected
        )


def test_cosign_layers_signed_with_a_key(key_signer: KeySigner) -> None:
    expected = key_expected(key_signer)
    sig = key_signer.sign_message(PAYLOAD)
    verified = verify_cosign_signature(PAYLOAD, {SIGNATURE_ANNOTATION: sig.signature_b64}, expected)
    assert verified.mode == "key"
    att = key_signer.sign_statement(statement())
    assert att.dsse_envelope is not None
    verified = verify_cosign_attestation(att.dsse_envelope, {SIGNATURE_ANNOTATION: ""}, expected)
    assert verified.statement == statement()
    other = key_expected(KeySigner(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(VerificationError, match="signature does not verify"):
        verify_cosign_signature(PAYLOAD, {SIGNATURE_ANNOTATION: sig.signature_b64}, other)
    with pytest.raises(VerificationError, match="signature does not verify"):
        verify_cosign_attestation(att.dsse_envelope, {}, other)


# --- real bundles from the public Sigstore instance, verified offline ---------------------


def test_public_github_actions_bundle() -> None:
    expected = ExpectedSigner(issuer=GITHUB_ISSUER, identity=WHEEL_SIGNER)
    verified = verify_bundle(
        WHEEL_BUNDLE.read_bytes(), payload=WHEEL.read_bytes(), expected=expected
    )
    assert (verified.identity, verified.issuer) == (WHEEL_SIGNER, GITHUB_ISSUER)
    assert verified.integrated_time == 1710888076
    assert verified.log_index == 79605083


def test_public_bundle_tampered_artifact() -> None:
    expected = ExpectedSigner(issuer=GITHUB_ISSUER, identity=WHEEL_SIGNER)
    with pytest.raises(VerificationError, match="payload was changed"):
        verify_bundle(
            WHEEL_BUNDLE.read_bytes(), payload=WHEEL.read_bytes() + b"x", expected=expected
        )


def test_public_bundle_other_workflow() -> None:
    expected = ExpectedSigner(
        issuer=GITHUB_ISSUER,
        identity_regexp=r"^https://github\.com/trailofbits/rfc8785\.py/\.github/workflows/ci\.yml@.*$",
    )
    with pytest.raises(VerificationError, match="does not match the expected identity regexp"):
        verify_bundle(WHEEL_BUNDLE.read_bytes(), payload=WHEEL.read_bytes(), expected=expected)


def test_public_npm_provenance_dsse_bundle() -> None:
    # intoto 0.0.2 log entry: not handled by sigstore-python 4.5's Verifier, checked here.
    expected = ExpectedSigner(issuer=GITHUB_ISSUER, identity=NPM_SIGNER)
    verified = verify_bundle(NPM_BUNDLE.read_bytes(), payload=None, expected=expected)
    assert verified.identity == NPM_SIGNER
    st = verified.statement
    assert st is not None
    assert st["predicateType"] == "https://slsa.dev/provenance/v1"
    assert st["subject"][0]["name"] == "pkg:npm/sigstore@3.1.0"


def test_public_npm_provenance_tampered() -> None:
    expected = ExpectedSigner(issuer=GITHUB_ISSUER, identity=NPM_SIGNER)
    bundle = json.loads(NPM_BUNDLE.read_bytes())
    payload = base64.b64decode(bundle["dsseEnvelope"]["payload"]).replace(
        b"sigstore@3.1.0", b"sigstore@3.1.1"
    )
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    with pytest.raises(VerificationError, match="signature does not verify"):
        verify_bundle(bundle, payload=None, expected=expected)
    wrong = ExpectedSigner(issuer=GITHUB_ISSUER, identity=WHEEL_SIGNER)
    with pytest.raises(VerificationError, match="does not match the expected identity"):
        verify_bundle(NPM_BUNDLE.read_bytes(), payload=None, expected=wrong)
