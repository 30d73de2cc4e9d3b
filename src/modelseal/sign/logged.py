"""Keyless signatures checked from a Rekor v1 entry and its signed promise, the way
``cosign verify`` checks them: the promise (SET) against the trusted Rekor keys, the certificate
chain at the logged time, its SCT, the identity policy, the signature, and that the log entry
describes exactly this signature, certificate and payload.

sigstore-python's public ``Verifier`` refuses such signatures (they carry a promise but no
inclusion proof): cosign v2 registry signatures and intoto v0.0.2 bundles come through here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ExtendedKeyUsage, KeyUsage
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
)
from cryptography.x509.verification import VerificationError as X509VerificationError
from sigstore.errors import Error as SigstoreError

from modelseal.sign._sigstore_internal import verify_rekor_signature, verify_sct
from modelseal.sign.dsse import verify_ecdsa
from modelseal.sign.expected import (
    ExpectedSigner,
    VerifiedSignature,
    certificate_identity,
    certificate_issuer,
    first_line,
)
from modelseal.sign.interface import VerificationError
from modelseal.sign.trust import TrustConfig

#: cosign's annotation holding the Rekor bundle (the promise) of a registry signature.
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"


def keyless_result(
    content: Literal["message-signature", "dsse-envelope"],
    payload: bytes,
    payload_type: str | None,
    cert: x509.Certificate,
    integrated_time: int | None,
    log_index: int | None,
) -> VerifiedSignature:
    return VerifiedSignature(
        mode="keyless",
        content=content,
        payload=payload,
        payload_type=payload_type,
        identity=certificate_identity(cert),
        issuer=certificate_issuer(cert),
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        integrated_time=integrated_time,
        log_index=log_index,
    )


@dataclass(frozen=True)
class Promise:
    """A Rekor v1 entry with its signed entry timestamp (cosign's bundle annotation)."""

    body_b64: str
    integrated_time: int
    log_index: int
    log_id: bytes
    signed_entry_timestamp: bytes

    @classmethod
    def from_cosign(cls, data: Any) -> Promise:
        try:
            inner = data["Payload"]
            return cls(
                body_b64=str(inner["body"]),
                integrated_time=int(inner["integratedTime"]),
                log_index=int(inner["logIndex"]),
                log_id=bytes.fromhex(str(inner["logID"])),
                signed_entry_timestamp=base64.b64decode(
                    data["SignedEntryTimestamp"], validate=True
                ),
            )
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise VerificationError(
                f"The {BUNDLE_ANNOTATION} annotation is not a Rekor bundle "
                "({SignedEntryTimestamp, Payload{body, integratedTime, logIndex, logID}})."
            ) from None

    @classmethod
    def from_bundle_entry(cls, entry: Mapping[str, Any]) -> Promise:
        try:
            return cls(
                body_b64=str(entry["canonicalizedBody"]),
                integrated_time=int(entry["integratedTime"]),
                log_index=int(entry["logIndex"]),
                log_id=base64.b64decode(entry["logId"]["keyId"]),
                signed_entry_timestamp=base64.b64decode(
                    entry["inclusionPromise"]["signedEntryTimestamp"]
                ),
            )
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise VerificationError(
                "No transparency log proof: the bundle's Rekor entry has no signed promise."
            ) from None

    def body(self) -> dict[str, Any]:
        try:
            doc = json.loads(base64.b64decode(self.body_b64, validate=True))
        except (ValueError, binascii.Error, RecursionError):
            raise VerificationError("The Rekor entry body is not base64 JSON.") from None
        if not isinstance(doc, dict):
            raise VerificationError("The Rekor entry body is not a JSON object.")
        return doc


def verify_logged_signature(
    *,
    cert: x509.Certificate,
    signature: bytes,
    signed: bytes,
    promise: Promise,
    payload: bytes,
    envelope: bytes | None,
    expected: ExpectedSigner,
    trust: TrustConfig,
    message: bool = False,
) -> None:
    """The keyless checks cosign makes, in order; ``signed`` is what the signature covers
    (the payload, or the DSSE PAE)."""
    # 1. Rekor's promise: the entry (and so its time) is signed by a trusted log key.
    verify_promise(promise, trust)
    at = datetime.fromtimestamp(promise.integrated_time, tz=UTC)
    # 2. The certificate chains to a trusted Fulcio CA and was valid when logged.
    chain = _fulcio_chain(cert, at, trust)
    # 3. Its SCT: the certificate was publicly logged by the CT log.
    try:
        verify_sct(cert, chain, trust.trusted_root)
    except SigstoreError as e:
        raise VerificationError(
            f"The signing certificate's SCT does not verify against the CT log keys of "
            f"{trust.source} ({first_line(e)})."
        ) from None
    _check_code_signing(cert)
    # 4. Who signed.
    expected.check_certificate(cert)
    # 5. The signature itself.
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise VerificationError("The signing certificate's key is not ECDSA.")
    verify_ecdsa(key, signature, signed, "the payload" if message else "the DSSE envelope")
    # 6. The log entry is about exactly this signature, certificate and payload.
    _check_entry(promise.body(), cert=cert, signature=signature, payload=payload, envelope=envelope)


def verify_promise(promise: Promise, trust: TrustConfig) -> None:
    """Check Rekor's signed entry timestamp over the entry's canonical JSON."""
    canonical = rfc8785.dumps(
        {
            "body": promise.body_b64,
            "integratedTime": promise.integrated_time,
            "logID": promise.log_id.hex(),
            "logIndex": promise.log_index,
        }
    )
    try:
        verify_rekor_signature(
            trust.trusted_root,
            key_id=promise.log_id,
            signature=promise.signed_entry_timestamp,
            data=canonical,
        )
    except SigstoreError:
        raise VerificationError(
            f"The transparency log promise (signed entry timestamp) does not verify against the "
            f"Rekor keys of {trust.source}."
        ) from None


def _fulcio_chain(
    cert: x509.Certificate, at: datetime, trust: TrustConfig
) -> list[x509.Certificate]:
    # Same policy as sigstore-python's Verifier: WebPKI defaults, but Fulcio certificates carry
    # the code-signing EKU instead of client-auth (checked separately).
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store(trust.trusted_root.get_fulcio_certs()))
        .time(at)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        return list(verifier.verify(cert, []).chain[1:])
    except (X509VerificationError, x509.UnsupportedGeneralNameType) as e:
        raise VerificationError(
            f"The signing certificate does not chain to a Fulcio CA trusted by {trust.source} "
            f"at {at.isoformat()} ({e})."
        ) from None


def _check_code_signing(cert: x509.Certificate) -> None:
    try:
        usage = cert.extensions.get_extension_for_class(KeyUsage).value
        eku = cert.extensions.get_extension_for_class(ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise VerificationError(
            "The signing certificate lacks key usage or extended key usage."
        ) from None
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise VerificationError("The signing certificate is not a code-signing certificate.")


def _check_entry(
    body: Mapping[str, Any],
    *,
    cert: x509.Certificate,
    signature: bytes,
    payload: bytes,
    envelope: bytes | None,
) -> None:
    kind, version = body.get("kind"), body.get("apiVersion")
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        raise VerificationError("The Rekor entry body has no spec.")
    digest = hashlib.sha256(payload).hexdigest()
    mismatch = "The transparency log entry does not describe this signature"
    try:
        if (kind, version) == ("hashedrekord", "0.0.1"):
            if (
                spec["data"]["hash"]["algorithm"] != "sha256"
                or spec["data"]["hash"]["value"] != digest
            ):
                raise VerificationError(f"{mismatch}: it logs another payload digest.")
            if base64.b64decode(spec["signature"]["content"]) != signature:
                raise VerificationError(f"{mismatch}: it logs another signature.")
            _check_logged_cert(spec["signature"]["publicKey"]["content"], cert, mismatch)
            return
        if (kind, version) == ("dsse", "0.0.1"):
            if spec["payloadHash"]["value"] != digest:
                raise VerificationError(f"{mismatch}: it logs another DSSE payload.")
            if (
                envelope is not None
                and spec["envelopeHash"]["value"] != hashlib.sha256(envelope).hexdigest()
            ):
                raise VerificationError(f"{mismatch}: the envelope differs from the one logged.")
            for logged in spec["signatures"]:
                if base64.b64decode(logged["signature"]) == signature:
                    _check_logged_cert(logged["verifier"], cert, mismatch)
                    return
            raise VerificationError(f"{mismatch}: it logs another signature.")
        if (kind, version) == ("intoto", "0.0.2"):
            content = spec["content"]
            if content["payloadHash"]["value"] != digest:
                raise VerificationError(f"{mismatch}: it logs another DSSE payload.")
            if (
                envelope is not None
                and content["hash"]["value"] != hashlib.sha256(envelope).hexdigest()
            ):
                raise VerificationError(f"{mismatch}: the envelope differs from the one logged.")
            for logged in content["envelope"]["signatures"]:
                # intoto 0.0.2 stores the signature base64-encoded twice.
                if base64.b64decode(base64.b64decode(logged["sig"])) == signature:
                    _check_logged_cert(logged["publicKey"], cert, mismatch)
                    return
            raise VerificationError(f"{mismatch}: it logs another signature.")
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise VerificationError(f"The Rekor entry body ({kind}/{version}) is malformed.") from None
    raise VerificationError(f"Unsupported Rekor entry kind {kind}/{version}.")


def _check_logged_cert(pem_b64: str, cert: x509.Certificate, mismatch: str) -> None:
    try:
        logged = x509.load_pem_x509_certificate(base64.b64decode(pem_b64))
    except ValueError:
        raise VerificationError(
            f"{mismatch}: it logs a public key, not this certificate."
        ) from None
    if logged != cert:
        raise VerificationError(f"{mismatch}: it logs another signing certificate.")
