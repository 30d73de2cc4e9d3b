"""The policy-controller ClusterImagePolicy export (:mod:`modelseal.admission`).

Sigstore policy-controller admits an image when, for every ``ClusterImagePolicy`` whose
``images`` globs match it, at least one authority verifies and then the policy-level ``policy``
(over the matched authorities' results) holds. An authority that lists attestations verifies
only those (cosign's verify-attestation path), never the image signature, and authorities are
alternatives. So the export has two authorities with the same signer — ``signature`` (the image
signature) and ``attestations`` (the SLSA provenance, the scan report and, unless
``--no-sbom``, the SBOM, each with a Rego policy over its in-toto statement) — and a
policy-level Rego policy that
requires both to have matched: the image is signed by the signer *and* carries each
attestation, by that signer, that passes its policy.

With a runtime profile (``--runtime-profile``) the attestations authority also requires the
runtime-profile attestation, its policy checking that it states the exported profile's user and
added capabilities. A ClusterImagePolicy sees images and their signatures and attestations,
never the pod: it cannot refuse a pod that runs the image with more privilege (the ``kyverno``
export does).

Rego: policy-controller evaluates a module as ``data.sigstore.isCompliant`` with OPA in Rego v0
mode; ``import rego.v1`` makes the same text valid to v0 (OPA >= 0.59) and v1 parsers. An
attestation policy's input is the in-toto statement (``_type``, ``predicateType``, ``subject``,
``predicate``). Every value that comes from the policy file is written into Rego as a JSON
string literal, which OPA decodes with Go's encoding/json: whatever the value holds (quotes,
backslashes, newlines), it stays one string and cannot end the literal. The modules are plain
ASCII, so YAML carries them as literal blocks, unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from ruamel.yaml.scalarstring import LiteralScalarString

from modelseal.errors import ConfigError
from modelseal.publish.provenance import SLSA_PROVENANCE_V1
from modelseal.publish.statements import (
    CYCLONEDX_PREDICATE,
    RUNTIME_PROFILE_PREDICATE,
    SCAN_REPORT_PREDICATE,
)

if TYPE_CHECKING:
    # Only for annotations: modelseal.admission imports this module to render.
    from modelseal.admission import ExportSpec

API_VERSION: Final = "policy.sigstore.dev/v1beta1"
KIND: Final = "ClusterImagePolicy"
#: The public Fulcio; a keyless authority needs a URL (or a CA) besides its identities.
FULCIO_URL: Final = "https://fulcio.sigstore.dev"

#: Authority names (keys of ``authorityMatches`` in the policy-level input).
SIGNATURE_AUTHORITY: Final = "signature"
ATTESTATION_AUTHORITY: Final = "attestations"
#: Attestation names (keys of ``authorityMatches.attestations.attestations``).
PROVENANCE: Final = "slsa-provenance"
SCAN_REPORT: Final = "scan-report"
SBOM: Final = "sbom"
RUNTIME_PROFILE: Final = "runtime-profile"

_NS_PER_DAY: Final = 86_400 * 1_000_000_000
#: The clock skew ``modelseal verify`` tolerates for a scan report finished "in the future".
_SKEW_NS: Final = 600 * 1_000_000_000
_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
#: The characters policy-controller's glob compiler admits (pkg/apis/glob: letters, digits,
#: ``- _ : / . *``; ``*`` is any run of non-``/`` characters, ``**`` any run at all): anything
#: else is refused here rather than by the webhook at ``kubectl apply``.
_GLOB = re.compile(r"[A-Za-z0-9\-_:/.*]{1,512}")


def rego_string(value: str) -> str:
    """``value`` as a Rego string literal: a JSON string, ASCII only (``\\uXXXX`` escapes), so
    that neither Rego nor the YAML block around it sees a quote, newline or control character."""
    return json.dumps(value, ensure_ascii=True)


def render(spec: ExportSpec) -> Mapping[str, Any]:
    """The policy-controller ClusterImagePolicy enforcing ``spec``."""
    if not _DNS_NAME.fullmatch(spec.name):
        raise ConfigError(f"policy export: {spec.name!r} is not a DNS-1123 resource name.")
    for pattern in spec.image_patterns:
        if not _GLOB.fullmatch(pattern):
            raise ConfigError(
                f"policy export: the image pattern {pattern!r} is not an image reference glob "
                "for policy-controller (letters, digits, - _ : / . and the wildcards * and **)."
            )
    attestations = [
        _attestation(PROVENANCE, SLSA_PROVENANCE_V1, provenance_rego(spec)),
        _attestation(SCAN_REPORT, SCAN_REPORT_PREDICATE, scan_report_rego(spec)),
    ]
    if spec.require_sbom:
        attestations.append(_attestation(SBOM, CYCLONEDX_PREDICATE, sbom_rego()))
    if spec.runtime is not None:
        attestations.append(
            _attestation(RUNTIME_PROFILE, RUNTIME_PROFILE_PREDICATE, runtime_profile_rego(spec))
        )
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": spec.name},
        "spec": {
            "images": [{"glob": p} for p in spec.image_patterns],
            "authorities": [
                # Each its own copy of the signer: a shared object would become a YAML alias.
                {"name": SIGNATURE_AUTHORITY, **_signer(spec)},
                {"name": ATTESTATION_AUTHORITY, **_signer(spec), "attestations": attestations},
            ],
            "policy": {"type": "rego", "data": LiteralScalarString(image_rego(spec))},
            "mode": "enforce",
        },
    }


def _attestation(name: str, predicate_type: str, rego: str) -> dict[str, Any]:
    # Full predicate-type URLs, not cosign's aliases: an alias such as slsaprovenance makes the
    # controller decode the statement into its SLSA 0.2 struct, dropping a v1 predicate.
    return {
        "name": name,
        "predicateType": predicate_type,
        "policy": {"type": "rego", "data": LiteralScalarString(rego)},
    }


def _signer(spec: ExportSpec) -> dict[str, Any]:
    if spec.public_key_pem is not None:
        from cryptography.hazmat.primitives import serialization

        from modelseal.sign.expected import load_p256

        # Re-encoded from the parsed key: only a canonical PEM reaches the resource.
        key = load_p256(spec.public_key_pem.encode()).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {"key": {"data": LiteralScalarString(key.decode("ascii"))}}
    from modelseal.admission.embed import keyless_identity

    # policy-controller compiles the regexp with Go's regexp (RE2).
    identity = keyless_identity(spec, "policy-controller")
    return {"keyless": {"url": FULCIO_URL, "identities": [identity]}}


def _module(*conditions: str) -> str:
    body = "".join(f"    {c}\n" for c in conditions)
    return (
        "package sigstore\n\nimport rego.v1\n\n"
        "default isCompliant := false\n\n"
        f"isCompliant if {{\n{body}}}\n"
    )


def provenance_rego(spec: ExportSpec) -> str:
    """The SLSA v1 provenance's policy: the expected builder id and source repository (a
    trailing ``/`` on either side ignored, as ``modelseal verify`` does) and, with
    ``policy_sha256``, the policy digest in its external parameters."""
    conditions = [f"input.predicateType == {rego_string(SLSA_PROVENANCE_V1)}"]
    if spec.builder_id is not None:
        conditions.append(
            f"input.predicate.runDetails.builder.id == {rego_string(spec.builder_id)}"
        )
    if spec.source_repository is not None:
        conditions += [
            "repository := input.predicate.buildDefinition.externalParameters.source.repository",
            "is_string(repository)",
            'regex.replace(repository, "/+$", "") == '
            + rego_string(spec.source_repository.rstrip("/")),
        ]
    if spec.policy_sha256 is not None:
        conditions.append(
            "input.predicate.buildDefinition.externalParameters.policy.sha256 == "
            + rego_string(spec.policy_sha256)
        )
    return _module(*conditions)


def scan_report_rego(spec: ExportSpec) -> str:
    """The scan report's policy: verdict PASSED, ``finished_at`` at most ``max_scan_age_days``
    old (and not more than ``modelseal verify``'s skew in the future) and, with
    ``policy_sha256``, judged by that policy."""
    max_age_ns = spec.max_scan_age_days * _NS_PER_DAY
    conditions = [
        f"input.predicateType == {rego_string(SCAN_REPORT_PREDICATE)}",
        'input.predicate.verdict == "PASSED"',
        "finished := input.predicate.finished_at",
        "is_string(finished)",
        # The one form modelseal writes (and verify reads). rego-cpp 1.5 refuses the "Z" offset
        # that OPA accepts; "+00:00" is the same instant to both.
        r"regex.match(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$`, finished)",
        'finished_ns := time.parse_rfc3339_ns(concat("", [trim_suffix(finished, "Z"), "+00:00"]))',
        "age_ns := time.now_ns() - finished_ns",
        f"age_ns >= -{_SKEW_NS}",
        f"age_ns <= {max_age_ns}",
    ]
    if spec.policy_sha256 is not None:
        conditions.append(f"input.predicate.policy.sha256 == {rego_string(spec.policy_sha256)}")
    return _module(*conditions)


def sbom_rego() -> str:
    """The SBOM's policy: a CycloneDX document."""
    return _module(
        f"input.predicateType == {rego_string(CYCLONEDX_PREDICATE)}",
        'input.predicate.bomFormat == "CycloneDX"',
    )


def runtime_profile_rego(spec: ExportSpec) -> str:
    """The runtime profile's policy: it states the exported profile's user and added
    capabilities (the pod itself is out of a ClusterImagePolicy's sight)."""
    from modelseal.admission.runtime import rego_conditions

    assert spec.runtime is not None
    return _module(
        f"input.predicateType == {rego_string(RUNTIME_PROFILE_PREDICATE)}",
        *rego_conditions(spec.runtime),
    )


def image_rego(spec: ExportSpec) -> str:
    """The policy-level policy: both authorities matched — the image signature and every
    attestation, each having passed its own policy."""
    names = [PROVENANCE, SCAN_REPORT, *([SBOM] if spec.require_sbom else [])]
    if spec.runtime is not None:
        names.append(RUNTIME_PROFILE)
    matches = "input.authorityMatches"
    return _module(
        f"count({matches}[{rego_string(SIGNATURE_AUTHORITY)}].signatures) > 0",
        *(
            f"count({matches}[{rego_string(ATTESTATION_AUTHORITY)}].attestations"
            f"[{rego_string(n)}]) > 0"
            for n in names
        ),
    )
