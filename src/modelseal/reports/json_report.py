"""``report.json``: the machine-readable report. Its shape is versioned by ``schema_version``;
readers must reject versions they do not know."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelseal.bounded import MIB, read_input_text, shown_path
from modelseal.errors import ConfigError
from modelseal.findings import Finding, GateResult, Status
from modelseal.reports.model import Report

SCHEMA_VERSION = 1
SCHEMA_ID = "https://modelseal.dev/schemas/report-v1.json"


def report_to_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data."""
    v = report.verdict
    return {
        "$schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "modelseal", "version": report.tool_version},
        "command": report.command,
        "policy": {"source": report.policy_source, "sha256": report.policy_sha256},
        "started_at": Report.iso(report.started_at),
        "finished_at": Report.iso(report.finished_at),
        "verdict": v.status.value,
        "exit_code": int(v.exit_code),
        "gates": [
            {
                "gate": g.result.gate,
                "status": g.status.value,
                "collected": g.result.status.value,
                "error": g.result.error,
                "duration_s": round(g.result.duration_s, 3),
                "facts": dict(g.result.facts),
                "artifacts": {k: str(p) for k, p in g.result.artifacts.items()},
                "findings": [
                    {**d.finding.to_json(), "decision": d.outcome.value, "reason": d.reason}
                    for d in g.decisions
                ],
            }
            for g in v.gates
        ],
    }


def write_json_report(report: Report, path: Path) -> None:
    """Write ``report.json`` (stable key order, trailing newline)."""
    path.write_text(json.dumps(report_to_json(report), indent=2, ensure_ascii=False) + "\n")


MAX_REPORT_BYTES = 256 * MIB
"""``modelseal judge`` refuses a larger report.json (exit 2)."""


def read_results(path: Path) -> tuple[list[GateResult], Mapping[str, Any]]:
    """Load the collected gate results back from a report, to judge them again."""
    text = read_input_text(path, what="report", limit=MAX_REPORT_BYTES, contained=False)
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ConfigError(f"cannot read report {shown_path(path)}: {e}.") from None
    return results_from_data(data, str(path)), data


def results_from_data(data: Any, source: str) -> list[GateResult]:
    """The gate results of a report object (``source`` names it in errors)."""
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(f"{source} is not a modelseal report of schema_version {SCHEMA_VERSION}.")
    results = []
    try:
        for g in data["gates"]:
            results.append(
                GateResult(
                    gate=g["gate"],
                    status=Status(g["collected"]),
                    findings=tuple(Finding.from_json(f) for f in g["findings"]),
                    artifacts={k: Path(v) for k, v in g["artifacts"].items()},
                    facts=g["facts"],
                    error=g["error"],
                    duration_s=float(g["duration_s"]),
                )
            )
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{source}: malformed report ({type(e).__name__}: {e}).") from None
    return results
