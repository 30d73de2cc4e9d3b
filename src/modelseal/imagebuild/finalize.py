"""Finalizing BuildKit's OCI layout: the timestamp clamp and the layer compression, in one pass.

BuildKit's ``rewrite-timestamp=true`` (what makes layer mtimes reproducible) decompresses and
recompresses every layer the build adds, after the exporter has compressed it once: a 2 GiB
model layer is compressed twice, and with gzip that is most of a build's time. So modelseal asks
BuildKit for *uncompressed* new layers without the rewrite (``compression=uncompressed``, no
``force-compression``: the base image's layers stay as the base ships them), and then, for each
layer the build added — every layer after the base image's (their number read from an OCI-layout
build context or the base's registry, :class:`modelseal.imagebuild.gate.BaseLayers`; a layer
BuildKit took compressed from a cache is one of them, with another build's timestamps), else
from the first uncompressed one on — makes one streaming pass (:func:`finalize_layout`):

* every tar header whose ``mtime`` is later than ``SOURCE_DATE_EPOCH`` is clamped to it — the
  ustar field and the PAX ``mtime``/``atime``/``ctime`` records (and a GNU header's atime and
  ctime fields), as BuildKit's rewrite does — and its checksum recomputed; headers that need no
  change, and every data block (file contents, link targets, xattrs, whiteouts, long names),
  pass through byte for byte;
* the result is compressed as ``build.compression`` says (zstd by the ``zstd`` tool, gzip by
  zlib with a fixed header: no name, no mtime; or left uncompressed), while its ``diff_id`` and
  the blob's digest are computed on the way;
* the image config (``rootfs.diff_ids``), the manifest(s), an index and ``index.json`` are
  rewritten (JSON re-serialized deterministically: keys in their order, compact).

The base image's layers stay untouched (recompressed without any header change when
``force_compression`` asks for it). When their number is not known (a base by tag), layers
before the first uncompressed one are taken for the base's, and a base image that itself ships
uncompressed layers has those clamped too (its diff_ids then change).

The same inputs give the same bytes, so the digest is reproducible, and ``modelseal rebuild``
runs this same code. The header parsing is bounded: a malformed header, a bad checksum, a PAX
header over :data:`MAX_PAX`, a truncated archive or more than :data:`MAX_MEMBERS` members is a
:class:`GateError` naming the layer and the byte offset.

While it reads the headers, the pass notes whether a layer holds only files below the model
paths (``models.image_paths``): syft and Trivy are not given such layers
(:mod:`modelseal.scanview`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import os
import re
import secrets
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from modelseal import fsio
from modelseal._tools import find_tool, pipe_from
from modelseal.errors import Error, GateError
from modelseal.imagebuild.context import go_clean
from modelseal.imagebuild.standins import SIZE as STAND_IN_SIZE
from modelseal.imagebuild.standins import StandIns
from modelseal.oci import INDEX_TYPES, MANIFEST_TYPES, OciLayout, open_layer, widen_pipe

#: Version of what this module does to a layout; recorded in the build facts and provenance.
FINALIZER_VERSION: Final = 1
#: Prefix of the build gate's facts listing, per platform, the layers that hold only files
#: below ``models.image_paths`` (``image.model_layers.PLATFORM``: comma-separated digests).
MODEL_LAYERS_FACT: Final = "image.model_layers."
#: Members one layer may have.
MAX_MEMBERS: Final = 1_000_000
#: Bytes of one PAX extended header or GNU long name/link.
MAX_PAX: Final = 1 << 20
#: Manifests one top index may list.
MAX_MANIFESTS: Final = 64

_BLOCK: Final = 512
_CHUNK: Final = 1 << 20
_UNCOMPRESSED: Final = "application/vnd.oci.image.layer.v1.tar"
_MEDIA: Final = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "uncompressed": _UNCOMPRESSED,
}
#: Docker's media type of an uncompressed layer (a base image may use it).
_DOCKER_UNCOMPRESSED: Final = "application/vnd.docker.image.rootfs.diff.tar"
#: Entry types whose header is all there is: a size above zero is refused (Go's tar reader
#: reads no data for them, Python's reads some: two runtimes would see different files).
_HEADER_ONLY: Final = frozenset({b"1", b"2", b"3", b"4", b"5"})
#: Entry types of a regular file (``7``: contiguous, read as one).
_REGULAR: Final = frozenset({b"0", b"\0", b"7"})
_PAX_TIMES: Final = frozenset({"mtime", "atime", "ctime"})
_PAX_RECORD = re.compile(rb"([1-9][0-9]{0,7}) ")
_OCTAL = re.compile(rb"[0-7]*")


def uncompressed_media(media_type: str) -> bool:
    """Whether a layer descriptor's media type says the blob is a plain tar."""
    return media_type in (_UNCOMPRESSED, _DOCKER_UNCOMPRESSED)


# --- tar headers -------------------------------------------------------------------------------


def _num(field_: bytes, what: str, where: Callable[[], str]) -> int:
    """A numeric header field: octal (NUL/space padded) or base-256 (GNU, high bit set)."""
    if field_[:1] and field_[0] & 0x80:
        if field_[0] == 0xFF:
            return int.from_bytes(field_, "big", signed=True)  # a time before 1970
        return int.from_bytes(bytes([field_[0] & 0x7F]) + field_[1:], "big")
    text = field_.split(b"\0", 1)[0].strip(b" ")
    if not _OCTAL.fullmatch(text):
        raise GateError(f"{where()}: the {what} field {text[:12]!r} is not an octal number.")
    return int(text, 8) if text else 0


def _checksum_ok(block: bytes) -> bool:
    stored = block[148:156].split(b"\0", 1)[0].strip(b" ")
    if not stored or not _OCTAL.fullmatch(stored):
        return False
    want = int(stored, 8)
    blank = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(blank)
    signed = unsigned - 256 * sum(1 for b in blank if b > 127)
    return want in (unsigned, signed)


def _with_checksum(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def _clamp_field(
    block: bytearray, start: int, epoch: int, what: str, where: Callable[[], str]
) -> bool:
    """Clamp the 12-byte time field at ``start`` to ``epoch``; whether it changed."""
    if _num(bytes(block[start : start + 12]), what, where) <= epoch:
        return False
    block[start : start + 12] = b"%011o\0" % epoch
    return True


def _pax_records(data: bytes, where: Callable[[], str]) -> list[tuple[bytes, bytes]]:
    """The ``LEN key=value\\n`` records of a PAX header, strictly (the lengths must add up)."""
    out: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos < len(data):
        if data[pos:].strip(b"\0") == b"":
            # NUL padding after the last record (some writers round the data up).
            break
        m = _PAX_RECORD.match(data, pos)
        if m is None:
            raise GateError(f"{where()}: a PAX record at byte {pos} of the header has no length.")
        length = int(m.group(1))
        record = data[pos : pos + length]
        if len(record) != length or not record.endswith(b"\n") or b"=" not in record:
            raise GateError(f"{where()}: the PAX record at byte {pos} of the header is malformed.")
        key, _, value = record[m.end() - pos : -1].partition(b"=")
        out.append((key, value))
        pos += length
    return out


def _pax_encode(records: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray()
    for key, value in records:
        body = b" " + key + b"=" + value + b"\n"
        n = len(body) + 1
        while len(str(n)) + len(body) != n:
            n = len(str(n)) + len(body)
        out += str(n).encode() + body
    return bytes(out)


def _pax_time_after(value: bytes, epoch: int) -> bool:
    """Whether a PAX time (``SECONDS[.FRACTION]``, maybe negative) is later than ``epoch``."""
    m = re.fullmatch(rb"(-?)([0-9]{1,19})(?:\.([0-9]{0,19}))?", value)
    if m is None:
        return False  # not a time either reader would use: left as it is
    if m.group(1):
        return False
    secs = int(m.group(2))
    return secs > epoch or (secs == epoch and bool((m.group(3) or b"").strip(b"0")))


@dataclass
class LayerStats:
    """What one pass changed, for the report, and whether the layer holds only model files."""

    members: int = 0
    clamped: int = 0
    #: The image's model paths (``models.image_paths``, no leading or trailing ``/``); with
    #: them :attr:`model_only` says whether every entry is below one of them (or is one), or a
    #: directory on the way to one.
    model_paths: tuple[str, ...] = ()
    model_only: bool = True

    def note(self, name: str, kind: bytes) -> None:
        """Account for one entry (its cleaned name, its type flag)."""
        if not self.model_only:
            return
        if not self.model_paths:
            self.model_only = False
            return
        for m in self.model_paths:
            if name == m or name.startswith(m + "/"):
                return
            if kind == b"5" and (m + "/").startswith(name + "/"):
                return  # a directory on the way to the model path
        self.model_only = False


#: Files of at least this many bytes whose start is binary are left out of a slim layer.
SLIM_MIN: Final = 1 << 20


def trivy_binary(head: bytes) -> bool:
    """Whether Trivy's secret scanner takes a file starting with ``head`` for a binary and skips
    it (``utils.IsBinary``: a control byte in the first 300 bytes; ``.pyc`` files are scanned
    all the same)."""
    return any(b < 7 or b == 11 or 13 < b < 27 or 27 < b < 0x20 or b == 0x7F for b in head[:300])


@dataclass(frozen=True)
class SlimLayerFile:
    """A finished :class:`SlimLayer`: its file, digest (= its own diff_id) and size, and the
    diff_id of the layer it was made from."""

    path: Path
    digest: str
    size: int
    layer_diff_id: str

    def descriptor(self) -> dict[str, Any]:
        """Its OCI layer descriptor (uncompressed)."""
        return {"mediaType": _UNCOMPRESSED, "digest": self.digest, "size": self.size}


class SlimLayer:
    """A layer's tar without the contents Trivy's secret scanner would skip: each regular file
    of :data:`SLIM_MIN` bytes or more that starts binary (not a ``.pyc``) keeps its header with
    size 0, everything else is copied. The image gate's secret scan reads it in place of a layer
    that holds only model files (:mod:`modelseal.imagegate.secrets`), so the weights are not
    decompressed again for a scan that would skip them. Written into a new file; dropped (the
    file removed) as soon as the layer turns out to hold something else."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                           0o600)  # fmt: skip
        self._hash = hashlib.sha256()
        self.size = 0

    @property
    def active(self) -> bool:
        """Whether it is still being written."""
        return self._fd >= 0

    def write(self, data: bytes) -> None:
        """Append ``data`` (nothing once dropped)."""
        if self._fd < 0:
            return
        self._hash.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def member(self, hdr: bytes, size: int, name: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Pass a regular member's data ``chunks`` (padding included) through, writing the
        member (``hdr`` is its final header block, ``size`` its data's length, ``name`` its
        cleaned name) to the slim layer as the class doc says. (A member whose name readers
        could take for another one never gets here: the layer is not model-only then, and its
        slim layer is dropped.)"""
        if self._fd < 0:
            yield from chunks
            return
        first = next(chunks, b"")
        drop = size >= SLIM_MIN and not name.endswith(".pyc") and trivy_binary(first)
        if drop:
            empty = bytearray(hdr)
            empty[124:136] = b"%011o\0" % 0
            self.write(_with_checksum(empty))
        else:
            self.write(hdr)
            self.write(first)
        yield first
        for chunk in chunks:
            if not drop:
                self.write(chunk)
            yield chunk

    def digest(self) -> str:
        """The sha256 of what was written (its diff_id: it is not compressed)."""
        return "sha256:" + self._hash.hexdigest()

    def close(self) -> None:
        """Close the file (kept)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def drop(self) -> None:
        """Stop writing and remove the file."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._fd = -2


#: What :func:`_clean_name` gives a name that climbs out of the root: no model path.
_OUTSIDE: Final = "\0outside"


def _clean_name(raw: bytes) -> str:
    """A member name as Go's and Python's tar readers resolve it (``path.Clean``, relative to
    the root); one whose ``..`` climbs above the root is :data:`_OUTSIDE`."""
    name = go_clean(raw.decode("utf-8", "surrogateescape").lstrip("/"))
    if name == ".." or name.startswith("../"):
        return _OUTSIDE
    return "" if name == "." else name


def clamp_tar(
    src: IO[bytes], epoch: int, layer: str, stats: LayerStats | None = None,
    stand_ins: StandIns | None = None, slim: SlimLayer | None = None,
) -> Iterator[bytes]:  # fmt: skip
    """The tar stream of ``src`` with every time later than ``epoch`` clamped to it (see the
    module doc), as chunks; data blocks pass through unchanged, except that each of this run's
    ``stand_ins`` is replaced by its model file (:mod:`modelseal.imagebuild.standins`). ``slim``
    gets the layer without what a secret scan skips (:class:`SlimLayer`) while ``stats`` says
    it holds only model files."""
    stats = stats if stats is not None else LayerStats()

    def out(*data: bytes) -> Iterator[bytes]:
        for d in data:
            if slim is not None:
                slim.write(d)
            yield d

    def emit(
        final: bytes, size: int, cleaned: str, slim_member: bool, chunks: Iterator[bytes]
    ) -> Iterator[bytes]:
        """A member: its final header block, then its data ``chunks`` (padding included), each
        written to the slim layer too — a regular one through :meth:`SlimLayer.member`."""
        yield final
        if slim is not None and slim_member:
            yield from slim.member(final, size, cleaned, chunks)
        elif slim is not None and slim.active:
            slim.write(final)
            for chunk in chunks:
                slim.write(chunk)
                yield chunk
        else:
            yield from chunks

    offset = 0
    pax_size: int | None = None
    # The next entry's names besides its header's: a PAX path, a GNU long name (which Go's and
    # Python's readers prefer), and whether something else could rename it (a sparse record).
    pax_path: bytes | None = None
    gnu_name: bytes | None = None
    odd_name = False

    def where(at: int | None = None) -> str:
        return f"layer {layer}, tar header at byte {offset if at is None else at}"

    def read_exact(n: int) -> bytes:
        data = src.read(n)
        while len(data) < n:
            more = src.read(n - len(data))
            if not more:
                raise GateError(f"{where()}: the archive ends inside an entry (truncated layer).")
            data += more
        return data

    def copy(n: int) -> Iterator[bytes]:
        left = n
        while left:
            chunk = src.read(min(left, _CHUNK))
            if not chunk:
                raise GateError(f"{where()}: the archive ends inside an entry (truncated layer).")
            left -= len(chunk)
            yield chunk

    while True:
        block = src.read(_BLOCK)
        while 0 < len(block) < _BLOCK:
            more = src.read(_BLOCK - len(block))
            if not more:
                break
            block += more
        if len(block) < _BLOCK:
            raise GateError(f"{where()}: the archive ends without its end-of-archive blocks.")
        if block == bytes(_BLOCK):
            # End of archive: the rest (the second zero block, padding) as it is.
            yield from out(block)
            while chunk := src.read(_CHUNK):
                yield from out(chunk)
            return
        if not _checksum_ok(block):
            raise GateError(f"{where()}: the header checksum does not match (malformed header).")
        stats.members += 1
        if stats.members > MAX_MEMBERS:
            raise GateError(f"{where()}: the layer has more than {MAX_MEMBERS} members.")
        kind = block[156:157]
        size = _num(block[124:136], "size", where)
        if size < 0:
            raise GateError(f"{where()}: the size field is negative.")
        hdr = bytearray(block)
        if kind in (b"x", b"g"):
            if size > MAX_PAX:
                raise GateError(f"{where()}: a PAX header of {size} bytes (over {MAX_PAX}).")
            start = offset
            offset += _BLOCK
            padded = size + (-size % _BLOCK)
            original = read_exact(padded)
            data = original[:size]
            records = _pax_records(data, functools.partial(where, start))
            new = [
                (k, b"%d" % epoch if k.decode("latin-1") in _PAX_TIMES and _pax_time_after(v, epoch) else v)
                for k, v in records
            ]  # fmt: skip
            for k, _v in records:
                if k.startswith(b"GNU.sparse.") or (kind == b"g" and k == b"path"):
                    odd_name = True
            if kind == b"x":
                for k, v in records:
                    if k == b"path":
                        pax_path = v
                    if k == b"size":
                        if not re.fullmatch(rb"[0-9]{1,20}", v):
                            raise GateError(
                                f"{where(start)}: the PAX size {v[:24]!r} is not a number."
                            )
                        pax_size = int(v)
            offset += padded  # offsets count the input's bytes
            if new == records:
                yield from out(block, original)
                continue
            stats.clamped += 1
            data = _pax_encode(new)
            hdr[124:136] = b"%011o\0" % len(data)
            yield from out(_with_checksum(hdr), data + bytes(-len(data) % _BLOCK))
            continue
        if kind in (b"L", b"K"):
            if size > MAX_PAX:
                raise GateError(f"{where()}: a GNU long name of {size} bytes (over {MAX_PAX}).")
            yield from out(block)
            offset += _BLOCK
            padded = size + (-size % _BLOCK)
            data = read_exact(padded)
            if kind == b"L":
                gnu_name = data[:size].split(b"\0", 1)[0]
            yield from out(data)
            offset += padded
            continue
        plain = not odd_name and (pax_path is None or gnu_name is None)
        if gnu_name is not None:
            name = gnu_name
        elif pax_path is not None:
            name = pax_path
        else:
            name = block[:100].split(b"\0", 1)[0]
            if block[257:263] == b"ustar\0" and block[345] != 0:
                name = block[345:500].split(b"\0", 1)[0] + b"/" + name
        pax_path = gnu_name = None
        odd_name = False
        cleaned = _clean_name(name)
        stats.note(cleaned, kind)
        if not plain:
            stats.model_only = False  # readers could disagree on where it is
        if slim is not None and slim.active and not stats.model_only:
            slim.drop()
        changed = _clamp_field(hdr, 136, epoch, "mtime", where)
        if block[257:265] == b"ustar  \0":
            # An old GNU header keeps atime and ctime where ustar has its name prefix.
            for at in (345, 357):
                if any(block[at : at + 12].strip(b"\0")):
                    changed = _clamp_field(hdr, at, epoch, "atime/ctime", where) or changed
        if changed:
            stats.clamped += 1
        sized_by_pax = pax_size is not None
        if pax_size is not None:
            size, pax_size = pax_size, None
        if kind in _HEADER_ONLY and size:
            raise GateError(
                f"{where()}: an entry of type {kind.decode('latin-1')!r} declares {size} bytes "
                "of data (tar readers disagree on whether to read them)."
            )
        padded = size + (-size % _BLOCK)
        slim_member = slim is not None and slim.active and kind in _REGULAR and not sized_by_pax
        if stand_ins is not None and size == STAND_IN_SIZE and kind in _REGULAR:
            data = read_exact(padded)
            item = stand_ins.lookup(data[:size], where())
            if item is not None:
                if sized_by_pax:
                    raise GateError(f"{where()}: a model stand-in sized by a PAX record.")
                with stand_ins.open(item, where()) as chunks:
                    real_size = item.size
                    # The header BuildKit writes for the real file: only the size differs.
                    hdr[124:136] = b"%011o\0" % real_size
                    yield from emit(
                        _with_checksum(hdr), real_size, cleaned, slim_member,
                        itertools.chain(chunks, (bytes(-real_size % _BLOCK),)),
                    )  # fmt: skip
            else:
                yield from out(_with_checksum(hdr) if changed else block, data)
            offset += _BLOCK + padded
            continue
        offset += _BLOCK
        yield from emit(
            _with_checksum(hdr) if changed else block, size, cleaned, slim_member, copy(padded)
        )
        offset += padded


# --- compressing into a blob -------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """A blob written into the layout."""

    digest: str
    size: int


class _BlobWriter:
    """A new file in ``blobs/sha256`` (made fresh, never through a link), hashed while written,
    renamed to its digest when complete."""

    def __init__(self, dfd: int) -> None:
        self._dfd = dfd
        self._tmp = f".finalize.{secrets.token_hex(6)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd = os.open(self._tmp, flags, 0o644, dir_fd=dfd)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def commit(self) -> Blob:
        os.close(self._fd)
        self._fd = -1
        hexd = self._hash.hexdigest()
        os.replace(self._tmp, hexd, src_dir_fd=self._dfd, dst_dir_fd=self._dfd)
        return Blob("sha256:" + hexd, self.size)

    def discard(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self._tmp, dir_fd=self._dfd)


def _gzip_header(level: int) -> bytes:
    # No name, mtime 0, OS "unknown" (255), XFL as Go's compress/gzip sets it.
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([xfl, 255])


def _compress(
    chunks: Iterator[bytes], compression: str, level: int | None, out: _BlobWriter, layer: str
) -> str:
    """Write ``chunks`` compressed into ``out``; the uncompressed stream's sha256 (the
    diff_id)."""
    diff = hashlib.sha256()
    if compression == "uncompressed":
        for chunk in chunks:
            diff.update(chunk)
            out.write(chunk)
        return "sha256:" + diff.hexdigest()
    if compression == "gzip":
        lvl = 6 if level is None else level
        comp = zlib.compressobj(lvl, zlib.DEFLATED, -15, 9)
        crc, total = 0, 0
        out.write(_gzip_header(lvl))
        for chunk in chunks:
            diff.update(chunk)
            crc = zlib.crc32(chunk, crc)
            total += len(chunk)
            out.write(comp.compress(chunk))
        out.write(comp.flush())
        out.write(crc.to_bytes(4, "little") + (total & 0xFFFFFFFF).to_bytes(4, "little"))
        return "sha256:" + diff.hexdigest()
    # zstd: the tool, fed through a pipe; its output read by a thread into the blob.
    argv = [zstd_tool(), "-q", "-c", f"-{3 if level is None else level}", "-T0", "--no-progress"]
    if level is not None and level > 19:
        argv.insert(1, "--ultra")
    proc = pipe_from(argv, None)
    assert proc.stdin is not None and proc.stdout is not None
    failed: list[BaseException] = []
    # Straight to and from the pipes' descriptors, widened to 1 MiB: through Python's buffered
    # files and 64 KiB pipes the copying cost more CPU than the compression.
    in_fd, out_fd = proc.stdin.fileno(), proc.stdout.fileno()
    widen_pipe(in_fd)
    widen_pipe(out_fd)

    def drain() -> None:
        try:
            while chunk := os.read(out_fd, _CHUNK):
                out.write(chunk)
        except BaseException as e:  # handed to the caller
            failed.append(e)
            # Nobody reads zstd's output any more: stopped, so that the writer below gets a
            # broken pipe instead of waiting for ever on a full one.
            proc.kill()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    broken = False
    try:
        try:
            for chunk in chunks:
                diff.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(in_fd, view) :]
        except BrokenPipeError:
            broken = True  # zstd is gone: its exit code (or the reader's error) says why
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
    except BaseException:
        proc.kill()
        raise
    finally:
        reader.join()
        code = proc.wait()
    if failed:
        if isinstance(failed[0], OSError):
            raise GateError(
                f"layer {layer}: writing its compressed blob failed: "
                f"{failed[0].strerror or failed[0]}."
            ) from None
        raise failed[0]
    if code != 0 or broken:
        raise GateError(f"layer {layer}: zstd exited with code {code} while compressing it.")
    return "sha256:" + diff.hexdigest()


def zstd_tool() -> str:
    """The zstd executable (a :class:`GateError` naming the setting when it is missing)."""
    try:
        return find_tool("zstd", hint="Install zstd, or set build.compression: gzip.")
    except Error as e:
        raise GateError(
            f"build.compression: zstd needs the zstd tool: {e.message}", hint=e.hint
        ) from None


# --- the layout --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finalized:
    """What :func:`finalize_layout` made."""

    top_digest: str
    #: The top descriptor's media type (a manifest or an index).
    top_media_type: str
    #: platform → (new manifest digest, new config digest)
    manifests: Mapping[str, tuple[str, str]]
    #: diff_id BuildKit wrote → diff_id of the finalized layer (only those that changed)
    diff_ids: Mapping[str, str]
    #: platform → the finalized layers (digests) that hold only files below ``model_paths``
    model_layers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    layers: int = 0
    clamped: int = 0
    #: finalized layer digest → the slim layer the secret scan reads instead (model-only layers)
    slims: Mapping[str, SlimLayerFile] = field(default_factory=dict)


def _dump(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


class _Finalizer:
    def __init__(
        self, layout: OciLayout, compression: str, level: int | None, force: bool, epoch: int,
        model_paths: tuple[str, ...] = (), stand_ins: StandIns | None = None,
        slim_dir: Path | None = None, base_layers: Callable[[str], int | None] | None = None,
    ) -> None:  # fmt: skip
        self.layout = layout
        self.base_layers = base_layers
        self.stand_ins = stand_ins
        self.slim_dir = slim_dir
        #: finalized layer digest → its slim layer (:class:`SlimLayer`), for model-only layers
        self.slims: dict[str, SlimLayerFile] = {}
        self.compression = compression
        self.level = level
        self.force = force
        self.epoch = epoch
        self.blobs = layout.path / "blobs" / "sha256"
        #: old layer digest → (new descriptor fields, old diff_id, new diff_id)
        self.done: dict[str, tuple[dict[str, Any], str, str]] = {}
        self.stats = LayerStats()
        self.layers = 0
        self.obsolete: set[str] = set()
        self.keep: set[str] = set()
        self.model_paths = model_paths
        #: finalized layer digests that hold only model files
        self.model_only: set[str] = set()

    def write_json(self, data: Any) -> Blob:
        raw = _dump(data)
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        fsio.write_bytes_atomic(self.layout.blob(digest), raw, mode=0o644)
        self.keep.add(digest)
        return Blob(digest, len(raw))

    def layer(self, desc: dict[str, Any], old_diff: str, patch: bool) -> tuple[dict[str, Any], str]:
        """The finalized descriptor and diff_id of one layer."""
        digest = str(desc.get("digest"))
        if digest in self.done:
            new_desc, _, new_diff = self.done[digest]
            return dict(new_desc), new_diff
        media = str(desc.get("mediaType", ""))
        path = self.layout.blob(digest)
        name = digest[7:19]
        stats = LayerStats(model_paths=self.model_paths if patch else ())
        slim = (
            SlimLayer(self.slim_dir / f"slim-{secrets.token_hex(8)}.tar")
            if patch and self.slim_dir is not None and self.model_paths else None
        )  # fmt: skip
        with fsio.directory(self.blobs) as dfd:
            out = _BlobWriter(dfd)
            try:
                with open_layer(path, media) as stream:
                    chunks: Iterator[bytes] = (
                        clamp_tar(stream, self.epoch, name, stats, self.stand_ins, slim) if patch
                        else iter(lambda: stream.read(_CHUNK), b"")
                    )  # fmt: skip
                    new_diff = _compress(chunks, self.compression, self.level, out, name)
                blob = out.commit()
            except BaseException:
                out.discard()
                if slim is not None:
                    slim.drop()
                raise
        only_models = patch and stats.model_only and stats.members > 0
        if slim is not None:
            # (A slim layer is dropped as soon as its layer holds something else.)
            if slim.active and only_models:
                slim.close()
                self.slims[blob.digest] = SlimLayerFile(
                    slim.path, slim.digest(), slim.size, new_diff
                )
            else:
                slim.drop()
        if not patch and new_diff != old_diff:
            raise GateError(
                f"layer {digest}: its content's digest {new_diff} is not the diff_id {old_diff} "
                "the image config lists."
            )
        self.stats.members += stats.members
        self.stats.clamped += stats.clamped
        self.layers += 1
        new_desc = {**desc, "mediaType": _MEDIA[self.compression], "digest": blob.digest,
                    "size": blob.size}  # fmt: skip
        self.done[digest] = (new_desc, old_diff, new_diff)
        if only_models:
            self.model_only.add(blob.digest)
        self.keep.add(blob.digest)
        if digest != blob.digest:
            self.obsolete.add(digest)
        return dict(new_desc), new_diff

    def model_layers_of(self, manifest: str) -> tuple[str, ...]:
        """The layers of the finalized ``manifest`` that hold only model files."""
        layers = self.layout.read_json(manifest).get("layers") or []
        return tuple(str(d["digest"]) for d in layers if d.get("digest") in self.model_only)

    def manifest(self, digest: str, platform: str = "unknown") -> tuple[Blob, str]:
        """Finalize one image manifest (of ``platform``); its new blob and its new config's
        digest."""
        m = self.layout.read_json(digest)
        config_desc = m.get("config")
        layers = m.get("layers")
        if not isinstance(config_desc, dict) or not isinstance(layers, list):
            raise GateError(f"{self.layout.path}: manifest {digest} has no config or layers.")
        config = self.layout.read_json(str(config_desc.get("digest")))
        rootfs = config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
            raise GateError(
                f"{self.layout.path}: the config of manifest {digest} lists "
                f"{len(diff_ids) if isinstance(diff_ids, list) else 'no'} diff_ids for "
                f"{len(layers)} layers."
            )
        new_layers, new_diffs = [], []
        diverged = False
        # The base image's layers, when known: every layer after them is the build's, also one
        # BuildKit took compressed from a cache (another build's on the builder, an imported
        # cache) — with that build's timestamps. Unknown: the build's start at the first layer
        # BuildKit exported uncompressed (a cached compressed layer before it is kept as is).
        base = self.base_layers(platform) if self.base_layers is not None else None
        if base is not None and not 0 <= base <= len(layers):
            raise GateError(
                f"{self.layout.path}: manifest {digest} has {len(layers)} layers, fewer than "
                f"the {base} of its base image."
            )
        for k, (desc, old_diff) in enumerate(zip(layers, diff_ids, strict=True)):
            if not isinstance(desc, dict):
                raise GateError(
                    f"{self.layout.path}: manifest {digest} lists a layer that is not an object."
                )
            media = str(desc.get("mediaType", ""))
            diverged = k >= base if base is not None else diverged or uncompressed_media(media)
            target = _MEDIA[self.compression]
            if diverged:
                d, diff = self.layer(desc, str(old_diff), patch=True)
            elif self.force and media != target:
                d, diff = self.layer(desc, str(old_diff), patch=False)
            else:
                d, diff = dict(desc), str(old_diff)
                self.keep.add(str(desc.get("digest")))
            new_layers.append(d)
            new_diffs.append(diff)
        new_config = {**config, "rootfs": {**rootfs, "diff_ids": new_diffs}}  # type: ignore[dict-item]
        cblob = self.write_json(new_config)
        old_config = str(config_desc.get("digest"))
        if cblob.digest != old_config:
            self.obsolete.add(old_config)
        new_m = {**m, "config": {**config_desc, "digest": cblob.digest, "size": cblob.size},
                 "layers": new_layers}  # fmt: skip
        mblob = self.write_json(new_m)
        if mblob.digest != digest:
            self.obsolete.add(digest)
        return mblob, cblob.digest


def finalize_layout(
    path: Path,
    top_digest: str,
    *,
    compression: str,
    level: int | None,
    force: bool,
    epoch: int,
    model_paths: tuple[str, ...] = (),
    stand_ins: StandIns | None = None,
    slim_dir: Path | None = None,
    base_layers: Callable[[str], int | None] | None = None,
) -> Finalized:
    """Finalize the image ``top_digest`` of the OCI layout at ``path`` in place (see the
    module doc); ``index.json`` then lists the finalized image only, and the blobs BuildKit
    wrote that it no longer uses are removed. ``model_paths`` (``models.image_paths``): the
    result says which new layers hold only files below them (:attr:`Finalized.model_layers`).
    ``stand_ins``: the model stand-ins of this run, replaced by their files in the new layers.
    ``slim_dir``: where to write a :class:`SlimLayer` of each new layer that holds only model
    files (:attr:`Finalized.slims`). ``base_layers(platform)``: how many layers the base image
    has (None: not known); every layer after them is finalized, whatever its compression."""
    if compression not in _MEDIA:
        raise GateError(f"build.compression {compression!r} is not gzip, zstd or uncompressed.")
    layout = OciLayout(path)
    tops = [d for d in layout.top_descriptors() if d.digest == top_digest]
    if len(tops) != 1:
        raise GateError(f"{path}/index.json does not list the built image {top_digest} once.")
    top = tops[0]
    fin = _Finalizer(
        layout, compression, level, force, epoch, model_paths, stand_ins, slim_dir, base_layers
    )
    media = top.media_type or str(layout.read_json(top_digest).get("mediaType", ""))
    manifests: dict[str, tuple[str, str]] = {}
    model_layers: dict[str, tuple[str, ...]] = {}
    if media in INDEX_TYPES:
        index = layout.read_json(top_digest)
        children = index.get("manifests")
        if not isinstance(children, list) or not 0 < len(children) <= MAX_MANIFESTS:
            raise GateError(
                f"{path}: index {top_digest} lists no manifests, or over {MAX_MANIFESTS}."
            )
        new_children = []
        for child in children:
            if not isinstance(child, dict) or child.get("mediaType") not in MANIFEST_TYPES:
                raise GateError(
                    f"{path}: index {top_digest} lists something other than an image manifest "
                    "(an attestation?); modelseal builds with --provenance=false --sbom=false."
                )
            plat = child.get("platform") or {}
            platform = "/".join(
                str(p) for p in (plat.get("os"), plat.get("architecture"), plat.get("variant")) if p
            ) if isinstance(plat, dict) else "unknown"  # fmt: skip
            old = str(child.get("digest"))
            mblob, config = fin.manifest(old, platform or "unknown")
            manifests[platform or "unknown"] = (mblob.digest, config)
            model_layers[platform or "unknown"] = fin.model_layers_of(mblob.digest)
            new_children.append({**child, "digest": mblob.digest, "size": mblob.size})
        tblob = fin.write_json({**index, "manifests": new_children})
        if tblob.digest != top_digest:
            fin.obsolete.add(top_digest)
    elif media in MANIFEST_TYPES:
        tblob, config = fin.manifest(top_digest, top.platform or "unknown")
        manifests[top.platform or "unknown"] = (tblob.digest, config)
        model_layers[top.platform or "unknown"] = fin.model_layers_of(tblob.digest)
    else:
        raise GateError(f"{path}: the built image {top_digest} has media type {media!r}.")
    old_index = layout.index()
    entries = []
    for d in old_index.get("manifests", []):
        if isinstance(d, dict) and d.get("digest") == top_digest:
            entries.append({**d, "digest": tblob.digest, "size": tblob.size})
    new_index = {**old_index, "manifests": entries}
    fsio.write_bytes_atomic(path / "index.json", _dump(new_index), mode=0o644)
    with fsio.directory(fin.blobs) as dfd:
        for digest in sorted(fin.obsolete - fin.keep):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(digest[7:], dir_fd=dfd)
    diff_map = {old: new for _, old, new in fin.done.values() if old != new}
    return Finalized(
        top_digest=tblob.digest, top_media_type=media, manifests=manifests, diff_ids=diff_map,
        layers=fin.layers, clamped=fin.stats.clamped,
        model_layers={k: v for k, v in model_layers.items() if v}, slims=fin.slims,
    )  # fmt: skip
