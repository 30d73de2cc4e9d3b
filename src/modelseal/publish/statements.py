"""in-toto Statements about a sealed image: the shared envelope, the scan report, the SBOM,
the OpenVEX document.

Every statement has one subject, the image: ``{"name": <image name>, "digest": {"sha256":
<manifest hex>}}``. Statements are plain dicts (key order fixed by this module); the bytes
that get signed come from :func:`statement_bytes` (sorted keys, no whitespace, UTF-8). The SLSA
provenance statement is built in :mod:`~modelseal.publish.provenance`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from modelseal.errors import ConfigError
from modelseal.oci import DIGEST_RE

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SCAN_REPORT_PREDICATE = "https://modelseal.dev/attestations/scan-report/v1"
"""predicateType of modelseal's scan-report statement."""
CYCLONEDX_PREDICATE = "https://cyclonedx.org/bom"
"""predicateType of a CycloneDX SBOM statement (cosign ``--type cyclonedx``)."""
OPENVEX_PREDICATE = "https://openvex.dev/ns"
"""predicateType of an OpenVEX statement: what ``cosign attest --type openvex`` writes and
``cosign verify-attestation --type openvex`` looks for, and what Trivy's ``--vex oci`` takes
(it also accepts the versioned ``https://openvex.dev/ns/v…``)."""
REBUILD_PREDICATE = "https://modelseal.dev/rebuild/v1"
"""predicateType of a rebuild attestation (``modelseal rebuild --attest``): someone other than
the builder rebuilt the image from its provenance and the source, and says what they got.

The statement's one subject is the image (name and manifest digest, the provenance's subject).
Its predicate (keys in this order; every digest ``sha256:<hex>``):

* ``verdict`` — ``"reproduced"`` (the rebuilt digest is the subject's) or ``"differs"``;
* ``rebuiltDigest`` — the digest the rebuild gave (a manifest, or for several platforms the
  index);
* ``platforms`` — ``{platform: {"expected": digest, "rebuilt": digest | null}}`` per platform
  (``null``: the rebuild gave no manifest for it);
* ``provenance`` — ``{"digest": {"sha256": hex}, "builderId": id}``: the SLSA provenance
  statement the rebuild followed (the hex SHA-256 of its canonical bytes,
  :func:`statement_bytes`) and the builder it named;
* ``source`` — ``{"repository"?, "commit"}`` the rebuild checked out;
* ``rebuilder`` — ``{"modelseal", "builder": {"name", "driver", "image"?}, "engine"?,
  "buildx"?, "buildkit"?}``: the tool and the builder that rebuilt it;
* ``rebuiltOn`` — UTC RFC 3339 (``…Z``) when the rebuild finished;
* ``differences`` — only with ``differs``: ``[{"platform", "part", "detail"}]`` (at most 50),
  the layers, config keys and file paths that differ.

A verifier counts a rebuild only when its signature is by a rebuilder it trusts, its subject is
the image's digest, ``verdict`` is ``reproduced`` and ``rebuiltDigest`` equals the subject.
"""

RUNTIME_PROFILE_PREDICATE = "https://modelseal.dev/attestations/runtime-profile/v1"
"""predicateType of modelseal's runtime-profile statement: the least-privilege way to run the
image, as the image gate computed it from the image it judged
(:mod:`modelseal.imagegate.profile`). Its predicate is ``runtime-profile.json`` (keys in this
order):

* ``version`` — 1;
* ``nonRoot`` — true only when the image's user is resolved and is not uid 0;
* ``user`` — ``{"configured", "uid", "gid", "name", "problem"?}``: the config's ``User`` and
  what it resolves to through the image's ``/etc/passwd`` and ``/etc/group`` (``null`` when it
  cannot be resolved, with the reason);
* ``exposedPorts`` — ``["8080/tcp", …]``; ``writablePaths`` — absolute paths;
* ``kubernetes`` — ``{"securityContext", "podSecurityContext"?, "volumes", "volumeMounts"}``:
  the container ``securityContext`` (``runAsNonRoot``, ``runAsUser``/``runAsGroup`` when
  resolved, ``readOnlyRootFilesystem: true``, ``allowPrivilegeEscalation: false``,
  ``privileged: false``, ``capabilities: {drop: [ALL], add?}``, ``seccompProfile:
  {type: RuntimeDefault}``), a pod ``securityContext`` with the unprivileged-port sysctl for a
  port below 1024, and one ``emptyDir`` per writable path;
* ``docker`` — ``{"run": [argv words]}``: the same profile as ``docker run`` flags;
* ``problems`` — only when parts of the image config were ignored.

The image gate records the hex SHA-256 of the predicate's canonical JSON (sorted keys, no
whitespace) as its fact ``runtime_profile.sha256``; ``modelseal verify`` requires the statement
whose predicate has that digest whenever the attested scan report records one.
"""


def image_subject(image_name: str, manifest_digest: str) -> list[dict[str, Any]]:
    """The ``subject`` of every statement about the image."""
    if not DIGEST_RE.match(manifest_digest):
        raise ConfigError(f"manifest digest {manifest_digest!r} is not sha256:<hex>.")
    return [{"name": image_name, "digest": {"sha256": manifest_digest.removeprefix("sha256:")}}]


def image_statement(
    image_name: str, manifest_digest: str, predicate_type: str, predicate: Mapping[str, Any]
) -> dict[str, Any]:
    """An in-toto Statement about the image: its one subject, the predicate type and the
    predicate (a copy)."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": image_subject(image_name, manifest_digest),
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }


def statement_bytes(statement: Mapping[str, Any]) -> bytes:
    """Canonical JSON of a statement: sorted keys, no whitespace, UTF-8 — the bytes that
    are signed (and the same for the same statement on every run)."""
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def scan_report_statement(
    image_name: str, manifest_digest: str, report: Mapping[str, Any]
) -> dict[str, Any]:
    """A statement of modelseal's verdict on the image: ``verdict``, ``exit_code``,
    ``finished_at``, ``policy`` {sha256}, a per-gate summary, and the whole ``report.json``
    object under ``report``."""
    try:
        gates = [_gate_summary(g) for g in report.get("gates") or ()]
        predicate = {
            "verdict": report["verdict"],
            "exit_code": report["exit_code"],
            "finished_at": report["finished_at"],
            "policy": {"sha256": (report.get("policy") or {}).get("sha256")},
            "gates": gates,
            "report": dict(report),
        }
    except (KeyError, TypeError, AttributeError) as e:
        raise ConfigError(
            f"not a modelseal report.json object ({type(e).__name__}: {e})."
        ) from None
    return image_statement(image_name, manifest_digest, SCAN_REPORT_PREDICATE, predicate)


def _gate_summary(g: Mapping[str, Any]) -> dict[str, Any]:
    """``{gate, status, findings}`` of one gate of a report: schema_version 2 keeps the judged
    status and one outcome per finding under ``decision``; version 1 had them on the gate."""
    if "decision" in g:
        decision = g["decision"]
        return {
            "gate": str(g["gate"]),
            "status": str(decision["status"]),
            "findings": len(decision.get("outcomes") or ()),
        }
    return {
        "gate": str(g["gate"]),
        "status": str(g["status"]),
        "findings": len(g.get("findings") or ()),
    }


def rebuild_statement(
    image_name: str, manifest_digest: str, predicate: Mapping[str, Any]
) -> dict[str, Any]:
    """A rebuild attestation's statement (:data:`REBUILD_PREDICATE`; the predicate as
    :mod:`modelseal.rebuild` builds it)."""
    if predicate.get("verdict") not in ("reproduced", "differs"):
        raise ConfigError("a rebuild attestation's verdict is reproduced or differs.")
    if not DIGEST_RE.match(str(predicate.get("rebuiltDigest", ""))):
        raise ConfigError("a rebuild attestation's rebuiltDigest is not sha256:<hex>.")
    return image_statement(image_name, manifest_digest, REBUILD_PREDICATE, predicate)


def sbom_statement(
    image_name: str, manifest_digest: str, sbom: Mapping[str, Any]
) -> dict[str, Any]:
    """A statement carrying the image's CycloneDX JSON SBOM as its predicate."""
    if sbom.get("bomFormat") != "CycloneDX":
        raise ConfigError("the SBOM is not CycloneDX JSON (bomFormat).")
    return image_statement(image_name, manifest_digest, CYCLONEDX_PREDICATE, sbom)


def openvex_statement(
    image_name: str, manifest_digest: str, vex: Mapping[str, Any]
) -> dict[str, Any]:
    """A statement carrying an OpenVEX document (``@context`` ``https://openvex.dev/ns…``, at
    least one statement, as the OpenVEX JSON schema requires) as its predicate."""
    context = vex.get("@context")
    if not isinstance(context, str) or not (
        context == OPENVEX_PREDICATE or context.startswith(OPENVEX_PREDICATE + "/")
    ):
        raise ConfigError("not an OpenVEX document (@context).")
    if not isinstance(vex.get("statements"), list) or not vex["statements"]:
        raise ConfigError("an OpenVEX document needs at least one statement.")
    return image_statement(image_name, manifest_digest, OPENVEX_PREDICATE, vex)


def runtime_profile_statement(
    image_name: str, manifest_digest: str, profile: Mapping[str, Any]
) -> dict[str, Any]:
    """A statement carrying the image gate's runtime profile (:data:`RUNTIME_PROFILE_PREDICATE`)."""
    if profile.get("version") != 1 or not isinstance(profile.get("kubernetes"), Mapping):
        raise ConfigError("not a modelseal runtime profile (version, kubernetes).")
    return image_statement(image_name, manifest_digest, RUNTIME_PROFILE_PREDICATE, profile)
