"""Reports of a run: JSON (versioned, re-judgeable), Markdown (the job summary), SARIF (code
scanning), OpenVEX (the vulnerabilities the policy accepted)."""

from __future__ import annotations

import json
from pathlib import Path

from modelseal.reports.json_report import write_json_report
from modelseal.reports.markdown import render_markdown
from modelseal.reports.model import Report
from modelseal.reports.sarif import render_sarif
from modelseal.reports.vex import render_openvex

__all__ = ["Report", "render_markdown", "write_json_report", "write_reports"]


def write_reports(report: Report, out_dir: Path) -> dict[str, Path]:
    """Write every report format into ``out_dir``; returns format → path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "report.json",
        "markdown": out_dir / "summary.md",
        "sarif": out_dir / "modelseal.sarif",
    }
    write_json_report(report, paths["json"])
    paths["markdown"].write_text(render_markdown(report))
    paths["sarif"].write_text(json.dumps(render_sarif(report), indent=2) + "\n")
    vex = render_openvex(report)
    vex_path = out_dir / "modelseal.openvex.json"
    if vex is not None:
        vex_path.write_text(json.dumps(vex, indent=2) + "\n")
        paths["openvex"] = vex_path
    elif vex_path.exists():
        vex_path.unlink()
    return paths
