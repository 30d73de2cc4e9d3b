"""The command line against hostile input: flags that validate but would misbehave later,
file names and finding texts that try to drive the terminal or the CI log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.reports import judged_report

from modelseal._cli import main
from modelseal.findings import Finding, GateResult, Severity, Status

REF = "127.0.0.1:1/nothing/here:1"  # nothing listens: reaching the registry would be exit 3


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("^a|.*$", "do not anchor the whole pattern"),
        ("^(a+)+$", "repeated group contains another repetition"),
    ],
)
def test_verify_checks_the_identity_regexp_flag_before_any_network(
    pattern: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["verify", REF, "--certificate-oidc-issuer", "https://issuer.example",
            f"--certificate-identity-regexp={pattern}"]  # fmt: skip
    assert main(argv) == 2
    assert why in capsys.readouterr().err


def test_verify_max_scan_age_days_is_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["verify", REF, "--certificate-oidc-issuer", "https://issuer.example",
            "--certificate-identity", "a@b.example", "--max-scan-age-days", "1000000000"]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "expected whole days from 0 to 3650" in capsys.readouterr().err


# --- what reaches the terminal and the CI log ----------------------------------------------

HOSTILE_NAMES = (
    "a\n::error::pwned-by-a-file-name.bin",
    "b\x1b]0;owned\x07\x1b[2J.bin",
    "c[bold red]x[link=mailto:evil]y.bin",
    "d\rhidden.bin",
    "e\u009b31m.bin",
    "##[error]legacy.bin",
    "::warning::at-the-start.bin",
)


def assert_inert(text: str) -> None:
    """Nothing a terminal or the Actions runner would act on: no control characters, and no
    line that is a workflow command (the runner strips leading whitespace first)."""
    for char in ("\x1b", "\r", "\x9b", "\x07"):
        assert char not in text, f"{char!r} reached the output"
    for line in text.split("\n"):
        stripped = line.lstrip()
        assert not stripped.startswith(("::", "##[")), f"workflow command in output: {line!r}"


def _modelseal(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelseal", *argv],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def hostile_tree(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    for i, name in enumerate(HOSTILE_NAMES):
        (models / name).write_bytes(b"\x80\x04K" + bytes([i]) + b".")  # a tiny pickle each
    return tmp_path


def test_models_lock_prints_hostile_names_inert(hostile_tree: Path) -> None:
    proc = _modelseal("models", "lock", "models", cwd=hostile_tree)
    assert proc.returncode == 0, proc.stderr
    assert_inert(proc.stdout + proc.stderr)
    assert "pwned-by-a-file-name.bin" in proc.stdout  # shown, escaped: a\n::error:: → a\x0a…
    assert "a\\x0a::error::pwned" in proc.stdout


def test_models_scan_prints_hostile_names_inert(hostile_tree: Path) -> None:
    proc = _modelseal("models", "scan", "models", cwd=hostile_tree)
    assert proc.returncode == 1, proc.stderr  # pickles are denied by default
    assert_inert(proc.stdout + proc.stderr)
    assert "c[bold red]x[link=mailto:evil]y.bin" in proc.stdout
    assert "models/::warning::at-the-start.bin" in proc.stdout  # mid-line: inert as it is


def test_errors_quoting_a_hostile_name_are_inert(tmp_path: Path) -> None:
    proc = _modelseal("models", "scan", "x\n::error::from-an-error.bin", cwd=tmp_path)
    assert proc.returncode == 2
    assert_inert(proc.stdout + proc.stderr)
    assert "from-an-error.bin does not exist" in proc.stderr


def test_policy_validate_prints_a_hostile_file_name_inert(tmp_path: Path) -> None:
    (tmp_path / "::notice::pwned.yml").write_text("version: 1\n")
    proc = _modelseal("policy", "validate", "::notice::pwned.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_inert(proc.stdout + proc.stderr)


def _hostile_report(tmp_path: Path) -> Path:
    finding = Finding(
        gate="models",
        id="models.pickle[/red]",
        severity=Severity.HIGH,
        title="x[/red]… \x1b]8;;https://evil.example\x07click\x1b]8;;\x07\n::error::pwned",
        subject="models/\x9b2Jm.bin",
        location="\r::warning file=a::b",
    )
    results = [
        GateResult("models", Status.PASSED, findings=(finding,)),
        GateResult("sbom", Status.ERRORED, error="syft said:\n  ::add-mask::x\n\x1b[31m[bold]"),
    ]
    return judged_report(tmp_path, results, "modelseal.yml")


def test_judge_verdict_print_survives_markup_and_escapes(tmp_path: Path) -> None:
    report = _hostile_report(tmp_path)
    proc = _modelseal("judge", str(report), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # breached, not a crash (4)
    assert_inert(proc.stdout + proc.stderr)
    assert "x[/red]…" in proc.stdout
    assert "syft said:" in proc.stdout


def test_summary_markdown_keeps_hostile_text_inert(tmp_path: Path) -> None:
    summary = (_hostile_report(tmp_path).parent / "summary.md").read_text()
    assert "\x1b" not in summary and "\x9b" not in summary
    assert "```" not in summary  # an error cannot close a fence it is not in
    assert "add-mask::x" in summary  # shown, inside <pre>, escaped


def test_source_date_epoch_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    argv = ["build", str(context), "-o", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--source-date-epoch", "99999999999999999999"])
    assert exc.value.code == 2
    assert "at most 253402300799 (the year 9999)" in capsys.readouterr().err
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "99999999999999999999")
    assert main(argv) == 2
    assert "SOURCE_DATE_EPOCH=99999999999999999999 is after the year 9999" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists()
