"""Finding, and when asked starting, a container engine that BuildKit can export OCI layouts from.

Two ways to get one:

* an engine that already runs (a GitHub runner, a developer's Docker): used as it is when its
  image store is containerd's; otherwise (the classic store refuses the OCI exporter) a
  ``docker-container`` buildx builder running :data:`BUILDKIT_IMAGE`, pinned by digest, named
  after that digest; or any existing builder the user names (``--builder``);
* :class:`PrivateEngine`: a dockerd that modelseal starts itself (the demo and the tests), with
  the containerd snapshotter (or, for tests of the builder path, the classic store), no bridge,
  no iptables, and every socket and byte of state under one directory so that it can be
  stopped and removed without a trace.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from modelseal import fsio
from modelseal._tools import ToolResult, find_tool, run_tool, spawn, tail, which
from modelseal.errors import EngineError, Error, ToolError

#: The BuildKit image of the ``docker-container`` builder modelseal creates on engines whose image
#: store cannot export OCI layouts (GitHub's ubuntu-24.04 runners: Docker 28, classic store).
#: Without it buildx would pull the floating ``moby/buildkit:buildx-stable-1``. Bump it by changing
#: this one line; the tag is there for readers, the digest (the multi-platform index) is what is
#: pulled and recorded. v0.31.2 is the release Docker's own reusable workflow pins
#: (docker/github-builder, .github/workflows/build.yml, ``BUILDKIT_IMAGE``, whose Sigstore
#: attestation it verifies before use); the index digest is the one public release workflows pin
#: for that tag (e.g. ``image=moby/buildkit:v0.31.2@sha256:2f5a…`` with setup-buildx-action). It
#: could not be re-checked against Docker Hub from the offline development machine: check it with
#: ``docker buildx imagetools inspect moby/buildkit:v0.31.2`` when bumping.
BUILDKIT_IMAGE: Final = (
    "moby/buildkit:v0.31.2@sha256:2f5adac4ecd194d9f8c10b7b5d7bceb5186853db1b26e5abd3a657af0b7e26ec"
)
#: Prefix of the builders modelseal creates; the name ends in the image digest's first 16 hex
#: digits, so a builder made from another image is never picked up by name.
BUILDER_PREFIX: Final = "modelseal-buildkit-"
#: Seconds to create and start a builder (the first start pulls the BuildKit image).
BOOTSTRAP_TIMEOUT: Final = 300.0

_MIRROR_HINT = (
    "If Docker Hub is unreachable or rate-limited here, point modelseal at a mirror of the same "
    "image, pinned by digest: policy build.buildkit_image, the --buildkit-image flag or the "
    f"Action's buildkit-image input (e.g. REGISTRY/{BUILDKIT_IMAGE.partition('@')[0]}@sha256:…); "
    "or give an existing builder with --builder / build.builder."
)

_ENGINE_HINT = (
    "modelseal builds with BuildKit through the docker CLI. Point DOCKER_HOST at a running "
    "Docker engine (>= 24 with the buildx plugin), or start a private one with "
    "`modelseal engine start --root DIR` and export the DOCKER_HOST it prints."
)


def docker_cli() -> str:
    """The docker CLI to drive (``$MODELSEAL_DOCKER`` overrides ``docker`` on PATH)."""
    try:
        return find_tool("docker", env_var="MODELSEAL_DOCKER", hint=_ENGINE_HINT)
    except ToolError as e:
        raise EngineError(e.message, hint=_ENGINE_HINT) from None


@dataclass(frozen=True)
class EngineInfo:
    """What modelseal learned about the engine it will build on."""

    docker_host: str
    """Which engine, for reports and comparisons: ``$DOCKER_HOST`` (or the one asked for),
    else the current docker context's endpoint (``docker context NAME`` when it names no
    URL)."""
    server_version: str
    containerd_store: bool
    buildx_version: str
    buildkit_version: str
    builder: str | None  # None: the engine's own BuildKit ("default" builder)
    builder_driver: str = "docker"  # buildx driver: docker, docker-container, remote, kubernetes
    builder_image: str | None = None  # the builder's BuildKit image, when it runs one
    #: The docker context whose docker-driver builder (named after it) is the engine's own
    #: BuildKit: named on the command line when ``builder`` is None, so that buildx's *current*
    #: builder (``docker buildx use``, BUILDX_BUILDER, setup-buildx-action's) never builds
    #: while the provenance says the engine's own BuildKit did.
    docker_context: str = "default"
    #: The builder is the own BuildKit of another docker context (named ``builder``): buildx
    #: builds with such a builder only while that context is the current one.
    context_builder: bool = False
    #: The ``DOCKER_HOST`` to set for the docker CLI: the one asked for or ``$DOCKER_HOST``;
    #: None when neither is (the current docker context decides: Docker Desktop, rootless,
    #: colima, ``docker context use``).
    host_env: str | None = None
    #: The engine whose containers run the build (the docker endpoint of a ``docker`` or
    #: ``docker-container`` builder), as :attr:`docker_host` says it; None when the builder
    #: runs on no engine modelseal can name (remote, kubernetes).
    endpoint: str | None = None

    def buildx_args(self) -> list[str]:
        """Arguments that select the builder for ``docker buildx build``: always explicit."""
        return ["--builder", self.builder or self.docker_context]

    def env(self) -> dict[str, str]:
        """Environment entries that make the docker CLI talk to this engine."""
        if self.context_builder and self.builder:
            # An empty DOCKER_HOST is no DOCKER_HOST: the context decides.
            return {"DOCKER_HOST": "", "DOCKER_CONTEXT": self.builder}
        return {"DOCKER_HOST": self.host_env} if self.host_env else {}


def probe_engine(
    *,
    timeout: float = 30.0,
    create_builder: bool = True,
    builder: str | None = None,
    buildkit_image: str = BUILDKIT_IMAGE,
    docker_host: str | None = None,
) -> EngineInfo:
    """Check that an engine answers and can export OCI; raise :class:`EngineError` otherwise.

    ``docker_host``: the engine to probe (default ``$DOCKER_HOST``); every docker CLI call
    about it, and every build on it (:meth:`EngineInfo.env`), names it. Without either, no
    ``DOCKER_HOST`` is set: the current docker context decides, as for ``docker`` itself.

    ``builder``: an existing buildx builder to use as it is (its driver and BuildKit version
    are recorded). Otherwise the engine's own BuildKit when its image store is containerd's,
    else a ``docker-container`` builder running ``buildkit_image`` (pinned by digest), created
    when ``create_builder`` is true.

    The docker CLI calls run concurrently: each costs a process start and a round trip, and a
    build waits for all of them.
    """
    docker = docker_cli()
    host_env = docker_host or os.environ.get("DOCKER_HOST") or None
    env = {"DOCKER_HOST": host_env} if host_env else {}
    with ThreadPoolExecutor(max_workers=5) as pool:
        # Without DOCKER_HOST, the current context's endpoint names the engine in reports.
        where_f = None if host_env else pool.submit(_context_host, docker, None, timeout, env)
        info_f = pool.submit(
            run_tool, [docker, "info", "--format", "{{json .}}"], timeout=timeout, check=False,
            env=env,
        )  # fmt: skip
        bx_f = pool.submit(
            run_tool, [docker, "buildx", "version"], timeout=timeout, check=False, env=env
        )
        ctx_f = pool.submit(
            run_tool, [docker, "context", "show"], timeout=timeout, check=False, env=env
        )
        inspect_argv = [docker, "buildx", "inspect", "--bootstrap", builder] if builder else [
            docker, "buildx", "inspect"
        ]  # fmt: skip
        inspect_f = pool.submit(
            run_tool, inspect_argv, timeout=BOOTSTRAP_TIMEOUT if builder else timeout,
            check=False, env=env,
        )  # fmt: skip
        info, bx, inspect = info_f.result(), bx_f.result(), inspect_f.result()
        context = ctx_f.result()
        host = host_env or (where_f.result() if where_f else None) or "the current docker context"
    server_version, containerd_store = _parse_info(info, host)
    if bx.returncode != 0:
        raise EngineError(
            "the docker buildx plugin is missing (`docker buildx version` failed).",
            hint="Install docker-buildx (Debian/Ubuntu: apt-get install docker-buildx).",
        )
    words = bx.stdout.split()
    buildx_version = words[1] if len(words) > 1 else bx.stdout.strip()
    if builder is not None:
        own = context.stdout.strip() if context.returncode == 0 else ""
        other = None
        if _inspect_field(inspect.stdout, "Driver") == "docker" and builder != own:
            # Another docker context's own BuildKit: that context's engine builds, so its
            # version and image store are the ones that count (and are recorded).
            other = _context_host(docker, builder, timeout, env)
        if other is not None:
            # Through the context itself (its TLS material too), as the build will reach it.
            host = other
            by_context = {"DOCKER_HOST": "", "DOCKER_CONTEXT": builder}
            info = run_tool([docker, "info", "--format", "{{json .}}"], timeout=timeout,
                            check=False, env=by_context)  # fmt: skip
            server_version, containerd_store = _parse_info(info, host)
        named = _named_builder(builder, inspect, host, server_version, containerd_store,
                               buildx_version)  # fmt: skip
        endpoint: str | None = None
        if named.builder_driver == "docker":
            endpoint = host
        elif named.builder_driver == "docker-container":
            endpoint = _builder_endpoint(docker, inspect.stdout, host, timeout, env)
        return replace(
            named, context_builder=other is not None, host_env=host_env, endpoint=endpoint
        )
    if containerd_store:
        # The engine's own BuildKit is the docker-driver builder named after the docker
        # context, not whatever builder buildx has made current.
        own = context.stdout.strip() if context.returncode == 0 else ""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}", own):
            raise EngineError(
                "cannot tell which docker context the docker CLI uses (`docker context show` "
                f"answered {own[:60]!r}), so not which builder is the engine's own BuildKit."
            )
        if _inspect_field(inspect.stdout, "Name") != own:
            inspect = run_tool(
                [docker, "buildx", "inspect", own], timeout=timeout, check=False, env=env
            )
        driver = _inspect_field(inspect.stdout, "Driver")
        if inspect.returncode != 0 or driver != "docker":
            raise EngineError(
                f"the buildx builder {own!r} of the docker context is not the engine's own "
                f"BuildKit (driver {driver}).",
                hint="Name the builder to use with --builder / build.builder.",
            )
        return EngineInfo(
            docker_host=host,
            server_version=server_version,
            containerd_store=True,
            buildx_version=buildx_version,
            buildkit_version=_inspect_field(inspect.stdout, "BuildKit version", "Buildkit"),
            builder=None,
            docker_context=own,
            host_env=host_env,
            endpoint=host,
        )
    if not create_builder:
        raise EngineError(
            f"the Docker engine at {host} uses the classic image store, whose BuildKit "
            "cannot export OCI layouts.",
            hint="Enable the containerd image store, or let modelseal create its own builder.",
        )
    name, out = _ensure_pinned_builder(docker, buildkit_image, timeout, env)
    return EngineInfo(
        docker_host=host,
        server_version=server_version,
        containerd_store=False,
        buildx_version=buildx_version,
        buildkit_version=_inspect_field(out, "BuildKit version", "Buildkit"),
        builder=name,
        builder_driver="docker-container",
        builder_image=buildkit_image,
        host_env=host_env,
        endpoint=host,
    )


def builder_name(image: str) -> str:
    """The name of the builder modelseal creates for ``image`` (``…@sha256:HEX``)."""
    return BUILDER_PREFIX + image.rpartition("@sha256:")[2][:16]


def _named_builder(
    name: str,
    inspect: ToolResult,
    host: str,
    server_version: str,
    containerd_store: bool,
    buildx_version: str,
) -> EngineInfo:
    """An existing builder the user chose, as ``docker buildx inspect --bootstrap`` shows it."""
    if inspect.returncode != 0:
        reason = tail(inspect.stderr, 2).strip() or f"exit code {inspect.returncode}"
        raise EngineError(
            f"the buildx builder {name!r} cannot be used: {reason}",
            hint="`docker buildx ls` lists the builders; create one with `docker buildx create "
            "--name NAME --driver docker-container --driver-opt image=IMAGE@sha256:…`.",
        )
    driver = _inspect_field(inspect.stdout, "Driver")
    if driver == "docker" and not containerd_store:
        raise EngineError(
            f"the buildx builder {name!r} is the engine's own (driver docker), and the engine at "
            f"{host} uses the classic image store, which cannot export OCI layouts.",
            hint="Give a docker-container builder, or enable the containerd image store.",
        )
    image = _driver_image(inspect.stdout)
    return EngineInfo(
        docker_host=host,
        server_version=server_version,
        containerd_store=containerd_store,
        buildx_version=buildx_version,
        buildkit_version=_inspect_field(inspect.stdout, "BuildKit version", "Buildkit"),
        builder=name,
        builder_driver=driver,
        builder_image=image,
    )


def _builder_endpoint(
    docker: str, inspect_output: str, host: str, timeout: float, env: dict[str, str]
) -> str | None:
    """The engine a ``docker-container`` builder's container runs on, as ``docker_host`` is
    said: its node's ``Endpoint`` (a URL, or a docker context resolved to its endpoint)."""
    value = _inspect_field(inspect_output, "Endpoint")
    if re.fullmatch(r"(unix|tcp|ssh|npipe)://\S{1,4096}", value):
        return value
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}", value):
        return None
    # "default" is the engine DOCKER_HOST names when it is set.
    if value == "default" and env.get("DOCKER_HOST"):
        return host
    return _context_host(docker, value, timeout, env)


def _context_host(docker: str, name: str | None, timeout: float, env: dict[str, str]) -> str | None:
    """The Docker endpoint of the docker context ``name`` (None: the current one; ``docker
    context NAME`` when it names no unix, tcp, ssh or npipe endpoint), or None when there is
    no such context."""
    argv = [docker, "context", "inspect", *([name] if name else [])]
    out = run_tool(
        [*argv, "--format", "{{json .Endpoints.docker.Host}}"],
        timeout=timeout, check=False, env=env,
    )  # fmt: skip
    if out.returncode != 0:
        return None
    try:
        value = json.loads(out.stdout)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, str) or not re.fullmatch(r"(unix|tcp|ssh|npipe)://\S{1,4096}", value):
        return f"docker context {name}" if name else "the current docker context"
    return value


def _ensure_pinned_builder(
    docker: str, image: str, timeout: float, env: dict[str, str]
) -> tuple[str, str]:
    """The docker-container builder for ``image``: reused when one of that name runs exactly
    that digest, refused when it runs anything else, created otherwise; started. Returns its
    name and ``docker buildx inspect`` output."""
    name = builder_name(image)
    probe = run_tool([docker, "buildx", "inspect", name], timeout=timeout, check=False, env=env)
    if probe.returncode == 0:
        existing = _driver_image(probe.stdout)
        driver = _inspect_field(probe.stdout, "Driver")
        # The digest decides, not the spelling: a mirror's copy of the same index is the same
        # image. Anything else under this name was not made by modelseal for this image.
        if driver != "docker-container" or existing is None or _digest(existing) != _digest(image):
            raise EngineError(
                f"a buildx builder named {name} exists but runs "
                f"{existing or 'no pinned image'} (driver {driver}), not {image}: it is not "
                "trusted.",
                hint=f"Remove it (`docker buildx rm {name}`) and run again.",
            )
    else:
        run_tool(
            [docker, "buildx", "create", "--name", name, "--driver", "docker-container",
             "--driver-opt", f"image={image}"],
            timeout=timeout, env=env,
        )  # fmt: skip
    boot = run_tool(
        [docker, "buildx", "inspect", "--bootstrap", name], timeout=BOOTSTRAP_TIMEOUT,
        check=False, env=env,
    )  # fmt: skip
    if boot.returncode != 0:
        errors = [ln.strip() for ln in boot.stderr.splitlines() if "ERROR" in ln or "error" in ln]
        reason = errors[-1] if errors else tail(boot.stderr, 2).strip()
        raise EngineError(
            f"the BuildKit builder {name} could not start: pulling its pinned image {image} "
            f"failed ({reason or f'exit code {boot.returncode}'}). modelseal does not fall back "
            "to an unpinned image.",
            hint=_MIRROR_HINT,
        )
    return name, boot.stdout


def _digest(image: str) -> str:
    return image.rpartition("@")[2]


def _driver_image(inspect_output: str) -> str | None:
    """The ``image=`` driver option ``docker buildx inspect`` lists, if any."""
    m = re.search(r'^Driver Options:.*?\bimage="?([^"\s]+)"?', inspect_output, re.MULTILINE)
    return m.group(1) if m else None


def _parse_info(info: ToolResult, host: str) -> tuple[str, bool]:
    """Server version and whether the image store is containerd's, from `docker info`."""
    if info.returncode != 0:
        reason = tail(info.stderr, 1).strip() or f"docker info exited with {info.returncode}"
        raise EngineError(f"cannot reach a Docker engine at {host}: {reason}", hint=_ENGINE_HINT)
    try:
        data = json.loads(info.stdout)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise EngineError(
            f"the Docker engine at {host} answered `docker info` with something that is not a "
            "JSON object.",
            hint=_ENGINE_HINT,
        )
    if data.get("ServerErrors") or not data.get("ServerVersion"):
        errors = "; ".join(str(e) for e in data.get("ServerErrors") or []) or "no server answered"
        raise EngineError(f"cannot reach a Docker engine at {host}: {errors}", hint=_ENGINE_HINT)
    store = "io.containerd.snapshotter" in json.dumps(data.get("DriverStatus") or [])
    return str(data["ServerVersion"]), store


def _inspect_field(inspect_output: str, *keys: str) -> str:
    """The first ``KEY: value`` line of ``docker buildx inspect`` with one of ``keys``."""
    for line in inspect_output.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys:
            return value.strip()
    return "unknown"


#: A pid file is a few digits; anything longer is not dockerd's.
_MAX_PIDFILE = 32
#: A lazy unmount returns at once; this only bounds a hung umount.
_UMOUNT_TIMEOUT = 30


class PrivateEngine:
    """A dockerd of modelseal's own, all of its state under ``root``.

    ``start`` and ``stop`` act as whoever runs them (root, for dockerd), on what ``root``
    holds, so ``root`` must be this user's alone: owned by the caller, not writable by group or
    others, reached without a symbolic link (:func:`modelseal.fsio.ensure_private_dir`). Nothing
    in it is followed through a link, and ``stop`` signals only the process that really is this
    root's dockerd, whatever PID ``docker.pid`` names.
    """

    def __init__(self, root: Path, *, containerd_store: bool = True) -> None:
        # Not resolved: a link on the way is refused by start/stop, not silently followed.
        self.root = fsio.absolute(root)
        # False: the classic image store, as on GitHub's ubuntu-24.04 runners (Docker 28 with
        # no daemon.json): what the docker-container builder path is tested against.
        self.containerd_store = containerd_store
        self.socket = self.root / "docker.sock"
        self.pidfile = self.root / "docker.pid"
        self.log = self.root / "dockerd.log"

    @property
    def docker_host(self) -> str:
        """The ``DOCKER_HOST`` value that reaches this engine."""
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        """Environment entries that make the docker CLI use this engine."""
        return {"DOCKER_HOST": self.docker_host}

    def running(self) -> bool:
        """True when this root's dockerd is alive and answers on its socket."""
        pid = self._pid()
        if pid is None or not _alive(pid) or not self.socket.exists():
            return False
        docker = docker_cli()
        probe = run_tool(
            [docker, "version", "--format", "{{.Server.Version}}"],
            timeout=10,
            env=self.env(),
            check=False,
        )
        return probe.returncode == 0

    def start(self, *, timeout: float = 60.0) -> PrivateEngine:
        """Start dockerd unless it already runs; return when it answers. Idempotent."""
        fsio.ensure_private_dir(self.root)
        if self.running():
            return self
        dockerd = which("dockerd")
        if dockerd is None:
            raise EngineError(
                "dockerd was not found on PATH, so no private engine can be started.",
                hint="Install Docker >= 26 (Debian trixie's docker.io), or run `make deps`.",
            )
        if len(str(self.socket)) > 100:
            raise EngineError(f"the engine root {self.root} is too long for a unix socket path.")
        for sub in ("data", "exec"):
            fsio.ensure_dir(self.root / sub)
        config = self.root / "daemon.json"
        features = {"containerd-snapshotter": self.containerd_store}
        fsio.write_text_atomic(config, json.dumps({"features": features}) + "\n")
        argv = [
            dockerd,
            "--config-file", str(config),
            "--data-root", str(self.root / "data"),
            "--exec-root", str(self.root / "exec"),
            "--pidfile", str(self.pidfile),
            "--host", self.docker_host,
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
        ]  # fmt: skip
        log = fsio.open_append(self.log)
        try:
            # spawn: a session of its own, so the engine outlives `modelseal engine start`.
            proc = spawn(argv, output=log)
        finally:
            os.close(log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EngineError(
                    f"dockerd exited with code {proc.returncode} while starting.",
                    hint=f"Its log is {self.log}:\n{_log_tail(self.log)}",
                )
            if self.socket.exists() and self.running():
                return self
            time.sleep(0.2)
        self.stop()
        raise EngineError(
            f"dockerd did not answer within {timeout:.0f} s.",
            hint=f"Its log is {self.log}:\n{_log_tail(self.log)}",
        )

    def stop(self, *, remove: bool = False, timeout: float = 30.0) -> None:
        """Stop dockerd (and the containerd it manages), unmount what it left, optionally
        remove the whole root. Safe to call when nothing runs; a root that is not this user's
        alone is refused before anything in it is read."""
        try:
            fsio.ensure_private_dir(self.root, create=False)
        except FileNotFoundError:
            return
        pid = self._pid()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        _unmount_below(self.root)
        if remove:
            # As before: what a lazy unmount has not let go of yet stays (the root is ours).
            with contextlib.suppress(OSError):
                fsio.remove(self.root)

    def _pid(self) -> int | None:
        """The PID of this root's dockerd, or None: ``docker.pid`` must be a regular file of
        ours (not a link), and the process it names must be dockerd running as us with this
        root's data directory — a PID file can name any process, killing it is what is asked."""
        try:
            fd = os.open(self.pidfile, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                return None
            raw = os.read(fd, _MAX_PIDFILE + 1)
        finally:
            os.close(fd)
        text = raw.decode("ascii", "replace").strip()
        if len(raw) > _MAX_PIDFILE or not text.isdigit() or int(text) <= 1:
            return None
        pid = int(text)
        return pid if _is_our_dockerd(pid, self.root / "data") else None


def _is_our_dockerd(pid: int, data_root: Path) -> bool:
    """Whether ``pid`` is a dockerd of this user started with ``--data-root data_root``."""
    proc = Path(f"/proc/{pid}")
    try:
        if proc.stat().st_uid != os.geteuid():
            return False
        exe = os.readlink(proc / "exe")
        with open(proc / "cmdline", "rb") as f:
            argv = f.read(64 * 1024).split(b"\0")
    except OSError:
        return False
    if os.path.basename(exe).removesuffix(" (deleted)") != "dockerd":
        return False
    want = os.fsencode(data_root)
    return any(a == b"--data-root" and b == want for a, b in itertools.pairwise(argv)) or (
        b"--data-root=" + want in argv
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        done = 0
    return done == 0


def _unmount_below(root: Path) -> None:
    """Unmount everything mounted under ``root`` (deepest first): dockerd leaves an nsfs mount
    at ``exec/netns/default`` and, if killed, overlay mounts of running containers."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    prefix = str(root) + "/"
    points = []
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        # Best effort: what stays mounted stays (the next stop tries again).
        with contextlib.suppress(ToolError):
            run_tool(["umount", "-l", point], timeout=_UMOUNT_TIMEOUT, check=False)


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "  (no log)"
    return "\n".join("  " + line for line in text.splitlines()[-lines:])


@contextmanager
def engine_session(state_dir: Path) -> Iterator[str]:
    """An engine to build with, for scripts (the demo, the benchmarks): the one ``DOCKER_HOST``
    (or the default socket) points at when it answers, else a :class:`PrivateEngine` under
    ``state_dir``, stopped and removed on exit. ``DOCKER_HOST`` points at it meanwhile; yields
    a line saying which engine it is."""
    if os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists():
        try:
            info = probe_engine()
        except Error:
            pass  # not usable for builds: start our own
        else:
            yield f"using the engine at {info.docker_host} (Docker {info.server_version})"
            return
    saved = os.environ.get("DOCKER_HOST")
    engine = PrivateEngine(state_dir).start()
    os.environ["DOCKER_HOST"] = engine.docker_host
    try:
        yield f"started a private engine: DOCKER_HOST={engine.docker_host}"
    finally:
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved
        engine.stop(remove=True)
