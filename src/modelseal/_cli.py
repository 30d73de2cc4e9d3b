"""The command line. The only place errors become exit codes and messages."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from modelseal import __version__
from modelseal.errors import ConfigError, Error, ExitCode
from modelseal.gates import GATES

# Imports of the commands' machinery happen inside the commands: `modelseal models scan` must
# not pay for BuildKit, reports and the whole pipeline before it starts (start-up is most of a
# small scan's time).
if TYPE_CHECKING:
    from rich.console import Console

    from modelseal.judge import Verdict
    from modelseal.policy import LoadedPolicy

DEFAULT_POLICY = Path("modelseal.yml")

EPILOG = """\
exit codes:
  0  every gate passed (or was switched off by the policy)
  1  the policy was breached
  2  usage error, or an invalid policy file or input
  3  a gate could not run (tool missing or crashed, engine unreachable, ...)
  4  internal error (a bug; rerun with -v for the traceback)
"""


def _key_value(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return key, value


def _epoch(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected whole seconds since 1970, got {text!r}")
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
        "--source-date-epoch", type=_epoch, metavar="SECONDS",
        help="timestamp for every file and the image (default: $SOURCE_DATE_EPOCH, else the "
        "commit time of HEAD)",
    )  # fmt: skip
    build_opts.add_argument(
        "-o", "--out-dir", type=Path, default=Path("modelseal-out"), metavar="DIR",
        help="where the OCI layout and the reports go (default: modelseal-out)",
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
            help="directory holding the engine's socket and data",
        )  # fmt: skip
        if name == "stop":
            e.add_argument("--remove", action="store_true", help="also delete DIR")
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
    try:
        return int(_dispatch(parser, args))
    except Error as e:
        console = _console()
        console.print(f"[bold red]modelseal:[/] {e.diagnostics()}", highlight=False)
        return int(e.exit_code)
    except KeyboardInterrupt:
        _console().print("modelseal: interrupted")
        return 130
    except Exception as e:
        if verbose:
            raise
        _console().print(
            f"[bold red]modelseal: internal error (a bug):[/] {type(e).__name__}: {e}\n"
            "Rerun with -v for the traceback, and please report it.",
            highlight=False,
        )
        return int(ExitCode.BUG)


def _console() -> Console:
    from modelseal.ui import stderr_console

    return stderr_console()


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command in ("run", "build"):
        gates = ("build",) if args.command == "build" else tuple(args.gate)
        return _run(args, gates, _console())
    if args.command == "judge":
        return _judge(args)
    if args.command == "policy":
        from modelseal.policy import load_policy
        from modelseal.policy.schema import schema_text

        if args.policy_command == "schema":
            sys.stdout.write(schema_text())
            return 0
        if args.policy_command == "validate":
            path = args.file or args.policy or DEFAULT_POLICY
            loaded = load_policy(path)
            print(f"{path}: valid (version {loaded.policy.version}, sha256 {loaded.sha256[:12]})")
            return 0
    if args.command == "models" and args.models_command:
        return _models(args)
    if args.command == "engine" and args.engine_command:
        return _engine(args)
    parser.print_help(sys.stderr)
    return int(ExitCode.USAGE)


def _load_policy(args: argparse.Namespace) -> LoadedPolicy:
    from modelseal.policy import default_policy, load_policy

    if args.policy is not None:
        return load_policy(args.policy)
    if DEFAULT_POLICY.is_file():
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
    options = RunOptions(
        context=context,
        dockerfile=args.dockerfile,
        build_args=dict(args.build_arg),
        build_contexts=dict(args.build_context),
        source_date_epoch=args.source_date_epoch,
        out_dir=args.out_dir,
        gates=gates,
    )
    epoch = resolve_source_date_epoch(
        args.source_date_epoch, os.environ.get("SOURCE_DATE_EPOCH"), context.resolve()
    )
    if policy.source == "<defaults>":
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
        started_at=result.started_at,
        finished_at=result.finished_at,
        tool_version=__version__,
        command=args.command,
    )
    paths = write_reports(report, args.out_dir.resolve())
    _print_outcome(verdict, paths)
    return int(verdict.exit_code)


def _print_outcome(verdict: Verdict, paths: dict[str, Path]) -> None:
    from rich.console import Console

    from modelseal.ui import print_verdict

    out = Console(file=sys.stdout, highlight=False, soft_wrap=True, width=_width())
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
        paths = write_reports(report, args.out_dir.resolve())
    _print_outcome(verdict, paths)
    return int(verdict.exit_code)


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
