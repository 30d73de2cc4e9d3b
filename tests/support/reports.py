"""report.json as the code under test wrote it: schema-checked on every read, and one stored
report to re-judge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from tests.support import REPO

from modelseal import __version__
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.judge import judge
from modelseal.policy import load_policy_text
from modelseal.reports import Report, write_reports

REPORT_SCHEMA = REPO / "src" / "modelseal" / "reports" / "report.schema.json"


def read_report(path: Path) -> dict[str, Any]:
    """A ``report.json`` the code under test wrote, validated against the committed JSON Schema
    (so every report the tests read is a valid one)."""
    import jsonschema

    data = json.loads(path.read_text())
    schema = json.loads(REPORT_SCHEMA.read_text())
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    return cast(dict[str, Any], data)


def report_gates(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """gate name → the gate's flat view (status, collected, error, facts, findings with their
    decisions), as the Action reads it."""
    from modelseal.reports.json_report import gate_summary

    return {str(g["gate"]): gate_summary(g) for g in report["gates"]}


def stored_report(tmp_path: Path) -> Path:
    """A report.json written under ``tmp_path/out``: one build finding (an unpinned base) that
    the default policy fails and a lax one passes, for ``modelseal judge``."""
    finding = Finding(
        gate="build",
        id="build.unpinned-base",
        severity=Severity.HIGH,
        title="base image python:3.11 is not pinned by digest",
        subject="python:3.11",
        location="Dockerfile:1",
    )
    results = [GateResult("build", Status.PASSED, findings=(finding,), facts={"image.digest": "x"})]
    return judged_report(tmp_path, results, "strict.yml")


def judged_report(tmp_path: Path, results: list[GateResult], policy_name: str) -> Path:
    """``results`` judged under the default policy (read as ``policy_name``) and written as
    report.json under ``tmp_path/out``; its path."""
    policy = load_policy_text("version: 1\n", policy_name)
    report = Report(
        verdict=judge(results, policy.policy),
        policy_source=policy.source,
        policy_sha256=policy.sha256,
        started_at=1700000000.0,
        finished_at=1700000060.0,
        tool_version=__version__,
    )
    return write_reports(report, tmp_path / "out")["json"]
