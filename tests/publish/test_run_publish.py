"""The CLI end to end: `modelseal run --push` builds with BuildKit, judges, publishes to the
real registry with a key, and `modelseal verify` checks it — exit codes included."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from tests.support.model_files import safetensors_bytes
from tests.support.reports import read_report, report_gates
from tests.support.sigstore_local import LocalSigstore

from modelseal._cli import main
from modelseal.models.signing import verify_model_signature
from modelseal.publish.registry import RegistryClient
from modelseal.publish.registry_limits import RegistryError
from modelseal.sign.key import generate_ephemeral_key

POLICY = """\
version: 1
build:
  rebuild_check: false
publish:
  tags: [stable]
  attestations: [provenance, sbom, scan-report]
"""


def _context(root: Path, dockerfile: str) -> tuple[Path, Path]:
    ctx = root / "ctx"
    ctx.mkdir(parents=True)
    (ctx / "hello.txt").write_text("hello\n")
    (ctx / "Dockerfile").write_text(dockerfile)
    policy = root / "modelseal.yml"
    policy.write_text(POLICY)
    return ctx, policy


def test_run_push_then_verify(
    registry: str,
    busybox_base: str,
    keys: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx, policy = _context(tmp_path, "FROM base\nCOPY hello.txt /srv/\n")
    out = tmp_path / "out"
    image = f"{registry}/seal/cli"
    code = main([
        "run", str(ctx), "--policy", str(policy), "--build-context", f"base={busybox_base}",
        "-o", str(out), "--gate", "build", "--gate", "sbom",
        "--push", f"{image}:1.0", "--sign", "key", "--key", str(keys[0]),
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    record = json.loads((out / "publish.json").read_text())
    digest = record["digest"]
    assert record["reference"] == f"{image}@{digest}"
    assert record["tags"] == ["1.0", "stable"]
    assert set(record["bundles"]) == {"image", "image-cosign", "provenance", "sbom", "scan-report"}
    assert f"published {image}@{digest}" in printed
    build = report_gates(read_report(out / "report.json"))["build"]
    assert build["facts"]["image.digest"] == digest  # what was judged is what shipped
    provenance = json.loads((out / "provenance.intoto.json").read_text())
    assert provenance["subject"][0]["digest"]["sha256"] == digest.removeprefix("sha256:")
    byproducts = {b["name"] for b in provenance["predicate"]["runDetails"]["byproducts"]}
    assert {"report.json", "sbom.cdx.json"} <= byproducts
    # The engine's own BuildKit built it (containerd store): recorded with the engine's version.
    assert build["facts"]["builder.name"] == "default"
    internal = provenance["predicate"]["buildDefinition"]["internalParameters"]
    assert internal["builder"] == {
        "name": "default", "driver": "docker", "engine": build["facts"]["engine.version"],
    }  # fmt: skip

    assert main(["verify", f"{image}:stable", "--key", str(keys[1])]) == 0
    assert "verified" in capsys.readouterr().out
    # Re-judged under a policy that wants gates this run skipped: not verified, and says why.
    assert main(["verify", f"{image}@{digest}", "--key", str(keys[1]), "--policy", str(policy), "--format", "json"]) == 1  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert not result["verified"] and result["digest"] == digest
    assert "requires gates the attested run did not run: models, image, trivy, pip-audit" in result["checks"][-1]["detail"]  # fmt: skip
    lenient = tmp_path / "deploy.yml"
    lenient.write_text(
        "version: 1\nmodels: {enabled: false}\ntrivy: {enabled: false}\n"
        "pip_audit: {enabled: false}\nimage: {enabled: false}\nbuild: {require_pinned_base: true}\n"
    )
    assert main(["verify", f"{image}@{digest}", "--key", str(keys[1]), "--policy", str(lenient), "--format", "json"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["verified"] and "PASSED under" in result["checks"][-1]["detail"]
    # A deployer whose policy maps model paths into the image needs the models-image check: a
    # run that skipped it (models were switched off, so was models-image) never compared them.
    mapped = tmp_path / "deploy-mapped.yml"
    mapped.write_text(lenient.read_text().replace(
        "models: {enabled: false}", "models: {enabled: true, require_lock: false, "
        "image_paths: {model: /srv/model}}"
    ))  # fmt: skip
    assert main(["verify", f"{image}@{digest}", "--key", str(keys[1]), "--policy", str(mapped), "--format", "json"]) == 1  # fmt: skip
    detail = json.loads(capsys.readouterr().out)["checks"][-1]["detail"]
    assert "did not run: models, models-image" in detail, detail
    # a policy's verify section never overrides the signer the command line pinned
    hijack = tmp_path / "hijack.yml"
    hijack.write_text(f"version: 1\nverify:\n  public_key: {keys[1]}\n")
    assert main(["verify", f"{image}:1.0", "--policy", str(hijack), "--certificate-oidc-issuer", "https://x.example", "--certificate-identity", "bot@x.example"]) == 1  # fmt: skip
    assert "NOT verified" in capsys.readouterr().out

    _, stranger = generate_ephemeral_key(tmp_path / "stranger")
    assert main(["verify", f"{image}:1.0", "--key", str(stranger)]) == 1
    assert "NOT verified" in capsys.readouterr().out
    assert main(["verify", f"{image}:1.0"]) == 2
    assert "verify needs an expected signer" in capsys.readouterr().err
    assert main(["verify", f"{image}:1.0", "--certificate-oidc-issuer", "https://x.example",
                 "--certificate-identity-regexp", "bot@"]) == 2  # fmt: skip
    assert "must be anchored" in capsys.readouterr().err


def test_a_failing_verdict_publishes_nothing(
    registry: str, busybox_base: str, keys: tuple[Path, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    ctx, policy = _context(tmp_path, "FROM base\nRUN exit 7\n")
    code = main([
        "run", str(ctx), "--policy", str(policy), "--build-context", f"base={busybox_base}",
        "-o", str(tmp_path / "out"), "--gate", "build",
        "--push", f"{registry}/seal/never:1.0", "--sign", "key", "--key", str(keys[0]),
    ])  # fmt: skip
    assert code == 3
    assert "not published: the verdict is ERRORED" in capsys.readouterr().err
    assert not (tmp_path / "out" / "publish.json").exists()
    with pytest.raises(RegistryError) as e:
        RegistryClient(registry, "seal/never").get_manifest("1.0")
    assert e.value.status == 404


def test_publish_usage_errors_come_before_the_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx, policy = _context(tmp_path, "FROM base\n")
    base = ["run", str(ctx), "--policy", str(policy), "-o", str(tmp_path / "out")]
    assert main([*base, "--push", "127.0.0.1:5000/seal/x:1", "--sign", "key"]) == 2
    assert "no key was given" in capsys.readouterr().err
    assert main([*base, "--push", "127.0.0.1:5000/seal/x:1", "--sign", "key", "--key", str(tmp_path / "nope.pem")]) == 2  # fmt: skip
    assert "nope.pem" in capsys.readouterr().err
    assert main([*base, "--push", "127.0.0.1:5000/seal/x:1", "--gate", "models"]) == 2
    assert "--push needs the build gate" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([*base, "--push", "Not/A/Ref@sha256:00"])
    assert e.value.code == 2
    assert "not a digest" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_run_push_keyless_in_a_github_job_then_verify_identity(
    registry: str,
    busybox_base: str,
    github_ambient: dict[str, Any],
    sigstore_stack: LocalSigstore,
    trust_config_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """GitHub's ambient OIDC (a local token endpoint) → local Fulcio/Rekor → registry; then
    verify by the workflow identity, the GitHub builder id and the source repository."""
    from tests.support.sigstore_local import github_identity

    monkeypatch.setenv("GITHUB_REPOSITORY", github_ambient["repository"])
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    monkeypatch.setenv("RUNNER_ENVIRONMENT", "github-hosted")
    ctx, policy = _context(tmp_path, "FROM base\nCOPY hello.txt /srv/\n")
    image = f"{registry}/seal/keyless-cli"
    code = main([
        "run", str(ctx), "--policy", str(policy), "--build-context", f"base={busybox_base}",
        "-o", str(tmp_path / "out"), "--gate", "build", "--gate", "sbom",
        "--push", f"{image}:1.0", "--sign", "keyless", "--trust-config", str(trust_config_path),
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    token = sigstore_stack.github_env()["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
    assert token not in captured.out + captured.err
    for path in (tmp_path / "out").rglob("*.json"):
        assert token not in path.read_text(), path
    who = [
        "--certificate-oidc-issuer", sigstore_stack.issuer_url,
        "--certificate-identity", github_identity(github_ambient),
        "--trust-config", str(trust_config_path),
        "--builder-id", "https://github.com/actions/runner/github-hosted",
        "--source-repository", f"https://github.com/{github_ambient['repository']}",
    ]  # fmt: skip
    assert main(["verify", f"{image}:1.0", *who]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert github_identity(github_ambient) in out
    wrong = [*who[:2], "--certificate-identity-regexp", r"^https://github\.com/someone-else/.*$", *who[4:]]  # fmt: skip
    assert main(["verify", f"{image}:1.0", *wrong]) == 1


def _model_context(root: Path, extra_policy: str) -> tuple[Path, Path]:
    """A context with a locked model directory and a policy with ``extra_policy`` added."""
    ctx, policy = _context(root, "FROM base\nCOPY hello.txt /srv/\n")
    (ctx / "model").mkdir()
    (ctx / "model" / "a.safetensors").write_bytes(safetensors_bytes([1.0, 2.0]))
    (ctx / "model" / "b.safetensors").write_bytes(safetensors_bytes([3.0]))
    assert main(["models", "lock", str(ctx / "model"), "--lock", str(ctx / "models.lock")]) == 0
    policy.write_text(POLICY + extra_policy)
    return ctx, policy


def test_run_push_signs_the_models_and_records_the_signature(
    registry: str,
    busybox_base: str,
    keys: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """publish.sign_models: the locked model files are signed with the run's key before the
    publish, the signature verifies with model-signing, and the provenance records it."""
    ctx, policy = _model_context(tmp_path, "  sign_models: true\n")
    out = tmp_path / "out"
    image = f"{registry}/seal/signed-models"
    code = main([
        "run", str(ctx), "--policy", str(policy), "--build-context", f"base={busybox_base}",
        "-o", str(out), "--gate", "build", "--gate", "sbom", "--gate", "models",
        "--push", f"{image}:1.0", "--sign", "key", "--key", str(keys[0]),
    ])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    signature = out / "model.sig"
    assert not (ctx / "model.sig").exists()  # the build context is left as it was
    assert (
        verify_model_signature(model_dir=ctx / "model", signature=signature, public_key=keys[1])
        is None
    )
    provenance = json.loads((out / "provenance.intoto.json").read_text())
    byproducts = {b["name"]: b for b in provenance["predicate"]["runDetails"]["byproducts"]}
    recorded = byproducts["model.sig"]
    assert recorded["digest"] == {"sha256": hashlib.sha256(signature.read_bytes()).hexdigest()}
    assert recorded["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    notes = recorded["annotations"]
    assert notes["modelDir"] == "model" and notes["files"] == "2" and notes["signer"] == "key"
    assert notes["predicateType"] == "https://model_signing/signature/v1.0"
    bundle = json.loads(signature.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert notes["modelDigest"] == "sha256:" + statement["subject"][0]["digest"]["sha256"]
    record = json.loads((out / "publish.json").read_text())
    assert record["model_signature"]["sha256"] == recorded["digest"]["sha256"]
    # `verify` checks the signature against the provenance's record, and the files against it.
    verify = ["verify", f"{image}:1.0", "--key", str(keys[1]), "--format", "json"]
    capsys.readouterr()
    model = ["--model-signature", str(signature), "--model-dir", str(ctx / "model")]
    assert main([*verify, *model]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert (
        checks["model-signature"]["ok"] and "2 model file(s)" in checks["model-signature"]["detail"]
    )
    (ctx / "model" / "b.safetensors").write_bytes(safetensors_bytes([3.5]))
    assert main([*verify, *model]) == 1
    detail = json.loads(capsys.readouterr().out)["checks"][-1]["detail"]
    assert "b.safetensors" in detail
    # A signature the provenance does not record (made by the same key) does not count.
    assert main(["models", "lock", str(ctx / "model"), "--lock", str(ctx / "models.lock")]) == 0
    other = tmp_path / "other.sig"
    args = ["models", "sign", str(ctx / "model"), "--lock", str(ctx / "models.lock")]
    assert main([*args, "--key", str(keys[0]), "--signature", str(other)]) == 0
    capsys.readouterr()
    assert main([*verify, "--model-signature", str(other), "--model-dir", str(ctx / "model")]) == 1
    detail = json.loads(capsys.readouterr().out)["checks"][-1]["detail"]
    assert "not a model signature the provenance records" in detail
    assert main(["verify", f"{image}:1.0", "--key", str(keys[1]), "--model-dir", "x"]) == 2


def test_sign_models_usage_errors_come_before_the_build(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ctx, policy = _model_context(tmp_path, "  sign_models: true\n")
    base = ["run", str(ctx), "--policy", str(policy), "-o", str(tmp_path / "out")]
    push = ["--push", "127.0.0.1:5000/seal/x:1"]
    assert main([*base, *push, "--sign", "none"]) == 2
    assert "publish.sign_models" in capsys.readouterr().err
    (ctx / "models.lock").unlink()
    assert main([*base, *push, "--sign", "key", "--key", str(keys[0])]) == 2
    assert "models.lock" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_run_push_keyless_signs_the_models_verified_by_the_same_identity(
    registry: str,
    busybox_base: str,
    github_ambient: dict[str, Any],
    sigstore_stack: LocalSigstore,
    trust_config_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """publish.sign_models keyless (GitHub's ambient identity → local Fulcio/Rekor): the model
    signature carries the workflow's certificate; verify takes it only under the same rules."""
    from tests.support.sigstore_local import github_identity

    monkeypatch.setenv("GITHUB_REPOSITORY", github_ambient["repository"])
    ctx, policy = _model_context(tmp_path, "  sign_models: true\n")
    out = tmp_path / "out"
    image = f"{registry}/seal/keyless-models"
    code = main([
        "run", str(ctx), "--policy", str(policy), "--build-context", f"base={busybox_base}",
        "-o", str(out), "--gate", "build", "--gate", "sbom", "--gate", "models",
        "--push", f"{image}:1.0", "--sign", "keyless", "--trust-config", str(trust_config_path),
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    provenance = json.loads((out / "provenance.intoto.json").read_text())
    (recorded,) = [
        b for b in provenance["predicate"]["runDetails"]["byproducts"] if b["name"] == "model.sig"
    ]
    identity = github_identity(github_ambient)
    assert recorded["annotations"]["identity"] == identity
    assert recorded["annotations"]["issuer"] == sigstore_stack.issuer_url
    who = [
        "--certificate-oidc-issuer", sigstore_stack.issuer_url,
        "--trust-config", str(trust_config_path), "--format", "json",
        "--model-signature", str(out / "model.sig"), "--model-dir", str(ctx / "model"),
    ]  # fmt: skip
    assert main(["verify", f"{image}:1.0", "--certificate-identity", identity, *who]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["model-signature"]["ok"] and identity in checks["model-signature"]["detail"]
    # Another identity expected: neither the image nor the model signature verify.
    other = ["--certificate-identity-regexp", r"^https://github\.com/someone-else/.*$"]
    assert main(["verify", f"{image}:1.0", *other, *who]) == 1
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert not checks["model-signature"]["ok"]
