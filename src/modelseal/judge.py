"""Judging: the policy turns collected evidence into a verdict. Kept apart from collecting, so
the same findings can be re-judged under another policy."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import Enum
from pathlib import Path

from modelseal.errors import ExitCode
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.policy import Policy
from modelseal.policy.model import IgnoreEntry
from modelseal.vuln.policy import (
    VULN_GATES,
    VexStatement,
    decide,
    expired_entries,
    find_duplicates,
    ids_of,
    is_vuln,
    load_vex,
    sources_by_finding,
)


class Outcome(Enum):
    """What the policy makes of one finding."""

    FAIL = "fail"  # breaches the policy
    WARN = "warn"  # reported, allowed by the policy
    IGNORED = "ignored"  # explicitly accepted (e.g. an ignore entry)


#: Ids of the findings the judge makes itself (never a gate). They are part of a decision, not
#: evidence: re-judging recomputes them, so a reader of an old report drops them.
JUDGE_MADE_IDS = frozenset({"vulnerabilities.expired-ignore"})


@dataclass(frozen=True)
class Decision:
    """The policy's word on one finding, and why. ``ignore`` is the vulnerability ignore entry
    that decided it: the accepted risk when the outcome is IGNORED, an expired one when FAIL.

    ``finding`` is the collected finding itself, unchanged, unless ``made`` says the judge made
    it (an expired ignore entry that matched nothing). ``sources`` names every scanner that
    reported the advisory, when more than one did (the others' findings are ignored as
    duplicates of this one)."""

    finding: Finding
    outcome: Outcome
    reason: str
    ignore: IgnoreEntry | None = None
    made: bool = False
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class GateVerdict:
    """A gate's collected evidence (``result``, exactly as collected) and the judge's decision:
    the status, and one decision per finding — first the collected findings, in order, then the
    ones the judge made."""

    result: GateResult
    status: Status
    decisions: tuple[Decision, ...]

    @property
    def failing(self) -> tuple[Decision, ...]:
        """The decisions that breach the policy."""
        return tuple(d for d in self.decisions if d.outcome is Outcome.FAIL)

    @property
    def made(self) -> tuple[Finding, ...]:
        """The findings the judge made for this gate (not evidence)."""
        return tuple(d.finding for d in self.decisions if d.made)


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
    # The scanner's own allowlist rules (wildcards never admit dunders or never-allowed names);
    # the policy loader already refused entries that could run code.
    from modelseal.models.allowlist import Allowlist

    module, _, attr = name.rpartition(".")
    return Allowlist().extended(policy.models.allowed_globals).allows(module, attr)


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


@dataclass(frozen=True)
class _VulnContext:
    """What judging vulnerabilities needs beyond one finding: VEX statements, today's date,
    and which findings repeat one from another scanner."""

    vex: tuple[VexStatement, ...]
    today: date
    duplicates: Mapping[int, Finding]
    sources: Mapping[int, tuple[str, ...]]


def _vuln_context(
    results: Sequence[GateResult], policy: Policy, base_dir: Path | None, today: date | None
) -> _VulnContext:
    by_gate = {r.gate: r.findings for r in results}
    dups = find_duplicates(by_gate)
    sources = sources_by_finding((f for r in results for f in r.findings), dups)
    vex = tuple(load_vex(policy.vulnerabilities.vex, base_dir or Path.cwd()))
    return _VulnContext(vex, today or date.today(), dups, sources)


def _judge_vuln(f: Finding, policy: Policy, vc: _VulnContext) -> Decision:
    d = decide(
        f, policy.vulnerabilities, vex=vc.vex, today=vc.today, duplicate_of=vc.duplicates.get(id(f))
    )
    srcs = vc.sources.get(id(f), ())
    outcome = {"fail": Outcome.FAIL, "warn": Outcome.WARN, "ignored": Outcome.IGNORED}[d.outcome]
    return Decision(f, outcome, d.reason, d.ignore, sources=srcs if len(srcs) > 1 else ())


def _expired_decisions(
    results: Sequence[GateResult], policy: Policy, today: date
) -> dict[str, list[Decision]]:
    """Expired ignore entries that matched no finding still fail: the judge makes a finding for
    each, carried by the first vulnerability gate that collected evidence."""
    expired = expired_entries(policy.vulnerabilities, today)
    if not expired:
        return {}
    matched = {
        e.id.upper()
        for r in results
        for f in r.findings
        if is_vuln(f)
        for e in expired
        if e.id.upper() in ids_of(f)
    }
    carrier = next(
        (r.gate for r in results if r.gate in VULN_GATES and r.status is Status.PASSED), None
    )
    if carrier is None:
        return {}
    out = [
        Decision(
            Finding(
                gate=carrier,
                id="vulnerabilities.expired-ignore",
                severity=Severity.HIGH,
                title=f"the ignore entry for {e.id} expired on {e.expires.isoformat()}",
                subject=e.id,
                location="vulnerabilities.ignore",
                evidence={"reason": e.reason, "expires": e.expires.isoformat()},
            ),
            Outcome.FAIL,
            f"the ignore entry for {e.id} expired on {e.expires.isoformat()} and matches no "
            "finding: renew or remove it",
            e,
            made=True,
        )
        for e in expired
        if e.id.upper() not in matched
    ]
    return {carrier: out} if out else {}


def judge_gate(
    result: GateResult,
    policy: Policy,
    *,
    vuln: _VulnContext | None = None,
    made: Sequence[Decision] = (),
) -> GateVerdict:
    """Judge one gate's evidence; ``made`` are the judge's own decisions on findings it made
    for this gate (they follow the evidence's)."""
    rule = RULES.get(result.gate, _default_rule)
    vc = vuln or _VulnContext((), date.today(), {}, {})
    decisions = tuple(
        _judge_vuln(f, policy, vc) if is_vuln(f) else rule(policy, f) for f in result.findings
    ) + tuple(made)
    if result.status in (Status.ERRORED, Status.SKIPPED):
        return GateVerdict(result, result.status, decisions)
    failed = any(d.outcome is Outcome.FAIL for d in decisions)
    return GateVerdict(result, Status.FAILED if failed else Status.PASSED, decisions)


def judge(
    results: Sequence[GateResult],
    policy: Policy,
    *,
    internal_error: bool = False,
    base_dir: Path | None = None,
    today: date | None = None,
) -> Verdict:
    """Judge every gate and derive the run's status and exit code.

    ``base_dir`` is where the policy's relative paths (VEX documents) are read from; ``today``
    decides which ignore entries have expired.

    A breach (FAILED) outranks an errored gate in the exit code: the policy was certainly
    breached. Both fail the run.
    """
    vc = _vuln_context(results, policy, base_dir, today)
    # The judge's own findings go into the decision, never into the evidence: the evidence a
    # report stores must be what was collected, so that re-judging it recomputes them.
    made = _expired_decisions(results, policy, vc.today)
    gates = tuple(judge_gate(r, policy, vuln=vc, made=made.get(r.gate, ())) for r in results)
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
