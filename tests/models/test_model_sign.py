"""``modelseal models sign``: OpenSSF model-signing signatures over the locked model files,
made with a key or keyless against the local Sigstore stack, and checked by the models gate
(and by model-signing itself)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.support.model_files import safetensors_bytes
from tests.support.reports import read_report, report_gates
from tests.support.sigstore_local import DEFAULT_EMAIL

from modelseal._cli import main
from modelseal.models.signing import (
    PREDICATE_TYPE,
    check_recorded_model_signature,
    verify_model_signature,
)
from modelseal.sign.expected import ExpectedSigner
from modelseal.sign.trust import load_trust_config


def _write_key(path: Path, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return key


def _write_public(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A build context with a locked model directory (two weight files and a README the
    policy ignores), a signing key pair, and the working directory set to it."""
    root = tmp_path / "ctx"
    model = root / "model"
    (model / "sub").mkdir(parents=True)
    (model / "w.safetensors").write_bytes(safetensors_bytes([1.0, 2.0, 3.0]))
    (model / "sub" / "v.safetensors").write_bytes(safetensors_bytes([4.0]))
    (model / "README.md").write_text("notes, not pinned\n")
    key = _write_key(tmp_path / "key.pem")
    _write_public(root / "key.pub", key)
    (root / "modelseal.yml").write_text('version: 1\nmodels:\n  ignore: ["README.md"]\n')
    monkeypatch.chdir(root)
    monkeypatch.delenv("SIGSTORE_ID_TOKEN", raising=False)
    monkeypatch.delenv("MODELSEAL_KEY_PASSWORD", raising=False)
    assert main(["models", "lock", "model", "--ignore", "README.md"]) == 0
    return root


def _payload(signature: Path) -> dict[str, object]:
    bundle = json.loads(signature.read_text())
    statement: dict[str, object] = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return statement


def _gate_policy(root: Path, signature: str, signer: str) -> None:
    """A policy whose models gate verifies ``signature`` over ``model`` (``signer``: the YAML
    lines naming the expected signer)."""
    (root / "modelseal.yml").write_text(
        "version: 1\nmodels:\n"
        '  ignore: ["README.md"]\n'
        f"  signature:\n    path: {signature}\n    model_dir: model\n{signer}"
    )


def _run_gate(root: Path, out: Path) -> tuple[int, list[dict[str, str]]]:
    code = main(["run", str(root), "--gate", "models", "-o", str(out)])
    (gate,) = report_gates(read_report(out / "report.json")).values()
    return code, [f for f in gate["findings"] if f["decision"] == "fail"]


def test_key_round_trip_then_tamper_names_the_file(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "sign", "--key", str(tmp_path / "key.pem")]) == 0
    assert "3 file(s) of model signed with the key and verified" in capsys.readouterr().out
    signature = repo / "model.sig"  # beside the model directory by default
    assert signature.is_file()
    # model-signing's own verifier accepts it, and so does the models gate.
    assert (
        verify_model_signature(
            model_dir=repo / "model", signature=signature, public_key=repo / "key.pub"
        )
        is None
    )
    _gate_policy(repo, "model.sig", "    public_key: key.pub\n")
    code, failed = _run_gate(repo, tmp_path / "out1")
    assert code == 0 and failed == []
    # One file changed and re-pinned: the lock agrees, the signature does not, naming it.
    (repo / "model" / "sub" / "v.safetensors").write_bytes(safetensors_bytes([5.0]))
    assert main(["models", "lock", "model", "--ignore", "README.md"]) == 0
    code, failed = _run_gate(repo, tmp_path / "out2")
    assert code == 1
    assert [f["id"] for f in failed] == ["models.signature"]
    assert "sub/v.safetensors" in failed[0]["title"]


def test_keyless_round_trip_with_the_local_sigstore(
    repo: Path,
    tmp_path: Path,
    oidc_token: Callable[..., str],
    trust_config_path: Path,
    issuer_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.copy(trust_config_path, repo / "trust.json")
    token = oidc_token()
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", token)
    args = ["models", "sign", "model", "--keyless", "--trust-config", "trust.json"]
    assert main([*args, "--signature", "keyless.sig", "--format", "json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["mode"] == "keyless"
    assert made["identity"] == DEFAULT_EMAIL and made["issuer"] == issuer_url
    # The signature carries the certificate, never the identity token.
    assert token.split(".")[2] not in (repo / "keyless.sig").read_text()
    trust = load_trust_config(trust_config_path)
    assert (
        verify_model_signature(
            model_dir=repo / "model",
            signature=repo / "keyless.sig",
            identity=DEFAULT_EMAIL,
            issuer=issuer_url,
            trust=trust,
        )
        is None
    )
    # The gate, with the policy's trust config; then a signer the policy does not name.
    signer = f"    issuer: {issuer_url}\n    trust_config: trust.json\n"
    _gate_policy(repo, "keyless.sig", f"    identity: {DEFAULT_EMAIL}\n{signer}")
    code, failed = _run_gate(repo, tmp_path / "out1")
    assert code == 0 and failed == []
    _gate_policy(repo, "keyless.sig", f"    identity: someone-else@modelseal.test\n{signer}")
    code, failed = _run_gate(repo, tmp_path / "out2")
    assert code == 1 and [f["id"] for f in failed] == ["models.signature"]
    # Without the private deployment's root (the public one by default) it cannot verify.
    assert verify_model_signature(
        model_dir=repo / "model",
        signature=repo / "keyless.sig",
        identity=DEFAULT_EMAIL,
        issuer=issuer_url,
    )


def test_keyless_with_the_github_ambient_identity(
    repo: Path,
    trust_config_path: Path,
    github_ambient: dict[str, str],
    issuer_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["models", "sign", "--keyless", "--trust-config", str(trust_config_path)]
    assert main([*args, "--format", "json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["identity"].startswith("https://github.com/") and made["issuer"] == issuer_url


def test_every_file_is_signed_and_nothing_is_left_to_ignore_paths(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """model-signing's ignore_paths are path prefixes: an ignored name could later become a
    directory of files every verifier skips. So none is written: the pinned files and the
    ignored README are all signed, and a signature inside the directory is refused."""
    sig = tmp_path / "model.sig"
    argv = ["models", "sign", "--key", str(tmp_path / "key.pem")]
    assert main([*argv, "--signature", str(repo / "model" / "model.sig")]) == 2
    assert "inside model" in capsys.readouterr().err
    assert main([*argv, "--signature", str(sig)]) == 0
    statement = _payload(sig)
    predicate = statement["predicate"]
    assert isinstance(predicate, dict)
    names = [r["name"] for r in predicate["resources"]]
    assert names == ["README.md", "sub/v.safetensors", "w.safetensors"]
    assert predicate["serialization"].get("ignore_paths", []) == []
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    pub = repo / "key.pub"
    assert verify_model_signature(model_dir=repo / "model", signature=sig, public_key=pub) is None
    # The ignored README is signed as it was; a file added later fails too.
    (repo / "model" / "README.md").write_text("edited\n")
    problem = verify_model_signature(model_dir=repo / "model", signature=sig, public_key=pub)
    assert problem is not None
    (repo / "model" / "README.md").write_text("notes, not pinned\n")
    (repo / "model" / "extra.bin").write_bytes(b"planted")
    problem = verify_model_signature(model_dir=repo / "model", signature=sig, public_key=pub)
    assert problem is not None and "extra.bin" in problem


def test_sign_model_directory_refuses_an_unpinned_unignored_file(
    repo: Path, tmp_path: Path
) -> None:
    """Issue 15 review (/tmp/review15/sign_ignore.py): publish.sign_models signed without the
    lock check, and an unpinned file went into ignore_paths — later a directory of anything.
    The check is in sign_model_directory itself, for every caller."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from modelseal.errors import ConfigError
    from modelseal.models.lock import load_lock
    from modelseal.models.signing import sign_model_directory
    from modelseal.sign.key import KeySigner

    key = load_pem_private_key((tmp_path / "key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    (repo / "model" / "evil.pkl").write_bytes(b"cos\nsystem\n(S'id'\ntR.")
    lock = load_lock(repo / "models.lock")
    sig = tmp_path / "out.sig"
    with pytest.raises(ConfigError, match=r"model/evil\.pkl is neither pinned"):
        sign_model_directory(lock, "model", signature=sig, signer=KeySigner(key), ignore=["*.md"])
    assert not sig.exists()
    (repo / "model" / "evil.pkl").unlink()
    # A pinned file changed since it was locked is refused too.
    (repo / "model" / "w.safetensors").write_bytes(safetensors_bytes([9.0]))
    with pytest.raises(ConfigError, match="does not have the digest the lock pins"):
        sign_model_directory(lock, "model", signature=sig, signer=KeySigner(key), ignore=["*.md"])
    assert not sig.exists()


def test_a_symlink_at_the_signature_path_is_refused(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (repo / "model.sig").symlink_to(victim)
    assert main(["models", "sign", "--key", str(tmp_path / "key.pem")]) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in err and "Traceback" not in err
    assert victim.read_text() == "keep me\n"
    assert (repo / "model.sig").is_symlink()


def test_a_lock_mismatch_exits_1_before_signing(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "model" / "w.safetensors").write_bytes(safetensors_bytes([9.0, 2.0, 3.0]))
    (repo / "model" / "new.bin").write_bytes(b"unpinned, not ignored")
    assert main(["models", "sign", "--key", str(tmp_path / "key.pem")]) == 1
    out = capsys.readouterr().out
    assert "models.changed" in out and "model/w.safetensors" in out
    assert "models.extra" in out and "model/new.bin" in out
    assert "nothing was signed" in out
    assert not (repo / "model.sig").exists()


def test_usage_errors_exit_2(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = str(tmp_path / "key.pem")
    for argv in (
        ["models", "sign"],  # neither --key nor --keyless
        ["models", "sign", "--key", key, "--keyless"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    # --trust-config without --keyless; a directory outside the lock's; one the lock does
    # not pin; a missing lock; an encrypted key without its password, then a wrong one.
    assert main(["models", "sign", "--key", key, "--trust-config", "t.json"]) == 2
    assert main(["models", "sign", str(tmp_path), "--key", key]) == 2
    (repo / "empty").mkdir()
    assert main(["models", "sign", "empty", "--key", key]) == 2
    assert main(["models", "sign", "--key", key, "--lock", "nope.lock"]) == 2
    _write_key(tmp_path / "enc.pem", b"s3cret")
    assert main(["models", "sign", "--key", str(tmp_path / "enc.pem")]) == 2
    monkeypatch.setenv("MODELSEAL_KEY_PASSWORD", "wrong")
    assert main(["models", "sign", "--key", str(tmp_path / "enc.pem")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "s3cret" not in err
    assert not (repo / "model.sig").exists()
    monkeypatch.setenv("MODELSEAL_KEY_PASSWORD", "s3cret")
    assert main(["models", "sign", "--key", str(tmp_path / "enc.pem")]) == 0


def test_keyless_without_an_identity_cannot_sign(
    repo: Path, trust_config_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    for name in (
        "GITHUB_ACTIONS",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    code = main(["models", "sign", "--keyless", "--trust-config", str(trust_config_path)])
    assert code == 3
    assert "No OIDC identity token" in capsys.readouterr().err
    assert not (repo / "model.sig").exists()


def test_a_recorded_keyless_model_signature_is_held_to_the_expected_signer(
    repo: Path,
    oidc_token: Callable[..., str],
    trust_config_path: Path,
    issuer_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`verify --model-signature`: recorded by the provenance (by digest) is not enough — its
    certificate must pass the expected signer's rules, and the files must match."""
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", oidc_token())
    args = ["models", "sign", "--keyless", "--trust-config", str(trust_config_path)]
    assert main(args) == 0
    sig = repo / "model.sig"
    provenance = {
        "predicate": {
            "runDetails": {
                "byproducts": [
                    {
                        "name": "model.sig",
                        "digest": {"sha256": hashlib.sha256(sig.read_bytes()).hexdigest()},
                        "annotations": {"predicateType": PREDICATE_TYPE, "modelDir": "model"},
                    }
                ]
            }
        }
    }

    def check(**who: str) -> tuple[bool, str]:
        expected = ExpectedSigner(issuer=issuer_url, trust_config=trust_config_path, **who)
        return check_recorded_model_signature(sig, None, expected=expected, provenance=provenance)

    ok, why = check(identity=DEFAULT_EMAIL)
    assert ok, why
    ok, why = check(identity_regexp=r"^release-bot@modelseal\.test$")
    assert ok, why
    ok, why = check(identity="someone-else@modelseal.test")
    assert not ok and "does not match the expected identity" in why
    ok, why = check_recorded_model_signature(
        sig, None, expected=ExpectedSigner(identity=DEFAULT_EMAIL, issuer=issuer_url,
                                           trust_config=trust_config_path),
        provenance={"predicate": {"runDetails": {"byproducts": []}}},
    )  # fmt: skip
    assert not ok and "it records none" in why
    (repo / "model" / "w.safetensors").write_bytes(safetensors_bytes([0.0]))
    ok, why = check(identity=DEFAULT_EMAIL)
    assert not ok and "w.safetensors" in why


def test_the_signature_never_replaces_a_pinned_file(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = repo / "model" / "w.safetensors"
    before = weights.read_bytes()
    args = ["models", "sign", "--key", str(tmp_path / "key.pem"), "--signature", str(weights)]
    assert main(args) == 2
    assert "the lock pins" in capsys.readouterr().err
    assert weights.read_bytes() == before


def _byproduct(sig: bytes) -> dict[str, object]:
    return {
        "predicate": {
            "runDetails": {
                "byproducts": [
                    {
                        "name": "model.sig",
                        "digest": {"sha256": hashlib.sha256(sig).hexdigest()},
                        "annotations": {"predicateType": PREDICATE_TYPE, "modelDir": "model"},
                    }
                ]
            }
        }
    }


def test_verify_model_signature_consults_every_verified_provenance(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15 review: `verify --model-signature` looked only at the first verified SLSA
    provenance; the signature recorded by another one was "not recorded"."""
    from modelseal.app import VerifyRequest, _with_model_signature
    from modelseal.policy.loader import load_policy_text
    from modelseal.publish.provenance import SLSA_PROVENANCE_V1
    from modelseal.publish.verify_image import VerifyResult

    assert main(["models", "sign", "--key", str(tmp_path / "key.pem")]) == 0
    capsys.readouterr()
    sig = repo / "model.sig"
    first = _byproduct(b"another run's signature")
    result = VerifyResult(
        image="registry.test/app", digest="sha256:" + "0" * 64, checks=(),
        statements={SLSA_PROVENANCE_V1: first},
        all_statements={SLSA_PROVENANCE_V1: (first, _byproduct(sig.read_bytes()))},
    )  # fmt: skip
    request = VerifyRequest(
        image="registry.test/app", policy=load_policy_text("version: 1\n", "p.yml"),
        model_signature=sig,
    )  # fmt: skip
    expected = ExpectedSigner(public_key_pem=(repo / "key.pub").read_bytes())
    (check,) = _with_model_signature(result, request, expected).checks
    assert check.ok, check.detail


def test_the_signature_checked_is_the_copy_whose_digest_matched(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15 review: the file was read for its sha256, then model-signing read it again;
    the bytes verified are now the very bytes that matched."""
    import modelseal.models.signing as signing

    assert main(["models", "sign", "--key", str(tmp_path / "key.pem")]) == 0
    capsys.readouterr()
    sig = repo / "model.sig"
    recorded = sig.read_bytes()
    seen: list[bytes] = []
    real = signing.verify_model_signature

    def swap_then_verify(**kw: Any) -> str | None:
        sig.write_bytes(b"swapped after the digest matched")
        seen.append(Path(kw["signature"]).read_bytes())
        return real(**kw)

    monkeypatch.setattr(signing, "verify_model_signature", swap_then_verify)
    expected = ExpectedSigner(public_key_pem=(repo / "key.pub").read_bytes())
    ok, why = check_recorded_model_signature(
        sig, None, expected=expected, provenance=_byproduct(recorded)
    )
    assert ok, why
    assert seen == [recorded]


def test_a_signature_that_does_not_verify_leaves_the_previous_one(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15 review: a failed signing wrote over the previous signature, then removed it."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from modelseal.errors import GateError
    from modelseal.models.lock import load_lock
    from modelseal.models.signing import sign_model_directory
    from modelseal.sign.key import KeySigner

    assert main(["models", "sign", "--key", str(tmp_path / "key.pem")]) == 0
    capsys.readouterr()
    sig = repo / "model.sig"
    before = sig.read_bytes()
    key = load_pem_private_key((tmp_path / "key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    other = ec.generate_private_key(ec.SECP256R1())

    class WrongHalf(KeySigner):
        """Signs with one key, names another's public half: the check after signing fails."""

        @property
        def public_key_pem(self) -> str:
            return KeySigner(other).public_key_pem

    with pytest.raises(GateError, match="does not verify"):
        sign_model_directory(
            load_lock(repo / "models.lock"), "model", signature=sig, signer=WrongHalf(key),
            ignore=["README.md"],
        )  # fmt: skip
    assert sig.read_bytes() == before
