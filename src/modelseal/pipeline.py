"""Running gates as a DAG: independent gates run concurrently, each collects evidence, none
judges. The pipeline turns gate crashes into ERRORED results so that reports are always written.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar, cast

from modelseal import fsio
from modelseal._tools import run_tool
from modelseal.errors import ConfigError, Error, ToolError
from modelseal.evcache import EvidenceCache
from modelseal.findings import GateResult, Status
from modelseal.policy import LoadedPolicy

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, str], None]
T = TypeVar("T")


class RunShared:
    """What the gates of one run compute once and share (the post-build gates' one pass over
    the image's layers, :mod:`modelseal.postbuild`): each value is made by the first gate that
    asks, while the others asking for it wait; an error is raised to each of them.

    ``dir``: a private directory of the run for shared files (removed with the run), or None
    (a gate run on its own: the caller's work directory is used). ``gates``: the names of the
    gates selected for the run, or None (unknown: :attr:`RunOptions.gates` says)."""

    def __init__(self, directory: Path | None = None, gates: frozenset[str] | None = None) -> None:
        self.dir = directory
        self.gates = gates
        self._lock = threading.Lock()
        self._slots: dict[str, tuple[threading.Lock, list[tuple[bool, object]]]] = {}

    def once(self, key: str, make: Callable[[], T]) -> T:
        """The value for ``key``: ``make()``'s, made once per run."""
        with self._lock:
            slot = self._slots.setdefault(key, (threading.Lock(), []))
        with slot[0]:
            if not slot[1]:
                try:
                    slot[1].append((True, make()))
                except Error as e:
                    slot[1].append((False, e))
            ok, value = slot[1][0]
        if not ok:
            raise cast("Error", value)
        return cast("T", value)


@dataclass(frozen=True)
class RunOptions:
    """What the caller asks of one run (CLI flags or action inputs); thresholds live in the
    policy, not here."""

    context: Path
    dockerfile: Path | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    build_contexts: Mapping[str, str] = field(default_factory=dict)
    source_date_epoch: int | None = None
    out_dir: Path = Path("modelseal-out")
    image_name: str | None = None
    gates: tuple[str, ...] = ()  # empty: every gate
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    platforms: tuple[str, ...] = ()  # empty: the policy's build.platforms
    # The builder and its cache (CLI flags or action inputs; empty: the policy's build.*).
    builder: str | None = None
    buildkit_image: str | None = None
    rebuild_on: str | None = None  # same | fresh | BUILDER; None: the policy's build.rebuild_on
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    docker_host: str | None = None  # the engine to build on; None: $DOCKER_HOST
    publish: bool = False  # the run publishes on a pass (build.rebuild_check: publish)
    # The evidence cache's directory (modelseal.evcache); None: no cache (--no-evidence-cache).
    evidence_cache: Path | None = None


@dataclass(frozen=True)
class SourceDateEpoch:
    """The SOURCE_DATE_EPOCH of a run and where it came from."""

    value: int
    source: str  # "option", "environment", "git HEAD", "default"


MAX_EPOCH = 253_402_300_799
"""9999-12-31T23:59:59Z: the last timestamp files, images and reports can carry."""


def resolve_source_date_epoch(
    explicit: int | None, env_value: str | None, repo_dir: Path
) -> SourceDateEpoch:
    """Pick the epoch: an explicit option, then ``$SOURCE_DATE_EPOCH``, then the commit time of
    HEAD of the repository holding the build context, then 0."""
    if explicit is not None:
        return SourceDateEpoch(explicit, "option")
    if env_value:
        try:
            value = int(env_value)
        except ValueError:
            raise ConfigError(
                f"SOURCE_DATE_EPOCH={env_value!r} is not a whole number of seconds."
            ) from None
        if value < 0:
            raise ConfigError(f"SOURCE_DATE_EPOCH={env_value} is negative.")
        if value > MAX_EPOCH:
            raise ConfigError(
                f"SOURCE_DATE_EPOCH={env_value} is after the year 9999 (at most {MAX_EPOCH})."
            )
        return SourceDateEpoch(value, "environment")
    try:
        proc = run_tool(
            ["git", "-C", str(repo_dir), "log", "-1", "--format=%ct"], timeout=30, check=False
        )
    except ToolError:  # no git, or it hung: the default epoch, as for a directory outside git
        proc = None
    if proc is not None and proc.returncode == 0 and proc.stdout.strip().isdigit():
        return SourceDateEpoch(int(proc.stdout.strip()), "git HEAD")
    return SourceDateEpoch(0, "default")


@dataclass
class Context:
    """Everything a gate may read: the policy, the run options, the results of the gates it
    requires, and a private work directory."""

    policy: LoadedPolicy
    options: RunOptions
    epoch: SourceDateEpoch
    work_dir: Path
    out_dir: Path
    results: dict[str, GateResult] = field(default_factory=dict)
    progress: ProgressFn = lambda gate, message: None
    cache: EvidenceCache = field(
        default_factory=EvidenceCache
    )  # where gates keep tool outputs by content
    shared: RunShared = field(default_factory=RunShared)  # what the run's gates compute once

    def result(self, gate: str) -> GateResult:
        """The result of a gate this one requires (the pipeline guarantees it ran)."""
        return self.results[gate]


class Gate(Protocol):
    """A step that collects evidence. It never judges: the policy does.

    ``requires``: gates whose results it cannot do without (if one errors or is skipped, this
    gate does not run). ``uses``: gates it waits for when they are selected and reads when they
    collected evidence, but runs without (the SBOM adds the models when the models gate ran).
    A registered gate gets all three and ``enabled`` from its spec
    (:class:`modelseal.gates.RegisteredGate`).
    """

    @property
    def name(self) -> str:
        """The gate's name (its results and findings carry it)."""
        ...

    @property
    def requires(self) -> tuple[str, ...]:
        """Gates it cannot run without."""
        ...

    @property
    def uses(self) -> tuple[str, ...]:
        """Gates it reads when they ran."""
        ...

    def enabled(self, policy: LoadedPolicy) -> bool:
        """Whether the policy switches this gate on."""
        ...

    def run(self, ctx: Context) -> GateResult:
        """Collect evidence; raise :class:`modelseal.errors.Error` when that is impossible."""
        ...


@dataclass(frozen=True)
class PipelineResult:
    """The collected results, in gate order, and whether any gate hit a bug."""

    results: tuple[GateResult, ...]
    internal_error: bool
    started_at: float
    finished_at: float


def _uses(g: Gate, selected: Mapping[str, Gate]) -> tuple[str, ...]:
    return tuple(u for u in g.uses if u in selected)


def _deps(g: Gate, selected: Mapping[str, Gate]) -> tuple[str, ...]:
    return (*g.requires, *_uses(g, selected))


def order_gates(gates: Sequence[Gate]) -> list[Gate]:
    """Topological order (stable for independent gates); rejects unknown requirements and
    cycles."""
    by_name = {g.name: g for g in gates}
    for g in gates:
        for r in g.requires:
            if r not in by_name:
                raise ConfigError(f"gate {g.name} requires gate {r}, which is not selected.")
    ordered: list[Gate] = []
    state: dict[str, int] = {}

    def visit(g: Gate, chain: tuple[str, ...]) -> None:
        if state.get(g.name) == 2:
            return
        if state.get(g.name) == 1:
            raise ConfigError("gate requirements form a cycle: " + " → ".join((*chain, g.name)))
        state[g.name] = 1
        for r in _deps(g, by_name):
            visit(by_name[r], (*chain, g.name))
        state[g.name] = 2
        ordered.append(g)

    for g in gates:
        visit(g, ())
    return ordered


def run_pipeline(
    gates: Sequence[Gate],
    policy: LoadedPolicy,
    options: RunOptions,
    epoch: SourceDateEpoch,
    *,
    progress: ProgressFn | None = None,
    max_workers: int | None = None,
) -> PipelineResult:
    """Run ``gates`` as a DAG; every gate ends with a result, whatever happens."""
    ordered = order_gates(gates)
    # Checked (no link on the way) and made before any gate runs; absolute, not resolved.
    out_dir = fsio.ensure_dir(options.out_dir)
    started = time.time()
    results: dict[str, GateResult] = {}
    bug = threading.Event()
    lock = threading.Lock()
    cache = EvidenceCache.open(options.evidence_cache)
    with fsio.private_temp_dir("modelseal-") as tmp:
        ctx_base = Path(tmp)
        selected = {g.name: g for g in ordered}
        # Not a gate's name (those have no dot): a directory the gates share.
        shared = RunShared(fsio.ensure_dir(ctx_base / ".shared"), frozenset(selected))

        def start(g: Gate) -> GateResult:
            with lock:
                upstream = {r: results[r] for r in g.requires}
                upstream |= {
                    u: results[u]
                    for u in _uses(g, selected)
                    if results[u].status not in (Status.ERRORED, Status.SKIPPED)
                }
            work = ctx_base / g.name
            work.mkdir()
            ctx = Context(
                policy=policy, options=options, epoch=epoch, work_dir=work, out_dir=out_dir,
                results=upstream, progress=progress or (lambda gate, message: None), cache=cache,
                shared=shared,
            )  # fmt: skip
            return _run_one(g, ctx, bug)

        pending = {g.name: g for g in ordered}
        running: dict[cf.Future[GateResult], Gate] = {}
        with cf.ThreadPoolExecutor(max_workers=max_workers or max(1, len(ordered))) as pool:
            while pending or running:
                for name, g in list(pending.items()):
                    if not all(r in results for r in _deps(g, selected)):
                        continue
                    del pending[name]
                    blocked = _blocked_by(g, results, policy)
                    if blocked is not None:
                        results[name] = blocked
                        continue
                    running[pool.submit(start, g)] = g
                if not running:
                    continue
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    g = running.pop(fut)
                    with lock:
                        results[g.name] = fut.result()
    return PipelineResult(
        results=tuple(results[g.name] for g in ordered),
        internal_error=bug.is_set(),
        started_at=started,
        finished_at=time.time(),
    )


def _blocked_by(
    g: Gate, results: Mapping[str, GateResult], policy: LoadedPolicy
) -> GateResult | None:
    if not g.enabled(policy):
        return GateResult(g.name, Status.SKIPPED, error="switched off by the policy")
    for r in g.requires:
        up = results[r]
        if up.status is Status.ERRORED:
            return GateResult(g.name, Status.ERRORED, error=f"not run: it needs {r}, which errored")
        if up.status is Status.SKIPPED:
            return GateResult(
                g.name, Status.SKIPPED, error=f"not run: it needs {r}, which was skipped"
            )
    return None


def _run_one(g: Gate, ctx: Context, bug: threading.Event) -> GateResult:
    t0 = time.monotonic()
    ctx.progress(g.name, "started")
    try:
        result = g.run(ctx)
    except Error as e:
        result = GateResult(g.name, Status.ERRORED, error=e.diagnostics())
    except Exception as e:  # a bug: fail closed, keep going so reports are written
        bug.set()
        log.debug("gate %s crashed:\n%s", g.name, traceback.format_exc())
        result = GateResult(
            g.name, Status.ERRORED, error=f"internal error: {type(e).__name__}: {e}"
        )
    duration = time.monotonic() - t0
    result = GateResult(
        gate=result.gate, status=result.status, findings=result.findings,
        artifacts=result.artifacts, facts=result.facts, error=result.error, duration_s=duration,
    )  # fmt: skip
    ctx.progress(g.name, f"{'errored' if result.status is Status.ERRORED else 'done'}")
    return result
