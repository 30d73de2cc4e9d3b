"""Fixtures for the publish tests: the real cosign 2.5 offline, a key pair, and the three
statements a run attaches (:func:`statements`, importable from ``tests.publish.conftest``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.tools import require

from modelseal.publish.provenance import (
    LOCAL_BUILDER_ID,
    ProvenanceInput,
    provenance_statement,
    rfc3339,
    sbom_statement,
    scan_report_statement,
)
from modelseal.publish.publisher import Attestation
from modelseal.sign.key import generate_ephemeral_key


def statements(
    image: str,
    digest: str,
    finished_at: str = "2026-11-23T10:00:00Z",
    report: dict[str, Any] | None = None,
) -> list[Attestation]:
    """Provenance, SBOM and scan-report statements about ``image@digest``, as a local run makes
    them (the report PASSED, finished at ``finished_at``; ``report`` replaces the minimal one)."""
    provenance = provenance_statement(
        ProvenanceInput(
            image_name=image, manifest_digest=digest, builder_id=LOCAL_BUILDER_ID,
            invocation_id="urn:uuid:00000000-0000-4000-8000-000000000001",
            started_on=rfc3339(1700000000), finished_on=rfc3339(1700000060),
            source_date_epoch=1700000000, dockerfile="Dockerfile",
            repository="https://github.com/example/seal",
        )
    )  # fmt: skip
    sbom = sbom_statement(image, digest, {"bomFormat": "CycloneDX", "specVersion": "1.6"})
    if report is None:
        report = {
            "schema_version": 2, "verdict": "PASSED", "exit_code": 0, "finished_at": finished_at,
            "policy": {"sha256": "ef" * 32}, "gates": [],
        }  # fmt: skip
    scan = scan_report_statement(image, digest, report)
    return [
        Attestation("provenance", provenance),
        Attestation("sbom", sbom),
        Attestation("scan-report", scan),
    ]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An ephemeral P-256 key pair: ``(private PEM, public PEM)`` paths."""
    return generate_ephemeral_key(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def cosign(tmp_path: Path) -> Iterator[Any]:
    """Runs cosign 2.5 offline: proxies point nowhere except for the loopback registry, HOME is
    private, and a trusted root with no authorities stands in for the TUF download."""
    require(shutil.which("cosign") is not None, "cosign")
    home = tmp_path / "cosign-home"
    home.mkdir()
    trusted_root = home / "trusted_root.json"
    trusted_root.write_text(
        json.dumps(
            {
                "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                "tlogs": [], "certificateAuthorities": [], "ctlogs": [], "timestampAuthorities": [],
            }
        )
    )  # fmt: skip
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
        "COSIGN_PASSWORD": "interop-test-pw",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["cosign", *args], capture_output=True, text=True, env=env, cwd=home, timeout=120, check=False
        )  # fmt: skip

    run.home = home  # type: ignore[attr-defined]
    run.trusted_root = trusted_root  # type: ignore[attr-defined]
    yield run
