"""Collector: what the image config says about how the container will run.

The runtime user (``USER`` missing, uid 0, or a name the image cannot resolve), the ports it
``EXPOSE``s, whether it has a ``HEALTHCHECK``, and environment variables and labels that look
like secrets (by name, or by a value in a well-known key format). A secret's value is never
copied into a finding: only its name, where it was set, what it looked like and its length.
"""

from __future__ import annotations

from typing import Any

from modelseal.findings import Finding, Severity
from modelseal.imagefs import printable
from modelseal.imagegate.history import attribution
from modelseal.imagegate.secretlike import secret_kind
from modelseal.imagegate.user import runtime_user
from modelseal.imagegate.view import ImageView

GATE = "image"
#: Environment variables and labels read (a config with more is a finding of its own size).
MAX_ITEMS = 10_000
#: Characters of a name shown.
MAX_NAME = 200


def _config(view: ImageView) -> dict[str, Any]:
    cfg = view.config.get("config")
    return cfg if isinstance(cfg, dict) else {}


def collect(view: ImageView) -> list[Finding]:
    """The config findings of one platform image."""
    return _user(view) + _ports(view) + _healthcheck(view) + _secrets(view)


def _finding(view: ImageView, id: str, severity: Severity, title: str, subject: str,
             keyword: str, named: str = "", **evidence: str) -> Finding:  # fmt: skip
    where, origin = attribution(view).instruction(keyword, named)
    return Finding(GATE, id, severity, title, subject, location=where or f"image config {keyword}",
                   evidence={"platform": view.platform, **origin, **evidence})  # fmt: skip


def _user(view: ImageView) -> list[Finding]:
    user = runtime_user(view)
    raw = printable(user.raw[:MAX_NAME])
    if user.problem:
        return [_finding(view, "image.user-unresolved", Severity.HIGH,
                         f"the image's USER {raw!r} cannot be resolved: {printable(user.problem)}; "
                         "the container would not start (or run as an unknown user)",
                         "USER", "USER", user=raw)]  # fmt: skip
    if user.is_root:
        why = "the image sets no USER" if not user.raw else f"USER {raw} is uid 0"
        return [_finding(view, "image.root-user", Severity.HIGH,
                         f"the container runs as root: {why}", "USER", "USER",
                         user=raw, uid="0")]  # fmt: skip
    return []


def _ports(view: ImageView) -> list[Finding]:
    allowed = view.ctx.policy.policy.image.allowed_ports
    exposed = _config(view).get("ExposedPorts")
    if allowed is None or not isinstance(exposed, dict):
        return []
    out = []
    for port in sorted(str(p) for p in list(exposed)[:MAX_ITEMS]):
        number, _, proto = port.lower().partition("/")
        norm = f"{number}/{proto or 'tcp'}"
        if norm not in allowed:
            shown = printable(port[:MAX_NAME])
            out.append(_finding(view, "image.exposed-port", Severity.LOW,
                                f"the image exposes port {shown}, which is not in "
                                "image.allowed_ports", f"port {shown}", "EXPOSE", norm,
                                port=shown))  # fmt: skip
    return out


def _healthcheck(view: ImageView) -> list[Finding]:
    hc = _config(view).get("Healthcheck")
    test = hc.get("Test") if isinstance(hc, dict) else None
    if isinstance(test, list) and test and test[0] != "NONE":
        return []
    return [_finding(view, "image.no-healthcheck", Severity.LOW,
                     "the image defines no HEALTHCHECK", "HEALTHCHECK", "HEALTHCHECK")]  # fmt: skip


def _secrets(view: ImageView) -> list[Finding]:
    cfg = _config(view)
    items: list[tuple[str, str, str]] = []  # (kind, name, value)
    env = cfg.get("Env")
    for entry in env[:MAX_ITEMS] if isinstance(env, list) else []:
        if isinstance(entry, str):
            name, _, value = entry.partition("=")
            items.append(("env", name, value))
    labels = cfg.get("Labels")
    for name, value in list(labels.items())[:MAX_ITEMS] if isinstance(labels, dict) else []:
        items.append(("label", str(name), str(value)))
    out = []
    for kind, name, value in items:
        why = secret_kind(name, value)
        if not why:
            continue
        shown = printable(name[:MAX_NAME])
        keyword = "ENV" if kind == "env" else "LABEL"
        what = "environment variable" if kind == "env" else "label"
        out.append(_finding(view, f"image.secret-{kind}", Severity.HIGH,
                            f"the {what} {shown} looks like a secret ({why}); its value is in the "
                            "image config for anyone who can pull the image",
                            f"{kind}:{shown}", keyword, name, name=shown, kind=why,
                            length=str(len(value))))  # fmt: skip
    return out
