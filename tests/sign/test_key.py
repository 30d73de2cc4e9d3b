"""KeySigner: signatures checked with ``cryptography`` directly; key-loading failures are clear
and never show key material or the password."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from modelseal.sign.dsse import dsse_pae
from modelseal.sign.interface import BUNDLE_MEDIA_TYPE, IN_TOTO_PAYLOAD_TYPE, SigningError
from modelseal.sign.key import (
    KeySigner,
    generate_ephemeral_key,
    load_private_key,
    public_key_hint,
)

PASSWORD = "correct horse battery staple"
STATEMENT = {
    "_type": "https://in-toto.io/Statement/v1",
    "subject": [{"name": "reg.example/app", "digest": {"sha256": "ab" * 32}}],
    "predicateType": "https://slsa.dev/provenance/v1",
    "predicate": {"buildDefinition": {"buildType": "https://example.com/t/v1"}},
}


def _public(path: Path) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def _verify(pub: ec.EllipticCurvePublicKey, sig_b64: str, data: bytes) -> None:
    pub.verify(base64.b64decode(sig_b64), data, ec.ECDSA(hashes.SHA256()))


def _pem_body(pem: bytes) -> list[str]:
    """Lines of base64 key material, to assert none leaks into a message."""
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


def _assert_no_secret(err: SigningError, pem: bytes) -> None:
    for text in (str(err), err.diagnostics(), repr(err)):
        assert PASSWORD not in text
        for line in _pem_body(pem):
            assert line not in text


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    return generate_ephemeral_key(tmp_path / "keys")


def test_generate_ephemeral_key_files(keypair: tuple[Path, Path]) -> None:
    private, public = keypair
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert isinstance(_public(public).curve, ec.SECP256R1)
    # a second call replaces the pair (new key, same modes)
    before = private.read_bytes()
    again = generate_ephemeral_key(private.parent)
    assert again == keypair
    assert private.read_bytes() != before
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644


def test_message_signature_verifies(keypair: tuple[Path, Path]) -> None:
    private, public = keypair
    signer = KeySigner.from_file(private)
    pub = _public(public)
    payload = b'{"critical":{"type":"cosign container image signature"},"optional":null}'
    signed = signer.sign_message(payload)
    assert signed.content == "message-signature"
    assert signed.payload == payload
    _verify(pub, signed.signature_b64, payload)
    with pytest.raises(InvalidSignature):
        _verify(pub, signed.signature_b64, payload.replace(b"null", b"{}"))
    bundle = signed.bundle
    assert bundle["mediaType"] == BUNDLE_MEDIA_TYPE
    der = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hint = base64.b64encode(hashlib.sha256(der).digest()).decode()
    assert bundle["verificationMaterial"] == {"publicKey": {"hint": hint}, "tlogEntries": []}
    assert public_key_hint(pub) == hint == signer.hint
    message = bundle["messageSignature"]
    assert message["messageDigest"] == {
        "algorithm": "SHA2_256",
        "digest": base64.b64encode(hashlib.sha256(payload).digest()).decode(),
    }
    assert message["signature"] == signed.signature_b64
    assert (signed.certificate_pem, signed.chain_pem, signed.rekor_bundle) == (None, None, None)
    assert signed.dsse_envelope is None
    assert json.loads(signed.bundle_json()) == bundle
    assert signer.public_key_pem.encode() == public.read_bytes()


def test_dsse_pae_matches_the_spec_vector() -> None:
    # the DSSE protocol document's example
    assert dsse_pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_statement_envelope_verifies(keypair: tuple[Path, Path]) -> None:
    private, public = keypair
    signed = KeySigner.from_file(private).sign_statement(STATEMENT)
    pub = _public(public)
    assert signed.content == "dsse-envelope"
    assert json.loads(signed.payload) == STATEMENT
    assert signed.dsse_envelope is not None
    envelope = json.loads(signed.dsse_envelope)
    assert list(envelope) == ["payloadType", "payload", "signatures"]
    assert envelope["payloadType"] == IN_TOTO_PAYLOAD_TYPE
    assert base64.b64decode(envelope["payload"]) == signed.payload
    assert envelope["signatures"] == [{"keyid": "", "sig": signed.signature_b64}]
    _verify(pub, signed.signature_b64, dsse_pae(IN_TOTO_PAYLOAD_TYPE, signed.payload))
    with pytest.raises(InvalidSignature):  # the raw payload is not what was signed
        _verify(pub, signed.signature_b64, signed.payload)
    tampered = signed.payload.replace(b"ab", b"cd", 1)
    with pytest.raises(InvalidSignature):
        _verify(pub, signed.signature_b64, dsse_pae(IN_TOTO_PAYLOAD_TYPE, tampered))
    dsse = signed.bundle["dsseEnvelope"]
    assert dsse["payload"] == envelope["payload"]
    assert dsse["payloadType"] == IN_TOTO_PAYLOAD_TYPE
    assert dsse["signatures"] == [{"sig": signed.signature_b64}]  # no keyid, as cosign
    with pytest.raises(SigningError, match="in-toto"):
        KeySigner.from_file(private).sign_statement({"predicate": {}})


def _write(
    path: Path, key: object, password: str | None, fmt: serialization.PrivateFormat
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, fmt, encryption)  # type: ignore[attr-defined]
    path.write_bytes(pem)
    return pem  # type: ignore[no-any-return]


def test_encrypted_key_with_password_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "enc.pem"
    pem = _write(path, key, PASSWORD, serialization.PrivateFormat.PKCS8)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    monkeypatch.delenv("MODELSEAL_KEY_PASSWORD", raising=False)
    with pytest.raises(SigningError) as err:
        KeySigner.from_file(path)
    assert str(path) in str(err.value) and "MODELSEAL_KEY_PASSWORD" in str(err.value)
    monkeypatch.setenv("MODELSEAL_KEY_PASSWORD", PASSWORD)
    signer = KeySigner.from_file(path)
    assert signer.hint == public_key_hint(key.public_key())
    signed = signer.sign_message(b"payload")
    _verify(key.public_key(), signed.signature_b64, b"payload")
    # a caller-chosen variable name
    monkeypatch.setenv("SEAL_PW", PASSWORD)
    assert KeySigner.from_file(path, password_env="SEAL_PW").hint == signer.hint
    # traditional OpenSSL "EC PRIVATE KEY" with Proc-Type encryption reads the same way
    trad = tmp_path / "trad.pem"
    _write(trad, key, PASSWORD, serialization.PrivateFormat.TraditionalOpenSSL)
    assert KeySigner.from_file(trad).hint == signer.hint
    # a password set for an unencrypted key is simply not needed
    plain = tmp_path / "plain.pem"
    _write(plain, key, None, serialization.PrivateFormat.PKCS8)
    assert KeySigner.from_file(plain).hint == signer.hint


def test_wrong_password_is_clear_and_leaks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "enc.pem"
    pem = _write(
        path, ec.generate_private_key(ec.SECP256R1()), "other", serialization.PrivateFormat.PKCS8
    )
    monkeypatch.setenv("MODELSEAL_KEY_PASSWORD", PASSWORD)
    with pytest.raises(SigningError) as err:
        KeySigner.from_file(path)
    assert str(path) in str(err.value)
    assert "MODELSEAL_KEY_PASSWORD" in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    _assert_no_secret(err.value, pem)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (ec.generate_private_key(ec.SECP384R1()), "secp384r1"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSA"),
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519"),
    ],
    ids=["p384", "rsa", "ed25519"],
)
def test_not_p256_is_refused(tmp_path: Path, key: object, expected: str) -> None:
    path = tmp_path / "other.pem"
    pem = _write(path, key, None, serialization.PrivateFormat.PKCS8)
    with pytest.raises(SigningError) as err:
        load_private_key(path)
    assert str(path) in str(err.value)
    assert "P-256" in str(err.value) and expected in str(err.value)
    _assert_no_secret(err.value, pem)


def test_unreadable_and_foreign_files(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SigningError, match="not a readable PEM private key") as err:
        load_private_key(garbage)
    assert str(garbage) in str(err.value)
    assert "bm90IGEga2V5" not in err.value.diagnostics()

    noise = tmp_path / "noise.bin"
    noise.write_bytes(b"\x00\x01 just bytes")
    with pytest.raises(SigningError, match="not a PEM private key"):
        load_private_key(noise)

    with pytest.raises(SigningError, match="public key"):
        load_private_key(keypair[1])

    with pytest.raises(SigningError, match="cannot read") as err:
        load_private_key(tmp_path / "missing.pem")
    assert "missing.pem" in str(err.value)

    cosign_key = tmp_path / "cosign.key"
    body = base64.b64encode(
        json.dumps({"kdf": {"name": "scrypt"}, "ciphertext": "c2VjcmV0"}).encode()
    )
    pem = (
        b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
        + body
        + b"\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    )
    cosign_key.write_bytes(pem)
    with pytest.raises(SigningError, match="cosign's own encrypted key format") as err:
        load_private_key(cosign_key)
    assert "cosign import-key-pair" in err.value.diagnostics()
    _assert_no_secret(err.value, pem)


def test_repr_shows_no_key_material(keypair: tuple[Path, Path]) -> None:
    private, _ = keypair
    signer = KeySigner.from_file(private)
    text = repr(signer)
    assert signer.hint in text and str(private) in text
    for line in _pem_body(private.read_bytes()):
        assert line not in text
