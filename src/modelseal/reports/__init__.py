"""Reports of a run: JSON (versioned, re-judgeable), Markdown (the job summary), SARIF (code
scanning), OpenVEX (the vulnerabilities the policy accepted)."""

from __future__ import annotations

import json
from pathlib import Path

from modelseal import fsio
from modelseal.reports.json_report import write_json_report
from modelseal.reports.markdown import render_markdown
from modelseal.reports.model import Report
from modelseal.reports.sarif import render_sarif
from modelseal.reports.vex import render_openvex

__all__ = ["Report", "render_markdown", "write_json_report", "write_reports"]


def write_reports(report: Report, out_dir: Path) -> dict[str, Path]:
    """Write every report format into ``out_dir``; returns format → path. Each file is
    written fresh (:mod:`modelseal.fsio`): a link planted at a report's name is replaced, not
    written through, and text that came from file names which are not UTF-8 is escaped."""
    fsio.ensure_dir(out_dir)
    paths = {
        "json": out_dir / "report.json",
        "markdown": out_dir / "summary.md",
        "sarif": out_dir / "modelseal.sarif",
    }
    write_json_report(report, paths["json"])
    fsio.write_text_atomic(paths["markdown"], render_markdown(report), errors="backslashreplace")
    fsio.write_text_atomic(paths["sarif"], json.dumps(render_sarif(report), indent=2) + "\n")
    vex = render_openvex(report)
    vex_path = out_dir / "modelseal.openvex.json"
    if vex is not None:
        fsio.write_text_atomic(vex_path, json.dumps(vex, indent=2) + "\n")
        paths["openvex"] = vex_path
    else:
        fsio.remove(vex_path)
    return paths
