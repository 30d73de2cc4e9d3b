"""Every private sigstore-python API modelseal relies on, in one place.

sigstore-python is pinned exactly (pyproject). Its public API does not reach what these serve:

* the cosign v2 path and intoto v0.0.2 bundles, which its public ``Verifier`` refuses (a Rekor
  promise without an inclusion proof): its SCT check, its typed keyrings, a log entry's
  inclusion-proof check;
* the production trust root embedded in the wheel (read offline, without TUF);
* the signer's cached Fulcio certificate (renewed before it expires), the DSSE envelope exactly
  as it was logged (cosign hashes ``.att`` layers against the log entry), and the HTTP sessions
  of its Fulcio and Rekor clients (given a timeout: it sets none).

:data:`PRIVATE_APIS` names each one; ``tests/sign/test_sigstore_internal.py`` checks every one
against the installed sigstore, so an upgrade that moves one fails that test naming it rather
than a signing run in CI. Nothing else in modelseal imports ``sigstore._internal`` or
``sigstore._utils`` or reads a private attribute of a sigstore object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from sigstore._internal.sct import verify_sct as _verify_sct
from sigstore._internal.trust import KeyringPurpose
from sigstore._internal.tuf import DEFAULT_TUF_URL
from sigstore._utils import KeyID, read_embedded

if TYPE_CHECKING:
    from cryptography import x509
    from sigstore.models import Bundle, TransparencyLogEntry, TrustedRoot
    from sigstore.sign import Signer, SigningContext
    from sigstore_models.intoto import Envelope

#: Every private name used here, as ``module:qualified.name``; ``self.x`` attributes that a
#: constructor sets are written ``Class.x`` too. The contract test resolves each one.
PRIVATE_APIS: Final = (
    "sigstore._internal.sct:verify_sct",
    "sigstore._internal.trust:KeyringPurpose.VERIFY",
    "sigstore._internal.trust:Keyring.verify",
    "sigstore._internal.tuf:DEFAULT_TUF_URL",
    "sigstore._utils:KeyID",
    "sigstore._utils:read_embedded",
    "sigstore.models:TransparencyLogEntry._verify",
    "sigstore.models:Bundle._inner",
    "sigstore.sign:Signer._signing_cert",
    "sigstore.sign:SigningContext._fulcio",
    "sigstore.sign:SigningContext._rekor",
    "sigstore._internal.rekor.client:RekorClient._session",
    "sigstore._internal.rekor.client_v2:RekorV2Client._session",
)


def verify_sct(cert: x509.Certificate, chain: list[x509.Certificate], root: TrustedRoot) -> None:
    """sigstore's reference SCT check of ``cert`` (issued by ``chain``) against the CT log keys
    of ``root``; raises ``sigstore.errors.Error`` when it does not verify."""
    _verify_sct(cert, chain, root.ct_keyring(KeyringPurpose.VERIFY))


def verify_rekor_signature(
    root: TrustedRoot, *, key_id: bytes, signature: bytes, data: bytes
) -> None:
    """Check ``signature`` over ``data`` with the Rekor key ``key_id`` of ``root`` (a signed entry
    timestamp); raises ``sigstore.errors.Error`` when it does not verify."""
    root.rekor_keyring(KeyringPurpose.VERIFY).verify(
        key_id=KeyID(key_id), signature=signature, data=data
    )


def verify_inclusion_proof(entry: TransparencyLogEntry, root: TrustedRoot) -> None:
    """Check a log entry's inclusion proof (and checkpoint) against the Rekor keys of ``root``;
    raises ``sigstore.errors.Error`` (a ``VerificationError``) when it does not verify."""
    entry._verify(root.rekor_keyring(KeyringPurpose.VERIFY))


def embedded_production_root(name: str) -> bytes:
    """A file of the public-good trust root shipped inside the sigstore wheel (``name`` is e.g.
    ``trusted_root.json``): the trust used when none is configured, read without the network."""
    return read_embedded(name, DEFAULT_TUF_URL)


def signing_certificate(signer: Signer) -> x509.Certificate:
    """The Fulcio certificate a sigstore ``Signer`` caches (requested on first use)."""
    return signer._signing_cert()


def logged_dsse_envelope(bundle: Bundle) -> Envelope | None:
    """The DSSE envelope of ``bundle`` as sigstore submitted it to Rekor (not re-serialized)."""
    envelope: Envelope | None = bundle._inner.dsse_envelope
    return envelope


def fulcio_client(context: SigningContext) -> Any:
    """The Fulcio client of a signing context (``url``, ``session``)."""
    return context._fulcio


def rekor_client(context: SigningContext) -> Any:
    """The Rekor client of a signing context (``url``; a per-thread ``_session``)."""
    return context._rekor


def rekor_session(context: SigningContext) -> object:
    """The calling thread's HTTP session of the context's Rekor client, or None."""
    return getattr(context._rekor, "_session", None)
