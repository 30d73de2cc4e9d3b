"""What syft and Trivy scan: the built image without the layers that hold only model files.

syft skips the model directories of ``models.image_paths`` (its ``--exclude``) when the
``models-image`` gate checks them — that gate hashes every file there against the models lock
and reports anything else as a finding — yet syft, and Trivy, still decompress each such layer
and copy it to a temporary file before they can skip it: seconds per GiB of weights. The layout
finalizer (:mod:`modelseal.imagebuild.finalize`) already reads every header of the layers the
build added and records, per platform, the layers whose entries are all below a model path (or
directories on the way to one) (:data:`~modelseal.imagebuild.finalize.MODEL_LAYERS_FACT`).
:func:`scan_layout` gives the scanners the image without those layers.

Why that loses nothing: such a layer adds files only below the model paths, deletes only there
(a whiteout elsewhere is not "below a model path"), and its directories on the way to a model
path can at most hide a file a lower layer had at that very path — so the view can make a
scanner see *more* than the image holds, never less. The view's other layers are the image's
own blobs (hard-linked, not copied: ``dest`` must be on the layout's filesystem, else the
scanners get the whole image), so every layer digest a scanner reports is the image's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from modelseal import fsio
from modelseal.errors import GateError
from modelseal.imagebuild.finalize import MODEL_LAYERS_FACT, SlimLayerFile
from modelseal.oci import OciLayout
from modelseal.pipeline import Context


def skipped_layers(ctx: Context, platform: str) -> tuple[str, ...]:
    """The layers of ``platform``'s image a scanner may skip: those the build gate found to hold
    only model files, when the ``models-image`` gate checks the model paths in this run."""
    from modelseal.postbuild import models_image_runs

    if not models_image_runs(ctx):
        return ()
    value = ctx.result("build").facts.get(MODEL_LAYERS_FACT + platform, "")
    return tuple(d for d in value.split(",") if d)


def scan_layout(
    layout: OciLayout, digest: str, dest: Path, *, skip: Collection[str] = (),
    platform: str | None = None, replace: Mapping[str, SlimLayerFile] | None = None,
) -> Path | None:  # fmt: skip
    """An OCI layout at ``dest`` (made fresh) listing one image: manifest ``digest`` of
    ``layout`` without the layers in ``skip`` (the config's ``rootfs.diff_ids`` and layer
    history trimmed to match), its layers the image's own blob files (hard links); None when
    they cannot be linked there (``dest`` on another filesystem). A layer in ``replace`` is
    given as that uncompressed tar instead (a slim layer: the secret scan's)."""
    replace = replace or {}
    manifest = layout.manifest(digest)
    layers = manifest.get("layers")
    config_desc = manifest.get("config")
    if not isinstance(layers, list) or not isinstance(config_desc, dict):
        raise GateError(f"the manifest {digest} of {layout.path} has no layers or config.")
    config = layout.read_json(str(config_desc.get("digest")))
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
        raise GateError(f"the config of manifest {digest} does not list one diff_id per layer.")
    keep = [i for i, d in enumerate(layers) if isinstance(d, dict) and d.get("digest") not in skip]
    fsio.remove(dest)
    blobs = fsio.ensure_dir(dest / "blobs" / "sha256")
    new_layers: list[Any] = []
    new_diffs: list[Any] = []
    for i in keep:
        slim = replace.get(str(layers[i]["digest"]))
        src = slim.path if slim is not None else layout.blob(str(layers[i]["digest"]))
        name = slim.digest.removeprefix("sha256:") if slim is not None else src.name
        # Hard links: Trivy refuses a blob that is a symbolic link, and a copy could be
        # gigabytes. Another filesystem: no view (the caller scans the whole image).
        try:
            if not (blobs / name).exists():
                os.link(src, blobs / name, follow_symlinks=False)
        except OSError:
            fsio.remove(dest)
            return None
        if slim is None:
            new_layers.append(layers[i])
            new_diffs.append(diff_ids[i])
        else:
            new_layers.append(slim.descriptor())
            new_diffs.append(slim.digest)
    new_config: dict[str, Any] = {**config, "rootfs": {**rootfs, "diff_ids": new_diffs}}  # type: ignore[dict-item]
    history = config.get("history")
    if isinstance(history, list):
        filled = [h for h in history if isinstance(h, dict) and not h.get("empty_layer")]
        if len(filled) == len(layers):
            dropped = {id(filled[i]) for i in range(len(layers)) if i not in keep}
            new_config["history"] = [h for h in history if id(h) not in dropped]
    config_blob = _put(blobs, new_config)
    new_manifest = {
        **manifest,
        "config": {**config_desc, "digest": config_blob[0], "size": config_blob[1]},
        "layers": new_layers,
    }
    top = _put(blobs, new_manifest)
    media = str(manifest.get("mediaType") or "application/vnd.oci.image.manifest.v1+json")
    desc: dict[str, Any] = {"mediaType": media, "digest": top[0], "size": top[1]}
    if platform and platform.count("/") in (1, 2):
        parts = platform.split("/")
        desc["platform"] = {"os": parts[0], "architecture": parts[1]} | (
            {"variant": parts[2]} if len(parts) == 3 else {}
        )
    fsio.write_text_atomic(dest / "oci-layout", '{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [desc],
    }
    fsio.write_text_atomic(dest / "index.json", json.dumps(index))
    return dest


def _put(blobs: Path, data: Any) -> tuple[str, int]:
    raw = json.dumps(data, separators=(",", ":")).encode()
    hexd = hashlib.sha256(raw).hexdigest()
    fsio.write_bytes_atomic(blobs / hexd, raw, mode=0o644)
    return "sha256:" + hexd, len(raw)
