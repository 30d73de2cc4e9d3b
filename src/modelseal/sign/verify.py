"""Check a signature against the signer the user expects: a public key, or a keyless identity.

Two shapes of signature are understood:

* a **Sigstore bundle** (:func:`verify_bundle`) — keyless bundles go through sigstore-python's
  ``Verifier`` (certificate chain, SCT, transparency-log proof and promise, signature,
  log-entry consistency) with an identity policy; key bundles (``verificationMaterial.publicKey``,
  no log entry) are plain ECDSA P-256 checks;
* a **cosign v2 signature or attestation** as stored in a registry (:func:`verify_cosign_signature`,
  :func:`verify_cosign_attestation`): the layer plus its annotations. sigstore-python refuses
  these (they carry Rekor's signed promise but no inclusion proof), so the same steps are done
  here: the promise (SET) against the trusted Rekor keys, the certificate chain at the logged
  time, its SCT, the identity policy, the signature, and that the log entry describes exactly
  this signature, certificate and payload — what ``cosign verify`` checks.

Every failure is a :class:`~modelseal.sign.interface.VerificationError` whose message says what
did not match.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ExtendedKeyUsage, KeyUsage
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
)
from cryptography.x509.verification import VerificationError as X509VerificationError

# sigstore-python is pinned exactly (pyproject); these internals are its reference SCT check
# and its typed keyrings, used for the cosign path that its public Verifier cannot take.
from sigstore._internal.sct import verify_sct
from sigstore._internal.trust import KeyringPurpose
from sigstore._utils import KeyID
from sigstore.errors import Error as SigstoreError
from sigstore.errors import VerificationError as SigstoreVerificationError
from sigstore.models import Bundle
from sigstore.verify import Verifier

from modelseal.errors import ConfigError
from modelseal.sign.identity import IdentityRegexpError, compile_identity_regexp, identity_matches
from modelseal.sign.interface import IN_TOTO_PAYLOAD_TYPE, VerificationError
from modelseal.sign.trust import TrustConfig, load_trust_config, production_trust
from modelseal.untrusted import untrusted

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"

_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_OTHERNAME = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


# --- what the user expects ------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedSigner:
    """Who must have signed: a public key, or a keyless (OIDC issuer, identity) pair.

    ``identity`` must equal one of the certificate's SANs; ``identity_regexp`` must match one
    whole SAN and is required to be written anchored (``^…$``) so that a pattern like
    ``https://github.com/org/`` cannot silently accept ``https://github.com/org-evil/…``.
    ``trust_config`` is the Sigstore deployment: a loaded :class:`TrustConfig`, or the path of a
    ClientTrustConfig / trusted_root.json file (loaded now, so a bad file fails early); None for
    the public instance.
    """

    public_key_pem: bytes | None = None
    issuer: str | None = None
    identity: str | None = None
    identity_regexp: str | None = None
    trust_config: TrustConfig | str | os.PathLike[str] | None = None
    _trust: TrustConfig | None = field(default=None, init=False, repr=False, compare=False)
    _key: ec.EllipticCurvePublicKey | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.trust_config, TrustConfig):
            object.__setattr__(self, "_trust", self.trust_config)
        elif self.trust_config is not None:
            object.__setattr__(self, "_trust", load_trust_config(self.trust_config))
        keyless = (self.issuer, self.identity, self.identity_regexp)
        if self.public_key_pem is not None:
            if any(v is not None for v in keyless):
                raise ConfigError(
                    "An expected signer is either a public key or a keyless identity, not both."
                )
            object.__setattr__(self, "_key", _load_p256(self.public_key_pem))
            return
        if not self.issuer:
            raise ConfigError(
                "A keyless expected signer needs the OIDC issuer "
                "(e.g. https://token.actions.githubusercontent.com)."
            )
        if (self.identity is None) == (self.identity_regexp is None):
            raise ConfigError(
                "A keyless expected signer needs exactly one of an identity or an identity regexp."
            )
        if self.identity is not None and not self.identity:
            raise ConfigError("The expected signer identity is empty.")
        if self.identity_regexp is not None:
            pattern = self.identity_regexp
            try:
                object.__setattr__(self, "_pattern", compile_identity_regexp(pattern))
            except IdentityRegexpError as e:
                raise ConfigError(
                    f"The identity regexp {untrusted(pattern, markup=False, limit=200)} is {e}.",
                    hint="For a GitHub workflow: "
                    r"^https://github\.com/ORG/REPO/\.github/workflows/release\.yml@refs/tags/v.*$",
                ) from None

    @property
    def mode(self) -> Literal["key", "keyless"]:
        """``key`` or ``keyless``."""
        return "key" if self.public_key_pem is not None else "keyless"

    @property
    def key_hint(self) -> str | None:
        """Key mode: hex SHA-256 of the expected key's DER SubjectPublicKeyInfo."""
        return key_hint(self._key) if self._key is not None else None

    def describe(self) -> str:
        """The expectation in words, for messages."""
        if self._key is not None:
            return f"public key {self.key_hint}"
        who = self.identity if self.identity is not None else f"matching {self.identity_regexp}"
        return f"identity {who} from issuer {self.issuer}"

    def trust(self) -> TrustConfig:
        """The trust to verify keyless signatures against."""
        if self._trust is None:
            object.__setattr__(self, "_trust", production_trust())
        assert self._trust is not None
        return self._trust

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """Key mode: the loaded key."""
        if self._key is None:
            raise VerificationError(f"Expected {self.describe()}, which is not a public key.")
        return self._key

    def check_certificate(self, cert: x509.Certificate) -> None:
        """Raise :class:`VerificationError` unless ``cert``'s issuer and identity match."""
        issuers = certificate_issuers(cert)
        if not issuers:
            raise VerificationError(
                f"The signing certificate names no OIDC issuer; expected {self.issuer}."
            )
        for issuer in issuers:
            if issuer != self.issuer:
                raise VerificationError(
                    f"The certificate issuer {issuer} does not match the expected issuer {self.issuer}."
                )
        sans = certificate_identities(cert)
        if self.identity is not None:
            ok = self.identity in sans
            wanted = f"identity {self.identity}"
        else:
            assert self._pattern is not None
            ok = any(identity_matches(self._pattern, s) for s in sans)
            wanted = f"identity regexp {self.identity_regexp}"
        if not ok:
            shown = ", ".join(sans) or "(none)"
            raise VerificationError(
                f"The certificate identity {shown} does not match the expected {wanted}."
            )


@dataclass(frozen=True)
class VerifiedSignature:
    """What a successful verification established."""

    mode: Literal["key", "keyless"]
    content: Literal["message-signature", "dsse-envelope"]
    payload: bytes
    """The signed message, or the DSSE payload (the in-toto Statement JSON)."""
    payload_type: str | None = None
    """DSSE payload type; None for a message signature."""
    identity: str | None = None
    issuer: str | None = None
    certificate_pem: str | None = None
    key_hint: str | None = None
    """Key mode: hex SHA-256 of the DER SubjectPublicKeyInfo that verified."""
    integrated_time: int | None = None
    """Keyless: when Rekor logged the signature (Unix seconds)."""
    log_index: int | None = None

    @property
    def statement(self) -> dict[str, Any] | None:
        """The verified in-toto Statement; None unless this is a DSSE envelope of payload type
        in-toto whose payload is a Statement."""
        if self.content != "dsse-envelope" or self.payload_type != IN_TOTO_PAYLOAD_TYPE:
            return None
        try:
            doc = json.loads(self.payload)
        except (ValueError, RecursionError):
            return None
        if not isinstance(doc, dict) or not str(doc.get("_type", "")).startswith(
            "https://in-toto.io/Statement/"
        ):
            return None
        return doc


# --- certificate facts ----------------------------------------------------------------------


def key_hint(key: ec.EllipticCurvePublicKey) -> str:
    """Hex SHA-256 of ``key``'s DER SubjectPublicKeyInfo (a bundle's ``publicKey.hint`` holds
    the same digest, base64 or hex)."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def certificate_identities(cert: x509.Certificate) -> list[str]:
    """The identities a Fulcio certificate's SAN names (URIs, e-mails, Sigstore usernames)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(san.get_values_for_type(x509.UniformResourceIdentifier))
    names += san.get_values_for_type(x509.RFC822Name)
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == _OTHERNAME:
            names.append(_der_utf8(other.value) or other.value.decode(errors="replace"))
    return names


def certificate_identity(cert: x509.Certificate) -> str | None:
    """The certificate's first identity (what ``--certificate-identity`` is compared with)."""
    names = certificate_identities(cert)
    return names[0] if names else None


def certificate_issuers(cert: x509.Certificate) -> list[str]:
    """The OIDC issuer(s) a Fulcio certificate records: extension 1.8 (DER) and/or 1.1 (raw)."""
    found: list[str] = []
    for oid, der in ((_ISSUER_V2, True), (_ISSUER_V1, False)):
        try:
            ext = cert.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        raw = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
        value = _der_utf8(raw) if der else raw.decode(errors="replace")
        if value and value not in found:
            found.append(value)
    return found


def certificate_issuer(cert: x509.Certificate) -> str | None:
    """The OIDC issuer the certificate records (1.8 preferred over the deprecated 1.1)."""
    issuers = certificate_issuers(cert)
    return issuers[0] if issuers else None


def _der_utf8(data: bytes) -> str | None:
    """Decode a DER UTF8String; None if ``data`` is not exactly one."""
    if len(data) < 2 or data[0] != 0x0C:
        return None
    length, offset = data[1], 2
    if length & 0x80:
        n = length & 0x7F
        length, offset = int.from_bytes(data[2 : 2 + n], "big"), 2 + n
    if offset + length != len(data):
        return None
    return data[offset:].decode(errors="replace")


# --- bundles --------------------------------------------------------------------------------


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
    doc = _as_json(bundle, "The Sigstore bundle")
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
        _verify_ecdsa(
            key, _b64field(message, "signature", "messageSignature"), payload, "the payload"
        )
        return VerifiedSignature(
            mode="key", content="message-signature", payload=payload, key_hint=want
        )
    if isinstance(doc.get("dsseEnvelope"), Mapping):
        body, ptype = _verify_envelope_with_key(doc["dsseEnvelope"], key)
        _check_expected_payload(body, payload)
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
        text = _first_line(e)
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
        _verify_promise(_Promise.from_bundle_entry(entry_doc), trust)
    verifier = Verifier(trusted_root=trust.trusted_root)
    policy = _Policy(expected)
    try:
        if isinstance(envelope, Mapping):
            if (kind.get("kind"), kind.get("version")) == ("intoto", "0.0.2"):
                # sigstore-python 4.5 rejects these (npm and older GitHub attestations): check the
                # inclusion proof with it, and the rest the way the cosign path does.
                parsed.log_entry._verify(trust.trusted_root.rekor_keyring(KeyringPurpose.VERIFY))
                body, ptype = _dsse_parts(envelope)
                _verify_logged_signature(
                    cert=cert,
                    signature=_dsse_signature(envelope),
                    signed=_pae(ptype, body),
                    promise=_Promise.from_bundle_entry(entry_doc),
                    payload=body,
                    envelope=None,
                    expected=expected,
                    trust=trust,
                )
            else:
                ptype, body = verifier.verify_dsse(parsed, policy)
            _check_expected_payload(body, payload)
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
    return _keyless_result(
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
    text = _first_line(e)
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


# --- cosign v2 registry signatures ----------------------------------------------------------


def verify_cosign_signature(
    payload: bytes, annotations: Mapping[str, str], expected: ExpectedSigner
) -> VerifiedSignature:
    """Verify one layer of a cosign v2 ``.sig`` manifest: ``payload`` is the simple-signing JSON
    blob, ``annotations`` the layer's annotations. The caller still checks that the payload names
    the image digest it expects."""
    signature = _annotation_b64(annotations, SIGNATURE_ANNOTATION)
    if expected.mode == "key":
        _verify_ecdsa(expected.public_key(), signature, payload, "the simple-signing payload")
        return VerifiedSignature(
            mode="key", content="message-signature", payload=payload, key_hint=expected.key_hint
        )
    cert = _annotation_certificate(annotations)
    promise = _annotation_promise(annotations)
    trust = expected.trust()
    _verify_logged_signature(
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
    return _keyless_result(
        "message-signature", payload, None, cert, promise.integrated_time, promise.log_index
    )


def verify_cosign_attestation(
    envelope: bytes, annotations: Mapping[str, str], expected: ExpectedSigner
) -> VerifiedSignature:
    """Verify one layer of a cosign v2 ``.att`` manifest: ``envelope`` is the DSSE envelope JSON
    blob. Returns the verified Statement as payload (see :meth:`VerifiedSignature.statement`)."""
    doc = _as_json(envelope, "The DSSE envelope")
    if expected.mode == "key":
        body, ptype = _verify_envelope_with_key(doc, expected.public_key())
        return VerifiedSignature(
            mode="key",
            content="dsse-envelope",
            payload=body,
            payload_type=ptype,
            key_hint=expected.key_hint,
        )
    body, ptype = _dsse_parts(doc)
    cert = _annotation_certificate(annotations)
    promise = _annotation_promise(annotations)
    _verify_logged_signature(
        cert=cert,
        signature=_dsse_signature(doc),
        signed=_pae(ptype, body),
        promise=promise,
        payload=body,
        envelope=envelope if isinstance(envelope, bytes) else None,
        expected=expected,
        trust=expected.trust(),
    )
    return _keyless_result(
        "dsse-envelope", body, ptype, cert, promise.integrated_time, promise.log_index
    )


def _keyless_result(
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
class _Promise:
    """A Rekor v1 entry with its signed entry timestamp (cosign's bundle annotation)."""

    body_b64: str
    integrated_time: int
    log_index: int
    log_id: bytes
    signed_entry_timestamp: bytes

    @classmethod
    def from_cosign(cls, data: Any) -> _Promise:
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
    def from_bundle_entry(cls, entry: Mapping[str, Any]) -> _Promise:
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


def _verify_logged_signature(
    *,
    cert: x509.Certificate,
    signature: bytes,
    signed: bytes,
    promise: _Promise,
    payload: bytes,
    envelope: bytes | None,
    expected: ExpectedSigner,
    trust: TrustConfig,
    message: bool = False,
) -> None:
    """The keyless checks cosign makes, in order; ``signed`` is what the signature covers
    (the payload, or the DSSE PAE)."""
    # 1. Rekor's promise: the entry (and so its time) is signed by a trusted log key.
    _verify_promise(promise, trust)
    at = datetime.fromtimestamp(promise.integrated_time, tz=UTC)
    # 2. The certificate chains to a trusted Fulcio CA and was valid when logged.
    chain = _fulcio_chain(cert, at, trust)
    # 3. Its SCT: the certificate was publicly logged by the CT log.
    try:
        verify_sct(cert, chain, trust.trusted_root.ct_keyring(KeyringPurpose.VERIFY))
    except SigstoreError as e:
        raise VerificationError(
            f"The signing certificate's SCT does not verify against the CT log keys of "
            f"{trust.source} ({_first_line(e)})."
        ) from None
    _check_code_signing(cert)
    # 4. Who signed.
    expected.check_certificate(cert)
    # 5. The signature itself.
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise VerificationError("The signing certificate's key is not ECDSA.")
    _verify_ecdsa(key, signature, signed, "the payload" if message else "the DSSE envelope")
    # 6. The log entry is about exactly this signature, certificate and payload.
    _check_entry(promise.body(), cert=cert, signature=signature, payload=payload, envelope=envelope)


def _verify_promise(promise: _Promise, trust: TrustConfig) -> None:
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
        trust.trusted_root.rekor_keyring(KeyringPurpose.VERIFY).verify(
            key_id=KeyID(promise.log_id), signature=promise.signed_entry_timestamp, data=canonical
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


# --- helpers --------------------------------------------------------------------------------


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


def _annotation_promise(annotations: Mapping[str, str]) -> _Promise:
    raw = annotations.get(BUNDLE_ANNOTATION)
    if not raw:
        raise VerificationError(
            f"No transparency log proof: the cosign signature has no {BUNDLE_ANNOTATION} annotation."
        )
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise VerificationError(f"The {BUNDLE_ANNOTATION} annotation is not JSON.") from None
    return _Promise.from_cosign(data)


def _as_json(data: bytes | str | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise VerificationError(f"{what} is not JSON.") from None
    if not isinstance(doc, dict):
        raise VerificationError(f"{what} is not a JSON object.")
    return doc


def _b64field(doc: Mapping[str, Any], name: str, where: str) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str):
        raise VerificationError(f"The {where} has no {name}.")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise VerificationError(f"The {where} {name} is not base64.") from None


def _check_message_digest(message: Mapping[str, Any], payload: bytes) -> None:
    digest = message.get("messageDigest")
    if digest is None:
        return
    if not isinstance(digest, Mapping) or digest.get("algorithm") != "SHA2_256":
        raise VerificationError("The bundle's message digest is not SHA2_256.")
    if _b64field(digest, "digest", "messageDigest") != hashlib.sha256(payload).digest():
        raise VerificationError(
            "The signature does not verify: the payload's SHA-256 differs from the signed digest "
            "(the payload was changed)."
        )


def _verify_ecdsa(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes, what: str) -> None:
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VerificationError(f"The signature does not verify over {what}.") from None


def _pae(payload_type: str, body: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def _dsse_parts(envelope: Mapping[str, Any]) -> tuple[bytes, str]:
    ptype = envelope.get("payloadType")
    if not isinstance(ptype, str):
        raise VerificationError("The DSSE envelope has no payloadType.")
    return _b64field(envelope, "payload", "DSSE envelope"), ptype


def _dsse_signature(envelope: Mapping[str, Any]) -> bytes:
    signatures = envelope.get("signatures")
    if (
        not isinstance(signatures, list)
        or len(signatures) != 1
        or not isinstance(signatures[0], Mapping)
    ):
        raise VerificationError("The DSSE envelope must carry exactly one signature.")
    return _b64field(signatures[0], "sig", "DSSE signature")


def _verify_envelope_with_key(
    envelope: Mapping[str, Any], key: ec.EllipticCurvePublicKey
) -> tuple[bytes, str]:
    body, ptype = _dsse_parts(envelope)
    _verify_ecdsa(key, _dsse_signature(envelope), _pae(ptype, body), "the DSSE envelope")
    return body, ptype


def _check_expected_payload(body: bytes, payload: bytes | None) -> None:
    if payload is not None and payload != body:
        raise VerificationError("The DSSE envelope's payload is not the expected Statement.")


def _load_p256(pem: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise ConfigError(
            f"The expected public key is not a PEM public key: {_first_line(e)}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError("The expected public key must be an ECDSA P-256 key.")
    return key


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
