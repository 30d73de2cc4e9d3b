"""Finding, and when asked starting, a container engine that BuildKit can export OCI layouts from.

Two ways to get one:

* an engine that already runs (a GitHub runner, a developer's Docker): used as it is when its
  image store is containerd's; otherwise a ``docker-container`` buildx builder named
  ``modelseal`` is created on it, since the classic store refuses the OCI exporter;
* :class:`PrivateEngine`: a dockerd that modelseal starts itself (the demo and the tests), with
  the containerd snapshotter, no bridge, no iptables, and every socket and byte of state under
  one directory so that it can be stopped and removed without a trace.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelseal import fsio
from modelseal._tools import ToolResult, find_tool, run_tool, tail
from modelseal.errors import EngineError, Error, ToolError

#: The builder created on engines whose image store cannot export OCI layouts.
BUILDER_NAME = "modelseal"

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
    server_version: str
    containerd_store: bool
    buildx_version: str
    buildkit_version: str
    builder: str | None  # None: the engine's own BuildKit ("default" builder)

    def buildx_args(self) -> list[str]:
        """Arguments that select the builder for ``docker buildx build``."""
        return ["--builder", self.builder] if self.builder else []


def probe_engine(*, timeout: float = 30.0, create_builder: bool = True) -> EngineInfo:
    """Check that an engine answers and can export OCI; raise :class:`EngineError` otherwise.

    The docker CLI calls run concurrently: each costs a process start and a round trip, and a
    build waits for all of them.
    """
    docker = docker_cli()
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    with ThreadPoolExecutor(max_workers=3) as pool:
        info_f = pool.submit(
            run_tool, [docker, "info", "--format", "{{json .}}"], timeout=timeout, check=False
        )
        bx_f = pool.submit(run_tool, [docker, "buildx", "version"], timeout=timeout, check=False)
        inspect_f = pool.submit(
            run_tool, [docker, "buildx", "inspect"], timeout=timeout, check=False
        )
        info, bx, inspect = info_f.result(), bx_f.result(), inspect_f.result()
    server_version, containerd_store = _parse_info(info, host)
    if bx.returncode != 0:
        raise EngineError(
            "the docker buildx plugin is missing (`docker buildx version` failed).",
            hint="Install docker-buildx (Debian/Ubuntu: apt-get install docker-buildx).",
        )
    words = bx.stdout.split()
    buildx_version = words[1] if len(words) > 1 else bx.stdout.strip()
    builder: str | None = None
    buildkit_version = _buildkit_version(inspect.stdout)
    if not containerd_store:
        if not create_builder:
            raise EngineError(
                f"the Docker engine at {host} uses the classic image store, whose BuildKit "
                "cannot export OCI layouts.",
                hint="Enable the containerd image store, or let modelseal create its own builder.",
            )
        builder = _ensure_container_builder(docker, timeout)
        buildkit_version = _buildkit_version(
            run_tool([docker, "buildx", "inspect", builder], timeout=timeout, check=False).stdout
        )
    return EngineInfo(
        docker_host=host,
        server_version=server_version,
        containerd_store=containerd_store,
        buildx_version=buildx_version,
        buildkit_version=buildkit_version,
        builder=builder,
    )


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


def _ensure_container_builder(docker: str, timeout: float) -> str:
    probe = run_tool([docker, "buildx", "inspect", BUILDER_NAME], timeout=timeout, check=False)
    if probe.returncode != 0:
        run_tool(
            [docker, "buildx", "create", "--name", BUILDER_NAME, "--driver", "docker-container"],
            timeout=timeout,
        )
    run_tool([docker, "buildx", "inspect", "--bootstrap", BUILDER_NAME], timeout=max(timeout, 180))
    return BUILDER_NAME


def _buildkit_version(inspect_output: str) -> str:
    for line in inspect_output.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("BuildKit version", "Buildkit"):
            return value.strip()
    return "unknown"


#: A pid file is a few digits; anything longer is not dockerd's.
_MAX_PIDFILE = 32


class PrivateEngine:
    """A dockerd of modelseal's own, all of its state under ``root``.

    ``start`` and ``stop`` act as whoever runs them (root, for dockerd), on what ``root``
    holds, so ``root`` must be this user's alone: owned by the caller, not writable by group or
    others, reached without a symbolic link (:func:`modelseal.fsio.ensure_private_dir`). Nothing
    in it is followed through a link, and ``stop`` signals only the process that really is this
    root's dockerd, whatever PID ``docker.pid`` names.
    """

    def __init__(self, root: Path) -> None:
        # Not resolved: a link on the way is refused by start/stop, not silently followed.
        self.root = fsio.absolute(root)
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
        dockerd = shutil.which("dockerd")
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
        fsio.write_text_atomic(
            config, json.dumps({"features": {"containerd-snapshotter": True}}) + "\n"
        )
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
            # A session of its own: the engine outlives `modelseal engine start`, and Ctrl-C on
            # the caller's terminal must not reach it.
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
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
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


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
