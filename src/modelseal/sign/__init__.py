"""Signing and signature verification: one module per signing mode.

* :mod:`.interface` — what every mode returns (:class:`Signed`) and the :class:`Signer` ABC;
* :mod:`.keyless` — Sigstore keyless (sigstore-python: OIDC → Fulcio certificate → Rekor);
* :mod:`.key` — an ECDSA P-256 key (air-gapped use, no transparency log);
* :mod:`.trust` — which Sigstore to trust (the public instance, or a private deployment's
  ClientTrustConfig / trusted root);
* :mod:`.verify` — checks a bundle (or a cosign v2 signature) against an expected signer.
"""
