"""The Action's inputs: ``action.yml`` hands each one over as a ``MODELSEAL_*`` environment
variable (never pasted into script text, so no input can turn into shell code); they are
validated here, every problem collected, and turned into the application's requests."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, cast

from modelseal import app, evcache
from modelseal.errors import ConfigError
from modelseal.policy.model import PLATFORM_PATTERN, TAG_PATTERN

if TYPE_CHECKING:
    from modelseal.policy import LoadedPolicy

__all__ = [
    "DEFAULTS",
    "GITHUB_OIDC_ISSUER",
    "INPUT_ENV",
    "ActionInputError",
    "ActionInputs",
    "parse_inputs",
    "run_request",
    "use_action_cache_dir",
    "verify_request",
]

INPUT_ENV: Final[Mapping[str, str]] = MappingProxyType(
    {
        "policy": "MODELSEAL_POLICY",
        "policy-ref": "MODELSEAL_POLICY_REF",
        "baseline": "MODELSEAL_BASELINE",
        "context": "MODELSEAL_CONTEXT",
        "dockerfile": "MODELSEAL_DOCKERFILE",
        "image": "MODELSEAL_IMAGE",
        "tags": "MODELSEAL_TAGS",
        "labels": "MODELSEAL_LABELS",
        "annotations": "MODELSEAL_ANNOTATIONS",
        "platforms": "MODELSEAL_PLATFORMS",
        "push": "MODELSEAL_PUSH",
        "github-token": "MODELSEAL_GITHUB_TOKEN",
        "github-attestations": "MODELSEAL_GITHUB_ATTESTATIONS",
        "sign": "MODELSEAL_SIGN",
        "key-file": "MODELSEAL_KEY_FILE",
        "trust-config": "MODELSEAL_TRUST_CONFIG",
        "build-args": "MODELSEAL_BUILD_ARGS",
        "build-contexts": "MODELSEAL_BUILD_CONTEXTS",
        "builder": "MODELSEAL_BUILDER",
        "buildkit-image": "MODELSEAL_BUILDKIT_IMAGE",
        "rebuild-on": "MODELSEAL_REBUILD_ON",
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
        "github-attestations": "false",
        "verify-issuer": GITHUB_OIDC_ISSUER,
        "github-token": "${{ github.token }}",  # evaluated by the runner, never by modelseal
    }
)
"""What an unset or empty input means (action.yml declares the same defaults; a test checks)."""

SIGN_MODES: Final = ("keyless", "key", "none")

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
#: Events whose checkout is (or may be) the pull request's own files.
#: Events whose base ref is known: the policy of that ref judges the run (``_base_ref``).
_PR_EVENTS: Final = ("pull_request", "pull_request_target", "merge_group")
#: The event payload is read only for the base ref; GitHub caps it well below this.
_MAX_EVENT_BYTES: Final = 16 * 1024 * 1024
_CONTEXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_URL = re.compile(r"https?://[^\s]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0, DEL and C1 (\x9b is CSI)


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
    sign: app.SignMode | None = None
    """keyless, key or none; None: the policy's ``sign.mode`` (keyless unless set)."""
    key_file: str | None = None
    trust_config: str | None = None
    github_attestations: bool = False
    """Submit the signed attestations to GitHub's attestation store (with push)."""
    build_args: tuple[tuple[str, str], ...] = ()
    build_contexts: tuple[tuple[str, str], ...] = ()
    builder: str | None = None
    buildkit_image: str | None = None
    rebuild_on: str | None = None
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
    baseline: str | None = None
    """The vulnerability baseline (``--baseline``): a report.json or an image reference."""

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
    github_attestations = r.boolean("github-attestations")
    sign = cast("app.SignMode | None", r.choice("sign", SIGN_MODES))
    key_file = r.single("key-file")
    trust_config = r.single("trust-config")
    build_args = r.pairs("build-args", _BUILD_ARG, "NAME")
    contexts = r.pairs("build-contexts", _CONTEXT_NAME, "NAME")
    for name, value in contexts:
        if not value.strip() or value.startswith("-"):
            r.problem("build-contexts", f"the value of {name} must be a path or URL")
    from modelseal.policy.model import BUILDER_PATTERN, BUILDKIT_IMAGE_PATTERN, REBUILD_ON_PATTERN

    builder = r.matching("builder", BUILDER_PATTERN)
    buildkit_image = r.matching("buildkit-image", BUILDKIT_IMAGE_PATTERN)
    rebuild_on = r.matching("rebuild-on", REBUILD_ON_PATTERN)
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
    from modelseal.policy.model import BASELINE_PATTERN

    baseline = r.matching("baseline", BASELINE_PATTERN)
    if policy_ref is not None:
        from modelseal.policy.gitref import check_ref

        try:
            check_ref(policy_ref, what="value")
        except ConfigError as e:
            r.problem("policy-ref", str(e))
    if push and image is None and not any(n in ("image", "tags") for n, _ in r.problems):
        r.problem("image", "required when push is true (or give full references in tags)")
    if github_attestations and not push:
        r.problem("github-attestations", "submits what is published: set push: true")
    elif github_attestations and sign == "none":
        r.problem("github-attestations", "submits signed attestations: sign is none")
    elif github_attestations and sign == "key":
        # GitHub's store and `gh attestation verify` check a Fulcio certificate.
        r.problem("github-attestations", "needs keyless signing: sign is key")
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
        github_attestations=github_attestations,
        build_args=build_args,
        build_contexts=contexts,
        builder=builder,
        buildkit_image=buildkit_image,
        rebuild_on=rebuild_on,
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
        baseline=baseline,
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


def use_action_cache_dir(env: Mapping[str, str], target: MutableMapping[str, str]) -> None:
    """Point ``MODELSEAL_CACHE_DIR`` at the directory action.yml's ``actions/cache`` step
    restores (``MODELSEAL_ACTION_CACHE_DIR``) — unless the job set its own, which wins."""
    cache = env.get("MODELSEAL_ACTION_CACHE_DIR")
    if cache and not env.get("MODELSEAL_CACHE_DIR"):
        target["MODELSEAL_CACHE_DIR"] = cache


def _path(text: str | None) -> Path | None:
    return Path(text) if text is not None else None


def run_request(inputs: ActionInputs, policy: LoadedPolicy) -> app.RunRequest:
    """The run these inputs ask for, judged by ``policy`` (:func:`modelseal.app.load_policy`
    of the ``policy`` and ``policy-ref`` inputs). Tags and signing only apply when pushing."""
    push = None
    if inputs.push:
        from modelseal.publish.publisher import ImageRef

        assert inputs.image is not None  # parse_inputs requires it
        push = ImageRef.parse(inputs.image)
    return app.RunRequest(
        policy=policy,
        context=Path(inputs.context),
        out_dir=Path(inputs.out_dir),
        dockerfile=_path(inputs.dockerfile),
        build_args=inputs.build_args,
        build_contexts=inputs.build_contexts,
        labels=inputs.labels,
        annotations=inputs.annotations,
        platforms=inputs.platforms,
        builder=inputs.builder,
        buildkit_image=inputs.buildkit_image,
        rebuild_on=inputs.rebuild_on,
        cache_from=inputs.cache_from,
        cache_to=inputs.cache_to,
        push=push,
        tags=inputs.tags if inputs.push else (),
        sign=inputs.sign if inputs.push else None,
        key_file=_path(inputs.key_file) if inputs.push else None,
        trust_config=_path(inputs.trust_config) if inputs.push else None,
        github_attestations=inputs.github_attestations and inputs.push,
        # Within the job (MODELSEAL_CACHE_DIR, set before this is built): action.yml's cache
        # step keeps only the Trivy DB between runs, never evidence.
        evidence_cache=evcache.default_dir(),
        baseline=inputs.baseline,
    )


def verify_request(inputs: ActionInputs, policy: LoadedPolicy, reference: str) -> app.VerifyRequest:
    """The post-publish self-check of ``reference``: signed by the identity the inputs name,
    under the run's policy (its ``verify`` section's expectations apply too; with a ``policy``
    input, the attested evidence is judged again under it)."""
    return app.VerifyRequest(
        image=reference,
        policy=policy,
        signer=app.SignerFlags(
            identity=inputs.verify_identity or None,
            identity_regexp=None if inputs.verify_identity else inputs.verify_identity_regexp,
            issuer=inputs.verify_issuer,
            trust_config=_path(inputs.trust_config),
        ),
        rejudge=inputs.policy is not None,
    )
