"""Review of issue 18 section 3 (`modelseal policy import`): each test here documents a defect
found in review (each was a strict xfail until fixed; now a regression test). The rules are
written from Grype's and Trivy's documented formats (grype/match/ignore.go: package.name is an
anchored regular expression, version and type exact strings, location a doublestar glob; Trivy
pkg/result/ignore.go: paths are doublestar globs)."""

from __future__ import annotations

import stat
from datetime import date
from pathlib import Path

import pytest

from modelseal._cli import main
from modelseal.errors import ConfigError
from modelseal.findings import GateResult, Severity, Status
from modelseal.judge import Outcome, judge
from modelseal.policy import load_policy_text
from modelseal.policy.importers import complete, fragment_text, read_grype, read_trivyignore
from modelseal.vuln.findings import vuln_finding

TODAY = date(2026, 12, 5)
LATER = date(2027, 6, 30)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _entries(text: str, name: str = "grype.yaml") -> list[dict[str, object]]:
    Path(name).write_text(text)
    result = read_grype(Path(name))
    return complete([result], expires=LATER, reason=None)


def test_grype_location_root_is_not_imported_as_everything() -> None:
    entries = _entries("ignore:\n  - vulnerability: CVE-2024-10001\n    package: {location: /}\n")
    assert all(e.get("paths") != ["**"] for e in entries)


def test_grype_npm_name_is_not_folded_like_a_pypi_name() -> None:
    entries = _entries(
        "ignore:\n  - vulnerability: CVE-2024-10001\n"
        "    package: {name: foo-bar, type: npm}\n"
        "    reason: only in tests\n"
    )
    policy = load_policy_text("version: 1\n" + fragment_text(entries, ["grype.yaml"]), "p")
    other = vuln_finding(
        gate="trivy",
        id="CVE-2024-10001",
        package="Foo_Bar",  # another npm package: Grype's ^foo-bar$ does not match it
        version="1.0.0",
        ecosystem="npm",
        severity=Severity.HIGH,
        title="t",
        fixed_in="1.0.1",
        location="app/node_modules/Foo_Bar/package.json",
    )
    v = judge(
        [GateResult("trivy", Status.PASSED, findings=(other,))],
        policy.policy,
        today=TODAY,
    )
    assert v.gates[0].decisions[0].outcome is Outcome.FAIL


def test_trivy_brace_alternation_is_expanded_or_reported() -> None:
    Path(".trivyignore.yaml").write_text(
        "vulnerabilities:\n  - id: CVE-2024-11111\n    paths: ['usr/lib/{python3,python3.11}/**']\n"
    )
    result = read_trivyignore(Path(".trivyignore.yaml"), today=TODAY)
    kept = [p for i in result.entries for p in i.fields.get("paths", ())]  # type: ignore[attr-defined]
    reported = list(result.skipped) + list(result.notes)
    assert reported or not any("{" in str(p) for p in kept)


def test_a_rule_modelseal_cannot_read_is_listed_not_fatal() -> None:
    Path(".trivyignore.yaml").write_text(
        "vulnerabilities:\n"
        "  - id: CVE-2024-11111\n    paths: ['usr/lib/**.so']\n"
        "  - id: CVE-2024-22222\n"
    )
    result = read_trivyignore(Path(".trivyignore.yaml"), today=TODAY)
    try:
        fragment_text(complete([result], expires=LATER, reason=None), [".trivyignore.yaml"])
    except ConfigError as e:
        pytest.fail(f"the whole import failed: {e}")
    assert any("vulnerabilities[0]" in p.where for p in result.skipped)


def test_write_keeps_the_policy_files_mode(tmp_path: Path) -> None:
    (tmp_path / ".trivyignore").write_text("CVE-2024-55555\n")
    policy = tmp_path / "modelseal.yml"
    policy.write_text("version: 1\n")
    policy.chmod(0o600)
    argv = ["policy", "import", "--trivyignore", ".trivyignore", "--expires", "2027-06-30",
            "--policy", "modelseal.yml", "--write"]  # fmt: skip
    assert main(argv) == 0
    assert "CVE-2024-55555" in policy.read_text()
    assert stat.S_IMODE(policy.stat().st_mode) == 0o600


def test_trivy_purls_expanding_past_the_rule_limit_are_refused() -> None:
    from modelseal.policy.importers import MAX_RULES

    purls = "".join(f"      - pkg:pypi/p{i}\n" for i in range(MAX_RULES // 2 + 1))
    Path(".trivyignore.yaml").write_text(
        "vulnerabilities:\n"
        f"  - id: CVE-2024-00001\n    purls:\n{purls}"
        f"  - id: CVE-2024-00002\n    purls:\n{purls}"
    )
    try:
        result = read_trivyignore(Path(".trivyignore.yaml"), today=TODAY)
    except ConfigError:
        return  # refused: fine
    assert len(result.entries) <= MAX_RULES


def test_grype_vex_justification_alone_does_not_become_a_not_affected_claim() -> None:
    entries = _entries(
        "ignore:\n  - vulnerability: CVE-2024-10001\n"
        "    vex-justification: vulnerable_code_not_present\n"
    )
    assert entries and all("justification" not in e for e in entries)


def test_brace_alternations_expand_bounded_and_backslashes_are_listed() -> None:
    Path(".trivyignore.yaml").write_text(
        "vulnerabilities:\n"
        "  - id: CVE-2024-11111\n    paths: ['usr/{lib,local/lib}/python3/{a,b{1,2}}/**']\n"
        "  - id: CVE-2024-22222\n    paths: ['" + "{a,b}" * 7 + "']\n"  # 128 globs
        "  - id: CVE-2024-33333\n    paths: ['usr/lib/\\\\*.so']\n"
    )
    result = read_trivyignore(Path(".trivyignore.yaml"), today=TODAY)
    assert [i.fields["paths"] for i in result.entries] == [
        [
            "usr/lib/python3/a/**", "usr/lib/python3/b1/**", "usr/lib/python3/b2/**",
            "usr/local/lib/python3/a/**", "usr/local/lib/python3/b1/**",
            "usr/local/lib/python3/b2/**",
        ]
    ]  # fmt: skip
    skipped = {p.where: p.message for p in result.skipped}
    assert "more than 64 globs" in skipped["vulnerabilities[1] (CVE-2024-22222)"]
    assert "backslash escape" in skipped["vulnerabilities[2] (CVE-2024-33333)"]
    assert "written as 6 globs" in " ".join(p.message for p in result.notes)


def test_write_keeps_a_group_readable_mode_exactly(tmp_path: Path) -> None:
    """Not the mode under the umask: the file's own (0640 stays 0640, 0664 stays 0664)."""
    (tmp_path / ".trivyignore").write_text("CVE-2024-55555\n")
    policy = tmp_path / "modelseal.yml"
    for mode in (0o640, 0o664):
        policy.write_text("version: 1\n")
        policy.chmod(mode)
        argv = ["policy", "import", "--trivyignore", ".trivyignore", "--expires", "2027-06-30",
                "--policy", "modelseal.yml", "--write"]  # fmt: skip
        assert main(argv) == 0
        assert "CVE-2024-55555" in policy.read_text()
        assert stat.S_IMODE(policy.stat().st_mode) == mode
