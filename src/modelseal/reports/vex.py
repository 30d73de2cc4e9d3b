"""``modelseal.openvex.json``: an OpenVEX document recording every vulnerability the policy
accepted through an ``ignore`` entry.

Accepting a risk is not the same as not being affected, so the statements say ``affected`` and
carry the policy's reason and expiry as the action statement: honest for auditors, and a record
that travels with the image. Only an ignore entry that gives an OpenVEX ``justification`` (the
team states the image is not affected, and why) makes its statement ``not_affected``, with the
reason and expiry as ``status_notes``. OpenVEX has no expiry: a published ``not_affected``
statement keeps suppressing the vulnerability in consumers such as Trivy after the ignore entry
expired, so its notes say until when it holds and that consumers must re-check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from modelseal.judge import Outcome
from modelseal.oci import image_purl
from modelseal.reports.model import Report
from modelseal.vuln.findings import package_purl as _package_purl


def render_openvex(report: Report) -> dict[str, Any] | None:
    """The document, or ``None`` when nothing was accepted."""
    image = _image_purl(report)
    statements = []
    for g in report.verdict.gates:
        for d in g.decisions:
            f = d.finding
            if d.outcome is not Outcome.IGNORED or d.ignore is None:
                continue
            aliases = [a for a in f.evidence.get("aliases", "").split(",") if a]
            products: list[dict[str, Any]] = [{"@id": _package_purl(f.evidence)}]
            if image:
                products = [{"@id": image, "subcomponents": products}]
            said = f"Accepted by the modelseal policy ({report.policy_source}): {d.reason}"
            # OpenVEX: not_affected takes a justification (or an impact statement, not both),
            # affected an action statement
            status: dict[str, str] = (
                {"status": "affected", "action_statement": said}
                if d.ignore.justification is None
                else {
                    "status": "not_affected",
                    "justification": d.ignore.justification,
                    # OpenVEX has no expiry field: a signed not_affected statement stays in the
                    # registry, and Trivy keeps suppressing the CVE, after the entry expires.
                    "status_notes": f"{said} Valid until {d.ignore.expires.isoformat()} only "
                    "(the policy's ignore entry expires then): consumers must re-check after "
                    "that date; this statement does not expire by itself.",
                }
            )
            statements.append(
                {
                    "vulnerability": {"name": f.id, **({"aliases": aliases} if aliases else {})},
                    "products": products,
                    **status,
                    "timestamp": Report.iso(report.finished_at),
                }
            )
    if not statements:
        return None
    body = json.dumps(statements, sort_keys=True).encode()
    return {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": f"https://modelseal.dev/vex/{hashlib.sha256(body).hexdigest()[:32]}",
        "author": "modelseal",
        "role": "policy",
        "timestamp": Report.iso(report.finished_at),
        "version": 1,
        "tooling": f"modelseal {report.tool_version}",
        "statements": statements,
    }


def _image_purl(report: Report) -> str | None:
    for g in report.verdict.gates:
        if g.result.gate == "build" and "image.digest" in g.result.facts:
            return image_purl(g.result.facts["image.digest"], None, None)
    return None


def name_image(vex: Mapping[str, Any], digest: str, image_name: str) -> dict[str, Any]:
    """``vex`` with its image product named where it is published: the nameless
    ``pkg:oci/image@DIGEST`` the run wrote becomes ``pkg:oci/NAME@DIGEST?repository_url=…``,
    the purl a scanner derives from the registry image (Trivy's ``--vex oci`` matches the
    product by it). Other products are kept as they are."""
    nameless, named = image_purl(digest, None, None), image_purl(digest, image_name, None)
    statements = []
    for st in vex.get("statements") or ():
        products = [
            {**p, "@id": named} if isinstance(p, Mapping) and p.get("@id") == nameless else p
            for p in (st.get("products") or ())
        ]
        statements.append({**st, "products": products} if "products" in st else dict(st))
    return {**vex, "statements": statements}
