"""A layer BuildKit takes from its cache compressed — made by another build on the same builder
(a plain `docker buildx build`), or imported with ``cache_from`` — is still one of the build's
layers: the layout finalizer clamps its timestamps and compresses it as the policy says, so the
first (warm) build and the rebuild check's cold one give the same image. Found by
benchmarks/build.py: a plain build warming the cache made `modelseal build`'s rebuild check
report "not reproducible" (the cached gzip layers kept the checkout's mtimes)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.support.layers import push_layout
from tests.support.standins import run_build

from modelseal.imagebuild.engine import PrivateEngine


@pytest.mark.engine
def test_layers_from_another_builds_cache_are_finalized_too(
    engine: PrivateEngine, busybox_base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "app" / "model").mkdir(parents=True)
    (ctx / "app" / "server.py").write_text("print('serve')\n")
    (ctx / "app" / "model" / "w.bin").write_bytes(b"\x00weights" * 100)
    for p in [ctx / "app", ctx / "app" / "server.py", ctx / "app" / "model"]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    (ctx / "app" / "model" / "w.bin").chmod(0o644)
    (ctx / "Dockerfile").write_text(
        "FROM base\nCOPY app/server.py /app/\nCOPY app/model/ /app/model/\nUSER 65534\n"
    )
    # Another build of the same files on the builder: its layers (gzip, the checkout's mtimes,
    # "now") are in the cache; BuildKit's cache keys do not hold mtimes.
    plain = subprocess.run(
        [shutil.which("docker") or "docker", "buildx", "build", "--pull=false",
         "--provenance=false", "--sbom=false", "--network", "none",
         "--build-context", f"base={busybox_base}",
         "--output", f"type=oci,dest={tmp_path / 'plain'},tar=false", str(ctx)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr[-2000:]
    policy = "version: 1\nbuild:\n  rebuild_check: always\n"
    code, gate, printed = run_build(ctx, policy, tmp_path / "out", busybox_base, capsys)
    assert code == 0 and gate is not None, printed
    assert gate["facts"]["rebuild.reproducible"] == "yes"
    assert not gate["findings"]


@pytest.mark.engine
def test_the_base_layers_of_a_registry_base_are_read_from_its_registry(
    engine: PrivateEngine, busybox_base: str, registry: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from modelseal.imagebuild.bases import classify_bases, final_root
    from modelseal.imagebuild.dockerfile import parse_dockerfile
    from modelseal.imagebuild.engine import probe_engine
    from modelseal.imagebuild.gate import BaseLayers

    layout, _, digest = busybox_base.removeprefix("oci-layout://").rpartition("@")
    name = f"{registry}/cached-layers/base"
    push_layout(busybox_base, name)
    text = f"FROM {name}@{digest} AS one\nFROM one\nCOPY x /x\n"
    df = parse_dockerfile(text, "Dockerfile")
    root = final_root(classify_bases(df, {}))
    assert root is not None and root.kind == "digest"
    counts = BaseLayers(root, {}, probe_engine())
    from modelseal.oci import OciLayout

    expected = len(OciLayout(Path(layout)).manifest(digest)["layers"])
    assert counts("linux/amd64") == expected
    # Unpinned: not read (what BuildKit resolves later may be another image).
    df = parse_dockerfile(f"FROM {name}:1\n", "Dockerfile")
    assert BaseLayers(final_root(classify_bases(df, {})), {}, probe_engine())("linux/amd64") is None
