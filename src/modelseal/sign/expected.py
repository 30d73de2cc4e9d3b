"""Who must have signed (:class:`ExpectedSigner`), what a verification established
(:class:`VerifiedSignature`), and the facts read from a Fulcio certificate to compare them.

The identity regexp rules live in :mod:`modelseal.sign.identity`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ObjectIdentifier

from modelseal.errors import ConfigError
from modelseal.sign.dsse import spki_sha256
from modelseal.sign.identity import IdentityRegexpError, compile_identity_regexp, identity_matches
from modelseal.sign.interface import IN_TOTO_PAYLOAD_TYPE, VerificationError
from modelseal.sign.trust import TrustConfig, load_trust_config, production_trust
from modelseal.untrusted import untrusted

_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_OTHERNAME = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


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
            object.__setattr__(self, "_key", load_p256(self.public_key_pem))
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


def key_hint(key: ec.EllipticCurvePublicKey) -> str:
    """Hex SHA-256 of ``key``'s DER SubjectPublicKeyInfo (a bundle's ``publicKey.hint`` holds
    the same digest, base64 or hex)."""
    return spki_sha256(key).hex()


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


def load_p256(pem: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise ConfigError(
            f"The expected public key is not a PEM public key: {first_line(e)}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError("The expected public key must be an ECDSA P-256 key.")
    return key


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
