"""Admission policies that enforce, at deploy time, what ``modelseal verify`` enforces.

``modelseal policy export --format FORMAT`` turns the policy's ``verify`` section (the expected
signer, builder id, source repository, scan-report age) into a ready-to-apply document for an
admission controller:

* ``kyverno`` — a Kyverno ``ClusterPolicy`` (``verifyImages``; attestation conditions in
  JMESPath), :mod:`modelseal.admission.kyverno`;
* ``kyverno-ivp`` — a Kyverno ``ImageValidatingPolicy`` (CEL),
  :mod:`modelseal.admission.kyverno_ivp`;
* ``policy-controller`` — a Sigstore policy-controller ``ClusterImagePolicy`` (attestation
  policies in Rego), :mod:`modelseal.admission.policy_controller`.

Every format enforces the same :class:`ExportSpec`: an image matching one of the patterns is
admitted only when it is signed by the expected signer, carries a SLSA v1 provenance
attestation by that signer naming the expected builder id and source repository (when set), a
scan-report attestation by that signer whose verdict is PASSED and whose ``finished_at`` is at
most ``max_scan_age_days`` old, and (``require_sbom``, the default, as ``modelseal verify``
requires it) a CycloneDX SBOM attestation. With ``policy_sha256`` both the provenance and the
scan report must name that policy.

With ``--runtime-profile`` (:mod:`modelseal.admission.runtime`) the image must also carry its
signed runtime-profile attestation stating that profile's user, and (``kyverno`` only) a pod
running it with more privilege than the profile is refused.

Not enforced at admission (``modelseal verify`` checks them): re-judging the report under the
current policy, and the independent rebuilds of ``verify.require_rebuild_by``
(:func:`unenforced` names them, for a notice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from modelseal.errors import ConfigError

if TYPE_CHECKING:
    from modelseal.admission.runtime import RuntimeRule
    from modelseal.policy import LoadedPolicy

ExportFormat = Literal["kyverno", "kyverno-ivp", "policy-controller"]
FORMATS: Final[tuple[ExportFormat, ...]] = ("kyverno", "kyverno-ivp", "policy-controller")

#: At most this many image patterns (each becomes a match rule).
MAX_PATTERNS: Final = 64


@dataclass(frozen=True)
class ExportSpec:
    """What an exported admission policy enforces (from the policy's ``verify`` section and
    the command line). Exactly one signer: ``public_key_pem``, or ``issuer`` with ``identity``
    or ``identity_regexp`` (anchored ``^…$``)."""

    name: str
    """``metadata.name`` of the exported resource (a DNS-1123 name)."""
    image_patterns: tuple[str, ...]
    """Image reference globs the policy applies to (``ghcr.io/org/*``)."""
    public_key_pem: str | None = None
    issuer: str | None = None
    identity: str | None = None
    identity_regexp: str | None = None
    builder_id: str | None = None
    source_repository: str | None = None
    max_scan_age_days: int = 30
    require_sbom: bool = True
    """Require the CycloneDX SBOM attestation, as ``modelseal verify`` does (``--no-sbom``
    turns it off)."""
    policy_sha256: str | None = None
    """Hex SHA-256 that the scan report's ``policy.sha256`` and the provenance's
    ``buildDefinition.externalParameters.policy.sha256`` must equal (``--policy-digest``)."""
    runtime: RuntimeRule | None = None
    """The runtime profile a pod running the image is held to (``--runtime-profile``,
    :mod:`modelseal.admission.runtime`), and whose signed attestation the image must carry."""


def default_name(policy_sha256: str) -> str:
    """``modelseal-`` and the first 12 hex digits of the policy file's SHA-256."""
    return "modelseal-" + policy_sha256[:12]


def spec_from_policy(
    policy: LoadedPolicy,
    *,
    image_patterns: tuple[str, ...],
    name: str | None = None,
    require_sbom: bool = True,
    policy_sha256: str | None = None,
    runtime: RuntimeRule | None = None,
) -> ExportSpec:
    """The :class:`ExportSpec` of ``policy``'s ``verify`` section; ConfigError (exit 2) when
    it names no signer (an admission policy that checks no signer admits anything)."""
    from pathlib import Path

    from modelseal.bounded import read_input_text
    from modelseal.sign.key import MAX_KEY_BYTES

    pv = policy.policy.verify
    if not image_patterns:
        raise ConfigError(
            "policy export needs at least one --image-pattern (e.g. 'ghcr.io/org/*')."
        )
    if len(image_patterns) > MAX_PATTERNS:
        raise ConfigError(f"at most {MAX_PATTERNS} --image-pattern values.")
    key_pem = None
    if pv.public_key:
        base = Path(policy.source).parent if policy.source != "<defaults>" else Path(".")
        key_pem = read_input_text(
            base / pv.public_key, what="verify.public_key", limit=MAX_KEY_BYTES
        )
    if key_pem is None and not (pv.issuer and (pv.identity or pv.identity_regexp)):
        raise ConfigError(
            f"{policy.source}: the verify section names no signer (public_key, or issuer with "
            "identity or identity_regexp); an admission policy without one would admit any "
            "image."
        )
    return ExportSpec(
        name=name or default_name(policy.sha256),
        image_patterns=image_patterns,
        public_key_pem=key_pem,
        issuer=pv.issuer,
        identity=pv.identity,
        identity_regexp=pv.identity_regexp,
        builder_id=pv.builder_id,
        source_repository=pv.source_repository,
        max_scan_age_days=pv.max_scan_age_days,
        require_sbom=require_sbom,
        policy_sha256=policy_sha256,
        runtime=runtime,
    )


def unenforced(policy: LoadedPolicy) -> list[str]:
    """What ``policy``'s ``verify`` section requires that an exported admission policy does
    not enforce (for a notice on standard error): today the independent rebuilds."""
    pv = policy.policy.verify
    out = []
    if pv.require_rebuild_by:
        out.append(
            f"verify.require_rebuild_by ({len(pv.require_rebuild_by)} rebuilder(s)) is not "
            "enforced at admission: the exported policy does not check rebuild attestations; "
            "run `modelseal verify` for that."
        )
    return out
