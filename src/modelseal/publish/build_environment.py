"""Where the build ran, for its provenance: the builder id, the invocation and the source.

Detected from GitHub Actions' environment, or else from the local git checkout
(:func:`detect_build_environment`); :mod:`~modelseal.publish.provenance` states it.

Builder ids
-----------
* GitHub Actions: ``https://github.com/actions/runner/<RUNNER_ENVIRONMENT>``
  (``github-hosted`` or ``self-hosted``, the latter when unknown) — the convention of
  GitHub's own build-provenance attestations; the invocation id is
  ``<server>/<owner>/<repo>/actions/runs/<run id>/attempts/<attempt>``.
* Anywhere else: :data:`LOCAL_BUILDER_ID`, ``https://modelseal.dev/builders/local/v1`` — a
  developer machine or an unrecognized CI, trusted no further than whoever ran it; the
  invocation id is a random ``urn:uuid:``.
"""

from __future__ import annotations

import os
import posixpath
import re
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelseal._tools import run_tool
from modelseal.errors import ToolError
from modelseal.policy.gitref import COMMIT_RE

LOCAL_BUILDER_ID = "https://modelseal.dev/builders/local/v1"
"""Builder id outside GitHub Actions: whoever ran modelseal, trusted as such."""
GITHUB_BUILDER_ID_PREFIX = "https://github.com/actions/runner/"

_GIT_TIMEOUT = 30.0


@dataclass(frozen=True)
class BuildEnvironment:
    """Who built, from what source: detected from GitHub Actions or a local git checkout."""

    builder_id: str
    invocation_id: str
    repository: str | None = None
    ref: str | None = None
    commit: str | None = None
    workflow_ref: str | None = None
    workflow_path: str | None = None
    internal_parameters: Mapping[str, Any] = field(default_factory=dict)


def detect_build_environment(
    env: Mapping[str, str] | None = None, repo_dir: Path | None = None
) -> BuildEnvironment:
    """GitHub Actions (``GITHUB_ACTIONS=true`` with ``GITHUB_REPOSITORY``) from its
    environment; otherwise the local builder with the git checkout at ``repo_dir`` (the
    current directory by default), as far as git can tell."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") == "true" and env.get("GITHUB_REPOSITORY"):
        return _github(env)
    return _local(repo_dir or Path.cwd())


def _github(env: Mapping[str, str]) -> BuildEnvironment:
    server = (env.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    repo = env["GITHUB_REPOSITORY"]
    runner = env.get("RUNNER_ENVIRONMENT") or "self-hosted"
    run_id = env.get("GITHUB_RUN_ID") or "unknown"
    attempt = env.get("GITHUB_RUN_ATTEMPT") or "1"
    workflow_ref = env.get("GITHUB_WORKFLOW_REF") or None
    workflow_path = None
    if workflow_ref:
        # "OWNER/REPO/.github/workflows/seal.yml@refs/heads/main" → ".github/workflows/seal.yml"
        workflow_path = workflow_ref.split("@", 1)[0].removeprefix(f"{repo}/")
    github = {
        key.lower(): env[name]
        for key, name in (
            ("event_name", "GITHUB_EVENT_NAME"),
            ("repository_id", "GITHUB_REPOSITORY_ID"),
            ("repository_owner_id", "GITHUB_REPOSITORY_OWNER_ID"),
            ("runner_environment", "RUNNER_ENVIRONMENT"),
        )
        if env.get(name)
    }
    commit = env.get("GITHUB_SHA") or None
    return BuildEnvironment(
        builder_id=GITHUB_BUILDER_ID_PREFIX + runner,
        invocation_id=f"{server}/{repo}/actions/runs/{run_id}/attempts/{attempt}",
        repository=f"{server}/{repo}",
        ref=env.get("GITHUB_REF") or None,
        commit=commit if commit and COMMIT_RE.fullmatch(commit) else None,
        workflow_ref=workflow_ref,
        workflow_path=workflow_path,
        internal_parameters={"github": github} if github else {},
    )


def _git(repo_dir: Path, *args: str) -> str | None:
    try:
        result = run_tool(["git", "-C", str(repo_dir), *args], timeout=_GIT_TIMEOUT, check=False)
    except ToolError:
        return None  # no git: a local build without source identity
    out = result.stdout.strip()
    return out if result.returncode == 0 and out else None


def path_in_repository(path: Path) -> str | None:
    """``path``'s name inside the git work tree holding it, relative to the tree's top (POSIX,
    ``.`` for the top itself), or None when it is in no work tree (or git is missing).

    The path is resolved as the build resolves it (links followed, then ``..``): what is
    recorded is the directory that was built from, and a link leading out of the work tree
    records nothing rather than a path a rebuild would take from elsewhere."""
    real = Path(os.path.realpath(path))
    start = real if real.is_dir() else real.parent
    top = _git(start, "rev-parse", "--show-toplevel")
    if top is None:
        return None
    try:
        return posixpath.normpath(real.relative_to(Path(top).resolve()).as_posix())
    except ValueError:
        return None


def public_context_url(url: str) -> str:
    """A build-context URL fit for a report and a signed provenance: user name, password and
    query dropped (``https://x-access-token:TOKEN@host/…``, ``?token=…``); a ``docker-image://``
    reference or anything not an http(s)/git/ssh URL as given."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http", "git", "ssh") or not parts.hostname:
        return url
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", parts.fragment))


def public_repository_url(remote: str) -> str | None:
    """A remote URL fit for provenance: credentials and ``.git`` stripped; scp-style
    ``git@host:owner/repo`` becomes ``https://host/owner/repo``; local paths give None."""
    remote = remote.strip()
    scp = re.match(r"^[\w.-]+@([\w.-]+):(?!//)(.+)$", remote)
    if scp:
        host, path = scp.groups()
        return f"https://{host}/{path.removesuffix('.git').strip('/')}"
    parts = urllib.parse.urlsplit(remote)
    if parts.scheme not in ("https", "http", "ssh", "git") or not parts.hostname:
        return None
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    path = parts.path.removesuffix(".git").rstrip("/")
    scheme = "https" if parts.scheme in ("ssh", "git") else parts.scheme
    return f"{scheme}://{host}{path}"


def _local(repo_dir: Path) -> BuildEnvironment:
    commit = _git(repo_dir, "rev-parse", "HEAD")
    remote = _git(repo_dir, "config", "--get", "remote.origin.url")
    return BuildEnvironment(
        builder_id=LOCAL_BUILDER_ID,
        invocation_id=f"urn:uuid:{uuid.uuid4()}",
        repository=public_repository_url(remote) if remote else None,
        ref=_git(repo_dir, "symbolic-ref", "-q", "HEAD"),
        commit=commit if commit and COMMIT_RE.fullmatch(commit) else None,
    )
