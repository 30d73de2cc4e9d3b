"""One pass over the built image's layers for the post-build gates modelseal runs itself.

``models-image`` needs the digests of the files under the model paths of the image
(``models.image_paths``); ``pip-audit`` needs the package metadata files under the
``site-packages`` / ``dist-packages`` directories. Each used to apply all the layers on its
own (and pip-audit then read the layers holding the metadata again), so a 2 GiB model layer was
decompressed by both, then by syft and by Trivy. :func:`image_fs` applies the layers of one platform image
once per run (:class:`modelseal.imagefs.ImageFs`, with every one of its protections), hashing the
model files while streaming (never holding them in memory) and copying the small metadata files
to a private spool directory of the run; both gates then read what they need from that one
resolved filesystem. Whichever gate asks first makes it; the other waits for it
(:class:`modelseal.pipeline.RunShared`).

What still re-reads a layer: a model path that is a symlink to a file outside the model
directories (itself a CRITICAL finding) and a metadata file pip would reach through a symlink
under another name; both are read from only the layers that hold them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from modelseal import fsio
from modelseal.errors import GateError
from modelseal.imagefs import ImageFs
from modelseal.oci import OciLayout, platform_manifests
from modelseal.pipeline import Context

if TYPE_CHECKING:
    from modelseal.imagebuild.finalize import SlimLayerFile
from modelseal.vuln.site_packages import is_metadata_file

#: The account databases the runtime user is resolved with, spooled in the same pass.
ACCOUNT_FILES = frozenset({"etc/passwd", "etc/group"})
#: Bytes of one of them that are read (a real one is a few KiB).
MAX_ACCOUNT_FILE = 1 << 20


def model_prefixes(image_paths: dict[str, str]) -> tuple[tuple[str, ...], frozenset[str]]:
    """The image directories of ``models.image_paths`` (without the leading ``/``,
    ``/``-terminated), and the paths themselves (a locked file may be mapped by itself)."""
    stripped = [v.strip("/") for v in image_paths.values()]
    return tuple(f"{p}/" for p in stripped), frozenset(stripped)


def models_image_runs(ctx: Context) -> bool:
    """Whether ``models-image`` checks the model paths in this run: the models section is
    enabled, maps model paths into the image, and the gate is selected (when the run's
    selection is unknown, :attr:`~modelseal.pipeline.RunOptions.gates` says; empty: every
    gate). Otherwise nothing leaves the model paths to it."""
    pol = ctx.policy.policy.models
    if not (pol.enabled and pol.image_paths):
        return False
    selected = ctx.shared.gates
    if selected is None and ctx.options.gates:
        selected = frozenset(ctx.options.gates)
    return selected is None or "models-image" in selected


def built_layout(ctx: Context, purpose: str) -> tuple[OciLayout, dict[str, str]]:
    """The OCI layout the build gate left and its platform manifests (platform → digest);
    :class:`GateError` "the build gate left no OCI layout ``purpose``." when it left none
    (fail closed: a post-build gate with nothing to read cannot pass)."""
    build = ctx.result("build")
    layout_dir = build.artifacts.get("oci_layout")
    manifests = platform_manifests(build.facts)
    if layout_dir is None or not manifests:
        raise GateError(f"the build gate left no OCI layout {purpose}.")
    return OciLayout(Path(layout_dir)), manifests


def slim_layers(ctx: Context) -> dict[str, SlimLayerFile]:
    """The run's slim layers (:class:`~modelseal.imagebuild.finalize.SlimLayer`, written by the
    build gate's layout finalizer for the layers that hold only model files) by the digest of
    the layer each was made from; empty when this process built nothing (e.g. the build's
    evidence came from the cache)."""
    return ctx.shared.once("slim-layers", dict)


def image_fs(ctx: Context, layout: OciLayout, digest: str) -> ImageFs:
    """The resolved filesystem of manifest ``digest`` of ``layout``, made once per run for
    every post-build gate (see the module doc)."""
    pol = ctx.policy.policy
    prefixes, exact = (
        model_prefixes(dict(pol.models.image_paths))
        if models_image_runs(ctx)
        else ((), frozenset())
    )

    def hashed(path: str) -> bool:
        return path.startswith(prefixes) or path in exact

    def keep(path: str, size: int) -> bool:
        # The image gate resolves the runtime user by name (modelseal.imagegate.user).
        return is_metadata_file(path, size) or (path in ACCOUNT_FILES and size <= MAX_ACCOUNT_FILE)

    def make() -> ImageFs:
        # A fresh private directory per pass (removed with the run's temporary directory).
        spool = Path(
            tempfile.mkdtemp(prefix="spool-", dir=fsio.ensure_dir(ctx.shared.dir or ctx.work_dir))
        )
        tap = None
        if pol.image.enabled:
            # The image gate's scan for model payloads, in this pass (the model paths are
            # models-image's when it runs, except what it does not see: see payloads.collect).
            from modelseal.imagegate.payloads import PayloadTap

            tap = PayloadTap(spool, hashed, pol.models.limits.max_inflated_bytes)
        return ImageFs.build(
            layout, digest, hash_paths=hashed if prefixes else None, keep=keep,
            spool=spool, tap=tap,
        )  # fmt: skip

    return ctx.shared.once(f"imagefs:{Path(layout.path).resolve()}:{digest}", make)
