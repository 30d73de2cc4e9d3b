"""``summary.md``: the verdict table and findings, as a GitHub job summary would show them."""

from __future__ import annotations

import html
from collections.abc import Mapping

from modelseal.findings import Status
from modelseal.judge import Outcome
from modelseal.reports.model import Report
from modelseal.untrusted import untrusted

ICONS = {
    Status.PASSED: "✅",
    Status.FAILED: "❌",
    Status.ERRORED: "⚠️",
    Status.SKIPPED: "⏭️",
}
#: GitHub caps a job summary at 1 MiB; keep well below.
MAX_FINDINGS = 200


def _cell(text: str) -> str:
    """Report text (from scanned images and advisory databases) as one inert table cell: no
    HTML, links, emphasis, table breaks or control characters (the Action's escaping)."""
    from modelseal.action import md_escape

    return md_escape(text)


def _pre(text: str) -> str:
    """A preformatted block that no content can close (a ``` fence could be)."""
    return f"<pre>{html.escape(untrusted(text, markup=False, multiline=True), quote=True)}</pre>"


def render_markdown(report: Report) -> str:
    """Render the summary."""
    v = report.verdict
    out = [
        f"## modelseal: {ICONS[v.status]} {v.status.value}",
        "",
        "| gate | status | findings | time | note |",
        "|---|---|---|---|---|",
    ]
    for g in v.gates:
        failing = len(g.failing)
        total = len(g.decisions)
        counts = f"{failing} failing / {total}" if total else "0"
        note = g.result.error.splitlines()[0] if g.result.error else _key_fact(g.result.facts)
        out.append(
            f"| {g.result.gate} | {ICONS[g.status]} {g.status.value} | {counts} | "
            f"{g.result.duration_s:.1f}s | {_cell(note)} |"
        )
    errored = [g for g in v.gates if g.result.error and g.status is Status.ERRORED]
    for g in errored:
        out += ["", f"### {_cell(g.result.gate)}: why it errored", "", _pre(g.result.error or "")]
    decisions = [d for g in v.gates for d in g.decisions]
    if decisions:
        out += [
            "",
            f"<details><summary>{len(decisions)} finding(s)</summary>",
            "",
            "| decision | severity | id | subject | where | title |",
            "|---|---|---|---|---|---|",
        ]
        order = {Outcome.FAIL: 0, Outcome.WARN: 1, Outcome.IGNORED: 2}
        ranked = sorted(decisions, key=lambda d: (order[d.outcome], -d.finding.severity))
        for d in ranked[:MAX_FINDINGS]:
            f = d.finding
            out.append(
                f"| {d.outcome.value} | {f.severity.name} | {_cell(f.id)} | {_cell(f.subject)} | "
                f"{_cell(f.location or '')} | {_cell(f.title)} |"
            )
        if len(ranked) > MAX_FINDINGS:
            out.append(f"\n… and {len(ranked) - MAX_FINDINGS} more in report.json.")
        out += ["", "</details>"]
    out += [
        "",
        f"Policy <code>{_cell(report.policy_source)}</code> (sha256 `{report.policy_sha256[:12]}`), "
        f"modelseal {report.tool_version}, {Report.iso(report.finished_at)}.",
        "",
    ]
    return "\n".join(out)


def _key_fact(facts: Mapping[str, str]) -> str:
    digest = facts.get("image.digest")
    return f"image {digest}" if digest else ""
