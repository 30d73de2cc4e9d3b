"""What the benchmarks share: an engine (the one DOCKER_HOST reaches, else a private one) and
the example's base image as a local OCI layout."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def engine_and_base() -> Iterator[str]:
    """Yield the ``oci-layout://…@sha256:…`` value of the example base, with an engine up;
    a private engine started here is stopped on exit."""
    sys.path.insert(0, str(REPO / "src"))
    from modelseal.engine import PrivateEngine, probe_engine
    from modelseal.errors import Error

    engine = None
    try:
        probe_engine()
    except Error:
        engine = PrivateEngine(Path(tempfile.gettempdir()) / "modelseal-bench-engine").start()
        os.environ["DOCKER_HOST"] = engine.docker_host
    try:
        base = subprocess.run(
            [sys.executable, str(REPO / "examples/base/build_base.py"), "--out", str(REPO / "examples/out/base")],
            capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        yield base
    finally:
        if engine is not None:
            engine.stop(remove=True)
