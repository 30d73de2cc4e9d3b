"""The one Markdown renderer: ``summary.md`` and the GitHub job summary (which adds what was
published on top, :mod:`modelseal.github.summary`) show a verdict the same way.

Every piece of report text comes from scanned images, model files and advisory databases and
may be posted to a pull request (the Action's ``summary-path`` output): each table cell goes
through :func:`md_escape`, each block through :func:`pre`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Final

from modelseal.findings import Status
from modelseal.judge import Outcome, Verdict
from modelseal.reports.model import Report
from modelseal.untrusted import untrusted

__all__ = ["ICONS", "MAX_CELL", "MAX_FINDINGS", "md_escape", "pre", "render_markdown"]

ICONS: Final[Mapping[Status, str]] = {
    Status.PASSED: "✅",
    Status.FAILED: "❌",
    Status.ERRORED: "⚠️",
    Status.SKIPPED: "⏭️",
}
#: GitHub caps a job summary at 1 MiB; keep well below.
MAX_FINDINGS: Final = 200
MAX_CELL: Final = 300

#: Markdown punctuation that can open a link or image (``[``), emphasis, a code span or a table
#: cell, anywhere in a line (a cell never starts a line, so list and heading markers are inert).
#: ``<``, ``>`` and ``&`` are left to html.escape: a backslash before an entity would show it.
_MD_SPECIAL: Final = re.compile(r"([\\`*_\[\]|~])")
_ANSI: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def md_escape(text: str, limit: int = MAX_CELL) -> str:
    """Text from a report as inert Markdown for one table cell: no HTML, links, images,
    emphasis, table breaks or terminal controls (:func:`~modelseal.untrusted.untrusted`);
    line breaks become ``<br>``."""
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = untrusted(text, markup=False, multiline=True)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return html.escape(text, quote=False).replace("\n", "<br>")


def code(text: str | None) -> str:
    """Monospace, escaped (a Markdown code span cannot hold every string safely)."""
    return f"<code>{md_escape(text)}</code>" if text else ""


def pre(text: str) -> str:
    """A preformatted block that no content can close (a ``` fence could be) or turn into
    HTML or Markdown."""
    inert = untrusted(_ANSI.sub("", text).strip(), markup=False, multiline=True)
    return f"<pre>{html.escape(inert, quote=True)}</pre>"


def heading(status: str) -> str:
    """``## modelseal: ✅ PASSED``."""
    icon = next((i for s, i in ICONS.items() if s.value == status), "")
    return f"## modelseal: {icon} {md_escape(status)}"


def verdict_sections(verdict: Verdict) -> list[str]:
    """The gate table, why each errored gate errored, and the findings (failing first, then
    by severity), as lines."""
    out = ["", "| gate | status | findings | time | note |", "|---|---|---|---|---|"]
    for g in verdict.gates:
        total = len(g.decisions)
        counts = f"{len(g.failing)} failing / {total}" if total else "0"
        error = (g.error or "").strip()
        note = error.splitlines()[0] if error else _key_fact(g.result.facts)
        out.append(
            f"| {md_escape(g.result.gate)} | {ICONS[g.status]} {g.status.value} | {counts} | "
            f"{g.result.duration_s:.1f}s | {md_escape(note)} |"
        )
    if verdict.baseline is not None:
        out += ["", md_escape(verdict.baseline.line(), limit=2 * MAX_CELL)]
    for g in verdict.gates:
        if g.status is Status.ERRORED and g.error:
            out += [
                "",
                f"<details><summary>{md_escape(g.result.gate)}: why it errored</summary>",
                "",
                pre(g.error),
                "",
                "</details>",
            ]
    decisions = [d for g in verdict.gates for d in g.decisions]
    if decisions:
        order = {Outcome.FAIL: 0, Outcome.WARN: 1, Outcome.IGNORED: 2}
        ranked = sorted(decisions, key=lambda d: (order[d.outcome], -d.finding.severity))
        failing = sum(1 for d in decisions if d.outcome is Outcome.FAIL)
        out += [
            "",
            f"<details><summary>{len(decisions)} finding(s), {failing} failing</summary>",
            "",
            "| decision | severity | id | subject | where | title | why |",
            "|---|---|---|---|---|---|---|",
        ]
        for d in ranked[:MAX_FINDINGS]:
            f = d.finding
            cells = (f.id, f.subject, f.location or "", f.title, d.reason)
            state = f" ({_STATE[d.baseline]})" if d.baseline is not None else ""
            out.append(
                f"| {d.outcome.value}{state} | {f.severity.name} | "
                + " | ".join(md_escape(c) for c in cells)
                + " |"
            )
        if len(ranked) > MAX_FINDINGS:
            out += ["", f"… and {len(ranked) - MAX_FINDINGS} more in report.json."]
        out += ["", "</details>"]
    return out


#: A finding's baseline state as the findings table shows it.
_STATE: Final[Mapping[str, str]] = {"new": "new", "existing": "unchanged", "worse": "worse"}


def render_markdown(report: Report) -> str:
    """``summary.md``: the heading, :func:`verdict_sections`, and the policy that judged."""
    v = report.verdict
    out = [heading(v.status.value), *verdict_sections(v)]
    out += [
        "",
        f"Policy {code(report.policy_source)} (sha256 `{report.policy_sha256[:12]}`), "
        f"modelseal {report.tool_version}, {Report.iso(report.finished_at)}.",
        "",
    ]
    return "\n".join(out)


def _key_fact(facts: Mapping[str, str]) -> str:
    digest = facts.get("image.digest")
    return f"image {digest}" if digest else ""
