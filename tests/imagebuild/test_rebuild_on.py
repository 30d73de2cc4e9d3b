"""``build.rebuild_on``: the rebuild check on a second, independent engine — a fresh private
dockerd with an empty data root, or another buildx builder (here: the docker-driver builder of a
second private engine's docker context) — and the gate ERRORED when that engine cannot be had."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from tests.support import EPOCH, REPO
from tests.support.reports import report_gates
from tests.support.tools import docker_cli, require

from modelseal._cli import main
from modelseal.imagebuild.engine import (
    BUILDKIT_IMAGE,
    EngineInfo,
    PrivateEngine,
    _builder_endpoint,
    probe_engine,
)
from modelseal.imagebuild.gate import _not_reproducible, same_engine
from modelseal.oci import ImageDifference
from modelseal.policy import load_policy_text

DOCKERFILE = "FROM base\nCOPY model.bin /m/model.bin\nRUN touch /m/ready\n"


def _build(
    tmp_path: Path,
    policy: str,
    base: str,
    *extra: str,
    capsys: pytest.CaptureFixture[str],
    check: str = "always",
    dockerfile: str = DOCKERFILE,
) -> tuple[int, dict[str, object], str]:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "model.bin").write_bytes(b"\x00weights\x01" * 100)
    (tmp_path / "policy.yml").write_text(f"version: 1\nbuild:\n  rebuild_check: {check}\n{policy}")
    out = tmp_path / "out"
    code = main(["build", str(ctx), "--policy", str(tmp_path / "policy.yml"), "-o", str(out),
                 "--source-date-epoch", str(EPOCH), "--build-context", f"base={base}",
                 *extra])  # fmt: skip
    captured = capsys.readouterr()
    (gate,) = report_gates(json.loads((out / "report.json").read_text())).values()
    return code, gate, captured.out + captured.err


@pytest.fixture
def second_engine(engine: PrivateEngine) -> Iterator[PrivateEngine]:
    """Another private dockerd (its own, empty data root) beside the session's ``engine``."""
    root = Path(tempfile.mkdtemp(prefix="ms-e2-", dir="/tmp"))
    eng = PrivateEngine(root).start()
    try:
        yield eng
    finally:
        eng.stop(remove=True)


def _docker_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, host: str
) -> dict[str, str]:
    """A docker context ``name`` for the engine at ``host``, in a Docker config directory of
    the test's own: its docker-driver buildx builder is named after the context. Returns the
    environment that reaches it by name (no DOCKER_HOST to override the context)."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    subprocess.run(
        [docker_cli(), "context", "create", name, "--docker", f"host={host}"],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    return env


@pytest.mark.engine
def test_rebuild_on_a_builder_of_a_second_engine_gives_the_same_digest(
    engine: PrivateEngine,
    second_engine: PrivateEngine,
    busybox_base: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A docker context for the second engine, in a Docker config directory of the test's own:
    # its docker-driver buildx builder is named after the context.
    env = _docker_context(tmp_path, monkeypatch, "second-engine", second_engine.docker_host)
    code, gate, out = _build(tmp_path, "  rebuild_on: second-engine\n", busybox_base, capsys=capsys)
    assert code == 0, out
    facts = gate["facts"]
    assert isinstance(facts, dict)
    assert facts["rebuild.reproducible"] == "yes"
    assert facts["rebuild.digest"] == facts["image.digest"]
    assert facts["rebuild.on"] == "builder second-engine"
    assert facts["rebuild.builder.name"] == "second-engine"
    assert facts["rebuild.builder.driver"] == "docker"
    # The first build ran on the session's engine, the rebuild on the second.
    assert facts["builder.name"] == "default"
    version = subprocess.run(
        [docker_cli(), "version", "--format", "{{.Server.Version}}"],
        check=True, capture_output=True, text=True, env={**env, **second_engine.env()},
    ).stdout.strip()  # fmt: skip
    assert facts["rebuild.engine.version"] == version
    assert facts["rebuild.buildkit.version"]
    # The second engine's BuildKit holds the rebuild's records: it did build.
    du = subprocess.run(
        [docker_cli(), "--context", "second-engine", "buildx", "du", "--verbose"],
        check=True, capture_output=True, text=True, env=env,
    ).stdout  # fmt: skip
    assert "touch /m/ready" in du, du


@pytest.mark.engine
def test_without_docker_host_the_current_docker_context_is_the_engine(
    engine: PrivateEngine,
    second_engine: PrivateEngine,
    busybox_base: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Docker Desktop, rootless, colima, `docker context use remote`: the engine is reached
    through the current docker context, DOCKER_HOST is unset, and neither the probe nor the
    build may send the docker CLI to the default socket instead."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    for argv in (
        ["context", "create", "other", "--docker", f"host={second_engine.docker_host}"],
        ["context", "use", "other"],
    ):
        subprocess.run([docker_cli(), *argv], check=True, capture_output=True)
    info = probe_engine(create_builder=False)
    assert info.docker_host == second_engine.docker_host  # for reports: the context's endpoint
    assert info.docker_context == "other" and info.env() == {}
    assert info.buildx_args() == ["--builder", "other"]
    code, gate, out = _build(tmp_path, "", busybox_base, capsys=capsys, check="never")
    assert code == 0, out
    facts = gate["facts"]
    assert isinstance(facts, dict)
    assert facts["builder.name"] == "other" and facts["builder.driver"] == "docker"
    # The second engine's BuildKit holds the build's records: it did build.
    du = subprocess.run(
        [docker_cli(), "buildx", "du", "--verbose"], check=True, capture_output=True, text=True
    ).stdout
    assert "touch /m/ready" in du, du


@pytest.mark.engine
def test_a_container_builder_on_the_first_engine_is_not_independent(
    engine: PrivateEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A docker-container builder whose container runs on the first build's engine shares
    that engine (and whatever compromised it): not an independent rebuild."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    docker = docker_cli()
    # Created, not started (nothing is pulled): its endpoint is what counts.
    subprocess.run(
        [docker, "buildx", "create", "--name", "on-first", "--driver", "docker-container",
         "--driver-opt", f"image={BUILDKIT_IMAGE}"],
        check=True, capture_output=True,
    )  # fmt: skip
    inspect = subprocess.run(
        [docker, "buildx", "inspect", "on-first"], check=True, capture_output=True, text=True
    ).stdout
    env = {"DOCKER_HOST": engine.docker_host}
    endpoint = _builder_endpoint(docker, inspect, engine.docker_host, 30.0, env)
    assert endpoint == engine.docker_host, inspect
    first = EngineInfo(
        docker_host=engine.docker_host, server_version="26", containerd_store=True,
        buildx_version="v0", buildkit_version="v0", builder=None,
        host_env=engine.docker_host, endpoint=engine.docker_host,
    )  # fmt: skip
    container = replace(
        first, builder="on-first", builder_driver="docker-container", endpoint=endpoint
    )
    assert same_engine(first, container) == engine.docker_host
    assert same_engine(first, replace(container, endpoint="unix:///elsewhere.sock")) is None
    # a remote BuildKit runs on no engine modelseal can name: not compared
    assert same_engine(first, replace(container, builder_driver="remote", endpoint=None)) is None


@pytest.mark.engine
def test_rebuild_on_fresh_starts_and_removes_its_own_engine(
    engine: PrivateEngine,
    busybox_base: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    require(os.geteuid() == 0, "root (to start dockerd)")
    require(shutil.which("dockerd") is not None, "dockerd")
    code, gate, out = _build(tmp_path, "  rebuild_on: fresh\n", busybox_base, capsys=capsys)
    assert code == 0, out
    facts = gate["facts"]
    assert isinstance(facts, dict)
    assert facts["rebuild.on"] == "fresh"
    assert facts["rebuild.reproducible"] == "yes"
    assert facts["rebuild.digest"] == facts["image.digest"]
    assert facts["rebuild.builder.driver"] == "docker"
    assert facts["rebuild.engine.version"] == facts["engine.version"]
    root = Path(facts["rebuild.engine.root"])
    assert root != engine.root and root.name.startswith("ms-rb-")
    assert not root.exists(), "the fresh engine's root is removed"
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f" {root}/" not in mounts


@pytest.mark.engine
def test_the_fresh_engine_is_removed_when_the_build_fails(
    engine: PrivateEngine,
    busybox_base: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    require(os.geteuid() == 0, "root (to start dockerd)")
    require(shutil.which("dockerd") is not None, "dockerd")
    code, gate, out = _build(
        tmp_path, "  rebuild_on: fresh\n", busybox_base, capsys=capsys,
        dockerfile="FROM base\nRUN false\n",
    )  # fmt: skip
    assert code == 3, out
    assert gate["status"] == "ERRORED" and "docker buildx build failed" in str(gate["error"])
    facts = gate["facts"]
    assert isinstance(facts, dict)
    root = Path(facts["rebuild.engine.root"])
    assert not root.exists(), "the fresh engine started for the rebuild is removed"
    assert f" {root}/" not in Path("/proc/self/mountinfo").read_text()


@pytest.mark.engine
def test_an_unknown_rebuild_builder_errors_the_gate_naming_it(
    engine: PrivateEngine,
    busybox_base: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    # The flag overrides the policy's same.
    code, gate, out = _build(
        tmp_path, "  rebuild_on: same\n", busybox_base, "--rebuild-on", "no-such-builder",
        capsys=capsys,
    )  # fmt: skip
    assert code == 3, out
    assert gate["status"] == "ERRORED"
    error = str(gate["error"])
    assert "build.rebuild_on" in error and "'no-such-builder'" in error
    assert "Traceback" not in out
    facts = gate["facts"]
    assert isinstance(facts, dict)
    assert facts["rebuild.on"] == "builder no-such-builder"
    assert "rebuild.digest" not in facts and "rebuild.reproducible" not in facts


@pytest.mark.engine
def test_rebuild_on_the_first_builds_own_builder_is_refused(
    engine: PrivateEngine,
    busybox_base: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # DOCKER_HOST names the session's engine: its own BuildKit is the "default" context's.
    code, gate, out = _build(tmp_path, "  rebuild_on: default\n", busybox_base, capsys=capsys)
    assert code == 3, out
    assert gate["status"] == "ERRORED"
    assert "would not be independent" in str(gate["error"])
    assert "rebuild_on: fresh" in str(gate["error"])


@pytest.mark.engine
def test_a_builder_that_is_the_first_engines_own_under_another_name_is_refused(
    engine: PrivateEngine,
    busybox_base: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A docker context of another name for the very engine the first build runs on.
    _docker_context(tmp_path, monkeypatch, "alias", engine.docker_host)
    code, gate, out = _build(tmp_path, "  rebuild_on: alias\n", busybox_base, capsys=capsys)
    assert code == 3, out
    error = str(gate["error"])
    assert "'alias' is the own BuildKit of the engine at " + engine.docker_host in error
    assert "would not be independent" in error


@pytest.mark.engine
def test_fresh_without_dockerd_errors_the_gate_with_the_hint(
    engine: PrivateEngine,
    busybox_base: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    docker = shutil.which("docker")
    require(docker is not None, "docker CLI")
    assert docker is not None
    # A PATH with git, the docker CLI and zstd (the default compression) but no dockerd: no
    # second engine can start.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "git", "zstd"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("MODELSEAL_DOCKER", docker)
    code, gate, out = _build(tmp_path, "  rebuild_on: fresh\n", busybox_base, capsys=capsys)
    assert code == 3, out
    assert gate["status"] == "ERRORED"
    error = str(gate["error"])
    assert "fresh could not start a second private engine" in error
    assert "dockerd" in error and "root" in error
    assert "build.rebuild_on: NAME" in error, "names the alternative: a builder elsewhere"
    assert "Traceback" not in out


@pytest.mark.engine
def test_rebuild_on_without_a_rebuild_does_nothing_and_says_so(
    engine: PrivateEngine,
    busybox_base: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, gate, out = _build(
        tmp_path, "  rebuild_on: no-such-builder\n", busybox_base, capsys=capsys, check="never"
    )
    assert code == 0, out
    facts = gate["facts"]
    assert isinstance(facts, dict)
    assert facts["rebuild.check"] == "never (skipped)"
    assert facts["rebuild.on"] == "builder no-such-builder (skipped: no rebuild)"
    assert not any(k.startswith("rebuild.builder") for k in facts)


def test_a_not_reproducible_finding_names_where_the_rebuild_ran() -> None:
    diffs = [ImageDifference("config", "sha256:a", "sha256:b")]
    fresh = _not_reproducible("linux/amd64", "sha256:1", "sha256:2", diffs, "fresh")
    assert "on a fresh private engine" in fresh.title
    assert fresh.evidence["rebuilt_on"] == "fresh"
    other = _not_reproducible("linux/amd64", "sha256:1", "sha256:2", diffs, "builder ci-remote")
    assert "on the builder ci-remote" in other.title
    assert other.evidence["rebuilt_on"] == "builder ci-remote"


@pytest.mark.parametrize("value", ["same", "fresh", "ci-remote.1"])
def test_rebuild_on_accepts_same_fresh_or_a_builder_name(value: str) -> None:
    policy = load_policy_text(f"version: 1\nbuild:\n  rebuild_on: {value}\n", "t.yml")
    assert policy.policy.build.rebuild_on == value
    assert load_policy_text("version: 1\n", "t.yml").policy.build.rebuild_on == "same"


def test_a_bad_rebuild_on_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yml").write_text("version: 1\nbuild:\n  rebuild_on: -x\n")
    assert main(["build", str(tmp_path), "--policy", str(tmp_path / "p.yml")]) == 2
    assert "expected same, fresh or a buildx builder name" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["build", str(tmp_path), "--rebuild-on", "bad name"])
    assert exc.value.code == 2
    assert "--rebuild-on" in capsys.readouterr().err


def test_the_readme_documents_rebuild_on() -> None:
    readme = (REPO / "README.md").read_text()
    assert "rebuild_on" in readme and "--rebuild-on" in readme
