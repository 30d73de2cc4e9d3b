"""How the policy judges the vulnerability scanners' findings (the trivy and pip-audit gates):
the questions :func:`modelseal.vuln.policy.decide` asks of each finding, with what a run adds —
VEX documents, today's date, the findings repeating another scanner's, the ignore entries that
matched nothing (expired: a failure; live: a "stale ignore" warning), and the baseline
(:mod:`modelseal.vuln.baseline`): what an existing finding that would fail gets under
``baseline_policy`` (:func:`apply_baseline`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.judge import Decision, Judging, Outcome, Prepared, Rules, default_rule
from modelseal.policy import Policy
from modelseal.vuln.baseline import BaselineIndex, BaselineMode
from modelseal.vuln.policy import (
    VULN_GATES,
    VulnDecision,
    decide,
    find_duplicates,
    image_digests,
    is_vuln,
    load_vex,
    matched_entries,
    sources_by_finding,
    vex_decision,
)

#: The id of the finding made for an expired ignore entry that matched nothing.
EXPIRED_IGNORE = "vulnerabilities.expired-ignore"
#: The id of the (warning) finding made for a live ignore entry that matched nothing.
STALE_IGNORE = "vulnerabilities.stale-ignore"

_OUTCOMES: Mapping[str, Outcome] = {
    "fail": Outcome.FAIL,
    "warn": Outcome.WARN,
    "ignored": Outcome.IGNORED,
}


def _decision(f: Finding, d: VulnDecision, sources: tuple[str, ...]) -> Decision:
    return Decision(
        f, _OUTCOMES[d.outcome], d.reason, d.ignore, sources=sources if len(sources) > 1 else ()
    )


def _entry_decisions(
    results: Sequence[GateResult],
    policy: Policy,
    run: Judging,
    vex_covered: Callable[[Finding], bool],
) -> dict[str, tuple[Decision, ...]]:
    """Ignore entries that matched no finding (every matcher they give, against every
    scanner's report): an expired one still fails; a live one is stale — a warning, made only
    when every scanner the entry covers ran and none ERRORED (an entry cannot match what was not
    scanned). An expired entry whose findings a VEX statement accepts (``vex_covered``: decided
    before any entry is looked at) decides nothing either: it fails too. Each made finding is
    carried by the first vulnerability gate that collected evidence among those the entry
    covers."""
    pol = policy.vulnerabilities
    if not pol.ignore:
        return {}
    findings = [f for r in results for f in r.findings]
    matched = matched_entries(pol, findings)
    deciding = matched_entries(pol, (f for f in findings if not vex_covered(f)))
    status = {r.gate: r.status for r in results if r.gate in VULN_GATES}
    out: dict[str, list[Decision]] = {}
    for i, e in enumerate(pol.ignore):
        expired = e.expires < run.today
        if i in (deciding if expired else matched):
            continue
        shadowed = i in matched
        covers = (e.scanner,) if e.scanner else VULN_GATES
        ran = [g for g in covers if status.get(g) is Status.PASSED]
        if expired:
            carrier = next((g for g in VULN_GATES if status.get(g) is Status.PASSED), None)
        else:
            if not ran or any(status.get(g) is Status.ERRORED for g in covers):
                continue
            carrier = ran[0]
        if carrier is None:
            continue
        if expired:
            what = "only findings a VEX statement accepts" if shadowed else "no finding"
            rule, severity, outcome = EXPIRED_IGNORE, Severity.HIGH, Outcome.FAIL
            title = f"the ignore entry for {e.id} expired on {e.expires.isoformat()}"
            message = (
                f"the ignore entry for {e.id} expired on {e.expires.isoformat()} and matches "
                f"{what}: renew or remove it"
            )
        else:
            not_run = [g for g in covers if g not in ran]
            scanned = " and ".join(ran) + (
                f" ({', '.join(not_run)} did not run)" if not_run else ""
            )
            rule, severity, outcome = STALE_IGNORE, Severity.LOW, Outcome.WARN
            title = f"the ignore entry for {e.id} matches no finding (stale ignore)"
            message = (
                f"vulnerabilities.ignore[{i}] ({e.id}) matched no finding of {scanned}: remove it "
                "if the vulnerability is gone, or correct its matchers"
            )
        made = Finding(
            gate=carrier,
            id=rule,
            severity=severity,
            title=title,
            subject=e.id,
            location=f"vulnerabilities.ignore[{i}]",
            evidence={"reason": e.reason, "expires": e.expires.isoformat()},
        )
        d = Decision(made, outcome, message, e, made=True)
        out.setdefault(carrier, []).append(d)
    return {g: tuple(ds) for g, ds in out.items()}


def apply_baseline(d: Decision, index: BaselineIndex, mode: BaselineMode) -> Decision:
    """``d`` (the decision without a baseline) with the finding's baseline state, and the
    outcome ``mode`` gives an existing finding that would fail."""
    if not is_vuln(d.finding):
        return d
    cmp = index.compare(d.finding, d.sources)
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

    made_ids: frozenset[str] = frozenset({EXPIRED_IGNORE, STALE_IGNORE})

    def prepare(self, run: Judging) -> Prepared:
        """Read the VEX documents, find the duplicates across scanners and the expired ignore
        entries (a bad VEX document is a ConfigError naming it)."""
        results, policy = run.results, run.policy
        dups = find_duplicates({r.gate: r.findings for r in results})
        by_id = {id(f): f for r in results for f in r.findings}
        sources = sources_by_finding((f for r in results for f in r.findings), dups)
        repeated_by: dict[int, list[Finding]] = {}
        for dup, kept in dups.items():
            repeated_by.setdefault(id(kept), []).append(by_id[dup])
        vex = tuple(load_vex(policy.vulnerabilities.vex, run.base_dir))
        # What a pkg:oci VEX product must name: the image this run built (none: no build gate).
        image = frozenset[str]().union(
            *(image_digests(r.facts) for r in results if r.gate == "build")
        )
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
            d = decide(
                f,
                policy.vulnerabilities,
                vex=vex,
                today=run.today,
                duplicate_of=dups.get(id(f)),
                repeated_by=repeated_by.get(id(f), ()),
                image=image,
            )
            out = _decision(f, d, sources.get(id(f), ()))
            if index is not None:
                out = apply_baseline(out, index, mode)
            return out

        def vex_covered(f: Finding) -> bool:
            kept = dups.get(id(f), f)
            return is_vuln(kept) and vex_decision(kept, vex, image) is not None

        made = _entry_decisions(results, policy, run, vex_covered)
        return Prepared(judge_one, made, error=error)


#: The trivy and pip-audit gates' rules (:attr:`modelseal.gates.GateSpec.rules`).
RULES: Rules = VulnRules()
