"""The command line: help, exit codes, policy errors, re-judging a stored report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support import REPO
from tests.support.reports import read_report, stored_report

from modelseal import __version__, _cli
from modelseal._cli import main


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["run"],
        ["build"],
        ["judge"],
        ["rebuild"],
        ["policy"],
        ["policy", "validate"],
        ["policy", "schema"],
        ["engine"],
        ["engine", "start"],
        ["engine", "stop"],
        ["engine", "status"],
        ["models"],
        ["models", "lock"],
        ["models", "verify"],
        ["models", "scan"],
        ["models", "fetch"],
        ["models", "sign"],
    ],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: modelseal")
    assert len(out.splitlines()) > 3


def test_run_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for code in ("0  every gate passed", "1  the policy was breached", "3  a gate could not run"):
        assert code in out


def test_rebuild_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["rebuild", "--help"])
    out = capsys.readouterr().out
    for text in ("0  reproduced", "1  differs", "2  usage error, a TARGET that is not a provenance",
                 "3  the rebuild could not run", "https://modelseal.dev/rebuild/v1"):  # fmt: skip
        assert text in out


def test_version_and_module_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "modelseal", "--version"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == f"modelseal {__version__}"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: modelseal" in capsys.readouterr().err


def test_bad_option_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["build", "--build-arg", "novalue"])
    assert exc.value.code == 2


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "version: 1\nbuild:\n  rebuld_check: true\n",
            "modelseal.yml:3:3: build.rebuld_check: unknown key (did you mean rebuild_check?)",
        ),
        (
            "version: 1\nbuild:\n  rebuild_check: maybe\n",
            "modelseal.yml:3:18: build.rebuild_check: expected always, publish or never (true "
            "and false still mean always and never)",
        ),
        ("version: 1\nbuild: [\n", "modelseal.yml:3:1: invalid YAML"),
        (
            "build:\n  rebuild_check: true\n",
            'modelseal.yml:1:1: version: required (add "version: 1" at the top of the file)',
        ),
    ],
)
def test_invalid_policy_exits_2_naming_file_line_column(
    text: str,
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "modelseal.yml", text)
    assert main(["policy", "validate", "modelseal.yml"]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err
    # The same file stops a run before anything is built or written.
    (tmp_path / "ctx").mkdir()
    assert main(["run", "ctx", "--policy", "modelseal.yml", "-o", "out"]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_valid_policy_and_default_discovery(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "modelseal.yml", "version: 1\n")
    assert main(["policy", "validate"]) == 0
    assert "modelseal.yml: valid (version 1" in capsys.readouterr().out
    assert main(["policy", "validate", str(REPO / "examples" / "modelseal.yml")]) == 0


def test_missing_policy_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "validate", str(tmp_path / "nope.yml")]) == 2
    assert "nope.yml" in capsys.readouterr().err


def test_policy_schema_is_the_committed_copy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "schema"]) == 0
    printed = capsys.readouterr().out
    committed = (REPO / "src" / "modelseal" / "policy" / "policy.schema.json").read_text()
    assert printed == committed
    assert json.loads(printed)["properties"]["version"]


def test_unknown_gate_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path), "--gate", "nonsense", "-o", str(tmp_path / "o")]) == 2
    assert "unknown gate nonsense" in capsys.readouterr().err


def test_internal_error_exits_4_without_traceback_unless_verbose(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*args: object) -> int:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(_cli, "_dispatch", boom)
    assert main(["policy", "schema"]) == 4
    err = capsys.readouterr().err
    assert "internal error (a bug)" in err and "kaboom" in err and "Traceback" not in err
    with pytest.raises(RuntimeError):
        main(["-v", "policy", "schema"])


def test_judge_rejudges_stored_evidence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = stored_report(tmp_path)
    data = read_report(report)
    assert data["schema_version"] == 2 and data["verdict"] == "FAILED" and data["exit_code"] == 1
    assert data["gates"][0]["decision"]["outcomes"][0]["decision"] == "fail"

    lax = _write(tmp_path, "lax.yml", "version: 1\nbuild:\n  require_pinned_base: false\n")
    assert main(["judge", str(report), "--policy", str(lax), "-o", str(tmp_path / "re")]) == 0
    again = read_report(tmp_path / "re" / "report.json")
    assert again["verdict"] == "PASSED" and again["command"] == "judge"
    assert again["gates"][0]["decision"]["outcomes"][0]["decision"] == "warn"
    assert again["gates"][0]["evidence"] == data["gates"][0]["evidence"]
    assert again["started_at"] == data["started_at"]
    summary = (tmp_path / "re" / "summary.md").read_text()
    assert "PASSED" in summary and "build.unpinned-base" in summary
    capsys.readouterr()

    strict = _write(tmp_path, "strict.yml", "version: 1\n")
    assert main(["judge", str(report), "--policy", str(strict)]) == 1
    assert "build.unpinned-base" in capsys.readouterr().out


def test_judge_rejects_what_is_not_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = _write(tmp_path, "r.json", '{"schema_version": 99}')
    assert main(["judge", str(bogus)]) == 2
    assert "schema_version 1 or 2" in capsys.readouterr().err


def test_judge_refuses_an_oversized_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelseal.reports import json_report

    report = stored_report(tmp_path)
    monkeypatch.setattr(json_report, "MAX_REPORT_BYTES", report.stat().st_size - 1)
    assert main(["judge", str(report)]) == 2
    assert "larger than" in capsys.readouterr().err


def test_markdown_summary_lists_errors_and_findings(tmp_path: Path) -> None:
    report = stored_report(tmp_path)
    text = (report.parent / "summary.md").read_text()
    assert text.startswith("## modelseal: ❌ FAILED")
    assert "| build | ❌ FAILED | 1 failing / 1 |" in text
    assert "<details><summary>1 finding(s), 1 failing</summary>" in text  # as the job summary
    assert "| fail | HIGH | build.unpinned-base | python:3.11 | Dockerfile:1 |" in text


def test_reports_validate_against_the_report_schema(tmp_path: Path) -> None:
    import jsonschema

    schema = json.loads((REPO / "src" / "modelseal" / "reports" / "report.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    report = json.loads(stored_report(tmp_path).read_text())
    jsonschema.validate(report, schema, cls=jsonschema.Draft202012Validator)
    report["schema_version"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, schema, cls=jsonschema.Draft202012Validator)
