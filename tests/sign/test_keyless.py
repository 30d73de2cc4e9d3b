"""Keyless signing against the local Sigstore stack: tokens, bundles, cosign pieces, failures."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from tests.support.sigstore_local import (
    DEFAULT_EMAIL,
    SIMPLE_SIGNING_PAYLOAD,
    LocalSigstore,
    Service,
    cosign_annotations,
    github_identity,
    sample_statement,
)

from modelseal.sign.interface import BUNDLE_MEDIA_TYPE, IN_TOTO_PAYLOAD_TYPE, SigningError
from modelseal.sign.keyless import KeylessSigner
from modelseal.sign.trust import TrustConfig
from modelseal.sign.verify import (
    ExpectedSigner,
    verify_bundle,
    verify_cosign_attestation,
    verify_cosign_signature,
)

PAYLOAD = SIMPLE_SIGNING_PAYLOAD
statement = sample_statement


def no_sleep(_: float) -> None:
    """Retries without waiting."""


@pytest.fixture
def signer(local_trust: TrustConfig, oidc_token: Callable[..., str]) -> KeylessSigner:
    return KeylessSigner(local_trust, identity_token=oidc_token(), sleep=no_sleep)


def test_message_roundtrip(
    signer: KeylessSigner, expected: ExpectedSigner, issuer_url: str
) -> None:
    signed = signer.sign_message(PAYLOAD)
    assert signed.content == "message-signature"
    assert signed.bundle["mediaType"] == BUNDLE_MEDIA_TYPE
    assert signed.payload == PAYLOAD
    assert signed.identity == DEFAULT_EMAIL
    assert signed.issuer == issuer_url
    assert signed.dsse_envelope is None
    assert signed.signature_b64 == signed.bundle["messageSignature"]["signature"]
    leaf = x509.load_pem_x509_certificate(signed.certificate_pem.encode())
    chain = x509.load_pem_x509_certificates(signed.chain_pem.encode())
    assert [c.subject for c in chain] == [leaf.issuer, chain[0].issuer]
    assert chain[-1].subject == chain[-1].issuer  # ends with the root

    verified = verify_bundle(signed.bundle_json(), payload=PAYLOAD, expected=expected)
    assert (verified.mode, verified.identity, verified.issuer) == (
        "keyless",
        DEFAULT_EMAIL,
        issuer_url,
    )
    assert verified.log_index == signed.rekor_bundle["Payload"]["logIndex"]


def test_rekor_bundle_has_cosign_shape_and_verifies(
    signer: KeylessSigner, expected: ExpectedSigner
) -> None:
    signed = signer.sign_message(PAYLOAD)
    rb = signed.rekor_bundle
    assert set(rb) == {"SignedEntryTimestamp", "Payload"}
    assert set(rb["Payload"]) == {"body", "integratedTime", "logIndex", "logID"}
    assert isinstance(rb["Payload"]["integratedTime"], int)
    assert isinstance(rb["Payload"]["logIndex"], int)
    assert len(rb["Payload"]["logID"]) == 64
    body = json.loads(base64.b64decode(rb["Payload"]["body"]))
    assert (body["kind"], body["apiVersion"]) == ("hashedrekord", "0.0.1")
    verified = verify_cosign_signature(PAYLOAD, cosign_annotations(signed), expected)
    assert verified.integrated_time == rb["Payload"]["integratedTime"]


def test_statement_roundtrip(signer: KeylessSigner, expected: ExpectedSigner) -> None:
    stmt = statement()
    signed = signer.sign_statement(stmt)
    assert signed.content == "dsse-envelope"
    assert json.loads(signed.payload) == stmt
    envelope = json.loads(signed.dsse_envelope)
    assert envelope["payloadType"] == IN_TOTO_PAYLOAD_TYPE
    assert base64.b64decode(envelope["payload"]) == signed.payload
    assert envelope["signatures"][0]["sig"] == signed.signature_b64
    # the .att layer must hash to what Rekor logged, or cosign refuses it
    body = json.loads(base64.b64decode(signed.rekor_bundle["Payload"]["body"]))
    assert body["kind"] == "dsse"
    assert body["spec"]["envelopeHash"]["value"] == hashlib.sha256(signed.dsse_envelope).hexdigest()

    verified = verify_bundle(signed.bundle, payload=None, expected=expected)
    assert verified.statement == stmt
    verified = verify_cosign_attestation(signed.dsse_envelope, cosign_annotations(signed), expected)
    assert verified.statement == stmt


def test_one_certificate_for_several_signatures(
    signer: KeylessSigner, sigstore_stack: LocalSigstore
) -> None:
    before = sigstore_stack.fulcio.calls
    first = signer.sign_message(b"one")
    second = signer.sign_statement(statement())
    assert sigstore_stack.fulcio.calls == before + 1
    assert first.certificate_pem == second.certificate_pem


JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.")


def test_github_ambient_credentials(
    github_ambient: dict[str, Any],
    local_trust: TrustConfig,
    issuer_url: str,
    sigstore_stack: LocalSigstore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    signer = KeylessSigner(local_trust)  # no token: sigstore.oidc.detect_credential()
    signed = signer.sign_statement(statement())
    assert not JWT.search(caplog.text)
    assert sigstore_stack.actions_request_token not in caplog.text
    assert not JWT.search(repr(signer)) and not JWT.search(signed.bundle_json().decode())
    identity = github_identity(github_ambient)
    assert signed.identity == identity
    leaf = x509.load_pem_x509_certificate(signed.certificate_pem.encode())
    repo = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.5"))
    assert repo.value.value == github_ambient["repository"].encode()
    expected = ExpectedSigner(
        issuer=issuer_url,
        identity_regexp=r"^https://github\.com/modelseal-test/model-server/\.github/workflows/release\.yml@refs/heads/main$",
        trust_config=local_trust,
    )
    assert verify_bundle(signed.bundle, payload=None, expected=expected).identity == identity


def test_no_token_and_no_ambient_credential(local_trust: TrustConfig) -> None:
    with pytest.raises(SigningError, match="No OIDC identity token"):
        KeylessSigner(local_trust).sign_message(PAYLOAD)


def test_verify_only_trust_cannot_sign(trusted_root_path, oidc_token: Callable[..., str]) -> None:
    from modelseal.sign.trust import load_trust_config

    with pytest.raises(SigningError, match="trusted root only"):
        KeylessSigner(load_trust_config(trusted_root_path), identity_token=oidc_token())


def test_rekor_down_fails_closed_after_bounded_retries(
    local_trust: TrustConfig,
    oidc_token: Callable[..., str],
    rekor_failing: Service,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = oidc_token()
    waits: list[float] = []
    signer = KeylessSigner(
        local_trust, identity_token=token, attempts=3, backoff_s=0.5, sleep=waits.append
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SigningError) as info:
        signer.sign_message(PAYLOAD)
    assert rekor_failing.calls == 3
    assert waits == [0.5, 1.0]
    message = info.value.diagnostics()
    assert "Rekor" in message and "after 3 attempts" in message and "HTTP 500" in message
    assert token not in message
    assert token not in caplog.text and not JWT.search(caplog.text)
    assert token not in repr(signer)


def test_fulcio_unavailable_is_retried(
    local_trust: TrustConfig, oidc_token: Callable[..., str], sigstore_stack: LocalSigstore
) -> None:
    token = oidc_token()
    with sigstore_stack.fulcio.failing(503) as fulcio, pytest.raises(SigningError) as info:
        KeylessSigner(local_trust, identity_token=token, sleep=no_sleep).sign_message(PAYLOAD)
    assert fulcio.calls == 3
    assert "Fulcio" in str(info.value) and "HTTP 503" in str(info.value)
    assert token not in info.value.diagnostics()


def test_refused_token_is_not_retried(
    local_trust: TrustConfig,
    sigstore_stack: LocalSigstore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Signed by the issuer's key but naming another issuer: Fulcio answers 401, a final answer.
    token = sigstore_stack.token(iss="https://issuer.invalid")
    caplog.set_level(logging.DEBUG)
    before = sigstore_stack.fulcio.calls
    with pytest.raises(SigningError) as info:
        KeylessSigner(local_trust, identity_token=token, sleep=no_sleep).sign_message(PAYLOAD)
    assert sigstore_stack.fulcio.calls == before + 1
    assert "HTTP 401" in str(info.value)
    for text in (info.value.diagnostics(), repr(info.value), caplog.text):
        assert token not in text


def test_malformed_token_message_has_no_token(local_trust: TrustConfig) -> None:
    token = "not-a-jwt-secret-value"
    with pytest.raises(SigningError) as info:
        KeylessSigner(local_trust, identity_token=token).sign_message(PAYLOAD)
    assert "token is not usable" in str(info.value)
    error: BaseException | None = info.value
    while error is not None:  # nor in anything chained to it
        assert token not in str(error)
        error = error.__cause__ or error.__context__


def test_expired_token_is_refused(local_trust: TrustConfig, oidc_token: Callable[..., str]) -> None:
    with pytest.raises(SigningError, match="not usable"):
        KeylessSigner(local_trust, identity_token=oidc_token(lifetime=-60)).sign_message(PAYLOAD)


def test_hung_rekor_times_out(
    local_trust: TrustConfig, oidc_token: Callable[..., str], sigstore_stack: LocalSigstore
) -> None:
    signer = KeylessSigner(
        local_trust, identity_token=oidc_token(), attempts=2, timeout_s=0.2, sleep=no_sleep
    )
    signer.sign_message(b"warm up")  # the certificate is fetched before Rekor hangs
    sigstore_stack.rekor.calls = 0
    sigstore_stack.rekor.delay_s = 1.0
    try:
        with pytest.raises(SigningError, match=r"Rekor .* after 2 attempts: timed out"):
            signer.sign_message(PAYLOAD)
    finally:
        sigstore_stack.rekor.delay_s = 0.0
    assert sigstore_stack.rekor.calls == 2


def test_only_in_toto_statements_are_signed(signer: KeylessSigner) -> None:
    with pytest.raises(SigningError, match="cannot be signed"):
        signer.sign_statement({"predicateType": "x", "subject": []})
