"""What the benchmarks share: the repository root, the SOURCE_DATE_EPOCH they build with, timing
a command, an engine (the one DOCKER_HOST reaches, else a private one) and the example's base
image as a local OCI layout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
#: SOURCE_DATE_EPOCH of every benchmarked build.
EPOCH = "1700000000"


def count_layer_opens() -> dict[str, int]:
    """How often this process opens (decompresses) each layer blob, by the blob's first 12
    hex digits: wraps ``modelseal.imagefs.open_layer`` (for the measured ``--child``
    processes only; ``src`` must be on ``sys.path``)."""
    from modelseal import imagefs

    opened: dict[str, int] = {}
    real = imagefs.open_layer

    def counting(path: Path, media: str) -> Any:
        opened[Path(path).name[:12]] = opened.get(Path(path).name[:12], 0) + 1
        return real(path, media)

    imagefs.open_layer = counting  # type: ignore[assignment]
    return opened


def ensure_trivy_db(cache_dir: Path) -> None:
    """Write the offline example's Trivy database into ``cache_dir`` unless it is there."""
    if not (cache_dir / "db" / "metadata.json").exists():
        subprocess.run(
            [sys.executable, str(REPO / "examples/offline/trivydb.py"), "--cache-dir",
             str(cache_dir)], capture_output=True, text=True, check=True,
        )  # fmt: skip


def trivy_input(layout: Any, manifest: str, work: Path) -> tuple[str, Path]:
    """The trivy to run (the one in .venv/bin, else PATH's) and a fresh one-manifest layout of
    ``manifest`` under ``work / "trivy-input"`` for it to scan, as the trivy gate makes."""
    import shutil

    from modelseal.vuln.trivy import single_manifest_layout

    trivy = shutil.which("trivy", path=str(REPO / ".venv" / "bin")) or "trivy"
    shutil.rmtree(work / "trivy-input", ignore_errors=True)
    return trivy, single_manifest_layout(layout, manifest, work / "trivy-input")


def timed(argv: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    """Seconds ``argv`` took; exits the benchmark when its exit code is not in ``ok``."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in ok:
        sys.exit(
            f"benchmark command failed ({proc.returncode}): {' '.join(argv)}\n"
            f"{proc.stderr[-2000:]}{proc.stdout[-1000:]}"
        )
    return elapsed


# A fresh, small process that runs the measured command as its child and writes the child's
# ru_maxrss. Linux folds the resident memory a process had when it called exec into its peak
# (ru_maxrss is a high-water mark kept across exec), so a command started straight from a big
# process (pytest at 500 MiB, say) would be charged that process's memory.
_LAUNCHER = """
import os, signal, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
if os.WIFSIGNALED(status):
    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(os.getpid(), os.WTERMSIG(status))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_peak(
    argv: list[str], *, timeout: float, env: dict[str, str] | None = None, stdout: object = None,
    stderr: object = None,
) -> tuple[int, float, float]:
    """Run ``argv``; its exit code (negative: the signal), wall seconds and peak RSS in MiB —
    its own, measured from a small launcher so this process's memory is not counted. Killed
    (with its launcher's process group) after ``timeout`` seconds."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _LAUNCHER, rss.name, *argv],
            env=env, stdout=stdout, stderr=stderr, start_new_session=True,  # type: ignore[arg-type]
        )  # fmt: skip
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
        seconds = time.monotonic() - t0
        text = rss.read().strip()
    return code, seconds, (int(text) / 1024 if text else 0.0)


@contextmanager
def engine_and_base() -> Iterator[str]:
    """Yield the ``oci-layout://…@sha256:…`` value of the example base, with an engine up;
    a private engine started here is stopped on exit."""
    sys.path.insert(0, str(REPO / "src"))
    from modelseal.imagebuild.engine import engine_session

    with engine_session(Path(tempfile.gettempdir()) / "modelseal-bench-engine"):
        base = subprocess.run(
            [sys.executable, str(REPO / "examples/base/build_base.py"), "--out", str(REPO / "examples/out/base")],
            capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        yield base
