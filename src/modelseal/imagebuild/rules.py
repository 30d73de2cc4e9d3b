"""How the policy judges the build gate's findings."""

from __future__ import annotations

from modelseal.findings import Finding
from modelseal.judge import Decision, FindingRules, Outcome, Rules
from modelseal.policy import Policy


def build_rule(policy: Policy, f: Finding) -> Decision:
    """An unpinned base fails unless ``build.require_pinned_base`` is false; a rebuild that
    differs, and every other build finding, fails."""
    if f.id == "build.unpinned-base" and not policy.build.require_pinned_base:
        return Decision(f, Outcome.WARN, "build.require_pinned_base is false")
    if f.id == "build.unpinned-base":
        return Decision(f, Outcome.FAIL, "build.require_pinned_base is true")
    if f.id == "build.not-reproducible":
        return Decision(f, Outcome.FAIL, "build.rebuild_check: the rebuild differs")
    return Decision(f, Outcome.FAIL, "every build finding fails unless the policy allows it")


#: The build gate's rules (:attr:`modelseal.gates.GateSpec.rules`).
RULES: Rules = FindingRules(build_rule)
