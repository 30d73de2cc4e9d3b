"""The private engine: started, reused, stopped without leaving mounts behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from tests.conftest import require

from modelseal._cli import main
from modelseal.engine import PrivateEngine, probe_engine
from modelseal.errors import EngineError

pytestmark = pytest.mark.engine


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    return [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(prefix)
    ]


def test_engine_cli_start_status_stop(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    require(os.geteuid() == 0, "root (to start dockerd)")
    require(shutil.which("dockerd") is not None, "dockerd")
    root = Path(tempfile.mkdtemp(prefix="ms-e-", dir="/tmp"))
    try:
        assert main(["engine", "start", "--root", str(root)]) == 0
        out = capsys.readouterr().out.strip()
        assert out == f"DOCKER_HOST=unix://{root}/docker.sock"
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
    assert info.containerd_store and info.builder is None and info.buildx_args() == []
    assert info.buildx_version.startswith(("0.", "v0."))


def test_missing_docker_cli_is_an_engine_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSEAL_DOCKER", "/nonexistent/docker")
    with pytest.raises(EngineError, match="MODELSEAL_DOCKER=/nonexistent/docker"):
        probe_engine()
