"""Hostile output directories: links planted at every name modelseal writes, and at the
directories on the way, never make it write outside (modelseal.fsio, issue 11). Real runs of
the command line and the Action adapter; the build and publish cases live beside their gates
(tests/imagebuild/test_build_outputs.py, tests/publish/test_publish_outputs.py)."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest
from tests.support import REPO
from tests.support.github_runner import parse_file_command
from tests.support.reports import read_report, report_gates, stored_report

from modelseal import fsio
from modelseal._cli import main
from modelseal.errors import ConfigError
from modelseal.github import run_action

PRECIOUS = "precious: must stay as it is\n"
#: A valid safetensors file (one F32 tensor), so that the models gate passes.
HEADER = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
WEIGHTS = len(HEADER).to_bytes(8, "little") + HEADER + b"\x00\x00\x80\x3f"
REPORT_NAMES = ("report.json", "summary.md", "modelseal.sarif", "modelseal.openvex.json")
#: Only the models gate runs: no engine needed.
MODELS_ONLY = """\
version: 1
models:
  require_lock: false
  paths: [m]
build: {enabled: false}
sbom: {enabled: false}
trivy: {enabled: false}
pip_audit: {enabled: false}
"""


def _victim(tmp_path: Path, name: str) -> Path:
    """A file outside every output directory that a planted link points at."""
    victims = tmp_path / "victims"
    victims.mkdir(exist_ok=True)
    target = victims / name
    target.write_text(PRECIOUS)
    return target


def _plant(out: Path, names: tuple[str, ...], tmp_path: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    planted = {}
    for name in names:
        target = _victim(tmp_path, name)
        (out / name).symlink_to(target)
        planted[name] = target
    return planted


def _untouched(planted: dict[str, Path]) -> None:
    for name, target in planted.items():
        assert target.read_text() == PRECIOUS, f"written through the link at {name}"


# --- the module --------------------------------------------------------------------------------


def test_write_replaces_a_link_and_keeps_the_previous_file_until_complete(tmp_path: Path) -> None:
    target = _victim(tmp_path, "bashrc")
    link = tmp_path / "out" / "summary.md"
    link.parent.mkdir()
    link.symlink_to(target)
    fsio.write_text_atomic(link, "new\n")
    assert target.read_text() == PRECIOUS
    assert not link.is_symlink() and link.read_text() == "new\n"
    # A text that cannot be encoded fails before the file is touched.
    with pytest.raises(ConfigError, match=r"not utf-8 .*\\xff"):
        fsio.write_text_atomic(link, "bad \udcff name")
    assert link.read_text() == "new\n"
    assert [p.name for p in link.parent.iterdir()] == ["summary.md"]  # no temporary left
    # The mode is the one asked for (under the umask), whatever the file had before.
    fsio.write_bytes_atomic(link, b"x", mode=0o600)
    assert stat.S_IMODE(link.stat().st_mode) == 0o600


def test_links_on_the_way_are_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "via").symlink_to(elsewhere)
    for path in (tmp_path / "via" / "report.json", tmp_path / "via" / "new" / "report.json"):
        with pytest.raises(fsio.UnsafePathError, match=r"via is a symbolic link"):
            fsio.write_text_atomic(path, "x")
    with pytest.raises(fsio.UnsafePathError, match="is a symbolic link"):
        fsio.ensure_dir(tmp_path / "via")
    assert list(elsewhere.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(fsio.UnsafePathError, match="is not a directory"):
        fsio.ensure_dir(tmp_path / "file" / "sub")
    (tmp_path / "adir").mkdir()
    with pytest.raises(fsio.UnsafePathError, match="is a directory"):
        fsio.write_text_atomic(tmp_path / "adir", "x")


def test_remove_and_replace_dir_never_follow(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "blob").write_text(PRECIOUS)
    out = tmp_path / "out"
    out.mkdir()
    (out / "bundles").symlink_to(keep)
    fsio.remove(out / "bundles")
    assert not (out / "bundles").exists() and (keep / "blob").read_text() == PRECIOUS
    (out / "oci").symlink_to(keep)
    new = fsio.make_temp_dir(out, "oci")
    assert stat.S_IMODE(new.stat().st_mode) == 0o700
    (new / "index.json").write_text("{}")
    fsio.replace_dir(new, out / "oci")
    assert not (out / "oci").is_symlink() and (out / "oci" / "index.json").read_text() == "{}"
    assert (keep / "blob").read_text() == PRECIOUS
    fsio.remove(out / "nothing-here")  # nothing there is fine


def test_append_refuses_a_link_and_what_is_not_a_file(tmp_path: Path) -> None:
    target = _victim(tmp_path, "authorized_keys")
    link = tmp_path / "github_output"
    link.symlink_to(target)
    with pytest.raises(fsio.UnsafePathError, match="is a symbolic link"):
        fsio.append_text(link, "digest=x\n")
    assert target.read_text() == PRECIOUS
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # Refused without blocking (no reader): opened non-blocking, then checked.
    with pytest.raises(fsio.UnsafePathError, match=r"not a regular file|No such device"):
        fsio.append_text(fifo, "x")
    with pytest.raises(fsio.UnsafePathError, match=r"not a regular file|Is a directory"):
        fsio.append_text(tmp_path, "x")
    real = tmp_path / "real"
    real.write_text("a\n")
    fsio.append_text(real, "b\n")
    assert real.read_text() == "a\nb\n"


def test_a_private_dir_is_ours_alone(tmp_path: Path) -> None:
    made = fsio.ensure_private_dir(tmp_path / "new")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o770)
    with pytest.raises(fsio.UnsafePathError, match="writable by group or others"):
        fsio.ensure_private_dir(loose)
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 4242, 4242)
        with pytest.raises(fsio.UnsafePathError, match="belongs to uid 4242"):
            fsio.ensure_private_dir(theirs)
    (tmp_path / "link").symlink_to(made)
    with pytest.raises(fsio.UnsafePathError, match="symbolic link"):
        fsio.ensure_private_dir(tmp_path / "link")
    # Inside a directory others may rename entries of, ours could be swapped for theirs.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(fsio.UnsafePathError, match="could be replaced by someone else"):
        fsio.ensure_private_dir(shared / "root")
    shared.chmod(0o1777)  # sticky, like /tmp: only the owner may rename
    assert fsio.ensure_private_dir(shared / "root") == shared / "root"


def test_shown_escapes_what_a_terminal_would_act_on() -> None:
    assert fsio.shown("m/\udcff.bin") == "m/\\xff.bin"
    # The one escaping (modelseal.untrusted): \n is \x0a, a workflow command is neutralised.
    assert fsio.shown("a\x1b[2Jb\nc") == "a\\x1b[2Jb\\x0ac"
    assert fsio.shown("::error::x\u202e") == "\\x3a:error::x\\u202e"
    assert fsio.shown("modèle.safetensors") == "modèle.safetensors"


# --- the command line --------------------------------------------------------------------------


def test_judge_writes_no_report_through_a_planted_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = stored_report(tmp_path)
    out = tmp_path / "re"
    planted = _plant(out, REPORT_NAMES, tmp_path)
    assert main(["judge", str(report), "-o", str(out)]) == 1
    _untouched(planted)
    for name in ("report.json", "summary.md", "modelseal.sarif"):
        assert (out / name).is_file() and not (out / name).is_symlink()
    assert json.loads((out / "report.json").read_text())["command"] == "judge"
    # No accepted vulnerability, so no VEX: the link is gone, its target still there.
    assert not os.path.lexists(out / "modelseal.openvex.json")
    capsys.readouterr()


@pytest.mark.parametrize("command", ["judge", "run"])
@pytest.mark.parametrize("where", ["out-dir", "parent"])
def test_an_out_dir_reached_through_a_link_is_refused(
    command: str,
    where: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = stored_report(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if where == "out-dir":
        (tmp_path / "re").symlink_to(elsewhere)
        out = tmp_path / "re"
    else:
        (tmp_path / "ws").symlink_to(elsewhere)
        out = tmp_path / "ws" / "reports"
    if command == "judge":
        argv = ["judge", str(report), "-o", str(out)]
    else:
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "w.bin").write_bytes(WEIGHTS)
        (tmp_path / "modelseal.yml").write_text(MODELS_ONLY)
        monkeypatch.chdir(tmp_path)
        argv = ["run", "--gate", "models", "-o", str(out), "."]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is a symbolic link" in err and "realpath" in err
    assert list(elsewhere.iterdir()) == []


def test_run_writes_every_file_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(WEIGHTS)
    (tmp_path / "modelseal.yml").write_text(MODELS_ONLY)
    planted = _plant(tmp_path / "out", (*REPORT_NAMES, "models.json"), tmp_path)
    assert main(["run", "--gate", "models", "-o", "out", "."]) == 0, capsys.readouterr()
    _untouched(planted)
    models = json.loads((tmp_path / "out" / "models.json").read_text())
    assert [m["path"] for m in models["models"]] == ["m/w.bin"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["verdict"] == "PASSED"


def test_lock_replaces_a_planted_link_and_refuses_a_linked_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(WEIGHTS)
    planted = _plant(tmp_path, ("models.lock",), tmp_path)
    planted["models.lock"].write_text('{"version": 1, "roots": [], "files": []}\n')
    before = planted["models.lock"].read_text()
    assert main(["models", "lock", "m"]) == 0
    assert planted["models.lock"].read_text() == before
    lock = tmp_path / "models.lock"
    assert not lock.is_symlink() and json.loads(lock.read_text())["files"][0]["path"] == "m/w.bin"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "locks").symlink_to(elsewhere)
    capsys.readouterr()
    assert main(["models", "lock", "m", "--lock", "locks/models.lock"]) == 2
    assert "locks is a symbolic link" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_a_name_that_is_not_utf8_leaves_the_previous_lock_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(WEIGHTS)
    assert main(["models", "lock", "m"]) == 0
    before = (tmp_path / "models.lock").read_bytes()
    with open(os.path.join(os.fsencode(tmp_path), b"m", b"\xff\x1b[31m.bin"), "wb") as f:
        f.write(b"x")
    capsys.readouterr()
    assert main(["models", "lock", "m"]) == 2
    err = capsys.readouterr().err
    assert "m/\\xff\\x1b[31m.bin is not valid UTF-8" in err and "\x1b" not in err
    assert (tmp_path / "models.lock").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m", "models.lock"]  # no temporary left


def test_a_run_over_a_name_that_is_not_utf8_still_writes_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    with open(os.path.join(os.fsencode(tmp_path), b"m", b"\xff.bin"), "wb") as f:
        f.write(b"x")
    (tmp_path / "modelseal.yml").write_text(MODELS_ONLY)
    code = main(["run", "--gate", "models", "-o", "out", "."])
    capsys.readouterr()
    assert code == 3  # the models gate could not check that file: ERRORED
    (gate,) = report_gates(read_report(tmp_path / "out" / "report.json")).values()
    assert gate["status"] == "ERRORED" and "m/\\xff.bin is not valid UTF-8" in gate["error"]


def test_a_report_holding_a_name_that_is_not_utf8_reads_back(tmp_path: Path) -> None:
    from modelseal import __version__
    from modelseal.findings import Finding, GateResult, Severity, Status
    from modelseal.judge import judge
    from modelseal.policy import default_policy
    from modelseal.reports import Report, write_reports
    from modelseal.reports.json_report import read_results

    finding = Finding(gate="models-image", id="x", severity=Severity.LOW, title="t",
                      subject="/srv/\udcff.bin")  # fmt: skip
    result = GateResult("models-image", Status.PASSED, findings=(finding,))
    report = Report(
        verdict=judge([result], default_policy().policy), policy_source="<defaults>",
        policy_sha256="", started_at=0.0, finished_at=1.0, tool_version=__version__,
    )  # fmt: skip
    paths = write_reports(report, tmp_path / "out")
    (back,), _ = read_results(paths["json"])
    assert back.findings[0].subject == "/srv/\udcff.bin"
    # the byte shown escaped (\xff, its backslash escaped for Markdown)
    assert "/srv/\\\\xff.bin" in paths["markdown"].read_text()


# --- the Action adapter ------------------------------------------------------------------------


def _action_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(WEIGHTS)
    (tmp_path / "modelseal.yml").write_text(MODELS_ONLY)
    (tmp_path / "gh").mkdir()
    for name in ("output", "summary"):
        (tmp_path / "gh" / name).write_text("")
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(tmp_path),
        "GITHUB_OUTPUT": str(tmp_path / "gh" / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "gh" / "summary"),
    }


def test_the_action_writes_nothing_through_planted_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    env = _action_env(tmp_path)
    out = tmp_path / "modelseal-out"
    names = (*REPORT_NAMES, "models.json", "publish.json", "provenance.intoto.json",
             "sbom.cdx.json", "build.log")  # fmt: skip
    planted = _plant(out, names, tmp_path)
    bundles = tmp_path / "victims" / "bundles"
    bundles.mkdir()
    (bundles / "image.sigstore.json").write_text(PRECIOUS)
    (out / "bundles").symlink_to(bundles)
    assert run_action(env, stdout=io.StringIO()) == 0, capsys.readouterr()
    _untouched(planted)
    assert (bundles / "image.sigstore.json").read_text() == PRECIOUS
    assert not os.path.lexists(out / "bundles")
    outputs = parse_file_command((tmp_path / "gh" / "output").read_text())
    assert outputs["verdict"] == "PASSED" and outputs["report-path"] == str(out / "report.json")


def test_the_action_refuses_a_linked_out_dir_and_runner_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    env = _action_env(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "modelseal-out").symlink_to(elsewhere)
    assert run_action(env, stdout=io.StringIO()) == 2
    assert "modelseal-out is a symbolic link" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []
    outputs = parse_file_command((tmp_path / "gh" / "output").read_text())
    assert outputs["exit-code"] == "2" and outputs["verdict"] == "ERRORED"

    # GITHUB_OUTPUT and GITHUB_STEP_SUMMARY are appended to, never through a link.
    (tmp_path / "modelseal-out").unlink()
    target = _victim(tmp_path, "profile")
    (tmp_path / "gh" / "output").unlink()
    (tmp_path / "gh" / "output").symlink_to(target)
    assert run_action(env, stdout=io.StringIO()) == 2
    assert "output is a symbolic link" in capsys.readouterr().err
    assert target.read_text() == PRECIOUS


def test_an_unsafe_out_dir_is_reported_inside_the_stop_commands_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal quotes the out-dir input: a name holding a workflow command must not run."""
    monkeypatch.chdir(tmp_path)
    env = {**_action_env(tmp_path), "MODELSEAL_OUT_DIR": "::error::pwned"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "::error::pwned").symlink_to(elsewhere)
    stdout = io.StringIO()
    assert run_action(env, stdout=stdout) == 2
    err = capsys.readouterr().err
    assert "is a symbolic link" in err
    assert not any(line.startswith("::error::pwned") for line in err.splitlines())
    assert "::stop-commands::" in stdout.getvalue()


def test_a_system_temp_dir_reached_through_a_link_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TMPDIR (or /tmp) being a link is the machine's choice, not a planted one: modelseal's own
    private working directory below it (the pipeline's and the publisher's, where the syft
    config, the push view and other working files are written) is reached by its real path, so
    those writes are not refused as going through a link."""
    import tempfile

    from modelseal import fsio

    real = tmp_path / "real-tmp"
    real.mkdir()
    (tmp_path / "tmp-link").symlink_to(real)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp-link"))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    with tempfile.TemporaryDirectory() as plain, pytest.raises(ConfigError, match="link"):
        fsio.write_text_atomic(Path(plain) / "syft.yaml", "{}\n")  # what the gates did
    with fsio.private_temp_dir("modelseal-") as tmp:
        assert Path(tmp).parent == real
        fsio.write_text_atomic(Path(tmp) / "syft.yaml", "{}\n")
        assert (Path(tmp) / "syft.yaml").read_text() == "{}\n"
    pipeline = (REPO / "src/modelseal/pipeline.py").read_text()
    publisher = (REPO / "src/modelseal/publish/publisher.py").read_text()
    assert "tempfile.TemporaryDirectory(" not in pipeline + publisher
