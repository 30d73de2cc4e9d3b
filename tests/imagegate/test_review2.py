"""Second review of issue 16's slim layers: the secret scan reads, for each model-only layer, a
slim copy without the files Trivy's secret scanner skips as binary. The claim: Trivy finds
exactly the secrets it would find in the whole layer. Each test pins one way it did not hold
(each failed before its fix), and checks the claim with real Trivy."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

from tests.support import EPOCH
from tests.support.layers import image_layout

from modelseal.imagebuild.finalize import SLIM_MIN, LayerStats, SlimLayer, clamp_tar
from modelseal.imagegate.secrets import secret_argv, write_secret_config

GITHUB = "ghp_" + "Zq8" * 12  # Trivy's github-pat rule


def _trivy() -> str:
    venv = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "trivy"
    return str(venv) if venv.exists() else "trivy"


def _layout(root: Path, layer: bytes) -> Path:
    """A one-layer OCI image layout (uncompressed layer) at ``root``."""
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    image_layout(root, {"architecture": "amd64", "os": "linux", "config": {},
                        "rootfs": {"type": "layers", "diff_ids": [diff]}}, [layer])  # fmt: skip
    return root


def _secret_files(layer: bytes, work: Path) -> set[str]:
    """The files Trivy's secret scan (the image gate's command) reports in ``layer``."""
    work.mkdir(parents=True)
    layout = _layout(work / "layout", layer)
    report = work / "report.json"
    argv = secret_argv(_trivy(), layout, work / "cache", write_secret_config(work), report)
    proc = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=300, check=False,
                          env={k: v for k, v in os.environ.items() if not k.startswith("TRIVY_")})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(report.read_text())
    return {
        str(r.get("Target"))
        for r in data.get("Results") or []
        if r.get("Class") == "secret" and r.get("Secrets")
    }


def _regular(name: bytes, data: bytes) -> bytes:
    info = tarfile.TarInfo(name.decode())
    info.size, info.mtime, info.mode, info.type = len(data), EPOCH, 0o644, tarfile.REGTYPE
    return info.tobuf(format=tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512)


def _slim(layer: bytes, tmp_path: Path) -> bytes:
    slim = SlimLayer(tmp_path / "slim.tar")
    stats = LayerStats(model_paths=("app/model",))
    out = b"".join(clamp_tar(io.BytesIO(layer), EPOCH, "L", stats, slim=slim))
    assert out == layer and stats.model_only and slim.active
    slim.close()
    return (tmp_path / "slim.tar").read_bytes()


#: A compiled Python file (binary from its first byte, over SLIM_MIN) holding a token in a
#: printable run: Trivy scans .pyc files although they are binary (allowedBinaries).
PYC = b"\x00\x0d\r\n" + b"x" * SLIM_MIN + b"\nhub_token = " + GITHUB.encode() + b"\n"


def test_review2_a_pyc_named_with_a_trailing_slash_keeps_its_secret(tmp_path: Path) -> None:
    """``SlimLayer.member`` keeps a binary file only if its *raw* member name ends in ``.pyc``;
    Trivy's walker takes ``path.Clean(hdr.Name)`` (a regular file ``app/model/k.pyc/`` is
    ``app/model/k.pyc``) and ``filepath.Ext`` of that. A base image shipped as an OCI layout with
    an uncompressed model-only layer (the finalizer patches and slims those too) hides a token
    from the secret scan this way; the whole layer shows it."""
    layer = _regular(b"app/model/k.pyc/", PYC) + bytes(1024)
    whole = _secret_files(layer, tmp_path / "whole")
    assert whole == {"/app/model/k.pyc"}, whole  # Trivy reads it as a .pyc
    slim = _secret_files(_slim(layer, tmp_path), tmp_path / "slim")
    assert slim == whole
