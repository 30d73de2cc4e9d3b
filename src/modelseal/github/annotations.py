"""Where findings point: ``::error``/``::warning`` annotations for a verdict, on the
Dockerfile line, the model file or the policy key that decided them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from modelseal.errors import ConfigError
from modelseal.findings import Status
from modelseal.github.commands import Annotation
from modelseal.judge import Decision, Outcome

if TYPE_CHECKING:
    from collections.abc import Mapping

    from modelseal.judge import Verdict
    from modelseal.policy import LoadedPolicy

__all__ = [
    "MAX_ANNOTATIONS",
    "POLICY_TITLE",
    "Places",
    "annotations_for_verdict",
    "capped",
    "gate_section",
    "policy_changed",
    "policy_positions",
    "relative",
    "text_annotations",
]

#: GitHub shows at most 10 error and 10 warning annotations per step; more are dropped silently.
MAX_ANNOTATIONS: Final = 10
POLICY_TITLE: Final = "modelseal: invalid policy file"
_FILE_LINE = re.compile(
    r"^(?P<path>[^\s:][^:]*?):(?P<line>\d+)(?::(?P<col>\d+))?(?::\s*(?P<msg>.*))?$"
)
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)+")


def gate_section(gate: str) -> str:
    """The policy section a gate's settings live in (where a finding without a better place
    is pointed at); empty for a gate without one."""
    from modelseal import gates

    return gates.SWITCHES.get(gate, "")


def policy_positions(path: Path) -> dict[str, tuple[int, int]]:
    """Dotted policy key (``vulnerabilities.fail_on``) → 1-based (line, column) of the key in
    the file; empty when the file cannot be read (the policy loader reports why)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    from modelseal.bounded import read_input_text
    from modelseal.policy.loader import MAX_POLICY_BYTES

    try:
        text = read_input_text(path, what="policy file", limit=MAX_POLICY_BYTES)
        data = YAML(typ="rt").load(text)
    except (ConfigError, YAMLError, ValueError, TypeError, RecursionError):
        return {}
    out: dict[str, tuple[int, int]] = {}

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, CommentedMap):
            return
        for key in node:
            dotted = f"{prefix}.{key}" if prefix else str(key)
            try:
                line, col = node.lc.key(key)
            except (KeyError, TypeError, ValueError):
                continue
            out.setdefault(dotted, (int(line) + 1, int(col) + 1))
            walk(node[key], dotted)

    walk(data, "")
    return out


@dataclass(frozen=True)
class Places:
    """What locating a finding needs: the workspace (annotation paths are relative to it), the
    build context, the policy file as annotations name it, and the positions of its keys."""

    workspace: Path
    context: Path
    policy: str | None
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def repo_file(self, text: str) -> str | None:
        """``text`` as a path relative to the workspace, if it names an existing file there
        (relative to the working directory or the build context)."""
        for candidate in (Path(text), self.context / text):
            try:
                if candidate.is_file():
                    return relative(candidate, self.workspace)
            except OSError:
                continue
        return None

    def policy_key(self, key: str) -> tuple[str, int, int] | None:
        if self.policy is None or key not in self.positions:
            return None
        line, col = self.positions[key]
        return self.policy, line, col


def relative(path: Path, workspace: Path) -> str:
    try:
        return path.resolve().relative_to(workspace.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _locate(decision: Decision, places: Places) -> Annotation:
    """An annotation skeleton pointing at the best place for a finding: its own file and line
    (a Dockerfile FROM), a policy key it names, the policy key its decision names (the rule
    that was breached), the gate's policy section, or the policy file."""
    finding = decision.finding
    location = (finding.location or "").split(" (")[0].strip()
    if location:
        m = _FILE_LINE.match(location)
        if m and (path := places.repo_file(m.group("path"))):
            col = int(m.group("col")) if m.group("col") else None
            return Annotation("error", "", file=path, line=int(m.group("line")), col=col)
        if path := places.repo_file(location):
            return Annotation("error", "", file=path)
        if at := places.policy_key(location):
            return Annotation("error", "", file=at[0], line=at[1], col=at[2])
    for key in sorted(_DOTTED.findall(decision.reason), key=len, reverse=True):
        if at := places.policy_key(key):
            return Annotation("error", "", file=at[0], line=at[1], col=at[2])
    section = (
        "vulnerabilities"
        if finding.evidence.get("type") == "vulnerability"
        else gate_section(finding.gate)
    )
    if at := places.policy_key(section):
        return Annotation("error", "", file=at[0], line=at[1], col=at[2])
    return Annotation("error", "", file=places.policy)


def _finding_annotation(level: str, d: Decision, places: Places) -> Annotation:
    f = d.finding
    where = _locate(d, places)
    title = f"modelseal {f.gate}: {f.id} ({f.severity.name}) {f.subject}"
    message = f"{f.title} — {d.outcome.value}: {d.reason}"
    if f.fixed_in:
        message += f" (fixed in {f.fixed_in})"
    if f.location:
        message += f" [at {f.location}]"
    return Annotation(level, message, title=title, file=where.file, line=where.line, col=where.col)


def text_annotations(text: str, title: str, places: Places) -> list[Annotation]:
    """Annotations for an error text: one per ``FILE:LINE[:COL]: message`` line that names a
    file in the workspace, else one for the whole text."""
    out = []
    for raw in text.splitlines():
        m = _FILE_LINE.match(raw.strip())
        if m and (path := places.repo_file(m.group("path"))):
            col = int(m.group("col")) if m.group("col") else None
            message = m.group("msg") or raw.strip()
            out.append(Annotation("error", message, title, path, int(m.group("line")), col))
    return out or [Annotation("error", text.strip() or title, title)]


def capped(annotations: Sequence[Annotation], level: str, what: str) -> list[Annotation]:
    """At most :data:`MAX_ANNOTATIONS`; the last one says how many more there are."""
    if len(annotations) <= MAX_ANNOTATIONS:
        return list(annotations)
    more = len(annotations) - (MAX_ANNOTATIONS - 1)
    note = Annotation(
        level,
        f"… and {more} more {what}; the job summary and report.json list every one.",
        title=f"modelseal: {more} more {what}",
    )
    return [*annotations[: MAX_ANNOTATIONS - 1], note]


def annotations_for_verdict(verdict: Verdict, places: Places) -> list[Annotation]:
    """Errors for errored gates and failing findings, warnings for findings the policy lets
    through with a warning."""
    errors: list[Annotation] = []
    warnings: list[Annotation] = []
    failing: list[Decision] = []
    for g in verdict.gates:
        error = g.error or ""
        # A gate not run because the one it needs errored adds nothing to that one's error.
        if g.status is Status.ERRORED and error and not error.startswith("not run:"):
            errors += text_annotations(error, f"modelseal: gate {g.result.gate} errored", places)
        for d in g.decisions:
            if d.outcome is Outcome.FAIL:
                failing.append(d)
            elif d.outcome is Outcome.WARN:
                warnings.append(_finding_annotation("warning", d, places))
    failing.sort(key=lambda d: -d.finding.severity)
    errors += [_finding_annotation("error", d, places) for d in failing]
    return [
        *capped(errors, "error", "errors"),
        *capped(warnings, "warning", "warnings"),
    ]


def policy_changed(
    policy: LoadedPolicy, policy_file: Path | None, places: Places
) -> Annotation | None:
    """A warning when the run was judged by the policy of a git ref (a pull request's base)
    and the checked-out policy file differs from it: the change is not in force until merged."""
    from modelseal.bounded import read_input
    from modelseal.policy.loader import MAX_POLICY_BYTES

    if not policy.ref or policy_file is None:
        return None
    here: str | None
    if not (policy_file.exists() or policy_file.is_symlink()):
        here = None  # deleted (or never there): differs from a ref that has one
        if policy.source == "<defaults>":
            return None
    else:
        try:
            # Bounded: the PR's copy may be a link to /dev/zero or a huge file.
            data = read_input(policy_file, what="policy file", limit=MAX_POLICY_BYTES)
            here = hashlib.sha256(data).hexdigest()
        except ConfigError:
            here = "unreadable"  # a FIFO, a device, too large: it differs, and is warned of
    if here == policy.sha256:
        return None
    commit = (policy.commit or "")[:12]
    return Annotation(
        "warning",
        f"This change edits the policy file; the run was judged by {places.policy or policy_file}"
        f" as of {policy.ref} ({commit}, sha256:{policy.sha256[:12]}…), not by the edited copy. "
        "The edit takes effect once it is merged.",
        title="modelseal: policy changed",
        file=places.policy if here is not None else None,
        line=1 if here is not None else None,
    )
