"""Layer bytes for stand-in and slim-layer tests: seeded weights, USTAR layer tars, and a
one-image OCI layout around them."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from tests.support import EPOCH


def weights(seed: int, size: int, prefix: bytes = b"") -> bytes:
    """``size`` bytes that look like model weights (no text runs), the same for the same
    ``prefix`` and ``seed``: tests that compare against them rebuild them from the seed."""
    out = bytearray()
    block = hashlib.sha256(prefix + b"%d" % seed).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


def ustar(*members: tuple[str, bytes]) -> bytes:
    """A USTAR layer tar of regular files ``(name, data)`` in this order (mode 0644, mtime
    EPOCH), as Python's tar writer pads it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), EPOCH, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tar_files(data: bytes) -> dict[str, bytes]:
    """The regular files of the tar ``data``: name to content."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: (tar.extractfile(m) or io.BytesIO()).read() for m in tar if m.isfile()}


def image_layout(root: Path, config: dict[str, object], layers: list[bytes]) -> str:
    """An OCI layout at ``root`` (created fresh) of one linux/amd64 image: ``config`` as its
    config, ``layers`` as uncompressed layers in this order; returns the manifest digest."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return "sha256:" + digest

    descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": put(x),
              "size": len(x)} for x in layers]  # fmt: skip
    raw = json.dumps(config).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(raw),
                   "size": len(raw)},
        "layers": descs,
    }).encode()  # fmt: skip
    digest = put(manifest)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
         "size": len(manifest), "platform": {"os": "linux", "architecture": "amd64"}}]}))  # fmt: skip
    return digest


def push_layout(base: str, name: str) -> str:
    """Copy the image of ``base`` (``oci-layout://DIR@sha256:…``) to the registry repository
    ``name`` (``127.0.0.1:PORT/REPO``, tag ``1``), digests kept; returns ``name@sha256:…``."""
    import subprocess

    layout, _, digest = base.removeprefix("oci-layout://").rpartition("@")
    push = subprocess.run(
        ["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
         f"oci:{layout}", f"docker://{name}:1"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert push.returncode == 0, push.stderr
    return f"{name}@{digest}"
