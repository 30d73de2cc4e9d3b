"""Judging: the policy turns collected evidence into a verdict. Kept apart from collecting, so
the same findings can be re-judged under another policy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from modelseal.errors import ExitCode
from modelseal.findings import Finding, GateResult, Status
from modelseal.policy import Policy


class Outcome(Enum):
    """What the policy makes of one finding."""

    FAIL = "fail"  # breaches the policy
    WARN = "warn"  # reported, allowed by the policy
    IGNORED = "ignored"  # explicitly accepted (e.g. an ignore entry)


@dataclass(frozen=True)
class Decision:
    """The policy's word on one finding, and why."""

    finding: Finding
    outcome: Outcome
    reason: str


@dataclass(frozen=True)
class GateVerdict:
    """A gate's collected result and its judged status."""

    result: GateResult
    status: Status
    decisions: tuple[Decision, ...]

    @property
    def failing(self) -> tuple[Decision, ...]:
        """The decisions that breach the policy."""
        return tuple(d for d in self.decisions if d.outcome is Outcome.FAIL)


@dataclass(frozen=True)
class Verdict:
    """The run's verdict: PASSED only when every gate passed or was skipped by policy."""

    gates: tuple[GateVerdict, ...]
    status: Status
    exit_code: ExitCode


Rule = Callable[[Policy, Finding], Decision]


def _build_rule(policy: Policy, f: Finding) -> Decision:
    if f.id == "build.unpinned-base" and not policy.build.require_pinned_base:
        return Decision(f, Outcome.WARN, "build.require_pinned_base is false")
    if f.id == "build.unpinned-base":
        return Decision(f, Outcome.FAIL, "build.require_pinned_base is true")
    if f.id == "build.not-reproducible":
        return Decision(f, Outcome.FAIL, "build.rebuild_check: the rebuild differs")
    return Decision(f, Outcome.FAIL, "every build finding fails unless the policy allows it")


#: Scanner findings about what a pickle would do when loaded.
_PICKLE_KINDS = frozenset(
    {
        "models.unsafe-global",
        "models.dynamic-global",
        "models.pickle-extension",
        "models.indirect-call",
        "models.global-mutation",
    }
)


def _global_allowed(policy: Policy, name: str) -> bool:
    module, _, _attr = name.rpartition(".")
    for allowed in policy.models.allowed_globals:
        if allowed == name or (allowed.endswith(".*") and allowed[:-2] == module):
            return True
    return False


def _models_rule(policy: Policy, f: Finding) -> Decision:
    pol = policy.models
    if f.id == "models.format":
        fmt = f.evidence.get("format", "unknown")
        if fmt not in pol.formats:
            allowed = ", ".join(pol.formats) or "none"
            return Decision(f, Outcome.FAIL, f"format {fmt} is not in models.formats ({allowed})")
        if f.evidence.get("pickle") == "yes" and pol.pickle == "deny":
            return Decision(f, Outcome.FAIL, "it carries pickle data and models.pickle is deny")
        return Decision(f, Outcome.IGNORED, f"format {fmt} is allowed by models.formats")
    if f.id == "models.no-lock":
        if pol.require_lock:
            return Decision(f, Outcome.FAIL, "models.require_lock is true")
        return Decision(f, Outcome.WARN, "models.require_lock is false")
    if f.id in _PICKLE_KINDS:
        name = f.evidence.get("global", "")
        if f.id == "models.unsafe-global" and name and _global_allowed(policy, name):
            return Decision(f, Outcome.IGNORED, f"{name} is in models.allowed_globals")
        if pol.pickle == "allow":
            return Decision(f, Outcome.WARN, "models.pickle is allow")
        return Decision(f, Outcome.FAIL, "loading this pickle could run code")
    if f.id in ("models.unparsable", "models.trailing-data") and pol.pickle == "allow":
        return Decision(f, Outcome.WARN, "models.pickle is allow")
    return Decision(f, Outcome.FAIL, "model files must match the lock and be well-formed")


def _default_rule(policy: Policy, f: Finding) -> Decision:
    return Decision(f, Outcome.FAIL, "no policy rule allows this finding")


#: One judging rule per gate; gates without one fail on any finding (fail closed).
RULES: dict[str, Rule] = {
    "build": _build_rule,
    "models": _models_rule,
    "models-image": _models_rule,
}


def judge_gate(result: GateResult, policy: Policy) -> GateVerdict:
    """Judge one gate's evidence."""
    rule = RULES.get(result.gate, _default_rule)
    decisions = tuple(rule(policy, f) for f in result.findings)
    if result.status in (Status.ERRORED, Status.SKIPPED):
        return GateVerdict(result, result.status, decisions)
    failed = any(d.outcome is Outcome.FAIL for d in decisions)
    return GateVerdict(result, Status.FAILED if failed else Status.PASSED, decisions)


def judge(
    results: Sequence[GateResult], policy: Policy, *, internal_error: bool = False
) -> Verdict:
    """Judge every gate and derive the run's status and exit code.

    A breach (FAILED) outranks an errored gate in the exit code: the policy was certainly
    breached. Both fail the run.
    """
    gates = tuple(judge_gate(r, policy) for r in results)
    statuses = {g.status for g in gates}
    if internal_error:
        return Verdict(gates, Status.ERRORED, ExitCode.BUG)
    if Status.FAILED in statuses:
        return Verdict(gates, Status.FAILED, ExitCode.BREACHED)
    if Status.ERRORED in statuses:
        return Verdict(gates, Status.ERRORED, ExitCode.ERRORED)
    if not gates:
        return Verdict(gates, Status.ERRORED, ExitCode.ERRORED)
    return Verdict(gates, Status.PASSED, ExitCode.PASSED)
