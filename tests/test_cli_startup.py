"""What the read-only commands import at start-up (issue 16): a small ``models scan`` is mostly
start-up, so each heavy module it has no use for is pinned out here, by name, not by timing
(the times are measured in benchmarks/models.py)."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

POLICY = "version: 1\nmodels:\n  pickle: scan\n  formats: [pickle, numpy, safetensors]\n"

#: Never imported by `models scan` or `policy validate`: the network, signing, the build and
#: publish machinery, the rich console, entry-point metadata, process and thread pools.
HEAVY = (
    "huggingface_hub", "sigstore", "cryptography", "model_signing", "rich", "jsonschema",
    "numpy", "torch", "importlib.metadata", "multiprocessing", "subprocess", "socket",
    "email", "modelseal.models.gate", "modelseal.imagefs", "modelseal.oci", "modelseal.pipeline",
    "modelseal._tools", "modelseal.imagebuild", "modelseal.publish", "modelseal.sign",
    "modelseal.reports", "modelseal.ui", "modelseal.evcache", "modelseal.admission.export",
    # Nor the application, the lock's hashing (its thread pool) or logging (nothing on these
    # paths logs: that is why _cli leaves it unconfigured for them).
    "modelseal.app", "modelseal.models.hashing", "concurrent.futures", "logging",
)  # fmt: skip

#: Not even these for `modelseal --version` (and so for building the parser of any command).
NOT_FOR_THE_PARSER = (
    *HEAVY, "pydantic", "pydantic_core", "ruamel", "modelseal.policy", "modelseal.app",
    "modelseal.fsio", "modelseal.models",
)  # fmt: skip


def _imports(argv: list[str], cwd: Path) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules ``python -m modelseal ARGV`` imports (the forked scan child's included)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "modelseal", *argv],
        capture_output=True, text=True, cwd=cwd, check=False, timeout=120,
    )  # fmt: skip
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "modelseal._cli" in names, proc.stderr[-2000:]
    return names, proc


def _heavy(names: set[str], banned: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names for b in banned if n == b or n.startswith(b + "."))


def _scan_dir(tmp_path: Path) -> Path:
    # Fewer than models.cli.SHARE_MIN_FILES: the forked child scans them all.
    d = tmp_path / "models"
    d.mkdir()
    for i in range(24):
        (d / f"m{i:02d}.pkl").write_bytes(pickle.dumps({"w": list(range(i)), "name": f"m{i}"}))
    return d


@pytest.mark.parametrize("argv", [["--help"], ["models", "scan", "--help"], ["--version"]])
def test_the_parser_is_built_without_the_application(tmp_path: Path, argv: list[str]) -> None:
    names, proc = _imports(argv, tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith(("modelseal ", "usage: ")), proc.stderr
    assert _heavy(names, NOT_FOR_THE_PARSER) == []


def test_version_alone_imports_no_parser_and_says_what_the_parser_says(tmp_path: Path) -> None:
    """`modelseal --version` answers before argparse and the parser are imported (they were
    three quarters of its time), with the parser's own answer."""
    from modelseal._cli_parser import build_parser

    names, proc = _imports(["--version"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _heavy(names, ("argparse", "modelseal._cli_parser", "modelseal.admission")) == []
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--version"])
    assert exc.value.code == 0
    assert proc.stdout == out.getvalue()


def test_models_scan_imports_no_heavy_module(tmp_path: Path) -> None:
    (tmp_path / "policy.yml").write_text(POLICY)
    _scan_dir(tmp_path)
    names, proc = _imports(
        ["models", "scan", "models", "--policy", "policy.yml", "--format", "json"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["status"] == "PASSED" and len(out["files"]) == 24
    assert _heavy(names, HEAVY) == []
    # The policy is still validated with its pydantic model (the whole file: see below).
    assert {"pydantic", "modelseal.policy.model", "modelseal.judge"} <= names


def test_policy_validate_imports_no_heavy_module(tmp_path: Path) -> None:
    (tmp_path / "policy.yml").write_text(POLICY)
    names, proc = _imports(["policy", "validate", "policy.yml"], tmp_path)
    assert proc.returncode == 0 and "valid (version 1" in proc.stdout, proc.stderr[-2000:]
    assert _heavy(names, (*HEAVY, "modelseal.models")) == []


def test_models_scan_still_validates_the_whole_policy(tmp_path: Path) -> None:
    """`models scan` judges with the models section only, but a mistake in any other section
    fails it, as before (exit 2, the file, line, column and field named)."""
    (tmp_path / "policy.yml").write_text(POLICY + "build:\n  rebuld_check: true\n")
    _scan_dir(tmp_path)
    _, proc = _imports(["models", "scan", "models", "--policy", "policy.yml"], tmp_path)
    assert proc.returncode == 2
    assert "policy.yml:6:3: build.rebuld_check: unknown key" in proc.stderr


@pytest.mark.parametrize("core", ["idle", "busy"])
@pytest.mark.parametrize(
    ("section", "message"),
    [("build:\n  rebuld_check: true\n", "policy.yml:6:3: build.rebuld_check: unknown key"),
     ("verify:\n  min_rebuilds: -1\n", "policy.yml:6:17: verify.min_rebuilds"),
     ("sign:\n  mode: sometimes\n", "policy.yml:6:9: sign.mode"),
     ("bogus: 1\n", "policy.yml:5:1: bogus: unknown key")],
)  # fmt: skip
def test_models_scan_rejects_a_bad_section_it_does_not_use_with_or_without_its_child(
    tmp_path: Path, core: str, section: str, message: str
) -> None:
    """Whether the scan runs in a forked child (a core idle) or in this process (every core
    busy), a mistake in a section `models scan` never reads still fails it: exit 2, nothing
    scanned is reported, the file, line and field named."""
    (tmp_path / "policy.yml").write_text(POLICY + section)
    _scan_dir(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", IDLE_CORE, core, "models", "scan", "models", "--policy",
         "policy.yml", "--format", "json"],
        capture_output=True, text=True, cwd=tmp_path, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stdout == ""
    assert message in proc.stderr, proc.stderr[-2000:]


SPY = """
import json, sys
from pathlib import Path
from modelseal.app import load_policy
from modelseal.models import ahead, cli

seen = {}
init = ahead.Shared.__init__

def spy(self, items, work, **kw):
    seen.update(pydantic="pydantic" in sys.modules, policy="modelseal.policy" in sys.modules,
                scanner="modelseal.models.scan" in sys.modules)
    init(self, items, work, **kw)
    seen["forked"] = self.pid != 0

ahead.Shared.__init__ = spy
ahead.idle_core = lambda: True  # as on a quiet machine: the fork is what this looks at
code = cli.scan_command([Path(sys.argv[1])], lambda: load_policy(Path(sys.argv[2])), True)
seen["scanner_after"] = "modelseal.models.scan" in sys.modules
print(json.dumps({"code": code, **seen}))
"""


def test_models_scan_forks_its_scan_before_importing_the_policy(tmp_path: Path) -> None:
    """The forked scan overlaps with importing pydantic and validating the policy only when it
    is started first; its findings come back, so this process never imports the scanner."""
    (tmp_path / "policy.yml").write_text(POLICY)
    d = _scan_dir(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", SPY, str(d), str(tmp_path / "policy.yml")],
        capture_output=True, text=True, check=False, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen == {"code": 0, "pydantic": False, "policy": False, "scanner": False,
                    "forked": True, "scanner_after": False}  # fmt: skip


def test_models_scan_judges_as_the_models_gate() -> None:
    from modelseal.models import cli, scan

    assert cli._GATE == scan.GATE == "models"


def test_pydantic_uses_only_get_plugins_of_its_plugin_loader() -> None:
    """modelseal.policy stands in for ``pydantic.plugin._loader`` (its import costs
    importlib.metadata): that holds only while pydantic takes nothing else from it."""
    root = Path(pydantic.__file__).parent
    used: set[str] = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("_loader"):
                used |= {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                assert not any(a.name.endswith("plugin._loader") for a in node.names), path
            elif isinstance(node, ast.Attribute) and node.attr == "_loader":
                raise AssertionError(f"{path} reaches _loader another way")
    assert used == {"get_plugins"}


def test_pydantic_plugins_stay_off_with_the_stand_in(tmp_path: Path) -> None:
    """Even when the environment asks pydantic for its plugins, none is loaded."""
    env = {**os.environ, "PYDANTIC_DISABLE_PLUGINS": ""}
    code = (
        "import sys; from modelseal.policy import default_policy; default_policy(); "
        "from pydantic.plugin._loader import get_plugins; "
        "print(list(get_plugins()), 'importlib.metadata' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.stdout.split() == ["[]", "False"]


@pytest.mark.parametrize(
    "argv",
    [
        ["models", "scan", "a", "b/c", "--policy", "p.yml", "--format", "json", "-v"],
        ["models", "scan", "--format", "text", "x"],
        ["models", "verify", "--lock", "m.lock", "--check-source", "--format", "json"],
        ["models", "lock", "d", "--lock", "m.lock", "--ignore", "*.md"],
        ["policy", "validate", "p.yml"],
        ["policy", "validate", "--policy", "q.yml"],
    ],
)
def test_the_partial_parser_parses_as_the_whole_one(argv: list[str]) -> None:
    """`models scan` and the other read-only commands parse with their own parser alone
    (building every command's is ~10 ms of a small scan): the same namespace as the whole
    parser's, and the same help."""
    from modelseal._cli_parser import PARTIAL_COMMANDS, build_parser, parser_for

    assert (argv[0], argv[1]) in PARTIAL_COMMANDS
    partial, whole = parser_for(argv), build_parser()
    assert vars(partial.parse_args(argv)) == vars(whole.parse_args(argv))
    helps = []
    for parser in (partial, whole):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            parser.parse_args([*argv[:2], "--help"])
        helps.append(out.getvalue())
    assert helps[0] == helps[1] and "usage: modelseal " + " ".join(argv[:2]) in helps[0]


def test_the_partial_parser_reports_usage_errors_as_the_whole_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from modelseal._cli_parser import build_parser, parser_for

    errors = []
    for parser in (parser_for(["models", "scan"]), build_parser()):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(["models", "scan", "--format", "xml"])
        errors.append((exc.value.code, capsys.readouterr().err))
    assert errors[0] == errors[1] and errors[0][0] == 2 and "invalid choice: 'xml'" in errors[0][1]


def test_only_the_commands_named_get_a_partial_parser() -> None:
    """Anything else — other commands, options first, a word that is no subcommand — gets the
    whole parser (its top-level help lists every command)."""
    from modelseal._cli_parser import parser_for

    for argv in (["-v", "models", "scan", "x"], ["models", "fetch", "hf://a/b"], ["run"],
                 ["models", "--help"], ["policy", "schema"], [], ["models", "scan2"]):  # fmt: skip
        commands = parser_for(argv)._subparsers._group_actions[0].choices  # type: ignore[union-attr]
        assert {"run", "models", "policy", "verify"} <= set(commands), argv


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


#: ``modelseal ARGV`` with :func:`modelseal.models.ahead.idle_core` answering ``sys.argv[1]``.
IDLE_CORE = """
import sys
from modelseal.models import ahead
idle = sys.argv.pop(1) == "idle"
ahead.idle_core = lambda: idle
from modelseal._cli import entry
entry()
"""


@pytest.mark.parametrize("core", ["idle", "busy"])
def test_a_large_scan_shared_by_both_processes_is_whole_and_in_order(
    tmp_path: Path, core: str
) -> None:
    """Past SHARE_MIN_FILES the parent scans the back half of what its child has not started:
    every file is still reported once, in walk order, and each malicious one is flagged. With
    no idle core there is no child, and the same is reported."""
    from modelseal.models.cli import SHARE_MIN_FILES

    (tmp_path / "policy.yml").write_text(POLICY)
    d = tmp_path / "models"
    d.mkdir()
    n = 3 * SHARE_MIN_FILES
    evil = {f"m{i:04d}.pkl" for i in range(0, n, 97)}
    for i in range(n):
        obj = _Evil() if f"m{i:04d}.pkl" in evil else {"w": [0.5] * (i % 300), "i": i}
        (d / f"m{i:04d}.pkl").write_bytes(pickle.dumps(obj))
    proc = subprocess.run(
        [sys.executable, "-c", IDLE_CORE, core, "models", "scan", "models", "--policy",
         "policy.yml", "--format", "json"],
        capture_output=True, text=True, cwd=tmp_path, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert [Path(f["path"]).name for f in out["files"]] == sorted(p.name for p in d.iterdir())
    flagged = {Path(f["subject"]).name for f in out["findings"] if f["decision"] == "fail"}
    assert flagged == evil


def test_version_alone_builds_no_command_and_says_the_same(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from modelseal._cli_parser import build_parser, parser_for

    said = []
    for parser in (parser_for(["--version"]), build_parser()):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(["--version"])
        said.append((exc.value.code, capsys.readouterr().out))
    assert said[0] == said[1] and said[0][1].startswith("modelseal ")
    assert parser_for(["--version"])._subparsers._group_actions[0].choices == {}  # type: ignore[union-attr]


def test_other_scan_limits_over_many_files_leave_no_process_behind(tmp_path: Path) -> None:
    """Regression: with 1000+ files the forked child scanned in a process pool of its own;
    a policy with other scan limits killed the child and orphaned the pool's workers, which
    kept the command's output open for ever (a caller reading it to the end hung)."""
    (tmp_path / "policy.yml").write_text(POLICY + "  limits:\n    max_seconds: 7\n")
    d = tmp_path / "models"
    d.mkdir()
    for i in range(1100):  # enough to scan that the child is still at it when it is killed
        (d / f"m{i:04d}.pkl").write_bytes(pickle.dumps({"i": i, "w": [0.5 * i] * 4000}))
    proc = subprocess.run(
        [sys.executable, "-c", IDLE_CORE, "idle", "models", "scan", "models", "--policy",
         "policy.yml", "--format", "json"],
        capture_output=True, text=True, cwd=tmp_path, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(json.loads(proc.stdout)["files"]) == 1100


def test_the_scan_collects_garbage_but_not_what_the_start_up_made() -> None:
    """The start-up runs without the cycle collector (_cli.entry); the scan turns it back on
    with everything made so far frozen (pydantic's models, the modules), so that collections
    do not walk it again and again. With the collector already on, nothing is frozen."""
    code = (
        "import gc, json\n"
        "from modelseal.models.cli import _collect_garbage_from_now_on as on\n"
        "on(); first = (gc.isenabled(), gc.get_freeze_count())\n"
        "gc.disable(); import pydantic.main; on()\n"
        "print(json.dumps([first, [gc.isenabled(), gc.get_freeze_count()]]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    (on_before, frozen_before), (on_after, frozen_after) = json.loads(proc.stdout)
    assert on_before and frozen_before == 0
    assert on_after and frozen_after > 10_000


@pytest.mark.parametrize(
    ("cpus", "load", "forks"),
    [({0, 1}, 0.2, True), ({0, 1}, 1.4, True), ({0, 1}, 1.6, False), ({0, 1}, 4.0, False),
     ({0}, 0.0, False), (set(range(8)), 5.0, True)],
)  # fmt: skip
def test_the_scan_forks_only_with_an_idle_core(
    monkeypatch: pytest.MonkeyPatch, cpus: set[int], load: float, forks: bool
) -> None:
    """`models scan` forks its scanning child only when a core is idle: the CPUs this process
    may run on (not the machine's) against the 1-minute load average."""
    from modelseal.models import ahead

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: cpus)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert ahead.idle_core() is forks
