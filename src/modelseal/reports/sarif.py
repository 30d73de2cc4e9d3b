"""``modelseal.sarif``: every finding as SARIF 2.1.0, for GitHub code scanning.

Kept inside GitHub's upload limits: at most :data:`MAX_RESULTS` results (failing first), short
messages, one location per result, and of a baseline the counts with at most
:data:`MAX_FIXED_LISTED` fixed findings. Ignored findings are reported as suppressed results so
the record of the decision travels with the scan.

Judged against a baseline, every result has a ``baselineState`` (SARIF 2.1.0 §3.27.24: on one
result of a run, then on all): a vulnerability's is its own (``new``, ``unchanged``, ``updated``);
any other result — another gate's finding, the judge's stale or expired ignore entry — is
``new``: the baseline holds vulnerability findings only, so nothing else is excused by it, and
it is judged as new findings are.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from modelseal.findings import Finding, Severity
from modelseal.judge import Decision, Outcome
from modelseal.reports.model import Report
from modelseal.vuln.policy import is_vuln

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
#: GitHub accepts 25,000 results a run; far fewer keeps the file small and the UI usable.
MAX_RESULTS = 5000
MAX_MESSAGE = 1000
#: The fixed baseline findings listed in the run's properties (the count is the total).
MAX_FIXED_LISTED = 100
_MAX_TEXT = 200
_LEVEL = {Outcome.FAIL: "error", Outcome.WARN: "warning", Outcome.IGNORED: "note"}
_BASELINE_STATE = {"new": "new", "existing": "unchanged", "worse": "updated"}
#: GitHub ranks code-scanning alerts by this numeric "security-severity".
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "2.0",
    Severity.UNKNOWN: "5.0",
}


def render_sarif(report: Report) -> dict[str, Any]:
    """The SARIF log."""
    order = {Outcome.FAIL: 0, Outcome.WARN: 1, Outcome.IGNORED: 2}
    decisions = sorted(
        (d for g in report.verdict.gates for d in g.decisions),
        key=lambda d: (order[d.outcome], -int(d.finding.severity)),
    )[:MAX_RESULTS]
    rules: dict[str, dict[str, Any]] = {}
    rule_index: dict[str, int] = {}
    results = []
    for d in decisions:
        rule_id = _rule_id(d.finding)
        if rule_id not in rules:
            rule_index[rule_id] = len(rules)
            rules[rule_id] = _rule(rule_id, d.finding)
        results.append(_result(d, rule_id, rule_index[rule_id], report))
    if any("baselineState" in r for r in results):
        # §3.27.24: present on one result of the run, present on every one (module docstring).
        for r in results:
            r.setdefault("baselineState", "new")
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "modelseal",
                        "version": report.tool_version,
                        "informationUri": "https://github.com/modelseal/modelseal",
                        "rules": list(rules.values()),
                    }
                },
                "results": results,
                "properties": {
                    "verdict": report.verdict.status.value,
                    **(
                        {
                            "baseline": report.verdict.baseline.to_json(
                                max_fixed=MAX_FIXED_LISTED, max_text=_MAX_TEXT
                            )
                        }
                        if report.verdict.baseline is not None
                        else {}
                    ),
                },
            }
        ],
    }


def _rule_id(f: Finding) -> str:
    return f.id if is_vuln(f) else f"{f.gate}/{f.id}"


def _rule(rule_id: str, f: Finding) -> dict[str, Any]:
    score = f.evidence.get("cvss") or _SECURITY_SEVERITY[f.severity]
    rule: dict[str, Any] = {
        "id": rule_id,
        "shortDescription": {"text": _clip(f.title, 200)},
        "defaultConfiguration": {"level": "error" if f.severity >= Severity.HIGH else "warning"},
        "properties": {
            "security-severity": score,
            "tags": ["security", f.gate],
            "precision": "high",
        },
    }
    if url := f.evidence.get("url"):
        rule["helpUri"] = url
    return rule


def _result(d: Decision, rule_id: str, index: int, report: Report) -> dict[str, Any]:
    f = d.finding
    text = f"{f.title} — {d.outcome.value}: {d.reason}"
    if f.fixed_in:
        text += f" (fixed in {f.fixed_in})"
    result: dict[str, Any] = {
        "ruleId": rule_id,
        "ruleIndex": index,
        "level": _LEVEL[d.outcome],
        "message": {"text": _clip(text, MAX_MESSAGE)},
        "locations": [_location(f, report)],
        "partialFingerprints": {
            # surrogateescape: a subject naming a file that is not UTF-8 hashes as its bytes.
            "modelseal/v1": hashlib.sha256(
                f"{f.gate}|{f.id}|{f.subject}".encode("utf-8", "surrogateescape")
            ).hexdigest()
        },
        "properties": {
            "severity": f.severity.name,
            "subject": _clip(f.subject, MAX_MESSAGE),
            "gate": f.gate,
        },
    }
    if d.sources:
        result["properties"]["sources"] = list(d.sources)
    if d.baseline is not None:
        # SARIF 2.1.0 §3.27.24: new / unchanged / updated (a finding fixed since the
        # baseline, "absent", has no result here: the run's properties count it).
        result["baselineState"] = _BASELINE_STATE[d.baseline]
    if d.outcome is Outcome.IGNORED:
        result["suppressions"] = [{"kind": "external", "justification": _clip(d.reason, 500)}]
    return result


_LINE = re.compile(r"^(?P<path>[^:()]+?):(?P<line>\d+)$")


def _location(f: Finding, report: Report) -> dict[str, Any]:
    where = (f.location or "").split(" (")[0].strip()
    region = None
    m = _LINE.match(where)
    if m:
        where, region = m.group("path"), {"startLine": int(m.group("line"))}
    if not where or where.startswith(("layer ", "image ")) or " " in where:
        where = report.policy_source if report.policy_source != "<defaults>" else "modelseal.yml"
    physical: dict[str, Any] = {"artifactLocation": {"uri": where.lstrip("/")}}
    if region:
        physical["region"] = region
    return {"physicalLocation": physical, "message": {"text": _clip(f.subject, 200)}}


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
