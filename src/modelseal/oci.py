"""Reading OCI image layouts on disk: index, manifests, configs and layers (streamed).

Only what modelseal needs: resolving the per-platform manifests of a built image, naming
what differs between two builds that should have been identical, and an image's ``pkg:oci``
purl. An image's resolved filesystem is :mod:`modelseal.imagefs`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from modelseal.errors import Error, GateError

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")
"""A content digest as modelseal accepts it: ``sha256:`` and 64 lower-case hex digits."""
MAX_JSON_BYTES = 4 << 20
"""Bytes of one JSON blob (index, manifest, config) read from a layout."""
MANIFEST_FACT = "image.manifest."
"""Prefix of the build gate's facts naming each platform's image manifest:
``image.manifest.PLATFORM``."""
MAX_INDEX_BYTES = 16 << 20
"""Bytes of a layout's ``index.json`` (BuildKit's lists every image and cache it holds)."""

INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
)


def platform_manifests(facts: Mapping[str, str]) -> dict[str, str]:
    """Platform → image manifest digest, from the build gate's ``image.manifest.*`` facts,
    sorted by platform (what every gate and the publisher reading the built image start from)."""
    return {
        k.removeprefix(MANIFEST_FACT): v
        for k, v in sorted(facts.items())
        if k.startswith(MANIFEST_FACT)
    }


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    platform: str | None = None
    annotations: Mapping[str, str] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Descriptor:
        """Build from the JSON form used in indexes and manifests."""
        plat = data.get("platform")
        platform = None
        if isinstance(plat, Mapping):
            platform = "/".join(
                str(p) for p in (plat.get("os"), plat.get("architecture"), plat.get("variant")) if p
            )
        digest, size = data.get("digest"), data.get("size", 0)
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise GateError(f"a descriptor names {str(digest)[:100]!r}, not a sha256 digest.")
        if not isinstance(size, int) or size < 0:
            raise GateError(f"the descriptor of {digest} has an invalid size {str(size)[:40]!r}.")
        return cls(
            media_type=str(data.get("mediaType", "")),
            digest=digest,
            size=size,
            platform=platform,
            annotations=dict(data.get("annotations") or {}),
        )


class OciLayout:
    """An OCI image layout directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not (path / "oci-layout").is_file() or not (path / "index.json").is_file():
            raise GateError(f"{path} is not an OCI image layout (no oci-layout or index.json).")

    def blob(self, digest: str) -> Path:
        """Path of a blob by digest; a digest other than ``sha256:`` + 64 hex digits (one
        naming ``sha256:/etc/passwd`` or ``sha256:../../x``) is refused before it is a path."""
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise GateError(f"{self.path}: {str(digest)[:100]!r} is not a sha256 digest.")
        algo, _, hexpart = digest.partition(":")
        return self.path / "blobs" / algo / hexpart

    def read_small(self, digest: str) -> bytes:
        """The bytes of a small blob (manifest, index, config), at most :data:`MAX_JSON_BYTES`;
        :class:`~modelseal.errors.ConfigError` when it is larger, missing or not a regular
        file (non-blocking: a FIFO planted as a blob would hang the run)."""
        from modelseal.bounded import read_input

        return read_input(self.blob(digest), what="OCI blob", limit=MAX_JSON_BYTES, contained=False)

    def read_json(self, digest: str) -> dict[str, Any]:
        """A JSON blob (manifest, index, config), at most :data:`MAX_JSON_BYTES`."""
        from modelseal.errors import ConfigError

        try:
            data = json.loads(self.read_small(digest))
        except ConfigError as e:
            raise GateError(f"{self.path}: blob {digest}: {e.message}") from None
        except (ValueError, RecursionError) as e:
            raise GateError(f"{self.path}: blob {digest} is missing or not JSON ({e}).") from None
        if not isinstance(data, dict):
            raise GateError(f"{self.path}: blob {digest} is not a JSON object.")
        return data

    def index(self) -> dict[str, Any]:
        """The top-level ``index.json`` (read bounded: a layout may be the user's)."""
        from modelseal.bounded import read_input
        from modelseal.errors import ConfigError

        path = self.path / "index.json"
        try:
            data = json.loads(
                read_input(path, what="OCI layout index", limit=MAX_INDEX_BYTES, contained=False)
            )
        except ConfigError as e:
            raise GateError(e.message) from None
        except (ValueError, RecursionError) as e:
            raise GateError(f"{path} is not valid JSON ({e}).") from None
        if not isinstance(data, dict):
            raise GateError(f"{self.path}/index.json is not a JSON object.")
        return data

    def top_descriptors(self) -> list[Descriptor]:
        """The descriptors ``index.json`` lists."""
        manifests = self.index().get("manifests", [])
        if not isinstance(manifests, list):
            raise GateError(f"{self.path}/index.json: manifests is not a list.")
        try:
            return [Descriptor.from_json(m) for m in manifests]
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise GateError(
                f"{self.path}/index.json: a manifest descriptor is malformed "
                f"({type(e).__name__}: {e})."
            ) from None

    def platform_manifests(self, digest: str | None = None) -> list[Descriptor]:
        """Per-platform image manifests under ``digest`` (or under every top descriptor).

        An index is followed one level down; attestation manifests (``unknown/unknown``) are
        left out, since they are not images and change with provenance settings.
        """
        tops = self.top_descriptors()
        if digest is not None:
            tops = [d for d in tops if d.digest == digest] or [
                Descriptor("application/vnd.oci.image.index.v1+json", digest, 0)
            ]
        out: list[Descriptor] = []
        for top in tops:
            media = top.media_type or str(self.read_json(top.digest).get("mediaType", ""))
            if media in INDEX_TYPES:
                for child in self.read_json(top.digest).get("manifests", []):
                    d = Descriptor.from_json(child)
                    if d.platform != "unknown/unknown":
                        out.append(d)
            else:
                out.append(top)
        return out

    def manifest(self, digest: str) -> dict[str, Any]:
        """An image manifest."""
        return self.read_json(digest)


@dataclass(frozen=True)
class Entry:
    """One member of a layer tar, reduced to what makes two layers differ."""

    kind: str
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int
    link: str
    sha256: str
    xattrs: tuple[tuple[str, str], ...]


#: The magic numbers of a zstd frame and of a gzip member.
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"


def open_layer(path: Path, media_type: str) -> IO[bytes]:
    """A layer blob's tar stream (gunzipped when gzip, through ``zstd -dc`` when zstd, by the
    media type or the blob's magic number); closing it closes the file. A compressed stream
    that turns out corrupt or truncated raises (:class:`GateError` from zstd at its end,
    ``zlib.error`` / ``EOFError`` from gzip). ``read(n)`` returns ``n`` bytes unless the
    stream ends first, copied as little as the source allows (see :func:`stream_tar`)."""
    raw = path.open("rb")
    # pread leaves the file's offset at 0: the zstd tool reads the descriptor itself, and a
    # buffered read-and-seek-back would not move its offset back.
    head = os.pread(raw.fileno(), 4, 0)
    if "zstd" in media_type or head == _ZSTD_MAGIC:
        return _Unzstd(raw, path.name)  # type: ignore[return-value]
    if head[:2] == _GZIP_MAGIC:
        return _Gunzip(raw)  # type: ignore[return-value]
    return raw


#: Bytes of a read from a pipe or a compressed blob: large reads, few calls (a GB-sized model
#: layer is read in MiB steps, never 8 KiB ones).
_READ = 1 << 20


class _Unzstd(io.RawIOBase):
    """A zstd layer decompressed by the ``zstd`` tool (Python 3.11 has no zstd module),
    streamed: memory stays flat whatever the layer's size. Reading to the end checks the
    tool's exit code; closing early kills it."""

    def __init__(self, raw: IO[bytes], name: str) -> None:
        from modelseal._tools import find_tool, pipe_from

        self._raw, self._name = raw, name
        try:
            self._proc = pipe_from(
                [find_tool("zstd", hint="Install zstd to read zstd-compressed layers."),
                 "-dcq", "--no-progress"], raw,
            )  # fmt: skip
        except Error as e:
            raw.close()
            raise GateError(f"layer {name} is zstd-compressed: {e.message}", hint=e.hint) from None
        assert self._proc.stdout is not None
        self._out = self._proc.stdout  # a BufferedReader over the pipe
        widen_pipe(self._out.fileno())

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """``size`` bytes (fewer only at the end), straight from the pipe's BufferedReader:
        a large read fills the result in place, with no copy in between."""
        data = self._out.read(-1 if size is None else size)
        if size != 0 and len(data) != size:
            self._check_end()
        return data

    def readinto(self, buffer: Any) -> int:
        n = self._out.readinto(buffer)  # type: ignore[attr-defined]  # a BufferedReader
        if not n:
            self._check_end()
        return n or 0

    def _check_end(self) -> None:
        if self._proc.wait() != 0:
            raise GateError(f"layer {self._name}: zstd could not decompress it (corrupt blob).")

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._out.close()
        finally:
            self._raw.close()
            super().close()


def widen_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe buffer (Linux ``F_SETPIPE_SZ``, at most ``pipe-max-size``): the
    tool then writes, and this process reads, in far fewer steps than through the default
    64 KiB. Best effort: where refused, the pipe keeps its size."""
    import fcntl

    setpipe = getattr(fcntl, "F_SETPIPE_SZ", 1031)
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, setpipe, _READ)


class _Gunzip(io.RawIOBase):
    """A gzip layer decompressed in process with zlib, as :class:`gzip.GzipFile` reads it
    (members one after another, zero padding between or after them, each member's CRC-32 and
    length checked) but in large steps: GzipFile (3.11) reads its file 8 KiB at a time through
    two Python layers, a fraction of zlib's speed on a GB-sized layer. Memory is bounded by
    the read size (output is limited per call, whatever the compression ratio). Closing it
    closes the file. A truncated stream is an :class:`EOFError`, a corrupt one a
    ``zlib.error``."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._z = zlib.decompressobj(_GZIP_WBITS)
        # Compressed bytes read from the file (up to 1 MiB) and how far zlib took them. zlib
        # gets a slice: its own copies of what it leaves (unused_data at a member's end,
        # unconsumed_tail) are at most one slice, which starts small with each member and
        # doubles, so that thousands of tiny members cost no more than one large one.
        self._in = memoryview(b"")
        self._at = 0
        self._feed = _FIRST_FEED
        self._done = False
        # Decompressed bytes not yet read: small reads (tar headers, small files) are served
        # from here, so that zlib is called once per MiB.
        self._buf = b""
        self._off = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """``size`` bytes (fewer only at the end); all the rest when ``size`` is negative."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(_READ), b""))
        parts: list[bytes] = []
        need = size
        while need > 0:
            if self._off < len(self._buf):
                piece = self._buf[self._off : self._off + need]
                self._off += len(piece)
            elif need >= _READ:
                piece = self._next(need)  # straight from zlib, no copy
            else:
                self._buf, self._off = self._next(_READ), 0
                if not self._buf:
                    break
                continue
            if not piece:
                break
            parts.append(piece)
            need -= len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        with memoryview(buffer) as view, view.cast("B") as out:
            data = self.read(len(out))
            out[: len(data)] = data
        return len(data)

    def _next(self, limit: int) -> bytes:
        """Up to ``limit`` decompressed bytes; empty at the end of the last member."""
        while not self._done:
            if self._z.eof and not self._next_member():
                break
            if self._at >= len(self._in):
                self._in, self._at = memoryview(self._raw.read(_READ)), 0
            data = self._in[self._at : self._at + self._feed]
            out = self._z.decompress(data, limit)
            # What zlib left of the slice is read again from the slice, not from its copies
            # (at a member's end, unconsumed_tail may still hold the same bytes as unused_data).
            left = self._z.unused_data if self._z.eof else self._z.unconsumed_tail
            self._at += len(data) - len(left)
            self._feed = min(2 * self._feed, _READ)
            if out:
                return out
            if not data and not self._z.eof:
                raise EOFError("the gzip stream ends before its end marker (truncated layer)")
        return b""

    def _next_member(self) -> bool:
        """After a member's end: skip zero padding; start the next member if one follows
        (a new decompressor checks its header), or mark the end."""
        while True:
            nonzero = _NONZERO.search(self._in, self._at)
            if nonzero is not None:
                self._at = nonzero.start()
                break
            self._in, self._at = memoryview(self._raw.read(_READ)), 0
            if not self._in:
                self._done = True
                return False
        self._z = zlib.decompressobj(_GZIP_WBITS)
        self._feed = _FIRST_FEED
        return True

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._raw.close()
        finally:
            super().close()


#: zlib's window bits for a gzip header and trailer (CRC-32 and length checked by zlib).
_GZIP_WBITS = 16 + zlib.MAX_WBITS
#: Compressed bytes given to zlib first for each gzip member (then twice as many each call).
_FIRST_FEED = 256
_NONZERO = re.compile(rb"[^\x00]")


class _Forward:
    """A layer's tar stream as a forward-only file for :mod:`tarfile`'s random-access reader:
    ``tell``, ``read`` and ``seek`` ahead (skipping by reading). Stream mode (``"r|"``) would
    copy the whole stream through a 10 KiB buffer, joined and sliced again for every read, and
    its buffer once per small member; here every read goes straight to the source."""

    def __init__(self, src: IO[bytes]) -> None:
        self._src = src
        self._pos = 0

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            raise ValueError("a layer is read in bounded steps")
        data = self._src.read(size)
        if 0 < len(data) < size:  # a short read before the end (a raw pipe): fill it
            parts = [data]
            got = len(data)
            while got < size and (more := self._src.read(size - got)):
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        self._pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence != 0 or pos < self._pos:
            # tarfile never seeks back on a member it read within bounds (see TarFile.next)
            raise OSError(f"a layer stream cannot seek back (to {pos} from {self._pos})")
        while self._pos < pos:
            if not self.read(min(pos - self._pos, _READ)):
                break  # at the end: the next read finds it (as a truncated archive)
        return self._pos

    def member_chunks(self, member: tarfile.TarInfo, size: int) -> Iterator[bytes]:
        """A regular, non-sparse member's content in chunks of ``size`` bytes (the last one
        shorter); the content ending early is a :class:`tarfile.ReadError`."""
        self.seek(member.offset_data)
        left = member.size
        while left:
            chunk = self.read(min(left, size))
            if not chunk:
                raise tarfile.ReadError("unexpected end of data")
            left -= len(chunk)
            yield chunk


#: Bytes read past a layer tar's end-of-archive blocks to reach the end of its compressed
#: stream (:func:`read_to_end`); tar writers pad to at most 10 KiB records.
MAX_TRAILER = 1 << 20


def read_to_end(stream: IO[bytes]) -> None:
    """Read what follows a layer tar's end-of-archive blocks, up to :data:`MAX_TRAILER`, so
    that the compressed stream's own checks run at its end — zstd's exit status (its frame
    checksum), gzip's CRC-32 and length — as a runtime reading the layer whole for its
    diff_id checks them: a flipped byte in random weights (stored as they are, both in zstd and
    in deflate) is found only there. More than that left is not read (and not refused)."""
    left = MAX_TRAILER
    while left > 0 and (data := stream.read(min(left, _READ))):
        left -= len(data)


def stream_tar(stream: IO[bytes], **kwargs: Any) -> tarfile.TarFile:
    """A :class:`tarfile.TarFile` reading ``stream`` (an :func:`open_layer` stream) from start
    to end, once: tarfile's reader over :class:`_Forward` — the same member parsing and checks
    as ``mode="r|"``, without its copying. A member's content can be read
    (:func:`member_chunks`) until the next member is asked for."""
    forward: Any = _Forward(stream)  # a file object as far as tarfile's reader goes
    return tarfile.open(fileobj=forward, mode="r:", **kwargs)


def member_chunks(tar: tarfile.TarFile, member: tarfile.TarInfo, size: int) -> Iterator[bytes]:
    """The content of a regular member of a :func:`stream_tar` archive, ``size`` bytes at a
    time (a sparse member through tarfile's own reader)."""
    fileobj = tar.fileobj
    if isinstance(fileobj, _Forward) and not member.sparse:
        yield from fileobj.member_chunks(member, size)
        return
    f = tar.extractfile(member)
    while f is not None and (chunk := f.read(size)):
        yield chunk


def _layer_members(
    path: Path, media_type: str
) -> Iterator[tuple[str, tarfile.TarInfo, tarfile.TarFile]]:
    """Stream a layer's members as ``(name, member, tar)``; ``name`` has no leading ``./`` and
    no trailing ``/``. A member's content can be read until the next one is asked for."""
    with open_layer(path, media_type) as stream, stream_tar(stream) as tar:
        for member in tar:
            yield member.name.removeprefix("./").rstrip("/"), member, tar


def _hash_content(
    tar: tarfile.TarFile, member: tarfile.TarInfo, sink: IO[bytes] | None = None
) -> str:
    """The sha256 of a regular member's content, read 1 MiB at a time (and copied to ``sink``)."""
    h = hashlib.sha256()
    for chunk in member_chunks(tar, member, _READ):
        h.update(chunk)
        if sink is not None:
            sink.write(chunk)
    return h.hexdigest()


def layer_entries(path: Path, media_type: str = "") -> Iterator[tuple[str, Entry]]:
    """Stream a layer's members as ``(path, Entry)``, hashing file contents chunk by chunk."""
    for name, member, tar in _layer_members(path, media_type):
        digest = _hash_content(tar, member) if member.isfile() else ""
        xattrs = tuple(
            sorted((k, v) for k, v in member.pax_headers.items() if k.startswith("SCHILY.xattr"))
        )
        yield (
            name or ".",
            Entry(
                kind=_kind(member),
                mode=member.mode,
                uid=member.uid,
                gid=member.gid,
                mtime=int(member.mtime),
                size=member.size,
                link=member.linkname,
                sha256=digest,
                xattrs=xattrs,
            ),
        )


def _kind(m: tarfile.TarInfo) -> str:
    if m.isdir():
        return "dir"
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    if m.isfile():
        return "file"
    return "special"


@dataclass(frozen=True)
class PathDifference:
    """A path whose entry differs between two layers, and how."""

    path: str
    what: str  # "added", "removed", or the differing fields, e.g. "content, mtime"


def diff_layer_files(
    a: Path, b: Path, media_a: str = "", media_b: str = ""
) -> list[PathDifference]:
    """Compare two layer blobs member by member."""
    left = dict(layer_entries(a, media_a))
    right = dict(layer_entries(b, media_b))
    diffs: list[PathDifference] = []
    for path in sorted(left.keys() | right.keys()):
        if path not in right:
            diffs.append(PathDifference(path, "removed"))
        elif path not in left:
            diffs.append(PathDifference(path, "added"))
        elif left[path] != right[path]:
            fields = [
                ("content" if f == "sha256" else f)
                for f in Entry.__dataclass_fields__
                if getattr(left[path], f) != getattr(right[path], f)
            ]
            diffs.append(PathDifference(path, ", ".join(fields)))
    return diffs


@dataclass(frozen=True)
class ImageDifference:
    """One reason two image manifests differ: the config, a layer, or the layer count."""

    part: str  # "config", "layer 3", "layers"
    left: str
    right: str
    paths: tuple[PathDifference, ...] = ()
    config_keys: tuple[str, ...] = ()


def diff_images(
    la: OciLayout, manifest_a: str, lb: OciLayout, manifest_b: str
) -> list[ImageDifference]:
    """Explain why two image manifests differ, down to the files inside differing layers."""
    ma, mb = la.manifest(manifest_a), lb.manifest(manifest_b)
    out: list[ImageDifference] = []
    ca, cb = ma.get("config", {}), mb.get("config", {})
    if ca.get("digest") != cb.get("digest"):
        keys = _json_diff_keys(la.read_json(ca["digest"]), lb.read_json(cb["digest"]))
        out.append(ImageDifference("config", ca["digest"], cb["digest"], config_keys=tuple(keys)))
    layers_a, layers_b = ma.get("layers", []), mb.get("layers", [])
    if len(layers_a) != len(layers_b):
        out.append(ImageDifference("layers", str(len(layers_a)), str(len(layers_b))))
    for i, (x, y) in enumerate(zip(layers_a, layers_b, strict=False)):
        if x["digest"] != y["digest"]:
            paths = diff_layer_files(
                la.blob(x["digest"]), lb.blob(y["digest"]), x.get("mediaType", ""),
                y.get("mediaType", ""),
            )  # fmt: skip
            out.append(ImageDifference(f"layer {i + 1}", x["digest"], y["digest"], tuple(paths)))
    if ma.get("annotations") != mb.get("annotations"):
        out.append(ImageDifference("annotations", manifest_a, manifest_b))
    return out


def _json_diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys: list[str] = []
        for k in sorted(a.keys() | b.keys()):
            keys += _json_diff_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return keys
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        keys = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            keys += _json_diff_keys(x, y, f"{prefix}[{i}]")
        return keys
    return [] if a == b else [prefix or "."]


def image_repository(image_name: str) -> str:
    """``REGISTRY/PATH`` of ``REGISTRY/PATH[:TAG][@DIGEST]``."""
    ref = image_name.split("@", 1)[0]
    if ":" in ref.rsplit("/", 1)[-1]:
        ref = ref.rpartition(":")[0]
    return ref


def image_purl(digest: str, image_name: str | None, platform: str | None) -> str:
    """``pkg:oci/NAME@sha256%3AHEX?arch=…&repository_url=…&tag=…`` (purl-spec ``oci`` type)."""
    qualifiers: dict[str, str] = {}
    name = "image"
    if image_name:
        ref = image_name.split("@", 1)[0]
        repo = image_repository(image_name)
        tag = ref[len(repo) + 1 :]
        name = repo.rsplit("/", 1)[-1].lower()
        if "/" in repo:
            qualifiers["repository_url"] = repo.lower()
        if tag:
            qualifiers["tag"] = tag
    if platform:
        parts = platform.split("/")
        if len(parts) >= 2:
            qualifiers["arch"] = parts[1]
    # Built by hand: packageurl-python leaves the ':' of the version unencoded, while the
    # purl-spec ``oci`` type (and its examples) write the digest as ``sha256%3A<hex>``.
    purl = f"pkg:oci/{quote(name, safe='')}@{quote(digest, safe='')}"
    if qualifiers:
        purl += "?" + "&".join(f"{k}={quote(v, safe='/:')}" for k, v in sorted(qualifiers.items()))
    return purl
