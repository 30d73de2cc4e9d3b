"""The private engine: started, reused, stopped without leaving mounts behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from tests.support.tools import require

from modelseal._cli import main
from modelseal.errors import EngineError
from modelseal.imagebuild.engine import PrivateEngine, probe_engine

pytestmark = pytest.mark.engine


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    return [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(prefix)
    ]


def test_engine_cli_start_status_stop(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    require(os.geteuid() == 0, "root (to start dockerd)")
    require(shutil.which("dockerd") is not None, "dockerd")
    root = Path(tempfile.mkdtemp(prefix="ms-e-", dir="/tmp"))
    # Planted by someone else: written over (replaced), never through.
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (root / "daemon.json").symlink_to(victim)
    try:
        assert main(["engine", "start", "--root", str(root)]) == 0
        out = capsys.readouterr().out.strip()
        assert out == f"DOCKER_HOST=unix://{root}/docker.sock"
        assert victim.read_text() == "precious\n"
        assert not (root / "daemon.json").is_symlink()
        pid = (root / "docker.pid").read_text()
        # Idempotent: a second start reuses the running daemon.
        assert main(["engine", "start", "--root", str(root)]) == 0
        assert (root / "docker.pid").read_text() == pid
        capsys.readouterr()

        monkeypatch.setenv("DOCKER_HOST", f"unix://{root}/docker.sock")
        assert main(["engine", "status"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["containerd_store"] is True and status["builder"] is None
        assert status["server_version"].startswith("26.")
        assert _mounts_under(root), "a running engine has its netns mount"
    finally:
        assert main(["engine", "stop", "--root", str(root), "--remove"]) == 0
    assert not _mounts_under(root)
    assert not root.exists()


def test_probe_reports_unreachable_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    require(shutil.which("docker") is not None, "docker CLI")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    with pytest.raises(EngineError) as exc:
        probe_engine()
    assert "cannot reach a Docker engine" in exc.value.message
    assert exc.value.hint and "DOCKER_HOST" in exc.value.hint


def test_private_engine_probe(engine: PrivateEngine) -> None:
    info = probe_engine()
    assert info.docker_host == engine.docker_host
    assert info.containerd_store and info.builder is None
    assert info.buildx_args() == ["--builder", info.docker_context]
    assert info.buildx_version.startswith(("0.", "v0."))


def test_missing_docker_cli_is_an_engine_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSEAL_DOCKER", "/nonexistent/docker")
    with pytest.raises(EngineError, match="MODELSEAL_DOCKER=/nonexistent/docker"):
        probe_engine()


def _foreign(root: Path, how: str, tmp_path: Path) -> Path:
    """An engine root someone else controls (or could), by ``how``."""
    if how == "other-owner":
        require(os.geteuid() == 0, "root (to give a directory away)")
        os.chown(root, 4242, 4242)
    elif how == "group-writable":
        root.chmod(0o770)
    elif how == "world-writable":
        root.chmod(0o777)
    elif how == "symlink":
        link = tmp_path / "link"
        link.symlink_to(root)
        return link
    return root


@pytest.mark.parametrize("how", ["other-owner", "group-writable", "world-writable", "symlink"])
def test_an_engine_root_that_is_not_ours_alone_is_refused(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    given = _foreign(root, how, tmp_path)
    # Refused before anything else: without dockerd on PATH the answer is still the refusal
    # (exit 2), not "dockerd was not found" (exit 3). No dockerd is started either way.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["engine", "start", "--root", str(given)]) == 2
    assert main(["engine", "stop", "--root", str(given), "--remove"]) == 2
    err = capsys.readouterr().err
    assert {"other-owner": "belongs to uid 4242", "group-writable": "mode 0770",
            "world-writable": "mode 0777", "symlink": "symbolic link"}[how] in err  # fmt: skip
    assert root.is_dir() and list(root.iterdir()) == []


@pytest.mark.parametrize("pidfile", ["file", "symlink"])
def test_stop_signals_only_its_own_dockerd(
    pidfile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        if pidfile == "file":
            (root / "docker.pid").write_text(f"{bystander.pid}\n")
        else:
            (tmp_path / "pid").write_text(f"{bystander.pid}\n")
            (root / "docker.pid").symlink_to(tmp_path / "pid")
        assert main(["engine", "stop", "--root", str(root)]) == 0
        assert bystander.poll() is None, "stop killed a process that is not its dockerd"
        assert PrivateEngine(root)._pid() is None
    finally:
        bystander.kill()
        bystander.wait()
