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

The work is split by job: :mod:`~modelseal.sign.expected` (who must have signed),
:mod:`~modelseal.sign.bundle`, :mod:`~modelseal.sign.cosign_verify`, :mod:`~modelseal.sign.logged`
(the keyless checks from a Rekor promise) and :mod:`~modelseal.sign.dsse`; this module is the
one import for callers.
"""

from modelseal.sign.bundle import verify_bundle
from modelseal.sign.cosign_verify import (
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    SIGNATURE_ANNOTATION,
    verify_cosign_attestation,
    verify_cosign_signature,
)
from modelseal.sign.expected import (
    ExpectedSigner,
    VerifiedSignature,
    certificate_identities,
    certificate_identity,
    certificate_issuer,
    certificate_issuers,
    key_hint,
)
from modelseal.sign.logged import BUNDLE_ANNOTATION

__all__ = [
    "BUNDLE_ANNOTATION",
    "CERTIFICATE_ANNOTATION",
    "CHAIN_ANNOTATION",
    "SIGNATURE_ANNOTATION",
    "ExpectedSigner",
    "VerifiedSignature",
    "certificate_identities",
    "certificate_identity",
    "certificate_issuer",
    "certificate_issuers",
    "key_hint",
    "verify_bundle",
    "verify_cosign_attestation",
    "verify_cosign_signature",
]
