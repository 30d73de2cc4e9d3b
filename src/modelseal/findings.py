"""Values that flow from gates to the judge and the reports: findings, gate results, statuses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum, IntEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any


class Severity(IntEnum):
    """Severity of a finding; ordered so thresholds compare with ``>=``."""

    UNKNOWN = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Severity:
        """Parse a severity name, case-insensitively (``"high"`` → ``HIGH``)."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of {names})") from None


class Status(Enum):
    """Outcome of one gate after judging."""

    PASSED = "PASSED"
    FAILED = "FAILED"
    ERRORED = "ERRORED"
    SKIPPED = "SKIPPED"


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


class PicklableFrozen:
    """Mixin for frozen dataclasses holding read-only mappings (``MappingProxyType``, which
    pickle refuses): pickles by calling the constructor again with plain dicts, so values cross
    process boundaries (the model scanner's process pool)."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        args = tuple(
            dict(v) if isinstance(v, MappingProxyType) else v
            for v in (getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]
        )
        return (type(self), args)


@dataclass(frozen=True)
class Finding(PicklableFrozen):
    """One thing the policy can judge: a vulnerability, an unsafe pickle global, a build issue."""

    gate: str
    id: str
    severity: Severity
    title: str
    subject: str
    fixed_in: str | None = None
    location: str | None = None
    evidence: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", _frozen(self.evidence))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the report's finding object)."""
        return {
            "gate": self.gate,
            "id": self.id,
            "severity": self.severity.name,
            "title": self.title,
            "subject": self.subject,
            "fixed_in": self.fixed_in,
            "location": self.location,
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        """Inverse of :meth:`to_json` (used to re-judge a stored report)."""
        return cls(
            gate=str(data["gate"]),
            id=str(data["id"]),
            severity=Severity.parse(str(data["severity"])),
            title=str(data["title"]),
            subject=str(data["subject"]),
            fixed_in=_str_or_none(data.get("fixed_in")),
            location=_str_or_none(data.get("location")),
            evidence={str(k): str(v) for k, v in (data.get("evidence") or {}).items()},
        )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class GateResult(PicklableFrozen):
    """The evidence one gate collected. Gates never judge: ``status`` is only set by the
    pipeline for gates that could not run (ERRORED) or were switched off (SKIPPED); a gate that
    collected its evidence reports PASSED here and the judge decides."""

    gate: str
    status: Status
    findings: tuple[Finding, ...] = ()
    artifacts: Mapping[str, Path] = field(default_factory=dict)
    facts: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    duration_s: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "artifacts", _frozen(self.artifacts))
        object.__setattr__(self, "facts", _frozen(self.facts))
