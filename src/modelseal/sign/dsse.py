"""DSSE envelopes: the pre-authentication encoding (written once, here) and the small decoders
both verification paths and the key signer share.

Every failure is a :class:`~modelseal.sign.interface.VerificationError` naming what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelseal.sign.interface import VerificationError


def dsse_pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what a DSSE signature is computed over."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def spki_sha256(key: ec.EllipticCurvePublicKey) -> bytes:
    """SHA-256 of ``key``'s DER SubjectPublicKeyInfo: the digest a bundle's key hint names."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


def as_json_object(data: bytes | str | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise VerificationError(f"{what} is not JSON.") from None
    if not isinstance(doc, dict):
        raise VerificationError(f"{what} is not a JSON object.")
    return doc


def b64field(doc: Mapping[str, Any], name: str, where: str) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str):
        raise VerificationError(f"The {where} has no {name}.")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise VerificationError(f"The {where} {name} is not base64.") from None


def verify_ecdsa(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes, what: str) -> None:
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VerificationError(f"The signature does not verify over {what}.") from None


def dsse_parts(envelope: Mapping[str, Any]) -> tuple[bytes, str]:
    ptype = envelope.get("payloadType")
    if not isinstance(ptype, str):
        raise VerificationError("The DSSE envelope has no payloadType.")
    return b64field(envelope, "payload", "DSSE envelope"), ptype


def dsse_signature(envelope: Mapping[str, Any]) -> bytes:
    signatures = envelope.get("signatures")
    if (
        not isinstance(signatures, list)
        or len(signatures) != 1
        or not isinstance(signatures[0], Mapping)
    ):
        raise VerificationError("The DSSE envelope must carry exactly one signature.")
    return b64field(signatures[0], "sig", "DSSE signature")


def verify_envelope_with_key(
    envelope: Mapping[str, Any], key: ec.EllipticCurvePublicKey
) -> tuple[bytes, str]:
    body, ptype = dsse_parts(envelope)
    verify_ecdsa(key, dsse_signature(envelope), dsse_pae(ptype, body), "the DSSE envelope")
    return body, ptype


def check_expected_payload(body: bytes, payload: bytes | None) -> None:
    if payload is not None and payload != body:
        raise VerificationError("The DSSE envelope's payload is not the expected Statement.")
