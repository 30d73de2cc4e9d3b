"""What a signer produces, independent of how it signed.

A :class:`Signed` carries everything the publisher attaches to an image: the Sigstore bundle
(written as an OCI referrer and to a file) and the pieces cosign v2's ``.sig``/``.att`` tags
need (raw signature, certificate and chain, Rekor bundle annotation, DSSE envelope).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modelseal.errors import PublishError

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
"""DSSE payload type of an in-toto Statement."""

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
"""Media type (and OCI artifactType) of a Sigstore bundle v0.3."""


class SigningError(PublishError):
    """Signing could not complete (OIDC, Fulcio, Rekor, key file); the publish stops."""


class VerificationError(PublishError):
    """A signature, certificate, identity or transparency-log proof did not verify."""


@dataclass(frozen=True)
class Signed:
    """One signature, in the Sigstore bundle form and in the pieces cosign v2 stores.

    ``content`` is ``message-signature`` (a signature over ``payload``'s SHA-256, used for
    the image's simple-signing payload) or ``dsse-envelope`` (an in-toto Statement).
    """

    content: Literal["message-signature", "dsse-envelope"]
    bundle: Mapping[str, Any]
    """The Sigstore bundle v0.3 as JSON data (``mediaType`` …bundle.v0.3+json)."""
    payload: bytes
    """What was signed: the simple-signing JSON, or the in-toto Statement JSON."""
    signature_b64: str
    """Base64 signature: over ``payload`` (message) or over the DSSE PAE (envelope)."""
    certificate_pem: str | None = None
    """Keyless: the Fulcio leaf certificate (PEM). None for a key signature."""
    chain_pem: str | None = None
    """Keyless: the intermediate/root chain (PEM, concatenated), for cosign's annotation."""
    rekor_bundle: Mapping[str, Any] | None = None
    """cosign's ``dev.sigstore.cosign/bundle`` annotation ({SignedEntryTimestamp, Payload})."""
    dsse_envelope: bytes | None = None
    """For ``dsse-envelope``: the DSSE envelope JSON (the layer of a cosign ``.att``)."""
    identity: str | None = None
    """Keyless: the certificate's signer identity (SAN); None for a key."""
    issuer: str | None = None
    """Keyless: the OIDC issuer from the certificate; None for a key."""
    extra: Mapping[str, str] = field(default_factory=dict)

    def bundle_json(self) -> bytes:
        """The bundle serialized as written to files and registries."""
        return json.dumps(self.bundle, sort_keys=True, separators=(",", ":")).encode()


class Signer(ABC):
    """A way to sign; implementations never log or return secret material."""

    mode: str
    """``keyless`` or ``key``."""

    @abstractmethod
    def sign_message(self, payload: bytes) -> Signed:
        """Sign ``payload`` (hashedrekord-style message signature)."""

    @abstractmethod
    def sign_statement(self, statement: Mapping[str, Any]) -> Signed:
        """Sign an in-toto Statement as a DSSE envelope (payloadType in-toto)."""
