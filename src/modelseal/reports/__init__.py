"""Reports of a run: JSON (versioned, re-judgeable), Markdown (the job summary)."""

from __future__ import annotations

from pathlib import Path

from modelseal.reports.json_report import write_json_report
from modelseal.reports.markdown import render_markdown
from modelseal.reports.model import Report

__all__ = ["Report", "render_markdown", "write_json_report", "write_reports"]


def write_reports(report: Report, out_dir: Path) -> dict[str, Path]:
    """Write every report format into ``out_dir``; returns format → path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "report.json",
        "markdown": out_dir / "summary.md",
    }
    write_json_report(report, paths["json"])
    paths["markdown"].write_text(render_markdown(report))
    return paths
