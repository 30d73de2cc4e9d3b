"""Crafted OCI layouts: layer tars with exactly the members a test names, in its order."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from modelseal.oci import OciLayout


@dataclass(frozen=True)
class M:
    """One tar member: ``kind`` f(ile), d(ir), l (symlink), h(ardlink), p (fifo), c (char dev)."""

    name: str
    kind: str = "f"
    data: bytes = b""
    link: str = ""


def layer(*members: M, gz: bool = False) -> bytes:
    """A layer tar holding ``members`` in this order, names exactly as given."""
    buf = io.BytesIO()
    types = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE,
             "h": tarfile.LNKTYPE, "p": tarfile.FIFOTYPE, "c": tarfile.CHRTYPE}  # fmt: skip
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = types[m.kind]
            info.linkname = m.link
            info.mode = 0o755 if m.kind == "d" else 0o644
            info.size = len(m.data) if m.kind == "f" else 0
            tar.addfile(info, io.BytesIO(m.data) if m.kind == "f" else None)
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


def make_layout(
    root: Path, layers: list[bytes], digests: list[str] | None = None
) -> tuple[OciLayout, str]:
    """An OCI layout at ``root`` with one manifest over ``layers`` (``digests`` overrides the
    digests the manifest names); returns the layout and the manifest digest."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    named = [put(x) for x in layers]
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(x)}
            for d, x in zip(digests or named, layers, strict=True)
        ],
    }).encode()  # fmt: skip
    digest = put(manifest)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": []}))
    return OciLayout(root), digest
