"""Fixtures for the publish tests: the real cosign 2.5 offline and a key pair (the statements a
run attaches are :func:`tests.support.statements.statements`)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from tests.support.tools import CosignRunner, require

from modelseal.sign.key import generate_ephemeral_key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An ephemeral P-256 key pair: ``(private PEM, public PEM)`` paths."""
    return generate_ephemeral_key(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def cosign(tmp_path: Path) -> CosignRunner:
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
    return CosignRunner(home, trusted_root, env)
