"""The rebuild attestation: the report's predicate (:data:`~modelseal.publish.statements.
REBUILD_PREDICATE`) signed as an in-toto statement about the image, written to
``OUT/rebuild.sigstore.json`` and, with ``--push``, attached to the image as a Sigstore bundle
referrer (so several independent rebuilders can attest the same image)."""

from __future__ import annotations

from pathlib import Path

from modelseal import fsio
from modelseal.errors import PublishError
from modelseal.publish.cosign import bundle_referrer_manifest
from modelseal.publish.registry import OCI_MANIFEST, RegistryClient, sha256_digest
from modelseal.publish.registry_limits import RegistryError
from modelseal.publish.statements import rebuild_statement
from modelseal.rebuild.report import RebuildReport
from modelseal.sign.interface import Signed, Signer


def sign_report(report: RebuildReport, signer: Signer, out_dir: Path) -> tuple[Signed, Path]:
    """Sign the report's statement; the bundle is written to ``out_dir/rebuild.sigstore.json``."""
    statement = rebuild_statement(
        report.plan.image_name, report.plan.expected_digest, report.predicate()
    )
    signed = signer.sign_statement(statement)
    path = out_dir / "rebuild.sigstore.json"
    fsio.write_bytes_atomic(path, signed.bundle_json() + b"\n")
    return signed, path


def push_attestation(client: RegistryClient, digest: str, signed: Signed) -> str:
    """Attach ``signed`` to the image ``digest`` as a bundle referrer; returns its digest."""
    try:
        media, body, got = client.get_manifest(digest)
        if got != digest or sha256_digest(body) != digest:
            raise PublishError(f"the registry's manifest for {digest} does not match it.")
        manifest, blobs = bundle_referrer_manifest(signed, digest, len(body), media or OCI_MANIFEST)
        for blob_digest, blob in blobs.items():
            client.push_blob(blob_digest, blob)
        return str(client.add_referrer(digest, manifest)["digest"])
    except RegistryError as e:
        raise PublishError(
            f"attaching the rebuild attestation to {digest} failed: {e.diagnostics()} "
            "(the signed bundle is in rebuild.sigstore.json)."
        ) from None
