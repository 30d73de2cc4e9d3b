"""How the policy's ``image`` section judges the image gate's findings."""

from __future__ import annotations

from modelseal.findings import Finding
from modelseal.imagegate.payloads import MODEL_FILE, PAYLOAD, UNSCANNED, payload_rule
from modelseal.judge import Decision, FindingRules, Outcome, Rules
from modelseal.policy import Policy


def image_rule(policy: Policy, f: Finding) -> Decision:
    """Every finding of the image gate fails unless a rule below admits it (fail closed)."""
    if f.id == MODEL_FILE or f.id == UNSCANNED or f.id.startswith(PAYLOAD):
        decided = payload_rule(policy, f)
        if decided is not None:
            return decided
    return Decision(f, Outcome.FAIL, "no image policy rule admits this finding")


#: The rules of the image gate (:attr:`modelseal.gates.GateSpec.rules`).
RULES: Rules = FindingRules(image_rule)
