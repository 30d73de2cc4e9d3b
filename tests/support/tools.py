"""Real tools in tests: :func:`require` skips on a developer machine without the tool and FAILS
when ``CI`` is set, so a green CI can never hide a skipped real-tool test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support import EPOCH


def require(ok: bool, what: str) -> None:
    """Skip (developer machine) or fail (CI) when a real tool is missing."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI (run `make deps`)", pytrace=False)
    pytest.skip(f"{what} not available")


def docker_cli() -> str:
    """The docker CLI the tests drive directly."""
    return shutil.which("docker") or "docker"


def build_layout(context: Path, dest: Path) -> str:
    """Build ``context`` (FROM scratch …) into an OCI layout; returns the manifest digest."""
    meta = dest.with_suffix(".json")
    subprocess.run(
        [
            docker_cli(), "buildx", "build", "--pull=false", "--provenance=false",
            "--sbom=false", "--network", "none", "--no-cache",
            "--output", f"type=oci,dest={dest},tar=false,rewrite-timestamp=true",
            "--metadata-file", str(meta), str(context),
        ],
        check=True, capture_output=True, env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)},
    )  # fmt: skip
    return str(json.loads(meta.read_text())["containerimage.digest"])


@dataclass(frozen=True)
class CosignRunner:
    """The real cosign, run offline in a private ``home`` (``tests/publish/conftest.py``
    ``cosign`` fixture): ``runner("verify", …)`` → the completed process."""

    home: Path
    trusted_root: Path
    """A trusted root with no authorities: stands in for the TUF download."""
    env: Mapping[str, str]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``cosign ARGS`` in ``home``, its output captured, never raising on failure."""
        return subprocess.run(
            ["cosign", *args], capture_output=True, text=True, env=dict(self.env), cwd=self.home,
            timeout=120, check=False,
        )  # fmt: skip
