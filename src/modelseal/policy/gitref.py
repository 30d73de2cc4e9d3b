"""Reading the policy file from a git ref instead of the working tree (``--policy-ref``).

In a ``pull_request`` workflow the checked-out ``modelseal.yml`` is the pull request's own: a
PR that sets ``fail_on: none`` would pass under the policy it wrote. Judging it under the
policy of the base branch (``git show BASE:modelseal.yml``) means a PR cannot loosen the policy
that judges it; a change it makes to the policy takes effect once it is merged.

The ref is resolved locally first (as given, then as ``origin/REF``); when the checkout does
not have it (``actions/checkout`` fetches one commit), it is fetched with a bounded,
non-interactive ``git fetch --depth=1 origin REF``. A policy file missing at the ref means
the built-in defaults (every check on): a PR that introduces the policy file cannot choose
its own.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Final

from modelseal._tools import run_tool
from modelseal.errors import ConfigError, ToolError
from modelseal.policy.loader import LoadedPolicy, default_policy, load_policy_text

__all__ = ["MAX_POLICY_BYTES", "check_ref", "load_policy_at_ref", "repo_path"]

#: A policy file is a few kilobytes; anything this big is not one.
MAX_POLICY_BYTES: Final = 1024 * 1024
_GIT_TIMEOUT: Final = 30.0
_FETCH_TIMEOUT: Final = 120.0
# git's ref grammar (check-ref-format), narrowed: no option-like or relative forms, no
# reflog syntax, no revision operators.
_REF: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,254}")
_COMMIT: Final = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def _non_interactive() -> dict[str, str]:
    """git must never stop to ask for a password or a host key: a CI job would hang until
    killed. An ssh command the user configured is kept (it may carry a deploy key)."""
    env = {"GIT_TERMINAL_PROMPT": "0"}
    if not os.environ.get("GIT_SSH_COMMAND") and not os.environ.get("GIT_SSH"):
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    return env


def check_ref(ref: str, what: str = "--policy-ref") -> str:
    """``ref`` if it is a plain branch, tag, full ref or commit name; ConfigError otherwise."""
    if (
        not _REF.fullmatch(ref)
        or ".." in ref
        or "//" in ref
        or ref.endswith((".", "/", ".lock"))
        or "/." in ref
    ):
        raise ConfigError(
            f"{what} {ref!r} is not a git ref: expected a branch, tag or commit name such as "
            "main, refs/heads/main, v1.2 or a full commit SHA (letters, digits, _ . / -; not "
            "starting with - or containing ..)."
        )
    return ref


def repo_path(policy: Path, repo: Path) -> str:
    """The policy file's path inside the repository at ``repo`` (the form ``git show REF:PATH``
    takes); ConfigError for a path outside it."""
    found = _git(repo, "rev-parse", "--show-toplevel", check=False).strip()
    if not found:
        raise ConfigError(
            f"--policy-ref reads the policy from the git repository at {repo}, but that is not "
            "in a git repository (run modelseal in the checkout)."
        )
    top = Path(found).resolve()
    absolute = Path(os.path.normpath(policy if policy.is_absolute() else Path.cwd() / policy))
    # The directory is resolved (the checkout may sit under a symlink), the file name is not:
    # it names a file in the commit, not one on disk.
    try:
        rel = (absolute.parent.resolve() / absolute.name).relative_to(top)
    except ValueError:
        raise ConfigError(
            f"policy file {policy} is not inside the git repository at {top}: --policy-ref "
            "reads it from a commit of that repository."
        ) from None
    text = rel.as_posix()
    if text in ("", ".") or text.startswith("-") or any(c in text for c in "\n\r\t:"):
        raise ConfigError(f"policy file {policy}: {text!r} cannot be read from a git ref.")
    return text


def load_policy_at_ref(policy: Path, ref: str, repo: Path | None = None) -> LoadedPolicy:
    """The policy file ``policy`` as committed at ``ref`` of the repository at ``repo``
    (default: the one holding the working directory — the checkout).

    Its ``source`` is the repository path, ``ref`` and ``commit`` say where it came from, and
    ``sha256`` is the digest of the committed bytes. A file absent at ``ref`` gives the
    built-in defaults (recorded with the same ref and commit).
    """
    check_ref(ref)
    path = repo_path(policy, repo or Path.cwd())
    repo = repo or Path.cwd()
    commit = _resolve(repo, ref)
    spec = f"{commit}:{path}"
    kind = _git(repo, "cat-file", "-t", spec, check=False).strip()
    if kind == "":
        defaults = default_policy()
        return LoadedPolicy(defaults.policy, defaults.source, defaults.sha256, ref, commit)
    if kind != "blob":
        raise ConfigError(f"{path} at {ref} ({commit[:12]}) is a {kind}, not a policy file.")
    size = int(_git(repo, "cat-file", "-s", spec).strip() or "0")
    if size > MAX_POLICY_BYTES:
        raise ConfigError(
            f"{path} at {ref} is {size} bytes; a policy file may be at most {MAX_POLICY_BYTES}."
        )
    text = _git(repo, "cat-file", "blob", spec)
    if len(text.encode("utf-8", "surrogatepass")) != size or "\ufffd" in text:
        # Read as text, a CR or a byte that is not UTF-8 would change and the digest recorded
        # would not be the committed file's.
        raise ConfigError(
            f"{path} at {ref} ({commit[:12]}) is not plain UTF-8 text with LF line ends."
        )
    loaded = load_policy_text(text, f"{path}@{ref}")
    # The source stays the path as given (trust_config and the like are relative to it); the
    # ref is recorded beside it.
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return LoadedPolicy(loaded.policy, str(policy), digest, ref, commit)


def _resolve(repo: Path, ref: str) -> str:
    """The commit ``ref`` names: locally as given, then ``origin/REF``, else fetched."""
    candidates = [ref] if ref.startswith("refs/") or _COMMIT.fullmatch(ref) else [
        ref, f"refs/remotes/origin/{ref}"
    ]  # fmt: skip
    for name in candidates:
        out = _git(
            repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}",
            check=False,
        )  # fmt: skip
        if _COMMIT.fullmatch(out.strip()):
            return out.strip()
    try:
        run_tool(
            ["git", "-C", str(repo), "fetch", "--quiet", "--no-tags", "--no-recurse-submodules",
             "--depth=1", "origin", ref],
            timeout=_FETCH_TIMEOUT, env=_non_interactive(),
        )  # fmt: skip
    except ToolError as e:
        raise ConfigError(
            f"--policy-ref {ref}: not in this checkout, and fetching it from origin failed: "
            f"{e.diagnostics()}"
        ) from None
    out = _git(repo, "rev-parse", "--verify", "--quiet", "FETCH_HEAD^{commit}", check=False)
    if not _COMMIT.fullmatch(out.strip()):
        raise ConfigError(f"--policy-ref {ref}: fetched, but it names no commit.")
    return out.strip()


def _git(repo: Path, *args: str, check: bool = True) -> str:
    try:
        result = run_tool(
            ["git", "-C", str(repo), *args], timeout=_GIT_TIMEOUT, env=_non_interactive(),
            check=check,
        )  # fmt: skip
    except ToolError as e:
        raise ConfigError(f"--policy-ref needs git: {e.diagnostics()}") from None
    return result.stdout if result.returncode == 0 else ""
