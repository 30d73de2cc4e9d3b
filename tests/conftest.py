"""Session-wide fixtures: a private Docker engine, small base images as OCI layouts, a local
registry and a local Sigstore. Helpers the tests import live in :mod:`tests.support`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from tests.support import REPO, TEST_CACHE
from tests.support.tools import build_layout, require

from modelseal.imagebuild.engine import PrivateEngine
from modelseal.oci import OciLayout

if TYPE_CHECKING:
    from tests.support.sigstore_local import LocalSigstore, Service

    from modelseal.sign.trust import TrustConfig


@pytest.fixture(scope="session")
def engine() -> Iterator[PrivateEngine]:
    """A private dockerd with the containerd image store, shared by the whole session.
    DOCKER_HOST points at it for the rest of the session."""
    require(os.geteuid() == 0, "root (to start dockerd)")
    require(shutil.which("dockerd") is not None, "dockerd")
    require(
        Path("/usr/libexec/docker/cli-plugins/docker-buildx").exists()
        or shutil.which("docker-buildx") is not None,
        "docker-buildx",
    )
    root = Path(tempfile.mkdtemp(prefix="ms-eng-", dir="/tmp"))
    eng = PrivateEngine(root).start()
    saved = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = eng.docker_host
    try:
        yield eng
    finally:
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved
        eng.stop(remove=True)


@pytest.fixture(scope="session")
def busybox_base(engine: PrivateEngine, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A one-binary base (busybox-static: sh, date, touch …) as a local OCI layout;
    returns the ``oci-layout://DIR@sha256:…`` value for ``--build-context base=``."""
    busybox = Path("/bin/busybox")
    require(busybox.exists(), "busybox-static (/bin/busybox)")
    work = tmp_path_factory.mktemp("busybox-base")
    ctx = work / "ctx"
    (ctx / "rootfs" / "bin").mkdir(parents=True)
    (ctx / "rootfs" / "tmp").mkdir()
    shutil.copy2(busybox, ctx / "rootfs" / "bin" / "busybox")
    for applet in ("sh", "date", "touch", "cat", "echo", "mkdir", "ls", "rm", "cp", "mv", "chmod"):
        (ctx / "rootfs" / "bin" / applet).symlink_to("busybox")
    (ctx / "Dockerfile").write_text('FROM scratch\nCOPY rootfs/ /\nCMD ["/bin/sh"]\n')
    dest = work / "oci"
    digest = build_layout(ctx, dest)
    return f"oci-layout://{dest}@{digest}"


@pytest.fixture(scope="session")
def busybox_layout(busybox_base: str) -> tuple[OciLayout, str]:
    """:func:`busybox_base` as ``(OciLayout, manifest digest)``, for pushing it directly."""
    path, _, digest = busybox_base.removeprefix("oci-layout://").rpartition("@")
    return OciLayout(Path(path)), digest


@pytest.fixture(scope="session")
def example_base(engine: PrivateEngine) -> str:
    """The example app's Debian python3 base (mmdebstrap → OCI layout), built once and cached
    across sessions under /var/tmp (same inputs, same layout)."""
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap")
    out = TEST_CACHE / "base"
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples/base/build_base.py"),
         "--out", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway docker-registry on 127.0.0.1 (distribution 2.8); yields ``127.0.0.1:PORT``."""
    from examples.offline.registry import RegistryStartError, local_registry

    require(shutil.which("docker-registry") is not None, "docker-registry")
    try:
        with local_registry(tmp_path_factory.mktemp("registry")) as host:
            yield host
    except RegistryStartError as e:
        pytest.fail(str(e))


# --- a local Sigstore deployment (tests/support/sigstore_local.py) ------------------------
# Session-wide: OIDC issuer + Fulcio + Rekor v1 on 127.0.0.1, keys made once. The module is
# imported inside the fixtures (the types only for type checkers) so sessions that never sign do
# not pay for it.


@pytest.fixture(scope="session")
def sigstore_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSigstore]:
    """The running :class:`tests.support.sigstore_local.LocalSigstore` (its files written)."""
    from tests.support.sigstore_local import LocalSigstore

    stack = LocalSigstore()
    stack.write_files(tmp_path_factory.mktemp("sigstore"))
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="session")
def trust_config_path(sigstore_stack: LocalSigstore) -> Path:
    """The stack's ClientTrustConfig JSON (trusted root + signing config v0.2, Rekor v1):
    what ``--trust-config`` / ``KeylessSigner(load_trust_config(path))`` take."""
    assert sigstore_stack.trust_config_path is not None  # written by sigstore_stack
    return sigstore_stack.trust_config_path


@pytest.fixture(scope="session")
def trusted_root_path(sigstore_stack: LocalSigstore) -> Path:
    """The stack's trusted_root.json: ``cosign --trusted-root`` and verify-only trust."""
    assert sigstore_stack.trusted_root_path is not None  # written by sigstore_stack
    return sigstore_stack.trusted_root_path


@pytest.fixture(scope="session")
def local_trust(trust_config_path: Path) -> TrustConfig:
    """The stack's trust loaded as a :class:`modelseal.sign.trust.TrustConfig`."""
    from modelseal.sign.trust import load_trust_config

    return load_trust_config(trust_config_path)


@pytest.fixture(scope="session")
def issuer_url(sigstore_stack: LocalSigstore) -> str:
    """The local OIDC issuer URL (what the certificates name as OIDC issuer)."""
    return sigstore_stack.issuer_url


@pytest.fixture
def oidc_token(sigstore_stack: LocalSigstore) -> Callable[..., str]:
    """Factory: ``oidc_token(**claims)`` → an ES256 ID token (aud=sigstore, an e-mail identity
    ``tests.support.sigstore_local.DEFAULT_EMAIL`` unless overridden; ``None`` drops a claim)."""
    return sigstore_stack.token


@pytest.fixture
def rekor_failing(sigstore_stack: LocalSigstore) -> Iterator[Service]:
    """Rekor answers HTTP 500 to every POST during the test; ``.calls`` counts the attempts."""
    with sigstore_stack.rekor.failing(500) as rekor:
        yield rekor


@pytest.fixture
def github_ambient(
    sigstore_stack: LocalSigstore, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """A GitHub Actions job with ``id-token: write`` whose token endpoint is the local issuer
    (GITHUB_ACTIONS, ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN set); returns the claims of its tokens."""
    for name, value in sigstore_stack.github_env().items():
        monkeypatch.setenv(name, value)
    return dict(sigstore_stack.github_claims)
