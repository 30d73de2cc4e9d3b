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
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

from modelseal.judge import Outcome
from modelseal.oci import image_purl
from modelseal.reports.model import Report


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


#: Trivy's OS families (a result's ``Type`` for ``os-pkgs``) → the purl type and namespace it
#: writes for their packages (trivy pkg/purl: purlType, and the namespace is the family, SUSE
#: Linux Enterprise's spelled without spaces).
_OS_PURL: Final[Mapping[str, tuple[str, str]]] = {
    **{f: ("deb", f) for f in ("debian", "ubuntu")},
    **{f: ("apk", f) for f in ("alpine", "wolfi", "chainguard")},
    **{
        f: ("rpm", f)
        for f in (
            "redhat", "centos", "rocky", "alma", "amazon", "fedora", "oracle", "opensuse",
            "opensuse.leap", "opensuse.tumbleweed", "photon", "azurelinux", "cbl-mariner",
        )
    },
    "suse linux enterprise server": ("rpm", "sles"),
    "suse linux enterprise micro": ("rpm", "sle-micro"),
}  # fmt: skip
#: Language ecosystems (lower-cased) → purl type.
_LANG_PURL: Final[Mapping[str, str]] = {
    "pypi": "pypi", "npm": "npm", "node-pkg": "npm", "yarn": "npm", "pnpm": "npm",
    "gomod": "golang", "gobinary": "golang", "jar": "maven", "pom": "maven", "gradle": "maven",
    "gemspec": "gem", "bundler": "gem", "cargo": "cargo", "rust-binary": "cargo",
    "composer": "composer", "nuget": "nuget", "dotnet-core": "nuget",
}  # fmt: skip


def _enc(text: str) -> str:
    """A purl component percent-encoded (every character but the unreserved ones): parsers
    decode it back, so Trivy compares the same name (``@scope`` is ``%40scope``)."""
    return urllib.parse.quote(text, safe="-._~")


def _package_purl(evidence: Mapping[str, str]) -> str:
    """The purl of the finding's package as Trivy writes it (its ``--vex`` matches a statement
    to a package by it): OS packages as ``pkg:deb/<distro>/…``, ``pkg:rpm/<distro>/…`` or
    ``pkg:apk/<distro>/…`` after the scanned image's OS family; PyPI names lower-cased with
    ``_`` as ``-``; npm, Go and Maven names split into namespace and name; every component
    percent-encoded. A Debian or RPM version's epoch (``1:1.2.13-1``) is the ``epoch``
    qualifier, not part of the version: with the epoch in the version Trivy never matches."""
    ecosystem = (evidence.get("ecosystem") or "").lower()
    name = evidence.get("package") or ""
    version = evidence.get("version") or ""
    namespace = ""
    qualifiers = ""
    if ecosystem in _OS_PURL:
        kind, namespace = _OS_PURL[ecosystem]
        epoch, colon, rest = version.partition(":")
        if kind in ("deb", "rpm") and colon and epoch.isdigit():
            version, qualifiers = rest, f"?epoch={int(epoch)}"
    else:
        kind = _LANG_PURL.get(ecosystem, "")
        if kind == "pypi":
            name = name.lower().replace("_", "-")
        elif kind in ("npm", "golang"):
            namespace, _, name = name.lower().rpartition("/")
        elif kind == "maven":
            namespace, _, name = name.replace(":", "/").rpartition("/")
        elif not kind:
            kind = "generic"
    path = "/".join(_enc(part) for part in namespace.split("/")) + "/" if namespace else ""
    return f"pkg:{kind}/{path}{_enc(name)}@{_enc(version)}{qualifiers}"


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
