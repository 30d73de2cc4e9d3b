"""The Kyverno ImageValidatingPolicy export (:mod:`modelseal.admission`).

``policies.kyverno.io/v1`` (Kyverno 1.16 and later), checks in CEL:

* one cosign attestor, ``signer``: keyless issuer and identity (Kyverno matches ``subject``
  and ``issuer`` exactly here, ``subjectRegExp`` as RE2). A key signer is refused (exit 2):
  Kyverno's ImageValidatingPolicy verifier requires a transparency-log entry for attestations,
  which modelseal's key signing does not make, so such a policy would refuse every sealed
  image — the ClusterPolicy export (``--format kyverno``) takes keys;
* ``matchConstraints``: Pods and their ``pods/ephemeralcontainers`` subresource (``kubectl
  debug`` adds a container through it, not through the Pod), CREATE and UPDATE;
* ``intoto`` attestations (cosign's ``.att`` tag, DSSE, in-toto statement): ``provenance``,
  ``scanReport`` and, with ``require_sbom``, ``sbom``;
* a variable ``sealedImages``: the pod's container, init-container and ephemeral-container
  images that match one of the patterns (a CEL ``matches`` of each glob's anchored regular
  expression), so that the checks apply to exactly those, whatever Kyverno's functions return
  for other images;
* validations, each ``sealedImages.all(image, …)``: the image signature
  (``verifyImageSignatures``), then per attestation ``verifyAttestationSignatures(…) > 0 &&``
  conditions on ``extractPayload(image, attestations.X)``, which is the verified in-toto
  *statement* (its ``predicate`` holds the fields), and may only be read after the attestation
  verified, and each statement must name the image's digest among its ``subject`` digests (the
  image reference carries it: ``mutateDigest`` pins tags to digests before validation, and a
  reference without a digest is refused);
* with a runtime profile (``--runtime-profile``): a ``runtimeProfile`` attestation stating the
  profile's user and added capabilities (this resource does not see the pod's
  ``securityContext``; the ``kyverno`` export checks that);
* ``validationActions: [Deny]``, ``failurePolicy: Fail`` (an expression that errors refuses),
  digests verified and mutated, background evaluation off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from modelseal.admission.embed import (
    check_image_pattern,
    check_text,
    glob_re2,
    keyless_identity,
    quote_cel,
    quote_re2,
)
from modelseal.admission.kyverno import PUBLIC_REKOR, SKEW_S, WEBHOOK_TIMEOUT_S
from modelseal.errors import ConfigError
from modelseal.publish.provenance import SLSA_PROVENANCE_V1
from modelseal.publish.statements import (
    CYCLONEDX_PREDICATE,
    RUNTIME_PROFILE_PREDICATE,
    SCAN_REPORT_PREDICATE,
)

if TYPE_CHECKING:
    from modelseal.admission import ExportSpec

API_VERSION: Final = "policies.kyverno.io/v1"
_ALL_IMAGES: Final = (
    "images.containers"
    " + (has(images.initContainers) ? images.initContainers : [])"
    " + (has(images.ephemeralContainers) ? images.ephemeralContainers : [])"
)


#: The statement is about this image: one of its subjects has the image reference's digest
#: (a signed statement about another image, attached to this one, does not count).
_SUBJECT_CHECK: Final = (
    "payload.subject.exists(s, s.digest.sha256.size() == 64"
    " && image.endsWith('@sha256:' + s.digest.sha256))"
)


def render(spec: ExportSpec) -> Mapping[str, Any]:
    """The Kyverno ImageValidatingPolicy enforcing ``spec``."""
    patterns = [check_image_pattern(p) for p in spec.image_patterns]
    matches = " || ".join(f"image.matches({quote_cel(glob_re2(p))})" for p in patterns)
    attestations: list[dict[str, Any]] = [
        {"name": "provenance", "intoto": {"type": SLSA_PROVENANCE_V1}},
        {"name": "scanReport", "intoto": {"type": SCAN_REPORT_PREDICATE}},
    ]
    validations = [
        _each(
            "verifyImageSignatures(image, [attestors.signer]) > 0",
            "the image is not signed by the expected signer",
        ),
        _each(
            _attested("provenance", _provenance_checks(spec) + _provenance_policy_check(spec)),
            "no SLSA provenance by the expected signer naming the expected builder and source "
            "repository",
        ),
        _each(
            _attested("scanReport", _scan_checks(spec)),
            f"no PASSED modelseal scan report by the expected signer from the last "
            f"{spec.max_scan_age_days} days",
        ),
    ]
    if spec.require_sbom:
        attestations.append({"name": "sbom", "intoto": {"type": CYCLONEDX_PREDICATE}})
        validations.append(
            _each(
                _attested("sbom", []),
                "no CycloneDX SBOM attestation by the expected signer",
            )
        )
    if spec.runtime is not None:
        from modelseal.admission.runtime import cel_conditions

        attestations.append(
            {"name": "runtimeProfile", "intoto": {"type": RUNTIME_PROFILE_PREDICATE}}
        )
        validations.append(
            _each(
                _attested("runtimeProfile", cel_conditions(spec.runtime)),
                "no runtime-profile attestation by the expected signer stating the exported "
                "profile's user and capabilities",
            )
        )
    return {
        "apiVersion": API_VERSION,
        "kind": "ImageValidatingPolicy",
        "metadata": {"name": spec.name},
        "spec": {
            "validationActions": ["Deny"],
            "failurePolicy": "Fail",
            "webhookConfiguration": {"timeoutSeconds": WEBHOOK_TIMEOUT_S},
            "evaluation": {"background": {"enabled": False}},
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["pods", "pods/ephemeralcontainers"],
                    }
                ]
            },
            "matchImageReferences": [{"glob": p} for p in patterns],
            "validationConfigurations": {
                "required": True,
                "verifyDigest": True,
                "mutateDigest": True,
            },
            "attestors": [{"name": "signer", "cosign": _signer(spec)}],
            "attestations": attestations,
            "variables": [
                {
                    "name": "sealedImages",
                    "expression": f"({_ALL_IMAGES}).filter(image, {matches})",
                }
            ],
            "validations": validations,
        },
    }


def _each(check: str, message: str) -> dict[str, str]:
    return {"expression": f"variables.sealedImages.all(image, {check})", "message": message}


def _attested(name: str, checks: list[str]) -> str:
    """True when the attestation ``name`` verifies and its statement passes ``checks``
    (expressions over ``payload``, bound by the CEL ``.all`` comprehension)."""
    verified = f"verifyAttestationSignatures(image, attestations.{name}, [attestors.signer]) > 0"
    body = " && ".join([_SUBJECT_CHECK, *checks])
    return f"{verified} && [extractPayload(image, attestations.{name})].all(payload, {body})"


def _signer(spec: ExportSpec) -> dict[str, Any]:
    if spec.public_key_pem is not None:
        raise ConfigError(
            "--format kyverno-ivp cannot check a key signer (verify.public_key): Kyverno's "
            "ImageValidatingPolicy verifier requires a transparency-log entry for attestations, "
            "which key signing does not make, so the policy would refuse every sealed image.",
            hint="Use --format kyverno (a ClusterPolicy) or --format policy-controller for "
            "key-signed images, or sign keyless.",
        )
    identity = keyless_identity(spec, "Kyverno")
    return {"keyless": {"identities": [identity]}, "ctlog": {"url": PUBLIC_REKOR}}


def _provenance_checks(spec: ExportSpec) -> list[str]:
    out = []
    if spec.builder_id is not None:
        want = quote_cel(check_text(spec.builder_id, "verify.builder_id"))
        out.append(f"payload.predicate.runDetails.builder.id == {want}")
    if spec.source_repository is not None:
        # As modelseal verify: trailing '/' on either side do not count.
        repo = check_text(spec.source_repository, "verify.source_repository").rstrip("/")
        want = quote_cel(f"^{quote_re2(repo)}/*$")
        out.append(
            "payload.predicate.buildDefinition.externalParameters.source.repository"
            f".matches({want})"
        )
    return out


def _scan_checks(spec: ExportSpec) -> list[str]:
    # Kyverno's CEL time library (time_now_utc, time_add, time_after, time_before: RFC 3339
    # strings and Go durations), the same functions as the ClusterPolicy's JMESPath ones.
    hours = spec.max_scan_age_days * 24
    oldest = f"-{hours}h" if hours else "0h"
    finished = "payload.predicate.finished_at"
    out = [
        "payload.predicate.verdict == 'PASSED'",
        f"time_after({finished}, time_add(time_now_utc(), '{oldest}'))",
        f"time_before({finished}, time_add(time_now_utc(), '{SKEW_S}s'))",
    ]
    if spec.policy_sha256 is not None:
        want = quote_cel(check_text(spec.policy_sha256, "--policy-digest"))
        out.append(f"payload.predicate.policy.sha256 == {want}")
    return out


def _provenance_policy_check(spec: ExportSpec) -> list[str]:
    if spec.policy_sha256 is None:
        return []
    want = quote_cel(check_text(spec.policy_sha256, "--policy-digest"))
    return [f"payload.predicate.buildDefinition.externalParameters.policy.sha256 == {want}"]
