"""Sigstore bundles (v0.1–v0.3) checked against the expected signer.

Keyless bundles go through sigstore-python's ``Verifier`` (certificate chain, SCT,
transparency-log proof and promise, signature, log-entry consistency) with an identity policy;
intoto v0.0.2 entries, which it refuses, through :mod:`modelseal.sign.logged`. Key bundles
(``verificationMaterial.publicKey``, no log entry) are plain ECDSA P-256 checks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from cryptography import x509
from sigstore.errors import Error as SigstoreError
from sigstore.errors import VerificationError as SigstoreVerificationError
from sigstore.models import Bundle
from sigstore.verify import Verifier

from modelseal.sign._sigstore_internal import verify_inclusion_proof
from modelseal.sign.dsse import (
    as_json_object,
    b64field,
    check_expected_payload,
    dsse_pae,
    dsse_parts,
    dsse_signature,
    verify_ecdsa,
    verify_envelope_with_key,
)
from modelseal.sign.expected import ExpectedSigner, VerifiedSignature, first_line, key_hint
from modelseal.sign.interface import VerificationError
from modelseal.sign.logged import Promise, keyless_result, verify_logged_signature, verify_promise
from modelseal.sign.trust import TrustConfig


def verify_bundle(
    bundle: bytes | str | Mapping[str, Any],
    *,
    payload: bytes | None,
    expected: ExpectedSigner,
) -> VerifiedSignature:
    """Verify a Sigstore bundle (v0.1–v0.3) against ``expected``.

    A message-signature bundle needs ``payload`` (what was signed). For a DSSE bundle,
    ``payload`` is optional; if given it must equal the envelope's payload. The returned
    :class:`VerifiedSignature` carries the verified payload (for DSSE, the Statement).
    """
    doc = as_json_object(bundle, "The Sigstore bundle")
    material = doc.get("verificationMaterial")
    if not isinstance(material, Mapping):
        raise VerificationError("The Sigstore bundle has no verificationMaterial.")
    if "publicKey" in material:
        return _verify_key_bundle(doc, material, payload, expected)
    if expected.mode == "key":
        raise VerificationError(
            f"The bundle is keyless (it carries a certificate) but {expected.describe()} was expected."
        )
    return _verify_keyless_bundle(doc, payload, expected)


def _verify_key_bundle(
    doc: Mapping[str, Any],
    material: Mapping[str, Any],
    payload: bytes | None,
    expected: ExpectedSigner,
) -> VerifiedSignature:
    if expected.mode == "keyless":
        raise VerificationError(
            f"The bundle is signed with a key, not keyless; expected {expected.describe()}."
        )
    key = expected.public_key()
    want = key_hint(key)
    public_key = material.get("publicKey")
    hint = public_key.get("hint") if isinstance(public_key, Mapping) else None
    # The hint is unauthenticated; it only gives a clearer message than a bad signature. cosign
    # writes it as base64 of the SPKI's SHA-256, some writers as hex: accept either.
    want_b64 = base64.b64encode(bytes.fromhex(want)).decode()
    if hint and hint not in (want, want_b64):
        shown = want if re.fullmatch("[0-9a-f]{64}", str(hint)) else want_b64
        raise VerificationError(
            f"The bundle names key {hint}, not the expected key {shown} (SHA-256 of the "
            "SubjectPublicKeyInfo)."
        )
    if isinstance(doc.get("messageSignature"), Mapping):
        if payload is None:
            raise VerificationError(
                "A message-signature bundle needs the signed payload to verify against."
            )
        message = doc["messageSignature"]
        _check_message_digest(message, payload)
        verify_ecdsa(
            key, b64field(message, "signature", "messageSignature"), payload, "the payload"
        )
        return VerifiedSignature(
            mode="key", content="message-signature", payload=payload, key_hint=want
        )
    if isinstance(doc.get("dsseEnvelope"), Mapping):
        body, ptype = verify_envelope_with_key(doc["dsseEnvelope"], key)
        check_expected_payload(body, payload)
        return VerifiedSignature(
            mode="key", content="dsse-envelope", payload=body, payload_type=ptype, key_hint=want
        )
    raise VerificationError("The bundle has neither a messageSignature nor a dsseEnvelope.")


def _verify_keyless_bundle(
    doc: Mapping[str, Any], payload: bytes | None, expected: ExpectedSigner
) -> VerifiedSignature:
    trust = expected.trust()
    try:
        parsed = Bundle.from_json(json.dumps(doc))
    except SigstoreError as e:
        text = first_line(e)
        if "log entry" in text:
            raise VerificationError(
                f"No transparency log proof: the bundle must hold exactly one Rekor entry ({text})."
            ) from None
        if "inclusion" in text or "checkpoint" in text:
            raise VerificationError(f"No transparency log proof: {text}.") from None
        raise VerificationError(f"The Sigstore bundle is malformed: {text}.") from None
    entry_doc = doc["verificationMaterial"]["tlogEntries"][0]
    kind = entry_doc.get("kindVersion", {})
    cert = parsed.signing_certificate
    envelope = doc.get("dsseEnvelope")
    if entry_doc.get("inclusionPromise") and entry_doc.get("integratedTime"):
        # sigstore-python checks the chain at the logged time before it checks the promise
        # that vouches for that time; checking the promise first names a forgery as such.
        verify_promise(Promise.from_bundle_entry(entry_doc), trust)
    verifier = Verifier(trusted_root=trust.trusted_root)
    policy = _Policy(expected)
    try:
        if isinstance(envelope, Mapping):
            if (kind.get("kind"), kind.get("version")) == ("intoto", "0.0.2"):
                # sigstore-python 4.5 rejects these (npm and older GitHub attestations): check the
                # inclusion proof with it, and the rest the way the cosign path does.
                verify_inclusion_proof(parsed.log_entry, trust.trusted_root)
                body, ptype = dsse_parts(envelope)
                verify_logged_signature(
                    cert=cert,
                    signature=dsse_signature(envelope),
                    signed=dsse_pae(ptype, body),
                    promise=Promise.from_bundle_entry(entry_doc),
                    payload=body,
                    envelope=None,
                    expected=expected,
                    trust=trust,
                )
            else:
                ptype, body = verifier.verify_dsse(parsed, policy)
            check_expected_payload(body, payload)
            content: Literal["message-signature", "dsse-envelope"] = "dsse-envelope"
            signed_payload: bytes = body
            payload_type: str | None = ptype
        else:
            if payload is None:
                raise VerificationError(
                    "A message-signature bundle needs the signed payload to verify against."
                )
            verifier.verify_artifact(payload, parsed, policy)
            content, signed_payload, payload_type = "message-signature", payload, None
    except _PolicyMismatch as e:
        raise VerificationError(str(e)) from None
    except SigstoreVerificationError as e:
        raise VerificationError(_explain(e, trust)) from None
    integrated = entry_doc.get("integratedTime")
    return keyless_result(
        content,
        signed_payload,
        payload_type,
        cert,
        int(integrated) if integrated else None,
        int(entry_doc["logIndex"]),
    )


class _PolicyMismatch(SigstoreVerificationError):
    """Identity or issuer mismatch raised inside sigstore's Verifier, passed through verbatim."""


class _Policy:
    """A sigstore ``VerificationPolicy`` enforcing :meth:`ExpectedSigner.check_certificate`."""

    def __init__(self, expected: ExpectedSigner) -> None:
        self._expected = expected

    def verify(self, cert: x509.Certificate) -> None:
        try:
            self._expected.check_certificate(cert)
        except VerificationError as e:
            raise _PolicyMismatch(e.message) from None


def _explain(e: SigstoreVerificationError, trust: TrustConfig) -> str:
    """sigstore-python's reason, said in terms of what the user can act on."""
    text = first_line(e)
    if "Signature is invalid for input" in text:
        return "The signature does not verify over the payload (the payload or the signature was changed)."
    if "message digest mismatch" in text:
        return "The signature does not verify: the payload's SHA-256 differs from the signed digest (the payload was changed)."
    if "DSSE" in text and "invalid signature" in text:
        return (
            "The signature does not verify: the DSSE envelope was changed or signed by another key."
        )
    if "certificate chain" in text:
        return f"The signing certificate does not chain to a Fulcio CA trusted by {trust.source} ({text})."
    if "SCT" in text:
        return f"The signing certificate's SCT does not verify against the CT log keys of {trust.source} ({text})."
    if "invalid log entry" in text or "inclusion" in text or "checkpoint" in text:
        return f"The transparency log proof does not verify against the Rekor keys of {trust.source} ({text})."
    if "inconsistent" in text or "does not match bundle" in text:
        return f"The transparency log entry does not describe this signature ({text})."
    if "expired" in text:
        return f"The signing certificate was not valid when the signature was logged ({text})."
    return f"Sigstore verification failed: {text}."


def _check_message_digest(message: Mapping[str, Any], payload: bytes) -> None:
    digest = message.get("messageDigest")
    if digest is None:
        return
    if not isinstance(digest, Mapping) or digest.get("algorithm") != "SHA2_256":
        raise VerificationError("The bundle's message digest is not SHA2_256.")
    if b64field(digest, "digest", "messageDigest") != hashlib.sha256(payload).digest():
        raise VerificationError(
            "The signature does not verify: the payload's SHA-256 differs from the signed digest "
            "(the payload was changed)."
        )
