"""Fixtures for the admission-policy export tests: the statements a real ``modelseal run
--push`` attached to a real image, and the CRD schemas of the admission controllers."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.gitrepo import git

from modelseal._cli import main
from modelseal.publish.provenance import SLSA_PROVENANCE_V1
from modelseal.publish.statements import CYCLONEDX_PREDICATE, SCAN_REPORT_PREDICATE
from modelseal.sign.key import generate_ephemeral_key

#: The CRDs, copied unchanged from the projects (tests/data/admission/README.md: sources and
#: commits), so that a fresh clone validates against them offline.
SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "admission"
#: The source repository the sealed image's provenance names (the git remote of the test repo).
SOURCE_REPOSITORY = "https://github.com/org/model-server"


@dataclass(frozen=True)
class Sealed:
    """A published image and what its run attached, as the statements a controller reads once
    their signatures verify."""

    image: str
    """``REGISTRY/REPOSITORY`` (no tag, no digest)."""
    digest: str
    public_key: Path
    public_key_pem: str
    builder_id: str
    statements: dict[str, dict[str, Any]]
    """predicateType → the in-toto statement (provenance, SBOM, scan report)."""
    bundles: dict[str, Path]
    """Name → the Sigstore bundle file ``run --push`` wrote (image, provenance, sbom, …)."""


@pytest.fixture(scope="session")
def sealed(registry: str, busybox_base: str, tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    """``modelseal run --push`` of a small image from a git repository whose remote is
    :data:`SOURCE_REPOSITORY`, key-signed, with every attestation; its verdict PASSED."""
    root = tmp_path_factory.mktemp("sealed")
    repo = root / "repo"
    repo.mkdir()
    (repo / "hello.txt").write_text("hello\n")
    (repo / "Dockerfile").write_text("FROM base\nCOPY hello.txt /srv/\n")
    (repo / "modelseal.yml").write_text(
        "version: 1\nbuild:\n  rebuild_check: never\n"
        "publish:\n  attestations: [provenance, sbom, scan-report]\n"
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", SOURCE_REPOSITORY + ".git")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "model server")
    private, public = generate_ephemeral_key(root / "keys")
    out = root / "out"
    image = f"{registry}/admission/sealed"
    code = main([
        "run", str(repo), "--policy", str(repo / "modelseal.yml"),
        "--build-context", f"base={busybox_base}", "-o", str(out),
        "--gate", "build", "--gate", "sbom",
        "--push", f"{image}:1.0", "--sign", "key", "--key", str(private),
    ])  # fmt: skip
    assert code == 0, "the sealed image could not be published"
    record = json.loads((out / "publish.json").read_text())
    provenance = json.loads((out / "provenance.intoto.json").read_text())
    statements = {SLSA_PROVENANCE_V1: provenance}
    for name, predicate in (("sbom", CYCLONEDX_PREDICATE), ("scan-report", SCAN_REPORT_PREDICATE)):
        bundle = json.loads(Path(record["bundles"][name]).read_text())
        payload = bundle["dsseEnvelope"]["payload"]
        statements[predicate] = json.loads(base64.b64decode(payload))
    return Sealed(
        image=image,
        digest=record["digest"],
        public_key=public,
        public_key_pem=public.read_text(),
        builder_id=provenance["predicate"]["runDetails"]["builder"]["id"],
        statements=statements,
        bundles={k: Path(v) for k, v in record["bundles"].items()},
    )
