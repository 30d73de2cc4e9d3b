"""Which policy file a command reads, and reading it.

:mod:`modelseal.app` re-exports these; they live apart so that the read-only commands
(``models scan``, ``policy validate``) load the policy without importing the application (its
request types and file helpers are a few milliseconds of a start-up that is most of a small
scan's time).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelseal.policy import LoadedPolicy

__all__ = ["DEFAULT_POLICY", "load_policy", "policy_file"]

DEFAULT_POLICY = Path("modelseal.yml")


def policy_file(path: Path | None) -> Path | None:
    """The policy file a run reads: ``path``, else ``modelseal.yml`` when one is here (a
    FIFO, device or dangling link of that name too: refused when read, never quietly replaced
    by the defaults), else None (the built-in defaults)."""
    if path is not None:
        return path
    if DEFAULT_POLICY.exists() or DEFAULT_POLICY.is_symlink():
        return DEFAULT_POLICY
    return None


def load_policy(path: Path | None = None, ref: str | None = None) -> LoadedPolicy:
    """The policy: ``path`` (default ``modelseal.yml``) as of the git ``ref`` when given, else
    the file, else the built-in defaults when there is none."""
    from modelseal.policy import default_policy
    from modelseal.policy import load_policy as load_file

    if ref:
        from modelseal.policy.gitref import load_policy_at_ref

        return load_policy_at_ref(path or DEFAULT_POLICY, ref)
    found = policy_file(path)
    return load_file(found) if found is not None else default_policy()
