"""What every collector of the image gate reads: one platform image of the built layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelseal.imagefs import ImageFs
from modelseal.oci import OciLayout
from modelseal.pipeline import Context
from modelseal.postbuild import image_fs


@dataclass
class ImageView:
    """One platform image: its manifest, config, and (made on first use, shared with the other
    post-build gates) resolved filesystem."""

    ctx: Context
    layout: OciLayout
    platform: str
    digest: str  # the platform image manifest's digest
    manifest: dict[str, Any]
    config: dict[str, Any]  # the image config blob (``config`` holds User, ExposedPorts, …)
    _fs: ImageFs | None = field(default=None, repr=False)

    @classmethod
    def read(cls, ctx: Context, layout: OciLayout, platform: str, digest: str) -> ImageView:
        """Read the manifest and config blobs (bounded by :meth:`OciLayout.read_json`)."""
        manifest = layout.manifest(digest)
        config_desc = manifest.get("config")
        config_digest = config_desc.get("digest") if isinstance(config_desc, dict) else None
        if not isinstance(config_digest, str):
            from modelseal.errors import GateError

            raise GateError(f"{layout.path}: manifest {digest} names no config blob.")
        return cls(ctx, layout, platform, digest, manifest, layout.read_json(config_digest))

    @property
    def fs(self) -> ImageFs:
        """The resolved filesystem (one pass over the layers per run, shared)."""
        if self._fs is None:
            self._fs = image_fs(self.ctx, self.layout, self.digest)
        return self._fs
