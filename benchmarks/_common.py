"""What the benchmarks share: the repository root, the SOURCE_DATE_EPOCH they build with, timing
a command, an engine (the one DOCKER_HOST reaches, else a private one) and the example's base
image as a local OCI layout."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: SOURCE_DATE_EPOCH of every benchmarked build.
EPOCH = "1700000000"


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


@contextmanager
def engine_and_base() -> Iterator[str]:
    """Yield the ``oci-layout://…@sha256:…`` value of the example base, with an engine up;
    a private engine started here is stopped on exit."""
    sys.path.insert(0, str(REPO / "src"))
    from modelseal.engine import engine_session

    with engine_session(Path(tempfile.gettempdir()) / "modelseal-bench-engine"):
        base = subprocess.run(
            [sys.executable, str(REPO / "examples/base/build_base.py"), "--out", str(REPO / "examples/out/base")],
            capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        yield base
