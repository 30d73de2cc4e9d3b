"""ML-BOM data: each pinned model file as a CycloneDX ``machine-learning-model`` component.

The models gate writes ``models.json`` (plain data, stable); the SBOM gate turns it into
components with :func:`to_components` and adds what cyclonedx-python-lib cannot model yet (the
``modelCard`` and the datasets it references) with :func:`model_cards` and
:func:`dataset_components`.

What a component carries, where known: the SHA-256; a ``pkg:huggingface/ORG/NAME@COMMIT`` purl
when the lock's source is ``hf://ORG/NAME`` at a full 40-hex commit (the purl-spec's
``huggingface`` type: namespace and name case-sensitive, the commit lower-cased); the card's
declared license (an SPDX id when it is one, else its name); a ``modelCard`` with the task,
architecture family and architecture, and dataset references, from the card and config.json
beside the file (:mod:`modelseal.models.card`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from modelseal import fsio
from modelseal.models.hub import DEFAULT_ENDPOINT

if TYPE_CHECKING:
    from cyclonedx.model.component import Component

MODELS_JSON_VERSION = 1

#: ``hf://ORG/NAME`` as a lock records a hub source (the hub's repository id rules).
_HF_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_HF_URI = re.compile(rf"hf://({_HF_PART})/({_HF_PART})")
_COMMIT = re.compile(r"[0-9a-fA-F]{40}")
#: The bom-ref prefix of a dataset a model card names.
DATASET_REF_PREFIX = "modelseal:dataset:"


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
        card = e.get("card")
        if card:
            rec["card"] = dict(card)
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


def hf_purl(source: Mapping[str, Any] | None) -> str | None:
    """``pkg:huggingface/ORG/NAME@commit`` for a source ``hf://ORG/NAME`` at a full commit (with
    ``?repository_url=ENDPOINT`` when the lock records a hub other than the public one, and
    ``#PATH``, the file in the repository, when the lock records it); ``None`` for any other
    source (a branch, a tag or a short hash pins nothing)."""
    src = source or {}
    m = _HF_URI.fullmatch(str(src.get("uri", "")))
    rev = str(src.get("revision", ""))
    if m is None or not _COMMIT.fullmatch(rev):
        return None
    # The characters allowed above need no percent-encoding in a purl.
    purl = f"pkg:huggingface/{m.group(1)}/{m.group(2)}@{rev.lower()}"
    endpoint = src.get("endpoint")
    if isinstance(endpoint, str) and endpoint.rstrip("/") != DEFAULT_ENDPOINT:
        # The purl-spec's huggingface type: repository_url, default https://huggingface.co.
        purl += "?repository_url=" + quote(endpoint.rstrip("/"), safe=":/")
    path = src.get("path")
    parts = path.split("/") if isinstance(path, str) else []
    if parts and all(p not in ("", ".", "..") for p in parts):
        # The file inside the repository (purl subpath: segments percent-encoded).
        purl += "#" + "/".join(quote(p, safe="") for p in parts)
    return purl


_DEPRECATED_SPDX = frozenset(
    {"AGPL-1.0", "AGPL-3.0", "GFDL-1.1", "GFDL-1.2", "GFDL-1.3", "GPL-1.0", "GPL-2.0",
     "GPL-3.0", "LGPL-2.0", "LGPL-2.1", "LGPL-3.0"}
)  # fmt: skip
"""SPDX ids deprecated in favour of ``-only``/``-or-later`` (the Hub's ``gpl-3.0`` etc.)."""


def _current_spdx_id(spdx: str | None) -> str | None:
    """``spdx`` with a deprecated id replaced by its ``-only`` form, which is what the
    deprecated id meant (SPDX: "GPL-3.0" was "GNU General Public License v3.0 only")."""
    from cyclonedx.spdx import is_supported_id

    if spdx in _DEPRECATED_SPDX and is_supported_id(f"{spdx}-only"):
        return f"{spdx}-only"
    return spdx


def model_bom_ref(record: Mapping[str, Any]) -> str:
    """The bom-ref of a model record's component."""
    return f"model:{record['path']}@sha256:{record['sha256']}"


def _card(record: Mapping[str, Any]) -> Mapping[str, Any]:
    card = record.get("card")
    return card if isinstance(card, Mapping) else {}


def model_cards(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """CycloneDX 1.6 ``modelCard`` objects by the bom-ref of their model component, for the
    records whose card or config says something."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        card = _card(r)
        params: dict[str, Any] = {}
        if card.get("task"):
            params["task"] = str(card["task"])
        if card.get("model_type"):
            params["architectureFamily"] = str(card["model_type"])
        if card.get("architectures"):
            params["modelArchitecture"] = ", ".join(map(str, card["architectures"]))
        if card.get("datasets"):
            params["datasets"] = [{"ref": DATASET_REF_PREFIX + str(d)} for d in card["datasets"]]
        if not params:
            continue
        props = [{"name": "modelseal:format", "value": str(r["format"])}]
        out[model_bom_ref(r)] = {"modelParameters": params, "properties": props}
    return out


def dataset_components(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One CycloneDX ``data`` component per dataset the records' cards name (the targets of
    the modelCards' dataset references), sorted by name."""
    names = sorted({str(d) for r in records for d in _card(r).get("datasets", [])})
    return [
        {
            "type": "data",
            "name": name,
            "bom-ref": DATASET_REF_PREFIX + name,
            "data": [{"type": "dataset", "name": name}],
        }
        for name in names
    ]


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
    from cyclonedx.model.license import DisjunctiveLicense, LicenseAcknowledgement
    from cyclonedx.spdx import fixup_id
    from packageurl import PackageURL

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
        card = _card(r)
        props += [Property(name="modelseal:card-note", value=str(n)) for n in card.get("notes", [])]
        licenses = []
        for lic in card.get("licenses", []):
            if str(lic).lower() == "unknown":  # the Hub's "unknown" declares no license
                continue
            spdx = _current_spdx_id(fixup_id(str(lic)))
            licenses.append(
                DisjunctiveLicense(id=spdx, acknowledgement=LicenseAcknowledgement.DECLARED)
                if spdx
                else DisjunctiveLicense(
                    name=str(lic), acknowledgement=LicenseAcknowledgement.DECLARED
                )
            )
        purl = hf_purl(src)
        out.append(
            Component(
                type=ComponentType.MACHINE_LEARNING_MODEL,
                name=str(r["path"]).rsplit("/", 1)[-1],
                version=str(src["revision"]) if src.get("revision") else None,
                bom_ref=model_bom_ref(r),
                purl=PackageURL.from_string(purl) if purl else None,
                licenses=licenses,
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=str(r["sha256"]))],
                properties=props,
                external_references=refs,
            )
        )
    return out
