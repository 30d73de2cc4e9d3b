"""The DAG runner and the judge, with gates of our own making (the Gate interface is ours)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from modelseal.errors import ConfigError, ExitCode, ToolError
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.judge import Outcome, judge
from modelseal.pipeline import (
    Context,
    RunOptions,
    SourceDateEpoch,
    order_gates,
    resolve_source_date_epoch,
    run_pipeline,
)
from modelseal.policy import LoadedPolicy, load_policy_text

EPOCH = SourceDateEpoch(1700000000, "option")


@dataclass
class FakeGate:
    """A gate that records when it ran and returns (or raises) what it is told."""

    name: str
    requires: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    sleep: float = 0.0
    findings: tuple[Finding, ...] = ()
    raises: Exception | None = None
    on: bool = True
    log: list[tuple[str, str, float]] = field(default_factory=list)
    seen: dict[str, Status] = field(default_factory=dict)

    def enabled(self, policy: LoadedPolicy) -> bool:
        return self.on

    def run(self, ctx: Context) -> GateResult:
        self.log.append((self.name, "start", time.monotonic()))
        self.seen.update({k: v.status for k, v in ctx.results.items()})
        time.sleep(self.sleep)
        self.log.append((self.name, "end", time.monotonic()))
        if self.raises is not None:
            raise self.raises
        return GateResult(self.name, Status.PASSED, findings=self.findings)


def _policy(text: str = "version: 1\n") -> LoadedPolicy:
    return load_policy_text(text, "test.yml")


def _run(gates: list[FakeGate], tmp_path: Path, policy: LoadedPolicy | None = None):
    opts = RunOptions(context=tmp_path, out_dir=tmp_path / "out")
    return run_pipeline(gates, policy or _policy(), opts, EPOCH)


def test_independent_gates_run_concurrently(tmp_path: Path) -> None:
    log: list[tuple[str, str, float]] = []
    gates = [
        FakeGate("build", log=log, sleep=0.05),
        FakeGate("sbom", ("build",), sleep=0.4, log=log),
        FakeGate("trivy", ("build",), sleep=0.4, log=log),
        FakeGate("pip-audit", ("build",), sleep=0.4, log=log),
    ]
    t0 = time.monotonic()
    result = _run(gates, tmp_path)
    elapsed = time.monotonic() - t0
    assert [r.status for r in result.results] == [Status.PASSED] * 4
    assert elapsed < 1.0, "three 0.4 s gates after build must overlap"
    starts = {n: t for n, what, t in log if what == "start"}
    build_end = next(t for n, what, t in log if n == "build" and what == "end")
    assert all(starts[n] >= build_end for n in ("sbom", "trivy", "pip-audit"))


def test_dependents_see_upstream_results(tmp_path: Path) -> None:
    down = FakeGate("sbom", ("build",))
    _run([FakeGate("build"), down], tmp_path)
    assert down.seen == {"build": Status.PASSED}


def test_errored_gate_blocks_dependents_and_fails_closed(tmp_path: Path) -> None:
    down = FakeGate("sbom", ("build",))
    gates = [FakeGate("build", raises=ToolError("syft exited with code 2")), down]
    result = _run(gates, tmp_path)
    assert [r.status for r in result.results] == [Status.ERRORED, Status.ERRORED]
    assert result.results[0].error == "syft exited with code 2"
    assert result.results[1].error == "not run: it needs build, which errored"
    assert not down.log
    verdict = judge(result.results, _policy().policy)
    assert verdict.status is Status.ERRORED and verdict.exit_code is ExitCode.ERRORED


def test_crash_in_a_gate_is_a_bug_but_reports_still_come(tmp_path: Path) -> None:
    result = _run([FakeGate("build", raises=ZeroDivisionError("oops")), FakeGate("x")], tmp_path)
    assert result.internal_error
    assert result.results[0].status is Status.ERRORED
    assert "ZeroDivisionError" in (result.results[0].error or "")
    assert result.results[1].status is Status.PASSED
    assert judge(result.results, _policy().policy, internal_error=True).exit_code is ExitCode.BUG


def test_switched_off_gate_is_skipped_and_passes(tmp_path: Path) -> None:
    result = _run([FakeGate("build", on=False), FakeGate("sbom", ("build",))], tmp_path)
    assert [r.status for r in result.results] == [Status.SKIPPED, Status.SKIPPED]
    verdict = judge(result.results, _policy().policy)
    assert verdict.exit_code is ExitCode.PASSED


def test_order_rejects_cycles_and_unknown_requirements() -> None:
    with pytest.raises(ConfigError, match="cycle"):
        order_gates([FakeGate("a", ("b",)), FakeGate("b", ("a",))])
    with pytest.raises(ConfigError, match="requires gate nope"):
        order_gates([FakeGate("a", ("nope",))])
    names = [
        g.name for g in order_gates([FakeGate("c", ("b",)), FakeGate("b", ("a",)), FakeGate("a")])
    ]
    assert names == ["a", "b", "c"]


def _finding(id_: str, sev: Severity = Severity.HIGH) -> Finding:
    return Finding(gate="build", id=id_, severity=sev, title="t", subject="s")


def test_judge_build_rules_follow_the_policy(tmp_path: Path) -> None:
    result = GateResult("build", Status.PASSED, findings=(_finding("build.unpinned-base"),))
    strict = judge([result], _policy().policy)
    assert strict.status is Status.FAILED and strict.exit_code is ExitCode.BREACHED
    lax = judge([result], _policy("version: 1\nbuild:\n  require_pinned_base: false\n").policy)
    assert lax.status is Status.PASSED
    assert lax.gates[0].decisions[0].outcome is Outcome.WARN


def test_unknown_finding_fails_closed() -> None:
    result = GateResult("mystery", Status.PASSED, findings=(_finding("x.y", Severity.LOW),))
    assert judge([result], _policy().policy).status is Status.FAILED


def test_breach_outranks_error_in_exit_code() -> None:
    failed = GateResult("build", Status.PASSED, findings=(_finding("build.not-reproducible"),))
    errored = GateResult("sbom", Status.ERRORED, error="boom")
    verdict = judge([failed, errored], _policy().policy)
    assert verdict.exit_code is ExitCode.BREACHED
    assert judge([], _policy().policy).exit_code is ExitCode.ERRORED


def test_source_date_epoch_precedence(tmp_path: Path) -> None:
    assert resolve_source_date_epoch(5, "7", tmp_path) == SourceDateEpoch(5, "option")
    assert resolve_source_date_epoch(None, "7", tmp_path) == SourceDateEpoch(7, "environment")
    assert resolve_source_date_epoch(None, None, tmp_path) == SourceDateEpoch(0, "default")
    with pytest.raises(ConfigError, match="not a whole number"):
        resolve_source_date_epoch(None, "yesterday", tmp_path)


def test_source_date_epoch_from_git_head(tmp_path: Path) -> None:
    import subprocess

    env = {
        **os.environ,
        "GIT_AUTHOR_DATE": "@1600000000 +0000", "GIT_COMMITTER_DATE": "@1600000123 +0000",
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid", "HOME": str(tmp_path),
    }  # fmt: skip
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "m"], check=True, env=env)
    assert resolve_source_date_epoch(None, None, tmp_path) == SourceDateEpoch(
        1600000123, "git HEAD"
    )


def test_threads_do_not_share_work_dirs(tmp_path: Path) -> None:
    dirs: list[Path] = []
    lock = threading.Lock()

    class DirGate(FakeGate):
        def run(self, ctx: Context) -> GateResult:
            with lock:
                dirs.append(ctx.work_dir)
            return super().run(ctx)

    _run([DirGate("a"), DirGate("b")], tmp_path)
    assert len(set(dirs)) == 2


def test_soft_dependencies_wait_but_do_not_block(tmp_path: Path) -> None:
    @dataclass
    class UsingGate(FakeGate):
        uses: tuple[str, ...] = ("models",)

    log: list[tuple[str, str, float]] = []
    sbom = UsingGate("sbom", ("build",), log=log)
    models = FakeGate("models", sleep=0.2, log=log)
    _run([FakeGate("build", log=log), sbom, models], tmp_path)
    starts = {n: t for n, what, t in log if what == "start"}
    models_end = next(t for n, what, t in log if n == "models" and what == "end")
    assert starts["sbom"] >= models_end, "a used gate is waited for"
    assert sbom.seen == {"build": Status.PASSED, "models": Status.PASSED}

    # Switched off or errored: the user still runs, without it.
    sbom2 = UsingGate("sbom", ("build",))
    result = _run([FakeGate("build"), sbom2, FakeGate("models", on=False)], tmp_path)
    assert [r.status for r in result.results] == [Status.PASSED, Status.SKIPPED, Status.PASSED]
    assert sbom2.seen == {"build": Status.PASSED}
    sbom3 = UsingGate("sbom", ("build",))
    _run([FakeGate("build"), sbom3, FakeGate("models", raises=ToolError("x"))], tmp_path)
    assert sbom3.seen == {"build": Status.PASSED}
    # Not selected at all: not waited for.
    sbom4 = UsingGate("sbom", ("build",))
    _run([FakeGate("build"), sbom4], tmp_path)
    assert sbom4.seen == {"build": Status.PASSED}


@pytest.mark.parametrize("off", [None, "models", "build", "sbom", "trivy", "pip_audit"])
def test_gate_switches_match_each_gates_enabled(off: str | None) -> None:
    """gates.SWITCHES (used without importing the gates) says what each gate's enabled() says."""
    from modelseal.gates import all_gates, enabled_gates
    from modelseal.policy import load_policy_text

    text = "version: 1\n" + (f"{off}:\n  enabled: false\n" if off else "")
    policy = load_policy_text(text, "p.yml")
    assert enabled_gates(policy.policy) == [g.name for g in all_gates() if g.enabled(policy)]


def test_run_shared_makes_each_value_once_and_gives_every_waiter_the_error() -> None:
    from modelseal.errors import GateError
    from modelseal.pipeline import RunShared

    shared = RunShared()
    calls: list[str] = []
    gate = threading.Barrier(4)

    def slow() -> str:
        calls.append("made")
        return "fs"

    def ask(out: list[object]) -> None:
        gate.wait()
        out.append(shared.once("imagefs:x", slow))

    got: list[object] = []
    threads = [threading.Thread(target=ask, args=(got,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["fs"] * 4 and calls == ["made"]

    def broken() -> str:
        calls.append("broken")
        raise GateError("layer 2 is unreadable")

    for _ in range(2):
        with pytest.raises(GateError, match="unreadable"):
            shared.once("imagefs:y", broken)
    assert calls == ["made", "broken"]
