"""Judging: the policy turns collected evidence into a verdict. Kept apart from collecting, so
the same findings can be re-judged under another policy."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from modelseal import gates
from modelseal.errors import ExitCode
from modelseal.findings import Finding, GateResult, Status
from modelseal.policy import Policy
from modelseal.policy.model import IgnoreEntry

if TYPE_CHECKING:
    from modelseal.vuln.baseline import Baseline, BaselineSummary


class Outcome(Enum):
    """What the policy makes of one finding."""

    FAIL = "fail"  # breaches the policy
    WARN = "warn"  # reported, allowed by the policy
    IGNORED = "ignored"  # explicitly accepted (e.g. an ignore entry)


@dataclass(frozen=True)
class Decision:
    """The policy's word on one finding, and why. ``ignore`` is the vulnerability ignore entry
    that decided it: the accepted risk when the outcome is IGNORED, an expired one when FAIL.

    ``finding`` is the collected finding itself, unchanged, unless ``made`` says the judge made
    it (an expired ignore entry that matched nothing). ``sources`` names every scanner that
    reported the advisory, when more than one did (the others' findings are ignored as
    duplicates of this one). ``baseline``: new, existing or worse against the run's baseline
    (:mod:`modelseal.vuln.baseline`; None: no baseline, or not a vulnerability)."""

    finding: Finding
    outcome: Outcome
    reason: str
    ignore: IgnoreEntry | None = None
    made: bool = False
    sources: tuple[str, ...] = ()
    baseline: str | None = None


@dataclass(frozen=True)
class GateVerdict:
    """A gate's collected evidence (``result``, exactly as collected) and the judge's decision:
    the status, and one decision per finding — first the collected findings, in order, then the
    ones the judge made. ``judge_error``: why judging could not run (the gate is ERRORED,
    e.g. its baseline could not be read)."""

    result: GateResult
    status: Status
    decisions: tuple[Decision, ...]
    judge_error: str | None = None

    @property
    def error(self) -> str | None:
        """Why the gate is ERRORED: judging's reason, else collecting's."""
        return self.judge_error or self.result.error

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
    baseline: BaselineSummary | None = None
    """The run's baseline and the counts against it (None: no baseline)."""


Rule = Callable[[Policy, Finding], Decision]
"""The policy's word on one finding, on that finding alone."""


@dataclass(frozen=True)
class Judging:
    """What one run's judging knows beyond each finding: every gate's collected results, the
    policy, where the policy's relative paths are read from, the day (which decides the
    expired ignore entries) and the vulnerability baseline, loaded (None: none)."""

    results: Sequence[GateResult]
    policy: Policy
    base_dir: Path
    today: date
    baseline: Baseline | None = None


@dataclass(frozen=True)
class Prepared:
    """A gate's rules, prepared for one run: ``decide`` judges one finding, ``made`` holds the
    decisions on findings the rules made themselves (not evidence), by the gate carrying them.
    ``error``: the rules could not be prepared whole for this run — every gate they judge that
    collected evidence is ERRORED with this reason (its findings are still decided)."""

    decide: Callable[[Finding], Decision]
    made: Mapping[str, tuple[Decision, ...]] = field(default_factory=dict)
    error: str | None = None


class Rules(Protocol):
    """A gate's judging rules (:attr:`modelseal.gates.GateSpec.rules`). Prepared once per run,
    also when several gates share them (the vulnerability scanners do: one finding repeating
    another's is judged as its duplicate)."""

    @property
    def made_ids(self) -> frozenset[str]:
        """Ids of the findings these rules make themselves (never a gate). They are part of a
        decision, not evidence: re-judging recomputes them, so a reader of an old report drops
        them."""
        ...

    def prepare(self, run: Judging) -> Prepared:
        """The rules for this run."""
        ...


def default_rule(policy: Policy, f: Finding) -> Decision:
    """What a finding no rule allows gets: it fails (fail closed)."""
    return Decision(f, Outcome.FAIL, "no policy rule allows this finding")


@dataclass(frozen=True)
class FindingRules:
    """Rules that judge each finding alone, with one :data:`Rule`."""

    rule: Rule
    made_ids: frozenset[str] = frozenset()

    def prepare(self, run: Judging) -> Prepared:
        """Nothing to prepare: each finding is judged by ``rule``."""
        rule, policy = self.rule, run.policy
        return Prepared(lambda f: rule(policy, f))


_DEFAULT = FindingRules(default_rule)


def rules_of(gate: str) -> Rules | None:
    """The judging rules a gate's spec names (None for a gate without rules or one not
    registered, such as a gate named in an old report: each of its findings fails)."""
    spec = gates.GATES.get(gate)
    if spec is None or spec.rules is None:
        return None
    return cast("Rules", gates.resolve(spec.rules))


def judge_made_ids() -> frozenset[str]:
    """Ids of the findings the rules of every registered gate make themselves."""
    return frozenset().union(
        *(r.made_ids for name in gates.GATES if (r := rules_of(name)) is not None)
    )


def _prepare(names: Sequence[str], run: Judging) -> dict[str, Prepared]:
    """Each named gate's prepared rules; rules shared by several gates are prepared once."""
    by_rules: dict[int, Prepared] = {}
    out: dict[str, Prepared] = {}
    for name in names:
        rules = rules_of(name) or _DEFAULT
        if id(rules) not in by_rules:
            by_rules[id(rules)] = rules.prepare(run)
        out[name] = by_rules[id(rules)]
    return out


def judge_gate(
    result: GateResult,
    policy: Policy,
    *,
    prepared: Prepared | None = None,
    made: Sequence[Decision] = (),
) -> GateVerdict:
    """Judge one gate's evidence by its rules (``prepared`` for this run, else prepared for
    this result alone); ``made`` are the judge's own decisions on findings it made for this gate
    (they follow the evidence's)."""
    if prepared is None:
        run = Judging((result,), policy, Path.cwd(), date.today())
        prepared = _prepare([result.gate], run)[result.gate]
    decisions = tuple(prepared.decide(f) for f in result.findings) + tuple(made)
    if result.status in (Status.ERRORED, Status.SKIPPED):
        return GateVerdict(result, result.status, decisions)
    if prepared.error is not None:
        return GateVerdict(result, Status.ERRORED, decisions, judge_error=prepared.error)
    failed = any(d.outcome is Outcome.FAIL for d in decisions)
    return GateVerdict(result, Status.FAILED if failed else Status.PASSED, decisions)


def judge(
    results: Sequence[GateResult],
    policy: Policy,
    *,
    internal_error: bool = False,
    base_dir: Path | None = None,
    today: date | None = None,
    baseline: Baseline | None = None,
) -> Verdict:
    """Judge every gate and derive the run's status and exit code.

    ``base_dir`` is where the policy's relative paths (VEX documents) are read from; ``today``
    decides which ignore entries have expired; ``baseline`` is the vulnerability baseline the
    caller loaded (:func:`modelseal.vuln.baseline_load.load_baseline`), one that failed to load
    included.

    A breach (FAILED) outranks an errored gate in the exit code: the policy was certainly
    breached. Both fail the run.
    """
    run = Judging(tuple(results), policy, base_dir or Path.cwd(), today or date.today(), baseline)
    # Every registered gate's rules are prepared, not only those of the gates that ran: a
    # policy whose rules cannot be prepared (an unreadable VEX document) is refused whatever
    # was collected.
    prepared = _prepare([*gates.GATES, *(r.gate for r in results)], run)
    # The rules' own findings go into the decision, never into the evidence: the evidence a
    # report stores must be what was collected, so that re-judging it recomputes them.
    made: dict[str, list[Decision]] = {}
    for p in {id(p): p for p in prepared.values()}.values():
        for gate, decisions in p.made.items():
            made.setdefault(gate, []).extend(decisions)
    verdicts = tuple(
        judge_gate(r, policy, prepared=prepared[r.gate], made=made.get(r.gate, ())) for r in results
    )
    summary = None
    if baseline is not None:
        from modelseal.vuln.baseline import summarize

        states = [
            (d.finding, d.baseline) for g in verdicts for d in g.decisions if d.baseline is not None
        ]
        summary = summarize(baseline, policy.vulnerabilities, results, states)
    statuses = {g.status for g in verdicts}
    if internal_error:
        return Verdict(verdicts, Status.ERRORED, ExitCode.BUG, summary)
    if Status.FAILED in statuses:
        return Verdict(verdicts, Status.FAILED, ExitCode.BREACHED, summary)
    if Status.ERRORED in statuses or not verdicts:
        return Verdict(verdicts, Status.ERRORED, ExitCode.ERRORED, summary)
    return Verdict(verdicts, Status.PASSED, ExitCode.PASSED, summary)
