"""The application: what ``modelseal run``, ``judge`` and ``verify`` do, as typed calls.

The command line (:mod:`modelseal._cli`) and the GitHub Action (:mod:`modelseal.github`) both
turn their inputs into a request, call :func:`run`, :func:`judge` or :func:`verify`, and show
the typed outcome. Nothing here prints or exits: problems are raised as the one error hierarchy
(:mod:`modelseal.errors`), and what a person should see while a run goes on (the policy in
force, gate progress, the verdict before publishing starts) reaches the caller through
:class:`RunHooks`.

The signer of a run (:func:`sign_options`) and the signer a verification expects
(:func:`expected_signer`) are resolved here and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from modelseal import __version__, fsio
from modelseal.errors import ConfigError, Error, ExitCode
from modelseal.policyfile import DEFAULT_POLICY, load_policy, policy_file

if TYPE_CHECKING:
    from modelseal.findings import GateResult
    from modelseal.judge import Verdict
    from modelseal.pipeline import PipelineResult, ProgressFn
    from modelseal.policy import LoadedPolicy
    from modelseal.publish.publisher import ImageRef, PublishResult
    from modelseal.publish.registry import RegistryClient
    from modelseal.publish.run import SignOptions
    from modelseal.publish.verify_image import Rebuilder, VerifyResult
    from modelseal.rebuild.report import RebuildReport
    from modelseal.reports import Report
    from modelseal.sign.interface import Signer
    from modelseal.sign.trust import TrustConfig
    from modelseal.sign.verify import ExpectedSigner
    from modelseal.vuln.baseline import Baseline, BaselineSpec

__all__ = [
    "DEFAULT_POLICY",
    "BaselineRequest",
    "JudgeOutcome",
    "JudgeRequest",
    "RebuildFlags",
    "RebuildOutcome",
    "RebuildRequest",
    "RunHooks",
    "RunOutcome",
    "RunRequest",
    "SignerFlags",
    "VerifyOutcome",
    "VerifyRequest",
    "baseline_request",
    "expected_rebuilders",
    "expected_signer",
    "judge",
    "load_policy",
    "policy_file",
    "rebuild",
    "rejudger",
    "run",
    "sign_options",
    "verify",
]

SignMode = Literal["keyless", "key", "none"]


# --- the policy ----------------------------------------------------------------------------


def _policy_dir(policy: LoadedPolicy) -> Path:
    """Where paths in the policy (keys, trust configs) are relative to."""
    return Path(policy.source).parent if policy.source != "<defaults>" else Path(".")


def policy_notice(policy: LoadedPolicy) -> str | None:
    """The line saying which policy judges, when it is not simply the file named."""
    if policy.ref is not None:
        what = policy.source if policy.source != "<defaults>" else "the built-in defaults"
        return (
            f"modelseal: judging under {what} as of {policy.ref} ({(policy.commit or '')[:12]}), "
            f"sha256 {policy.sha256[:12]}."
        )
    if policy.source == "<defaults>":
        return f"modelseal: no {DEFAULT_POLICY} here; judging under the built-in defaults."
    return None


# --- signers -------------------------------------------------------------------------------


def sign_options(
    policy: LoadedPolicy,
    *,
    mode: SignMode | None = None,
    key_file: Path | None = None,
    trust_config: Path | None = None,
) -> SignOptions:
    """How a run signs: the given mode, else the policy's ``sign.mode``; the given trust
    config, else the policy's ``sign.trust_config`` (relative to the policy file)."""
    from modelseal.publish.run import SignOptions

    trust = trust_config
    if trust is None and policy.policy.sign.trust_config is not None:
        trust = Path(policy.source).parent / policy.policy.sign.trust_config
    return SignOptions(
        mode=mode or policy.policy.sign.mode,
        key_file=key_file,
        trust_config=trust,
        attempts=policy.policy.sign.attempts,
        public_transparency_log=policy.policy.sign.public_transparency_log,
    )


@dataclass(frozen=True)
class SignerFlags:
    """The expected signer as a caller gave it (all None: take the policy's ``verify``)."""

    key: Path | None = None
    identity: str | None = None
    identity_regexp: str | None = None
    issuer: str | None = None
    trust_config: Path | None = None

    @property
    def given(self) -> bool:
        """Whether any part of a signer was given (the trust config is not one)."""
        return any(
            v is not None for v in (self.key, self.identity, self.identity_regexp, self.issuer)
        )


def expected_signer(flags: SignerFlags, policy: LoadedPolicy) -> ExpectedSigner:
    """The one signer a verification accepts: from ``flags``, or from the policy's ``verify``
    section — never a mix, so a policy (e.g. the checked-out repository's) cannot swap the
    signer the caller pinned. ConfigError when there is none, or more than one."""
    from modelseal.sign.verify import ExpectedSigner

    pv = policy.policy.verify
    base = _policy_dir(policy)
    if flags.given:
        key, identity, regexp = flags.key, flags.identity, flags.identity_regexp
        issuer = flags.issuer
    else:
        key = base / pv.public_key if pv.public_key else None
        identity, regexp, issuer = pv.identity, pv.identity_regexp, pv.issuer
    if key is not None and any(v is not None for v in (identity, regexp, issuer)):
        raise ConfigError(
            "verify takes one expected signer: a key, or an issuer with an identity — not both."
        )
    if identity is not None and regexp is not None:
        raise ConfigError("give --certificate-identity or --certificate-identity-regexp, not both.")
    if regexp is not None:
        from modelseal.sign.identity import IdentityRegexpError, compile_identity_regexp
        from modelseal.untrusted import untrusted

        try:
            compile_identity_regexp(regexp)
        except IdentityRegexpError as e:
            shown = untrusted(regexp, markup=False, limit=200)
            raise ConfigError(f"--certificate-identity-regexp {shown} is {e}.") from None
    if key is None and (issuer is None or (identity is None and regexp is None)):
        raise ConfigError(
            "verify needs an expected signer: --key PUB.pem, or --certificate-oidc-issuer with "
            "--certificate-identity or --certificate-identity-regexp (or the policy's verify "
            "section)."
        )
    if key is not None:
        from modelseal.bounded import read_input
        from modelseal.sign.key import MAX_KEY_BYTES

        return ExpectedSigner(
            public_key_pem=read_input(key, what="public key", limit=MAX_KEY_BYTES)
        )
    return ExpectedSigner(
        issuer=issuer,
        identity=identity,
        identity_regexp=regexp,
        trust_config=_verify_trust(flags, policy),
    )


def _verify_trust(flags: SignerFlags, policy: LoadedPolicy) -> Path | None:
    """The Sigstore trust keyless signatures are verified against: ``--trust-config``, else
    the policy's ``sign.trust_config`` (relative to the policy file), else the public one."""
    if flags.trust_config is not None:
        return flags.trust_config
    if policy.policy.sign.trust_config is not None:
        return _policy_dir(policy) / policy.policy.sign.trust_config
    return None


@dataclass(frozen=True)
class RebuildFlags:
    """The rebuilders a verification requires, as a caller gave them (empty: the policy's
    ``verify.require_rebuild_by``)."""

    rebuilders: tuple[str, ...] = ()
    """``key:FILE`` (a PEM public key) or a keyless identity, exactly."""
    min_rebuilds: int | None = None
    issuer: str | None = None
    """OIDC issuer of the keyless rebuilders (default: the expected signer's flag)."""


def expected_rebuilders(
    flags: RebuildFlags, signer: SignerFlags, policy: LoadedPolicy
) -> tuple[tuple[Rebuilder, ...], int | None]:
    """The rebuilders whose rebuild attestations count and how many must agree (None: all):
    from ``flags``, or from the policy's ``verify`` section — never a mix, as for the signer.
    Keyless rebuilders are checked against the expected signer's Sigstore trust. ConfigError
    for a bad list: too long, a rebuilder twice, a keyless one without an issuer, a key that
    cannot be read, ``min_rebuilds`` out of range."""
    from modelseal.policy.model import MAX_REBUILDERS

    pv = policy.policy.verify
    # (name, key file, identity, issuer) per rebuilder
    listed: list[tuple[str, Path | None, str | None, str | None]] = []
    if flags.rebuilders:
        if len(flags.rebuilders) > MAX_REBUILDERS:
            raise ConfigError(
                f"--require-rebuild-by is given {len(flags.rebuilders)} times; at most "
                f"{MAX_REBUILDERS} rebuilders can be required."
            )
        issuer = flags.issuer or signer.issuer
        for text in flags.rebuilders:
            if text.startswith("key:"):
                if not text.removeprefix("key:"):
                    raise ConfigError("--require-rebuild-by key: needs a file, key:FILE.")
                listed.append((text, Path(text.removeprefix("key:")), None, None))
                continue
            if not text.strip():
                raise ConfigError("--require-rebuild-by needs key:FILE or an identity, not ''.")
            if issuer is None:
                raise ConfigError(
                    f"--require-rebuild-by {text}: a keyless rebuilder needs its OIDC issuer: "
                    "--rebuild-oidc-issuer URL (or --certificate-oidc-issuer)."
                )
            listed.append((text, None, text, issuer))
        minimum, what = flags.min_rebuilds, "--min-rebuilds"
    else:
        if flags.min_rebuilds is not None or flags.issuer is not None:
            raise ConfigError(
                "--min-rebuilds and --rebuild-oidc-issuer go with --require-rebuild-by (the "
                "policy's verify.require_rebuild_by is used whole, or not at all)."
            )
        base = _policy_dir(policy)
        for entry in pv.require_rebuild_by:
            if entry.key is not None:
                listed.append((f"key:{entry.key}", base / entry.key, None, None))
                continue
            issuer = entry.issuer or pv.issuer
            if issuer is None:
                raise ConfigError(
                    f"{policy.source}: verify.require_rebuild_by identity {entry.identity}: "
                    "needs an issuer (on the entry, or verify.issuer)."
                )
            listed.append((str(entry.identity), None, entry.identity, issuer))
        minimum, what = pv.min_rebuilds, "verify.min_rebuilds"
    if minimum is not None and not 1 <= minimum <= len(listed):
        raise ConfigError(
            f"{what} {minimum}: must be from 1 to the number of rebuilders required "
            f"({len(listed)}; --require-rebuild-by or verify.require_rebuild_by)."
        )
    return _rebuilders(listed, _verify_trust(signer, policy)), minimum


def _rebuilders(
    listed: Sequence[tuple[str, Path | None, str | None, str | None]], trust_path: Path | None
) -> tuple[Rebuilder, ...]:
    from modelseal.bounded import read_input
    from modelseal.publish.verify_image import Rebuilder
    from modelseal.sign.key import MAX_KEY_BYTES
    from modelseal.sign.trust import load_trust_config
    from modelseal.sign.verify import ExpectedSigner

    trust: TrustConfig | None = None
    if trust_path is not None and any(key is None for _, key, _, _ in listed):
        trust = load_trust_config(trust_path)  # once, not once per rebuilder
    out: list[Rebuilder] = []
    seen: dict[tuple[str | None, ...], str] = {}
    for name, key, identity, issuer in listed:
        try:
            if key is not None:
                pem = read_input(key, what="rebuilder public key", limit=MAX_KEY_BYTES)
                expected = ExpectedSigner(public_key_pem=pem)
            else:
                expected = ExpectedSigner(issuer=issuer, identity=identity, trust_config=trust)
        except ConfigError as e:
            raise ConfigError(f"rebuilder {name}: {e.message}", hint=e.hint) from None
        # The same rebuilder twice would count one rebuild as two independent ones.
        same = (expected.key_hint,) if key is not None else (identity, issuer)
        if same in seen:
            raise ConfigError(
                f"rebuilder {name} is the same rebuilder as {seen[same]}: each must be "
                "listed once (rebuilds are counted per rebuilder)."
            )
        seen[same] = name
        out.append(Rebuilder(name, expected))
    return tuple(out)


# --- the vulnerability baseline ------------------------------------------------------------


@dataclass(frozen=True)
class BaselineRequest:
    """The baseline a run is judged against (:mod:`modelseal.vuln.baseline`), checked before
    anything is built: where it is, and the signer an image baseline must be signed by."""

    spec: BaselineSpec
    expected: ExpectedSigner | None
    timeout_s: float

    def load(self) -> Baseline:
        """Read and verify it (a failure is carried in the result: the gates are ERRORED)."""
        from modelseal.vuln.baseline_load import load_baseline

        return load_baseline(self.spec, expected=self.expected, timeout_s=self.timeout_s)


def baseline_request(
    flag: str | None, policy: LoadedPolicy, base_dir: Path, trust_config: Path | None = None
) -> BaselineRequest | None:
    """The run's baseline: ``flag`` (``--baseline``, relative to the working directory), else
    the policy's ``vulnerabilities.baseline`` (relative to ``base_dir``, the build context);
    None when neither names one. An image baseline's signer is the policy's ``verify``
    section's (:func:`expected_signer`, no flags: the policy owns who may write a baseline);
    a policy naming none is a ConfigError, before any build."""
    from modelseal.vuln.baseline import parse_spec

    text = flag if flag is not None else policy.policy.vulnerabilities.baseline
    if text is None:
        return None
    what = "--baseline" if flag is not None else "vulnerabilities.baseline"
    try:
        spec = parse_spec(text, Path(".") if flag is not None else base_dir)
    except ConfigError as e:
        raise ConfigError(f"{what}: {e.message}") from None
    expected = None
    if spec.image is not None:
        pv = policy.policy.verify
        if pv.public_key is None and (
            pv.issuer is None or (pv.identity or pv.identity_regexp) is None
        ):
            raise ConfigError(
                f"{what} {text} is an image: its scan-report attestation must be signed by "
                "the signer the policy's verify section names (checked as `modelseal verify` "
                f"does), and {policy.source} names none.",
                hint="Set verify.issuer with verify.identity or verify.identity_regexp, or "
                "verify.public_key, in the policy (the base branch's, in a pull request).",
            )
        try:
            expected = expected_signer(SignerFlags(trust_config=trust_config), policy)
        except ConfigError as e:
            raise ConfigError(f"{what} {text}: {e.message}", hint=e.hint) from None
    return BaselineRequest(spec, expected, float(policy.policy.verify.timeout_seconds))


# --- run -----------------------------------------------------------------------------------


class RunHooks:
    """What a caller sees of a run while it goes on. The defaults show nothing; the command
    line and the Action print (:class:`modelseal.ui.ConsoleHooks`)."""

    def notice(self, text: str) -> None:
        """A line about the run (e.g. which policy judges)."""

    @contextlib.contextmanager
    def progress(self) -> Iterator[ProgressFn | None]:
        """Per-gate progress while the pipeline runs."""
        yield None

    def judged(self, verdict: Verdict, paths: Mapping[str, Path]) -> None:
        """The verdict, once the reports are written (before any publishing)."""

    def publishing(self, image: str, signing: str) -> None:
        """Publishing starts (only after a passing verdict)."""

    def not_published(self, verdict: Verdict) -> None:
        """A run asked to publish, but the verdict did not pass."""


@dataclass(frozen=True)
class RunRequest:
    """One run: the build context and its options, and what to publish where."""

    policy: LoadedPolicy
    context: Path
    out_dir: Path = Path("modelseal-out")
    command: str = "run"
    gates: tuple[str, ...] = ()
    """Only these gates (empty: every gate)."""
    dockerfile: Path | None = None
    build_args: tuple[tuple[str, str], ...] = ()
    build_contexts: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    platforms: tuple[str, ...] = ()
    source_date_epoch: int | None = None
    builder: str | None = None
    buildkit_image: str | None = None
    rebuild_on: str | None = None
    """Where the rebuild check builds (None: the policy's ``build.rebuild_on``)."""
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    push: ImageRef | None = None
    """Publish here on a pass (None: do not publish)."""
    tags: tuple[str, ...] = ()
    """More tags to move: bare, or full references of ``push``'s repository."""
    sign: SignMode | None = None
    key_file: Path | None = None
    trust_config: Path | None = None
    evidence_cache: Path | None = None
    """The evidence cache's directory (:mod:`modelseal.evcache`); None: no cache."""
    github_attestations: bool = False
    """Also submit the signed attestations to GitHub's attestation store (on top of the
    policy's ``publish.github_attestations``)."""
    baseline: str | None = None
    """The vulnerability baseline for this run (``--baseline``): a report.json or an image
    reference; None: the policy's ``vulnerabilities.baseline``."""


@dataclass(frozen=True)
class RunOutcome:
    """What a run did: the verdict, the reports, and what was published."""

    policy: LoadedPolicy
    verdict: Verdict
    report: Report
    pipeline: PipelineResult
    paths: Mapping[str, Path]
    """Report format → the file written."""
    out_dir: Path
    published: PublishResult | None = None

    @property
    def exit_code(self) -> ExitCode:
        """The run's exit code (the verdict's; publishing raises when it fails)."""
        return self.verdict.exit_code


def run(request: RunRequest, hooks: RunHooks | None = None) -> RunOutcome:
    """Run the gates, judge the evidence, write the reports and — on a pass, if asked —
    publish. Raises :class:`~modelseal.errors.Error` for bad input, a run that cannot start
    and a publish that fails (``hooks.judged`` has seen the verdict by then)."""
    from modelseal.gates import select_gates
    from modelseal.judge import judge as judge_results
    from modelseal.pipeline import RunOptions, resolve_source_date_epoch, run_pipeline
    from modelseal.policy.gitref import check_trust_inputs
    from modelseal.reports import Report, write_reports

    hooks = hooks or RunHooks()
    policy, gates = request.policy, request.gates
    selected = select_gates(gates)
    if not request.context.is_dir():
        raise ConfigError(f"build context {request.context} is not a directory.")
    # Before anything reads them: under a policy ref the files the policy trusts (VEX, keys,
    # trust config, the baseline and the key it is verified with) must be the ones committed
    # with it, or a PR could loosen them instead.
    trusted = check_trust_inputs(policy, request.context, baseline=request.baseline)
    signer = None
    github = None
    models_target: ModelSigningTarget | None = None
    tags: tuple[str, ...] = ()
    if request.tags and request.push is None:
        raise ConfigError("--tag needs --push IMAGE: tags are moved only when publishing.")
    if request.push is not None:
        from modelseal.publish.run import make_signer

        if gates and "build" not in gates:
            raise ConfigError("--push needs the build gate (drop --gate, or add --gate build).")
        tags = checked_tags(request.push, request.tags, policy)
        # Before the build: a missing key or trust config must not cost a whole run.
        signing = sign_options(
            policy, mode=request.sign, key_file=request.key_file,
            trust_config=request.trust_config,
        )  # fmt: skip
        signer = make_signer(signing)
        if policy.policy.publish.sign_models:
            models_target = model_signing_target(policy, request.context, signing, signer)
        if request.github_attestations or policy.policy.publish.github_attestations:
            from modelseal.publish.github_attestations import github_target

            if signer is None:
                raise ConfigError(
                    "publish.github_attestations (github-attestations) submits the signed "
                    "attestations to GitHub, but sign mode is none: sign keyless or with a key."
                )
            if not policy.policy.publish.attestations:
                raise ConfigError(
                    "publish.github_attestations: publish.attestations is empty, so there is "
                    "no attestation to submit."
                )
            github = github_target()
            if signing.mode == "key":
                # GitHub's store and `gh attestation verify` check a Fulcio certificate's
                # repository and workflow; a key-signed bundle has none, and the API may refuse
                # it only after the image is pushed.
                raise ConfigError(
                    "publish.github_attestations (github-attestations) needs keyless signing: "
                    "GitHub's attestation store and `gh attestation verify` check the signing "
                    "certificate's repository and workflow, which a key signature does not have.",
                    hint="Sign keyless (sign: keyless, in a job with id-token: write), or turn "
                    "github_attestations off and verify key-signed images with `modelseal verify "
                    "--key` or `cosign verify-attestation --key`.",
                )
    from modelseal.vuln.policy import VULN_GATES

    # Only a run that scans for vulnerabilities reads (or asks a registry for) its baseline.
    baseline = None
    if any(g.name in VULN_GATES for g in selected):
        baseline = baseline_request(
            request.baseline, policy, request.context.resolve(), request.trust_config
        )
    elif request.baseline is not None:
        raise ConfigError(
            "--baseline judges the vulnerability findings, and no vulnerability gate runs: "
            f"add --gate {' or --gate '.join(VULN_GATES)}."
        )
    if request.build_contexts and (not gates or "build" in gates):
        from modelseal.imagebuild.gate import check_build_contexts

        check_build_contexts(dict(request.build_contexts))
    options = RunOptions(
        context=request.context,
        dockerfile=request.dockerfile,
        build_args=dict(request.build_args),
        build_contexts=dict(request.build_contexts),
        source_date_epoch=request.source_date_epoch,
        out_dir=request.out_dir,
        gates=gates,
        labels=dict(request.labels),
        annotations=dict(request.annotations),
        platforms=tuple(dict.fromkeys(request.platforms)),
        builder=request.builder,
        buildkit_image=request.buildkit_image,
        rebuild_on=request.rebuild_on,
        cache_from=request.cache_from,
        cache_to=request.cache_to,
        publish=request.push is not None,
        evidence_cache=request.evidence_cache,
    )
    epoch = resolve_source_date_epoch(
        request.source_date_epoch,
        os.environ.get("SOURCE_DATE_EPOCH"),
        request.context.resolve(),
    )
    notice = policy_notice(policy)
    if notice is not None:
        hooks.notice(notice)
    for t in trusted:
        digest = f"sha256 {t.sha256[:12]}" if t.sha256 else "absent"
        hooks.notice(f"  {t.key} {t.path}: as committed ({digest}).")
    with hooks.progress() as progress:
        result = run_pipeline(selected, policy, options, epoch, progress=progress)
    verdict = judge_results(
        result.results,
        policy.policy,
        internal_error=result.internal_error,
        base_dir=request.context.resolve(),
        baseline=baseline.load() if baseline is not None else None,
    )
    report = Report(
        verdict=verdict,
        policy_source=policy.source,
        policy_sha256=policy.sha256,
        policy_ref=policy.ref,
        policy_commit=policy.commit,
        policy_inputs=tuple((t.path, t.sha256) for t in trusted),
        started_at=result.started_at,
        finished_at=result.finished_at,
        tool_version=__version__,
        command=request.command,
    )
    out_dir = fsio.absolute(request.out_dir)
    paths = write_reports(report, out_dir)
    hooks.judged(verdict, paths)
    outcome = RunOutcome(
        policy=policy, verdict=verdict, report=report, pipeline=result, paths=paths,
        out_dir=out_dir,
    )  # fmt: skip
    if request.push is None:
        return outcome
    if verdict.exit_code != 0:
        hooks.not_published(verdict)
        return outcome
    from modelseal.publish.run import publish_run

    model_signature = None
    if models_target is not None:
        from modelseal.models.lock import load_lock
        from modelseal.models.signing import sign_model_directory

        assert signer is not None
        hooks.notice(
            f"publish.sign_models: signing the model files under {models_target.model_dir}"
        )
        model_signature = sign_model_directory(
            load_lock(models_target.lock), models_target.model_dir,
            signature=out_dir / "model.sig", signer=signer, trust=models_target.trust,
            ignore=policy.policy.models.ignore,
        )  # fmt: skip
    hooks.publishing(request.push.name, signer.mode if signer is not None else "none (unsigned)")
    if "openvex" in policy.policy.publish.attestations and "openvex" not in paths:
        hooks.notice(
            "publish.attestations lists openvex, but the verdict accepted no risk: no OpenVEX "
            "attestation is published (an OpenVEX document needs at least one statement)."
        )
    if "runtime-profile" in policy.policy.publish.attestations and (
        "runtime_profile" not in _artifacts(result.results, "image")
    ):
        hooks.notice(
            "publish.attestations lists runtime-profile, but the image gate wrote no runtime "
            "profile (it is off, or the platforms needed different profiles): no runtime-profile "
            "attestation is published."
        )
    published = publish_run(
        {r.gate: r for r in result.results},
        paths["json"],
        ref=request.push,
        signer=signer,
        out_dir=out_dir,
        started_at=result.started_at,
        finished_at=result.finished_at,
        build_args=dict(request.build_args),
        policy_path=policy.source,
        policy_sha256=policy.sha256,
        policy_ref=policy.ref,
        extra_tags=(*tags, *policy.policy.publish.tags),
        labels=dict(request.labels),
        annotations=dict(request.annotations),
        attestations=tuple(policy.policy.publish.attestations),
        pusher=policy.policy.publish.pusher,
        repo_dir=request.context.resolve(),
        github=github,
        openvex_path=paths.get("openvex"),
        model_signature=model_signature,
    )
    return RunOutcome(
        policy=policy, verdict=verdict, report=report, pipeline=result, paths=paths,
        out_dir=out_dir, published=published,
    )  # fmt: skip


def _artifacts(results: Sequence[GateResult], gate: str) -> Mapping[str, Path]:
    return next((r.artifacts for r in results if r.gate == gate), {})


@dataclass(frozen=True)
class ModelSigningTarget:
    """What ``publish.sign_models`` signs: the lock, the directory (relative to the lock's
    directory) and the Sigstore deployment a keyless signature is verified against."""

    lock: Path
    model_dir: str
    trust: TrustConfig | None


def model_signing_target(
    policy: LoadedPolicy, context: Path, signing: SignOptions, signer: Signer | None
) -> ModelSigningTarget:
    """Check, before the build, that ``publish.sign_models`` can sign: a signer, a lock, and
    one model directory (``models.signature.model_dir``, else the lock's only root)."""
    from modelseal.bounded import shown_path
    from modelseal.models.lock import load_lock
    from modelseal.models.signing import model_dir_in_lock

    if signer is None:
        raise ConfigError(
            "publish.sign_models signs the model files with the run's signer, but sign mode "
            "is none: sign keyless or with a key."
        )
    pol = policy.policy.models
    lock_path = context / pol.lock
    if not lock_path.is_file():
        raise ConfigError(
            f"publish.sign_models signs the files {pol.lock} pins, but {shown_path(lock_path)} "
            "does not exist: run `modelseal models lock PATH…` and commit the lock."
        )
    lock = load_lock(lock_path)
    named = None
    if pol.signature is not None:
        named = fsio.absolute(context).resolve() / pol.signature.model_dir
    trust = None
    if signing.mode == "keyless":
        from modelseal.sign.trust import load_trust_config

        trust = load_trust_config(signing.trust_config)
    return ModelSigningTarget(lock_path, model_dir_in_lock(lock, named), trust)


def checked_tags(push: ImageRef, tags: Sequence[str], policy: LoadedPolicy) -> tuple[str, ...]:
    """The bare tags of ``tags`` (full references must name ``push``'s repository), after
    checking them and ``push``'s own tag against ``publish.allowed_tags``."""
    from fnmatch import fnmatchcase

    from modelseal.publish.publisher import ImageRef

    bare: list[str] = []
    for text in tags:
        if "/" in text:
            ref = ImageRef.parse(text, what="--tag")
            if ref.name != push.name:
                raise ConfigError(
                    f"--tag {text}: names {ref.name}, but the image is published to "
                    f"{push.name}; modelseal publishes (and signs) in one repository — run it "
                    "once per repository."
                )
            text = str(ref.tag)
        bare.append(text)
    allowed = policy.policy.publish.allowed_tags
    for tag in [*([push.tag] if push.tag else []), *bare]:
        if not any(fnmatchcase(tag, glob) for glob in allowed):
            raise ConfigError(
                f"tag {tag!r} is not allowed by {policy.source}: publish.allowed_tags is "
                f"{list(allowed)}."
            )
    return tuple(dict.fromkeys(bare))


# --- judge ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeRequest:
    """Judge a stored report.json again under ``policy``; write the reports to ``out_dir``
    (None: write nothing)."""

    report: Path
    policy: LoadedPolicy
    out_dir: Path | None = None
    baseline: str | None = None
    """As :attr:`RunRequest.baseline` (the policy's is read relative to the working
    directory)."""


@dataclass(frozen=True)
class JudgeOutcome:
    """The new verdict, and the reports written (empty without ``out_dir``)."""

    verdict: Verdict
    paths: Mapping[str, Path] = field(default_factory=dict)

    @property
    def exit_code(self) -> ExitCode:
        """The verdict's exit code."""
        return self.verdict.exit_code


def judge(request: JudgeRequest) -> JudgeOutcome:
    """Judge the evidence of a stored report again, without collecting anything."""
    from modelseal.judge import judge as judge_results
    from modelseal.reports import Report, write_reports
    from modelseal.reports.json_report import read_results

    policy = request.policy
    baseline = baseline_request(request.baseline, policy, Path("."))
    results, data = read_results(request.report)
    verdict = judge_results(
        results, policy.policy, baseline=baseline.load() if baseline is not None else None
    )
    if request.out_dir is None:
        return JudgeOutcome(verdict)
    import calendar
    import time

    def ts(key: str) -> float:
        return float(calendar.timegm(time.strptime(str(data[key]), "%Y-%m-%dT%H:%M:%SZ")))

    report = Report(
        verdict=verdict, policy_source=policy.source, policy_sha256=policy.sha256,
        started_at=ts("started_at"), finished_at=ts("finished_at"),
        tool_version=__version__, command="judge",
    )  # fmt: skip
    return JudgeOutcome(verdict, write_reports(report, fsio.absolute(request.out_dir)))


# --- verify --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyRequest:
    """Verify a published image: the expected signer (:func:`expected_signer`), the
    provenance and scan expectations (unset: the policy's ``verify`` section), and with
    ``rejudge`` the attested evidence judged again under ``policy``."""

    image: str
    policy: LoadedPolicy
    signer: SignerFlags = SignerFlags()
    builder_id: str | None = None
    source_repository: str | None = None
    max_scan_age_days: int | None = None
    policy_digest: str | None = None
    """The attested run must have been judged by a policy of this sha256 (hex)."""
    timeout_s: int | None = None
    rejudge: bool = False
    rebuild: RebuildFlags = RebuildFlags()
    """The rebuilders that must agree (:func:`expected_rebuilders`)."""
    model_signature: Path | None = None
    """A model signature file (``publish.sign_models``' model.sig) the provenance must
    record, checked over ``model_dir`` (default: the directory the provenance names)."""
    model_dir: Path | None = None


@dataclass(frozen=True)
class VerifyOutcome:
    """The checks and their results."""

    result: VerifyResult

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return bool(self.result.ok)

    @property
    def exit_code(self) -> ExitCode:
        """0 verified, 1 not."""
        return ExitCode.PASSED if self.ok else ExitCode.BREACHED

    def failures(self) -> list[str]:
        """``name: detail`` of each failed check."""
        return [f"{c.name}: {c.detail}" for c in self.result.checks if not c.ok]


def verify(request: VerifyRequest) -> VerifyOutcome:
    """Verify a published image before it is deployed."""
    from modelseal.publish.verify_image import VerifyOptions, verify_image

    policy = request.policy
    pv = policy.policy.verify
    if request.model_dir is not None and request.model_signature is None:
        raise ConfigError("--model-dir goes with --model-signature (the model files it signs).")
    expected = expected_signer(request.signer, policy)
    rebuilders, min_rebuilds = expected_rebuilders(request.rebuild, request.signer, policy)
    options = VerifyOptions(
        expected=expected,
        builder_id=request.builder_id or pv.builder_id,
        source_repository=request.source_repository or pv.source_repository,
        max_scan_age_days=(
            request.max_scan_age_days
            if request.max_scan_age_days is not None
            else pv.max_scan_age_days
        ),
        rejudge=rejudger(policy) if request.rejudge else None,
        policy_sha256=request.policy_digest,
        timeout_s=request.timeout_s if request.timeout_s is not None else pv.timeout_seconds,
        rebuilders=rebuilders,
        min_rebuilds=min_rebuilds,
        require_runtime_profile=pv.require_runtime_profile,
    )
    result = verify_image(request.image, options)
    if request.model_signature is not None:
        result = _with_model_signature(result, request, expected)
    return VerifyOutcome(result)


def _with_model_signature(
    result: VerifyResult, request: VerifyRequest, expected: ExpectedSigner
) -> VerifyResult:
    """``result`` with a ``model-signature`` check: the model signature file is one the
    verified provenance records, by the same signer, and the model files match it."""
    import dataclasses

    from modelseal.models.signing import check_recorded_model_signature
    from modelseal.publish.provenance import SLSA_PROVENANCE_V1
    from modelseal.publish.verify_image import Check

    assert request.model_signature is not None
    ok, why = check_recorded_model_signature(
        request.model_signature, request.model_dir, expected=expected,
        provenance=result.all_statements.get(SLSA_PROVENANCE_V1, ()),
    )  # fmt: skip
    check = Check("model-signature", ok, why)
    return dataclasses.replace(result, checks=(*result.checks, check))


def rejudger(policy: LoadedPolicy) -> Callable[[Any], tuple[bool, str]]:
    """The check that judges an attested scan report again under ``policy``: (passed, why)."""
    from modelseal.findings import Status
    from modelseal.gates import enabled_gates
    from modelseal.judge import judge as judge_results
    from modelseal.reports.json_report import results_from_data

    # Every gate this policy switches on must have run in the attested run: evidence that was
    # never collected (a scanner the release policy switched off) cannot pass a stricter policy.
    # models-image only when this policy maps model paths into the image: without
    # models.image_paths it has nothing to compare; with them, an attested run that skipped it
    # never checked that the image serves the locked weights.
    maps_models = bool(policy.policy.models.image_paths)
    required = [n for n in enabled_gates(policy.policy) if n != "models-image" or maps_models]

    def rejudge(report: Any) -> tuple[bool, str]:
        try:
            results = results_from_data(report, "the attested scan report")
        except Error as e:
            return False, f"cannot be judged again: {e.diagnostics()}"
        ran = {r.gate: r.status for r in results}
        missing = [n for n in required if ran.get(n, Status.SKIPPED) is Status.SKIPPED]
        if missing:
            return False, (
                f"{policy.source} requires gates the attested run did not run: {', '.join(missing)}"
            )
        verdict = judge_results(results, policy.policy)
        return verdict.exit_code == 0, f"{verdict.status.value} under {policy.source}"

    return rejudge


# --- rebuild -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RebuildRequest:
    """Rebuild a sealed image from its signed provenance and the source
    (:mod:`modelseal.rebuild`): ``target`` is an image reference or a provenance bundle file;
    the provenance must be signed by the expected signer (:func:`expected_signer`)."""

    target: str
    source: Path
    policy: LoadedPolicy
    signer: SignerFlags = SignerFlags()
    build_contexts: tuple[tuple[str, str], ...] = ()
    builder: str | None = None
    """An existing buildx builder ($DOCKER_HOST's, else the current docker context's); None:
    a fresh private engine."""
    out_dir: Path = Path("modelseal-rebuild")
    timeout_s: int = 600
    """Registry reads and the fetch of the published image (not the build)."""
    attest: bool = False
    push: bool = False
    sign: Literal["key", "keyless"] | None = None
    signing_key: Path | None = None


@dataclass(frozen=True)
class RebuildOutcome:
    """The rebuild's report and where it was written."""

    report: RebuildReport
    path: Path

    @property
    def exit_code(self) -> ExitCode:
        """0 reproduced, 1 the rebuild differs."""
        return ExitCode.PASSED if self.report.reproduced else ExitCode.BREACHED


def rebuild(request: RebuildRequest, hooks: RunHooks | None = None) -> RebuildOutcome:
    """Verify the provenance, check out the source, build on a fresh engine (or the named
    builder), compare with the published image, write ``rebuild.json`` and — with ``attest``
    — sign (and with ``push`` attach) the rebuild attestation. Refusals come before any build."""
    import time

    from modelseal.publish.provenance import rfc3339
    from modelseal.publish.publisher import ImageRef, registry_credentials
    from modelseal.publish.registry_limits import RegistryError
    from modelseal.rebuild import attest, plan, report, runner, source

    hooks = hooks or RunHooks()
    if request.push and not request.attest:
        raise ConfigError("--push needs --attest: it pushes the rebuild attestation.")
    names = [n for n, _ in request.build_contexts]
    if len(set(names)) != len(names):
        raise ConfigError("--build-context: each NAME once.")
    expected = expected_signer(request.signer, request.policy)
    signer = None
    if request.attest:
        from modelseal.publish.run import SignOptions, make_signer

        if request.sign is None:
            raise ConfigError("--attest needs --sign key (with --signing-key FILE) or keyless.")
        signer = make_signer(
            SignOptions(
                mode=request.sign,
                key_file=request.signing_key,
                trust_config=request.signer.trust_config,
                attempts=request.policy.policy.sign.attempts,
                public_transparency_log=request.policy.policy.sign.public_transparency_log,
            )
        )
    started = time.time()
    t0 = time.monotonic()
    deadline = t0 + request.timeout_s
    target = Path(request.target)
    client = None
    if target.exists() or target.is_symlink():
        signed = plan.provenance_from_bundle(target, expected)
    else:
        try:
            ref = ImageRef.parse(request.target, what="TARGET", allow_digest=True)
        except ConfigError:
            raise ConfigError(
                f"TARGET {request.target!r} is neither a file (a provenance bundle) nor an image "
                "reference (REGISTRY/REPOSITORY[:TAG][@sha256:…])."
            ) from None
        client = _registry_client(ref.host, ref.repository)
        client.set_deadline(request.timeout_s, "rebuild timeout (--timeout)")
        try:
            signed, _, _, _ = plan.provenance_from_image(client, ref, expected)
        except RegistryError as e:
            raise RegistryError(
                f"cannot read the provenance of {request.target}: {e.diagnostics()}",
                method=e.method, path=e.path, status=e.status,
            ) from None  # fmt: skip
    rebuild_plan = plan.plan_from_statement(signed.statement)
    hooks.notice(
        f"modelseal: the provenance of {rebuild_plan.image_name}@{rebuild_plan.expected_digest} "
        f"is signed by {signed.signer}."
    )
    verified_s = time.monotonic() - t0
    with fsio.private_temp_dir("modelseal-rebuild-") as tmp:
        work = Path(tmp)
        checkout = source.prepare_source(request.source, rebuild_plan.commit, work)
        contexts = runner.resolve_contexts(
            rebuild_plan, dict(request.build_contexts), checkout.root
        )
        context_dir = source.inside(checkout.root, rebuild_plan.context, "source.context")
        source.refuse_out_dir_inside(request.out_dir, checkout, rebuild_plan)
        out_dir = fsio.ensure_dir(fsio.absolute(request.out_dir))
        notes = list(source.fill_models(checkout, rebuild_plan.context, rebuild_plan.models))
        notes += [
            f"build context {c.name} is the image {c.ref} without a digest: what it names "
            "today may not be what was built"
            for c in rebuild_plan.build_contexts
            if c.type == "docker-image" and c.digest is None
        ]
        notes += source.check_models(context_dir, rebuild_plan.models)
        notes += runner.engine_notes(rebuild_plan, request.builder)
        hooks.notice(
            f"modelseal: building from a clean clone of {rebuild_plan.commit} (modified or "
            "untracked files of --source are not used)."
        )
        t1 = time.monotonic()
        with hooks.progress() as progress:
            built = runner.build(
                rebuild_plan, checkout, contexts, out_dir,
                builder=request.builder, progress=progress,
            )  # fmt: skip
        t2 = time.monotonic()
        fetch = None
        if built.digest != rebuild_plan.expected_digest:
            try:
                image = ImageRef.parse(rebuild_plan.image_name, what="subject", allow_digest=True)
            except ConfigError:
                image = None
            if image is not None:
                fetch = runner.skopeo_fetch(
                    image.name, rebuild_plan.expected_digest, local=image.is_local,
                    deadline=deadline, credentials=registry_credentials(image.host),
                )  # fmt: skip
        comparison = runner.compare(rebuild_plan, built, work, deadline=deadline, fetch=fetch)
        t3 = time.monotonic()
    result = report.RebuildReport(
        target=request.target,
        plan=rebuild_plan,
        built=built,
        comparison=comparison,
        signer=signed.signer,
        provenance_source=signed.source,
        checkout={"checkout": checkout.how, "path": str(checkout.source)},
        notes=tuple(notes) + comparison.notes,
        timings={
            "verify_s": verified_s, "build_s": t2 - t1, "compare_s": t3 - t2,
            "total_s": t3 - t0,
        },
        started_at=rfc3339(started),
        finished_at=rfc3339(time.time()),
    )  # fmt: skip
    path = out_dir / "rebuild.json"
    runner.write_json(path, result.to_json())
    if signer is not None:
        signed_att, bundle = attest.sign_report(result, signer, out_dir)
        referrer = None
        if request.push:
            image = ImageRef.parse(rebuild_plan.image_name, what="subject", allow_digest=True)
            # The target's client only for the very same registry and repository.
            if client is None or (client.host, client.repository) != (image.host, image.repository):
                client = _registry_client(image.host, image.repository)
            client.set_deadline(request.timeout_s, "rebuild timeout (--timeout)")
            referrer = attest.push_attestation(client, rebuild_plan.expected_digest, signed_att)
        from dataclasses import replace

        result = replace(result, attestation={"bundle": str(bundle), "referrer": referrer})
        runner.write_json(path, result.to_json())
    return RebuildOutcome(result, path)


def _registry_client(host: str, repository: str) -> RegistryClient:
    """A registry client with the credentials for ``host`` (as ``verify`` and ``run`` use)."""
    from modelseal.publish.publisher import registry_credentials, registry_token_hosts
    from modelseal.publish.registry import RegistryClient

    return RegistryClient(
        host, repository, auth=registry_credentials(host), token_hosts=registry_token_hosts()
    )
