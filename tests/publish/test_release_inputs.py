"""The inputs a release uses, end to end through the CLI: a two-platform build (FROM scratch +
COPY: no emulation) with labels and annotations, reproducible, scanned by Trivy per platform,
published as one index with tags from --tag (a full reference as docker/metadata-action writes
it, and a bare tag) under publish.allowed_tags, then `modelseal verify --policy-digest`."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from examples.offline.trivydb import write_trivy_db
from tests.support import EPOCH
from tests.support.reports import read_report, report_gates

from modelseal._cli import main
from modelseal.publish.registry import RegistryClient
from modelseal.publish.registry_limits import RegistryError

pytestmark = pytest.mark.engine

PLATFORMS = ["linux/amd64", "linux/arm64"]


def _policy(tmp_path: Path, allowed: str = '["v*", "latest"]') -> Path:
    cache = tmp_path / "trivy-cache"
    write_trivy_db(cache, updated_at=datetime.now(UTC))
    policy = tmp_path / "modelseal.yml"
    policy.write_text(
        "version: 1\nbuild:\n  rebuild_check: true\n"
        f"trivy:\n  db:\n    mode: offline\n    cache_dir: {cache}\n"
        f"publish:\n  allowed_tags: {allowed}\n  attestations: [provenance, scan-report]\n"
    )
    return policy


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY model.safetensors /srv/model/\n")
    return ctx


def test_multi_platform_release_with_labels_annotations_and_tags(
    engine: object,
    registry: str,
    keys: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx, policy = _context(tmp_path), _policy(tmp_path)
    out = tmp_path / "out"
    image = f"{registry}/seal/multi"
    code = main([
        "run", str(ctx), "--policy", str(policy), "-o", str(out),
        "--source-date-epoch", str(EPOCH), "--gate", "build", "--gate", "trivy",
        "--platform", "linux/amd64,linux/arm64",
        "--label", "org.opencontainers.image.title=multi",
        "--label", "org.opencontainers.image.version=v1.2.0",
        "--annotation", "manifest:org.opencontainers.image.description=two platforms, one index",
        # as docker/metadata-action writes them with DOCKER_METADATA_ANNOTATIONS_LEVELS=index
        "--annotation", "index:org.opencontainers.image.title=multi",
        "--push", f"{image}:v1.2.0", "--tag", f"{image}:latest", "--tag", "v1.2",
        "--sign", "key", "--key", str(keys[0]),
    ])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    gates = report_gates(read_report(out / "report.json"))
    build, trivy = gates["build"]["facts"], gates["trivy"]["facts"]
    # reproducible across both platforms, labels and annotations included
    assert build["rebuild.reproducible"] == "yes", build
    assert build["platforms"] == "linux/amd64,linux/arm64"
    assert sorted(k for k in build if k.startswith("image.manifest.")) == [
        f"image.manifest.{p}" for p in PLATFORMS
    ]
    # Trivy scanned each platform's image
    assert {f"trivy.findings.{p}" for p in PLATFORMS} <= set(trivy), trivy

    record = json.loads((out / "publish.json").read_text())
    digest = record["digest"]
    assert digest == build["image.digest"] == build["image.top_digest"]
    assert record["tags"] == ["v1.2.0", "latest", "v1.2"]
    client = RegistryClient(registry, "seal/multi")
    media_type, body, got = client.get_manifest("latest")
    assert got == digest and "index" in media_type
    index = json.loads(body)
    assert index["annotations"]["org.opencontainers.image.title"] == "multi"
    found = {}
    for m in index["manifests"]:
        p = m["platform"]
        found[f"{p['os']}/{p['architecture']}"] = m["digest"]
        assert (
            found[f"{p['os']}/{p['architecture']}"]
            == build[f"image.manifest.{p['os']}/{p['architecture']}"]
        )
    assert sorted(found) == PLATFORMS
    for platform, manifest_digest in found.items():
        _, mbody, _ = client.get_manifest(manifest_digest)
        manifest = json.loads(mbody)
        assert (
            manifest["annotations"]["org.opencontainers.image.description"]
            == "two platforms, one index"
        )
        config = json.loads(client.get_blob(manifest["config"]["digest"]))
        assert config["config"]["Labels"] == {
            "org.opencontainers.image.title": "multi",
            "org.opencontainers.image.version": "v1.2.0",
        }, platform
        assert config["architecture"] == platform.split("/")[1]

    params = json.loads((out / "provenance.intoto.json").read_text())["predicate"][
        "buildDefinition"
    ]["externalParameters"]
    assert params["platforms"] == PLATFORMS
    assert params["labels"]["org.opencontainers.image.title"] == "multi"
    assert params["annotations"] == {
        "index:org.opencontainers.image.title": "multi",
        "manifest:org.opencontainers.image.description": "two platforms, one index",
    }
    assert params["tags"] == ["v1.2.0", "latest", "v1.2"]
    policy_hex = hashlib.sha256(policy.read_bytes()).hexdigest()
    assert params["policy"]["sha256"] == policy_hex

    # verify: the attested run was judged by this policy, and by no other
    ok = ["verify", f"{image}:latest", "--key", str(keys[1]), "--format", "json"]
    assert main([*ok, "--policy-digest", f"sha256:{policy_hex}"]) == 1  # no sbom attested
    result = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["policy"]["ok"] and not checks["sbom"]["ok"]
    assert checks["signature"]["ok"] and checks["provenance"]["ok"]
    assert checks["scan-report"]["ok"]
    other = hashlib.sha256(b"version: 1\nvulnerabilities: {fail_on: none}\n").hexdigest()
    assert main([*ok, "--policy-digest", f"sha256:{other}"]) == 1
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert not checks["policy"]["ok"]
    assert checks["policy"]["detail"] == f"judged by another policy (sha256:{policy_hex})"
    with pytest.raises(SystemExit) as e:
        main([*ok, "--policy-digest", "sha256:1234"])
    assert e.value.code == 2


def test_a_tag_outside_allowed_tags_is_a_usage_error_before_the_build(
    registry: str, keys: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx, policy = _context(tmp_path), _policy(tmp_path, '["v*"]')
    image = f"{registry}/seal/refused"
    base = ["run", str(ctx), "--policy", str(policy), "-o", str(tmp_path / "out"),
            "--sign", "key", "--key", str(keys[0])]  # fmt: skip
    assert main([*base, "--push", f"{image}:v1", "--tag", "latest"]) == 2
    assert "tag 'latest' is not allowed by" in capsys.readouterr().err
    assert main([*base, "--push", f"{image}:nightly"]) == 2
    assert "tag 'nightly' is not allowed" in capsys.readouterr().err
    assert main([*base, "--push", f"{image}:v1", "--tag", f"{registry}/seal/other:v2"]) == 2
    assert "publishes (and signs) in one repository" in capsys.readouterr().err
    assert main([*base, "--tag", "v1"]) == 2
    assert "--tag needs --push" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(RegistryError):
        RegistryClient(registry, "seal/refused").get_manifest("v1")
