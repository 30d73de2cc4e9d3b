"""Every file a user hands modelseal is read bounded: FIFOs and devices are refused at once,
files over the limit are refused naming file and limit, and a name inside the working
directory must not lead outside it. One test per reader, each with the same hostile files."""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelseal import _cli, bounded
from modelseal.bounded import read_input
from modelseal.errors import ConfigError, Error, ExitCode
from modelseal.imagebuild.context import DockerIgnore
from modelseal.models import lock as lock_module
from modelseal.models.lock import load_lock
from modelseal.reports import json_report
from modelseal.reports.json_report import read_results
from modelseal.sign import trust as trust_module
from modelseal.sign.key import SigningKeyError, load_private_key
from modelseal.sign.trust import load_trust_config
from modelseal.vuln import policy as vex_module
from modelseal.vuln.policy import load_vex

SECRET = "aws_secret_access_key = AKIAHOSTSECRET0000000"


@pytest.fixture
def unblock_fifos() -> Iterator[list[Path]]:
    """FIFOs the test made; should a reader block on one, a writer set free after 15 s lets
    the test fail instead of hanging the run."""
    fifos: list[Path] = []
    done = threading.Event()

    def release() -> None:
        wait = 15.0
        while not done.wait(wait):  # a reader may open the same FIFO again: keep releasing
            wait = 0.5
            for fifo in fifos:
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    continue
                os.close(fd)

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    yield fifos
    done.set()
    thread.join()


def _hostile(tmp_path: Path, kind: str, name: str, fifos: list[Path]) -> Path:
    path = tmp_path / name
    if kind == "fifo":
        os.mkfifo(path)
        fifos.append(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    return path


KINDS = {
    "fifo": "is a FIFO (named pipe), not a regular file",
    "dev-zero": "is a character device, not a regular file",
    "directory": "is a directory, not a regular file",
}


# --- the reader itself ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_read_input_refuses_what_is_not_a_regular_file(
    tmp_path: Path, kind: str, unblock_fifos: list[Path]
) -> None:
    path = _hostile(tmp_path, kind, "input", unblock_fifos)
    with pytest.raises(ConfigError, match=re.escape(KINDS[kind])):
        read_input(path, what="test file")


def test_read_input_limit_counts_bytes_read_not_the_reported_size(tmp_path: Path) -> None:
    path = tmp_path / "input"
    path.write_bytes(b"x" * 100)
    assert read_input(path, what="test file", limit=100) == b"x" * 100
    with pytest.raises(ConfigError, match=r"test file .*input is larger than the 99 bytes limit"):
        read_input(path, what="test file", limit=99)
    # /proc files report size 0 and are read up to the limit only.
    with pytest.raises(ConfigError, match="larger than the 16 bytes limit"):
        read_input(Path("/proc/self/maps"), what="test file", limit=16)


def test_read_input_refuses_a_link_from_the_working_directory_out_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text(SECRET)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "link").symlink_to(outside)
    (repo / "inside.txt").write_text("ok")
    (repo / "good").symlink_to("inside.txt")
    monkeypatch.chdir(repo)
    with pytest.raises(ConfigError, match="symbolic link to a file outside the working") as info:
        read_input(Path("link"), what="test file")
    assert "AKIA" not in str(info.value)
    assert read_input(Path("good"), what="test file") == b"ok"
    # Named from outside the working directory, the operator chose it: followed.
    assert read_input(outside, what="test file") == SECRET.encode()


def test_names_in_messages_are_escaped_and_clipped(tmp_path: Path) -> None:
    path = tmp_path / ("\x1b]0;pwned\x07" + "n" * 300)
    with pytest.raises(ConfigError) as info:
        read_input(path, what="test file")
    assert "\x1b" not in str(info.value) and "\\x1b" in str(info.value)
    assert "n" * 300 not in str(info.value)


# --- each reader ---------------------------------------------------------------------------


def _readers() -> dict[str, Callable[[Path], object]]:
    return {
        "trust config": lambda p: load_trust_config(p),
        "signing key": lambda p: load_private_key(p),
        "models.lock": lambda p: load_lock(p),
        "VEX document": lambda p: load_vex([p.name], p.parent),
        "report.json": lambda p: read_results(p),
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", list(_readers()))
def test_every_reader_refuses_non_regular_files(
    tmp_path: Path, reader: str, kind: str, unblock_fifos: list[Path]
) -> None:
    path = _hostile(tmp_path, kind, "input.json", unblock_fifos)
    with pytest.raises(Error, match=re.escape(KINDS[kind])) as info:
        _readers()[reader](path)
    assert "input.json" in str(info.value)
    assert info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(
    ("reader", "module", "limit_name"),
    [
        ("trust config", trust_module, "MAX_TRUST_CONFIG_BYTES"),
        ("models.lock", lock_module, "MAX_LOCK_BYTES"),
        ("VEX document", vex_module, "MAX_VEX_BYTES"),
        ("report.json", json_report, "MAX_REPORT_BYTES"),
    ],
)
def test_every_reader_refuses_files_over_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str, module: object, limit_name: str
) -> None:
    limit = getattr(module, limit_name)
    assert limit >= bounded.MIB  # the documented limits are generous for real files
    monkeypatch.setattr(module, limit_name, 2048)  # the same check, without writing GiBs
    path = tmp_path / "input.json"
    path.write_text('{"x": "' + "a" * 4096 + '"}')
    with pytest.raises(ConfigError, match=r"input\.json is larger than the 2 KiB limit"):
        _readers()[reader](path)


def test_signing_key_over_its_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\n" + b"A" * (64 * 1024) + b"\n")
    with pytest.raises(SigningKeyError, match=r"key\.pem is larger than the 64 KiB limit"):
        load_private_key(path)


def test_dockerignore_over_its_limit_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("*.tmp\n" * 200_000)  # 1.2 MB
    with pytest.raises(ConfigError, match=r"\.dockerignore is larger than the 1 MiB limit"):
        DockerIgnore.load(tmp_path, None)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_verify_public_key_flag_is_read_bounded(
    tmp_path: Path, kind: str, unblock_fifos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    key = _hostile(tmp_path, kind, "pub.pem", unblock_fifos)
    assert _cli.main(["verify", "127.0.0.1:1/x:1", "--key", str(key)]) == 2
    assert KINDS[kind] in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_judge_report_argument_is_read_bounded(
    tmp_path: Path, kind: str, unblock_fifos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    report = _hostile(tmp_path, kind, "report.json", unblock_fifos)
    assert _cli.main(["judge", str(report)]) == 2
    assert KINDS[kind] in capsys.readouterr().err


def test_dockerfile_that_is_a_fifo_fails_the_build_gate_at_once(
    tmp_path: Path, unblock_fifos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    _hostile(context, "fifo", "Dockerfile", unblock_fifos)
    code = _cli.main(["build", str(context), "-o", str(tmp_path / "out")])
    assert code == ExitCode.ERRORED  # a gate that cannot run: fail closed
    assert "Dockerfile is a FIFO (named pipe), not a regular file" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_default_policy_that_is_no_regular_file_is_refused_not_replaced_by_defaults(
    tmp_path: Path,
    kind: str,
    unblock_fifos: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _hostile(tmp_path, kind, "modelseal.yml", unblock_fifos)
    monkeypatch.chdir(tmp_path)
    argv = ["verify", "127.0.0.1:1/x:1", "--certificate-oidc-issuer", "https://issuer.example",
            "--certificate-identity", "a@b.example"]  # fmt: skip
    assert _cli.main(argv) == 2  # under the defaults it would go on to the registry: exit 3
    assert "modelseal.yml" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_an_ignore_file_that_is_no_regular_file_is_refused_not_skipped(
    tmp_path: Path, kind: str, unblock_fifos: list[Path]
) -> None:
    _hostile(tmp_path, kind, ".dockerignore", unblock_fifos)
    with pytest.raises(ConfigError, match=re.escape(KINDS[kind])):
        DockerIgnore.load(tmp_path, None)


def test_the_action_refuses_a_policy_fifo_without_hanging(
    tmp_path: Path,
    unblock_fifos: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from modelseal.github import run_action
    from modelseal.github.inputs import INPUT_ENV

    monkeypatch.chdir(tmp_path)
    _hostile(tmp_path, "fifo", "policy.yml", unblock_fifos)
    env = {INPUT_ENV["policy"]: "policy.yml", "GITHUB_WORKSPACE": str(tmp_path)}
    assert run_action(env, stdout=io.StringIO()) == 2
    assert KINDS["fifo"] in capsys.readouterr().err
