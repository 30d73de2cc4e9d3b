"""How the policy judges the vulnerability scanners' findings (the trivy and pip-audit gates):
the questions :func:`modelseal.vuln.policy.decide` asks of each finding, with what a run adds —
VEX documents, today's date, the findings repeating another scanner's, the expired ignore
entries that matched nothing, and the baseline (:mod:`modelseal.vuln.baseline`): what an
existing finding that would fail gets under ``baseline_policy`` (:func:`apply_baseline`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.judge import Decision, Judging, Outcome, Prepared, Rules, default_rule
from modelseal.policy import Policy
from modelseal.vuln.baseline import BaselineIndex, BaselineMode
from modelseal.vuln.policy import (
    VULN_GATES,
    VulnDecision,
    decide,
    expired_entries,
    find_duplicates,
    ids_of,
    is_vuln,
    load_vex,
    sources_by_finding,
)

#: The id of the finding made for an expired ignore entry that matched nothing.
EXPIRED_IGNORE = "vulnerabilities.expired-ignore"

_OUTCOMES: Mapping[str, Outcome] = {
    "fail": Outcome.FAIL,
    "warn": Outcome.WARN,
    "ignored": Outcome.IGNORED,
}


def _decision(f: Finding, d: VulnDecision, sources: tuple[str, ...]) -> Decision:
    return Decision(
        f, _OUTCOMES[d.outcome], d.reason, d.ignore, sources=sources if len(sources) > 1 else ()
    )


def _expired_decisions(
    results: Sequence[GateResult], policy: Policy, run: Judging
) -> dict[str, tuple[Decision, ...]]:
    """Expired ignore entries that matched no finding still fail: a finding is made for each,
    carried by the first vulnerability gate that collected evidence."""
    expired = expired_entries(policy.vulnerabilities, run.today)
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
    out = tuple(
        Decision(
            Finding(
                gate=carrier,
                id=EXPIRED_IGNORE,
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
    )
    return {carrier: out} if out else {}


def apply_baseline(d: Decision, index: BaselineIndex, mode: BaselineMode) -> Decision:
    """``d`` (the decision without a baseline) with the finding's baseline state, and the
    outcome ``mode`` gives an existing finding that would fail."""
    if not is_vuln(d.finding):
        return d
    cmp = index.compare(d.finding)
    d = replace(d, baseline=cmp.state)
    if cmp.state == "new" or d.outcome is not Outcome.FAIL:
        return d
    if d.ignore is not None:  # an expired ignore entry: its date decides, not the baseline
        return replace(d, reason=f"{d.reason} (existing in the baseline; expired entries fail)")
    if mode == "fail":
        return replace(d, reason=f"{d.reason} (existing in the baseline; baseline_policy fail)")
    if mode == "fail-if-worse" and cmp.state == "worse":
        return replace(d, reason=f"{d.reason}; worse than in the baseline: {cmp.why}")
    why = "" if mode == "warn" else " and not worse"
    return replace(
        d,
        outcome=Outcome.WARN,
        reason=f"existing in the baseline{why}, allowed by vulnerabilities.baseline_policy "
        f"{mode} (would fail: {d.reason})",
    )


@dataclass(frozen=True)
class VulnRules:
    """The rules of every vulnerability scanner; a finding not in the shared vulnerability
    shape fails (no rule allows it)."""

    made_ids: frozenset[str] = frozenset({EXPIRED_IGNORE})

    def prepare(self, run: Judging) -> Prepared:
        """Read the VEX documents, find the duplicates across scanners and the expired ignore
        entries (a bad VEX document is a ConfigError naming it)."""
        results, policy = run.results, run.policy
        dups = find_duplicates({r.gate: r.findings for r in results})
        sources = sources_by_finding((f for r in results for f in r.findings), dups)
        vex = tuple(load_vex(policy.vulnerabilities.vex, run.base_dir))
        # The baseline (modelseal.vuln.baseline): one that could not be loaded leaves every
        # finding judged as new and the gates ERRORED, never judged as if there were none.
        index, error = None, None
        if run.baseline is not None and run.baseline.error is not None:
            error = f"the vulnerability baseline could not be used: {run.baseline.error}"
        elif run.baseline is not None:
            index = BaselineIndex(run.baseline, policy.vulnerabilities)
        mode = policy.vulnerabilities.baseline_policy

        def judge_one(f: Finding) -> Decision:
            if not is_vuln(f):
                return default_rule(policy, f)
            dup = dups.get(id(f))
            d = decide(f, policy.vulnerabilities, vex=vex, today=run.today, duplicate_of=dup)
            out = _decision(f, d, sources.get(id(f), ()))
            if index is not None:
                out = apply_baseline(out, index, mode)
            return out

        return Prepared(judge_one, _expired_decisions(results, policy, run), error=error)


#: The trivy and pip-audit gates' rules (:attr:`modelseal.gates.GateSpec.rules`).
RULES: Rules = VulnRules()
