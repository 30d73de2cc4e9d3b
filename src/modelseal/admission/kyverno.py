"""The Kyverno ClusterPolicy export (:mod:`modelseal.admission`).

One ``verifyImages`` rule (``kyverno.io/v1``, the CRD of Kyverno 1.13 and later) for Pods and
for their ``ephemeralcontainers`` subresource (``kubectl debug`` adds a container through it,
not through the Pod; each kind in its own ``match.any`` entry, so that Kyverno still generates
the rules for Deployments, Jobs and the other pod controllers):

* ``type: Cosign`` — the signature and the attestations are read where cosign v2 puts them
  (the ``.sig`` and ``.att`` tags), which modelseal publishes for key and keyless signing alike
  (Kyverno's ``SigstoreBundle`` type verifies keyless bundles only);
* the image signature by the expected signer (``attestors``), and each attestation by that same
  signer (an attestation without its own attestors would be accepted from any keyless signer);
* attestation ``conditions`` in JMESPath, evaluated by Kyverno with the statement's
  ``predicate`` as the context (``runDetails.builder.id`` is the provenance's builder id), and
  each one compares inside the expression, to a literal from :func:`quote_jmespath`, so the
  condition is ``<expression> Equals true``; Kyverno requires *every* attestation of a type
  signed by the signer to pass (``modelseal verify`` requires one). The conditions see the
  predicate only, not the statement's ``subject``: they cannot compare it with the image
  digest (the ImageValidatingPolicy export does);
* digests: ``verifyDigest`` and ``mutateDigest`` (tags are pinned to the verified digest),
  ``required`` (an image matching the patterns is refused unless verified);
* enforcement: ``failureAction: Enforce`` on the rule and ``validationFailureAction: Enforce``
  on the spec (the CRD defaults the latter to Audit; Kyverno before 1.13 reads only it),
  ``failurePolicy: Fail``, ``background: false``.

With a runtime profile (``--runtime-profile``, :mod:`modelseal.admission.runtime`): the
runtime-profile attestation by the same signer, stating the profile's user and added
capabilities, and a second rule, ``validate.cel`` on the same kinds, refusing a pod whose
containers matching the patterns run with more privilege than the profile.

Kyverno substitutes ``{{…}}`` variables and ``$(…)`` references in every string of a
``verifyImages`` rule, so a policy value holding either is refused rather than exported.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from modelseal.admission.embed import (
    check_image_pattern,
    check_public_key_pem,
    check_text,
    checked_regexp,
    quote_jmespath,
    quote_re2,
)
from modelseal.errors import ConfigError
from modelseal.publish.provenance import SLSA_PROVENANCE_V1
from modelseal.publish.statements import (
    CYCLONEDX_PREDICATE,
    RUNTIME_PROFILE_PREDICATE,
    SCAN_REPORT_PREDICATE,
)

if TYPE_CHECKING:
    from modelseal.admission import ExportSpec

API_VERSION: Final = "kyverno.io/v1"
#: The public Sigstore transparency log (Kyverno's default for keyless).
PUBLIC_REKOR: Final = "https://rekor.sigstore.dev"
#: The Pod subresource through which ephemeral containers (``kubectl debug``) are added.
EPHEMERAL_CONTAINERS: Final = "Pod/ephemeralcontainers"
#: Seconds Kyverno may spend on one admission request (the CRD's maximum is 30).
WEBHOOK_TIMEOUT_S: Final = 30
#: A scan report finished further in the future than this is refused (as ``modelseal verify``
#: does: a clock skew, not a report from the future).
SKEW_S: Final = 600


def render(spec: ExportSpec) -> Mapping[str, Any]:
    """The Kyverno ClusterPolicy enforcing ``spec``."""
    patterns = [_plain(check_image_pattern(p), "--image-pattern") for p in spec.image_patterns]
    signer = _signer(spec)
    attestations: list[dict[str, Any]] = [
        _attestation(SLSA_PROVENANCE_V1, signer, _provenance_conditions(spec)),
        _attestation(SCAN_REPORT_PREDICATE, signer, _scan_conditions(spec)),
    ]
    if spec.require_sbom:
        attestations.append(_attestation(CYCLONEDX_PREDICATE, signer, []))
    rules = [
        {
            "name": "modelseal-sealed-images",
            "match": _pods(),
            "verifyImages": [
                {
                    "type": "Cosign",
                    "imageReferences": patterns,
                    "failureAction": "Enforce",
                    "required": True,
                    "verifyDigest": True,
                    "mutateDigest": True,
                    "attestors": [{"count": 1, "entries": [signer]}],
                    "attestations": attestations,
                }
            ],
        }
    ]
    if spec.runtime is not None:
        from modelseal.admission.runtime import cel_checks, cel_variables, jmespath_conditions

        attestations.append(
            _attestation(
                RUNTIME_PROFILE_PREDICATE,
                signer,
                [
                    _condition(c, "the signed runtime profile is not the exported one")
                    for c in jmespath_conditions(spec.runtime)
                ],
            )
        )
        # A validate rule of its own: verifyImages conditions see the attestation, not the pod.
        rules.append(
            {
                "name": "modelseal-runtime-profile",
                "match": _pods(),
                "validate": {
                    "failureAction": "Enforce",
                    "cel": {
                        "variables": cel_variables(patterns),
                        "expressions": cel_checks(spec.runtime),
                    },
                },
            }
        )
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterPolicy",
        "metadata": {
            "name": spec.name,
            "annotations": {
                "policies.kyverno.io/title": "modelseal: sealed images only",
                "policies.kyverno.io/description": (
                    "Admits an image matching the patterns only when it is signed by the "
                    "expected signer and carries a SLSA v1 provenance, a PASSED, recent "
                    "modelseal scan report"
                    + (" and a CycloneDX SBOM" if spec.require_sbom else "")
                    + " signed by the same signer (written by modelseal policy export)."
                ),
            },
        },
        "spec": {
            "validationFailureAction": "Enforce",
            "background": False,
            "webhookConfiguration": {"failurePolicy": "Fail", "timeoutSeconds": WEBHOOK_TIMEOUT_S},
            "rules": rules,
        },
    }


def _pods() -> dict[str, Any]:
    """Pods, and their ephemeralcontainers subresource, each kind in its own ``any`` entry."""
    return {
        "any": [
            {"resources": {"kinds": ["Pod"]}},
            {"resources": {"kinds": [EPHEMERAL_CONTAINERS]}},
        ]
    }


def _plain(value: str, what: str) -> str:
    """``value`` if Kyverno's variable substitution leaves it as it is."""
    check_text(value, what)
    if "{{" in value or "$(" in value:
        raise ConfigError(
            f"{what} holds '{{{{' or '$(', which Kyverno would read as a variable or a "
            "reference; it cannot be exported to a ClusterPolicy."
        )
    return value


def _signer(spec: ExportSpec) -> dict[str, Any]:
    """The attestor entry of the expected signer."""
    if spec.public_key_pem is not None:
        # A key signature is not in a transparency log (modelseal's key signing is for
        # air-gapped use), and a key has no certificate to carry an SCT.
        return {
            "keys": {
                "publicKeys": check_public_key_pem(spec.public_key_pem),
                "rekor": {"ignoreTlog": True},
                "ctlog": {"ignoreSCT": True},
            }
        }
    if spec.issuer is None or (spec.identity is None) == (spec.identity_regexp is None):
        raise ConfigError(
            "the verify section names no signer (public_key, or issuer with identity or "
            "identity_regexp); an admission policy without one would admit any image."
        )
    keyless: dict[str, Any] = {}
    issuer = _plain(spec.issuer, "verify.issuer")
    # Kyverno matches subject and issuer as wildcard patterns ('*', '?'): an exact value holding
    # either goes in as the anchored regular expression of that literal instead.
    if "*" in issuer or "?" in issuer:
        keyless["issuerRegExp"] = f"^{quote_re2(issuer)}$"
    else:
        keyless["issuer"] = issuer
    if spec.identity is not None:
        identity = _plain(spec.identity, "verify.identity")
        if "*" in identity or "?" in identity:
            keyless["subjectRegExp"] = f"^{quote_re2(identity)}$"
        else:
            keyless["subject"] = identity
    else:
        assert spec.identity_regexp is not None
        pattern = _plain(spec.identity_regexp, "verify.identity_regexp")
        keyless["subjectRegExp"] = checked_regexp(pattern, "Kyverno")
    keyless["rekor"] = {"url": PUBLIC_REKOR}
    return {"keyless": keyless}


def _attestation(
    predicate_type: str, signer: dict[str, Any], conditions: list[dict[str, Any]]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": predicate_type,
        "attestors": [{"count": 1, "entries": [copy.deepcopy(signer)]}],
    }
    if conditions:
        out["conditions"] = [{"all": conditions}]
    return out


def _condition(expression: str, message: str) -> dict[str, Any]:
    """A condition true when the JMESPath ``expression`` (over the predicate) is true."""
    return {
        "key": "{{ " + expression + " }}",
        "operator": "Equals",
        "value": True,
        "message": message,
    }


def _provenance_conditions(spec: ExportSpec) -> list[dict[str, Any]]:
    out = []
    if spec.builder_id is not None:
        want = quote_jmespath(check_text(spec.builder_id, "verify.builder_id"))
        out.append(
            _condition(
                f"runDetails.builder.id == {want}",
                "the SLSA provenance names another builder",
            )
        )
    if spec.source_repository is not None:
        # As modelseal verify: trailing '/' on either side do not count.
        repo = check_text(spec.source_repository, "verify.source_repository").rstrip("/")
        out.append(
            _condition(
                "regex_replace_all('/+$', buildDefinition.externalParameters.source.repository, "
                f"'') == {quote_jmespath(repo)}",
                "the SLSA provenance names another source repository",
            )
        )
    if spec.policy_sha256 is not None:
        # As modelseal verify: the provenance names the policy too (externalParameters).
        want = quote_jmespath(check_text(spec.policy_sha256, "--policy-digest"))
        out.append(
            _condition(
                f"buildDefinition.externalParameters.policy.sha256 == {want}",
                "the SLSA provenance names another policy",
            )
        )
    return out


def _scan_conditions(spec: ExportSpec) -> list[dict[str, Any]]:
    hours = spec.max_scan_age_days * 24
    oldest = f"-{hours}h" if hours else "0h"
    out = [
        _condition("verdict == 'PASSED'", "the modelseal scan report's verdict is not PASSED"),
        _condition(
            f"time_between(finished_at, time_add(time_now_utc(), '{oldest}'), "
            f"time_add(time_now_utc(), '{SKEW_S}s'))",
            f"the modelseal scan report is older than {spec.max_scan_age_days} days "
            "(or dated in the future)",
        ),
    ]
    if spec.policy_sha256 is not None:
        want = quote_jmespath(check_text(spec.policy_sha256, "--policy-digest"))
        out.append(
            _condition(
                f"policy.sha256 == {want}",
                "the modelseal scan report was judged by another policy",
            )
        )
    return out
