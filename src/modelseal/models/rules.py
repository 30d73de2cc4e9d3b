"""How the policy judges the findings of the models and models-image gates."""

from __future__ import annotations

from modelseal.findings import Finding
from modelseal.judge import Decision, FindingRules, Outcome, Rules
from modelseal.policy import Policy

#: Scanner findings about what a pickle would do when loaded.
_PICKLE_KINDS = frozenset(
    {
        "models.unsafe-global",
        "models.dynamic-global",
        "models.pickle-extension",
        "models.indirect-call",
        "models.global-mutation",
        "models.unsafe-call",
        "models.unsafe-state",
    }
)


def _global_allowed(policy: Policy, name: str, *, constructor: bool = False) -> bool:
    # The scanner's own allowlist rules (wildcards never admit dunders or never-allowed names);
    # the policy loader already refused entries that could run code. A class called with
    # arguments (``use: constructor``) must be named exactly, not by a profile or a pattern.
    from modelseal.models.allowlist import Allowlist

    module, _, attr = name.rpartition(".")
    models = policy.models
    allow = Allowlist().extended(models.allowed_globals).with_profiles(models.allow)
    if constructor:
        return allow.allows_constructor(module, attr)
    return allow.allows(module, attr)


def models_rule(policy: Policy, f: Finding) -> Decision:
    """Formats against ``models.formats``, pickles against ``models.pickle`` and
    ``models.allowed_globals``, a missing lock against ``models.require_lock``; every other
    finding (a hash mismatch, a malformed file) fails."""
    pol = policy.models
    if f.id == "models.format":
        fmt = f.evidence.get("format", "unknown")
        if fmt == "unknown" and f.evidence.get("metadata") == "yes":
            # README.md / config.json beside the model: pinned and lock-checked, read for the
            # ML-BOM; text in no model format (one in a model format is judged as that format).
            return Decision(f, Outcome.IGNORED, "the model card or config, not a model format")
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
        constructor = f.evidence.get("use") == "constructor"
        if (
            f.id == "models.unsafe-global"
            and name
            and _global_allowed(policy, name, constructor=constructor)
        ):
            return Decision(f, Outcome.IGNORED, f"{name} is in models.allowed_globals")
        if pol.pickle == "allow":
            return Decision(f, Outcome.WARN, "models.pickle is allow")
        return Decision(f, Outcome.FAIL, "loading this pickle could run code")
    if f.id in ("models.unparsable", "models.trailing-data") and pol.pickle == "allow":
        return Decision(f, Outcome.WARN, "models.pickle is allow")
    return Decision(f, Outcome.FAIL, "model files must match the lock and be well-formed")


#: The rules of the models and models-image gates (:attr:`modelseal.gates.GateSpec.rules`).
RULES: Rules = FindingRules(models_rule)
