"""The job summary: what was published on top of the verdict as ``summary.md`` shows it (one
renderer, :mod:`modelseal.reports.markdown`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from modelseal.reports.markdown import code, heading, pre, verdict_sections

if TYPE_CHECKING:
    from modelseal.judge import Verdict
    from modelseal.policy import LoadedPolicy

__all__ = ["render_summary"]


def render_summary(
    verdict: Verdict | None,
    policy: LoadedPolicy | None,
    outputs: Mapping[str, str],
    *,
    errors: Sequence[str] = (),
) -> str:
    """The job summary: the step's verdict (``outputs["verdict"]``: a run that passed and then
    failed to publish is ERRORED), what was published, the policy, what went wrong, and the
    verdict's gates and findings."""
    out = [heading(outputs.get("verdict") or "ERRORED"), ""]
    rows = [
        ("image", code(outputs.get("image-ref")) or "not published"),
        ("digest", code(outputs.get("digest")) or "—"),
        ("exit code", code(outputs.get("exit-code")) or "—"),
    ]
    if outputs.get("github-attestation-ids"):
        rows.append(("GitHub attestations", code(outputs["github-attestation-ids"])))
    if policy is not None:
        at = ""
        if policy.ref:
            at = f" at {code(policy.ref)} {code((policy.commit or '')[:12])}"
        rows.append(("policy", f"{code(policy.source)}{at} (sha256 {code(policy.sha256[:12])})"))
    out += ["| | |", "|---|---|"]
    out += [f"| {key} | {value} |" for key, value in rows]
    if errors:
        out += ["", "### What went wrong", "", pre("\n".join(errors))]
    if verdict is not None:
        out += verdict_sections(verdict)
    out.append("")
    return "\n".join(out)
