"""Run action.yml's composite steps on this machine the way a GitHub runner would (the subset
action.yml uses), so the action is tested as a whole without GitHub.

What it does, per step, in order:

* ``uses:`` steps (actions/setup-python) are not run; their outputs come from the caller
  (``uses_outputs``, by step id);
* a step whose id is in ``replace`` is not run either: the callable returns its outputs. The
  tests replace the ``install`` step (a real ``pip install --require-hashes`` from the package
  index takes a minute) with the repository's own ``.venv``;
* ``run:`` steps run as ``bash --noprofile --norc -eo pipefail FILE`` (GitHub's ``shell: bash``)
  in the workspace, with the step's ``env:`` evaluated, a GitHub-like environment
  (``GITHUB_ACTIONS=true``, ``GITHUB_OUTPUT``/``GITHUB_STEP_SUMMARY``/``GITHUB_ENV``/``GITHUB_PATH``
  files fresh for each step, ``GITHUB_ACTION_PATH``, ``RUNNER_TEMP``, ``RUNNER_OS`` …) and the
  OIDC token request variables when a :class:`~tests.support.sigstore_local.LocalSigstore` is
  given (its GitHub-style token endpoint: the one OIDC stub of the test suite).

Expressions: ``${{ inputs.NAME }}``, ``${{ runner.temp }}``, ``${{ runner.os }}``,
``${{ github.action_path }}``, ``${{ github.workspace }}``, ``${{ github.token }}`` (in input
defaults; the ``github_token`` argument) and ``${{ steps.ID.outputs.NAME }}`` — anything else is an error, so action.yml cannot start using
an expression this harness would silently get wrong. A ``run:`` script containing ``${{`` is
refused: inputs reach scripts through ``env:`` only.

Workflow commands in the log are parsed the way the runner does, ``::stop-commands::`` included
(:func:`parse_commands`).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML

if TYPE_CHECKING:
    from tests.support.sigstore_local import LocalSigstore

_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
#: Variables a step inherits from the test process (nothing else leaks in).
PASS_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "DOCKER_HOST", "DOCKER_CONFIG")
STEP_TIMEOUT = 900


class HarnessError(Exception):
    """action.yml uses something this harness does not emulate."""


@dataclass(frozen=True)
class StepResult:
    """One step as it ran (or was skipped/replaced)."""

    id: str
    name: str
    returncode: int
    log: str
    outputs: Mapping[str, str]
    summary: str
    env_file: str = ""
    path_file: str = ""


@dataclass(frozen=True)
class Command:
    """A workflow command from the log, unescaped."""

    name: str
    props: Mapping[str, str]
    message: str


@dataclass
class ActionRun:
    """The composite action's run: steps, outputs, job summary, log."""

    steps: list[StepResult]
    outputs: dict[str, str]
    summary: str
    returncode: int

    @property
    def log(self) -> str:
        """Every step's log, in order."""
        return "".join(s.log for s in self.steps)

    @property
    def commands(self) -> list[Command]:
        """The workflow commands the runner would act on."""
        return parse_commands(self.log)

    def annotations(self, level: str = "error") -> list[Command]:
        """The ``::error`` (or other level) annotations."""
        return [c for c in self.commands if c.name == level]


@dataclass(frozen=True)
class StepContext:
    """What a replacement for a step gets."""

    env: Mapping[str, str]
    workspace: Path
    runner_temp: Path
    action_path: Path


def _unescape_data(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def _unescape_property(text: str) -> str:
    return (
        text.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
    )


_COMMAND = re.compile(r"^::(?P<name>[A-Za-z-]+)(?: (?P<props>[^:]*))?::(?P<message>.*)$")


def parse_commands(log: str) -> list[Command]:
    """Workflow commands in ``log`` as the runner reads them: one per line starting with
    ``::``; between ``::stop-commands::TOKEN`` and ``::TOKEN::`` nothing is a command."""
    out: list[Command] = []
    stopped: str | None = None
    for line in log.splitlines():
        line = line.rstrip("\r")
        if stopped is not None:
            if line == f"::{stopped}::":
                stopped = None
            continue
        m = _COMMAND.match(line)
        if not m:
            continue
        name = m.group("name")
        if name == "stop-commands":
            stopped = m.group("message")
            continue
        props: dict[str, str] = {}
        for part in (m.group("props") or "").split(","):
            if "=" in part:
                k, _, v = part.partition("=")
                props[k.strip()] = _unescape_property(v)
        out.append(Command(name, props, _unescape_data(m.group("message"))))
    return out


def parse_file_command(text: str) -> dict[str, str]:
    """A ``$GITHUB_OUTPUT``-style file: ``name=value`` lines and ``name<<DELIM`` blocks."""
    out: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, _, delimiter = line.partition("<<")
            value: list[str] = []
            while i < len(lines) and lines[i] != delimiter:
                value.append(lines[i])
                i += 1
            if i >= len(lines):
                raise HarnessError(f"unterminated value for {name!r} (delimiter {delimiter!r})")
            i += 1
            out[name] = "\n".join(value)
        else:
            name, eq, v = line.partition("=")
            if not eq:
                raise HarnessError(f"bad file command line {line!r}")
            out[name] = v
    return out


class Composite:
    """A composite action read from ``action_dir/action.yml``."""

    def __init__(self, action_dir: Path) -> None:
        self.action_dir = action_dir
        self.spec: dict[str, Any] = YAML(typ="safe").load((action_dir / "action.yml").read_text())
        if self.spec.get("runs", {}).get("using") != "composite":
            raise HarnessError("not a composite action")

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The composite's steps."""
        return list(self.spec["runs"]["steps"])

    def input_defaults(self) -> dict[str, str]:
        """Each input's default as the runner passes it (a string)."""
        return {
            name: _as_string(spec.get("default", ""))
            for name, spec in (self.spec.get("inputs") or {}).items()
        }

    def run(
        self,
        inputs: Mapping[str, str],
        *,
        workspace: Path,
        runner_temp: Path,
        env: Mapping[str, str] | None = None,
        replace: Mapping[str, Callable[[StepContext], Mapping[str, str]]] | None = None,
        uses_outputs: Mapping[str, Mapping[str, str]] | None = None,
        oidc: LocalSigstore | None = None,
        github_token: str = "",
    ) -> ActionRun:
        """Run the steps in order, stopping at the first that fails."""
        unknown = set(inputs) - set(self.input_defaults())
        if unknown:
            raise HarnessError(f"inputs not declared in action.yml: {sorted(unknown)}")
        # The runner evaluates expressions in input defaults (`${{ github.token }}`).
        at_start = _Context({}, runner_temp, workspace, self.action_dir, github_token=github_token)
        defaults = {k: at_start.evaluate(v) for k, v in self.input_defaults().items()}
        values = {**defaults, **{k: _as_string(v) for k, v in inputs.items()}}
        runner_temp.mkdir(parents=True, exist_ok=True)
        base = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
        base.update(_github_env(workspace, runner_temp, self.action_dir))
        if oidc is not None:
            base.update(oidc.github_env())
        base.update(env or {})
        step_outputs: dict[str, Mapping[str, str]] = {}
        results: list[StepResult] = []
        code = 0
        for index, step in enumerate(self.steps):
            sid = str(step.get("id") or f"__step{index}")
            if "if" in step and "uses" not in step:
                # `uses:` steps are not run here, so their condition does not matter.
                raise HarnessError(f"step {sid}: `if:` is not emulated")
            ctx = _Context(values, runner_temp, workspace, self.action_dir, step_outputs)
            if "uses" in step:
                outs = dict((uses_outputs or {}).get(sid, {}))
                results.append(StepResult(sid, step.get("name", sid), 0, "", outs, ""))
            elif replace and sid in replace:
                step_env = {**base, **ctx.env(step.get("env") or {})}
                sc = StepContext(step_env, workspace, runner_temp, self.action_dir)
                outs = dict(replace[sid](sc))
                results.append(StepResult(sid, step.get("name", sid), 0, "", outs, ""))
            else:
                result = self._run_step(sid, step, ctx, base, workspace, runner_temp)
                results.append(result)
                outs = dict(result.outputs)
                if result.returncode != 0:
                    code = result.returncode
                    step_outputs[sid] = outs
                    break
            step_outputs[sid] = outs
        final = _Context(values, runner_temp, workspace, self.action_dir, step_outputs)
        outputs = {
            name: final.evaluate(_as_string(spec.get("value", "")), strict_steps=False)
            for name, spec in (self.spec.get("outputs") or {}).items()
        }
        summary = "".join(r.summary for r in results)
        return ActionRun(results, outputs, summary, code)

    def _run_step(
        self,
        sid: str,
        step: Mapping[str, Any],
        ctx: _Context,
        base: Mapping[str, str],
        workspace: Path,
        runner_temp: Path,
    ) -> StepResult:
        if step.get("shell") != "bash":
            raise HarnessError(f"step {sid}: only `shell: bash` is emulated")
        script = str(step["run"])
        if "${{" in script:
            raise HarnessError(f"step {sid}: an expression in `run:` (use env: instead)")
        files = runner_temp / "_runner_file_commands" / f"{sid}-{secrets.token_hex(4)}"
        files.mkdir(parents=True)
        names = {
            "GITHUB_OUTPUT": "output",
            "GITHUB_STEP_SUMMARY": "summary",
            "GITHUB_ENV": "env",
            "GITHUB_PATH": "path",
            "GITHUB_STATE": "state",
        }
        paths = {var: files / name for var, name in names.items()}
        for p in paths.values():
            p.write_text("")
        script_file = files / "script.sh"
        script_file.write_text(script)
        env = {**base, **ctx.env(step.get("env") or {}), **{k: str(p) for k, p in paths.items()}}
        cwd = workspace / str(step.get("working-directory", "."))
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
        )
        return StepResult(
            id=sid,
            name=str(step.get("name", sid)),
            returncode=proc.returncode,
            log=proc.stdout,
            outputs=parse_file_command(paths["GITHUB_OUTPUT"].read_text()),
            summary=paths["GITHUB_STEP_SUMMARY"].read_text(),
            env_file=paths["GITHUB_ENV"].read_text(),
            path_file=paths["GITHUB_PATH"].read_text(),
        )


def _as_string(value: object) -> str:
    """How the runner turns a YAML scalar into an input string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _github_env(workspace: Path, runner_temp: Path, action_path: Path) -> dict[str, str]:
    return {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_ACTION_PATH": str(action_path),
        "GITHUB_ACTION_REPOSITORY": "OWNER/modelseal",
        "GITHUB_REPOSITORY": "example-org/iris-server",
        "GITHUB_REPOSITORY_OWNER": "example-org",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_API_URL": "https://api.github.com",
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_REF_NAME": "main",
        "GITHUB_SHA": "0" * 40,
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_WORKFLOW": "release",
        "GITHUB_WORKFLOW_REF": "example-org/iris-server/.github/workflows/release.yml@refs/heads/main",
        "GITHUB_RUN_ID": "1",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_ACTOR": "octocat",
        "RUNNER_OS": "Linux",
        "RUNNER_ARCH": "X64",
        "RUNNER_TEMP": str(runner_temp),
    }


@dataclass
class _Context:
    """The expression contexts action.yml may use."""

    inputs: Mapping[str, str]
    runner_temp: Path
    workspace: Path
    action_path: Path
    steps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    github_token: str = ""

    def lookup(self, expr: str, *, strict_steps: bool = True) -> str:
        parts = expr.split(".")
        if parts[0] == "inputs" and len(parts) == 2:
            if parts[1] not in self.inputs:
                raise HarnessError(f"${{{{ {expr} }}}}: no such input")
            return self.inputs[parts[1]]
        if expr == "runner.temp":
            return str(self.runner_temp)
        if expr == "runner.os":
            return "Linux"
        if expr == "github.action_path":
            return str(self.action_path)
        if expr == "github.workspace":
            return str(self.workspace)
        if expr == "github.token":
            return self.github_token
        if parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs":
            if parts[1] not in self.steps:
                if strict_steps:
                    raise HarnessError(f"${{{{ {expr} }}}}: step {parts[1]} has not run")
                return ""
            return self.steps[parts[1]].get(parts[3], "")
        raise HarnessError(f"expression not emulated: ${{{{ {expr} }}}}")

    def evaluate(self, text: str, *, strict_steps: bool = True) -> str:
        return _EXPR.sub(lambda m: self.lookup(m.group(1), strict_steps=strict_steps), text)

    def env(self, spec: Mapping[str, Any]) -> dict[str, str]:
        return {str(k): self.evaluate(_as_string(v)) for k, v in spec.items()}
