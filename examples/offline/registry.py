"""A throwaway OCI registry on 127.0.0.1: Debian's ``docker-registry`` (distribution 2.8).

Used by ``make demo`` (publish target) and by the test suite::

    with local_registry(Path("/tmp/reg")) as host:   # host = "127.0.0.1:PORT"
        ...

Storage, config and log live under the given directory; the process is stopped on exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class RegistryStartError(RuntimeError):
    """docker-registry is missing or did not answer on its port."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_registry(work: Path, port: int | None = None) -> Iterator[str]:
    """Run docker-registry with its state under ``work``; yields ``127.0.0.1:PORT``."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RegistryStartError("docker-registry is not installed (run `make deps`)")
    work.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = work / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log_path = work / "registry.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        host = f"127.0.0.1:{port}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with opener.open(f"http://{host}/v2/", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RegistryStartError(
                        f"docker-registry did not start: {log_path.read_text()[-2000:]}"
                    )
                time.sleep(0.1)
            yield host
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
