"""Admission rules from a runtime profile (``policy export --runtime-profile FILE``).

The profile is the image gate's ``runtime-profile.json`` (or the ``runtime_profile`` that
``modelseal verify --format json`` prints from the signed attestation). What the exported
policy enforces with it, per format:

* ``kyverno`` (ClusterPolicy) — a ``validate.cel`` rule on Pods (and their
  ``ephemeralcontainers`` subresource) that refuses a pod in which any container,
  init container or ephemeral container whose image matches the patterns runs with more
  privilege than the profile (:func:`cel_checks`), and the verifyImages rule requires the
  runtime-profile attestation by the signer, stating the same user (:func:`jmespath_conditions`);
* ``kyverno-ivp`` (ImageValidatingPolicy) and ``policy-controller`` (ClusterImagePolicy) —
  only the signed runtime-profile attestation stating the same user: these resources verify
  images, they do not see the pod's ``securityContext``. :func:`unenforced_runtime` says so, for
  a notice; pair them with the ``kyverno`` export, or with Pod Security Admission's
  ``restricted`` level.

A pod has more privilege than the profile when, for a matching container (the container's
``securityContext`` first, the pod's where Kubernetes inherits it):

* ``runAsNonRoot`` is not true (only when the profile is non-root); ``runAsUser`` or
  ``runAsGroup`` is set to another id than the profile's (only when the profile is non-root;
  a root profile's process may run as anyone);
* ``privileged`` is true; ``allowPrivilegeEscalation`` is not false; ``readOnlyRootFilesystem``
  is not true; ``capabilities.drop`` lacks ``ALL``; ``capabilities.add`` holds a capability the
  profile does not add; the seccomp profile is not ``RuntimeDefault``; ``procMount`` is not
  ``Default``;
* the pod shares the host's network, PID or IPC namespace.

Not checked: volumes (hostPath), ``supplementalGroups``/``fsGroup``, sysctls, AppArmor and
SELinux options, resources.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from modelseal.errors import ConfigError

#: Bytes of a runtime profile file read at most.
MAX_PROFILE_BYTES: Final = 1 << 20
_CAPABILITY_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_MAX_ID: Final = (1 << 32) - 2


@dataclass(frozen=True)
class RuntimeRule:
    """What the exported policy holds a pod to (from one runtime profile)."""

    non_root: bool
    uid: int | None
    gid: int | None
    add_capabilities: tuple[str, ...] = ()


def load_runtime_rule(path: Path) -> RuntimeRule:
    """The rule of the runtime profile in ``path`` (``runtime-profile.json``, or ``modelseal
    verify --format json`` output holding ``runtime_profile``); ConfigError (exit 2) names what
    is wrong."""
    from modelseal.bounded import read_input, shown_path

    where = f"--runtime-profile {shown_path(path)}"
    try:
        data = json.loads(read_input(path, what="--runtime-profile", limit=MAX_PROFILE_BYTES))
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"{where} is not JSON ({type(e).__name__}).") from None
    if isinstance(data, dict) and isinstance(data.get("runtime_profile"), dict):
        data = data["runtime_profile"]
    return rule_from_profile(data, where)


def rule_from_profile(profile: Any, where: str) -> RuntimeRule:
    """The rule of a profile object (as :meth:`RuntimeProfile.to_json` writes it)."""
    if not isinstance(profile, dict) or profile.get("version") != 1:
        raise ConfigError(f"{where}: not a modelseal runtime profile (version 1).")
    sc = profile.get("kubernetes", {}).get("securityContext") if isinstance(
        profile.get("kubernetes"), dict
    ) else None  # fmt: skip
    if not isinstance(sc, dict) or not isinstance(profile.get("nonRoot"), bool):
        raise ConfigError(f"{where}: the profile has no kubernetes.securityContext or nonRoot.")
    non_root = profile["nonRoot"]
    uid, gid = sc.get("runAsUser"), sc.get("runAsGroup")
    for name, value in (("runAsUser", uid), ("runAsGroup", gid)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ID
        ):
            raise ConfigError(f"{where}: securityContext.{name} is not a uid/gid.")
    if non_root and (uid is None or uid == 0 or sc.get("runAsNonRoot") is not True):
        raise ConfigError(
            f"{where}: the profile says nonRoot but its securityContext does not run as a "
            "non-root runAsUser."
        )
    caps = sc.get("capabilities", {})
    added = caps.get("add", []) if isinstance(caps, dict) else None
    if not isinstance(added, list) or not all(
        isinstance(c, str) and 0 < len(c) <= 32 and set(c) <= _CAPABILITY_CHARS and c != "ALL"
        for c in added
    ):
        raise ConfigError(f"{where}: securityContext.capabilities.add is not a list of names.")
    return RuntimeRule(non_root, uid, gid, tuple(sorted(set(added))))


def unenforced_runtime(fmt: str) -> str | None:
    """What a format cannot enforce of the runtime profile (None: the ``kyverno`` export
    enforces it all)."""
    if fmt == "kyverno":
        return None
    return (
        f"--format {fmt} checks that the image carries its signed runtime profile stating the "
        "same user, but cannot see the pod: the pod's securityContext (runAsNonRoot, "
        "capabilities, readOnlyRootFilesystem, allowPrivilegeEscalation, seccomp, host "
        "namespaces) is not checked. Export --format kyverno with the same --runtime-profile "
        "for that, or enforce Pod Security Admission's restricted level."
    )


# --- Kyverno: CEL over the pod -------------------------------------------------------------

_CONTAINERS: Final = (
    "object.spec.containers"
    " + (has(object.spec.initContainers) ? object.spec.initContainers : [])"
    " + (has(object.spec.ephemeralContainers) ? object.spec.ephemeralContainers : [])"
)
_POD_SC: Final = "object.spec.securityContext"


def _own(field: str) -> str:
    """The container ``c`` sets ``securityContext.<field>`` itself."""
    return f"(has(c.securityContext) && has(c.securityContext.{field}))"


def _inherited(field: str, test: str, *, unset: str) -> str:
    """``test`` (over ``{v}``) on the effective ``field``: the container's, else the pod's,
    else ``unset`` (a CEL boolean)."""
    mine = test.format(v=f"c.securityContext.{field}")
    pods = test.format(v=f"{_POD_SC}.{field}")
    return (
        f"({_own(field)} ? {mine} : "
        f"((has({_POD_SC}) && has({_POD_SC}.{field})) ? {pods} : {unset}))"
    )


#: Docker Hub's registry under the names a runtime pulls it by (the reference library maps
#: ``index.docker.io`` to ``docker.io``; ``registry-1.docker.io`` is the host both resolve to),
#: case-insensitive as every registry host is.
_HUB: Final = ("docker.io", "index.docker.io", "registry-1.docker.io")
_HUB_RE: Final = "(?i:docker\\.io|index\\.docker\\.io|registry-1\\.docker\\.io)"


def _glob_body(glob: str) -> str:
    from modelseal.admission.embed import quote_re2

    return "".join(".*" if c == "*" else "." if c == "?" else quote_re2(c) for c in glob)


def image_regexes(pattern: str) -> list[str]:
    """Anchored regular expressions (RE2 and Python alike) matching every spelling of an image
    reference that a runtime normalizes to one ``pattern`` matches: the pattern as written;
    its registry host in any case; for Docker Hub, any of :data:`_HUB`, no host at all, and
    ``library/`` left out of a one-component name. The host is the first component when it
    holds a ``.`` or ``:`` or is ``localhost``, as the reference grammar reads it. More
    spellings may match than the runtime would pull (more is checked, never less)."""
    from modelseal.admission.embed import glob_re2

    out = [glob_re2(pattern)]  # also validates the pattern
    first, sep, rest = pattern.partition("/")
    if sep and (first.lower() == "localhost" or "." in first or ":" in first):
        domain, repo = first, rest
    else:
        domain, repo = "docker.io", pattern
    if domain.lower() not in _HUB:
        out.append(f"^(?i:{_glob_body(domain)})/{_glob_body(repo)}$")
        return out
    if "/" not in repo:
        repo = f"library/{repo}"
    forms = [repo]
    if repo.startswith("library/") and "/" not in repo[len("library/") :]:
        forms.append(repo[len("library/") :])  # docker.io/model is docker.io/library/model
    for form in forms:
        out += [f"^{_HUB_RE}/{_glob_body(form)}$", f"^{_glob_body(form)}$"]
    return list(dict.fromkeys(out))


def cel_variables(patterns: list[str]) -> list[dict[str, str]]:
    """``sealedContainers``: the pod's containers of every kind whose image matches one of the
    image globs under any spelling a runtime reads as the same reference
    (:func:`image_regexes`)."""
    from modelseal.admission.embed import quote_cel

    matches = " || ".join(
        f"c.image.matches({quote_cel(r)})" for p in patterns for r in image_regexes(p)
    )
    return [{"name": "sealedContainers", "expression": f"({_CONTAINERS}).filter(c, {matches})"}]


def cel_checks(rule: RuntimeRule) -> list[dict[str, str]]:
    """The ``validate.cel.expressions`` of :func:`cel_variables`' containers (each true when
    every matching container holds)."""
    from modelseal.admission.embed import quote_cel

    checks: list[tuple[str, str]] = []
    if rule.non_root:
        checks.append((
            _inherited("runAsNonRoot", "{v} == true", unset="false"),
            "runAsNonRoot must be true (the image's runtime profile runs as a non-root user)",
        ))  # fmt: skip
        assert rule.uid is not None
        checks.append((
            _inherited("runAsUser", f"{{v}} == {rule.uid}", unset="true"),
            f"runAsUser, when set, must be the profile's user {rule.uid}",
        ))  # fmt: skip
        if rule.gid is not None:
            checks.append((
                _inherited("runAsGroup", f"{{v}} == {rule.gid}", unset="true"),
                f"runAsGroup, when set, must be the profile's group {rule.gid}",
            ))  # fmt: skip
    allowed = "[" + ", ".join(quote_cel(c) for c in rule.add_capabilities) + "]"
    checks += [
        (f"!({_own('privileged')} && c.securityContext.privileged == true)",
         "privileged containers are refused"),
        (f"{_own('allowPrivilegeEscalation')} && c.securityContext.allowPrivilegeEscalation == "
         "false", "allowPrivilegeEscalation must be false"),
        (f"{_own('readOnlyRootFilesystem')} && c.securityContext.readOnlyRootFilesystem == true",
         "readOnlyRootFilesystem must be true (writable paths are emptyDir volumes)"),
        (f"{_own('capabilities')} && has(c.securityContext.capabilities.drop) && "
         "c.securityContext.capabilities.drop.exists(x, x == 'ALL')",
         "capabilities.drop must include ALL"),
        (f"!({_own('capabilities')} && has(c.securityContext.capabilities.add)) || "
         f"c.securityContext.capabilities.add.all(x, x in {allowed})",
         "capabilities.add may hold only what the runtime profile adds"
         + (f" ({', '.join(rule.add_capabilities)})" if rule.add_capabilities else " (none)")),
        (_inherited("seccompProfile", "{v}.type == 'RuntimeDefault'", unset="false"),
         "seccompProfile.type must be RuntimeDefault"),
        (f"!{_own('procMount')} || c.securityContext.procMount == 'Default'",
         "procMount must be Default"),
    ]  # fmt: skip
    out = [
        {"expression": f"variables.sealedContainers.all(c, {check})", "message": message}
        for check, message in checks
    ]
    host = " || ".join(
        f"(has(object.spec.{k}) && object.spec.{k} == true)"
        for k in ("hostNetwork", "hostPID", "hostIPC")
    )
    out.append({
        "expression": f"variables.sealedContainers.size() == 0 || !({host})",
        "message": "a pod running a sealed image may not share the host's network, PID or IPC "
        "namespace",
    })  # fmt: skip
    return out


# --- the attested profile, per controller language ----------------------------------------


def jmespath_conditions(rule: RuntimeRule) -> list[str]:
    """JMESPath expressions over the attested profile (the predicate): it states the same
    user and no other added capability."""
    out = [f"nonRoot == `{json.dumps(rule.non_root)}`"]
    sc = "kubernetes.securityContext"
    if rule.non_root:
        out.append(f"{sc}.runAsUser == `{rule.uid}`")
    adds = json.dumps(list(rule.add_capabilities))
    out.append(f"(({sc}.capabilities.add || `[]`) == `{adds}`)")
    return out


def cel_conditions(rule: RuntimeRule) -> list[str]:
    """The same over ``payload.predicate`` (an ImageValidatingPolicy's statement)."""
    from modelseal.admission.embed import quote_cel

    p = "payload.predicate"
    out = [f"{p}.nonRoot == {json.dumps(rule.non_root)}"]
    if rule.non_root:
        out.append(f"{p}.kubernetes.securityContext.runAsUser == {rule.uid}")
    adds = "[" + ", ".join(quote_cel(c) for c in rule.add_capabilities) + "]"
    caps = f"{p}.kubernetes.securityContext.capabilities"
    out.append(f"(has({caps}.add) ? {caps}.add : []) == {adds}")
    return out


def rego_conditions(rule: RuntimeRule) -> list[str]:
    """The same in Rego over ``input.predicate`` (a policy-controller attestation policy)."""
    sc = "input.predicate.kubernetes.securityContext"
    out = [f"input.predicate.nonRoot == {json.dumps(rule.non_root)}"]
    if rule.non_root:
        out.append(f"{sc}.runAsUser == {rule.uid}")
    out.append(
        f'object.get({sc}.capabilities, "add", []) == {json.dumps(list(rule.add_capabilities))}'
    )
    return out
