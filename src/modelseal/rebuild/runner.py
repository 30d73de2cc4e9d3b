"""Running a rebuild: the named build contexts resolved, the build on a fresh engine (or the
named builder) through the build gate, and the comparison with the published image.

The engine: by default a :class:`~modelseal.imagebuild.engine.PrivateEngine` with an empty
data root under a new private directory (what a third party starts from: no cache, no image),
stopped and removed afterwards whatever happens (its dockerd runs with ``--bridge=none``: a
build recorded with ``network: default`` gets a note, :func:`engine_notes`); with ``--builder
NAME`` an existing buildx builder (``$DOCKER_HOST``'s, else the current docker context's). The build is the build gate's (the pipeline with only that gate),
under the default policy with ``rebuild_check: never``, no cache, the provenance's network, and
the provenance's parameters as the run's options.

On a different digest the published image is fetched by digest into an OCI layout (skopeo,
``--preserve-digests``; the layout's digest checked) and the two compared platform by platform
down to file paths (:mod:`modelseal.imagebuild.compare`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelseal import fsio
from modelseal._tools import run_tool, which
from modelseal.errors import ConfigError, Error, GateError, ToolError
from modelseal.oci import MANIFEST_FACT, OciLayout
from modelseal.rebuild.plan import CannotRebuild, RebuildPlan
from modelseal.rebuild.source import Checkout, inside
from modelseal.untrusted import untrusted

#: At most this many differences go into the report (and the attestation).
MAX_DIFFERENCES = 50
#: Seconds the fetch of the published image may take, at most.
FETCH_TIMEOUT = 1800.0

ProgressFn = Callable[[str, str], None]


@dataclass(frozen=True)
class Built:
    """The rebuild's result: its digest, per-platform manifests, layout and builder facts."""

    digest: str
    platforms: Mapping[str, str]
    layout: Path
    facts: Mapping[str, str]
    engine: str
    """``fresh private engine`` or ``builder NAME``."""


@dataclass(frozen=True)
class Comparison:
    """What differs between the published image and the rebuild."""

    platforms: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    """platform → ``{"expected": digest | None, "rebuilt": digest | None}``."""
    differences: tuple[Mapping[str, str], ...] = ()
    """``{"platform", "part", "detail"}`` each."""
    notes: tuple[str, ...] = ()


# --- build contexts ------------------------------------------------------------------------


def resolve_contexts(plan: RebuildPlan, given: Mapping[str, str], root: Path) -> dict[str, str]:
    """The ``--build-context`` values for the rebuild, from the plan and what was ``given``:
    an ``oci-layout`` one must be given (holding the recorded digest); a ``docker-image`` one
    with a recorded digest is pulled by that digest; a ``local`` one is the checkout's; a
    ``url`` one (validated by the plan: a remote URL) is passed on."""
    known = {c.name for c in plan.build_contexts}
    extra = sorted(set(given) - known)
    if extra:
        raise ConfigError(
            "--build-context "
            + ", ".join(untrusted(n, markup=False, limit=80) for n in extra)
            + ": the provenance records no build context of that name (it records "
            + (", ".join(sorted(known)) or "none")
            + ")."
        )
    out: dict[str, str] = {}
    for pin in plan.build_contexts:
        value = given.get(pin.name)
        if pin.type == "oci-layout":
            assert pin.digest is not None
            if value is None:
                raise CannotRebuild(
                    f"build context {pin.name} was an OCI layout holding {pin.digest}; give it: "
                    f"--build-context {pin.name}=oci-layout://DIR@{pin.digest} (or "
                    f"{pin.name}=docker-image://REF@{pin.digest})."
                )
            out[pin.name] = _pinned_value(pin.name, value, pin.digest)
        elif pin.type == "docker-image":
            if value is not None and pin.digest is not None:
                out[pin.name] = _pinned_value(pin.name, value, pin.digest)
            elif value is None and pin.digest is not None:
                out[pin.name] = f"docker-image://{_by_digest(pin.name, str(pin.ref), pin.digest)}"
            else:
                out[pin.name] = value or f"docker-image://{pin.ref}"
        elif pin.type == "local":
            assert pin.path is not None
            if value is not None:
                raise ConfigError(
                    f"--build-context {pin.name}: the provenance records it as the directory "
                    f"{pin.path} of the checkout; it is taken from there."
                )
            out[pin.name] = str(inside(root, pin.path, f"build context {pin.name}").resolve())
        elif pin.type == "host":
            raise CannotRebuild(
                f"build context {pin.name} was the directory "
                f"{untrusted(pin.path, markup=False, limit=200)} of the builder's host, outside "
                "the repository: it cannot be resolved elsewhere, so no rebuild is possible."
            )
        else:
            out[pin.name] = value or str(pin.uri)
    return out


def _by_digest(name: str, ref: str, digest: str) -> str:
    """``ref`` pinned to the recorded ``digest``: as it is when it ends in ``@digest``, else
    its name (the tag dropped) ``@digest``; a ref pinned to another digest is refused."""
    if "@" in ref:
        if ref.rpartition("@")[2] != digest:
            raise CannotRebuild(
                f"build context {name}: the image {untrusted(ref, markup=False, limit=200)} is "
                f"pinned to another digest than the recorded {digest}."
            )
        return ref
    head, slash, last = ref.rpartition("/")
    return head + slash + last.partition(":")[0] + "@" + digest


def _pinned_value(name: str, value: str, digest: str) -> str:
    """A given ``oci-layout://DIR[@sha256:…]`` or ``docker-image://REF@sha256:…`` that must
    serve ``digest``; returned pinned to it."""
    if value.startswith("oci-layout://"):
        rest = value.removeprefix("oci-layout://")
        path_part, at, given_digest = rest.rpartition("@") if "@" in rest else (rest, "", "")
        if at and given_digest != digest:
            raise ConfigError(
                f"--build-context {name}: {untrusted(given_digest, markup=False, limit=80)} is "
                f"not the recorded {digest}."
            )
        path = Path(path_part).resolve()
        try:
            layout = OciLayout(path)
            layout.read_json(digest)
            held = blob_digest(layout.blob(digest))
        except (GateError, OSError):
            raise CannotRebuild(
                f"--build-context {name}: the OCI layout at "
                f"{untrusted(path, markup=False, limit=200)} does not hold {digest}."
            ) from None
        if held != digest:
            raise CannotRebuild(
                f"--build-context {name}: the blob {digest} in "
                f"{untrusted(path, markup=False, limit=200)} does not match its digest."
            )
        return f"oci-layout://{path}@{digest}"
    if value.startswith("docker-image://"):
        if value.rpartition("@")[2] != digest:
            raise ConfigError(
                f"--build-context {name}: give docker-image://REF@{digest} (the recorded digest)."
            )
        return value
    raise ConfigError(
        f"--build-context {name}: expected oci-layout://DIR[@{digest}] or "
        f"docker-image://REF@{digest}."
    )


def blob_digest(path: Path) -> str:
    """``sha256:<hex>`` of a layout blob (a manifest or index: small, read bounded)."""
    from modelseal.bounded import read_input
    from modelseal.oci import MAX_JSON_BYTES
    from modelseal.publish.registry import sha256_digest

    return sha256_digest(read_input(path, what="OCI blob", limit=MAX_JSON_BYTES, contained=False))


# --- the engine and the build --------------------------------------------------------------


@contextmanager
def fresh_engine() -> Iterator[str]:
    """A :class:`PrivateEngine` with an empty data root; yields its ``DOCKER_HOST``. The root
    is a new private directory under the temporary directory (``/tmp`` when that one's path is
    long: a unix socket path must stay under 100 characters); stopped and removed on exit,
    also on an error or Ctrl-C."""
    from modelseal.imagebuild.engine import PrivateEngine

    base = os.path.realpath(tempfile.gettempdir())
    if len(base) > 40:
        # mkdtemp below makes a 0700 directory of a random name: nothing can be planted there.
        base = os.path.realpath("/tmp")  # noqa: S108
    root = Path(tempfile.mkdtemp(prefix="ms-rb-", dir=base))
    engine = PrivateEngine(root)
    try:
        engine.start()
        yield engine.docker_host
    finally:
        engine.stop(remove=True)


def engine_notes(plan: RebuildPlan, builder: str | None) -> list[str]:
    """What the report should say about where the rebuild runs: the fresh private engine has
    no network (its dockerd runs with ``--bridge=none``), so a build recorded with
    ``network: default`` whose RUN steps download cannot be rebuilt the same there."""
    if plan.network == "default" and builder is None:
        return [
            "the provenance records network: default, but the fresh private engine has no "
            "network (dockerd --bridge=none): a RUN step that downloads fails or gives other "
            "bytes there; rebuild with --builder NAME (a builder whose engine has network)"
        ]
    return []


def build(
    plan: RebuildPlan,
    checkout: Checkout,
    contexts: Mapping[str, str],
    out_dir: Path,
    *,
    builder: str | None,
    progress: ProgressFn | None = None,
) -> Built:
    """Build the plan from ``checkout`` on a fresh engine, or on ``builder``."""
    if builder is not None:
        return _build_on(plan, checkout, contexts, out_dir, builder, None, progress)
    with fresh_engine() as host:
        return _build_on(plan, checkout, contexts, out_dir, None, host, progress)


def _build_on(
    plan: RebuildPlan,
    checkout: Checkout,
    contexts: Mapping[str, str],
    out_dir: Path,
    builder: str | None,
    docker_host: str | None,
    progress: ProgressFn | None,
) -> Built:
    from modelseal.findings import Status
    from modelseal.gates import select_gates
    from modelseal.pipeline import RunOptions, SourceDateEpoch, run_pipeline
    from modelseal.policy import LoadedPolicy, default_policy

    context = inside(checkout.root, plan.context, "source.context")
    dockerfile = inside(checkout.root, plan.dockerfile, "source.dockerfile")
    defaults = default_policy()
    build_section = defaults.policy.build.model_copy(
        update={
            "rebuild_check": "never",
            "allow_network": plan.network == "default",
            "builder": builder,
            "cache_from": [],
            "cache_to": [],
            "platforms": list(plan.platforms),
            # The layers' compression is part of their bytes: the one the provenance records.
            "compression": plan.compression,
            "compression_level": plan.compression_level,
            "force_compression": plan.force_compression,
        }
    )
    policy = LoadedPolicy(
        policy=defaults.policy.model_copy(update={"build": build_section}),
        source=defaults.source,
        sha256=defaults.sha256,
    )
    options = RunOptions(
        context=context,
        dockerfile=dockerfile,
        build_args=dict(plan.build_args),
        build_contexts=dict(contexts),
        source_date_epoch=plan.source_date_epoch,
        out_dir=out_dir,
        gates=("build",),
        labels=dict(plan.labels),
        annotations=dict(plan.annotations),
        platforms=plan.platforms,
        builder=builder,
        docker_host=docker_host,
    )
    epoch = SourceDateEpoch(plan.source_date_epoch, "provenance")
    result = run_pipeline(select_gates(("build",)), policy, options, epoch, progress=progress)
    gate = next(r for r in result.results if r.gate == "build")
    if gate.status is Status.ERRORED or "image.digest" not in gate.facts:
        raise CannotRebuild(f"the rebuild could not build the image: {gate.error or 'no image'}")
    facts = dict(gate.facts)
    return Built(
        digest=facts["image.digest"],
        platforms={
            k.removeprefix(MANIFEST_FACT): v
            for k, v in facts.items()
            if k.startswith(MANIFEST_FACT)
        },
        layout=Path(gate.artifacts["oci_layout"]),
        facts=facts,
        engine=f"builder {builder}" if builder else "fresh private engine",
    )


# --- the comparison ------------------------------------------------------------------------


def compare(
    plan: RebuildPlan,
    built: Built,
    work_dir: Path,
    *,
    deadline: float,
    fetch: Callable[[Path], OciLayout] | None,
) -> Comparison:
    """What differs between the published image (``fetch`` puts it into a layout under the
    given directory; None: it cannot be fetched) and the rebuild."""
    from modelseal.imagebuild.compare import compare_platforms, describe_differences

    if built.digest == plan.expected_digest:
        return Comparison({p: {"expected": d, "rebuilt": d} for p, d in built.platforms.items()})
    notes: list[str] = []
    if fetch is None:
        notes.append("the published image could not be fetched to name what differs")
        return Comparison(_platform_map(None, built.platforms, plan), (), tuple(notes))
    try:
        published = fetch(work_dir / "published")
        expected = {
            d.platform or "unknown": d.digest
            for d in published.platform_manifests(plan.expected_digest)
        }
    except Error as e:
        notes.append(
            "the published image could not be fetched to name what differs: "
            + untrusted(e.message, markup=False, limit=400)
        )
        return Comparison(_platform_map(None, built.platforms, plan), (), tuple(notes))
    if time.monotonic() > deadline:
        notes.append("the --timeout passed while fetching the published image")
    rebuilt = dict(built.platforms)
    if len(expected) == 1 and len(rebuilt) == 1:
        # A single-platform image's manifest carries no platform of its own: pair the two.
        expected = {next(iter(rebuilt)): next(iter(expected.values()))}
    differences: list[dict[str, str]] = []
    try:
        rebuilt_layout = OciLayout(built.layout)
        for m in compare_platforms(published, expected, rebuilt_layout, rebuilt):
            details, _ = describe_differences(m.differences)
            for part, detail in details.items():
                differences.append({"platform": m.platform, "part": part, "detail": detail})
    except Error as e:
        notes.append("comparing the layers failed: " + untrusted(e.message, markup=False))
    platforms = {
        p: {"expected": expected.get(p), "rebuilt": rebuilt.get(p)}
        for p in sorted(expected.keys() | rebuilt.keys())
    }
    if len(differences) > MAX_DIFFERENCES:
        notes.append(f"{len(differences) - MAX_DIFFERENCES} more differences left out")
    return Comparison(platforms, tuple(differences[:MAX_DIFFERENCES]), tuple(notes))


def _platform_map(
    expected: Mapping[str, str] | None, rebuilt: Mapping[str, str], plan: RebuildPlan
) -> dict[str, dict[str, str | None]]:
    if len(rebuilt) == 1:
        return {p: {"expected": plan.expected_digest, "rebuilt": d} for p, d in rebuilt.items()}
    return {p: {"expected": None, "rebuilt": d} for p, d in rebuilt.items()}


def skopeo_fetch(
    name: str, digest: str, *, local: bool, deadline: float, credentials: Any = None
) -> Callable[[Path], OciLayout]:
    """A fetcher of ``name@digest`` into an OCI layout at the path it is given: ``skopeo copy
    --preserve-digests`` (every platform of an index), the layout's top digest and blob
    checked against ``digest``."""
    from modelseal.publish.publisher import auth_file

    host = name.split("/", 1)[0]

    def fetch(dest: Path) -> OciLayout:
        skopeo = which("skopeo")
        if skopeo is None:
            raise GateError("skopeo was not found on PATH; it fetches the published image.")
        left = min(FETCH_TIMEOUT, deadline - time.monotonic())
        if left <= 0:
            raise GateError("the --timeout passed before the published image could be fetched.")
        with auth_file(host, credentials) as auth:
            argv = [
                skopeo, "copy", "--quiet", "--preserve-digests", "--all", "--retry-times", "2",
                f"docker://{name}@{digest}", f"oci:{dest}:published",
            ]  # fmt: skip
            if auth is not None:
                argv[2:2] = ["--src-authfile", str(auth)]
            if local:
                argv[2:2] = ["--src-tls-verify=false"]
            try:
                run_tool(argv, timeout=left)
            except ToolError as e:
                raise GateError(f"skopeo could not fetch {name}@{digest}: {e.message}") from None
        layout = OciLayout(dest)
        tops = [d.digest for d in layout.top_descriptors()]
        if tops != [digest] or blob_digest(layout.blob(digest)) != digest:
            raise GateError(f"the fetched layout does not hold exactly {digest}.")
        return layout

    return fetch


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """``data`` as indented JSON, written fresh and atomically."""
    fsio.write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
