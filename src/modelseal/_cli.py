"""The command line: arguments become a request to the application (:mod:`modelseal.app`), its
outcome is printed (:mod:`modelseal.ui`). With the Action adapter, the only place errors become
exit codes and messages. The parser itself (every option and help text) is
:mod:`modelseal._cli_parser`."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelseal.errors import Error, ExitCode

# Imports of the commands' machinery happen inside the commands: `modelseal models scan` must
# not pay for BuildKit, reports and the whole pipeline before it starts (start-up is most of a
# small scan's time).
if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from rich.console import Console

    from modelseal.app import SignerFlags
    from modelseal.policy import LoadedPolicy


# Commands that start no threads, children or temporary state of their own: once their output is
# flushed, the interpreter's teardown (collecting every object the imports made, ~60 ms) buys
# nothing. A 200-file `models scan` takes ~0.3 s, so that is a fifth of it.
_HARD_EXIT_COMMANDS: frozenset[tuple[str, str | None]] = frozenset(
    {("models", "scan"), ("models", "verify"), ("models", "lock"), ("policy", "validate"),
     ("policy", "schema")}
)  # fmt: skip


# Commands that import nothing that logs (tests/test_cli_startup.py checks that they do not even
# import `logging`): configuring it would only cost their start-up the import.
_UNLOGGED_COMMANDS: frozenset[tuple[str, str | None]] = frozenset(
    {("models", "scan"), ("policy", "validate")}
)


def entry() -> None:
    """The ``modelseal`` console script: :func:`main`, then exit without a slow teardown for
    the read-only commands."""
    argv = sys.argv[1:]
    if argv == ["--version"]:
        # What argparse's version action prints, without importing argparse or building the
        # parser (three quarters of this answer's time; tests/test_cli_startup.py).
        from modelseal import VERSION_TEXT

        sys.stdout.write(VERSION_TEXT + "\n")
        sys.exit(0)
    words = [a for a in argv if not a.startswith("-")][:2]
    hard_exit = len(words) == 2 and (words[0], words[1]) in _HARD_EXIT_COMMANDS
    if hard_exit:
        # Importing pydantic and the policy model makes ~10^5 objects, and the cycle collector
        # walks them again and again while they are made (~7 % of `policy validate`). These
        # commands make little cyclic garbage (refcounting frees the rest), and the process
        # ends without a teardown; the scan itself collects as usual (models.cli._scan_one).
        gc.disable()
    code = main(argv)
    if hard_exit:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    from modelseal._cli_parser import parser_for

    parser = parser_for(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    if _command(args) not in _UNLOGGED_COMMANDS:
        _configure_logging(verbose)
    try:
        return int(_dispatch(parser, args))
    except Error as e:
        from modelseal.ui import print_error

        print_error(_console(), e.diagnostics())
        return int(e.exit_code)
    except KeyboardInterrupt:
        _console().print("modelseal: interrupted", highlight=False)
        return 130
    except Exception as e:
        if verbose:
            raise
        from modelseal.ui import print_error

        console = _console()
        print_error(console, f"{type(e).__name__}: {e}", bug=True)
        console.print("Rerun with -v for the traceback, and please report it.", highlight=False)
        return int(ExitCode.BUG)


def _plain(text: object) -> str:
    """Untrusted text for a plain ``print`` (no Rich markup to escape)."""
    from modelseal.untrusted import untrusted

    return untrusted(text, markup=False)


def _command(args: argparse.Namespace) -> tuple[str, str | None]:
    """The command and subcommand parsed, e.g. ``("models", "scan")``."""
    command = str(args.command)
    for name in ("policy_command", "models_command", "engine_command"):
        sub = getattr(args, name, None)
        if sub is not None:
            return command, str(sub)
    return command, None


def _configure_logging(verbose: bool) -> None:
    """Log records go to stderr, escaped: they quote tool output and registry answers too."""
    import logging

    from modelseal.untrusted import untrusted

    class EscapingFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return untrusted(super().format(record), markup=False, multiline=True)

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(EscapingFormatter("%(message)s"))


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
    if args.command == "rebuild":
        return _rebuild(args)
    if args.command == "policy":
        from modelseal.policy import load_policy
        from modelseal.policy.schema import schema_text

        if args.policy_command == "schema":
            sys.stdout.write(schema_text())
            return 0
        if args.policy_command == "export":
            return _export(args)
        if args.policy_command == "import":
            return _import(args)
        if args.policy_command == "validate":
            from modelseal.policyfile import DEFAULT_POLICY

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
        from modelseal.github import run_action

        return run_action(os.environ)
    parser.print_help(sys.stderr)
    return int(ExitCode.USAGE)


def _load_policy(args: argparse.Namespace) -> LoadedPolicy:
    # Not through modelseal.app: the read-only commands do not import the application.
    from modelseal.policyfile import load_policy

    return load_policy(args.policy, getattr(args, "policy_ref", None))


def _run(args: argparse.Namespace, gates: tuple[str, ...], console: Console) -> int:
    from modelseal import app
    from modelseal.evcache import default_dir as evcache_dir
    from modelseal.ui import ConsoleHooks, print_published

    request = app.RunRequest(
        policy=_load_policy(args),
        context=args.context,
        out_dir=args.out_dir,
        command=args.command,
        gates=gates,
        dockerfile=args.dockerfile,
        build_args=tuple(args.build_arg),
        build_contexts=tuple(args.build_context),
        labels=tuple(args.label),
        annotations=tuple(args.annotation),
        platforms=tuple(p for group in args.platform for p in group),
        source_date_epoch=args.source_date_epoch,
        builder=args.builder,
        buildkit_image=args.buildkit_image,
        rebuild_on=args.rebuild_on,
        cache_from=tuple(args.cache_from),
        cache_to=tuple(args.cache_to),
        push=getattr(args, "push", None),
        tags=tuple(getattr(args, "tag", ())),
        sign=getattr(args, "sign", None),
        key_file=getattr(args, "key", None),
        trust_config=getattr(args, "trust_config", None),
        evidence_cache=None if args.no_evidence_cache else evcache_dir(),
        baseline=getattr(args, "baseline", None),
    )
    outcome = app.run(request, ConsoleHooks(console))
    if outcome.published is not None:
        print_published(outcome.published, outcome.out_dir)
    return int(outcome.exit_code)


def _judge(args: argparse.Namespace) -> int:
    from modelseal import app
    from modelseal.ui import print_verdict, stdout_console

    outcome = app.judge(
        app.JudgeRequest(args.report, _load_policy(args), args.out_dir, baseline=args.baseline)
    )
    print_verdict(outcome.verdict, outcome.paths, stdout_console())
    return int(outcome.exit_code)


def _signer_flags(args: argparse.Namespace) -> SignerFlags:
    """The expected signer as `verify` and `rebuild` take it on the command line."""
    from modelseal.app import SignerFlags

    return SignerFlags(
        key=args.key,
        identity=args.certificate_identity,
        identity_regexp=args.certificate_identity_regexp,
        issuer=args.certificate_oidc_issuer,
        trust_config=args.trust_config,
    )


def _verify(args: argparse.Namespace) -> int:
    from modelseal import app
    from modelseal.ui import print_verification

    request = app.VerifyRequest(
        image=args.image,
        policy=_load_policy(args),
        signer=_signer_flags(args),
        builder_id=args.builder_id,
        source_repository=args.source_repository,
        max_scan_age_days=args.max_scan_age_days,
        policy_digest=args.policy_digest,
        timeout_s=args.timeout,
        rejudge=args.policy is not None,
        rebuild=app.RebuildFlags(
            rebuilders=tuple(args.require_rebuild_by),
            min_rebuilds=args.min_rebuilds,
            issuer=args.rebuild_oidc_issuer,
        ),
        model_signature=args.model_signature,
        model_dir=args.model_dir,
    )
    outcome = app.verify(request)
    if args.format == "json":
        import json

        print(json.dumps(outcome.result.to_json(), indent=2))
    else:
        print_verification(outcome.result)
    return int(outcome.exit_code)


def _rebuild(args: argparse.Namespace) -> int:
    from modelseal import app
    from modelseal.rebuild.report import summary_lines
    from modelseal.ui import ConsoleHooks

    request = app.RebuildRequest(
        target=args.target,
        source=args.source,
        policy=_load_policy(args),
        signer=_signer_flags(args),
        build_contexts=tuple(args.build_context),
        builder=args.builder,
        out_dir=args.out_dir,
        timeout_s=args.timeout,
        attest=args.attest,
        push=args.push,
        sign=args.sign,
        signing_key=args.signing_key,
    )
    outcome = app.rebuild(request, ConsoleHooks(_console()))
    if args.format == "json":
        # ASCII: the report carries untrusted text (names, notes); escaped, no control or
        # bidi character reaches the terminal raw.
        import json

        print(json.dumps(outcome.report.to_json(), indent=2, ensure_ascii=True))
    else:
        for line in summary_lines(outcome.report):
            print(_plain(line))
        print(_plain(f"report: {outcome.path}"))
    return int(outcome.exit_code)


def _export(args: argparse.Namespace) -> int:
    from modelseal import fsio
    from modelseal.admission import spec_from_policy, unenforced
    from modelseal.admission.export import export_yaml
    from modelseal.ui import message

    if args.no_sbom and args.require_sbom:
        from modelseal.errors import ConfigError

        raise ConfigError("--no-sbom and --require-sbom contradict each other; give one.")
    policy = _load_policy(args)
    runtime = None
    if args.runtime_profile is not None:
        from modelseal.admission.runtime import load_runtime_rule, unenforced_runtime

        runtime = load_runtime_rule(args.runtime_profile)
    spec = spec_from_policy(
        policy,
        image_patterns=tuple(args.image_pattern),
        name=args.name,
        require_sbom=not args.no_sbom,
        policy_sha256=args.policy_digest,
        runtime=runtime,
    )
    text = export_yaml(spec, args.export_format)
    notices = unenforced(policy)
    if runtime is not None and (gap := unenforced_runtime(args.export_format)) is not None:
        notices.append(gap)
    for notice in notices:
        _console().print(f"modelseal: notice: {message(notice)}", highlight=False)
    if args.output is None:
        sys.stdout.write(text)
    else:
        fsio.write_text_atomic(args.output, text)
    return 0


def _import(args: argparse.Namespace) -> int:
    import datetime as dt

    from modelseal import fsio
    from modelseal.bounded import read_input_text, shown_path
    from modelseal.errors import ConfigError
    from modelseal.policy import importers

    if not args.trivyignore and not args.grype:
        raise ConfigError("nothing to import: give --trivyignore FILE and/or --grype FILE.")
    if args.write and args.policy is None:
        raise ConfigError("--write needs --policy FILE (the policy file to add the entries to).")
    reason = " ".join(args.reason.split()) if args.reason else None
    if args.reason is not None and (not reason or not reason.isprintable()):
        raise ConfigError("--reason must be printable text.")
    today = dt.datetime.now(dt.UTC).date()
    results = [importers.read_trivyignore(p, today=today) for p in args.trivyignore]
    results += [importers.read_grype(p) for p in args.grype]
    console = _console()
    for title, problems in (
        ("not imported", [p for r in results for p in r.skipped]),
        ("imported with changes", [p for r in results for p in r.notes]),
    ):
        if problems:
            console.print(f"modelseal: {title} ({len(problems)}):", highlight=False, markup=False)
            for problem in problems:
                console.print(f"  {_plain(problem)}", highlight=False, markup=False)
    entries = importers.complete(results, expires=args.expires, reason=reason)
    sources = [shown_path(p) for p in (*args.trivyignore, *args.grype)]
    if args.policy is not None:
        exists = args.policy.exists() or args.policy.is_symlink()
        text = read_input_text(args.policy, what="policy file") if exists else "version: 1\n"
        merged, added = importers.merge_into_policy(text, shown_path(args.policy), entries)
        if args.write:
            if added:
                # The replaced policy's mode (and owner, as root) is kept: a 0600 file stays so.
                fsio.write_text_atomic(args.policy, merged, like=_regular_stat(args.policy))
            console.print(
                f"modelseal: {added} entr{'y' if added == 1 else 'ies'} added to "
                f"{_plain(args.policy)} ({len(entries) - added} already there)",
                highlight=False, markup=False,
            )  # fmt: skip
            return 0
        entries = importers.new_entries(text, shown_path(args.policy), entries)
    sys.stdout.write(importers.fragment_text(entries, sources))
    console.print(
        f"modelseal: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} imported",
        highlight=False, markup=False,
    )  # fmt: skip
    return 0


def _regular_stat(path: Path) -> os.stat_result | None:
    """The status of the regular file at ``path`` (through a link), None when there is none."""
    import stat

    try:
        st = os.stat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _models(args: argparse.Namespace) -> int:
    from modelseal.models import cli

    if args.models_command == "lock":
        return cli.lock_command(
            args.paths, args.lock, args.ignore, args.source_uri, args.source_revision
        )
    if args.models_command == "verify":
        return cli.verify_command(
            args.lock, _load_policy(args), args.format == "json", check_source=args.check_source
        )
    if args.models_command == "fetch":
        from modelseal.models.fetch import fetch_command

        return fetch_command(
            args.uri, includes=args.include, dest=args.dest, lock_path=args.lock,
            allow_ref=args.allow_ref, replace=args.replace, policy=_load_policy(args),
        )  # fmt: skip
    if args.models_command == "sign":
        return cli.sign_command(
            args.model_dir, args.lock, args.signature, key=args.key, keyless=args.keyless,
            trust_config=args.trust_config, policy=_load_policy(args),
            as_json=args.format == "json",
        )  # fmt: skip
    return cli.scan_command(args.paths, lambda: _load_policy(args), args.format == "json")


def _engine(args: argparse.Namespace) -> int:
    from modelseal.imagebuild.engine import PrivateEngine, probe_engine

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
    import json

    print(json.dumps(info.__dict__, indent=2))
    return 0
