"""``report.json``: the machine-readable report. Its shape is versioned by ``schema_version``;
readers must reject versions they do not know.

Version 2 keeps what was collected apart from what was decided. Each gate has

* ``evidence``: how collecting ended (``status``, ``error``, ``duration_s``) and what it
  produced (``facts``, ``artifacts``, ``findings``) — exactly what the gate returned;
* ``decision``: the judged ``status``, the ``findings`` the judge made itself (an expired ignore
  entry that matches nothing), and one ``outcome`` per finding, collected or made: which list
  and index it decides (``from``, ``index``), ``decision`` (fail / warn / ignored), ``reason``,
  and ``sources`` when several scanners reported the advisory.

Re-judging (``modelseal judge``, ``modelseal verify --policy``) reads only the evidence.

Version 1 (one ``findings`` list per gate mixing evidence and decisions) is still read: its
decisions are dropped, and so is what the judge wrote into it — the findings it made (ids in
:func:`~modelseal.judge.judge_made_ids`) and the ``sources`` it added to vulnerability
findings' evidence — because judging recomputes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from modelseal import fsio
from modelseal.bounded import MIB, read_input_text, shown_path
from modelseal.errors import ConfigError
from modelseal.findings import Finding, GateResult, Status
from modelseal.judge import GateVerdict, judge_made_ids
from modelseal.reports.model import Report
from modelseal.vuln.policy import is_vuln

SCHEMA_VERSION = 2
SCHEMA_ID = "https://modelseal.dev/schemas/report-v2.json"
#: Versions :func:`results_from_data` reads.
READABLE_VERSIONS = (1, 2)
#: The evidence key the version 1 judge added to vulnerability findings.
_V1_JUDGE_EVIDENCE = "sources"


def report_to_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data."""
    v = report.verdict
    return {
        "$schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "modelseal", "version": report.tool_version},
        "command": report.command,
        "policy": {
            "source": report.policy_source,
            "sha256": report.policy_sha256,
            **({"ref": report.policy_ref} if report.policy_ref else {}),
            **({"commit": report.policy_commit} if report.policy_commit else {}),
            **({"inputs": dict(report.policy_inputs)} if report.policy_inputs else {}),
        },
        "started_at": Report.iso(report.started_at),
        "finished_at": Report.iso(report.finished_at),
        "verdict": v.status.value,
        "exit_code": int(v.exit_code),
        "gates": [_gate_to_json(g) for g in v.gates],
        **({"baseline": v.baseline.to_json()} if v.baseline is not None else {}),
    }


def _gate_to_json(g: GateVerdict) -> dict[str, Any]:
    r = g.result
    outcomes = []
    counters = {"evidence": 0, "decision": 0}
    for d in g.decisions:
        where = "decision" if d.made else "evidence"
        outcome: dict[str, Any] = {
            "from": where,
            "index": counters[where],
            "decision": d.outcome.value,
            "reason": d.reason,
        }
        if d.sources:
            outcome["sources"] = list(d.sources)
        if d.baseline is not None:
            outcome["baseline"] = "new" if d.baseline == "new" else "existing"
            if d.baseline == "worse":
                outcome["worse"] = True
        outcomes.append(outcome)
        counters[where] += 1
    return {
        "gate": r.gate,
        "evidence": {
            "status": r.status.value,
            "error": r.error,
            "duration_s": round(r.duration_s, 3),
            "facts": dict(r.facts),
            "artifacts": {k: str(p) for k, p in r.artifacts.items()},
            "findings": [f.to_json() for f in r.findings],
        },
        "decision": {
            "status": g.status.value,
            "findings": [f.to_json() for f in g.made],
            "outcomes": outcomes,
            **({"error": g.judge_error} if g.judge_error else {}),
        },
    }


def write_json_report(report: Report, path: Path) -> None:
    """Write ``report.json`` (stable key order, trailing newline). A file name that was not
    UTF-8 (a lone surrogate here) is written as its JSON escape, ``\\udcff``, which reads back
    as the same string."""
    text = json.dumps(report_to_json(report), indent=2, ensure_ascii=False) + "\n"
    fsio.write_text_atomic(path, text, errors="backslashreplace")


MAX_REPORT_BYTES = 256 * MIB
"""``modelseal judge`` refuses a larger report.json (exit 2): not one modelseal wrote (a report
of 100k findings is ~60 MiB)."""


def read_results(path: Path) -> tuple[list[GateResult], Mapping[str, Any]]:
    """Load the collected gate results back from a report, to judge them again."""
    text = read_input_text(path, what="report", limit=MAX_REPORT_BYTES, contained=False)
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ConfigError(f"cannot read report {shown_path(path)}: {e}.") from None
    return results_from_data(data, str(path)), data


def results_from_data(data: Any, source: str) -> list[GateResult]:
    """The evidence of a report object, version 2 or 1, as gate results (``source`` names it
    in errors). Decisions are never read: judging makes them again."""
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        known = " or ".join(str(v) for v in READABLE_VERSIONS)
        raise ConfigError(f"{source} is not a modelseal report of schema_version {known}.")
    try:
        gates = data["gates"]
        if not isinstance(gates, list):
            raise TypeError("gates is not a list")
        read = _evidence_v2 if version == 2 else _evidence_v1
        return [read(g) for g in gates]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{source}: malformed report ({type(e).__name__}: {e}).") from None


def _evidence_v2(g: Mapping[str, Any]) -> GateResult:
    e = g["evidence"]
    findings = [Finding.from_json(f) for f in e["findings"]]
    return _result(str(g["gate"]), e["status"], findings, e)


def _evidence_v1(g: Mapping[str, Any]) -> GateResult:
    findings = []
    made_ids = judge_made_ids()
    for f in g["findings"]:
        finding = Finding.from_json(f)
        if finding.id in made_ids:
            continue
        if is_vuln(finding) and _V1_JUDGE_EVIDENCE in finding.evidence:
            evidence = {k: v for k, v in finding.evidence.items() if k != _V1_JUDGE_EVIDENCE}
            finding = replace(finding, evidence=evidence)
        findings.append(finding)
    return _result(str(g["gate"]), g["collected"], findings, g)


def _result(
    gate: str, status: Any, findings: list[Finding], fields: Mapping[str, Any]
) -> GateResult:
    """A gate result from how collecting ended (``status``) and the evidence ``fields``
    (``error``, ``duration_s``, ``facts``, ``artifacts``)."""
    collected = Status(status)
    if collected is Status.FAILED:
        raise ValueError(f"gate {gate}: collecting cannot end FAILED (only judging fails)")
    error = fields["error"]
    return GateResult(
        gate=gate,
        status=collected,
        findings=tuple(findings),
        artifacts={str(k): Path(str(v)) for k, v in fields["artifacts"].items()},
        facts={str(k): str(v) for k, v in fields["facts"].items()},
        error=None if error is None else str(error),
        duration_s=float(fields["duration_s"]),
    )


def decided_findings(gate: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every finding of one gate object of a report (version 2 or 1) with its decision, as
    one flat object each: the finding's fields plus ``decision``, ``reason``, ``sources`` (a
    list, empty unless several scanners reported it) and ``made`` (the judge made it). For
    readers that list findings (the Action's annotations and summary); tolerant of missing
    keys, like those readers."""
    decision = gate.get("decision")
    if not isinstance(decision, Mapping):  # version 1: already flat
        out = []
        made_ids = judge_made_ids()
        for f in gate.get("findings") or ():
            sources = str((f.get("evidence") or {}).get(_V1_JUDGE_EVIDENCE) or "")
            row = {**f, "sources": [s for s in sources.split(",") if s]}
            out.append(row | {"made": str(f.get("id")) in made_ids})
        return out
    lists = {
        "evidence": list((gate.get("evidence") or {}).get("findings") or ()),
        "decision": list(decision.get("findings") or ()),
    }
    out = []
    for o in decision.get("outcomes") or ():
        found = lists.get(str(o.get("from")), [])
        index = o.get("index")
        if not isinstance(index, int) or not 0 <= index < len(found):
            continue
        out.append(
            {
                **found[index],
                "decision": o.get("decision"),
                "reason": o.get("reason"),
                "sources": list(o.get("sources") or ()),
                "made": o.get("from") == "decision",
                "baseline": o.get("baseline"),
                "worse": bool(o.get("worse")),
            }
        )
    return out


def gate_summary(gate: Mapping[str, Any]) -> dict[str, Any]:
    """One gate object of a report (version 2 or 1) as the flat fields readers show: ``gate``,
    ``status`` (judged), ``collected``, ``error``, ``duration_s``, ``facts``, ``artifacts``,
    ``findings`` (:func:`decided_findings`)."""
    decision = gate.get("decision")
    if isinstance(decision, Mapping):
        evidence = gate.get("evidence") or {}
        status, collected = decision.get("status"), evidence.get("status")
    else:
        evidence, status, collected = gate, gate.get("status"), gate.get("collected")
    return {
        "gate": gate.get("gate"),
        "status": status,
        "collected": collected,
        "error": evidence.get("error"),
        "duration_s": evidence.get("duration_s"),
        "facts": evidence.get("facts") or {},
        "artifacts": evidence.get("artifacts") or {},
        "findings": decided_findings(gate),
    }
