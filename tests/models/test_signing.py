"""OpenSSF model-signing signatures, made and verified with the real model-signing package."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.support.model_files import safetensors_bytes
from tests.support.reports import read_report, report_gates

from modelseal._cli import main
from modelseal.errors import ConfigError
from modelseal.models.signing import verify_model_signature


@pytest.fixture
def signed(tmp_path: Path) -> Path:
    from model_signing import signing

    root = tmp_path / "ctx"
    model = root / "model"
    model.mkdir(parents=True)
    (model / "w.safetensors").write_bytes(safetensors_bytes([1.0, 2.0, 3.0]))
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (root / "key.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    signing.Config().use_elliptic_key_signer(private_key=tmp_path / "key.pem").sign(
        model, root / "model.sig"
    )
    return root


def test_valid_signature_verifies(signed: Path) -> None:
    assert (
        verify_model_signature(
            model_dir=signed / "model",
            signature=signed / "model.sig",
            public_key=signed / "key.pub",
        )
        is None
    )


def test_tampered_model_does_not_verify(signed: Path) -> None:
    (signed / "model" / "w.safetensors").write_bytes(safetensors_bytes([1.0, 2.0, 4.0]))
    problem = verify_model_signature(
        model_dir=signed / "model", signature=signed / "model.sig", public_key=signed / "key.pub"
    )
    assert problem is not None and "w.safetensors" in problem


def test_wrong_key_does_not_verify(signed: Path, tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    (signed / "other.pub").write_bytes(
        other.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert verify_model_signature(
        model_dir=signed / "model", signature=signed / "model.sig", public_key=signed / "other.pub"
    )


def test_exactly_one_of_key_and_identity(signed: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        verify_model_signature(model_dir=signed / "model", signature=signed / "model.sig")
    with pytest.raises(ConfigError, match="needs issuer"):
        verify_model_signature(
            model_dir=signed / "model", signature=signed / "model.sig", identity="x@y"
        )


def test_gate_fails_on_a_bad_signature(
    signed: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(signed)
    assert main(["models", "lock", "model"]) == 0
    (signed / "policy.yml").write_text(
        "version: 1\nmodels:\n  signature:\n    path: model.sig\n    model_dir: model\n    public_key: key.pub\n"
    )
    out = signed.parent / "out"
    args = ["run", str(signed), "--gate", "models", "--policy", "policy.yml", "-o", str(out)]
    assert main(args) == 0
    (signed / "model" / "w.safetensors").write_bytes(safetensors_bytes([9.0, 2.0, 3.0]))
    assert main(["models", "lock", "model"]) == 0  # re-pinned: only the signature can object now
    assert main(args) == 1
    capsys.readouterr()
    (gate,) = report_gates(read_report(out / "report.json")).values()
    assert [f["id"] for f in gate["findings"] if f["decision"] == "fail"] == ["models.signature"]
