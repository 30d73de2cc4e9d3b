"""The step's outputs (``$GITHUB_OUTPUT``): every one always set, empty when it does not
apply, so later steps can test it; paths absolute (later steps may run elsewhere)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from modelseal.judge import Verdict
    from modelseal.policy import LoadedPolicy
    from modelseal.publish.publisher import PublishResult

__all__ = ["BUNDLE_KEYS", "BUNDLE_KINDS", "OUTPUT_NAMES", "Judged", "collect_outputs"]

BUNDLE_KEYS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "signature": ("image", "signature"),
        "provenance": ("provenance",),
        "sbom": ("sbom",),
        "scan-report": ("scan-report",),
        "runtime-profile": ("runtime-profile",),
    }
)
"""``<kind>-bundle-path`` output → the publish result's bundle keys it is read from, first
found wins (the image signature's bundle is listed as ``image``)."""
BUNDLE_KINDS: Final = tuple(BUNDLE_KEYS)

OUTPUT_NAMES: Final = (
    "verdict",
    "exit-code",
    "digest",
    "image-ref",
    "out-dir",
    "report-path",
    "summary-path",
    "sarif-path",
    "sbom-path",
    "provenance-path",
    "runtime-profile-path",
    *(f"{kind}-bundle-path" for kind in BUNDLE_KINDS),
    "github-attestation-ids",
    "policy-ref",
    "policy-digest",
)
"""Every output the adapter writes (action.yml maps each one; a test checks)."""


@dataclass(frozen=True)
class Judged:
    """What a run had judged when it ended (or failed to publish): the verdict, the policy
    that judged, the reports written."""

    verdict: Verdict
    policy: LoadedPolicy
    paths: Mapping[str, Path] = field(default_factory=dict)


def _existing(path: Path | None) -> str:
    return str(path) if path is not None and path.exists() else ""


def collect_outputs(
    out_dir: Path,
    judged: Judged | None,
    published: PublishResult | None,
    exit_code: int,
) -> dict[str, str]:
    """Every output, as absolute paths; empty strings for what this run did not produce."""
    out_dir = out_dir.absolute()
    outputs = dict.fromkeys(OUTPUT_NAMES, "")
    outputs["exit-code"] = str(exit_code)
    outputs["out-dir"] = str(out_dir)
    outputs["verdict"] = judged.verdict.status.value if judged else "ERRORED"
    if exit_code != 0 and outputs["verdict"] == "PASSED":
        outputs["verdict"] = "ERRORED"  # the run passed but publishing or the self-check failed
    paths = judged.paths if judged else {}
    for name, kind in (
        ("report-path", "json"),
        ("summary-path", "markdown"),
        ("sarif-path", "sarif"),
    ):
        outputs[name] = _existing(paths.get(kind))
    sbom: Path | None = out_dir / "sbom.cdx.json"
    digest = ""
    for g in judged.verdict.gates if judged else ():
        if g.result.gate == "sbom" and g.result.artifacts.get("sbom"):
            sbom = Path(g.result.artifacts["sbom"])
        if g.result.gate == "build":
            digest = g.result.facts.get("image.digest") or ""
    outputs["sbom-path"] = _existing(sbom)
    outputs["provenance-path"] = _existing(out_dir / "provenance.intoto.json")
    for g in judged.verdict.gates if judged else ():
        if g.result.gate == "image" and g.result.artifacts.get("runtime_profile"):
            outputs["runtime-profile-path"] = _existing(Path(g.result.artifacts["runtime_profile"]))
    if published is not None:
        digest = published.digest or digest
        outputs["image-ref"] = published.reference
        for kind, keys in BUNDLE_KEYS.items():
            found = next(
                (Path(published.bundles[k]) for k in keys if published.bundles.get(k)), None
            )
            if found is not None:
                if not found.is_absolute() and (out_dir / found).exists():
                    found = out_dir / found
                outputs[f"{kind}-bundle-path"] = _existing(found.absolute())
        if published.github_attestations:
            # A JSON object (attestation name → id), for fromJSON() in later steps.
            outputs["github-attestation-ids"] = json.dumps(
                dict(sorted(published.github_attestations.items())), separators=(",", ":")
            )
    outputs["digest"] = digest
    if judged is not None:
        outputs["policy-ref"] = judged.policy.ref or ""
        outputs["policy-digest"] = f"sha256:{judged.policy.sha256}"
    return outputs
