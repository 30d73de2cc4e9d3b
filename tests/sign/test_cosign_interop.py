"""cosign 2.5 and modelseal agree, both ways, on the local Sigstore stack.

* cosign verifies what :class:`KeylessSigner` makes: the v0.3 bundle (``--new-bundle-format
  --trusted-root``) and the cosign v2 pieces (signature + certificate + Rekor bundle, which is
  what a ``.sig``/``.att`` layer carries; fed to cosign as its old blob bundle format).
* modelseal verifies what cosign makes: ``sign-blob``/``attest-blob`` keyless outputs.

No public service is reachable: cosign gets the stack's keys through ``--trusted-root`` or its
``SIGSTORE_*`` variables, and a dead HTTPS proxy for anything else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.support.sigstore_local import DEFAULT_EMAIL, LocalSigstore
from tests.support.tools import require

from modelseal.sign.interface import Signed
from modelseal.sign.keyless import KeylessSigner
from modelseal.sign.verify import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    ExpectedSigner,
    verify_bundle,
    verify_cosign_attestation,
    verify_cosign_signature,
)

BLOB = b"model weights, for cosign\n"


@pytest.fixture(scope="module", autouse=True)
def _cosign_installed() -> None:
    """Every test here runs the real cosign (``LocalSigstore.run_cosign``)."""
    require(shutil.which("cosign") is not None, "cosign")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "blob").write_bytes(BLOB)
    return tmp_path


def slsa_statement() -> dict[str, Any]:
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "blob", "digest": {"sha256": hashlib.sha256(BLOB).hexdigest()}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://modelseal.test/build/v1"}},
    }


def old_bundle(signed: Signed, signature_b64: str) -> str:
    """cosign's pre-v0.3 blob bundle: the same three pieces a .sig/.att layer annotates."""
    assert signed.certificate_pem is not None
    return json.dumps(
        {
            "base64Signature": signature_b64,
            "cert": base64.b64encode(signed.certificate_pem.encode()).decode(),
            "rekorBundle": signed.rekor_bundle,
        }
    )


def identity_flags(identity: str, issuer: str) -> list[str]:
    return ["--certificate-identity", identity, "--certificate-oidc-issuer", issuer]


def test_cosign_verifies_our_bundle(
    keyless_signer: KeylessSigner,
    sigstore_stack: LocalSigstore,
    trusted_root_path: Path,
    workdir: Path,
) -> None:
    signed = keyless_signer.sign_message(BLOB)
    (workdir / "blob.sigstore.json").write_bytes(signed.bundle_json())
    args = ["verify-blob", "--bundle", str(workdir / "blob.sigstore.json"), "--new-bundle-format",
            "--trusted-root", str(trusted_root_path)]  # fmt: skip
    ok = sigstore_stack.run_cosign(
        workdir,
        *args,
        *identity_flags(DEFAULT_EMAIL, sigstore_stack.issuer_url),
        str(workdir / "blob"),
    )
    assert ok.returncode == 0, ok.stderr
    wrong = sigstore_stack.run_cosign(
        workdir,
        *args,
        *identity_flags("other@modelseal.test", sigstore_stack.issuer_url),
        str(workdir / "blob"),
    )
    assert wrong.returncode != 0
    assert "other@modelseal.test" in wrong.stderr


def test_cosign_verifies_our_attestation_bundle(
    keyless_signer: KeylessSigner,
    sigstore_stack: LocalSigstore,
    trusted_root_path: Path,
    workdir: Path,
) -> None:
    signed = keyless_signer.sign_statement(slsa_statement())
    (workdir / "att.sigstore.json").write_bytes(signed.bundle_json())
    result = sigstore_stack.run_cosign(
        workdir,
        "verify-blob-attestation", "--bundle", str(workdir / "att.sigstore.json"), "--new-bundle-format",
        "--trusted-root", str(trusted_root_path), "--type", "slsaprovenance1",
        *identity_flags(DEFAULT_EMAIL, sigstore_stack.issuer_url), str(workdir / "blob"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_cosign_verifies_our_sig_layer_pieces(
    keyless_signer: KeylessSigner, sigstore_stack: LocalSigstore, workdir: Path
) -> None:
    signed = keyless_signer.sign_message(BLOB)
    (workdir / "old.json").write_text(old_bundle(signed, signed.signature_b64))
    result = sigstore_stack.run_cosign(
        workdir,
        "verify-blob", "--bundle", str(workdir / "old.json"), "--offline",
        *identity_flags(DEFAULT_EMAIL, sigstore_stack.issuer_url), str(workdir / "blob"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_cosign_verifies_our_att_layer_pieces(
    keyless_signer: KeylessSigner, sigstore_stack: LocalSigstore, workdir: Path
) -> None:
    signed = keyless_signer.sign_statement(slsa_statement())
    assert signed.dsse_envelope is not None
    # for an attestation the bundle's "signature" is the whole envelope: the .att layer itself
    (workdir / "old.json").write_text(
        old_bundle(signed, base64.b64encode(signed.dsse_envelope).decode())
    )
    result = sigstore_stack.run_cosign(
        workdir,
        "verify-blob-attestation", "--bundle", str(workdir / "old.json"), "--offline",
        "--type", "slsaprovenance1", *identity_flags(DEFAULT_EMAIL, sigstore_stack.issuer_url),
        str(workdir / "blob"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.fixture
def cosign_keyless(sigstore_stack: LocalSigstore, workdir: Path) -> Callable[[list[str]], None]:
    """Run a cosign signing command against the local stack; the token goes by environment."""

    def run(args: list[str]) -> None:
        result = sigstore_stack.run_cosign(
            workdir,
            args[0], "--yes", "--fulcio-url", sigstore_stack.fulcio.url, "--rekor-url",
            sigstore_stack.rekor.url, "--oidc-issuer", sigstore_stack.issuer_url, *args[1:],
            SIGSTORE_ID_TOKEN=sigstore_stack.token(),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    return run


def test_we_verify_cosign_sign_blob(
    cosign_keyless: Callable[[list[str]], None],
    workdir: Path,
    expected: ExpectedSigner,
    issuer_url: str,
) -> None:
    cosign_keyless(["sign-blob", "--bundle", str(workdir / "old.json"), str(workdir / "blob")])
    old = json.loads((workdir / "old.json").read_text())
    annotations = {
        SIGNATURE_ANNOTATION: old["base64Signature"],
        CERTIFICATE_ANNOTATION: base64.b64decode(old["cert"]).decode(),
        BUNDLE_ANNOTATION: json.dumps(old["rekorBundle"]),
    }
    verified = verify_cosign_signature(BLOB, annotations, expected)
    assert (verified.identity, verified.issuer) == (DEFAULT_EMAIL, issuer_url)


def test_we_verify_cosign_new_bundle(
    cosign_keyless: Callable[[list[str]], None], workdir: Path, expected: ExpectedSigner
) -> None:
    cosign_keyless(
        [
            "sign-blob",
            "--new-bundle-format",
            "--bundle",
            str(workdir / "b.json"),
            str(workdir / "blob"),
        ]
    )
    verified = verify_bundle((workdir / "b.json").read_bytes(), payload=BLOB, expected=expected)
    assert verified.identity == DEFAULT_EMAIL


def test_we_verify_cosign_attest_blob(
    cosign_keyless: Callable[[list[str]], None], workdir: Path, expected: ExpectedSigner
) -> None:
    predicate = {
        "buildDefinition": {"buildType": "https://modelseal.test/cosign", "externalParameters": {}},
        "runDetails": {"builder": {"id": "https://modelseal.test/builder"}},
    }
    (workdir / "predicate.json").write_text(json.dumps(predicate))
    cosign_keyless(["attest-blob", "--predicate", str(workdir / "predicate.json"), "--type", "slsaprovenance1",
                    "--bundle", str(workdir / "att.json"), str(workdir / "blob")])  # fmt: skip
    old = json.loads((workdir / "att.json").read_text())
    envelope = base64.b64decode(old["base64Signature"])  # what cosign logged = its .att layer
    annotations = {
        SIGNATURE_ANNOTATION: "",
        CERTIFICATE_ANNOTATION: base64.b64decode(old["cert"]).decode(),
        BUNDLE_ANNOTATION: json.dumps(old["rekorBundle"]),
    }
    verified = verify_cosign_attestation(envelope, annotations, expected)
    st = verified.statement
    assert st is not None
    assert st["subject"][0]["digest"]["sha256"] == hashlib.sha256(BLOB).hexdigest()
