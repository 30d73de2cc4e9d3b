"""Verifying an OpenSSF model-signing signature (the ``model-signing`` package) over a model
directory, with a public key or a keyless Sigstore identity."""

from __future__ import annotations

from pathlib import Path

from modelseal.bounded import MIB, read_input
from modelseal.errors import ConfigError

MAX_MODEL_SIGNATURE_BYTES = 64 * MIB
"""A model signature bundle (its manifest lists every file's digest) larger than this is
refused."""


def verify_model_signature(
    *,
    model_dir: Path,
    signature: Path,
    public_key: Path | None = None,
    identity: str | None = None,
    issuer: str | None = None,
) -> str | None:
    """``None`` when the signature verifies; otherwise why not (one line)."""
    if (public_key is None) == (identity is None):
        raise ConfigError("models.signature: set exactly one of public_key and identity.")
    if identity is not None and not issuer:
        raise ConfigError("models.signature: identity needs issuer (the signer's OIDC issuer).")
    for p, what in ((model_dir, "model_dir"), (signature, "path")):
        if not p.exists():
            raise ConfigError(f"models.signature.{what}: {p} does not exist.")
    # The library reads both files whole: check first that they are regular, bounded and
    # inside the repository (a FIFO would hang it, /dev/zero exhaust memory).
    read_input(signature, what="models.signature.path", limit=MAX_MODEL_SIGNATURE_BYTES)
    if public_key is not None and public_key.exists():
        from modelseal.sign.key import MAX_KEY_BYTES

        read_input(public_key, what="models.signature.public_key", limit=MAX_KEY_BYTES)
    from model_signing import verifying  # heavy import (sigstore, grpc-free but large)

    config = verifying.Config()  # type: ignore[no-untyped-call]
    if public_key is not None:
        if not public_key.is_file():
            raise ConfigError(f"models.signature.public_key: {public_key} does not exist.")
        config.use_elliptic_key_verifier(public_key=public_key)
    else:
        assert identity is not None and issuer is not None
        config.use_sigstore_verifier(identity=identity, oidc_issuer=issuer)
    try:
        config.verify(model_dir, signature)
    except Exception as e:  # model-signing raises ValueError and library errors alike
        text = " ".join(str(e).split())
        return f"{type(e).__name__}: {text[:500]}"
    return None
