"""The build gate: a reproducible BuildKit build of the normalized context into an OCI layout,
optionally built twice to prove it, with the base images' pinning and digests recorded."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelseal import fsio
from modelseal._tools import GHA_CACHE_ENV, ToolResult, run_tool, tail, which
from modelseal.bounded import read_input_text
from modelseal.errors import ConfigError, Error, GateError, ToolError
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.gates import RegisteredGate
from modelseal.imagebuild import standins
from modelseal.imagebuild.bases import BaseRef, classify_bases, final_root
from modelseal.imagebuild.compare import compare_platforms, describe_differences
from modelseal.imagebuild.context import NORMALIZATION_VERSION, DockerIgnore, normalize_context
from modelseal.imagebuild.dockerfile import Dockerfile, parse_dockerfile
from modelseal.imagebuild.engine import (
    BUILDKIT_IMAGE,
    EngineInfo,
    PrivateEngine,
    docker_cli,
    probe_engine,
)
from modelseal.imagebuild.finalize import (
    FINALIZER_VERSION,
    MODEL_LAYERS_FACT,
    Finalized,
    finalize_layout,
    zstd_tool,
)
from modelseal.imagebuild.source_date_epoch import Injected, inject_source_date_epoch
from modelseal.oci import DIGEST_RE, MANIFEST_FACT, ImageDifference, OciLayout
from modelseal.pipeline import Context
from modelseal.postbuild import slim_layers
from modelseal.publish.build_environment import path_in_repository, public_context_url

#: Seconds one `docker buildx build` may take.
BUILD_TIMEOUT = 3600.0


def build_platforms(ctx: Context) -> tuple[str, ...]:
    """The platforms to build: the run's (``--platform``, the action's ``platforms``), else
    the policy's ``build.platforms``; empty means the engine's own."""
    return tuple(ctx.options.platforms or ctx.policy.policy.build.platforms)


@dataclass(frozen=True)
class BuildOutput:
    """One finished build: its layout and digests."""

    layout: OciLayout
    top_digest: str  # what the exporter returned: a manifest, or an index for several platforms
    config_digest: str
    platform_manifests: Mapping[str, str]  # platform → manifest digest
    log: str
    #: Seconds of ``docker buildx build`` and of the layout finalizer (for the report).
    seconds: Mapping[str, float] = field(default_factory=dict)
    #: platform → the layers that hold only files below ``models.image_paths``
    model_layers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class BuildGate(RegisteredGate):
    """Gate ``build``: collects the built image, its digests, and reproducibility evidence."""

    name = "build"

    def run(self, ctx: Context) -> GateResult:
        """Normalize, build (twice with ``rebuild_check``), and describe the result."""
        policy = ctx.policy.policy.build
        opts = ctx.options
        context_dir = opts.context.resolve()
        if not context_dir.is_dir():
            raise ConfigError(f"build context {opts.context} is not a directory.")
        named = opts.dockerfile or opts.context / "Dockerfile"
        dockerfile = named.resolve()
        # The name as given: a symlink out of the repository is refused, not resolved first.
        text = read_input_text(named, what="Dockerfile")
        shown = _display_path(dockerfile)
        df = parse_dockerfile(text, shown, build_args=opts.build_args)
        contexts = {k: _pin_layout_context(k, v) for k, v in opts.build_contexts.items()}
        bases = classify_bases(df, contexts)
        findings = [f for b in bases if (f := _unpinned_finding(b, shown, contexts)) is not None]

        facts: dict[str, str] = {
            "source_date_epoch": str(ctx.epoch.value),
            "source_date_epoch.source": ctx.epoch.source,
            "dockerfile": shown,
            "dockerfile.sha256": hashlib.sha256(text.encode()).hexdigest(),
            "network": "default" if policy.allow_network else "none",
            "context.normalization": str(NORMALIZATION_VERSION),
            "layout.finalizer": str(FINALIZER_VERSION),
        }
        facts |= compression_facts(
            policy.compression, policy.compression_level, force=policy.force_compression
        )
        facts |= _source_facts(opts.context, named, contexts)
        if build_platforms(ctx):
            facts["platforms"] = ",".join(build_platforms(ctx))
        artifacts: dict[str, Path] = {}
        try:
            # Whatever the rebuild starts (a fresh engine) is stopped and removed on the way
            # out, also when a build fails.
            with contextlib.ExitStack() as cleanup:
                findings += self._build_and_check(
                    ctx, text, df, contexts, bases, facts, artifacts, cleanup
                )
        except Error as e:
            # Evidence collected before the failure (e.g. an unpinned base that could not be
            # pulled) is kept: the report shows both.
            return GateResult(
                self.name, Status.ERRORED, findings=tuple(findings), artifacts=artifacts,
                facts=facts, error=e.diagnostics(),
            )  # fmt: skip
        return GateResult(
            self.name, Status.PASSED, findings=tuple(findings), artifacts=artifacts, facts=facts
        )

    def _build_and_check(
        self,
        ctx: Context,
        text: str,
        df: Dockerfile,
        contexts: Mapping[str, str],
        bases: tuple[BaseRef, ...],
        facts: dict[str, str],
        artifacts: dict[str, Path],
        cleanup: contextlib.ExitStack,
    ) -> list[Finding]:
        policy = ctx.policy.policy.build
        opts = ctx.options
        context_dir = opts.context.resolve()
        dockerfile = (opts.dockerfile or context_dir / "Dockerfile").resolve()
        findings: list[Finding] = []
        ctx.progress(self.name, "checking the engine, normalizing the build context")
        started = time.monotonic()
        ignore = DockerIgnore.load(context_dir, dockerfile)
        pinned = _lock_pins(ctx, context_dir) if policy.stand_ins else {}
        # The bases' configs (their users, their ONBUILD triggers), read once: from an OCI
        # layout, or from the registry for a base pinned by digest — only when it matters.
        base_configs = standins.BaseConfigs(contexts)
        blocked = (
            "build.stand_ins is false" if not policy.stand_ins
            else "the models gates are off (models.enabled: false): no models.lock to pin them"
            if not ctx.policy.policy.models.enabled
            else "models.lock pins no file of 1 MiB or more in the build context"
            if not any(standins.MIN_SIZE <= size <= standins.MAX_SIZE for size, _ in pinned.values())
            # First as if every base ran as root (no WORKDIR rule then): what blocks stand-ins
            # whoever the bases' users are needs no registry asked.
            else standins.blocker(df, context_dir, opts.build_args, dict.fromkeys(range(len(bases)), ""))
            or standins.blocker(
                df, context_dir, opts.build_args,
                standins.base_users(bases, contexts, base_configs),
            )
            # The bases' ONBUILD triggers (their configs are read already, for their users):
            # before the context is copied, so that a base with triggers does not have it
            # copied twice.
            or standins.base_blocker(bases, contexts, base_configs)
        )  # fmt: skip
        stand_ins = standins.StandIns(pinned) if blocked is None else None
        # The engine probe waits on docker CLI round trips; the copy waits on the disk.
        with ThreadPoolExecutor(max_workers=1) as pool:
            probe = pool.submit(
                probe_engine,
                docker_host=opts.docker_host,
                builder=opts.builder or policy.builder,
                buildkit_image=opts.buildkit_image or policy.buildkit_image or BUILDKIT_IMAGE,
            )
            summary = normalize_context(
                context_dir, ctx.work_dir / "context", epoch=ctx.epoch.value, ignore=ignore,
                stand_in=stand_ins.add if stand_ins is not None else None,
            )  # fmt: skip
            engine = probe.result()
        norm = ctx.work_dir / "context"
        normalized = time.monotonic() - started
        facts |= _stand_in_facts(stand_ins, blocked)
        base_layers = BaseLayers(final_root(bases), contexts, engine)
        if policy.compression == "zstd":
            zstd_tool()  # missing: ERRORED now, not after a build of many minutes
        injected = inject_source_date_epoch(df, text)
        df_dir = ctx.work_dir / "dockerfile"
        df_dir.mkdir()
        fsio.write_text_atomic(df_dir / "Dockerfile", injected.text)

        layout_dir = ctx.out_dir / "oci"
        # An earlier run's layout must not pass for this one's (nor be left for a failed
        # build); removed without following a link planted there.
        fsio.remove(layout_dir)
        facts |= _builder_facts(engine)
        cache_from = opts.cache_from or tuple(policy.cache_from)
        cache_to = opts.cache_to or tuple(policy.cache_to)
        if cache_from:
            facts["cache.from"] = " ".join(cache_from)
        if cache_to:
            facts["cache.to"] = " ".join(cache_to)
        for c in cache_from:
            _check_local_cache(c, "src", context_dir)
        for c in cache_to:
            _check_local_cache(c, "dest", context_dir)
        cache = [a for c in cache_from for a in ("--cache-from", c)]
        cache += [a for c in cache_to for a in ("--cache-to", c)]
        rebuild = policy.rebuild_check == "always" or (
            policy.rebuild_check == "publish" and opts.publish
        )
        on = opts.rebuild_on or policy.rebuild_on
        facts["rebuild.check"] = policy.rebuild_check + ("" if rebuild else " (skipped)")
        facts["rebuild.on"] = _rebuild_on(on) + ("" if rebuild else " (skipped: no rebuild)")
        # The second engine or builder gets ready while the first build runs.
        second_engine = _second_engine(on, engine, facts, cleanup) if rebuild else None
        # BuildKit writes by path: into a private directory of a random name that no one could
        # plant anything in beforehand, renamed to oci/ once the layout is complete.
        building = fsio.make_temp_dir(ctx.out_dir, "oci")
        ctx.progress(self.name, "building")
        try:
            built = _build(
                engine, ctx, norm, df_dir, contexts, building, injected, cold=False, cache=cache,
                stand_ins=stand_ins, base_layers=base_layers,
            )  # fmt: skip
            fsio.replace_dir(building, layout_dir)
        finally:
            fsio.remove(building)
        first = replace(built, layout=OciLayout(layout_dir))
        facts |= {
            "image.digest": _single_or_top(first),
            "image.top_digest": first.top_digest,
            "image.config_digest": first.config_digest,
            "context.files": str(summary.files),
            "context.bytes": str(summary.bytes),
            "context.excluded": str(summary.excluded),
            "engine.version": engine.server_version,
            "buildx.version": engine.buildx_version,
            "buildkit.version": engine.buildkit_version,
            # Where the first build's seconds went (the benchmarks print them).
            "seconds.normalize": f"{normalized:.1f}",
        }
        facts |= {f"seconds.{k}": f"{v:.1f}" for k, v in first.seconds.items()}
        if stand_ins is not None:
            facts["stand_ins.replaced"] = str(len(stand_ins.replaced))
            facts["stand_ins.replaced_bytes"] = str(sum(n for _, n in stand_ins.replaced))
        for platform, digest in first.platform_manifests.items():
            facts[MANIFEST_FACT + platform] = digest
        for platform, layers in first.model_layers.items():
            # The post-build scanners that skip the model paths skip these layers whole.
            facts[MODEL_LAYERS_FACT + platform] = ",".join(layers)
        for i, b in enumerate(bases):
            if b.kind in ("scratch", "stage"):
                continue
            facts[f"base.{i}"] = f"{b.from_line.image} {_base_digest(b, contexts) or 'unpinned'}"
        fsio.write_text_atomic(ctx.out_dir / "build.log", first.log, errors="backslashreplace")
        artifacts |= {"oci_layout": layout_dir, "build_log": ctx.out_dir / "build.log"}

        if second_engine is not None:
            where = _rebuild_on(on)
            ctx.progress(self.name, f"rebuilding from a cold cache ({where})")
            waited = time.monotonic()
            engine2 = second_engine.result()
            facts["seconds.rebuild.engine_wait"] = f"{time.monotonic() - waited:.1f}"
            facts |= _rebuild_engine_facts(engine2)
            second_dir = ctx.work_dir / "rebuild-oci"
            # Another builder builds the first build's platforms, whatever its own are.
            built_for = tuple(first.platform_manifests)
            platforms = () if on == "same" or "unknown" in built_for else built_for
            second = _build(engine2, ctx, norm, df_dir, contexts, second_dir, injected,
                            cold=True, platforms=platforms, stand_ins=stand_ins,
                            base_layers=base_layers)  # fmt: skip
            facts |= {f"seconds.rebuild.{k}": f"{v:.1f}" for k, v in second.seconds.items()}
            facts["rebuild.digest"] = _single_or_top(second)
            compared = time.monotonic()
            findings += _compare(first, second, where)
            facts["seconds.rebuild.compare"] = f"{time.monotonic() - compared:.1f}"
            facts["rebuild.reproducible"] = (
                "yes" if facts["rebuild.digest"] == facts["image.digest"] else "no"
            )
        return findings


def oci_output(dest: Path) -> str:
    """The ``--output`` of every modelseal build: an OCI layout directory whose new layers are
    left uncompressed, timestamps not rewritten — :mod:`modelseal.imagebuild.finalize` clamps
    them and compresses each new layer once, as ``build.compression`` says.

    BuildKit's ``rewrite-timestamp`` decompresses and recompresses every layer the build adds
    (its converter does so unconditionally, whether or not a timestamp changes), after the
    exporter compressed it once: at model sizes that is most of a build's time. Without
    ``force-compression`` the base image's layers stay as the base ships them."""
    return f"type=oci,dest={dest},tar=false,compression=uncompressed"


def compression_facts(compression: str, level: int | None, *, force: bool) -> dict[str, str]:
    """The layer compression as the build facts record it (read back by the provenance and by
    ``modelseal rebuild``)."""
    facts = {"compression": compression, "compression.force": "true" if force else "false"}
    if level is not None:
        facts["compression.level"] = str(level)
    return facts


def _rebuild_on(on: str) -> str:
    """``build.rebuild_on`` as the report says it: same, fresh or ``builder NAME``."""
    return on if on in ("same", "fresh") else f"builder {on}"


class _Ready:
    """An engine that is already known (``same``): the same interface as a future."""

    def __init__(self, engine: EngineInfo) -> None:
        self._engine = engine

    def result(self) -> EngineInfo:
        return self._engine


def _second_engine(
    on: str, first: EngineInfo, facts: dict[str, str], cleanup: contextlib.ExitStack
) -> Future[EngineInfo] | _Ready:
    """The engine the rebuild check builds on, being made ready in the background: the first
    build's (``same``), a private dockerd with an empty data root started for it (``fresh``,
    stopped and its root removed when ``cleanup`` closes) or an existing buildx builder,
    probed. Its ``result()`` raises :class:`GateError` naming what could not be used."""
    if on == "same":
        return _Ready(first)
    if on != "fresh" and on == (first.builder or first.docker_context):
        raise GateError(
            f"build.rebuild_on names the builder {on!r}, which is the one the first build runs "
            "on: the rebuild would not be independent of it.",
            hint="Name another builder, use rebuild_on: fresh for a second private engine, or "
            "rebuild_on: same to rebuild on the first build's builder.",
        )
    if on != "fresh":
        pool = cleanup.enter_context(ThreadPoolExecutor(max_workers=1))
        return pool.submit(_probe_rebuild_builder, on, first)
    # Checked before the first build, not after it.
    if os.geteuid() != 0:
        raise GateError(_FRESH_FAILED + "it starts a dockerd, which needs root.", hint=_FRESH_HINT)
    if which("dockerd") is None:
        raise GateError(_FRESH_FAILED + "dockerd is not on PATH.", hint=_FRESH_HINT)
    # A short path: the engine's unix socket lives under it (at most 100 characters).
    # mkdtemp: a new 0700 directory of a random name, wherever it is made.
    base = os.path.realpath(tempfile.gettempdir())
    short = base if len(base) < 40 else "/tmp"  # noqa: S108
    root = Path(tempfile.mkdtemp(prefix="ms-rb-", dir=short))
    facts["rebuild.engine.root"] = str(root)
    fresh = PrivateEngine(root)
    cleanup.callback(fresh.stop, remove=True)
    # Entered after the callback, so left before it: the start is waited for, then stopped.
    pool = cleanup.enter_context(ThreadPoolExecutor(max_workers=1))
    return pool.submit(_start_fresh, fresh)


_FRESH_FAILED = "build.rebuild_on: fresh could not start a second private engine: "
_FRESH_HINT = (
    "rebuild_on: fresh starts a dockerd of its own with an empty data root: it needs root and "
    "dockerd (Docker >= 26) on PATH, as on the demo machine or a self-hosted runner. On a "
    "hosted runner name a buildx builder elsewhere instead (build.rebuild_on: NAME, "
    "--rebuild-on NAME): a remote BuildKit, a kubernetes builder or another engine's docker "
    "context."
)


def _start_fresh(fresh: PrivateEngine) -> EngineInfo:
    try:
        fresh.start()
        # Its own BuildKit (the containerd image store): nothing to pull, no builder made.
        return probe_engine(docker_host=fresh.docker_host, create_builder=False)
    except Error as e:
        raise GateError(_FRESH_FAILED + e.diagnostics(), hint=_FRESH_HINT) from None


def _probe_rebuild_builder(name: str, first: EngineInfo) -> EngineInfo:
    try:
        info = probe_engine(builder=name)
    except Error as e:
        raise GateError(
            f"build.rebuild_on: the builder {name!r} for the rebuild check cannot be used: "
            + e.diagnostics()
        ) from None
    same = same_engine(first, info)
    if same is not None:
        what = "the own BuildKit of" if info.builder_driver == "docker" else "a container on"
        raise GateError(
            f"build.rebuild_on: the builder {name!r} is {what} the engine at {same}, which "
            "the first build runs on: the rebuild would not be independent of it.",
            hint="Name a builder of another engine or machine, or use rebuild_on: fresh.",
        )
    return info


def same_engine(first: EngineInfo, second: EngineInfo) -> str | None:
    """The engine both builds would run on, when modelseal can tell (a ``docker`` or
    ``docker-container`` builder's endpoint, each as its docker context or ``DOCKER_HOST``
    names it); None otherwise. Endpoints are compared as strings: two names of one engine (a
    TCP address and its unix socket, an ssh host) are not seen as the same — a builder that
    must be independent has to run on another engine or machine."""
    if first.endpoint is not None and first.endpoint == second.endpoint:
        return first.endpoint
    return None


def _rebuild_engine_facts(engine: EngineInfo) -> dict[str, str]:
    """Which builder the rebuild check ran on, as :func:`_builder_facts` says it for the first
    build (``rebuild.``-prefixed: the provenance records only the first build's)."""
    facts = {"rebuild." + k: v for k, v in _builder_facts(engine).items()}
    if engine.builder_driver in ("docker", "docker-container"):
        # A remote or kubernetes BuildKit runs on no engine of ours: no version to record.
        facts["rebuild.engine.version"] = engine.server_version
    facts["rebuild.buildkit.version"] = engine.buildkit_version
    return facts


def _builder_facts(engine: EngineInfo) -> dict[str, str]:
    """The builder, for the report and the provenance: its BuildKit image pinned by digest, or
    the engine's version when the engine's own BuildKit builds."""
    facts = {
        "builder.name": engine.builder or engine.docker_context,
        "builder.driver": engine.builder_driver,
    }
    if engine.builder_image:
        facts["builder.image"] = engine.builder_image
    return facts


def _source_facts(context: Path, dockerfile: Path, contexts: Mapping[str, str]) -> dict[str, str]:
    """Where the build's inputs are, in terms a rebuild on another machine can resolve: the
    context and Dockerfile as paths inside the git work tree (relative to its top, never host
    paths), and each named build context by what pins it (``build_context.NAME``:
    ``oci-layout sha256:…`` for an OCI layout — its directory is this host's —, ``local PATH``
    for a directory inside the work tree, ``host PATH`` for one outside it — not resolvable
    elsewhere —, otherwise the URL as given)."""
    facts: dict[str, str] = {}
    for key, path in (("source.context", context), ("source.dockerfile", dockerfile)):
        inside = path_in_repository(path)
        if inside is not None:
            facts[key] = inside
    for name, value in sorted(contexts.items()):
        if value.startswith("oci-layout://"):
            recorded = "oci-layout " + value.rpartition("@")[2]
        elif "://" in value:
            recorded = public_context_url(value)
        else:
            inside = path_in_repository(Path(value))
            recorded = f"local {inside}" if inside is not None else f"host {value}"
        facts[f"build_context.{name}"] = recorded
    return facts


def _display_path(p: Path) -> str:
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def check_build_contexts(contexts: Mapping[str, str]) -> None:
    """Raise :class:`ConfigError` (exit 2) for a ``--build-context`` whose OCI layout cannot be
    used; run before the pipeline, where the build gate's own error would be an ERRORED gate."""
    for name, value in contexts.items():
        _pin_layout_context(name, value)


def _pin_layout_context(name: str, value: str) -> str:
    """Resolve ``oci-layout://DIR[:tag]`` to ``oci-layout://ABSDIR@sha256:…`` so that the digest
    recorded is the one BuildKit uses."""
    if not value.startswith("oci-layout://"):
        return value
    rest = value.removeprefix("oci-layout://")
    path_part, at, digest = rest.partition("@")
    tag = None
    if not at:
        head, colon, maybe_tag = path_part.rpartition(":")
        if colon and "/" not in maybe_tag:
            path_part, tag = head, maybe_tag
    path = Path(path_part).resolve()
    try:
        layout = OciLayout(path)
    except GateError:
        raise ConfigError(
            f"--build-context {name}={value}: {path} is not an OCI image layout."
        ) from None
    if at:
        if not DIGEST_RE.match(digest):
            raise ConfigError(f"--build-context {name}={value}: {digest!r} is not a sha256 digest.")
        return f"oci-layout://{path}@{digest}"
    try:
        tops = layout.top_descriptors()
    except GateError as e:
        raise ConfigError(f"--build-context {name}={value}: unusable OCI layout: {e}") from None
    chosen = [
        d for d in tops
        if tag is None or (d.annotations or {}).get("org.opencontainers.image.ref.name") == tag
    ]  # fmt: skip
    if len(chosen) != 1:
        what = f"tag {tag!r}" if tag else "a single image"
        raise ConfigError(
            f"--build-context {name}={value}: the layout at {path} does not hold exactly {what} "
            f"(it lists {len(tops)}); name the image with @sha256:…"
        )
    return f"oci-layout://{path}@{chosen[0].digest}"


def _check_local_cache(spec: str, key: str, context_dir: Path) -> None:
    """Refuse a ``type=local`` cache directory a pull request could steer: buildx reads ``src``
    and writes ``dest`` by path, following any symbolic link on the way, so a directory inside
    the working directory (the checked-out repository) or the build context, or one reached
    through a link, could send the cache's files anywhere (or read them from anywhere). A
    ``dest`` is made here, without following a link, before buildx writes into it."""
    attrs = dict(part.partition("=")[::2] for part in spec.split(","))
    if attrs.get("type") != "local" or key not in attrs:
        return
    path = fsio.absolute(attrs[key])
    cwd, ctx_dir = fsio.absolute(Path.cwd()), fsio.absolute(context_dir)
    for root in {cwd, ctx_dir, cwd.resolve(), ctx_dir.resolve()}:
        for candidate in (path, path.resolve()):
            if candidate == root or root in candidate.parents:
                raise GateError(
                    f"the local cache directory {fsio.shown(path)} ({key}= of {spec!r}) is "
                    f"inside the working directory or the build context "
                    f"({fsio.shown(root)}): a checked-out repository could plant links there.",
                    hint="Keep the BuildKit cache outside the repository, e.g. under $RUNNER_TEMP.",
                )
    try:
        if key == "dest":
            fsio.ensure_dir(path)
        else:
            with fsio.directory(path, create=False):
                pass
    except FileNotFoundError:
        return  # no cache to import yet: buildx says so and builds without one
    except ConfigError as e:
        raise GateError(f"local cache {key}= of {spec!r}: {e.message}", hint=e.hint) from None


def _base_digest(b: BaseRef, contexts: Mapping[str, str]) -> str | None:
    if b.kind == "digest":
        return b.from_line.image.rpartition("@")[2]
    if b.kind == "context":
        value = contexts.get(b.ref, "")
        if value.startswith("oci-layout://") and "@" in value:
            return value.rpartition("@")[2]
        digest = value.rpartition("@")[2]
        if value.startswith("docker-image://") and DIGEST_RE.match(digest):
            return digest
    return None


def _unpinned_finding(b: BaseRef, dockerfile: str, contexts: Mapping[str, str]) -> Finding | None:
    if b.kind in ("scratch", "stage", "digest"):
        return None
    if b.kind == "context" and _base_digest(b, contexts) is not None:
        return None
    return Finding(
        gate="build",
        id="build.unpinned-base",
        severity=Severity.HIGH,
        title=f"base image {b.from_line.image} is not pinned by digest"
        + (f" (build context {contexts[b.ref]})" if b.kind == "context" else ""),
        subject=b.from_line.image,
        location=f"{dockerfile}:{b.from_line.line}",
        evidence={
            "fix": "pin it as IMAGE@sha256:<digest>, or supply it as a local OCI layout with "
            "--build-context NAME=oci-layout://DIR@sha256:<digest>",
        },
    )


def _build(
    engine: EngineInfo,
    ctx: Context,
    context_dir: Path,
    df_dir: Path,
    contexts: Mapping[str, str],
    dest: Path,
    injected: Injected,
    *,
    cold: bool,
    cache: Sequence[str] = (),
    platforms: Sequence[str] = (),
    stand_ins: standins.StandIns | None = None,
    base_layers: BaseLayers | None = None,
) -> BuildOutput:
    policy = ctx.policy.policy.build
    meta = ctx.work_dir / f"metadata-{'cold' if cold else 'warm'}.json"
    epoch = str(ctx.epoch.value)
    argv = [
        docker_cli(), "buildx", "build", *engine.buildx_args(),
        "--file", str(df_dir / "Dockerfile"),
        "--pull=false", "--provenance=false", "--sbom=false",
        "--progress", "plain",
        "--network", "default" if policy.allow_network else "none",
        "--output", oci_output(dest),
        "--metadata-file", str(meta),
        "--build-arg", f"SOURCE_DATE_EPOCH={epoch}",
    ]  # fmt: skip
    if cold:
        # The proof of reproducibility reads no cache of any kind.
        argv.append("--no-cache")
    else:
        argv += cache
    for k, v in sorted(ctx.options.build_args.items()):
        argv += ["--build-arg", f"{k}={v}"]
    for k, v in sorted(contexts.items()):
        argv += ["--build-context", f"{k}={v}"]
    # Labels land in the image config, annotations in the manifest(s): both are part of the
    # bytes, so the same values give the same digest.
    for k, v in sorted(ctx.options.labels.items()):
        argv += ["--label", f"{k}={v}"]
    for k, v in sorted(ctx.options.annotations.items()):
        argv += ["--annotation", f"{k}={v}"]
    platforms = tuple(platforms) or build_platforms(ctx)
    if platforms:
        argv += ["--platform", ",".join(platforms)]
    argv.append(str(context_dir))
    started = time.monotonic()
    try:
        # The runner's cache token goes to buildx only when a gha cache is asked for.
        gha = any(c.startswith("type=gha") or ",type=gha" in c for c in cache)
        result = run_tool(
            argv, timeout=BUILD_TIMEOUT, env={"SOURCE_DATE_EPOCH": epoch, **engine.env()},
            pass_env=GHA_CACHE_ENV if gha else (),
        )  # fmt: skip
    except ToolError as e:
        raise GateError(_explain_build_failure(e, injected, ctx.options.dockerfile)) from None
    raw = _read_output(dest, meta, result)
    built = time.monotonic()
    # One pass per new layer: timestamps clamped to the epoch, compressed as the policy says.
    fin = finalize_layout(
        dest, raw.top_digest, compression=policy.compression, level=policy.compression_level,
        force=policy.force_compression, epoch=ctx.epoch.value, model_paths=_model_paths(ctx),
        stand_ins=stand_ins, slim_dir=None if cold else ctx.shared.dir, base_layers=base_layers,
    )  # fmt: skip
    # The secret scan reads these in place of the model-only layers (content-addressed: a slim
    # is only ever used for the very layer it was made from).
    slim_layers(ctx).update(fin.slims)
    seconds = {"buildx": built - started, "finalize": time.monotonic() - built}
    return replace(
        _read_output(dest, meta, result, fin), seconds=seconds, model_layers=fin.model_layers
    )


def _stand_in_facts(stand_ins: standins.StandIns | None, blocked: str | None) -> dict[str, str]:
    """The build facts on stand-ins: how many files got one, or why none did."""
    if stand_ins is None:
        return {"stand_ins": "0", "stand_ins.not_used": blocked or ""}
    return {"stand_ins": str(len(stand_ins.files))}


#: Seconds reading a base image's manifests from its registry may take.
INSPECT_TIMEOUT = 60.0


class BaseLayers:
    """How many layers the base image under the last stage has, per platform (None: not
    known): the layout finalizer finalizes every layer after them, also one BuildKit took
    compressed from a cache. Read from an OCI-layout build context, or, for a base pinned by
    digest, from its registry by buildx (its manifests, with the build's own credentials)."""

    def __init__(
        self, root: BaseRef | None, contexts: Mapping[str, str], engine: EngineInfo
    ) -> None:
        self._root, self._contexts, self._engine = root, contexts, engine
        self._known: dict[str, int | None] = {}

    def __call__(self, platform: str) -> int | None:
        """The count for ``platform`` (``os/arch[/variant]``)."""
        if platform not in self._known:
            try:
                self._known[platform] = self._count(platform)
            except (Error, OSError, ValueError, KeyError, TypeError, AttributeError):
                self._known[platform] = None
        return self._known[platform]

    def _count(self, platform: str) -> int | None:
        root = self._root
        if root is None:
            return None
        if root.kind == "scratch":
            return 0
        if root.kind == "context":
            value = self._contexts.get(root.ref, "")
            if "://" not in value:
                return 0  # a local directory as the root filesystem: the build's own layer
            if not (value.startswith("oci-layout://") and "@" in value):
                return None
            path, _, digest = value.removeprefix("oci-layout://").rpartition("@")
            layout = OciLayout(Path(path))
            found = layout.platform_manifests(digest)
            chosen = [d for d in found if d.platform == platform] or (
                found if len(found) == 1 else []
            )  # fmt: skip
            if len(chosen) != 1:
                return None
            layers = layout.manifest(chosen[0].digest).get("layers")
            return len(layers) if isinstance(layers, list) else None
        if root.kind == "digest":
            return self._registry(root.from_line.image, platform)
        return None  # unpinned: what BuildKit resolves may not be what is read now

    def _registry(self, ref: str, platform: str) -> int | None:
        top = self._raw(ref)
        if isinstance(top.get("layers"), list):
            return len(top["layers"])
        want = platform.split("/")
        for m in top.get("manifests") or []:
            plat = m.get("platform") or {}
            have = [plat.get("os"), plat.get("architecture")] + (
                [plat["variant"]] if plat.get("variant") else []
            )  # fmt: skip
            if have == want:
                name = ref.rpartition("@")[0]
                layers = self._raw(f"{name}@{m['digest']}").get("layers")
                return len(layers) if isinstance(layers, list) else None
        return None

    def _raw(self, ref: str) -> dict[str, Any]:
        result = run_tool(
            [docker_cli(), "buildx", "imagetools", "inspect", "--raw", ref],
            timeout=INSPECT_TIMEOUT, env=self._engine.env(),
        )  # fmt: skip
        data = json.loads(result.stdout)
        if not isinstance(data, dict):
            raise ValueError("not a manifest")
        return data


def _lock_pins(ctx: Context, context_dir: Path) -> dict[str, tuple[int, str]]:
    """What ``models.lock`` pins in the build context (the files that may get stand-ins); none
    when the models gates are off."""
    models = ctx.policy.policy.models
    if not models.enabled:
        return {}
    return standins.pins(context_dir, (context_dir / models.lock).resolve())


def _model_paths(ctx: Context) -> tuple[str, ...]:
    """``models.image_paths`` as image paths without leading or trailing ``/``; none when the
    models gates are off, or when one of them is the whole image."""
    models = ctx.policy.policy.models
    if not (models.enabled and models.image_paths):
        return ()
    paths = tuple(sorted({v.strip("/") for v in models.image_paths.values()}))
    return () if "" in paths else paths


def _explain_build_failure(e: ToolError, injected: Injected, dockerfile: Path | None) -> str:
    """The one paragraph a user needs: BuildKit's error lines, with line numbers of the
    Dockerfile as the user wrote it."""
    lines = [injected.map_message(line) for line in e.stderr_tail.splitlines()]
    errors = [ln.strip() for ln in lines if re.search(r"\bERROR\b|error:|failed to", ln)]
    detail = "\n".join(dict.fromkeys(errors)) or "\n".join(lines[-6:])
    detail = detail.replace("/dockerfile/Dockerfile", "/Dockerfile")
    return f"docker buildx build failed:\n{detail}"


def _read_output(
    dest: Path, meta: Path, result: ToolResult, fin: Finalized | None = None
) -> BuildOutput:
    try:
        data = json.loads(meta.read_text())
        top = str(data["containerimage.digest"])
        config = str(data.get("containerimage.config.digest", ""))
    except (OSError, json.JSONDecodeError, KeyError) as e:
        raise GateError(
            f"docker buildx build finished but its metadata file {meta} is unusable ({e}).",
            hint=tail(result.stderr),
        ) from None
    if fin is not None:
        top = fin.top_digest
        config = next(iter(fin.manifests.values()))[1] if len(fin.manifests) == 1 else ""
    layout = OciLayout(dest)
    manifests = {d.platform or "unknown": d.digest for d in layout.platform_manifests(top)}
    if not manifests:
        raise GateError(f"the OCI layout {dest} holds no image manifest for {top}.")
    return BuildOutput(layout, top, config, manifests, result.stderr)


def _single_or_top(out: BuildOutput) -> str:
    if len(out.platform_manifests) == 1:
        return next(iter(out.platform_manifests.values()))
    return out.top_digest


def _compare(first: BuildOutput, second: BuildOutput, where: str = "same") -> list[Finding]:
    """A not-reproducible finding per platform whose manifests differ; ``where`` is the
    engine or builder the second build ran on (``build.rebuild_on`` as reported)."""
    return [
        _not_reproducible(
            m.platform, m.expected or "missing", m.actual or "missing", m.differences, where
        )
        for m in compare_platforms(
            first.layout, first.platform_manifests, second.layout, second.platform_manifests
        )
    ]


_REBUILT_ON = {
    "same": "on the same builder",
    "fresh": "on a fresh private engine (empty data root)",
}


def _not_reproducible(
    platform: str,
    first: str,
    second: str,
    diffs: Sequence[ImageDifference],
    rebuilt_on: str = "same",
) -> Finding:
    details, summary = describe_differences(diffs)
    evidence = {"first": first, "second": second, "rebuilt_on": rebuilt_on} | details
    where = next((d.part for d in diffs if d.part.startswith("layer")), None)
    return Finding(
        gate="build",
        id="build.not-reproducible",
        severity=Severity.HIGH,
        title=f"the rebuild from a cold cache {_REBUILT_ON.get(rebuilt_on, 'on the ' + rebuilt_on)} "
        "gave a different image" + (f" — {'; '.join(summary)}" if summary else ""),
        subject=f"image {platform}",
        location=where,
        evidence=evidence,
    )
