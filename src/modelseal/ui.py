"""What a person sees in the terminal: progress while gates run, the verdict table after."""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from modelseal.app import RunHooks
from modelseal.findings import Status
from modelseal.untrusted import untrusted

if TYPE_CHECKING:
    from modelseal.judge import Verdict
    from modelseal.pipeline import ProgressFn
    from modelseal.publish.publisher import PublishResult
    from modelseal.publish.verify_image import VerifyResult

STYLES = {
    Status.PASSED: "bold green",
    Status.FAILED: "bold red",
    Status.ERRORED: "bold yellow",
    Status.SKIPPED: "dim",
}


class Progress:
    """Per-gate progress: a live spinner line on a terminal, plain timestamped lines in CI logs.
    Thread-safe (gates report from worker threads)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()
        self._state: dict[str, str] = {}
        self._t0 = time.monotonic()
        self._status = console.status("") if console.is_terminal else None

    def __enter__(self) -> Progress:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._status is not None:
            self._status.stop()

    def __call__(self, gate: str, message: str) -> None:
        with self._lock:
            gate, message = untrusted(gate), untrusted(message)  # messages name image paths
            if message in ("done", "errored"):
                self._state.pop(gate, None)
            else:
                self._state[gate] = message
            elapsed = time.monotonic() - self._t0
            if self._status is not None:
                line = " · ".join(f"{g}: {m}" for g, m in self._state.items()) or "finishing"
                self._status.update(f"{line}  [dim]{elapsed:.0f}s[/dim]")
            else:
                self.console.print(f"[{elapsed:6.1f}s] {gate}: {message}", highlight=False)


def stderr_console() -> Console:
    """The console for progress and errors."""
    return Console(file=sys.stderr, highlight=False, soft_wrap=True, emoji=False)


def stdout_console() -> Console:
    """The console for results (the verdict table), as wide as the terminal, at least 100."""
    width = max(100, shutil.get_terminal_size((120, 24)).columns)
    return Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width, emoji=False)


def plain(text: object) -> str:
    """Untrusted text for a plain ``print`` (no Rich markup to escape)."""
    return untrusted(text, markup=False)


def message(text: str) -> str:
    """A message for a Rich console: it quotes file names, tool output and registry answers,
    so it is escaped line by line (a message may span lines; a quoted name may not)."""
    return untrusted(text, multiline=True)


def print_error(console: Console, text: str, *, bug: bool = False) -> None:
    """``modelseal: <text>`` in bold red on ``console``, escaped (:func:`message`)."""
    head = "modelseal: internal error (a bug):" if bug else "modelseal:"
    console.print(f"[bold red]{head}[/] {message(text)}", highlight=False)


class ConsoleHooks(RunHooks):
    """A run as a person watches it: notices and progress on ``console`` (stderr), the
    verdict table on stdout."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def notice(self, text: str) -> None:
        self.console.print(message(text), highlight=False)

    @contextlib.contextmanager
    def progress(self) -> Iterator[ProgressFn | None]:
        with Progress(self.console) as progress:
            yield progress

    def judged(self, verdict: Verdict, paths: Mapping[str, Path]) -> None:
        print_verdict(verdict, paths, stdout_console())

    def publishing(self, image: str, signing: str) -> None:
        self.console.print(
            f"modelseal: publishing {message(image)} (signing: {signing}) …", highlight=False
        )

    def not_published(self, verdict: Verdict) -> None:
        self.console.print(f"modelseal: not published: the verdict is {verdict.status.value}.")


def print_published(published: PublishResult, out_dir: Path) -> None:
    """What was published, on stdout."""
    print(f"published {plain(published.reference)}")
    for tag in published.tags:
        print(f"  tag       {plain(f'{published.image}:{tag}')}")
    for name, path in sorted(published.bundles.items()):
        print(f"  bundle    {plain(name)}: {plain(path)}")
    for name, ident in sorted(published.github_attestations.items()):
        print(f"  github    {plain(name)}: attestation {ident}")
    print(f"  details   {plain(out_dir / 'publish.json')}")


def print_verification(result: VerifyResult) -> None:
    """A verification's checks, on stdout."""
    print(plain(f"{result.image}@{result.digest}"))
    for c in result.checks:
        print(f"  {'✓' if c.ok else '✗'} {c.name:<12} {plain(c.detail)}")
        if c.name == "rebuild":
            for vote in result.rebuilds:
                print(
                    f"      {'✓' if vote.agrees else '✗'} {plain(vote.rebuilder)}: {plain(vote.why)}"
                )
    if result.runtime_profile is not None:
        for line in runtime_profile_lines(result.runtime_profile):
            print(f"  {plain(line)}")
    print("verified" if result.ok else "NOT verified")


def runtime_profile_lines(profile: Mapping[str, Any]) -> list[str]:
    """A verified runtime profile, for people: the container securityContext (and the pod's,
    when it needs one) as JSON, and the docker run flags (shell-quoted)."""
    import json
    import shlex

    k8s = profile.get("kubernetes")
    k8s = k8s if isinstance(k8s, Mapping) else {}
    out = ["runtime profile (signed):"]
    for key in ("securityContext", "podSecurityContext"):
        if key in k8s:
            out.append(f"  {key}: {json.dumps(k8s[key], sort_keys=True)}")
    mounts = k8s.get("volumeMounts")
    if isinstance(mounts, list) and mounts:
        paths = [str(m.get("mountPath")) for m in mounts if isinstance(m, Mapping)]
        out.append(f"  writable (emptyDir): {', '.join(paths)}")
    docker = profile.get("docker")
    argv = docker.get("run") if isinstance(docker, Mapping) else None
    if isinstance(argv, list):
        out.append("  docker run " + " ".join(shlex.quote(str(a)) for a in argv) + " IMAGE")
    return out


def print_verdict(verdict: Verdict, reports: Mapping[str, Path], console: Console) -> None:
    """The verdict table, the findings that fail, and where the reports are.

    Gate errors, finding ids, titles and locations come from scanned files, images and advisory
    databases: every piece of them goes through :func:`untrusted`."""
    table = Table(title=None, show_lines=False, header_style="bold")
    table.add_column("gate")
    table.add_column("status")
    table.add_column("findings", justify="right")
    table.add_column("time", justify="right")
    table.add_column("note", overflow="fold")
    for g in verdict.gates:
        n = len(g.decisions)
        findings = f"{len(g.failing)} failing / {n}" if n else "-"
        note = (g.error or "").splitlines()[0] if g.error else ""
        if not note and "image.digest" in g.result.facts:
            note = g.result.facts["image.digest"]
        table.add_row(
            untrusted(g.result.gate),
            f"[{STYLES[g.status]}]{g.status.value}[/]",
            findings,
            f"{g.result.duration_s:.1f}s",
            untrusted(note),
        )
    console.print(table)
    for g in verdict.gates:
        for d in g.failing:
            f = d.finding
            where = f" at {untrusted(f.location)}" if f.location else ""
            console.print(
                f"[red]✗[/] {untrusted(g.result.gate)}: [bold]{untrusted(f.id)}[/] "
                f"({f.severity.name}){where}: {untrusted(f.title)}",
                highlight=False,
            )
        if g.status is Status.ERRORED and g.error:
            console.print(f"[yellow]![/] {untrusted(g.result.gate)} errored:", highlight=False)
            for line in g.error.splitlines():
                console.print(f"    {untrusted(line)}", highlight=False)
    if verdict.baseline is not None:
        console.print(untrusted(verdict.baseline.line()), highlight=False)
    style = STYLES[verdict.status]
    console.print(
        f"verdict: [{style}]{verdict.status.value}[/] (exit {int(verdict.exit_code)})",
        highlight=False,
    )
    for name, path in reports.items():
        console.print(f"  {untrusted(name)} report: {untrusted(path)}", highlight=False)
