"""cosign v2 signatures and attestations as stored in a registry: a layer plus its annotations.

Key mode is a plain ECDSA P-256 check; keyless mode goes through
:func:`~modelseal.sign.logged.verify_logged_signature`, since these carry Rekor's signed
promise but no inclusion proof.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

from cryptography import x509

from modelseal.sign.dsse import (
    as_json_object,
    dsse_pae,
    dsse_parts,
    dsse_signature,
    verify_ecdsa,
    verify_envelope_with_key,
)
from modelseal.sign.expected import ExpectedSigner, VerifiedSignature
from modelseal.sign.interface import VerificationError
from modelseal.sign.logged import (
    BUNDLE_ANNOTATION,
    Promise,
    keyless_result,
    verify_logged_signature,
)

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"


def verify_cosign_signature(
    payload: bytes, annotations: Mapping[str, str], expected: ExpectedSigner
) -> VerifiedSignature:
    """Verify one layer of a cosign v2 ``.sig`` manifest: ``payload`` is the simple-signing JSON
    blob, ``annotations`` the layer's annotations. The caller still checks that the payload names
    the image digest it expects."""
    signature = _annotation_b64(annotations, SIGNATURE_ANNOTATION)
    if expected.mode == "key":
        verify_ecdsa(expected.public_key(), signature, payload, "the simple-signing payload")
        return VerifiedSignature(
            mode="key", content="message-signature", payload=payload, key_hint=expected.key_hint
        )
    cert = _annotation_certificate(annotations)
    promise = _annotation_promise(annotations)
    trust = expected.trust()
    verify_logged_signature(
        cert=cert,
        signature=signature,
        signed=payload,
        promise=promise,
        payload=payload,
        envelope=None,
        expected=expected,
        trust=trust,
        message=True,
    )
    return keyless_result(
        "message-signature", payload, None, cert, promise.integrated_time, promise.log_index
    )


def verify_cosign_attestation(
    envelope: bytes, annotations: Mapping[str, str], expected: ExpectedSigner
) -> VerifiedSignature:
    """Verify one layer of a cosign v2 ``.att`` manifest: ``envelope`` is the DSSE envelope JSON
    blob. Returns the verified Statement as payload (see :meth:`VerifiedSignature.statement`)."""
    doc = as_json_object(envelope, "The DSSE envelope")
    if expected.mode == "key":
        body, ptype = verify_envelope_with_key(doc, expected.public_key())
        return VerifiedSignature(
            mode="key",
            content="dsse-envelope",
            payload=body,
            payload_type=ptype,
            key_hint=expected.key_hint,
        )
    body, ptype = dsse_parts(doc)
    cert = _annotation_certificate(annotations)
    promise = _annotation_promise(annotations)
    verify_logged_signature(
        cert=cert,
        signature=dsse_signature(doc),
        signed=dsse_pae(ptype, body),
        promise=promise,
        payload=body,
        envelope=envelope if isinstance(envelope, bytes) else None,
        expected=expected,
        trust=expected.trust(),
    )
    return keyless_result(
        "dsse-envelope", body, ptype, cert, promise.integrated_time, promise.log_index
    )


def _annotation_b64(annotations: Mapping[str, str], name: str) -> bytes:
    value = annotations.get(name)
    if not value:
        raise VerificationError(f"The cosign signature layer has no {name} annotation.")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise VerificationError(f"The {name} annotation is not base64.") from None


def _annotation_certificate(annotations: Mapping[str, str]) -> x509.Certificate:
    pem = annotations.get(CERTIFICATE_ANNOTATION)
    if not pem:
        raise VerificationError(
            f"The cosign signature has no {CERTIFICATE_ANNOTATION} annotation: it is not a keyless signature."
        )
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise VerificationError(
            f"The {CERTIFICATE_ANNOTATION} annotation is not a PEM certificate."
        ) from None


def _annotation_promise(annotations: Mapping[str, str]) -> Promise:
    raw = annotations.get(BUNDLE_ANNOTATION)
    if not raw:
        raise VerificationError(
            f"No transparency log proof: the cosign signature has no {BUNDLE_ANNOTATION} annotation."
        )
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise VerificationError(f"The {BUNDLE_ANNOTATION} annotation is not JSON.") from None
    return Promise.from_cosign(data)
