"""An image's filesystem as a container runtime assembles it from the layers.

:class:`ImageFs` applies an image's layers in order, streaming each tar once, the way the
overlay runtimes (containerd's overlayfs snapshotter, Docker's overlay2) do: member names are
cleaned lexically (``/app//x``, ``./app/x``, ``app/y/../x`` are ``app/x``), ``.wh.NAME`` deletes
``NAME``, ``.wh..wh..opq`` hides what lower layers put under a directory, an entry replacing a
directory with a file or a symlink deletes what was below it, a directory over a directory keeps
the children. Lookups resolve symlinks inside the image root (``/`` and ``..`` stop at the image
root, as in a container), never on the host: nothing of the image is ever written or followed on
the host while the view is built.

Where runtimes disagree, or refuse, the image is refused (:class:`GateError`), never guessed:
a name whose ``..`` climbs out of the root, an entry written below a symlink (overlayfs puts it in
a new directory, a copying snapshotter follows the link), an entry below a file, a whiteout of
what the same layer wrote, a hardlink to a file of a lower layer.

Every input is bounded: layers, members, path and name lengths, symlink hops. File contents are
hashed while streaming for the paths a caller selects (``hash_paths``), and small files a caller
selects (``keep``) are copied while streaming into a private spool directory, so that the
post-build gates together decompress each layer once (:mod:`modelseal.postbuild`); a ``tap``
sees the first bytes of every regular member as it streams, and may take its whole content (the
image gate's scan for model payloads anywhere in the image). Anything else
is read later, on request, by re-reading only the layers that hold it
(:meth:`ImageFs.hash_files`, :meth:`ImageFs.extract`); :attr:`ImageFs.reads` counts how often
each layer was opened.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import os
import shutil
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from modelseal.errors import GateError
from modelseal.oci import (
    DIGEST_RE,
    OciLayout,
    member_chunks,
    open_layer,
    read_to_end,
    stream_tar,
)

#: Layers one image may have (overlayfs mounts at most 500 lower directories).
MAX_LAYERS = 500
#: Tar members over all layers of one image.
MAX_MEMBERS = 1_000_000
#: Bytes of a member name or a link target (Linux PATH_MAX).
MAX_PATH = 4096
#: Bytes of one path component (Linux NAME_MAX).
MAX_NAME = 255
#: Bytes of one pax or GNU long-name header.
MAX_HEADER = 1 << 20
#: Symlinks one lookup may follow (Linux MAXSYMLINKS).
MAX_SYMLINK_HOPS = 40
#: Bytes of all the files one image may copy to its spool (``keep``); past it, files are read
#: again on request instead.
MAX_KEPT_BYTES = 1 << 30
#: Files one image may copy to its spool.
MAX_KEPT_FILES = 100_000

_CHUNK = 1 << 20
_OPAQUE = ".wh..wh..opq"
_WHITEOUT = ".wh."
_ROOT_LAYER = -1


class MemberSink(Protocol):
    """What receives a member's content from :class:`MemberTap` (an open file, or anything
    that looks at the bytes as they stream: the image gate keeps a rolling tail)."""

    def write(self, data: bytes, /) -> object:
        """Take the next bytes."""

    def close(self) -> None:
        """The content ended (or the read failed)."""


class MemberTap(Protocol):
    """What :meth:`ImageFs.build` shows every regular member (hardlinks aside) as it streams."""

    def member(
        self, layer: int, ordinal: int, path: str, size: int, head: bytes
    ) -> MemberSink | None:
        """``head``: the first bytes of the content (up to 1 MiB, all of it when smaller), read
        once with the stream. Returns a sink that then receives the whole content (head
        included; build closes it), or None. Not called for empty files."""

    def hashed(self, layer: int, ordinal: int, sha256: str) -> None:
        """The SHA-256 of a member ``hash_paths`` selected, once it was read whole."""


class _Node:
    """A mutable tree node while layers are applied (the public values are :class:`FsEntry`)."""

    __slots__ = ("children", "gid", "kind", "layer", "link", "member", "mode", "opaque", "peers",
                 "sha256", "size", "special", "spool", "touched", "uid")  # fmt: skip

    def __init__(
        self, kind: str, layer: int, *, mode: int = 0o755, member: int = -1, size: int = 0,
        link: str = "", special: str = "", sha256: str | None = None, uid: int = 0, gid: int = 0,
    ) -> None:  # fmt: skip
        self.kind = kind
        self.mode = mode
        self.uid = uid  # numeric owner, as the layer stores it (runtimes ignore uname/gname)
        self.gid = gid
        self.layer = layer  # the layer whose member holds the content
        self.member = member  # that member's ordinal in its layer
        self.size = size
        self.link = link
        self.special = special
        self.sha256 = sha256
        self.spool: Path | None = None  # a copy of the content, kept while streaming
        self.touched = layer  # the last layer that wrote this node or something below it
        self.opaque = _ROOT_LAYER  # the last layer whose opaque whiteout pruned below it
        self.children: dict[str, _Node] = {}
        # The nodes of one inode (hardlinks of one layer), this one included; None: only this.
        self.peers: list[_Node] | None = None


@dataclass(frozen=True)
class FsEntry:
    """One path of the image's filesystem."""

    path: str  # without leading "/"; "" is the root
    kind: str  # "file", "dir", "symlink", "special"
    mode: int
    size: int
    link: str  # a symlink's target, as stored
    special: str  # for "special": "fifo", "character device", "block device", …
    sha256: str | None  # a file's content digest once hashed, else None
    uid: int = 0  # numeric owner and group, as the layer that wrote the entry stores them
    gid: int = 0
    layer: int = -1  # index (bottom first) of the layer that wrote the entry (a directory: that
    # last changed its mode or owner); -1: the root

    def describe(self) -> str:
        """``file``, ``directory``, ``symlink to X``, ``fifo`` …: for messages."""
        if self.kind == "symlink":
            return f"symlink to {printable(self.link)}"
        if self.kind == "special":
            return self.special
        return "directory" if self.kind == "dir" else "file"


@dataclass(frozen=True)
class Resolution:
    """Where a path leads inside the image, following symlinks as the kernel would."""

    path: str  # as asked
    entry: FsEntry | None  # what it leads to; None when ``problem`` says why not
    resolved: str  # the physical path reached (without leading "/")
    symlinks: tuple[tuple[str, str], ...]  # (symlink path, target) crossed, in order
    problem: str  # "", "missing", "not a directory", "too many symlinks"


class ImageFs:
    """The resolved filesystem of one image manifest of an OCI layout (see the module doc)."""

    def __init__(
        self, layout: OciLayout, layers: list[tuple[str, str]], spool: Path | None = None
    ) -> None:
        self.layout = layout
        self.layers = layers  # (digest, media type), bottom first
        self._root = _Node("dir", _ROOT_LAYER)
        self._members = 0
        self._spool = spool
        self._kept = (0, 0)  # files, bytes copied to the spool
        #: How many times each layer (by index) was opened and decompressed.
        self.reads: collections.Counter[int] = collections.Counter()
        #: The ``tap`` given to :meth:`build`, for its owner to read its results.
        self.tap: MemberTap | None = None

    @classmethod
    def build(
        cls,
        layout: OciLayout,
        manifest_digest: str,
        *,
        hash_paths: Callable[[str], bool] | None = None,
        keep: Callable[[str, int], bool] | None = None,
        spool: Path | None = None,
        tap: MemberTap | None = None,
    ) -> ImageFs:
        """Apply the layers of ``manifest_digest``, each read once; regular files whose image
        path ``hash_paths`` selects are hashed on the way (others on request), and those that
        ``keep`` selects by path and size are copied into the directory ``spool`` (private,
        empty; the caller removes it), within :data:`MAX_KEPT_FILES` / :data:`MAX_KEPT_BYTES`,
        so that :meth:`extract` needs no second read. ``tap`` sees the start of every regular
        member, hidden by a later layer or not (:class:`MemberTap`), in the same read."""
        if keep is not None and spool is None:
            raise ValueError("keep needs a spool directory")
        manifest = layout.manifest(manifest_digest)
        raw = manifest.get("layers")
        if not isinstance(raw, list):
            raise GateError(f"{layout.path}: manifest {manifest_digest} lists no layers.")
        if len(raw) > MAX_LAYERS:
            raise GateError(
                f"{layout.path}: manifest {manifest_digest} has {len(raw)} layers; at most "
                f"{MAX_LAYERS} are read."
            )
        layers = []
        for i, desc in enumerate(raw):
            digest = desc.get("digest") if isinstance(desc, dict) else None
            if not isinstance(digest, str) or not DIGEST_RE.match(digest):
                raise GateError(
                    f"{layout.path}: manifest {manifest_digest} layer {i + 1} has no valid "
                    f"sha256 digest ({digest!r})."
                )
            layers.append((digest, str(desc.get("mediaType", ""))))
        fs = cls(layout, layers, spool)
        fs.tap = tap
        for i in range(len(layers)):
            for ordinal, member, tar in fs._stream(i):
                fs._members += 1
                if fs._members > MAX_MEMBERS:
                    raise GateError(
                        f"{layout.path}: image {manifest_digest} has more than {MAX_MEMBERS} "
                        "layer members; it is not read further."
                    )
                fs._apply(i, ordinal, member, tar, hash_paths, keep)
        return fs

    # -- reading the layers ------------------------------------------------------------------

    def _where(self, layer: int, name: str = "") -> str:
        digest = self.layers[layer][0]
        return f"layer {layer + 1} ({digest[:19]}…)" + (f", member {name!r}" if name else "")

    def _stream(self, layer: int) -> Iterator[tuple[int, tarfile.TarInfo, tarfile.TarFile]]:
        """A layer's members as ``(ordinal, member, tar)``; a member's content can be read
        (:meth:`_chunks`) until the next one is asked for. Unreadable data is a GateError."""
        digest, media = self.layers[layer]
        self.reads[layer] += 1
        with self._reading(layer):
            stream = open_layer(self.layout.blob(digest), media)
        with stream:
            with self._reading(layer):
                tar = stream_tar(
                    stream, tarinfo=_BoundedTarInfo, encoding="utf-8", errors="surrogateescape"
                )
            with tar:
                for ordinal in itertools.count():
                    with self._reading(layer):
                        member = tar.next()
                    if member is None:
                        with self._reading(layer):
                            read_to_end(stream)
                        return
                    # tarfile would keep every TarInfo in memory (typeshed omits the list).
                    tar.members.clear()  # type: ignore[attr-defined]
                    yield ordinal, member, tar

    @contextmanager
    def _reading(self, layer: int) -> Iterator[None]:
        try:
            yield
        except (tarfile.TarError, OSError, EOFError, zlib.error, UnicodeError) as e:
            raise GateError(
                f"{self._where(layer)} of {self.layout.path} is unreadable: {e}."
            ) from None

    def _chunks(self, layer: int, tar: tarfile.TarFile, member: tarfile.TarInfo) -> Iterator[bytes]:
        """A regular member's content, 1 MiB at a time (the last chunk shorter)."""
        chunks = member_chunks(tar, member, _CHUNK)
        while True:
            with self._reading(layer):
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk

    def _apply(
        self,
        layer: int,
        ordinal: int,
        member: tarfile.TarInfo,
        tar: tarfile.TarFile,
        hash_paths: Callable[[str], bool] | None,
        keep: Callable[[str, int], bool] | None,
    ) -> None:
        parts = self._clean(layer, member.name, member.name)
        if not parts:
            return  # the root itself: runtimes skip it
        *above, base = parts
        parent = self._parent(layer, above, member.name)
        if base == _OPAQUE:
            self._prune(parent, layer)
            return
        if base.startswith(_WHITEOUT):
            gone = parent.children.get(base[len(_WHITEOUT) :])
            if gone is not None and gone.touched == layer:
                raise GateError(
                    f"{self._where(layer, member.name)} deletes what the same layer writes; "
                    "runtimes disagree on the result (the OCI spec keeps it, Docker removes "
                    "it), so the image is refused."
                )
            parent.children.pop(base[len(_WHITEOUT) :], None)
            return
        existing = parent.children.get(base)
        if member.isdir():
            if existing is not None and existing.kind == "dir":
                if (existing.mode, existing.uid, existing.gid) != (member.mode, member.uid,
                                                                   member.gid):  # fmt: skip
                    existing.layer = layer  # the layer that last changed its metadata
                existing.mode = member.mode
                existing.uid, existing.gid = member.uid, member.gid
                existing.touched = layer
                return
            parent.children[base] = _Node("dir", layer, mode=member.mode, member=ordinal,
                                          uid=member.uid, gid=member.gid)  # fmt: skip
            return
        node = self._leaf(layer, ordinal, member, parts)
        if node.kind == "file" and not member.islnk():
            path = "/".join(parts)
            digest = hash_paths is not None and hash_paths(path)
            copy = keep is not None and self._may_keep(node.size) and keep(path, node.size)
            if digest or copy or (self.tap is not None and node.size):
                self._read_member(layer, ordinal, tar, member, node, digest, copy, path)
        parent.children[base] = node

    def _may_keep(self, size: int) -> bool:
        files, size_sum = self._kept
        return files < MAX_KEPT_FILES and size_sum + size <= MAX_KEPT_BYTES

    def _read_member(
        self, layer: int, ordinal: int, tar: tarfile.TarFile, member: tarfile.TarInfo,
        node: _Node, digest: bool, copy: bool, path: str,
    ) -> None:  # fmt: skip
        """Hash and/or copy one member's content, and show its start to the tap, in one pass
        over it (only the first chunk when nothing but the tap wants it)."""
        h = hashlib.sha256() if digest else None
        sinks: list[MemberSink] = []
        if copy:
            assert self._spool is not None
            dest = self._spool / f"{layer}-{ordinal}"
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            sinks.append(os.fdopen(fd, "wb"))
            node.spool = dest
            files, size_sum = self._kept
            self._kept = (files + 1, size_sum + node.size)
        try:
            for k, chunk in enumerate(self._chunks(layer, tar, member)):
                if k == 0 and self.tap is not None:
                    tapped = self.tap.member(layer, ordinal, path, node.size, chunk)
                    if tapped is not None:
                        sinks.append(tapped)
                    elif h is None and not sinks:
                        return  # the rest is skipped with the stream, as for any member
                if h is not None:
                    h.update(chunk)
                for sink in sinks:
                    sink.write(chunk)
        finally:
            for sink in sinks:
                sink.close()
        if h is not None:
            node.sha256 = h.hexdigest()
            if self.tap is not None:
                self.tap.hashed(layer, ordinal, node.sha256)

    def _leaf(self, layer: int, ordinal: int, member: tarfile.TarInfo, parts: list[str]) -> _Node:
        if member.issym():
            if len(member.linkname.encode("utf-8", "surrogateescape")) > MAX_PATH:
                raise GateError(f"{self._where(layer, member.name)}: the link target is too long.")
            return _Node("symlink", layer, mode=member.mode, member=ordinal, link=member.linkname,
                         uid=member.uid, gid=member.gid)  # fmt: skip
        if member.islnk():
            target = self._clean(layer, member.linkname, member.name)
            node = self._lookup(target)
            if node is None or node.kind == "dir" or node.touched != layer:
                if node is None:
                    what = "not in the image"
                elif node.kind == "dir":
                    what = "a directory"
                else:
                    what = "from a lower layer (overlay runtimes refuse such a link)"
                raise GateError(
                    f"{self._where(layer, member.name)} is a hardlink to {member.linkname!r}, "
                    f"which is {what}."
                )
            copy = _Node(node.kind, node.layer, mode=member.mode, member=node.member,
                         size=node.size, link=node.link, special=node.special, sha256=node.sha256,
                         uid=member.uid, gid=member.gid)  # fmt: skip
            copy.touched = layer
            copy.spool = node.spool
            # One inode: runtimes link, then lchown (and chmod) the new path, which changes the
            # owner and mode every name of the inode shows.
            if node.peers is None:
                node.peers = [node]
            node.peers.append(copy)
            copy.peers = node.peers
            for peer in node.peers:
                peer.uid, peer.gid = member.uid, member.gid
                if node.kind != "symlink":
                    peer.mode = member.mode
            return copy
        if member.isfile():
            return _Node("file", layer, mode=member.mode, member=ordinal, size=member.size,
                         uid=member.uid, gid=member.gid)  # fmt: skip
        return _Node("special", layer, mode=member.mode, member=ordinal, special=_special(member),
                     uid=member.uid, gid=member.gid)  # fmt: skip

    def _clean(self, layer: int, name: str, member: str) -> list[str]:
        """A member name cleaned lexically as runtimes do; a ``..`` above the root (which
        containerd clamps and Docker refuses) is refused."""
        if len(name.encode("utf-8", "surrogateescape")) > MAX_PATH:
            raise GateError(f"{self._where(layer, member[:200])}: the name is too long.")
        parts: list[str] = []
        for part in name.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    raise GateError(
                        f"{self._where(layer, member)} names {name!r}, which climbs out of the "
                        "image root."
                    )
                parts.pop()
                continue
            if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME:
                raise GateError(f"{self._where(layer, member)}: a path component is too long.")
            parts.append(part)
        return parts

    def _parent(self, layer: int, parts: list[str], member: str) -> _Node:
        """The directory ``parts`` names, created (as runtimes do) where missing; every node on
        the way is marked as written by ``layer``."""
        node = self._root
        node.touched = layer
        for k, part in enumerate(parts):
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node("dir", layer)
            elif child.kind != "dir":
                at = printable("/" + "/".join(parts[: k + 1]))
                if child.kind == "symlink":
                    raise GateError(
                        f"{self._where(layer, member)} is written below {at}, a symlink to "
                        f"{child.link!r}: container runtimes disagree on where it lands "
                        "(overlayfs makes a new directory, a copying snapshotter follows the "
                        "link), so the image is refused."
                    )
                kind = "file" if child.kind == "file" else child.special
                raise GateError(
                    f"{self._where(layer, member)} is written below {at}, which is a {kind}, "
                    "not a directory: container runtimes refuse such a layer."
                )
            child.touched = layer
            node = child
        return node

    def _prune(self, top: _Node, layer: int) -> None:
        """An opaque whiteout: below ``top``, keep only what ``layer`` itself wrote."""
        todo = [top]
        while todo:
            node = todo.pop()
            if node.opaque == layer:
                continue  # already pruned in this layer; only this layer added since
            node.opaque = layer
            for name, child in list(node.children.items()):
                if child.touched != layer:
                    del node.children[name]
                elif child.kind == "dir":
                    todo.append(child)

    # -- lookups -----------------------------------------------------------------------------

    def _lookup(self, parts: Iterable[str]) -> _Node | None:
        node = self._root
        for part in parts:
            if node.kind != "dir":
                return None
            child = node.children.get(part)
            if child is None:
                return None
            node = child
        return node

    def entry(self, path: str) -> FsEntry | None:
        """The node at ``path`` itself (no symlink followed anywhere), or None."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        node = self._lookup(parts)
        return None if node is None else _entry("/".join(parts), node)

    def resolve(self, path: str, *, follow_final: bool = True) -> Resolution:
        """Follow ``path`` from the image root as the kernel would inside the container:
        symlinks (absolute ones from the image root, ``..`` stopping at the root), at most
        :data:`MAX_SYMLINK_HOPS` of them."""
        todo = [p for p in reversed(path.split("/")) if p not in ("", ".")]
        trail: list[tuple[str, _Node]] = []  # the physical path below the root
        crossed: list[tuple[str, str]] = []
        node = self._root

        def done(problem: str = "") -> Resolution:
            where = "/".join(name for name, _ in trail)
            entry = None if problem else _entry(where, node)
            return Resolution(path, entry, where, tuple(crossed), problem)

        while todo:
            part = todo.pop()
            if node.kind != "dir":
                return done("not a directory")
            if part == "..":
                if trail:
                    trail.pop()
                node = trail[-1][1] if trail else self._root
                continue
            child = node.children.get(part)
            if child is None:
                trail.append((part, _Node("dir", _ROOT_LAYER)))
                return done("missing")
            if child.kind == "symlink" and (todo or follow_final):
                crossed.append(("/".join([*(n for n, _ in trail), part]), child.link))
                if len(crossed) > MAX_SYMLINK_HOPS:
                    return done("too many symlinks")
                if not child.link:
                    return done("missing")
                if child.link.startswith("/"):
                    trail.clear()
                    node = self._root
                todo.extend(p for p in reversed(child.link.split("/")) if p not in ("", "."))
                continue
            trail.append((part, child))
            node = child
        return done()

    def walk(self, path: str = "") -> Iterator[FsEntry]:
        """Every entry below the directory ``path`` (not following symlinks): each directory's
        entries in name order, a directory before what is below it; nothing when ``path`` is not
        a directory."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        top = self._lookup(parts)
        if top is None or top.kind != "dir":
            return
        prefix = "/".join(parts)
        todo: list[tuple[str, _Node]] = [(prefix, top)]
        while todo:
            where, node = todo.pop()
            for name in sorted(node.children, reverse=True):
                child = node.children[name]
                full = f"{where}/{name}" if where else name
                if child.kind == "dir":
                    todo.append((full, child))
            for name in sorted(node.children):
                full = f"{where}/{name}" if where else name
                yield _entry(full, node.children[name])

    def visible_members(self) -> dict[tuple[int, int], list[str]]:
        """Which layer members the regular files of the image show: ``(layer index, member
        ordinal)`` → the paths showing it (more than one through hardlinks). A member of a
        layer that is not here was deleted or replaced by a later layer."""
        out: dict[tuple[int, int], list[str]] = {}
        todo: list[tuple[str, _Node]] = [("", self._root)]
        while todo:
            where, node = todo.pop()
            for name, child in node.children.items():
                full = f"{where}/{name}" if where else name
                if child.kind == "dir":
                    todo.append((full, child))
                elif child.kind == "file":
                    out.setdefault((child.layer, child.member), []).append(full)
        return out

    # -- contents ----------------------------------------------------------------------------

    def _files(self, paths: Iterable[str]) -> dict[tuple[int, int], list[tuple[str, _Node]]]:
        wanted: dict[tuple[int, int], list[tuple[str, _Node]]] = {}
        for path in paths:
            node = self._lookup(p for p in path.split("/") if p)
            if node is None or node.kind != "file":
                raise ValueError(f"{path!r} is not a regular file of the image")
            wanted.setdefault((node.layer, node.member), []).append((path, node))
        return wanted

    def _contents(
        self, wanted: Mapping[tuple[int, int], object]
    ) -> Iterator[tuple[tuple[int, int], Iterator[bytes]]]:
        """The members ``wanted`` names, as chunk iterators, reading each layer holding one
        once and only as far as needed."""
        for layer in sorted({k[0] for k in wanted}):
            left = sum(1 for k in wanted if k[0] == layer)
            for ordinal, member, tar in self._stream(layer):
                if (layer, ordinal) not in wanted:
                    continue
                if not member.isfile():
                    raise GateError(f"{self._where(layer, member.name)} changed while read.")
                yield (layer, ordinal), self._chunks(layer, tar, member)
                left -= 1
                if not left:
                    break

    def hash_files(self, paths: Iterable[str]) -> dict[str, str]:
        """The sha256 of regular files of the image (``path`` → hex), reading the layers only
        for those not hashed yet."""
        out: dict[str, str] = {}
        wanted = self._files(paths)
        todo: dict[tuple[int, int], list[tuple[str, _Node]]] = {}
        for key, holders in wanted.items():
            known = next((n.sha256 for _, n in holders if n.sha256), None)
            if known is None:
                todo[key] = holders
            for path, _ in holders:
                if known is not None:
                    out[path] = known
        for key, chunks in self._contents(todo):
            digest = _digest(chunks)
            for path, node in todo[key]:
                node.sha256 = out[path] = digest
        return out

    def extract_members(self, files: Mapping[tuple[int, int], Path]) -> None:
        """Write the content of layer members (``(layer index, ordinal)`` of a regular member,
        visible or deleted by a later layer → destination) to fresh private files, re-reading
        only the layers holding them; a member that is not there is an error."""
        for key, chunks in self._contents(files):
            fd = os.open(files[key], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as sink:
                for chunk in chunks:
                    sink.write(chunk)
        for (layer, ordinal), dest in files.items():
            if not dest.exists():
                raise GateError(f"{self._where(layer)} has no regular member {ordinal}.")

    def extract(self, files: Mapping[str, Path]) -> None:
        """Write the content of image files (image path → destination) to fresh files; a
        destination that exists, or a symlink in its place, is an error. Files kept while the
        layers were applied are copied from the spool; the others re-read their layers."""
        wanted = self._files(files)
        spooled = {k: v for k, v in wanted.items() if v[0][1].spool is not None}
        for key, holders in spooled.items():
            for path, node in holders:
                assert node.spool is not None
                dest = files[path]
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as sink, node.spool.open("rb") as src:
                    shutil.copyfileobj(src, sink, _CHUNK)
            del wanted[key]
        for key, chunks in self._contents(wanted):
            sinks = []
            try:
                for path, _ in wanted[key]:
                    dest = files[path]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                    sinks.append(os.fdopen(fd, "wb"))
                for chunk in chunks:
                    for sink in sinks:
                        sink.write(chunk)
            finally:
                for sink in sinks:
                    sink.close()


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses pax and GNU long-name headers larger than :data:`MAX_HEADER` before tarfile
    reads them into memory whole."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _LONG_HEADERS and self.size > MAX_HEADER:
            raise tarfile.SubsequentHeaderError(  # type: ignore[attr-defined]
                f"a {self.size}-byte extended header (at most {MAX_HEADER} are read)"
            )
        return super()._proc_member(tarfile_)  # type: ignore[misc,no-any-return]


_LONG_HEADERS = frozenset(
    {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
     tarfile.SOLARIS_XHDTYPE}
)  # fmt: skip


def printable(path: str) -> str:
    """An image path for reports and messages: layer names are bytes, decoded as UTF-8 with
    the undecodable bytes kept as surrogates (so that paths compare exactly); here they are
    written ``\\xNN``, which any report encoding accepts."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _entry(path: str, node: _Node) -> FsEntry:
    return FsEntry(path, node.kind, node.mode, node.size, node.link, node.special, node.sha256,
                   node.uid, node.gid, node.layer)  # fmt: skip


def _digest(chunks: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def _special(member: tarfile.TarInfo) -> str:
    if member.isfifo():
        return "fifo"
    if member.ischr():
        return f"character device {member.devmajor}:{member.devminor}"
    if member.isblk():
        return f"block device {member.devmajor}:{member.devminor}"
    kind: Any = member.type
    return f"tar entry of type {kind!r}"
