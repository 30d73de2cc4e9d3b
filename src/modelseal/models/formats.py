"""Model format detection from the bytes, never from the file name.

Everything here reads bounded headers: a few KiB at the start of a file, a zip's central
directory and two bytes of each member, a numpy header, the first fields of a protobuf, a
bounded prefix of a compressed stream. Nothing is ever imported, unpickled, or executed, and no
tensor data is read, so memory stays flat whatever the file size and a malformed file can only
ever make detection answer :attr:`Format.UNKNOWN` (or a more cautious format), never crash.

The readers it builds on live beside it: :mod:`~modelseal.models.bytesource` (bounded reads),
:mod:`~modelseal.models.protobuf` (the wire format), :mod:`~modelseal.models.npy` (numpy
headers) and :mod:`~modelseal.models.decompress` (joblib's codecs).
"""

from __future__ import annotations

import io
import lzma
import os
import pickletools
import re
import stat
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Final

from modelseal.errors import ConfigError
from modelseal.findings import PicklableFrozen
from modelseal.models.bytesource import ByteSource
from modelseal.models.decompress import Codec, decompress_source_prefix, sniff_codec
from modelseal.models.issues import Format, short
from modelseal.models.npy import NPY_MAGIC, parse_npy_header
from modelseal.models.protobuf import WIRE_LEN, WIRE_VARINT, ProtoError, iter_proto_fields

#: Bytes read at the start of every file to decide its format.
HEAD_BYTES: Final = 4096
#: A protocol 0/1 pickle (text) is recognized by walking its opcodes over at most this prefix.
PICKLE_WINDOW: Final = 64 << 10
#: How far into a pickle the joblib array-wrapper marker is looked for.
JOBLIB_MARKER_WINDOW: Final = 4 << 20
#: Decompressed bytes inspected to tell a compressed joblib pickle from other compressed data.
DECOMPRESS_PREFIX: Final = 64 << 10
#: The safetensors library's own bound on the JSON header.
SAFETENSORS_MAX_HEADER: Final = 100_000_000
#: zipfile builds one object per member from the central directory: bound both.
MAX_ZIP_MEMBERS: Final = 200_000
MAX_ZIP_CENTRAL_DIRECTORY: Final = 64 << 20
#: Member bytes (decompressed) read in all to sniff zip members; members past it are listed
#: as possible pickles unchecked (fail closed) rather than read.
ZIP_SNIFF_BUDGET: Final = 64 << 20
#: Zip methods whose members zipfile inflates in bounded steps. For bz2 and lzma members it
#: decompresses every compressed byte of a read at once: a 4 KiB read of a bz2 member can
#: inflate to gigabytes. No model writer uses them; such members are never read.
INFLATABLE_ZIP_METHODS: Final = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})

#: torch.save(_use_new_zipfile_serialization=False) starts with this integer, pickled.
TORCH_LEGACY_MAGIC: Final = 0x1950A86A20F9469CFC6C
#: Every joblib array wrapper class lives in this module (also under sklearn.externals).
JOBLIB_MARKER: Final = b"joblib.numpy_pickle"

_HDF5_SIGNATURE: Final = b"\x89HDF\r\n\x1a\n"
_ZIP_LOCAL: Final = b"PK\x03\x04"
_ZIP_EMPTY: Final = b"PK\x05\x06"


@dataclass(frozen=True)
class Detected(PicklableFrozen):
    """What a file (or a SavedModel directory) is, from its bytes.

    ``pickle_offset``: where a pickle stream starts in the file (0 for pickle, joblib and legacy
    torch streams; the data offset of an object-dtype ``.npy``; ``None`` when the file holds no
    pickle at a raw offset). A *compressed* joblib file has ``pickle_offset=None`` and
    ``detail["compressed"]`` naming the codec: its pickle starts at offset 0 of the
    decompressed stream (:func:`~modelseal.models.decompress.decompress_prefix`).

    ``zip_pickle_members``: for zip (and the legacy torch tar) containers, every member that is
    or may be a pickle: names ending ``.pkl``, members whose first bytes are a pickle opcode
    stream, object-dtype ``.npy`` members, and members that could not be read (fail closed).
    ``member_offsets`` gives, for each of them, where the pickle starts inside the member
    (the ``.npy`` data offset, else 0).
    """

    format: Format
    detail: Mapping[str, str] = field(default_factory=dict)
    pickle_offset: int | None = None
    zip_pickle_members: tuple[str, ...] = ()
    member_offsets: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", MappingProxyType(dict(self.detail)))
        object.__setattr__(self, "member_offsets", MappingProxyType(dict(self.member_offsets)))


#: ModelProto fields and their wire types (onnx.proto); unknown numbers are tolerated.
_ONNX_MODEL_FIELDS: Final = {
    1: WIRE_VARINT,  # ir_version
    2: WIRE_LEN,  # producer_name
    3: WIRE_LEN,  # producer_version
    4: WIRE_LEN,  # domain
    5: WIRE_VARINT,  # model_version
    6: WIRE_LEN,  # doc_string
    7: WIRE_LEN,  # graph
    8: WIRE_LEN,  # opset_import
    14: WIRE_LEN,  # metadata_props
    20: WIRE_LEN,  # training_info
    25: WIRE_LEN,  # functions
    26: WIRE_LEN,  # configuration
}


# --------------------------------------------------------------------------------------------
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
#: Opcodes a real pickle can start with: they push a value without needing anything below.
_FIRST_OPS: Final = frozenset(
    {
        "PROTO", "FRAME", "MARK", "EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "EMPTY_SET",
        "GLOBAL", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING",
        "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
        "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "NONE", "NEWTRUE",
        "NEWFALSE", "FLOAT", "BINFLOAT",
    }
)  # fmt: skip
#: Opcodes that import (find_class, the copyreg extension registry) or hand an id to
#: persistent_load: what loading runs besides building plain values.
_IMPORT_OPS: Final = frozenset(
    {"GLOBAL", "INST", "STACK_GLOBAL", "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"}
)
_CALL_OPS: Final = frozenset({"REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"})
_MEMO_OPS: Final = frozenset({"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"})
#: After a pickle opcode walk over a window cut short by the window, this many valid opcodes
#: in a row is proof enough (no text file gets that far).
_WINDOW_OPS: Final = 64
#: A string or bytes argument longer than this is stepped over by its declared length (within
#: the file), not read: a pickle behind a 2 MiB leading string is walked like any other.
_SKIP_ARG: Final = 4096
#: pickletools' codes for arguments whose length comes first: (length bytes, signed).
_LENGTH_PREFIX: Final = {
    pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, False),
}
#: Opcode byte → (name, argument descriptor, the argument's width when fixed (uint1 … float8:
#: any bytes of that width decode) else 0, whether it only serves the memo or framing).
_WALK_OPS: Final = {
    op.code.encode("latin-1")[0]: (
        op.name, op.arg, op.arg.n if op.arg is not None and op.arg.n > 0 else 0,
        op.name in _MEMO_OPS,
    )
    for op in pickletools.opcodes
}  # fmt: skip
#: Opcode byte → 1 + its argument's width for the opcodes that, once a walk keeps no more values,
#: change nothing but the count (no import, call, STOP, PROTO or variable-length argument); 0
#: for every other byte.
_NOT_PLAIN: Final = frozenset({"PROTO", "STOP"}) | _CALL_OPS | _IMPORT_OPS
_PLAIN_STEP: Final = tuple(
    1 + _WALK_OPS[b][2]
    if b in _WALK_OPS
    and (_WALK_OPS[b][1] is None or _WALK_OPS[b][2])
    and _WALK_OPS[b][0] not in _NOT_PLAIN
    else 0
    for b in range(256)
)
#: The block a walk reads at once (what :class:`ByteSource` caches anyway).
_CURSOR_BLOCK: Final = 64 << 10


@dataclass(frozen=True)
class _PickleWalk:
    """What walking the opcodes of a (prefix of a) pickle showed."""

    ops: int
    first: str | None
    stopped: bool  # reached STOP
    dangerous: bool  # an import followed by a call: runs code even without a STOP
    bad_global: bool  # a GLOBAL/INST whose names are not Python identifiers
    values: tuple[tuple[str, object], ...]  # the first few non-memo opcodes and arguments
    imported: bool = False  # an import (or persistent id) was walked
    cut: str = ""  # "window": the read budget ended the walk; "prefix": the bytes at hand did


class _Cursor:
    """Sequential reads over a :class:`ByteSource` for pickletools' argument readers, within a
    budget of bytes really read (arguments stepped over are not read)."""

    def __init__(self, src: ByteSource, budget: int) -> None:
        self.src = src
        self.pos = 0
        self.budget = budget
        self.cut = ""
        # A block of the source read ahead: most reads are a byte or eight, and going through
        # the source for each was most of a walk's time.
        self.block = b""
        self.block_start = 0

    def _short(self) -> None:
        if self.pos < self.src.size:
            self.cut = "window" if self.budget <= 0 else "prefix"

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer at the end of the file, the prefix or the budget)."""
        m = min(n, self.budget)
        if m <= 0:
            data = b""
        else:
            off = self.pos - self.block_start
            if off < 0 or off + m > len(self.block):
                # src.read(pos, BLOCK)[:m] is src.read(pos, m): both stop at the end.
                self.block = self.src.read(self.pos, _CURSOR_BLOCK)
                self.block_start = self.pos
                off = 0
            data = self.block[off : off + m]
        self.pos += len(data)
        self.budget -= len(data)
        if len(data) < n:
            self._short()
        return data

    def readline(self) -> bytes:
        """Bytes up to and including the next newline, within the budget."""
        out = b""
        while True:
            piece = self.src.read(self.pos, min(256, self.budget))
            i = piece.find(b"\n")
            if i >= 0:
                piece = piece[: i + 1]
            out += piece
            self.pos += len(piece)
            self.budget -= len(piece)
            if i >= 0:
                return out
            if not piece:
                self._short()
                return out


def _walk_pickle(
    data: bytes, *, max_values: int | None = None, complete: bool = True
) -> _PickleWalk:
    """Walk opcodes over ``data`` (the whole stream, or a prefix of an unknown longer one when
    not ``complete``); see :func:`_walk_source`."""
    return _walk_source(
        _Prefix(data, len(data) if complete else 1 << 62), limit=len(data) + 1,
        max_values=max_values,
    )  # fmt: skip


def _walk_source(
    src: ByteSource, *, limit: int = PICKLE_WINDOW, max_values: int | None = None
) -> _PickleWalk:
    """Walk opcodes from offset 0 of ``src`` until STOP, an invalid opcode or argument, an
    import followed by a call, or ``limit`` bytes read. Long string and bytes arguments are
    stepped over by their declared length (which must lie within the file), not read.

    ``max_values``: stop once that many non-memo opcodes were seen (callers that only look at
    the first values need not walk further).
    """
    cur = _Cursor(src, limit)
    ops = 0
    first: str | None = None
    stopped = dangerous = bad_global = imported = False
    values: list[tuple[str, object]] = []
    try:
        while True:
            if len(values) >= 4:
                # A run of plain opcodes (floats, ints, appends, memo) within the block and the
                # budget: each only counts. The rest, and what runs past either, go below.
                block, i = cur.block, cur.pos - cur.block_start
                if i >= 0:
                    end = min(len(block), i + cur.budget)
                    run_start = i
                    while i < end:
                        step = _PLAIN_STEP[block[i]]
                        if not step or i + step > end:
                            break
                        i += step
                        ops += 1
                    cur.pos += i - run_start
                    cur.budget -= i - run_start
            # The opcode byte: cur.read(1) inlined (the walk's hot path, ~10^5 times a scan).
            off = cur.pos - cur.block_start
            if cur.budget > 0 and 0 <= off < len(cur.block):
                byte = cur.block[off]
                cur.pos += 1
                cur.budget -= 1
            else:
                code = cur.read(1)
                if not code:
                    break
                byte = code[0]
            entry = _WALK_OPS.get(byte)
            if entry is None:
                break
            name, desc, width, memo = entry
            arg: object = None
            if width and name != "PROTO" and (memo or len(values) >= 4):
                # A fixed-width value that is not kept: the bytes need only be there (given
                # fewer, the reader would raise ValueError, which ends the walk here too).
                off = cur.pos - cur.block_start
                if cur.budget >= width and off >= 0 and off + width <= len(cur.block):
                    cur.pos += width
                    cur.budget -= width
                elif len(cur.read(width)) < width:
                    break
            elif desc is not None and desc.n in _LENGTH_PREFIX:
                size_width, signed = _LENGTH_PREFIX[desc.n]
                start = cur.pos
                raw = cur.read(size_width)
                if len(raw) < size_width:
                    break
                n = int.from_bytes(raw, "little", signed=signed)
                if n < 0:
                    break
                if n > _SKIP_ARG:
                    if cur.pos + n > src.size:
                        break  # runs past the end of the file: the unpickler fails here
                    cur.pos += n
                else:
                    cur.pos = start
                    cur.budget += size_width
                    arg = desc.reader(cur)  # type: ignore[arg-type]  # read and readline
            elif desc is not None:
                arg = desc.reader(cur)  # type: ignore[arg-type]  # read and readline
            ops += 1
            if first is None:
                first = name
            if name == "PROTO" and not (isinstance(arg, int) and arg <= 5):
                ops -= 1
                break
            if not memo and len(values) < 4:
                values.append((name, arg))
                if max_values is not None and len(values) >= max_values:
                    break
            if name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                if not (_IDENT.fullmatch(module) and _IDENT.fullmatch(attr)):
                    bad_global = True
                    break
            if name in _CALL_OPS and imported:
                dangerous = True
                break  # nothing further changes the answer
            if name in _IMPORT_OPS:
                imported = True
            if name == "STOP":
                stopped = True
                break
    except (ValueError, EOFError, OverflowError, struct.error, MemoryError, UnicodeError):
        # Malformed, or cut short by the window: what was walked so far is the answer.
        pass
    return _PickleWalk(ops, first, stopped, dangerous, bad_global, tuple(values), imported,
                       cur.cut)  # fmt: skip


#: The walk of bytes whose first opcode no pickle starts with: nothing to walk.
_NO_WALK: Final = _PickleWalk(0, None, False, False, False, ())


def _is_text_pickle(walk: _PickleWalk) -> bool:
    """Whether a walk over data NOT starting with PROTO shows a protocol 0/1 pickle.

    Conservative, because such a pickle is text: it must start with a value-pushing opcode,
    name only identifiers in GLOBAL/INST, and either reach STOP, or import and then call
    (the unpickler runs that before noticing any later garbage), or keep going for
    :data:`_WINDOW_OPS` opcodes until the window ends.
    """
    if walk.first not in _FIRST_OPS or walk.bad_global:
        return False
    if walk.stopped:
        return walk.ops >= 2
    return walk.dangerous or (walk.cut != "" and walk.ops >= _WINDOW_OPS)


def _runs_code_from_start(walk: _PickleWalk) -> bool:
    """Whether the file is a pickle from offset 0 that imports and calls, or imports and stops
    (or is cut short by the window after :data:`_WINDOW_OPS` valid opcodes), whatever other
    format its bytes also match: ``pickle.load`` runs it. A pickle that only builds plain
    values is harmless, and other formats' headers happen to start like one (a safetensors
    header length ``(.``); a lone GLOBAL line is what a text file may look like."""
    if walk.first not in _FIRST_OPS or walk.bad_global:
        return False
    return (
        walk.dangerous
        or (walk.imported and walk.stopped)
        or (walk.cut == "window" and walk.ops >= _WINDOW_OPS)
    )


def _is_legacy_torch_magic(walk: _PickleWalk) -> bool:
    values = walk.values
    return (
        len(values) >= 2
        and values[0][0] in ("LONG", "LONG1", "LONG4", "INT")
        and values[0][1] == TORCH_LEGACY_MAGIC
        and values[1][0] == "STOP"
    )


def _starts_proto(data: bytes) -> bool:
    """Whether ``data`` starts with a PROTO opcode pickle accepts (0..5; the pickler only
    writes it for protocol 2+)."""
    return len(data) >= 2 and data[0] == 0x80 and data[1] <= 5


def looks_like_pickle(data: bytes, *, complete: bool) -> bool:
    """Whether ``data`` (a file's or member's first bytes) starts a pickle stream.

    ``complete``: ``data`` is the whole stream, not a prefix. Protocol 2+ is recognized by its
    PROTO opcode; protocol 0/1 by walking opcodes (see :func:`_is_text_pickle`).
    """
    if _starts_proto(data):
        return True
    return _is_text_pickle(_walk_pickle(data, complete=complete))


def _pickle_protocol(data: bytes) -> str:
    return str(data[1]) if data[:1] == b"\x80" and len(data) > 1 else "0-1"


# --------------------------------------------------------------------------------------------
# Containers: zip, tar


_NO_EOCD: Final = "no end-of-central-directory record"


def _zip_bounds_problem(src: ByteSource) -> str | None:
    """Check the end-of-central-directory record before zipfile builds its member list."""
    tail_len = min(src.size, 65557 + 20)
    tail = src.read(src.size - tail_len, tail_len)
    i = tail.rfind(_ZIP_EMPTY)
    if i < 0 or len(tail) < i + 22:
        return _NO_EOCD
    entries, cd_size = struct.unpack("<HI", tail[i + 10 : i + 16])
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:
        loc = tail.rfind(b"PK\x06\x07", 0, i)
        if loc >= 0 and len(tail) >= loc + 20:
            (eocd64,) = struct.unpack("<Q", tail[loc + 8 : loc + 16])
            rec = src.read(eocd64, 56)
            if len(rec) == 56 and rec[:4] == b"PK\x06\x06":
                entries, cd_size = struct.unpack("<QQ", rec[32:48])
    if entries > MAX_ZIP_MEMBERS:
        return f"{entries} members (more than {MAX_ZIP_MEMBERS})"
    if cd_size > MAX_ZIP_CENTRAL_DIRECTORY:
        return f"{cd_size}-byte central directory"
    return None


#: Bytes at the end of a file where zipfile looks for the end-of-central-directory record
#: (a 64 KiB comment at most, the 22-byte record, a ZIP64 locator before it).
ZIP_TAIL: Final = 65557 + 20


def zip_tail(tail: bytes) -> bool:
    """Whether ``tail`` (the last :data:`ZIP_TAIL` bytes of a file, or all of a smaller one)
    ends a zip archive holding members, as zipfile finds one: an end-of-central-directory
    record whose directory lies before it (its first entry's signature checked when the
    directory is within ``tail``). Cheap enough for every file of an image."""
    i = tail.rfind(_ZIP_EMPTY)
    while i >= 0:
        rec = tail[i : i + 22]
        if len(rec) == 22:
            disk, cd_disk, here, entries, cd_size, _cd_off, _ = struct.unpack("<HHHHIIH", rec[4:])
            if entries and (disk, cd_disk) == (0, 0) and here == entries:
                if cd_size == 0xFFFFFFFF or entries == 0xFFFF:
                    return True  # ZIP64: zipfile decides
                start = i - cd_size
                if start < 0 and len(tail) >= ZIP_TAIL:
                    return True  # a directory larger than the tail: zipfile decides
                if start >= 0 and tail[start : start + 4] == b"PK\x01\x02":
                    return True
        i = tail.rfind(_ZIP_EMPTY, 0, i)
    return False


#: Errors zipfile raises on hostile archives, besides BadZipFile.
ZIP_ERRORS: Final = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    ValueError,
    OSError,
    EOFError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    KeyError,
    IndexError,
    OverflowError,
    UnicodeError,
    zlib.error,
    lzma.LZMAError,
    MemoryError,
)


@dataclass(frozen=True)
class _ZipLayout:
    format: Format
    detail: dict[str, str]
    raw_prefixes: tuple[str, ...]  # members never unpickled (torch raw storages)


def _torch_roots(names: list[str], leaf: str) -> list[str]:
    return sorted(
        {n[: -len(leaf) - 1] for n in names if n.endswith("/" + leaf) and n.count("/") == 1}
    )


def _zip_layout(names: list[str]) -> _ZipLayout:
    """Which zip-based format a member list is (by layout; member contents come later)."""
    name_set = set(names)
    code_roots = {
        n.split("/", 2)[0] for n in names if n.count("/") >= 2 and n.split("/")[1] == "code"
    }
    data_roots = _torch_roots(names, "data.pkl")
    const_roots = _torch_roots(names, "constants.pkl")
    ts_roots = sorted(set(const_roots) | (set(data_roots) & code_roots))
    if ts_roots:
        root = ts_roots[0]
        return _ZipLayout(Format.TORCHSCRIPT, {"root": root}, (f"{root}/data/", f"{root}/.data/"))
    if data_roots:
        root = data_roots[0]
        detail = {"root": root}
        if len(data_roots) > 1:
            detail["roots"] = ",".join(data_roots)[:200]
        return _ZipLayout(Format.PYTORCH_ZIP, detail, (f"{root}/data/", f"{root}/.data/"))
    if "config.json" in name_set and "metadata.json" in name_set:
        weights = sorted(n for n in names if n.startswith("model.weights."))
        return _ZipLayout(Format.KERAS, {"weights": ",".join(weights) or "none"}, ())
    return _ZipLayout(Format.UNKNOWN, {"container": "zip"}, ())


_TEXT_PICKLE_STARTS: Final = frozenset(b"(}])cNIJKLMSTUVXF")


def _member_pickle(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[int | None, bool, int]:
    """(pickle offset inside the member or None, is-npy, bytes read) from a bounded prefix.

    Two bytes decide almost always; a protocol 0/1 candidate reads up to 4 KiB more, and an
    ``.npy`` member its header.
    """
    with zf.open(info) as fh:
        offset, is_npy = _sniff_member(fh, info.filename)
        return offset, is_npy, fh.tell()


def _sniff_member(fh: IO[bytes], name: str) -> tuple[int | None, bool]:
    """Classify one member from its first bytes (``fh`` is positioned at its start)."""
    head = fh.read(2)
    if len(head) == 2 and head[0] == 0x80 and head[1] <= 5:
        return 0, False
    if head == NPY_MAGIC[:2]:
        buf = io.BytesIO(head)

        def read(n: int) -> bytes:
            got = buf.read(n)
            return got + fh.read(n - len(got)) if len(got) < n else got

        npy = parse_npy_header(read)
        if npy is not None:
            if npy.object == "no" and npy.error is None:
                return None, True
            return npy.data_offset, True
    if name.endswith((".pkl", ".pickle")):
        return 0, False
    if len(head) == 2 and head[0] in _TEXT_PICKLE_STARTS:
        more = fh.read(4094)
        if looks_like_pickle(head + more, complete=len(more) < 4094):
            return 0, False
    return None, False


def detect_zip(src: ByteSource) -> Detected:
    """What a zip archive is (:func:`detect_format` for a file it found to be one): its format by
    the member layout, its pickle members; ``detail["bound"]`` for one past the bounds that
    zipfile would open all the same."""
    return _detect_zip(src)


def _detect_zip(src: ByteSource) -> Detected:
    problem = _zip_bounds_problem(src)
    if (
        problem
        and problem != _NO_EOCD
        and zip_tail(src.read(max(0, src.size - ZIP_TAIL), ZIP_TAIL))
    ):
        # zipfile would open it: past the bounds it is not read, which is not "no pickle".
        return Detected(Format.UNKNOWN, {"container": "zip", "error": problem, "bound": problem})
    if problem:
        return Detected(Format.UNKNOWN, {"container": "zip", "error": problem})
    try:
        zf = zipfile.ZipFile(src.file)
    except ZIP_ERRORS as e:
        return Detected(Format.UNKNOWN, {"container": "zip", "error": short(str(e))})
    with zf:
        # Not ZipInfo.is_dir(): it raises IndexError on an empty member name.
        infos = [i for i in zf.infolist() if not i.filename.endswith("/")]
        names = [i.filename for i in infos]
        layout = _zip_layout(names)
        members: dict[str, int] = {}
        npy_members = unreadable = unchecked = 0
        budget = ZIP_SNIFF_BUDGET
        for info in infos:
            if info.filename.startswith(layout.raw_prefixes):
                continue  # torch reads these as raw storage bytes, never as pickles
            if budget <= 0 or info.compress_type not in INFLATABLE_ZIP_METHODS:
                unchecked += 1
                members.setdefault(info.filename, 0)
                continue
            try:
                offset, is_npy, used = _member_pickle(zf, info)
                budget -= used
            except ZIP_ERRORS:
                # Cannot tell what it is: let the pickle scanner try, and report.
                unreadable += 1
                members.setdefault(info.filename, 0)
                continue
            npy_members += is_npy
            if offset is not None:
                members.setdefault(info.filename, offset)
    fmt, detail = layout.format, dict(layout.detail)
    if fmt is Format.UNKNOWN and infos and npy_members == len(infos):
        fmt, detail = Format.NUMPY_ZIP, {"arrays": str(npy_members)}
    detail["members"] = str(len(infos))
    dups = sorted(n for n, count in Counter(names).items() if count > 1)
    if dups:
        # Readers disagree on which duplicate wins: the structure check reports it.
        detail["duplicate_members"] = short(",".join(dups))
    if unreadable:
        detail["unreadable_members"] = str(unreadable)
    if unchecked:
        detail["unchecked_members"] = str(unchecked)
    return Detected(fmt, detail, zip_pickle_members=tuple(members), member_offsets=members)


_TORCH_TAR_MEMBERS: Final = ("sys_info", "pickle", "tensors", "storages")


def is_tar_header(hdr: bytes) -> bool:
    """Whether ``hdr`` is a tar header block by its checksum (ustar, GNU and the old V7 format
    alike: tarfile, and so torch's legacy loader, reads V7 headers, which carry no magic)."""
    if len(hdr) < 512 or not hdr[0:1].strip(b"\0"):
        return False
    field_ = hdr[148:156]
    try:
        stored = int(field_.rstrip(b"\0 ").lstrip(b" ") or b"-1", 8)
    except ValueError:
        return False
    if stored < 0:
        return False
    blanked = hdr[:148] + b" " * 8 + hdr[156:512]
    unsigned = sum(blanked)
    signed = unsigned - 2 * sum(b for b in blanked if b > 127)
    return stored in (unsigned, signed)


def _tar_names(src: ByteSource, limit: int = 64) -> list[str] | None:
    """Member names of a tar archive from its first ``limit`` headers (no data read)."""
    if not is_tar_header(src.read(0, 512)):
        return None
    names: list[str] = []
    pos = 0
    for _ in range(limit):
        hdr = src.read(pos, 512)
        if not is_tar_header(hdr):
            break
        size_field = hdr[124:136]
        if size_field[0] & 0x80:  # GNU base-256
            size = int.from_bytes(size_field[1:], "big")
        else:
            try:
                size = int(size_field.rstrip(b"\0 ").lstrip(b" ") or b"0", 8)
            except ValueError:
                break
        name = hdr[0:100].split(b"\0", 1)[0]
        prefix = hdr[345:500].split(b"\0", 1)[0]
        if hdr[156:157] in (b"0", b"\0"):
            full = (prefix + b"/" + name) if prefix else name
            names.append(full.decode("utf-8", "replace"))
        pos += 512 + (size + 511) // 512 * 512
    return names


# --------------------------------------------------------------------------------------------
# Detection


def hdf5_offset(src: ByteSource) -> int | None:
    """Where the HDF5 signature is (0 or a power-of-two user-block size ≥ 512), if anywhere."""
    offset = 0
    while offset + 8 <= src.size:
        if src.read(offset, 8) == _HDF5_SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def detect_format(path: Path) -> Detected:
    """Detect the format of ``path`` from its content (a directory: a TF SavedModel or not).

    Raises :class:`ConfigError` only when the file cannot be read; every malformed or unknown
    content gives a :class:`Detected` (often :attr:`Format.UNKNOWN`, with the reason in
    ``detail``).
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise ConfigError(f"cannot read model file {path}: {e.strerror}.") from None
    if stat.S_ISDIR(st.st_mode):
        return _detect_dir(path)
    if not stat.S_ISREG(st.st_mode):
        # Never open a FIFO, socket or device: reading it could block forever.
        return Detected(Format.UNKNOWN, {"reason": "not a regular file"})
    with ByteSource(path) as src:
        return _detect_file(src)


class _Prefix(ByteSource):
    """The first bytes of a file of known size, read as a :class:`ByteSource`: reads past them
    come back short or empty, as at the end of a file. Nothing is opened."""

    def __init__(self, head: bytes, size: int) -> None:  # no file: ByteSource's open is skipped
        self.path = Path("<prefix>")
        self.size = size
        self._head = head

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset``, as far as the prefix goes."""
        return self._head[offset : offset + n] if offset >= 0 and n > 0 else b""

    def find(self, needle: bytes, start: int, end: int) -> int:
        """Offset of the first ``needle`` in ``[start, end)`` of the prefix, or -1."""
        return self._head.find(needle, start, min(end, len(self._head)))

    def close(self) -> None:
        """Nothing to close."""


def may_carry_pickle(d: Detected) -> bool:
    """Whether a file detected (perhaps from its first bytes only) is or may be pickle-bearing,
    so that the whole file is needed: a pickle-bearing format, an object ``.npy``, every zip or
    tar archive (its members decide) and whatever the first bytes left undecided."""
    if d.detail.get("container") in ("zip", "tar") or "undecided" in d.detail:
        return True
    if d.format is Format.NUMPY:
        # A header the bytes at hand cut short may declare an object dtype further on.
        return d.pickle_offset is not None or "error" in d.detail
    return d.format.carries_pickle


def detect_prefix(head: bytes, size: int) -> Detected:
    """The format of a ``size``-byte file from its first bytes ``head`` only (a file streamed
    from an image layer, :mod:`modelseal.imagegate.payloads`), as :func:`detect_format` would
    answer where ``head`` is enough. A zip or tar archive, whose members decide, is answered
    :attr:`Format.UNKNOWN` with ``detail["container"]``: only the whole file tells. A file
    ``head`` cannot decide is answered :attr:`Format.UNKNOWN` with ``detail["undecided"]``
    saying why: a pickle opcode walk, or a compressed stream, that runs past ``head`` (a
    gzip header with a 2 MiB file name). A zip found only by its end-of-central-directory
    record (data before its first local header) needs the file's tail: see :func:`zip_tail`.
    """
    if head.startswith((_ZIP_LOCAL, _ZIP_EMPTY)):
        return Detected(Format.UNKNOWN, {"container": "zip"})
    if is_tar_header(head[:512]):
        return Detected(Format.UNKNOWN, {"container": "tar"})
    src = _Prefix(head, size)
    if size > len(head):
        codec = sniff_codec(head)
        if codec is not None:
            try:
                inflated: int | None = len(decompress_source_prefix(src, codec, DECOMPRESS_PREFIX))
            except ValueError:
                inflated = None
            if inflated is None or inflated < DECOMPRESS_PREFIX:
                return Detected(
                    Format.UNKNOWN,
                    {"undecided": f"a {codec} stream whose content starts past the first bytes"},
                )
    return _detect_file(src)


def _detect_dir(path: Path) -> Detected:
    for graph in ("saved_model.pb", "saved_model.pbtxt"):
        if (path / graph).is_file():
            return Detected(Format.TF_SAVEDMODEL, {"graph": graph})
    return Detected(Format.UNKNOWN, {"reason": "a directory without saved_model.pb"})


def _detect_file(src: ByteSource) -> Detected:
    size = src.size
    head = src.read(0, HEAD_BYTES)
    if not head:
        return Detected(Format.UNKNOWN, {"reason": "empty file"})
    # A pickle from offset 0 that imports is a pickle whatever else its first bytes match
    # (a safetensors header length, GGUF's magic eaten by BINFLOAT, an HDF5 user block):
    # pickle.load runs it.
    first = _WALK_OPS.get(head[0])
    if first is None or first[0] not in _FIRST_OPS:
        # Whatever the walk found, its first opcode is not one a pickle starts with: every
        # answer below that looks at it says "no pickle" (a zip's "PK" is PERSID, whose
        # argument runs to a newline: a walk read up to PICKLE_WINDOW of each for nothing).
        walk = _NO_WALK
    elif _starts_proto(head) and head[8:9] != b"{":
        # PROTO 2-5, no safetensors header: a pickle, whether or not it runs code (only
        # safetensors, below, is tested before this answer; the rest start otherwise). The
        # answer needs the first two values (the legacy torch magic), not a walk to the end.
        return _classify_pickle(src, _walk_source(src, max_values=2), _pickle_protocol(head))
    else:
        walk = _walk_source(src)
    if _runs_code_from_start(walk):
        return _classify_pickle(src, walk, _pickle_protocol(head))
    # safetensors first: its 8-byte header length can start with b"\x80\x02"..b"\x80\x05".
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= min(SAFETENSORS_MAX_HEADER, size - 8):
            return Detected(Format.SAFETENSORS, {"header_len": str(n)})
    if head.startswith(NPY_MAGIC):
        return _detect_npy(src)
    if head.startswith(b"GGUF") and len(head) >= 8:
        for endian, order in (("little", "<I"), ("big", ">I")):
            (version,) = struct.unpack(order, head[4:8])
            if 1 <= version <= 3:
                return Detected(Format.GGUF, {"version": str(version), "endian": endian})
        return Detected(Format.UNKNOWN, {"reason": "GGUF magic with an unknown version"})
    if head.startswith(_HDF5_SIGNATURE):
        return Detected(Format.KERAS_H5, {"userblock": "0"})
    if head.startswith((_ZIP_LOCAL, _ZIP_EMPTY)):
        return _detect_zip(src)
    if _starts_proto(head):
        return _classify_pickle(src, walk, _pickle_protocol(head))
    tar = _tar_names(src)
    if tar is not None:
        found = tuple(n for n in tar if n in _TORCH_TAR_MEMBERS)
        if {"pickle", "tensors", "storages"} <= set(found):
            return Detected(
                Format.TORCH_LEGACY,
                {"variant": "tar"},
                zip_pickle_members=found,
                member_offsets=dict.fromkeys(found, 0),
            )
        return Detected(Format.UNKNOWN, {"container": "tar"})
    codec = sniff_codec(head)
    if codec is not None:
        detected = _detect_compressed(src, codec)
        if detected is not None:
            return detected
    if head[0] == 0x08:
        onnx = _onnx_detail(src)
        if onnx is not None:
            return Detected(Format.ONNX, onnx)
    # A text pickle before the HDF5 search: a user block is whatever its writer put there.
    if _is_text_pickle(walk):
        return _classify_pickle(src, walk, "0-1")
    offset = hdf5_offset(src)
    if offset is not None:
        return Detected(Format.KERAS_H5, {"userblock": str(offset)})
    if not isinstance(src, _Prefix) and zip_tail(src.read(max(0, size - ZIP_TAIL), ZIP_TAIL)):
        # zipfile opens a zip by its end record: data before the first local header (a
        # shebang line, a self-extractor stub) does not hide it.
        return _detect_zip(src)
    if walk.cut == "prefix" and walk.first in _FIRST_OPS and not walk.bad_global:
        return Detected(
            Format.UNKNOWN, {"undecided": "a pickle opcode walk runs past the first bytes"}
        )
    return Detected(Format.UNKNOWN, {"reason": "no known signature", "size": str(size)})


def _classify_pickle(src: ByteSource, walk: _PickleWalk, protocol: str) -> Detected:
    if _is_legacy_torch_magic(walk):
        return Detected(Format.TORCH_LEGACY, {"variant": "pickle-stream", "protocol": protocol}, 0)
    if src.find(JOBLIB_MARKER, 0, JOBLIB_MARKER_WINDOW) >= 0:
        return Detected(Format.JOBLIB, {"protocol": protocol}, 0)
    return Detected(Format.PICKLE, {"protocol": protocol}, 0)


def _detect_compressed(src: ByteSource, codec: Codec) -> Detected | None:
    """A compressed file whose decompressed start is a pickle: joblib's compressed dump."""
    try:
        prefix = decompress_source_prefix(src, codec, DECOMPRESS_PREFIX)
    except ValueError:
        return None
    if not prefix or not looks_like_pickle(prefix, complete=len(prefix) < DECOMPRESS_PREFIX):
        return None
    detail = {
        "compressed": codec,
        "protocol": _pickle_protocol(prefix),
        "marker": "yes" if JOBLIB_MARKER in prefix else "no",
    }
    return Detected(Format.JOBLIB, detail)


def _detect_npy(src: ByteSource) -> Detected:
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        data = src.read(pos, n)
        pos += len(data)
        return data

    npy = parse_npy_header(read)
    if npy is None:  # pragma: no cover - the caller checked the magic
        return Detected(Format.UNKNOWN, {"reason": "bad .npy magic"})
    offset = npy.data_offset
    # Object arrays (and headers we cannot understand) may carry a pickle: fail closed.
    carries = npy.object != "no" or npy.error is not None
    if offset is not None and offset > src.size:
        offset = None
    return Detected(Format.NUMPY, npy.detail(), offset if carries else None)


def _onnx_detail(src: ByteSource) -> dict[str, str] | None:
    """An ONNX ModelProto: ir_version first (serializers write fields in number order), then
    known fields with their wire types, up to the graph."""
    fields = iter_proto_fields(src, 0, src.size)
    try:
        first = next(fields, None)
        if first is None or first.number != 1 or first.wire_type != WIRE_VARINT:
            return None
        if not 1 <= first.value <= 64:
            return None
        for count, f in enumerate(fields):
            if count >= 32:
                return None
            expected = _ONNX_MODEL_FIELDS.get(f.number)
            if expected is not None and f.wire_type != expected:
                return None
            if f.number == 7:
                return {"ir_version": str(first.value)}
    except ProtoError:
        return None
    return None
