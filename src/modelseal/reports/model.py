"""The report: a verdict plus the context needed to read it later (and to re-judge it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from modelseal.judge import Verdict


@dataclass(frozen=True)
class Report:
    """Everything the report writers need."""

    verdict: Verdict
    policy_source: str
    policy_sha256: str
    started_at: float
    finished_at: float
    tool_version: str
    command: str = "run"
    policy_ref: str | None = None
    """The git ref the policy was read from (``--policy-ref``), and its commit."""
    policy_commit: str | None = None
    policy_inputs: tuple[tuple[str, str], ...] = ()
    """Under a policy ref: (repository path, SHA-256) of each file the policy trusts, checked
    to be the one committed at the ref."""

    @staticmethod
    def iso(ts: float) -> str:
        """RFC 3339 UTC time."""
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
