"""The command line. The only place errors become exit codes and messages."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from modelseal import __version__, fsio
from modelseal.errors import ConfigError, Error, ExitCode
from modelseal.evcache import default_dir as evcache_dir
from modelseal.gates import GATES

# Imports of the commands' machinery happen inside the commands: `modelseal models scan` must
# not pay for BuildKit, reports and the whole pipeline before it starts (start-up is most of a
# small scan's time).
if TYPE_CHECKING:
    from rich.console import Console

    from modelseal.judge import Verdict
    from modelseal.pipeline import PipelineResult
    from modelseal.policy import LoadedPolicy
    from modelseal.publish.run import SignOptions
    from modelseal.sign.interface import Signer

DEFAULT_POLICY = Path("modelseal.yml")

EPILOG = """\
exit codes:
  0  every gate passed (or was switched off by the policy)
  1  the policy was breached
  2  usage error, or an invalid policy file or input
  3  a gate could not run (tool missing or crashed, engine unreachable, ...)
  4  internal error (a bug; rerun with -v for the traceback)
"""


VERIFY_EPILOG = """\
exit codes:
  0  verified: every check passed
  1  not verified: a check failed (each failed check says why)
  2  usage error (no expected signer, bad reference, invalid policy)
  3  the registry could not be read, or broke a limit (size, count, --timeout)
  4  internal error (a bug; rerun with -v for the traceback)
"""


def _key_value(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return key, value


def _image_ref(text: str) -> object:
    from modelseal.publish.publisher import ImageRef

    try:
        return ImageRef.parse(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _tag(text: str) -> str:
    """``--tag``: a tag, or a full ``REGISTRY/REPOSITORY:TAG`` (docker/metadata-action's
    ``tags`` output as it is); the repository is checked against ``--push`` later."""
    from modelseal.policy.model import TAG_PATTERN
    from modelseal.publish.publisher import ImageRef

    if re.fullmatch(TAG_PATTERN, text):
        return text
    try:
        ref = ImageRef.parse(text, what="--tag")
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if ref.tag is None:
        raise argparse.ArgumentTypeError(f"--tag {text!r}: expected TAG or REGISTRY/REPOSITORY:TAG")
    return text


def _platforms(text: str) -> list[str]:
    """``--platform``: one platform or a comma-separated list."""
    from modelseal.policy.model import PLATFORM_PATTERN

    items = [p.strip() for p in text.split(",") if p.strip()]
    for p in items:
        if not re.fullmatch(PLATFORM_PATTERN, p):
            raise argparse.ArgumentTypeError(
                f"--platform {p!r}: expected os/arch or os/arch/variant, e.g. linux/arm64"
            )
    if not items:
        raise argparse.ArgumentTypeError("--platform: expected os/arch, e.g. linux/amd64")
    return items


def _policy_digest(text: str) -> str:
    hex_part = text.removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", hex_part):
        raise argparse.ArgumentTypeError(f"expected sha256:<64 lower-case hex>, got {text!r}")
    return hex_part


def _seconds(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 86400:
        raise argparse.ArgumentTypeError(f"expected whole seconds from 1 to 86400, got {text!r}")
    return int(text)


def _pattern(name: str) -> Callable[[str], str]:
    """An argument type: ``text`` must match the policy pattern ``name`` of
    :mod:`modelseal.policy.model` (same rule, same message; imported when used)."""

    def check(text: str) -> str:
        from modelseal.policy import model

        pattern = getattr(model, name)
        if re.fullmatch(pattern, text) is None:
            raise argparse.ArgumentTypeError(f"{model.PATTERN_MESSAGES[pattern]}, got {text!r}")
        return text

    return check


def _cache(direction: Literal["from", "to"]) -> Callable[[str], str]:
    def check(text: str) -> str:
        from modelseal.policy.model import cache_spec_problem

        problem = cache_spec_problem(text, direction)
        if problem:
            raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
        return text

    return check


def _epoch(text: str) -> int:
    from modelseal.pipeline import MAX_EPOCH

    if not text.isdigit() or len(text) > 12 or int(text) > MAX_EPOCH:
        shown = text if len(text) <= 40 else text[:39] + "…"
        raise argparse.ArgumentTypeError(
            f"expected whole seconds since 1970, at most {MAX_EPOCH} (the year 9999), got {shown!r}"
        )
    return int(text)


def _days(text: str) -> int:
    from modelseal.policy.model import MAX_AGE_DAYS

    if not text.isdigit() or int(text) > MAX_AGE_DAYS:
        raise argparse.ArgumentTypeError(f"expected whole days from 0 to {MAX_AGE_DAYS}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="modelseal",
        description="Seal ML model-serving container images: verify, build reproducibly, "
        "scan, attest, sign — and fail when the policy is breached.",
        epilog=EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("--version", action="version", version=f"modelseal {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug output and tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)
    common.add_argument(
        "--policy", type=Path, metavar="FILE",
        help=f"policy file (default: {DEFAULT_POLICY} if present, else the built-in safe defaults)",
    )  # fmt: skip

    build_opts = argparse.ArgumentParser(add_help=False)
    build_opts.add_argument(
        "context",
        nargs="?",
        type=Path,
        default=Path("."),
        help="build context directory (default: .)",
    )
    build_opts.add_argument(
        "-f", "--file", type=Path, dest="dockerfile", metavar="DOCKERFILE",
        help="Dockerfile (default: CONTEXT/Dockerfile)",
    )  # fmt: skip
    build_opts.add_argument(
        "--build-arg", type=_key_value, action="append", default=[], metavar="NAME=VALUE",
        help="build argument (repeatable)",
    )  # fmt: skip
    build_opts.add_argument(
        "--build-context", type=_key_value, action="append", default=[], metavar="NAME=VALUE",
        help="named build context, e.g. base=oci-layout://DIR@sha256:… (repeatable)",
    )  # fmt: skip
    build_opts.add_argument(
        "--label", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
        help="image label (repeatable; recorded in the provenance)",
    )  # fmt: skip
    build_opts.add_argument(
        "--annotation", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
        help="OCI annotation, as docker buildx --annotation takes it (repeatable; recorded in "
        "the provenance)",
    )  # fmt: skip
    build_opts.add_argument(
        "--platform", type=_platforms, action="append", default=[], metavar="OS/ARCH",
        help="platform to build (repeatable or comma-separated; replaces build.platforms)",
    )  # fmt: skip
    build_opts.add_argument(
        "--policy-ref", metavar="REF",
        help="read the policy file from this git ref (e.g. the pull request's base branch), "
        "not the working tree; fetched from origin if needed",
    )  # fmt: skip
    build_opts.add_argument(
        "--source-date-epoch", type=_epoch, metavar="SECONDS",
        help="timestamp for every file and the image (default: $SOURCE_DATE_EPOCH, else the "
        "commit time of HEAD)",
    )  # fmt: skip
    build_opts.add_argument(
        "-o", "--out-dir", type=Path, default=Path("modelseal-out"), metavar="DIR",
        help="where the OCI layout and the reports go (default: modelseal-out)",
    )  # fmt: skip
    bk = build_opts.add_argument_group("builder and cache (default: the policy's build.*)")
    bk.add_argument(
        "--builder", type=_pattern("BUILDER_PATTERN"), metavar="NAME",
        help="build with this existing buildx builder (its driver and BuildKit are recorded)",
    )  # fmt: skip
    bk.add_argument(
        "--buildkit-image", type=_pattern("BUILDKIT_IMAGE_PATTERN"), metavar="IMAGE@sha256:…",
        help="BuildKit image, pinned by digest, of the builder modelseal creates on a classic "
        "image store (e.g. a mirror of moby/buildkit)",
    )  # fmt: skip
    bk.add_argument(
        "--cache-from", type=_cache("from"), action="append", default=[], metavar="SPEC",
        help="cache source for the first build: type=gha|registry|local,… (repeatable; the "
        "rebuild check never reads a cache)",
    )  # fmt: skip
    bk.add_argument(
        "--cache-to", type=_cache("to"), action="append", default=[], metavar="SPEC",
        help="cache destination of the first build: type=gha|registry|local,… (repeatable)",
    )  # fmt: skip
    bk.add_argument(
        "--no-evidence-cache", action="store_true",
        help="scan afresh: neither read nor write the evidence cache ($MODELSEAL_CACHE_DIR/"
        "evidence: the SBOM, Trivy and package-extraction outputs of an image, by digest)",
    )  # fmt: skip

    run = sub.add_parser(
        "run", parents=[common, build_opts], formatter_class=fmt, epilog=EPILOG,
        help="run every gate on a build context and judge the evidence",
        description="Run the gates (as a DAG, independent ones concurrently), judge their "
        "evidence under the policy, write the reports, and exit with the verdict.",
    )  # fmt: skip
    run.add_argument(
        "--gate", action="append", default=[], metavar="NAME",
        help=f"run only this gate (repeatable; default: all): {', '.join(GATES)}",
    )  # fmt: skip
    pub = run.add_argument_group(
        "publish (only after a passing verdict; tags move last, after every signature)"
    )
    pub.add_argument(
        "--push", metavar="IMAGE", type=_image_ref,
        help="push the image by digest to REGISTRY/REPOSITORY[:TAG], sign it, attach the "
        "provenance, SBOM and scan-report attestations, then move the tag(s)",
    )  # fmt: skip
    pub.add_argument(
        "--tag", type=_tag, action="append", default=[], metavar="TAG",
        help="another tag to move, TAG or REGISTRY/REPOSITORY:TAG of the --push repository "
        "(repeatable; must match the policy's publish.allowed_tags)",
    )  # fmt: skip
    pub.add_argument(
        "--sign", choices=("keyless", "key", "none"), default=None,
        help="signing mode (default: the policy's sign.mode, keyless unless set)",
    )  # fmt: skip
    pub.add_argument(
        "--key", type=Path, metavar="FILE",
        help="ECDSA P-256 PEM private key for --sign key (password in MODELSEAL_KEY_PASSWORD)",
    )  # fmt: skip
    pub.add_argument(
        "--trust-config", type=Path, metavar="FILE",
        help="Sigstore ClientTrustConfig JSON for a private Sigstore (default: the policy's "
        "sign.trust_config, else the public instance)",
    )  # fmt: skip
    sub.add_parser(
        "build", parents=[common, build_opts], formatter_class=fmt, epilog=EPILOG,
        help="only the reproducible build gate",
        description="Build the context reproducibly into an OCI layout (OUT_DIR/oci) and judge "
        "the build gate: pinned bases, and with build.rebuild_check a second cold build that "
        "must give the same manifest digest.",
    )  # fmt: skip

    jd = sub.add_parser(
        "judge", parents=[common], formatter_class=fmt, epilog=EPILOG,
        help="judge a stored report again under a (different) policy",
        description="Re-judge the evidence in a report.json under another policy, without "
        "collecting anything again.",
    )  # fmt: skip
    jd.add_argument("report", type=Path, help="a report.json written by `modelseal run`")
    jd.add_argument(
        "-o", "--out-dir", type=Path, default=None, metavar="DIR",
        help="write the re-judged reports here (default: print the table only)",
    )  # fmt: skip

    vf = sub.add_parser(
        "verify", parents=[common], formatter_class=fmt, epilog=VERIFY_EPILOG,
        help="check a published image before deploying it",
        description="Verify IMAGE in its registry: a signature by the expected signer, SLSA "
        "provenance (builder, source repository), an SBOM attestation, and a passing, recent "
        "scan-report attestation — all bound to the image's digest. With --policy, the "
        "attested scan evidence is judged again under that policy. The expected signer comes "
        "from the flags, else from the policy's verify section.",
    )  # fmt: skip
    vf.add_argument("image", metavar="IMAGE", help="REGISTRY/REPOSITORY[:TAG][@sha256:…]")
    who = vf.add_argument_group("expected signer (one of: a key, or an identity and issuer)")
    who.add_argument("--key", type=Path, metavar="FILE", help="PEM public key (key signing)")
    who.add_argument("--certificate-identity", metavar="ID",
                     help="exact signer identity (keyless), e.g. a workflow ref URI")  # fmt: skip
    who.add_argument("--certificate-identity-regexp", metavar="RE",
                     help="signer identity regexp, anchored with ^…$")  # fmt: skip
    who.add_argument("--certificate-oidc-issuer", metavar="URL",
                     help="OIDC issuer, e.g. https://token.actions.githubusercontent.com")  # fmt: skip
    who.add_argument("--trust-config", type=Path, metavar="FILE",
                     help="Sigstore trusted root or ClientTrustConfig JSON (private Sigstore)")  # fmt: skip
    vf.add_argument("--builder-id", metavar="ID", help="expected provenance builder id")
    vf.add_argument("--source-repository", metavar="URL",
                    help="expected source repository, e.g. https://github.com/org/repo")  # fmt: skip
    vf.add_argument("--max-scan-age-days", type=_days, metavar="N",
                    help="the scan-report attestation may be at most N days old (default 30, "
                    "at most 3650)")  # fmt: skip
    vf.add_argument("--policy-digest", type=_policy_digest, metavar="sha256:HEX",
                    help="the attested run must have been judged by the policy with this "
                    "digest (e.g. the release branch's modelseal.yml: sha256sum)")  # fmt: skip
    vf.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                    help="the whole verification must finish within SECONDS, or exit 3 "
                    "(default: the policy's verify.timeout_seconds, 300)")  # fmt: skip
    vf.add_argument("--format", choices=("text", "json"), default="text")

    pol = sub.add_parser("policy", help="validate a policy file or print its JSON Schema")
    pol_sub = pol.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")
    pv = pol_sub.add_parser(
        "validate", parents=[common], help="check a policy file; errors name file:line:column",
        description="Check a policy file against the schema. Exit 0 if valid, 2 if not.",
    )  # fmt: skip
    pv.add_argument("file", nargs="?", type=Path, help=f"policy file (default: {DEFAULT_POLICY})")
    pol_sub.add_parser(
        "schema", help="print the policy's JSON Schema",
        description="Print the JSON Schema of modelseal.yml (for editors and CI checks).",
    )  # fmt: skip

    mdl = sub.add_parser(
        "models", help="pin, verify and scan model files (the models gate, on its own)",
        description="The models gate's checks, usable alone: pin files in models.lock, verify "
        "a tree against it, scan files for unsafe pickles, disallowed formats and broken "
        "structure. Formats come from the bytes, never the file name.",
    )  # fmt: skip
    mdl_sub = mdl.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    ml = mdl_sub.add_parser(
        "lock", parents=[common], help="hash model files and write models.lock",
        description="Hash every file under PATH… and record path, size, SHA-256 and format in "
        "the lock file (paths relative to the lock's directory). Sources of unchanged files "
        "are kept from an existing lock.",
    )  # fmt: skip
    ml.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="model file or directory")
    ml.add_argument("--lock", type=Path, default=Path("models.lock"), metavar="FILE",
                    help="lock file to write (default: models.lock)")  # fmt: skip
    ml.add_argument("--ignore", action="append", default=[], metavar="GLOB",
                    help="skip files matching this pattern (repeatable)")  # fmt: skip
    ml.add_argument("--source-uri", metavar="URI",
                    help="where the files came from, e.g. hf://org/model")  # fmt: skip
    ml.add_argument("--source-revision", metavar="REV", help="the source's revision (commit)")
    mv = mdl_sub.add_parser(
        "verify", parents=[common], help="check model files against models.lock",
        description="Exit 0 when every pinned file is present and unchanged and nothing "
        "unpinned sits under the locked paths; 1 otherwise (each mismatch names both digests).",
    )  # fmt: skip
    mv.add_argument("--lock", type=Path, default=Path("models.lock"), metavar="FILE")
    mv.add_argument("--format", choices=("text", "json"), default="text")
    ms = mdl_sub.add_parser(
        "scan", parents=[common], help="scan model files: formats, pickles, structure",
        description="Detect each file's format from its bytes, scan every pickle it carries "
        "against the allowlist (nothing is loaded or executed), check its structure, and judge "
        "the result under the policy's models section. Exit 1 when it fails.",
    )  # fmt: skip
    ms.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="file or directory")
    ms.add_argument("--format", choices=("text", "json"), default="text")

    eng = sub.add_parser(
        "engine", help="start or stop a private Docker engine for builds",
        description="A private dockerd (containerd image store, no bridge, no iptables) whose "
        "socket and state live under one directory. Needs dockerd installed and root.",
    )  # fmt: skip
    eng_sub = eng.add_subparsers(dest="engine_command", metavar="SUBCOMMAND")
    for name, text in (
        ("start", "start the engine (idempotent) and print its DOCKER_HOST"),
        ("stop", "stop the engine and unmount what it left"),
        ("status", "check the engine that DOCKER_HOST (or --root) points at"),
    ):
        e = eng_sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        e.add_argument(
            "--root", type=Path, required=name != "status", metavar="DIR",
            help="directory holding the engine's socket and data; yours alone (e.g. mktemp -d: "
            "owned by you, mode 0700, no symbolic link on the way)",
        )  # fmt: skip
        if name == "stop":
            e.add_argument("--remove", action="store_true", help="also delete DIR")

    act = sub.add_parser(
        "action", formatter_class=fmt, epilog=EPILOG,
        help="what action.yml runs: inputs from MODELSEAL_* environment variables",
        description="The GitHub Action's entry point: read the inputs from MODELSEAL_* "
        "environment variables, run (and publish), then write GITHUB_OUTPUT, the job summary "
        "and annotations. Exits with the run's code. See action.yml.",
    )  # fmt: skip
    act.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)
    return p


# Commands that start no threads, children or temporary state of their own: once their output is
# flushed, the interpreter's teardown (collecting every object the imports made, ~60 ms) buys
# nothing. A 200-file `models scan` takes ~0.3 s, so that is a fifth of it.
_HARD_EXIT_COMMANDS: frozenset[tuple[str, str | None]] = frozenset(
    {("models", "scan"), ("models", "verify"), ("models", "lock"), ("policy", "validate"),
     ("policy", "schema")}
)  # fmt: skip


def entry() -> None:
    """The ``modelseal`` console script: :func:`main`, then exit without a slow teardown for
    the read-only commands."""
    argv = sys.argv[1:]
    code = main(argv)
    words = [a for a in argv if not a.startswith("-")][:2]
    if len(words) == 2 and (words[0], words[1]) in _HARD_EXIT_COMMANDS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_EscapingFormatter("%(message)s"))
    try:
        return int(_dispatch(parser, args))
    except Error as e:
        console = _console()
        console.print(f"[bold red]modelseal:[/] {_escape(e.diagnostics())}", highlight=False)
        return int(e.exit_code)
    except KeyboardInterrupt:
        _console().print("modelseal: interrupted", highlight=False)
        return 130
    except Exception as e:
        if verbose:
            raise
        _console().print(
            f"[bold red]modelseal: internal error (a bug):[/] {type(e).__name__}: {_escape(str(e))}\n"
            "Rerun with -v for the traceback, and please report it.",
            highlight=False,
        )
        return int(ExitCode.BUG)


def _escape(text: str) -> str:
    """Messages quote file names, tool output and registry answers: escaped for the terminal
    and the CI log, line by line (a message may span lines; a quoted name may not)."""
    from modelseal.untrusted import untrusted

    return untrusted(text, multiline=True)


def _plain(text: object) -> str:
    """Untrusted text for a plain ``print`` (no Rich markup to escape)."""
    from modelseal.untrusted import untrusted

    return untrusted(text, markup=False)


class _EscapingFormatter(logging.Formatter):
    """Log records quote tool output and registry answers too."""

    def format(self, record: logging.LogRecord) -> str:
        from modelseal.untrusted import untrusted

        return untrusted(super().format(record), markup=False, multiline=True)


def _console() -> Console:
    from modelseal.ui import stderr_console

    return stderr_console()


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command in ("run", "build"):
        gates = ("build",) if args.command == "build" else tuple(args.gate)
        return _run(args, gates, _console())
    if args.command == "judge":
        return _judge(args)
    if args.command == "verify":
        return _verify(args)
    if args.command == "policy":
        from modelseal.policy import load_policy
        from modelseal.policy.schema import schema_text

        if args.policy_command == "schema":
            sys.stdout.write(schema_text())
            return 0
        if args.policy_command == "validate":
            path = args.file or args.policy or DEFAULT_POLICY
            loaded = load_policy(path)
            print(
                f"{_plain(path)}: valid (version {loaded.policy.version}, "
                f"sha256 {loaded.sha256[:12]})"
            )
            return 0
    if args.command == "models" and args.models_command:
        return _models(args)
    if args.command == "engine" and args.engine_command:
        return _engine(args)
    if args.command == "action":
        from modelseal.action import run_action

        return run_action(os.environ)
    parser.print_help(sys.stderr)
    return int(ExitCode.USAGE)


def _load_policy(args: argparse.Namespace) -> LoadedPolicy:
    from modelseal.policy import default_policy, load_policy

    if getattr(args, "policy_ref", None):
        from modelseal.policy.gitref import load_policy_at_ref

        return load_policy_at_ref(args.policy or DEFAULT_POLICY, args.policy_ref)
    if args.policy is not None:
        return load_policy(args.policy)
    if DEFAULT_POLICY.exists() or DEFAULT_POLICY.is_symlink():
        # Not is_file(): a modelseal.yml that is a FIFO, a device or a dangling link is refused,
        # never quietly replaced by the defaults.
        return load_policy(DEFAULT_POLICY)
    return default_policy()


def _run(args: argparse.Namespace, gates: tuple[str, ...], console: Console) -> int:
    from modelseal.gates import select_gates
    from modelseal.judge import judge
    from modelseal.pipeline import RunOptions, resolve_source_date_epoch, run_pipeline
    from modelseal.reports import Report, write_reports
    from modelseal.ui import Progress

    policy = _load_policy(args)
    selected = select_gates(gates)
    context: Path = args.context
    if not context.is_dir():
        raise ConfigError(f"build context {context} is not a directory.")
    signer = None
    if getattr(args, "tag", None) and getattr(args, "push", None) is None:
        raise ConfigError("--tag needs --push IMAGE: tags are moved only when publishing.")
    if getattr(args, "push", None) is not None:
        from modelseal.publish.run import make_signer

        if gates and "build" not in gates:
            raise ConfigError("--push needs the build gate (drop --gate, or add --gate build).")
        args.tag = _checked_tags(args.push, args.tag, policy)
        # Before the build: a missing key or trust config must not cost a whole run.
        signer = make_signer(_sign_options(args, policy))
    if args.build_context and (not gates or "build" in gates):
        from modelseal.build.gate import check_build_contexts

        check_build_contexts(dict(args.build_context))
    options = RunOptions(
        context=context,
        dockerfile=args.dockerfile,
        build_args=dict(args.build_arg),
        build_contexts=dict(args.build_context),
        source_date_epoch=args.source_date_epoch,
        out_dir=args.out_dir,
        gates=gates,
        labels=dict(args.label),
        annotations=dict(args.annotation),
        platforms=tuple(dict.fromkeys(p for group in args.platform for p in group)),
        builder=args.builder,
        buildkit_image=args.buildkit_image,
        cache_from=tuple(args.cache_from),
        cache_to=tuple(args.cache_to),
        publish=getattr(args, "push", None) is not None,
        evidence_cache=None if args.no_evidence_cache else evcache_dir(),
    )
    epoch = resolve_source_date_epoch(
        args.source_date_epoch, os.environ.get("SOURCE_DATE_EPOCH"), context.resolve()
    )
    if policy.ref is not None:
        what = policy.source if policy.source != "<defaults>" else "the built-in defaults"
        console.print(
            f"modelseal: judging under {what} as of {policy.ref} ({(policy.commit or '')[:12]}), "
            f"sha256 {policy.sha256[:12]}."
        )
    elif policy.source == "<defaults>":
        console.print(f"modelseal: no {DEFAULT_POLICY} here; judging under the built-in defaults.")
    with Progress(console) as progress:
        result = run_pipeline(selected, policy, options, epoch, progress=progress)
    verdict = judge(
        result.results,
        policy.policy,
        internal_error=result.internal_error,
        base_dir=context.resolve(),
    )
    report = Report(
        verdict=verdict,
        policy_source=policy.source,
        policy_sha256=policy.sha256,
        policy_ref=policy.ref,
        policy_commit=policy.commit,
        started_at=result.started_at,
        finished_at=result.finished_at,
        tool_version=__version__,
        command=args.command,
    )
    paths = write_reports(report, fsio.absolute(args.out_dir))
    _print_outcome(verdict, paths)
    if getattr(args, "push", None) is None:
        return int(verdict.exit_code)
    if verdict.exit_code != 0:
        console.print(f"modelseal: not published: the verdict is {verdict.status.value}.")
        return int(verdict.exit_code)
    return _publish(args, policy, signer, result, paths["json"], console)


def _checked_tags(push: Any, tags: Sequence[str], policy: LoadedPolicy) -> list[str]:
    """The bare tags of ``--tag`` (full references must name the ``--push`` repository), after
    checking them and ``--push``'s own tag against ``publish.allowed_tags``."""
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
    return list(dict.fromkeys(bare))


def _sign_options(args: argparse.Namespace, policy: LoadedPolicy) -> SignOptions:
    from modelseal.publish.run import SignOptions

    trust = args.trust_config
    if trust is None and policy.policy.sign.trust_config is not None:
        trust = Path(policy.source).parent / policy.policy.sign.trust_config
    return SignOptions(
        mode=args.sign or policy.policy.sign.mode,
        key_file=args.key,
        trust_config=trust,
        attempts=policy.policy.sign.attempts,
    )


def _publish(
    args: argparse.Namespace,
    policy: LoadedPolicy,
    signer: Signer | None,
    result: PipelineResult,
    report_path: Path,
    console: Console,
) -> int:
    from modelseal.publish.run import publish_run

    mode = signer.mode if signer is not None else "none (unsigned)"
    console.print(
        f"modelseal: publishing {_escape(args.push.name)} (signing: {mode}) …", highlight=False
    )
    published = publish_run(
        {r.gate: r for r in result.results},
        report_path,
        ref=args.push,
        signer=signer,
        out_dir=fsio.absolute(args.out_dir),
        started_at=result.started_at,
        finished_at=result.finished_at,
        build_args=dict(args.build_arg),
        policy_path=policy.source,
        policy_sha256=policy.sha256,
        policy_ref=policy.ref,
        extra_tags=(*args.tag, *policy.policy.publish.tags),
        labels=dict(args.label),
        annotations=dict(args.annotation),
        attestations=tuple(policy.policy.publish.attestations),
        repo_dir=args.context.resolve(),
    )
    print(f"published {_plain(published.reference)}")
    for tag in published.tags:
        print(f"  tag       {_plain(f'{published.image}:{tag}')}")
    for name, path in sorted(published.bundles.items()):
        print(f"  bundle    {_plain(name)}: {_plain(path)}")
    print(f"  details   {_plain(fsio.absolute(args.out_dir) / 'publish.json')}")
    return 0


def _print_outcome(verdict: Verdict, paths: dict[str, Path]) -> None:
    from rich.console import Console

    from modelseal.ui import print_verdict

    out = Console(file=sys.stdout, highlight=False, soft_wrap=True, width=_width(), emoji=False)
    print_verdict(verdict, paths, out)


def _width() -> int:
    return max(100, shutil.get_terminal_size((120, 24)).columns)


def _judge(args: argparse.Namespace) -> int:
    from modelseal.judge import judge
    from modelseal.reports import Report, write_reports
    from modelseal.reports.json_report import read_results

    policy = _load_policy(args)
    results, data = read_results(args.report)
    verdict = judge(results, policy.policy)
    paths: dict[str, Path] = {}
    if args.out_dir is not None:
        import calendar
        import time

        def ts(key: str) -> float:
            return float(calendar.timegm(time.strptime(str(data[key]), "%Y-%m-%dT%H:%M:%SZ")))

        report = Report(
            verdict=verdict, policy_source=policy.source, policy_sha256=policy.sha256,
            started_at=ts("started_at"), finished_at=ts("finished_at"),
            tool_version=__version__, command="judge",
        )  # fmt: skip
        paths = write_reports(report, fsio.absolute(args.out_dir))
    _print_outcome(verdict, paths)
    return int(verdict.exit_code)


def _verify(args: argparse.Namespace) -> int:
    from modelseal.publish.verify_image import VerifyOptions, verify_image
    from modelseal.sign.verify import ExpectedSigner

    policy = _load_policy(args)
    pv = policy.policy.verify
    base = Path(policy.source).parent if policy.source != "<defaults>" else Path(".")
    flags = (
        args.key, args.certificate_identity, args.certificate_identity_regexp,
        args.certificate_oidc_issuer,
    )  # fmt: skip
    # The expected signer comes from the command line or from the policy, never a mix: a
    # policy (e.g. the checked-out repository's) must not swap the signer the command pinned.
    if any(f is not None for f in flags):
        key = args.key
        identity, regexp = args.certificate_identity, args.certificate_identity_regexp
        issuer = args.certificate_oidc_issuer
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
    trust = args.trust_config
    if trust is None and policy.policy.sign.trust_config is not None:
        trust = base / policy.policy.sign.trust_config
    if key is not None:
        from modelseal.bounded import read_input
        from modelseal.sign.key import MAX_KEY_BYTES

        key_pem = read_input(key, what="public key", limit=MAX_KEY_BYTES)
        expected = ExpectedSigner(public_key_pem=key_pem)
    else:
        expected = ExpectedSigner(
            issuer=issuer, identity=identity, identity_regexp=regexp, trust_config=trust
        )
    rejudge = None
    if args.policy is not None:
        rejudge = _rejudger(policy)
    options = VerifyOptions(
        expected=expected,
        builder_id=args.builder_id or pv.builder_id,
        source_repository=args.source_repository or pv.source_repository,
        max_scan_age_days=(
            args.max_scan_age_days if args.max_scan_age_days is not None else pv.max_scan_age_days
        ),
        rejudge=rejudge,
        policy_sha256=args.policy_digest,
        timeout_s=args.timeout if args.timeout is not None else pv.timeout_seconds,
    )
    result = verify_image(args.image, options)
    if args.format == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(_plain(f"{result.image}@{result.digest}"))
        for c in result.checks:
            print(f"  {'✓' if c.ok else '✗'} {c.name:<12} {_plain(c.detail)}")
        print("verified" if result.ok else "NOT verified")
    return int(ExitCode.PASSED if result.ok else ExitCode.BREACHED)


def _rejudger(policy: LoadedPolicy) -> Callable[[Any], tuple[bool, str]]:
    from modelseal.findings import Status
    from modelseal.gates import enabled_gates
    from modelseal.judge import judge
    from modelseal.reports.json_report import results_from_data

    # Every gate this policy switches on must have run in the attested run: evidence that was
    # never collected (a scanner the release policy switched off) cannot pass a stricter policy.
    # models-image is left out: it has nothing to compare without models.image_paths.
    required = [n for n in enabled_gates(policy.policy) if n != "models-image"]

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
        verdict = judge(results, policy.policy)
        return verdict.exit_code == 0, f"{verdict.status.value} under {policy.source}"

    return rejudge


def _models(args: argparse.Namespace) -> int:
    from modelseal.models import cli

    if args.models_command == "lock":
        return cli.lock_command(
            args.paths, args.lock, args.ignore, args.source_uri, args.source_revision
        )
    if args.models_command == "verify":
        return cli.verify_command(args.lock, _load_policy(args), args.format == "json")
    return cli.scan_command(args.paths, lambda: _load_policy(args), args.format == "json")


def _engine(args: argparse.Namespace) -> int:
    from modelseal.engine import PrivateEngine, probe_engine

    if args.engine_command == "start":
        engine = PrivateEngine(args.root).start()
        print(f"DOCKER_HOST={engine.docker_host}")
        return 0
    if args.engine_command == "stop":
        PrivateEngine(args.root).stop(remove=args.remove)
        return 0
    if args.root is not None:
        os.environ["DOCKER_HOST"] = PrivateEngine(args.root).docker_host
    info = probe_engine(create_builder=False)
    print(json.dumps(info.__dict__, indent=2))
    return 0
