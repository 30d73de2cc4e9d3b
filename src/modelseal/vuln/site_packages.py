"""The Python packages installed in a built image, as the pip-audit gate audits them.

Extracts the package metadata (``*.dist-info`` / ``*.egg-info`` under any ``site-packages`` or
``dist-packages`` directory, after the layers' whiteouts, symlinks followed inside the image as
pip would) into a directory per image and reads each distribution's name and version; dumps and
reloads that extraction for the evidence cache. Running pip-audit on it is
:mod:`modelseal.vuln.pip_audit`.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from modelseal import fsio
from modelseal.errors import GateError
from modelseal.imagefs import ImageFs, printable
from modelseal.oci import OciLayout

#: Bytes of one METADATA / PKG-INFO file read from an image.
MAX_METADATA_BYTES = 16 << 20

_SITE_DIRS = ("site-packages", "dist-packages")
_META_SUFFIXES = (".dist-info", ".egg-info")


@dataclass(frozen=True)
class InstalledPackage:
    """A distribution's metadata as found in the image."""

    name: str
    version: str
    site_dir: str  # image path, no leading "/"
    meta_path: str  # the .dist-info / .egg-info path in the image, no leading "/"


def _meta_index(parts: list[str]) -> int | None:
    """Index of the metadata dir/file segment when ``parts`` is at or under
    ``…/site-packages/NAME.dist-info``."""
    for i in range(len(parts) - 1):
        if parts[i] in _SITE_DIRS and parts[i + 1].endswith(_META_SUFFIXES):
            return i + 1
    return None


def is_metadata_file(path: str, size: int) -> bool:
    """Whether an image file (path without the leading ``/``, size) may be a distribution's
    metadata file: ``NAME.dist-info/METADATA``, ``NAME.egg-info/PKG-INFO`` or a single-file
    ``NAME.egg-info``, at most :data:`MAX_METADATA_BYTES`. Wherever it is (a ``.dist-info``
    reached through a symlink lies outside ``site-packages``): the files the shared pass over
    the layers keeps for :func:`packages_from` (:mod:`modelseal.postbuild`)."""
    if size > MAX_METADATA_BYTES:
        return False
    parent, _, name = path.rpartition("/")
    if name.endswith(".egg-info"):
        return True
    return (name == "METADATA" and parent.endswith(".dist-info")) or (
        name == "PKG-INFO" and parent.endswith(".egg-info")
    )


def extract_packages(layout: OciLayout, manifest_digest: str, root: Path) -> list[InstalledPackage]:
    """Extract the package metadata of one image into ``root`` (image paths kept) and read each
    distribution's name and version (:func:`packages_from`), reading each layer once."""
    with fsio.private_temp_dir("modelseal-spool-") as spool:
        fs = ImageFs.build(layout, manifest_digest, keep=is_metadata_file, spool=Path(spool))
        return packages_from(fs, root)


def packages_from(fs: ImageFs, root: Path) -> list[InstalledPackage]:
    """Extract the package metadata of the image ``fs`` into ``root`` (image paths kept) and
    read each distribution's name and version; unreadable metadata is an error naming the path.

    The image is read as a container sees it (:class:`ImageFs`): what a later layer deleted is
    gone, and a metadata path that is a symlink is followed inside the image, as pip would."""
    fsio.ensure_dir(root)
    copies: dict[str, list[str]] = {}  # metadata file in the image → its paths under root
    metas: list[tuple[str, str]] = []  # (metadata dir/file, its metadata file), image paths
    for e in fs.walk():
        parts = e.path.split("/")
        if _meta_index(parts) != len(parts) - 1:
            continue
        meta_file, local = _metadata_file(fs, e.path)
        copies.setdefault(meta_file, []).append(local)
        metas.append((e.path, local))
    fs.extract({image: root / locals_[0] for image, locals_ in copies.items()})
    for locals_ in copies.values():
        for other in locals_[1:]:
            (root / other).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / locals_[0], root / other, follow_symlinks=False)
    packages: list[InstalledPackage] = []
    for meta, local in sorted(metas):
        text = (root / local).read_text(errors="replace")
        headers = HeaderParser().parsestr(text)
        name, version = headers.get("Name"), headers.get("Version")
        if not name or not version:
            raise GateError(
                f"/{printable(local)} in the image lacks a Name or Version header: the package cannot be "
                "audited."
            )
        site_dir = meta.rpartition("/")[0]
        packages.append(InstalledPackage(name.strip(), version.strip(), site_dir, meta))
    return packages


def dump_extraction(packages: list[InstalledPackage], root: Path) -> dict[str, Any]:
    """What :func:`extract_packages` found and wrote under ``root``, JSON-ready (for the
    evidence cache): the packages, and each extracted file's bytes (base64)."""
    files: dict[str, str] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            files[path.relative_to(root).as_posix()] = base64.b64encode(path.read_bytes()).decode(
                "ascii"
            )
    return {"packages": [dataclasses.asdict(p) for p in packages], "files": files}


def load_extraction(data: Any, root: Path) -> list[InstalledPackage]:
    """Inverse of :func:`dump_extraction`: checks the whole entry (an untrusted cache file),
    then writes its files under the empty ``root``; ValueError/TypeError/KeyError when the
    entry cannot be trusted."""
    packages = [
        InstalledPackage(**{k: _str(p[k]) for k in ("name", "version", "site_dir", "meta_path")})
        for p in data["packages"]
    ]
    files: dict[str, bytes] = {}
    for name, b64 in dict(data["files"]).items():
        parts = _str(name).split("/")
        if any(part in ("", ".", "..") for part in parts) or "\0" in name:
            raise ValueError(f"extracted file name {name!r} is not a plain relative path")
        if not any(part in _SITE_DIRS for part in parts):
            raise ValueError(f"extracted file {name!r} is not below a site-packages directory")
        content = base64.b64decode(_str(b64), validate=True)
        if len(content) > MAX_METADATA_BYTES:
            raise ValueError(f"extracted file {name!r} is larger than {MAX_METADATA_BYTES} bytes")
        files[name] = content
    for p in packages:
        if not (
            p.meta_path.startswith(p.site_dir + "/") and p.site_dir.split("/")[-1] in _SITE_DIRS
        ):
            raise ValueError(f"package {p.name!r} is not in a site-packages directory")
    fsio.ensure_dir(root)
    for name, content in files.items():
        fsio.write_bytes_atomic(root / name, content)
    return packages


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _metadata_file(fs: ImageFs, meta: str) -> tuple[str, str]:
    """Where the metadata of a ``*.dist-info`` / ``*.egg-info`` entry is: the file's image path
    (symlinks followed inside the image, as pip would) and its path as extracted; a GateError
    when pip would find none (it would skip the package, so it could not be audited)."""
    r = fs.resolve(meta)
    kind = r.entry.kind if r.entry is not None else None
    if kind == "file" and meta.endswith(".egg-info"):
        found, local = r, meta  # distutils' single-file PKG-INFO
    elif kind == "dir":
        name = "METADATA" if meta.endswith(".dist-info") else "PKG-INFO"
        found, local = fs.resolve(f"{r.resolved}/{name}"), f"{meta}/{name}"
    else:  # a .dist-info that is not a directory, a dangling or looping symlink …
        found, local = dataclasses.replace(r, entry=None), meta
    if found.entry is None or found.entry.kind != "file":
        what = found.problem or (
            found.entry.describe() if found.entry else r.entry.describe() if r.entry else "missing"
        )
        raise GateError(
            f"/{printable(meta)} in the image has no readable metadata file "
            f"(/{printable(found.resolved)}: {what}): "
            "pip-audit would skip this package, so it cannot be audited."
        )
    if found.entry.size > MAX_METADATA_BYTES:
        raise GateError(
            f"/{printable(found.resolved)} in the image is larger than {MAX_METADATA_BYTES} bytes; it is "
            "not read as package metadata."
        )
    return found.resolved, local
