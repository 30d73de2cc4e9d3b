"""Signing with an ECDSA P-256 key: air-gapped use, no certificate and no transparency log.

The key is a PEM private key that ``cryptography`` reads: PKCS#8 (``BEGIN PRIVATE KEY`` or,
encrypted, ``BEGIN ENCRYPTED PRIVATE KEY``) or OpenSSL's traditional ``BEGIN EC PRIVATE KEY``.
The password comes from an environment variable whose *name* the caller gives (default
``MODELSEAL_KEY_PASSWORD``), never from argv. cosign's own ``ENCRYPTED SIGSTORE PRIVATE KEY``
format (scrypt + NaCl secretbox) is refused with advice: create the key as PKCS#8 and let
cosign import that one instead.

Output follows what cosign 2.5 writes for a key signature, so its ``verify --key`` accepts it:

* message signatures: ECDSA-SHA256 (DER, base64) over the payload itself;
* statements: a DSSE envelope ``{payloadType, payload, signatures: [{keyid: "", sig}]}``
  signed over the DSSE pre-authentication encoding (PAE); the key is never named in a
  ``keyid`` (cosign's verifiers skip signatures whose keyid is not their own key id);
* the Sigstore bundle v0.3 carries ``verificationMaterial.publicKey.hint`` — the base64
  SHA-256 of the DER SubjectPublicKeyInfo, the same value cosign puts there — and no
  transparency-log entries.

Nothing here ever logs, returns or raises with key material or the password.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelseal import fsio
from modelseal.bounded import KIB, read_input
from modelseal.errors import ConfigError, ExitCode
from modelseal.sign.dsse import dsse_pae, spki_sha256
from modelseal.sign.interface import (
    BUNDLE_MEDIA_TYPE,
    IN_TOTO_PAYLOAD_TYPE,
    Signed,
    Signer,
    SigningError,
)

DEFAULT_PASSWORD_ENV = "MODELSEAL_KEY_PASSWORD"  # noqa: S105 (a variable name, not a secret)
"""Environment variable read for the key's password unless the caller names another."""

_COSIGN_LABELS = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
_CONVERT_HINT = (
    "modelseal reads PKCS#8 PEM keys. Create one with\n"
    "  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes256 -out key.pem\n"
    "(the password then goes in the environment variable), and give cosign the same key with\n"
    "  cosign import-key-pair --key key.pem"
)


def public_key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    """The bundle's ``publicKey.hint``: base64 SHA-256 of the DER SubjectPublicKeyInfo (as
    cosign writes it), so a verifier can tell which key a bundle expects."""
    return base64.b64encode(spki_sha256(public_key)).decode()


def statement_json(statement: Mapping[str, Any]) -> bytes:
    """The bytes signed for a statement: sorted keys, no whitespace, UTF-8 (the same
    serialization as :func:`modelseal.publish.statements.statement_bytes`)."""
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


MAX_KEY_BYTES = 64 * KIB
"""A PEM key is a few hundred bytes; a larger file is refused (exit 2)."""


class SigningKeyError(SigningError):
    """The key file is unusable (missing, not P-256, wrong password): bad input, exit 2."""

    exit_code = ExitCode.USAGE


def load_private_key(
    path: Path, *, password_env: str = DEFAULT_PASSWORD_ENV
) -> ec.EllipticCurvePrivateKey:
    """Read an ECDSA P-256 private key; every failure is a :class:`SigningError` that names
    the file (and the variable), never its content."""
    try:
        data = read_input(path, what="signing key", limit=MAX_KEY_BYTES)
    except ConfigError as e:
        raise SigningKeyError(e.message) from None
    if any(f"-----BEGIN {label}-----".encode() in data for label in _COSIGN_LABELS):
        raise SigningKeyError(
            f"{path} is in cosign's own encrypted key format, which modelseal cannot read.",
            hint=_CONVERT_HINT,
        )
    if b"-----BEGIN PUBLIC KEY-----" in data and b"PRIVATE KEY-----" not in data:
        raise SigningKeyError(f"{path} holds a public key; signing needs the private key.")
    if b"PRIVATE KEY-----" not in data:
        raise SigningKeyError(f"{path} is not a PEM private key.", hint=_CONVERT_HINT)
    key = _load_pem(data, path, password_env)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "")
        raise SigningKeyError(
            f"{path} holds a {kind or 'non-EC'} key; modelseal signs with ECDSA P-256 only.",
            hint=_CONVERT_HINT,
        )
    if not isinstance(key.curve, ec.SECP256R1):
        raise SigningKeyError(
            f"{path} holds an EC key on curve {key.curve.name}; modelseal signs with "
            "ECDSA P-256 (secp256r1) only.",
            hint=_CONVERT_HINT,
        )
    return key


def _load_pem(data: bytes, path: Path, password_env: str) -> Any:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        pass  # encrypted: needs the password (handled below)
    except (ValueError, UnsupportedAlgorithm):
        raise SigningKeyError(
            f"{path} is not a readable PEM private key (PKCS#8 or EC).", hint=_CONVERT_HINT
        ) from None
    secret = os.environ.get(password_env)
    if not secret:
        raise SigningKeyError(
            f"{path} is encrypted; put its password in the environment variable {password_env}."
        )
    try:
        return serialization.load_pem_private_key(data, password=secret.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SigningKeyError(
            f"{path} could not be decrypted with the password in {password_env} "
            "(wrong password, or an unsupported encryption)."
        ) from None


class KeySigner(Signer):
    """Signs with one ECDSA P-256 private key (see the module docstring for the formats)."""

    mode = "key"

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, *, source: str = "key") -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise SigningError(f"{source}: modelseal signs with ECDSA P-256 keys only.")
        self._key = private_key
        self.source = source
        self.public_key = private_key.public_key()
        self.hint = public_key_hint(self.public_key)

    @classmethod
    def from_file(cls, path: Path, *, password_env: str = DEFAULT_PASSWORD_ENV) -> KeySigner:
        """Load the key at ``path``; the password, if any, is read from ``$password_env``."""
        return cls(load_private_key(path, password_env=password_env), source=str(path))

    def __repr__(self) -> str:
        return f"KeySigner(source={self.source!r}, hint={self.hint!r})"

    @property
    def public_key_pem(self) -> str:
        """The public key as PEM SubjectPublicKeyInfo (what ``cosign verify --key`` takes)."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def _sign(self, data: bytes) -> bytes:
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    def sign_message(self, payload: bytes) -> Signed:
        """ECDSA-SHA256 over ``payload`` (cosign's simple-signing signature)."""
        signature = _b64(self._sign(payload))
        bundle = {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": self._material(),
            "messageSignature": {
                "messageDigest": {
                    "algorithm": "SHA2_256",
                    "digest": _b64(hashlib.sha256(payload).digest()),
                },
                "signature": signature,
            },
        }
        return Signed(
            content="message-signature",
            bundle=bundle,
            payload=payload,
            signature_b64=signature,
        )

    def sign_statement(self, statement: Mapping[str, Any]) -> Signed:
        """A DSSE envelope over the statement's canonical JSON (payloadType in-toto)."""
        kind = statement.get("_type") if isinstance(statement, Mapping) else None
        if not isinstance(kind, str) or not kind.startswith("https://in-toto.io/Statement/"):
            raise SigningError("only in-toto Statements are signed as DSSE envelopes.")
        payload = statement_json(statement)
        signature = _b64(self._sign(dsse_pae(IN_TOTO_PAYLOAD_TYPE, payload)))
        encoded = _b64(payload)
        bundle = {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": self._material(),
            "dsseEnvelope": {
                "payload": encoded,
                "payloadType": IN_TOTO_PAYLOAD_TYPE,
                # no keyid, as cosign writes it: DSSE verifiers skip a signature whose keyid
                # differs from the verifying key's id (cosign 2.5 then finds 0 signatures)
                "signatures": [{"sig": signature}],
            },
        }
        # cosign's .att layer: Go struct field order, and the empty keyid cosign writes
        envelope = {
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "payload": encoded,
            "signatures": [{"keyid": "", "sig": signature}],
        }
        return Signed(
            content="dsse-envelope",
            bundle=bundle,
            payload=payload,
            signature_b64=signature,
            dsse_envelope=json.dumps(envelope, separators=(",", ":")).encode(),
        )

    def _material(self) -> dict[str, Any]:
        return {"publicKey": {"hint": self.hint}, "tlogEntries": []}


def generate_ephemeral_key(directory: Path) -> tuple[Path, Path]:
    """Create a fresh, unencrypted P-256 key pair for demos and tests: ``signing-key.pem``
    (PKCS#8, mode 0600) and ``signing-key.pub`` (PEM SubjectPublicKeyInfo, mode 0644) in
    ``directory``; returns ``(private_path, public_path)``. Existing files are replaced."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_path = directory / "signing-key.pem"
    public_path = directory / "signing-key.pub"
    # Each made with its final mode before any byte is written (under the umask), then
    # renamed into place: the private key is never readable by others, not even for a moment.
    fsio.write_bytes_atomic(private_path, private, mode=0o600)
    fsio.write_bytes_atomic(public_path, public, mode=0o644)
    return private_path, public_path
