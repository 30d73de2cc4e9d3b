"""The GitHub Action adapter: ``python -m modelseal action``.

``action.yml`` hands every input over as a ``MODELSEAL_*`` environment variable, never pasted
into script text, so no input can turn into shell code. This module validates them, runs the
pipeline in-process through the command line (``modelseal run …`` as an argument list, no
shell) and turns what the run wrote into what GitHub shows:

* ``$GITHUB_OUTPUT``: digest, image reference, verdict, exit code, the policy's ref and digest,
  and the paths of the report, SBOM, SARIF, provenance and Sigstore bundles (every output is always set, empty when it does
  not apply, so later steps can test it);
* ``$GITHUB_STEP_SUMMARY``: the verdict table and a collapsible list of findings. Finding text
  comes from scanned images and advisory databases, so every piece of it is escaped;
* ``::error``/``::warning`` workflow commands that point at the policy or Dockerfile line —
  and a warning when a pull request edits the policy that its base branch's copy judged
  (``policy-ref``, by default the base branch on pull_request events).

The exit code is the command line's: 0 passed, 1 policy breached, 2 bad input or policy file,
3 a gate errored, 4 a bug. Nothing here reads or prints a secret: the signing key's password
reaches the signer as ``MODELSEAL_KEY_PASSWORD`` without passing through this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import io
import json
import os
import re
import secrets
import sys
import traceback
import uuid
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TextIO

from modelseal import fsio, gates
from modelseal.errors import ConfigError, ExitCode
from modelseal.policy.model import PLATFORM_PATTERN, TAG_PATTERN

__all__ = [
    "DEFAULTS",
    "INPUT_ENV",
    "OUTPUT_NAMES",
    "ActionInputError",
    "ActionInputs",
    "Annotation",
    "Places",
    "annotations_for_report",
    "collect_outputs",
    "escape_data",
    "escape_property",
    "format_output",
    "md_escape",
    "parse_inputs",
    "policy_positions",
    "render_summary",
    "run_action",
    "run_argv",
    "verify_argv",
]

INPUT_ENV: Final[Mapping[str, str]] = MappingProxyType(
    {
        "policy": "MODELSEAL_POLICY",
        "policy-ref": "MODELSEAL_POLICY_REF",
        "context": "MODELSEAL_CONTEXT",
        "dockerfile": "MODELSEAL_DOCKERFILE",
        "image": "MODELSEAL_IMAGE",
        "tags": "MODELSEAL_TAGS",
        "labels": "MODELSEAL_LABELS",
        "annotations": "MODELSEAL_ANNOTATIONS",
        "platforms": "MODELSEAL_PLATFORMS",
        "push": "MODELSEAL_PUSH",
        "github-token": "MODELSEAL_GITHUB_TOKEN",
        "sign": "MODELSEAL_SIGN",
        "key-file": "MODELSEAL_KEY_FILE",
        "trust-config": "MODELSEAL_TRUST_CONFIG",
        "build-args": "MODELSEAL_BUILD_ARGS",
        "build-contexts": "MODELSEAL_BUILD_CONTEXTS",
        "builder": "MODELSEAL_BUILDER",
        "buildkit-image": "MODELSEAL_BUILDKIT_IMAGE",
        "cache-from": "MODELSEAL_CACHE_FROM",
        "cache-to": "MODELSEAL_CACHE_TO",
        "out-dir": "MODELSEAL_OUT_DIR",
        "verify-identity": "MODELSEAL_VERIFY_IDENTITY",
        "verify-identity-regexp": "MODELSEAL_VERIFY_IDENTITY_REGEXP",
        "verify-issuer": "MODELSEAL_VERIFY_ISSUER",
    }
)
"""action.yml input name → the environment variable it arrives in."""

GITHUB_OIDC_ISSUER: Final = "https://token.actions.githubusercontent.com"

DEFAULTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "context": ".",
        "out-dir": "modelseal-out",
        "push": "false",
        "verify-issuer": GITHUB_OIDC_ISSUER,
        "github-token": "${{ github.token }}",  # evaluated by the runner, never by modelseal
    }
)
"""What an unset or empty input means (action.yml declares the same defaults; a test checks)."""

BUNDLE_KEYS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "signature": ("image", "signature"),
        "provenance": ("provenance",),
        "sbom": ("sbom",),
        "scan-report": ("scan-report",),
    }
)
"""``<kind>-bundle-path`` output → the ``publish.json`` bundle keys it is read from, first
found wins (the image signature's bundle is listed as ``image``)."""
BUNDLE_KINDS: Final = tuple(BUNDLE_KEYS)

OUTPUT_NAMES: Final = (
    "verdict",
    "exit-code",
    "digest",
    "image-ref",
    "out-dir",
    "report-path",
    "summary-path",
    "sarif-path",
    "sbom-path",
    "provenance-path",
    *(f"{kind}-bundle-path" for kind in BUNDLE_KINDS),
    "policy-ref",
    "policy-digest",
)
"""Every output the adapter writes (action.yml maps each one; a test checks)."""

SIGN_MODES: Final = ("keyless", "key", "none")
#: GitHub shows at most 10 error and 10 warning annotations per step; more are dropped silently.
MAX_ANNOTATIONS: Final = 10
#: The job summary is capped at 1 MiB; the finding list stops well before.
MAX_SUMMARY_FINDINGS: Final = 200
MAX_CELL: Final = 300

_BUILD_ARG = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,254}")
#: buildx's --annotation key: optionally the level(s) it goes to (``index:``, ``manifest:``,
#: ``manifest[linux/arm64]:`` … as docker/metadata-action writes them), then the key.
_ANNOTATION_KEY = re.compile(
    r"(?:(?:manifest|index|manifest-descriptor|index-descriptor)"
    r"(?:\[[a-z0-9_]+/[a-z0-9_]+(?:/[a-z0-9_]+)?\])?"
    r"(?:,(?:manifest|index|manifest-descriptor|index-descriptor))*:)?"
    r"[A-Za-z0-9][A-Za-z0-9._/-]{0,254}"
)
#: Events whose base ref is known: the policy of that ref judges the run (``_base_ref``).
_PR_EVENTS: Final = ("pull_request", "pull_request_target", "merge_group")
#: The event payload is read only for the base ref; GitHub caps it well below this.
_MAX_EVENT_BYTES: Final = 16 * 1024 * 1024
_CONTEXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_URL = re.compile(r"https?://[^\s]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0, DEL and C1 (\x9b is CSI)
_FILE_LINE = re.compile(
    r"^(?P<path>[^\s:][^:]*?):(?P<line>\d+)(?::(?P<col>\d+))?(?::\s*(?P<msg>.*))?$"
)
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)+")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: The policy section each gate's settings live in (where a finding without a better place
#: is pointed at), from the gates' specs.
_GATE_SECTION: Final[Mapping[str, str]] = gates.SWITCHES
_ICONS: Final[Mapping[str, str]] = MappingProxyType(
    {"PASSED": "✅", "FAILED": "❌", "ERRORED": "⚠️", "SKIPPED": "⏭️"}
)


# --- inputs --------------------------------------------------------------------------------


class ActionInputError(ConfigError):
    """One or more action inputs are invalid; ``problems`` holds (input name, message) pairs,
    all of them, so one run shows everything to fix."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        lines = [f"input {name}: {message}" for name, message in self.problems]
        super().__init__("invalid action input:\n" + "\n".join(lines))


@dataclass(frozen=True)
class ActionInputs:
    """The validated inputs."""

    context: str
    out_dir: str
    policy: str | None = None
    dockerfile: str | None = None
    image: str | None = None
    push: bool = False
    sign: str | None = None
    """keyless, key or none; None: the policy's ``sign.mode`` (keyless unless set)."""
    key_file: str | None = None
    trust_config: str | None = None
    build_args: tuple[tuple[str, str], ...] = ()
    build_contexts: tuple[tuple[str, str], ...] = ()
    builder: str | None = None
    buildkit_image: str | None = None
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    verify_identity: str | None = None
    verify_identity_regexp: str | None = None
    verify_issuer: str = GITHUB_OIDC_ISSUER
    tags: tuple[str, ...] = ()
    """Tags to move (bare, or full references of ``image``'s repository)."""
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    platforms: tuple[str, ...] = ()
    policy_ref: str | None = None
    """The git ref the policy is read from; on pull_request events the base branch."""

    @property
    def self_check(self) -> bool:
        """Whether the pushed image's signature is verified after publishing."""
        return bool(self.verify_identity or self.verify_identity_regexp)


def _shown(value: str) -> str:
    """An input value for an error message: quoted, one line, clipped (inputs are not secret,
    but a message should not be a wall of text)."""
    text = value if len(value) <= 80 else value[:79] + "…"
    return repr(text)


class _Reader:
    """Reads and checks inputs from the environment, collecting every problem."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[tuple[str, str]] = []

    def problem(self, name: str, message: str) -> None:
        self.problems.append((name, message))

    def raw(self, name: str) -> str:
        value = self.env.get(INPUT_ENV[name], "")
        return value if value.strip() else DEFAULTS.get(name, "")

    def single(self, name: str) -> str | None:
        """A one-line value that must not look like an option; None when empty."""
        value = self.raw(name).strip()
        if not value:
            return None
        if "\n" in value or "\r" in value:
            self.problem(name, "must be a single line")
        elif _CONTROL.search(value):
            self.problem(name, "contains a control character")
        elif value.startswith("-"):
            # The value goes to the command line as an option's argument; one starting with
            # "-" could be read as an option of its own.
            self.problem(name, f"must not start with '-' (got {_shown(value)})")
        else:
            return value
        return None

    def boolean(self, name: str) -> bool:
        value = self.raw(name).strip()
        if value not in ("true", "false"):
            self.problem(name, f"expected true or false, got {_shown(value)}")
            return False
        return value == "true"

    def choice(self, name: str, choices: Sequence[str]) -> str | None:
        """One of ``choices``; None when empty."""
        value = self.raw(name).strip()
        if not value:
            return None
        if value not in choices:
            self.problem(name, f"expected one of {', '.join(choices)}, got {_shown(value)}")
            return None
        return value

    def items(self, name: str) -> list[str]:
        """A multi-line or comma-separated list (blank items skipped), each checked like a
        single value."""
        out: list[str] = []
        for item in re.split(r"[,\n]", self.raw(name)):
            item = item.strip()
            if not item:
                continue
            if _CONTROL.search(item):
                self.problem(name, "contains a control character")
            elif item.startswith("-"):
                self.problem(name, f"must not start with '-' (got {_shown(item)})")
            else:
                out.append(item)
        return out

    def matching(self, name: str, pattern: str) -> str | None:
        """A single-line value matching a policy pattern; None when empty."""
        from modelseal.policy import model

        value = self.single(name)
        if value is not None and re.fullmatch(pattern, value) is None:
            self.problem(name, f"{model.PATTERN_MESSAGES[pattern]}, got {_shown(value)}")
            return None
        return value

    def caches(self, name: str, direction: Literal["from", "to"]) -> tuple[str, ...]:
        """Cache specs, one per line (blank lines skipped)."""
        from modelseal.policy.model import cache_spec_problem

        out: list[str] = []
        for number, line in enumerate(self.raw(name).splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            problem = cache_spec_problem(line, direction)
            if problem:
                self.problem(name, f"line {number}: {problem}")
            else:
                out.append(line)
        return tuple(out)

    def pairs(self, name: str, key: re.Pattern[str], what: str) -> tuple[tuple[str, str], ...]:
        """``NAME=VALUE`` lines (blank lines skipped)."""
        out: list[tuple[str, str]] = []
        for number, line in enumerate(self.raw(name).splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            k, eq, v = line.partition("=")
            where = f"line {number}"
            if not eq or not key.fullmatch(k):
                self.problem(name, f"{where}: expected {what}=VALUE, got {_shown(line)}")
            elif _CONTROL.search(v):
                self.problem(name, f"{where}: the value of {k} contains a control character")
            else:
                out.append((k, v))
        return tuple(out)


def parse_inputs(env: Mapping[str, str]) -> ActionInputs:
    """Validate the ``MODELSEAL_*`` inputs; raises :class:`ActionInputError` listing every
    problem."""
    r = _Reader(env)
    context = r.single("context") or "."
    out_dir = r.single("out-dir") or "modelseal-out"
    policy = r.single("policy")
    dockerfile = r.single("dockerfile")
    image = r.single("image")
    if image is not None:
        # The very check `--push` makes, so a bad reference is reported before any build.
        from modelseal.publish.publisher import ImageRef

        try:
            ImageRef.parse(image, what="value")
        except ConfigError as e:
            r.problem("image", str(e))
    push = r.boolean("push")
    sign = r.choice("sign", SIGN_MODES)
    key_file = r.single("key-file")
    trust_config = r.single("trust-config")
    build_args = r.pairs("build-args", _BUILD_ARG, "NAME")
    contexts = r.pairs("build-contexts", _CONTEXT_NAME, "NAME")
    for name, value in contexts:
        if not value.strip() or value.startswith("-"):
            r.problem("build-contexts", f"the value of {name} must be a path or URL")
    from modelseal.policy.model import BUILDER_PATTERN, BUILDKIT_IMAGE_PATTERN

    builder = r.matching("builder", BUILDER_PATTERN)
    buildkit_image = r.matching("buildkit-image", BUILDKIT_IMAGE_PATTERN)
    cache_from = r.caches("cache-from", "from")
    cache_to = r.caches("cache-to", "to")
    identity = r.single("verify-identity")
    identity_re = r.single("verify-identity-regexp")
    issuer = r.single("verify-issuer") or GITHUB_OIDC_ISSUER
    if not _URL.fullmatch(issuer):
        r.problem("verify-issuer", f"expected an http(s) URL, got {_shown(issuer)}")

    tags = _tags(r, image)
    if image is None and push:
        # docker/metadata-action's `tags` output names the image: its first full reference.
        image = next((t for t in tags if "/" in t), None)
        tags = tuple(t for t in tags if t != image)
    labels = r.pairs("labels", _LABEL_KEY, "KEY")
    annotations = r.pairs("annotations", _ANNOTATION_KEY, "KEY")
    platforms = tuple(dict.fromkeys(r.items("platforms")))
    for p in platforms:
        if not re.fullmatch(PLATFORM_PATTERN, p):
            r.problem("platforms", f"expected os/arch or os/arch/variant, got {_shown(p)}")
    token = r.env.get(INPUT_ENV["github-token"], "")
    if "\n" in token.strip() or _CONTROL.search(token):
        r.problem("github-token", "must be one line without control characters")  # never shown
    policy_ref = r.single("policy-ref") or _base_ref(r)
    if policy_ref is not None:
        from modelseal.policy.gitref import check_ref

        try:
            check_ref(policy_ref, what="value")
        except ConfigError as e:
            r.problem("policy-ref", str(e))
    if push and image is None and not any(n in ("image", "tags") for n, _ in r.problems):
        r.problem("image", "required when push is true (or give full references in tags)")
    if push and sign == "key" and key_file is None:
        r.problem("key-file", "required when sign is key")
    if key_file is not None and sign not in ("key", None):
        r.problem("key-file", f"only used with sign: key (sign is {sign})")
    if identity_re and not (identity_re.startswith("^") and identity_re.endswith("$")):
        # An unanchored pattern also matches identities it was not meant for.
        r.problem("verify-identity-regexp", "must be anchored: ^…$")
    elif identity_re:
        from modelseal.sign.identity import IdentityRegexpError, compile_identity_regexp

        try:
            compile_identity_regexp(identity_re)
        except IdentityRegexpError as e:
            r.problem("verify-identity-regexp", f"is {e}")
    if identity and identity_re:
        r.problem("verify-identity", "give verify-identity or verify-identity-regexp, not both")
    if identity or identity_re:
        which = "verify-identity" if identity else "verify-identity-regexp"
        if not push:
            r.problem(which, "the self-check verifies the pushed image: set push: true")
        elif sign not in ("keyless", None):
            r.problem(which, "only keyless signatures are verified by identity (sign: keyless)")
    if r.problems:
        raise ActionInputError(r.problems)
    return ActionInputs(
        context=context,
        out_dir=out_dir,
        policy=policy,
        dockerfile=dockerfile,
        image=image,
        push=push,
        sign=sign,
        key_file=key_file,
        trust_config=trust_config,
        build_args=build_args,
        build_contexts=contexts,
        builder=builder,
        buildkit_image=buildkit_image,
        cache_from=cache_from,
        cache_to=cache_to,
        verify_identity=identity,
        verify_identity_regexp=identity_re,
        verify_issuer=issuer,
        tags=tags,
        labels=labels,
        annotations=annotations,
        platforms=platforms,
        policy_ref=policy_ref,
    )


def _tags(r: _Reader, image: str | None) -> tuple[str, ...]:
    """The ``tags`` input: bare tags, or full ``REGISTRY/REPOSITORY:TAG`` references (as
    docker/metadata-action writes them) all of one repository — ``image``'s when given."""
    from modelseal.publish.publisher import ImageRef

    out: list[str] = []
    names: set[str] = set()
    if image is not None:
        with contextlib.suppress(ConfigError):
            names.add(ImageRef.parse(image, what="value").name)
    for item in r.items("tags"):
        if "/" not in item:
            if re.fullmatch(TAG_PATTERN, item):
                out.append(item)
            else:
                r.problem("tags", f"{_shown(item)} is neither a tag nor REGISTRY/REPOSITORY:TAG")
            continue
        try:
            ref = ImageRef.parse(item, what="value")
        except ConfigError as e:
            r.problem("tags", str(e))
            continue
        if ref.tag is None:
            r.problem("tags", f"{_shown(item)} names no tag")
        elif names and ref.name not in names:
            r.problem(
                "tags",
                f"{_shown(item)} is not in {sorted(names)[0]}: modelseal publishes to one "
                "repository (run it once per repository)",
            )
        else:
            names.add(ref.name)
            out.append(item)
    return tuple(dict.fromkeys(out))


def _base_ref(r: _Reader) -> str | None:
    """The base branch on pull_request, pull_request_target (GITHUB_BASE_REF, else the event
    payload) and merge_group events (the payload's ``merge_group.base_ref``); None otherwise.
    A PR must not be judged by the policy file it edits. Other events that may check out a
    PR's code (issue_comment, workflow_run) carry no base ref: set policy-ref there."""
    env = r.env
    event_name = env.get("GITHUB_EVENT_NAME")
    if event_name not in _PR_EVENTS:
        return None
    if event_name != "merge_group" and env.get("GITHUB_BASE_REF", "").strip():
        return env["GITHUB_BASE_REF"].strip()
    try:
        with open(env.get("GITHUB_EVENT_PATH") or "", "rb") as f:
            event = json.loads(f.read(_MAX_EVENT_BYTES))
        if event_name == "merge_group":
            ref = event["merge_group"]["base_ref"]
        else:
            ref = event["pull_request"]["base"]["ref"]
    except (OSError, ValueError, KeyError, TypeError):
        ref = None
    if isinstance(ref, str) and ref:
        return ref
    # Refused rather than judged by the pull request's own policy file.
    r.problem(
        "policy-ref",
        f"a {event_name} event without a base ref (GITHUB_BASE_REF, event payload): set "
        "policy-ref to the branch whose policy judges pull requests",
    )
    return None


def run_argv(inputs: ActionInputs) -> list[str]:
    """The ``modelseal run`` arguments for these inputs.

    Options are written ``--name=value`` and the context comes after ``--``, so no value can
    be taken for an option whatever it holds.
    """
    argv = ["run"]
    if inputs.policy is not None:
        argv.append(f"--policy={inputs.policy}")
    if inputs.dockerfile is not None:
        argv.append(f"--file={inputs.dockerfile}")
    argv.append(f"--out-dir={inputs.out_dir}")
    if inputs.policy_ref is not None:
        argv.append(f"--policy-ref={inputs.policy_ref}")
    argv += [f"--build-arg={k}={v}" for k, v in inputs.build_args]
    argv += [f"--build-context={k}={v}" for k, v in inputs.build_contexts]
    argv += [f"--label={k}={v}" for k, v in inputs.labels]
    argv += [f"--annotation={k}={v}" for k, v in inputs.annotations]
    argv += [f"--platform={p}" for p in inputs.platforms]
    if inputs.builder is not None:
        argv.append(f"--builder={inputs.builder}")
    if inputs.buildkit_image is not None:
        argv.append(f"--buildkit-image={inputs.buildkit_image}")
    argv += [f"--cache-from={c}" for c in inputs.cache_from]
    argv += [f"--cache-to={c}" for c in inputs.cache_to]
    if inputs.push:
        assert inputs.image is not None  # parse_inputs requires it
        argv.append(f"--push={inputs.image}")
        argv += [f"--tag={t}" for t in inputs.tags]
        if inputs.sign is not None:
            argv.append(f"--sign={inputs.sign}")
        if inputs.key_file is not None:
            argv.append(f"--key={inputs.key_file}")
        if inputs.trust_config is not None:
            argv.append(f"--trust-config={inputs.trust_config}")
    argv += ["--", inputs.context]
    return argv


def verify_argv(inputs: ActionInputs, reference: str) -> list[str]:
    """The ``modelseal verify`` arguments of the post-publish self-check (under the run's
    policy, so its ``verify`` section's expectations apply too)."""
    argv = ["verify"]
    if inputs.policy is not None:
        argv.append(f"--policy={inputs.policy}")
    if inputs.verify_identity:
        argv.append(f"--certificate-identity={inputs.verify_identity}")
    else:
        argv.append(f"--certificate-identity-regexp={inputs.verify_identity_regexp}")
    argv.append(f"--certificate-oidc-issuer={inputs.verify_issuer}")
    if inputs.trust_config is not None:
        argv.append(f"--trust-config={inputs.trust_config}")
    argv += ["--", reference]
    return argv


# --- workflow commands ---------------------------------------------------------------------


def escape_data(text: str) -> str:
    """Escape a workflow command's message (GitHub's toolkit ``escapeData``)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command property value (``escapeProperty``): also ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


@dataclass(frozen=True)
class Annotation:
    """One ``::error``/``::warning`` annotation."""

    level: str  # "error" | "warning" | "notice"
    message: str
    title: str | None = None
    file: str | None = None
    line: int | None = None
    col: int | None = None

    def command(self) -> str:
        """The workflow command line."""
        props = []
        if self.file:
            props.append(f"file={escape_property(_inert(self.file))}")
            if self.line:
                props.append(f"line={self.line}")
                if self.col:
                    props.append(f"col={self.col}")
        if self.title:
            props.append(f"title={escape_property(_inert(self.title))}")
        head = f"::{self.level} {','.join(props)}" if props else f"::{self.level}"
        return f"{head}::{escape_data(_inert(self.message))}"


def _inert(text: str) -> str:
    """Annotation text without terminal controls (line breaks stay: escape_data encodes them)."""
    from modelseal.untrusted import untrusted

    return untrusted(text, markup=False, multiline=True)


def _log_error(gh: _GitHub, text: str) -> None:
    """An error for the log, printed inside the stop-commands window and escaped: it quotes
    inputs and file names, and a line of it starting with ``::`` must not run."""
    from modelseal.untrusted import untrusted

    with gh.commands_off():
        print(f"modelseal: {untrusted(text, markup=False, multiline=True)}", file=sys.stderr)
        sys.stderr.flush()


def format_output(name: str, value: str) -> str:
    """One ``$GITHUB_OUTPUT`` entry in the multi-line form, with a random delimiter so a value
    cannot end the entry early and set other outputs."""
    delimiter = f"ghadelimiter_{uuid.uuid4()}"
    if delimiter in value or delimiter in name:  # pragma: no cover - 122 random bits
        raise ValueError("output value contains its delimiter")
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


# --- where findings point ------------------------------------------------------------------


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
                    return _relative(candidate, self.workspace)
            except OSError:
                continue
        return None

    def policy_key(self, key: str) -> tuple[str, int, int] | None:
        if self.policy is None or key not in self.positions:
            return None
        line, col = self.positions[key]
        return self.policy, line, col


def _relative(path: Path, workspace: Path) -> str:
    try:
        return path.resolve().relative_to(workspace.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _locate(finding: Mapping[str, Any], reason: str, places: Places) -> Annotation:
    """An annotation skeleton pointing at the best place for a finding: its own file and line
    (a Dockerfile FROM), a policy key it names, the policy key its decision names (the rule
    that was breached), the gate's policy section, or the policy file."""
    location = str(finding.get("location") or "").split(" (")[0].strip()
    if location:
        m = _FILE_LINE.match(location)
        if m and (path := places.repo_file(m.group("path"))):
            col = int(m.group("col")) if m.group("col") else None
            return Annotation("error", "", file=path, line=int(m.group("line")), col=col)
        if path := places.repo_file(location):
            return Annotation("error", "", file=path)
        if at := places.policy_key(location):
            return Annotation("error", "", file=at[0], line=at[1], col=at[2])
    for key in sorted(_DOTTED.findall(reason), key=len, reverse=True):
        if at := places.policy_key(key):
            return Annotation("error", "", file=at[0], line=at[1], col=at[2])
    evidence = finding.get("evidence") or {}
    section = (
        "vulnerabilities"
        if evidence.get("type") == "vulnerability"
        else _GATE_SECTION.get(str(finding.get("gate")), "")
    )
    if at := places.policy_key(section):
        return Annotation("error", "", file=at[0], line=at[1], col=at[2])
    return Annotation("error", "", file=places.policy)


def _finding_annotation(level: str, f: Mapping[str, Any], places: Places) -> Annotation:
    reason = str(f.get("reason") or "")
    where = _locate(f, reason, places)
    title = f"modelseal {f.get('gate')}: {f.get('id')} ({f.get('severity')}) {f.get('subject')}"
    message = f"{f.get('title')} — {f.get('decision')}: {reason}"
    if f.get("fixed_in"):
        message += f" (fixed in {f['fixed_in']})"
    if f.get("location"):
        message += f" [at {f['location']}]"
    return Annotation(level, message, title=title, file=where.file, line=where.line, col=where.col)


def _text_annotations(text: str, title: str, places: Places) -> list[Annotation]:
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


def _capped(annotations: Sequence[Annotation], level: str, what: str) -> list[Annotation]:
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


def annotations_for_report(report: Mapping[str, Any], places: Places) -> list[Annotation]:
    """Errors for errored gates and failing findings, warnings for findings the policy lets
    through with a warning."""
    from modelseal.reports.json_report import gate_summary

    errors: list[Annotation] = []
    warnings: list[Annotation] = []
    failing: list[Mapping[str, Any]] = []
    for g in map(gate_summary, report.get("gates", [])):
        error = str(g.get("error") or "")
        # A gate not run because the one it needs errored adds nothing to that one's error.
        if g.get("status") == "ERRORED" and error and not error.startswith("not run:"):
            title = f"modelseal: gate {g.get('gate')} errored"
            errors += _text_annotations(error, title, places)
        for f in g.get("findings", []):
            if f.get("decision") == "fail":
                failing.append(f)
            elif f.get("decision") == "warn":
                warnings.append(_finding_annotation("warning", f, places))
    failing.sort(key=lambda f: -_severity_rank(str(f.get("severity"))))
    errors += [_finding_annotation("error", f, places) for f in failing]
    return [
        *_capped(errors, "error", "errors"),
        *_capped(warnings, "warning", "warnings"),
    ]


def _severity_rank(name: str) -> int:
    return {"CRITICAL": 4, "HIGH": 3, "MEDIUM": 2, "LOW": 1}.get(name.upper(), 0)


# --- the step summary ----------------------------------------------------------------------

#: Markdown punctuation that can open a link or image (``[``), emphasis, a code span or a table
#: cell, anywhere in a line (a cell never starts a line, so list and heading markers are inert).
#: ``<``, ``>`` and ``&`` are left to html.escape: a backslash before an entity would show it.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_escape(text: str, limit: int = MAX_CELL) -> str:
    """Text from a report as inert Markdown for one table cell: no HTML, links, images,
    emphasis or table breaks; line breaks become ``<br>``."""
    text = _ANSI.sub("", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = html.escape(text, quote=False)
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return text.replace("\n", "<br>")


def _code(text: str | None) -> str:
    """Monospace, escaped (a Markdown code span cannot hold every string safely)."""
    return f"<code>{md_escape(text)}</code>" if text else ""


def _pre(text: str) -> str:
    """A preformatted block whose content cannot become HTML or Markdown."""
    return f"<pre>{html.escape(_ANSI.sub('', text).strip(), quote=True)}</pre>"


def render_summary(
    report: Mapping[str, Any] | None,
    outputs: Mapping[str, str],
    *,
    errors: Sequence[str] = (),
) -> str:
    """The job summary: verdict, what was published, the gate table and the findings."""
    verdict = outputs.get("verdict") or "ERRORED"
    out = [f"## modelseal: {_ICONS.get(verdict, '')} {md_escape(verdict)}", ""]
    rows = [
        ("image", _code(outputs.get("image-ref")) or "not published"),
        ("digest", _code(outputs.get("digest")) or "—"),
        ("exit code", _code(outputs.get("exit-code")) or "—"),
    ]
    if report is not None:
        pol = report.get("policy") or {}
        sha = _code(str(pol.get("sha256") or "")[:12])
        at = ""
        if pol.get("ref"):
            at = f" at {_code(str(pol['ref']))} {_code(str(pol.get('commit') or '')[:12])}"
        rows.append(("policy", f"{_code(str(pol.get('source')))}{at} (sha256 {sha})"))
    out += ["| | |", "|---|---|"]
    out += [f"| {key} | {value} |" for key, value in rows]
    if errors:
        out += ["", "### What went wrong", "", _pre("\n".join(errors))]
    if report is not None:
        out += _summary_gates(report)
    out.append("")
    return "\n".join(out)


def _summary_gates(report: Mapping[str, Any]) -> list[str]:
    from modelseal.reports.json_report import gate_summary

    gates = [gate_summary(g) for g in report.get("gates", [])]
    out = ["", "| gate | status | findings | time | note |", "|---|---|---|---|---|"]
    for g in gates:
        findings = list(g.get("findings", []))
        failing = sum(1 for f in findings if f.get("decision") == "fail")
        counts = f"{failing} failing / {len(findings)}" if findings else "0"
        note = str(g.get("error") or "").strip().splitlines()[:1]
        digest = (g.get("facts") or {}).get("image.digest")
        text = note[0] if note else (f"image {digest}" if digest else "")
        status = str(g.get("status"))
        out.append(
            f"| {md_escape(str(g.get('gate')))} | {_ICONS.get(status, '')} {md_escape(status)} "
            f"| {counts} | {float(g.get('duration_s') or 0):.1f}s | {md_escape(text)} |"
        )
    for g in gates:
        if g.get("status") == "ERRORED" and g.get("error"):
            out += [
                "",
                f"<details><summary>{html.escape(str(g.get('gate')))}: why it errored</summary>",
                "",
                _pre(str(g["error"])),
                "",
                "</details>",
            ]
    decisions = [f for g in gates for f in g.get("findings", [])]
    if decisions:
        order = {"fail": 0, "warn": 1, "ignored": 2}
        ranked = sorted(
            decisions,
            key=lambda f: (
                order.get(str(f.get("decision")), 3),
                -_severity_rank(str(f.get("severity"))),
            ),
        )
        failing = sum(1 for f in decisions if f.get("decision") == "fail")
        out += [
            "",
            f"<details><summary>{len(decisions)} finding(s), {failing} failing</summary>",
            "",
            "| decision | severity | id | subject | where | title | why |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in ranked[:MAX_SUMMARY_FINDINGS]:
            cells = [
                f.get("decision"),
                f.get("severity"),
                f.get("id"),
                f.get("subject"),
                f.get("location") or "",
                f.get("title"),
                f.get("reason") or "",
            ]
            out.append("| " + " | ".join(md_escape(str(c)) for c in cells) + " |")
        if len(ranked) > MAX_SUMMARY_FINDINGS:
            out += ["", f"… and {len(ranked) - MAX_SUMMARY_FINDINGS} more in report.json."]
        out += ["", "</details>"]
    return out


# --- outputs -------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    from modelseal.bounded import read_input_text
    from modelseal.reports.json_report import MAX_REPORT_BYTES

    try:
        data = json.loads(
            read_input_text(path, what="file", limit=MAX_REPORT_BYTES, contained=False)
        )
    except (ConfigError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _existing(path: Path | None) -> str:
    return str(path) if path is not None and path.exists() else ""


def collect_outputs(
    inputs: ActionInputs,
    report: Mapping[str, Any] | None,
    publish: Mapping[str, Any] | None,
    exit_code: int,
) -> dict[str, str]:
    """Every output, as absolute paths (later steps may run in another directory); empty
    strings for what this run did not produce."""
    out_dir = fsio.absolute(inputs.out_dir)
    outputs = dict.fromkeys(OUTPUT_NAMES, "")
    outputs["exit-code"] = str(exit_code)
    outputs["out-dir"] = str(out_dir)
    outputs["verdict"] = str(report.get("verdict", "ERRORED")) if report else "ERRORED"
    if exit_code != 0 and outputs["verdict"] == "PASSED":
        outputs["verdict"] = "ERRORED"  # the run passed but publishing or the self-check failed
    outputs["report-path"] = _existing(out_dir / "report.json")
    outputs["summary-path"] = _existing(out_dir / "summary.md")
    outputs["sarif-path"] = _existing(out_dir / "modelseal.sarif")
    from modelseal.reports.json_report import gate_summary

    sbom: Path | None = out_dir / "sbom.cdx.json"
    digest = ""
    for g in map(gate_summary, (report or {}).get("gates", [])):
        if g.get("gate") == "sbom" and (g.get("artifacts") or {}).get("sbom"):
            sbom = Path(g["artifacts"]["sbom"])
        if g.get("gate") == "build":
            digest = str((g.get("facts") or {}).get("image.digest") or "")
    outputs["sbom-path"] = _existing(sbom)
    outputs["provenance-path"] = _existing(out_dir / "provenance.intoto.json")
    if publish:
        if publish.get("provenance"):
            outputs["provenance-path"] = _existing(Path(str(publish["provenance"])))
        digest = str(publish.get("digest") or digest)
        outputs["image-ref"] = str(publish.get("reference") or "")
        bundles = publish.get("bundles") or {}
        for kind, keys in BUNDLE_KEYS.items():
            found = next((str(bundles[k]) for k in keys if bundles.get(k)), None)
            if found is not None:
                path = Path(found)
                if not path.is_absolute() and (out_dir / path).exists():
                    path = out_dir / path
                outputs[f"{kind}-bundle-path"] = _existing(path.absolute())
    outputs["digest"] = digest
    pol = (report or {}).get("policy") or {}
    outputs["policy-ref"] = str(pol.get("ref") or "")
    outputs["policy-digest"] = f"sha256:{pol['sha256']}" if pol.get("sha256") else ""
    return outputs


# --- running -------------------------------------------------------------------------------


class _Tee(io.TextIOBase):
    """Writes through to a stream and keeps the tail of what went by (the CLI prints its
    error there; the adapter turns it into annotations)."""

    def __init__(self, target: TextIO, keep: int = 64 * 1024) -> None:
        self._target = target
        self._keep = keep
        self._chunks: list[str] = []
        self._size = 0

    def write(self, s: str) -> int:
        self._target.write(s)
        self._chunks.append(s)
        self._size += len(s)
        while self._size > self._keep and len(self._chunks) > 1:
            self._size -= len(self._chunks.pop(0))
        return len(s)

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def text(self) -> str:
        """What was written (the last ``keep`` characters or so)."""
        return "".join(self._chunks)


@dataclass
class _GitHub:
    """Where the runner wants outputs, summary and commands."""

    stdout: TextIO
    output_file: Path | None
    summary_file: Path | None
    in_actions: bool
    workspace: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str], stdout: TextIO) -> _GitHub:
        def path(name: str) -> Path | None:
            return Path(env[name]) if env.get(name) else None

        return cls(
            stdout=stdout,
            output_file=path("GITHUB_OUTPUT"),
            summary_file=path("GITHUB_STEP_SUMMARY"),
            in_actions=env.get("GITHUB_ACTIONS") == "true",
            workspace=Path(env.get("GITHUB_WORKSPACE") or Path.cwd()),
        )

    def annotate(self, annotations: Sequence[Annotation]) -> None:
        for a in annotations:
            self.stdout.write(a.command() + "\n")
        self.stdout.flush()

    def write_outputs(self, outputs: Mapping[str, str]) -> None:
        # Appended, as the runner expects, but never through a link (fsio.open_append).
        if self.output_file is None:
            return
        fsio.append_text(
            self.output_file, "".join(format_output(name, v) for name, v in outputs.items())
        )

    def write_summary(self, text: str) -> None:
        if self.summary_file is None:
            return
        fsio.append_text(self.summary_file, text)

    @contextlib.contextmanager
    def commands_off(self) -> Iterator[None]:
        """Stop the runner from acting on workflow commands while the pipeline prints: build
        logs and finding titles come from the code and images under scan, and a line of theirs
        starting with ``::`` must not become an annotation, a mask or an output."""
        if not self.in_actions:
            yield
            return
        token = secrets.token_hex(16)
        self.stdout.write(f"::stop-commands::{token}\n")
        self.stdout.flush()
        try:
            yield
        finally:
            sys.stderr.flush()
            self.stdout.write(f"::{token}::\n")
            self.stdout.flush()


def _call_cli(argv: Sequence[str], gh: _GitHub) -> tuple[int, str]:
    """Run the command line in-process; returns its exit code and the tail of its stderr."""
    from modelseal import _cli

    tee = _Tee(sys.stderr)
    with gh.commands_off(), contextlib.redirect_stderr(tee):
        try:
            code = _cli.main(list(argv))
        except SystemExit as e:  # argparse refusing the arguments (or --help)
            code = 0 if e.code is None else e.code if isinstance(e.code, int) else 2
        except Exception:  # with -v (RUNNER_DEBUG=1) main re-raises a bug for its traceback
            traceback.print_exc()
            code = int(ExitCode.BUG)
    return code, _ANSI.sub("", tee.text())


def _cli_error(text: str) -> str:
    """The message of the CLI's last ``modelseal: …`` error (or argparse's ``error:`` line)."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(("modelseal:", "modelseal: ")) or ": error: " in lines[i]:
            return "\n".join(lines[i:]).removeprefix("modelseal:").strip()
    return ""


def _default_policy(inputs: ActionInputs) -> Path | None:
    from modelseal._cli import DEFAULT_POLICY

    if inputs.policy is not None:
        return Path(inputs.policy)
    present = DEFAULT_POLICY.exists() or DEFAULT_POLICY.is_symlink()
    return DEFAULT_POLICY if present else None


def use_action_cache_dir(env: Mapping[str, str], target: MutableMapping[str, str]) -> None:
    """Point ``MODELSEAL_CACHE_DIR`` at the directory action.yml's ``actions/cache`` step
    restores (``MODELSEAL_ACTION_CACHE_DIR``) — unless the job set its own, which wins."""
    cache = env.get("MODELSEAL_ACTION_CACHE_DIR")
    if cache and not env.get("MODELSEAL_CACHE_DIR"):
        target["MODELSEAL_CACHE_DIR"] = cache


def run_action(env: Mapping[str, str], stdout: TextIO | None = None) -> int:
    """Run the action: validate inputs, run (and publish), verify, report. Returns the exit
    code."""
    gh = _GitHub.from_env(env, stdout or sys.stdout)
    try:
        inputs = parse_inputs(env)
    except ActionInputError as e:
        gh.annotate(
            [
                Annotation("error", f"input {name}: {message}", title="modelseal: invalid input")
                for name, message in e.problems
            ][:MAX_ANNOTATIONS]
        )
        _log_error(gh, e.diagnostics())
        return _finish(gh, None, None, None, int(ExitCode.USAGE), [str(e)])
    use_action_cache_dir(env, os.environ)

    policy_file = _default_policy(inputs)
    if inputs.policy_ref is not None and policy_file is None:
        from modelseal._cli import DEFAULT_POLICY

        policy_file = DEFAULT_POLICY  # absent here; the ref's copy (if any) is the one used
    places = Places(
        workspace=gh.workspace,
        context=Path(inputs.context),
        policy=_relative(policy_file, gh.workspace) if policy_file else None,
        positions=policy_positions(policy_file) if policy_file else {},
    )
    if policy_file is not None and inputs.policy_ref is None:
        # Checked here too, before the pipeline starts, for the problems as data: each one
        # names file:line:col, and becomes an annotation on that line.
        from modelseal.policy.loader import PolicyFileError, load_policy

        try:
            load_policy(policy_file)
        except PolicyFileError as e:
            _log_error(gh, e.diagnostics())
            found = [a for p in e.problems for a in _text_annotations(p, _POLICY_TITLE, places)]
            gh.annotate(_capped(found, "error", "policy problems"))
            return _finish(gh, inputs, None, None, int(ExitCode.USAGE), list(e.problems))
        except ConfigError:
            pass  # unreadable: the command line says so, in its words

    out_dir = Path(inputs.out_dir)
    for stale in (
        "report.json", "publish.json", "provenance.intoto.json", "sbom.cdx.json", "bundles",
    ):  # fmt: skip
        # These describe the run that wrote them; an earlier run's must not pass for this one.
        # Removed without following a link; an out-dir with a link on the way is refused here.
        try:
            fsio.remove(out_dir / stale)
        except ConfigError as e:
            _log_error(gh, e.diagnostics())
            gh.annotate([Annotation("error", e.message, title="modelseal: unsafe out-dir")])
            return _finish(gh, inputs, None, None, int(ExitCode.USAGE), [e.message])
    argv = run_argv(inputs)
    if env.get("RUNNER_DEBUG") == "1":
        argv = ["-v", *argv]
    code, err = _call_cli(argv, gh)
    report = _read_json(out_dir / "report.json")
    publish = _read_json(out_dir / "publish.json")
    problems: list[str] = []
    annotations: list[Annotation] = []
    if report is not None:
        changed = _policy_changed(report, policy_file, places)
        if changed is not None:
            # The lines of the edited copy are not the lines of the policy that judged.
            places = dataclasses.replace(places, policy=None, positions={})
        annotations += annotations_for_report(report, places)
        if changed is not None:
            annotations.insert(0, changed)
    if code != 0 and not any(a.level == "error" for a in annotations):
        # No report (the run could not start), or a passing one and then publishing failed:
        # the command line's own error message is what explains it.
        message = _cli_error(err) or f"modelseal run exited with {code}; the log above says why"
        problems.append(message)
        title = "the run could not start" if report is None else "publishing failed"
        annotations += _text_annotations(message, f"modelseal: {title}", places)

    if code == 0 and inputs.self_check:
        reference = str((publish or {}).get("reference") or "")
        if not reference:
            code = int(ExitCode.ERRORED)
            problems.append("nothing was published, so there is no signature to verify")
        else:
            vcode, verr = _call_cli(verify_argv(inputs, reference), gh)
            if vcode != 0:
                code = vcode
                why = _cli_error(verr) or f"modelseal verify exited with {vcode}"
                problems.append(f"the pushed image did not verify: {why}")
        if problems:
            annotations.append(
                Annotation("error", problems[-1], title="modelseal: self-check failed")
            )
    gh.annotate(annotations)
    return _finish(gh, inputs, report, publish, code, problems)


_POLICY_TITLE: Final = "modelseal: invalid policy file"


def _policy_changed(
    report: Mapping[str, Any], policy_file: Path | None, places: Places
) -> Annotation | None:
    """A warning when the run was judged by the policy of a git ref (a pull request's base)
    and the checked-out policy file differs from it: the change is not in force until merged."""
    import hashlib

    from modelseal.bounded import read_input
    from modelseal.policy.loader import MAX_POLICY_BYTES

    pol = report.get("policy") or {}
    ref, judged = pol.get("ref"), str(pol.get("sha256") or "")
    if not ref or policy_file is None:
        return None
    here: str | None
    if not (policy_file.exists() or policy_file.is_symlink()):
        here = None  # deleted (or never there): differs from a ref that has one
        if pol.get("source") == "<defaults>":
            return None
    else:
        try:
            # Bounded: the PR's copy may be a link to /dev/zero or a huge file.
            data = read_input(policy_file, what="policy file", limit=MAX_POLICY_BYTES)
            here = hashlib.sha256(data).hexdigest()
        except ConfigError:
            here = "unreadable"  # a FIFO, a device, too large: it differs, and is warned of
    if here == judged:
        return None
    commit = str(pol.get("commit") or "")[:12]
    return Annotation(
        "warning",
        f"This change edits the policy file; the run was judged by {places.policy or policy_file}"
        f" as of {ref} ({commit}, sha256:{judged[:12]}…), not by the edited copy. The edit takes "
        "effect once it is merged.",
        title="modelseal: policy changed",
        file=places.policy if here is not None else None,
        line=1 if here is not None else None,
    )


def _finish(
    gh: _GitHub,
    inputs: ActionInputs | None,
    report: Mapping[str, Any] | None,
    publish: Mapping[str, Any] | None,
    code: int,
    problems: Sequence[str],
) -> int:
    if inputs is not None:
        outputs = collect_outputs(inputs, report, publish, code)
    else:
        outputs = dict.fromkeys(OUTPUT_NAMES, "")
        outputs.update({"verdict": "ERRORED", "exit-code": str(code)})
    try:
        gh.write_outputs(outputs)
        gh.write_summary(render_summary(report, outputs, errors=problems))
    except ConfigError as e:  # e.g. a link where the runner's file should be: not followed
        _log_error(gh, e.diagnostics())
        return code or int(ExitCode.USAGE)
    return code


def main(env: Mapping[str, str] | None = None) -> int:
    """``modelseal action``: :func:`run_action` on this process's environment."""
    return run_action(os.environ if env is None else env)
