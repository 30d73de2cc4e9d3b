"""ML-BOM data: each pinned model file as a CycloneDX ``machine-learning-model`` component.

The models gate writes ``models.json`` (plain data, stable); the SBOM gate turns it into
components with :func:`to_components`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelseal import fsio

if TYPE_CHECKING:
    from cyclonedx.model.component import Component

MODELS_JSON_VERSION = 1


def model_records(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Normalize model descriptions (path, size, sha256, format, source?) into records."""
    records = []
    for e in entries:
        rec: dict[str, Any] = {
            "path": str(e["path"]),
            "size": int(e["size"]),
            "sha256": str(e["sha256"]),
            "format": str(e["format"]),
        }
        src = e.get("source")
        if src:
            rec["source"] = {k: v for k, v in dict(src).items() if v is not None}
        records.append(rec)
    return sorted(records, key=lambda r: r["path"])


def write_models_json(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """Write ``models.json``."""
    data = {"version": MODELS_JSON_VERSION, "models": list(records)}
    fsio.write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_models_json(path: Path) -> list[dict[str, Any]]:
    """Read ``models.json`` back."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("version") != MODELS_JSON_VERSION:
        raise ValueError(f"{path} is not a models.json of version {MODELS_JSON_VERSION}")
    return list(data["models"])


def to_components(records: Iterable[Mapping[str, Any]]) -> list[Component]:
    """CycloneDX components (type machine-learning-model) for the model records."""
    # cyclonedx is a heavy import; only the SBOM gate needs it.
    from cyclonedx.model import (
        ExternalReference,
        ExternalReferenceType,
        HashAlgorithm,
        HashType,
        Property,
        XsUri,
    )
    from cyclonedx.model.component import Component, ComponentType

    # cyclonedx is a heavy import; only the SBOM gate needs it.

    out = []
    for r in records:
        refs = []
        src = r.get("source") or {}
        if src.get("uri"):
            refs.append(
                ExternalReference(
                    type=ExternalReferenceType.DISTRIBUTION,
                    url=XsUri(str(src["uri"])),
                    comment=f"revision {src['revision']}" if src.get("revision") else None,
                )
            )
        props = [
            Property(name="modelseal:format", value=str(r["format"])),
            Property(name="modelseal:size", value=str(r["size"])),
            Property(name="modelseal:path", value=str(r["path"])),
        ]
        out.append(
            Component(
                type=ComponentType.MACHINE_LEARNING_MODEL,
                name=str(r["path"]).rsplit("/", 1)[-1],
                version=str(src["revision"]) if src.get("revision") else None,
                bom_ref=f"model:{r['path']}@sha256:{r['sha256']}",
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=str(r["sha256"]))],
                properties=props,
                external_references=refs,
            )
        )
    return out
