"""The three in-toto statements a run attaches (provenance, SBOM, scan report), as a local run
makes them."""

from __future__ import annotations

from typing import Any

from modelseal.publish.build_environment import LOCAL_BUILDER_ID
from modelseal.publish.provenance import ProvenanceInput, provenance_statement, rfc3339
from modelseal.publish.publisher import Attestation
from modelseal.publish.statements import sbom_statement, scan_report_statement


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
