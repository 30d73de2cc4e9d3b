"""zizmor and actionlint pass on action.yml and every example workflow, with no findings and
nothing suppressed; shellcheck passes on action.yml's scripts.

zizmor runs with ``--offline`` (no GitHub API: the online audits need a token and the network)
and ``--no-config`` (no ignore file can hide a finding). It collects workflows only from
``.github/workflows`` when given a directory, so every file is named. actionlint lints workflows,
not action metadata: action.yml is checked through a workflow that uses it as ``./`` (actionlint
then reads its inputs and outputs), and its ``run:`` scripts by shellcheck directly.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from tests.support import REPO
from tests.support.tools import require

ACTION = REPO / "action.yml"
WORKFLOWS = sorted(
    p for p in (REPO / "workflows-examples").glob("*.yml") if p.name != "gitlab-ci.yml"
)
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The linter next to this Python (the dev extra installs it), else on PATH."""
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    require(path is not None, name)
    return str(path)


def run(argv: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(cwd), "NO_COLOR": "1"},
    )  # fmt: skip


def test_zizmor() -> None:
    files = [str(p.relative_to(REPO)) for p in (ACTION, *WORKFLOWS)]
    proc = run(
        [tool("zizmor"), "--offline", "--no-config", "--no-progress", "--format=plain", *files]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout, proc.stdout
    assert "suppressed" not in proc.stdout, proc.stdout
    for f in files:
        assert f"completed {f}" in proc.stderr, f"zizmor did not audit {f}"


def test_zizmor_pedantic() -> None:
    """The pedantic persona too (code smells): nothing to report either."""
    files = [str(p.relative_to(REPO)) for p in (ACTION, *WORKFLOWS)]
    proc = run([tool("zizmor"), "--offline", "--no-config", "--no-progress", "--pedantic", *files])
    assert proc.returncode == 0 and "No findings to report" in proc.stdout, proc.stdout


def test_actionlint_on_the_examples() -> None:
    shellcheck = shutil.which("shellcheck")
    require(shellcheck is not None, "shellcheck (actionlint checks run: scripts with it)")
    files = [str(p.relative_to(REPO)) for p in WORKFLOWS]
    proc = run([tool("actionlint"), "-no-color", f"-shellcheck={shellcheck}", "-pyflakes=", *files])
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


SELF_TEST = """\
on: push
permissions: {}
jobs:
  seal:
    runs-on: ubuntu-24.04
    permissions:
      contents: read
    steps:
      - id: seal
        uses: ./
        with:
%s
      - env:
%s
        run: echo "$VERDICT"
"""


def test_actionlint_reads_the_action_metadata(tmp_path: Path) -> None:
    """A workflow using the action as ./ with every input and every output: actionlint checks
    both against action.yml (an unknown input or output would be an error)."""
    spec = YAML(typ="safe").load(ACTION.read_text())
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    # actionlint resolves "./" from the project root, which it finds by a .git directory.
    (repo / ".git").mkdir()
    shutil.copy(ACTION, repo / "action.yml")
    with_ = "\n".join(f"          {name}: x" for name in spec["inputs"])
    env = "\n".join(
        f"          OUT_{i}: ${{{{ steps.seal.outputs.{name} }}}}"
        for i, name in enumerate(spec["outputs"])
    )
    (repo / ".github" / "workflows" / "self-test.yml").write_text(SELF_TEST % (with_, env))
    # A negative control: the same workflow with an input action.yml does not declare.
    (repo / "bad.yml").write_text(SELF_TEST % (with_ + "\n          no-such-input: x", env))
    lint = tool("actionlint")
    good = run(
        [lint, "-no-color", "-shellcheck=", "-pyflakes=", ".github/workflows/self-test.yml"], repo
    )
    assert good.returncode == 0 and good.stdout == "", good.stdout + good.stderr
    bad = run([lint, "-no-color", "-shellcheck=", "-pyflakes=", "bad.yml"], repo)
    assert bad.returncode == 1 and 'input "no-such-input" is not defined' in bad.stdout


@pytest.mark.parametrize(
    "step_id",
    [s["id"] for s in YAML(typ="safe").load(ACTION.read_text())["runs"]["steps"] if "run" in s],
)
def test_shellcheck_on_the_action_scripts(step_id: str, tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    require(shellcheck is not None, "shellcheck")
    step = next(
        s
        for s in YAML(typ="safe").load(ACTION.read_text())["runs"]["steps"]
        if s.get("id") == step_id
    )
    script = tmp_path / f"{step_id}.sh"
    # What the runner runs: bash --noprofile --norc -eo pipefail FILE.
    script.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + step["run"])
    proc = run([str(shellcheck), "--shell=bash", "--severity=style", str(script)], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
