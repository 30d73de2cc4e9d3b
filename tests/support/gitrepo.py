"""Git repositories in tests: a `git` that needs no user configuration, and the two policies
the policy-from-a-git-ref tests commit (a strict one and the same loosened)."""

from __future__ import annotations

import subprocess
from pathlib import Path

# Only the models gate (no engine needed): the pickle is refused unless the policy allows it.
STRICT = (
    "version: 1\nbuild: {enabled: false}\nsbom: {enabled: false}\ntrivy: {enabled: false}\n"
    "pip_audit: {enabled: false}\nmodels:\n  paths: [model.pkl]\n  require_lock: false\n"
)
LOOSE = STRICT + "  pickle: allow\n  formats: [pickle]\n"


def git(repo: Path, *args: str) -> str:
    """``git -C repo ARGS`` with a throwaway identity and no signing; returns stdout."""
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com",
         "-c", "commit.gpgsign=false", *args],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
