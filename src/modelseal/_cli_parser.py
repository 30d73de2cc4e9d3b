"""The command line's grammar: the ``modelseal`` argument parser, its help texts and the argument
types that check each value as it is parsed. :mod:`modelseal._cli` runs what it parses."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from modelseal import VERSION_TEXT
from modelseal.admission import FORMATS
from modelseal.errors import ConfigError
from modelseal.gates import GATES

# Building the parser runs on every start, `modelseal --version` included: nothing heavier than
# the gate registry and the export formats is imported here (tests/test_cli_startup.py).
DEFAULT_POLICY = "modelseal.yml"
"""The default policy file's name for the help texts; :data:`modelseal.app.DEFAULT_POLICY` is
the one the commands use (the application and its file helpers are not imported to say it)."""

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


REBUILD_EPILOG = """\
exit codes:
  0  reproduced: the rebuild gave the image's digest
  1  differs: the rebuild gave another image (rebuild.json names the layers and files)
  2  usage error, a TARGET that is not a provenance signed by the expected signer
     (unsigned, tampered, another signer), an --out-dir inside what the rebuild reads
  3  the rebuild could not run: the registry could not answer, a base image or commit is
     missing, another context normalization version, a recorded input that would read this
     host (a url context that is not a remote URL, a .git path, a BUILDKIT_* build arg),
     the engine or the build failed
  4  internal error (a bug; rerun with -v for the traceback)
"""


def _wrapped(text: str) -> str:
    """A description for the raw formatter (which keeps the epilog's layout), wrapped."""
    import textwrap

    return textwrap.fill(text, width=88)


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


def _dns_name(text: str) -> str:
    """A Kubernetes resource name (DNS-1123 subdomain, at most 253 characters)."""
    label = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    if len(text) > 253 or re.fullmatch(rf"{label}(\.{label})*", text) is None:
        raise argparse.ArgumentTypeError(
            f"expected a Kubernetes name (lower-case letters, digits, '-' and '.'), got {text!r}"
        )
    return text


_BASELINE_HELP = (
    "fail only on what this change adds: judge the vulnerability findings against a previous "
    "report.json, or the signed scan-report attestation of an image (e.g. the base branch's "
    "last sealed image; signed as the policy's verify section names); replaces "
    "vulnerabilities.baseline"
)


def _baseline(text: str) -> str:
    """``--baseline``: a report.json path or an image reference (one line, bounded)."""
    return _pattern("BASELINE_PATTERN")(text)


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


def _count(text: str) -> int:
    from modelseal.policy.model import MAX_REBUILDERS

    if not text.isdigit() or not 1 <= int(text) <= MAX_REBUILDERS:
        shown = text if len(text) <= 40 else text[:39] + "…"
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {MAX_REBUILDERS}, got {shown!r}"
        )
    return int(text)


def _days(text: str) -> int:
    from modelseal.policy.model import MAX_AGE_DAYS

    if not text.isdigit() or int(text) > MAX_AGE_DAYS:
        raise argparse.ArgumentTypeError(f"expected whole days from 0 to {MAX_AGE_DAYS}")
    return int(text)


def _future_date(text: str) -> object:
    """``YYYY-MM-DD``, after today and at most ten years ahead (an ignore entry's expiry)."""
    import datetime as dt

    from modelseal.policy.model import MAX_AGE_DAYS

    try:
        day = dt.date.fromisoformat(text) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else None
    except ValueError:
        day = None
    if day is None:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}")
    today = dt.datetime.now(dt.UTC).date()
    if not today < day <= today + dt.timedelta(days=MAX_AGE_DAYS):
        raise argparse.ArgumentTypeError(
            f"expected a date after today and at most {MAX_AGE_DAYS} days ahead, got {text}"
        )
    return day


def _expected_signer_args(
    parser: argparse.ArgumentParser, title: str, *, trust_note: str = ""
) -> None:
    """The expected-signer flags that `verify` and `rebuild` share (resolved by
    :func:`modelseal.app.expected_signer`)."""
    who = parser.add_argument_group(title)
    who.add_argument("--key", type=Path, metavar="FILE", help="PEM public key (key signing)")
    who.add_argument("--certificate-identity", metavar="ID",
                     help="exact signer identity (keyless), e.g. a workflow ref URI")  # fmt: skip
    who.add_argument("--certificate-identity-regexp", metavar="RE",
                     help="signer identity regexp, anchored with ^…$")  # fmt: skip
    who.add_argument("--certificate-oidc-issuer", metavar="URL",
                     help="OIDC issuer, e.g. https://token.actions.githubusercontent.com")  # fmt: skip
    who.add_argument("--trust-config", type=Path, metavar="FILE",
                     help="Sigstore trusted root or ClientTrustConfig JSON (private Sigstore"
                     f"{trust_note})")  # fmt: skip


class _Unbuilt:
    """Stands in for the parser of a command that is not being run: every call builds nothing."""

    def __getattr__(self, name: str) -> Callable[..., _Unbuilt]:
        return lambda *args, **kwargs: self


if TYPE_CHECKING:
    _Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    _Subparsers = argparse._SubParsersAction


def _subparsers_building(only: str | None) -> type[_Subparsers]:
    """Subparsers that build only the command ``only`` (None: every one)."""

    class Subparsers(_Subparsers):
        def add_parser(self, name: str, **kwargs: Any) -> Any:
            if only is not None and name != only:
                return _Unbuilt()
            return super().add_parser(name, **kwargs)

    return Subparsers


#: Commands whose runs parse with only their own parser (:func:`parser_for`): a small
#: `models scan` is mostly start-up, and building every command's options is ~10 ms of it.
#: tests/test_cli_startup.py checks that each parses and helps the same either way.
PARTIAL_COMMANDS: frozenset[tuple[str, str]] = frozenset(
    {("models", "scan"), ("models", "verify"), ("models", "lock"), ("policy", "validate")}
)


def parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser for ``argv``: only its command's when its first two words are, as typed, one
    of :data:`PARTIAL_COMMANDS` (nothing else can then be parsed), none for ``--version``
    alone, else the whole one."""
    if list(argv) == ["--version"]:
        return build_parser(only=("", ""))  # no command at all
    words = tuple(argv[:2])
    for command in PARTIAL_COMMANDS:
        if words == command:
            return build_parser(only=command)
    return build_parser()


def build_parser(only: tuple[str, str] | None = None) -> argparse.ArgumentParser:
    """The ``modelseal`` argument parser: every command, option and help text. With ``only``
    (one of :data:`PARTIAL_COMMANDS`), the parser of that command alone: the others are not
    built, so it parses nothing else and its top-level help lists no command."""
    fmt = argparse.RawDescriptionHelpFormatter
    first = _subparsers_building(only[0] if only else None)
    second = _subparsers_building(only[1] if only else None)
    p = argparse.ArgumentParser(
        prog="modelseal",
        description="Seal ML model-serving container images: verify, build reproducibly, "
        "scan, attest, sign — and fail when the policy is breached.",
        epilog=EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("--version", action="version", version=VERSION_TEXT)
    p.add_argument("-v", "--verbose", action="store_true", help="debug output and tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", action=first)

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
        "--rebuild-on", type=_pattern("REBUILD_ON_PATTERN"), metavar="same|fresh|BUILDER",
        help="where the rebuild check builds: the first build's builder, a fresh private "
        "engine (needs root and dockerd), or another buildx builder",
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
    run.add_argument(
        "--baseline", type=_baseline, metavar="REPORT.json|IMAGE",
        help=_BASELINE_HELP,
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
    jd.add_argument(
        "--baseline", type=_baseline, metavar="REPORT.json|IMAGE",
        help=_BASELINE_HELP,
    )  # fmt: skip

    vf = sub.add_parser(
        "verify", parents=[common], formatter_class=fmt, epilog=VERIFY_EPILOG,
        help="check a published image before deploying it",
        description="Verify IMAGE in its registry: a signature by the expected signer, SLSA "
        "provenance (builder, source repository), an SBOM attestation, and a passing, recent "
        "scan-report attestation — all bound to the image's digest. With --policy, the "
        "attested scan evidence is judged again under that policy. With --require-rebuild-by, "
        "independent rebuilders must have reproduced the digest. The expected signer and the "
        "rebuilders come from the flags, else from the policy's verify section.",
    )  # fmt: skip
    vf.add_argument("image", metavar="IMAGE", help="REGISTRY/REPOSITORY[:TAG][@sha256:…]")
    _expected_signer_args(vf, "expected signer (one of: a key, or an identity and issuer)")
    vf.add_argument("--builder-id", metavar="ID", help="expected provenance builder id")
    vf.add_argument("--model-signature", type=Path, metavar="FILE",
                    help="a model signature (publish.sign_models' model.sig): the provenance "
                    "must record it, the same signer must have made it, and the model files "
                    "must match it")  # fmt: skip
    vf.add_argument("--model-dir", type=Path, metavar="DIR",
                    help="the model files to check against --model-signature (default: the "
                    "directory the provenance names, relative to the current directory)")  # fmt: skip
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
    rbv = vf.add_argument_group(
        "independent rebuilds (each a signed `modelseal rebuild --attest` that reproduced the "
        "image digest)"
    )
    rbv.add_argument("--require-rebuild-by", action="append", default=[], metavar="REBUILDER",
                    help="a rebuilder that must have reproduced the digest: key:FILE (PEM "
                    "public key) or a keyless identity, exactly; repeatable, at most 16 "
                    "(default: the policy's verify.require_rebuild_by)")  # fmt: skip
    rbv.add_argument("--rebuild-oidc-issuer", metavar="URL",
                    help="OIDC issuer of the keyless rebuilders (default: "
                    "--certificate-oidc-issuer)")  # fmt: skip
    rbv.add_argument("--min-rebuilds", type=_count, metavar="N",
                    help="how many of the rebuilders must agree (default: all)")  # fmt: skip
    vf.add_argument("--format", choices=("text", "json"), default="text")

    rb = sub.add_parser(
        "rebuild", parents=[common], formatter_class=fmt, epilog=REBUILD_EPILOG,
        help="rebuild a sealed image from its signed provenance and compare the digests",
        description=_wrapped(
        "Rebuild TARGET from its signed SLSA provenance and the source, on a fresh "
        "private engine (empty data root) or --builder, and compare the digest with the "
        "provenance's subject. The provenance signature is verified first (same signer flags as "
        "verify); nothing is built from an unsigned or mismatched one. --source must be a git "
        "work tree holding the recorded commit: the build is always from a clean clone of it at "
        "that commit (modified or untracked files of --source are not used), and model files "
        "the provenance pins that are not in git are copied from --source only when their "
        "SHA-256 is the recorded one. On a mismatch the published image is fetched and "
        "rebuild.json names the layers and file paths that differ. Writes OUT/rebuild.json; "
        "--attest signs a rebuild attestation (predicate https://modelseal.dev/rebuild/v1) to "
        "OUT/rebuild.sigstore.json, --push attaches it to the image."),
    )  # fmt: skip
    rb.add_argument(
        "target", metavar="TARGET",
        help="REGISTRY/REPOSITORY[:TAG][@sha256:…], or a Sigstore bundle file of the provenance "
        "(OUT/bundles/provenance.sigstore.json of `run --push`)",
    )  # fmt: skip
    rb.add_argument(
        "--source", type=Path, required=True, metavar="DIR",
        help="a git work tree of the source repository, holding the recorded commit (cloned, "
        "never built in place)",
    )  # fmt: skip
    rb.add_argument(
        "--build-context", type=_key_value, action="append", default=[], metavar="NAME=VALUE",
        help="where a recorded oci-layout build context is: NAME=oci-layout://DIR[@sha256:…] or "
        "NAME=docker-image://REF@sha256:… (the recorded digest; repeatable)",
    )  # fmt: skip
    rb.add_argument(
        "--builder", type=_pattern("BUILDER_PATTERN"), metavar="NAME",
        help="build with this existing buildx builder (of $DOCKER_HOST, else the current docker "
        "context; default: a fresh private engine, started and removed for this rebuild, "
        "without network)",
    )  # fmt: skip
    rb.add_argument(
        "-o", "--out-dir", type=Path, default=Path("modelseal-rebuild"), metavar="DIR",
        help="where rebuild.json, the rebuilt OCI layout and the attestation go "
        "(default: modelseal-rebuild)",
    )  # fmt: skip
    rb.add_argument(
        "--timeout", type=_seconds, default=600, metavar="SECONDS",
        help="registry reads and the fetch of the published image must finish within SECONDS "
        "(default 600; the build has its own limit)",
    )  # fmt: skip
    rb.add_argument("--format", choices=("text", "json"), default="text")
    _expected_signer_args(
        rb,
        "expected signer of the provenance (one of: a key, or an identity and issuer)",
        trust_note="; also for --sign keyless",
    )
    ratt = rb.add_argument_group("attestation (the rebuilder's own signature)")
    ratt.add_argument(
        "--attest", action="store_true",
        help="sign a rebuild attestation (either verdict) to OUT/rebuild.sigstore.json",
    )  # fmt: skip
    ratt.add_argument(
        "--push", action="store_true",
        help="attach the attestation to the image as a Sigstore bundle referrer (needs --attest)",
    )  # fmt: skip
    ratt.add_argument("--sign", choices=("key", "keyless"), help="how to sign the attestation")
    ratt.add_argument(
        "--signing-key", type=Path, metavar="FILE",
        help="ECDSA P-256 PEM private key for --sign key (password in MODELSEAL_KEY_PASSWORD)",
    )  # fmt: skip

    pol = sub.add_parser(
        "policy", help="validate a policy file, print its JSON Schema, import ignore rules"
    )
    pol_sub = pol.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", action=second)
    pv = pol_sub.add_parser(
        "validate", parents=[common], help="check a policy file; errors name file:line:column",
        description="Check a policy file against the schema. Exit 0 if valid, 2 if not.",
    )  # fmt: skip
    pv.add_argument("file", nargs="?", type=Path, help=f"policy file (default: {DEFAULT_POLICY})")
    pol_sub.add_parser(
        "schema", help="print the policy's JSON Schema",
        description="Print the JSON Schema of modelseal.yml (for editors and CI checks).",
    )  # fmt: skip
    pe = pol_sub.add_parser(
        "export", parents=[common], formatter_class=fmt,
        help="write an admission policy that enforces the policy's verify section",
        description="Write a ready-to-apply admission policy that enforces at deploy time what "
        "`modelseal verify` enforces, from the policy's verify section: the signer, the SLSA "
        "provenance's builder id and source repository, a PASSED scan report no older than "
        "verify.max_scan_age_days, and the SBOM attestation (unless --no-sbom). Formats: kyverno "
        "(ClusterPolicy, JMESPath), kyverno-ivp (ImageValidatingPolicy, CEL), "
        "policy-controller (Sigstore ClusterImagePolicy, Rego).",
    )  # fmt: skip
    pe.add_argument("--format", required=True, choices=FORMATS, dest="export_format",
                    help="the admission controller's resource")  # fmt: skip
    pe.add_argument("--image-pattern", action="append", default=[], metavar="GLOB",
                    help="images the policy applies to, e.g. 'ghcr.io/org/*' (repeatable)")  # fmt: skip
    pe.add_argument("--name", type=_dns_name, metavar="NAME",
                    help="the resource's metadata.name (default: modelseal- and the policy "
                    "file's SHA-256 prefix)")  # fmt: skip
    pe.add_argument("--no-sbom", action="store_true",
                    help="do not require the CycloneDX SBOM attestation (required by default, "
                    "as modelseal verify requires it)")  # fmt: skip
    pe.add_argument("--require-sbom", action="store_true",
                    help="the default; accepted for compatibility")  # fmt: skip
    pe.add_argument("--policy-digest", type=_policy_digest, metavar="sha256:HEX",
                    help="the scan report must name the policy with this digest")  # fmt: skip
    pe.add_argument("--runtime-profile", type=Path, metavar="FILE",
                    help="the image's runtime profile (runtime-profile.json, or `modelseal "
                    "verify --format json` output): require its signed attestation, and "
                    "(kyverno) refuse pods running the image with more privilege")  # fmt: skip
    pe.add_argument("-o", "--output", type=Path, metavar="FILE",
                    help="write here (created fresh; default: standard output)")  # fmt: skip
    pi = pol_sub.add_parser(
        "import", formatter_class=fmt,
        help="turn Trivy and Grype ignore rules into vulnerabilities.ignore entries",
        description=_wrapped(
            "Convert the ignore rules of a Trivy .trivyignore.yaml or .trivyignore and of a "
            "Grype .grype.yaml into vulnerabilities.ignore entries (id, package, purl, "
            "versions, paths, fix_state, reason, expires, justification) and print them as a "
            "YAML fragment, or add them to the policy file with --policy FILE --write. A rule "
            "modelseal cannot express without ignoring more than the rule does (no "
            "vulnerability id, a Grype namespace, a package regex, a VEX-status rule, "
            "misconfiguration, secret and license ignores, an unknown key) is not imported "
            "and is listed on standard error with its file and place, as is anything an "
            "imported entry does not keep."
        ),
        epilog="exit codes:\n  0  imported (rules that could not be are listed on standard "
        "error)\n  2  an unreadable or invalid file (named with the entry), rules without an "
        "expiry\n     date and no --expires, an invalid --policy file\n",
    )  # fmt: skip
    pi.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)
    pi.add_argument("--trivyignore", action="append", default=[], type=Path, metavar="FILE",
                    help="a Trivy ignore file: .trivyignore.yaml (read as YAML when the name "
                    "ends in .yml/.yaml, as Trivy does) or .trivyignore (repeatable)")  # fmt: skip
    pi.add_argument("--grype", action="append", default=[], type=Path, metavar="FILE",
                    help="a Grype configuration with ignore: rules, e.g. .grype.yaml "
                    "(repeatable)")  # fmt: skip
    pi.add_argument("--expires", type=_future_date, metavar="YYYY-MM-DD",
                    help="the expiry of rules that have none (required when any has none: "
                    "every modelseal entry expires; Grype rules never say when)")  # fmt: skip
    pi.add_argument("--reason", metavar="TEXT",
                    help="the reason of rules that give none (default: one naming the file "
                    "and the rule, saying it gave none)")  # fmt: skip
    pi.add_argument("--policy", type=Path, metavar="FILE",
                    help="the policy file: entries it already holds are left out; with "
                    "--write, the entries are added to it (created if missing)")  # fmt: skip
    pi.add_argument("--write", action="store_true",
                    help="add the entries to --policy FILE (validated, then replaced "
                    "atomically; comments are kept, indentation may be normalised)")  # fmt: skip

    mdl = sub.add_parser(
        "models", help="pin, verify and scan model files (the models gate, on its own)",
        description="The models gate's checks, usable alone: pin files in models.lock, verify "
        "a tree against it, scan files for unsafe pickles, disallowed formats and broken "
        "structure. Formats come from the bytes, never the file name.",
    )  # fmt: skip
    mdl_sub = mdl.add_subparsers(dest="models_command", metavar="SUBCOMMAND", action=second)
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
    mv.add_argument(
        "--check-source", action="store_true",
        help="also ask the Hub (HF_ENDPOINT) whether each hf:// source revision still has the "
        "file with the pinned digest (network; without it, only unpinned revisions are reported)",
    )  # fmt: skip
    mf = mdl_sub.add_parser(
        "fetch", parents=[common], help="download a Hugging Face Hub model pinned to a commit",
        description="Download hf://ORG/NAME@COMMIT with huggingface_hub into DIR, check every "
        "file against the Hub's own digest (LFS SHA-256, or the git blob SHA-1 of a small file) "
        "and against the lock when it pins the file, then pin the files in the lock with their "
        "source. A branch or tag is refused unless --allow-ref. Exit 1, nothing written, on a "
        "mismatch. HF_TOKEN and HF_ENDPOINT are read from the environment.",
    )  # fmt: skip
    mf.add_argument("uri", metavar="hf://ORG/NAME@COMMIT", help="the repository and commit")
    mf.add_argument("--include", action="append", default=[], metavar="GLOB",
                    help="fetch only files matching this pattern, by path or name (repeatable)")  # fmt: skip
    mf.add_argument("--dest", type=Path, metavar="DIR",
                    help="where the files go, below the lock's directory (default: models/NAME there)")  # fmt: skip
    mf.add_argument("--lock", type=Path, default=Path("models.lock"), metavar="FILE",
                    help="lock file to check against and update (default: models.lock)")  # fmt: skip
    mf.add_argument("--allow-ref", action="store_true",
                    help="accept a branch or tag: resolve it to its commit, record that, warn")  # fmt: skip
    mf.add_argument("--replace", action="store_true",
                    help="replace DIR when it exists and is not empty")  # fmt: skip
    ms = mdl_sub.add_parser(
        "scan", parents=[common], help="scan model files: formats, pickles, structure",
        description="Detect each file's format from its bytes, scan every pickle it carries "
        "against the allowlist (nothing is loaded or executed), check its structure, and judge "
        "the result under the policy's models section. Exit 1 when it fails.",
    )  # fmt: skip
    ms.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="file or directory")
    ms.add_argument("--format", choices=("text", "json"), default="text")
    mg = mdl_sub.add_parser(
        "sign", parents=[common], help="sign the locked model files (OpenSSF model-signing)",
        description="Check the files under DIR against the lock (a mismatch: exit 1, nothing "
        "signed), sign the pinned ones with model-signing — a key, or keyless with the CI's "
        "OIDC identity or $SIGSTORE_ID_TOKEN — and verify the signature made. Files the lock "
        "does not pin are left out (recorded as ignored, so a verifier skips exactly them). "
        "The signature is a new file; a link at its name is refused.",
    )  # fmt: skip
    mg.add_argument("model_dir", nargs="?", type=Path, metavar="DIR",
                    help="the model directory (default: the lock's only root)")  # fmt: skip
    mg.add_argument("--lock", type=Path, default=Path("models.lock"), metavar="FILE")
    mg.add_argument("--signature", type=Path, metavar="OUT",
                    help="where the signature goes (default: model.sig beside DIR)")  # fmt: skip
    mgk = mg.add_mutually_exclusive_group(required=True)
    mgk.add_argument("--key", type=Path, metavar="PRIVATE.pem",
                     help="ECDSA P-256 PEM private key (password in MODELSEAL_KEY_PASSWORD)")  # fmt: skip
    mgk.add_argument("--keyless", action="store_true",
                     help="Sigstore keyless: the CI's OIDC identity, or $SIGSTORE_ID_TOKEN")  # fmt: skip
    mg.add_argument("--trust-config", type=Path, metavar="FILE",
                    help="Sigstore ClientTrustConfig of a private deployment (default: the "
                    "policy's sign.trust_config, else the public instance)")  # fmt: skip
    mg.add_argument("--format", choices=("text", "json"), default="text")

    eng = sub.add_parser(
        "engine", help="start or stop a private Docker engine for builds",
        description="A private dockerd (containerd image store, no bridge, no iptables) whose "
        "socket and state live under one directory. Needs dockerd installed and root.",
    )  # fmt: skip
    eng_sub = eng.add_subparsers(dest="engine_command", metavar="SUBCOMMAND", action=second)
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
