"""How the policy's ``image`` section judges the image gate's findings."""

from __future__ import annotations

from fnmatch import fnmatchcase

from modelseal.findings import Finding
from modelseal.judge import Decision, FindingRules, Outcome, Rules
from modelseal.policy import Policy


def _glob(patterns: list[str], subject: str) -> str | None:
    """The first glob (over the subject without its leading ``/``) that matches, if any."""
    target = subject.lstrip("/")
    return next((p for p in patterns if fnmatchcase(target, p.lstrip("/"))), None)


def image_rule(policy: Policy, f: Finding) -> Decision:
    """Each finding by the ``image`` knob that governs it; every other one fails (fail
    closed), including an id this version does not know."""
    pol = policy.image
    fid = f.id
    # Model payloads anywhere in the image: imagegate.payloads judges its own ids (imported
    # only for them: the module brings the scanner, which re-judging a report needs not).
    if fid.startswith(("image.model-file", "image.payload")):
        from modelseal.imagegate.payloads import payload_rule

        decided = payload_rule(policy, f)
        if decided is not None:
            return decided
    if fid in ("image.root-user", "image.user-unresolved"):
        if pol.require_non_root:
            return Decision(f, Outcome.FAIL, "image.require_non_root is true")
        return Decision(f, Outcome.WARN, "image.require_non_root is false")
    if fid == "image.exposed-port":
        return Decision(f, Outcome.FAIL, "the port is not in image.allowed_ports")
    if fid == "image.no-healthcheck":
        if pol.require_healthcheck:
            return Decision(f, Outcome.FAIL, "image.require_healthcheck is true")
        return Decision(f, Outcome.WARN, "image.require_healthcheck is false")
    if fid == "image.setuid":
        if (g := _glob(pol.allow_setuid, f.subject)) is not None:
            return Decision(f, Outcome.IGNORED, f"accepted by image.allow_setuid {g!r}")
        return Decision(f, Outcome.FAIL, "a setuid/setgid file not in image.allow_setuid")
    if fid == "image.world-writable":
        if (g := _glob(pol.allow_world_writable, f.subject)) is not None:
            return Decision(f, Outcome.IGNORED, f"accepted by image.allow_world_writable {g!r}")
        return Decision(f, Outcome.FAIL, "world-writable, not in image.allow_world_writable")
    if fid == "image.model-writable":
        return Decision(f, Outcome.FAIL, "the runtime user must not be able to change the model")
    if fid in ("image.secret", "image.secret-config", "image.secret-env", "image.secret-label"):
        if (g := _glob(pol.secrets_ignore, f.subject)) is not None:
            return Decision(f, Outcome.IGNORED, f"accepted by image.secrets_ignore {g!r}")
        if pol.secrets == "warn":
            return Decision(f, Outcome.WARN, "image.secrets is warn")
        return Decision(f, Outcome.FAIL, "image.secrets is fail")
    return Decision(f, Outcome.FAIL, "no image policy rule admits this finding")


#: The rules of the image gate (:attr:`modelseal.gates.GateSpec.rules`).
RULES: Rules = FindingRules(image_rule)
