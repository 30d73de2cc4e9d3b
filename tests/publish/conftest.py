"""Fixtures for the publish tests: the real cosign 2.5 offline, a key pair, and the three
statements a run attaches (:func:`statements`, importable from ``tests.publish.conftest``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.tools import require

from modelseal.sign.key import generate_ephemeral_key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An ephemeral P-256 key pair: ``(private PEM, public PEM)`` paths."""
    return generate_ephemeral_key(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def cosign(tmp_path: Path) -> Iterator[Any]:
    """Runs cosign 2.5 offline: proxies point nowhere except for the loopback registry, HOME is
    private, and a trusted root with no authorities stands in for the TUF download."""
    require(shutil.which("cosign") is not None, "cosign")
    home = tmp_path / "cosign-home"
    home.mkdir()
    trusted_root = home / "trusted_root.json"
    trusted_root.write_text(
        json.dumps(
            {
                "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                "tlogs": [], "certificateAuthorities": [], "ctlogs": [], "timestampAuthorities": [],
            }
        )
    )  # fmt: skip
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
        "COSIGN_PASSWORD": "interop-test-pw",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["cosign", *args], capture_output=True, text=True, env=env, cwd=home, timeout=120, check=False
        )  # fmt: skip

    run.home = home  # type: ignore[attr-defined]
    run.trusted_root = trusted_root  # type: ignore[attr-defined]
    yield run
