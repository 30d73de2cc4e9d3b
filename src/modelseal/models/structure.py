"""Structure checks for the non-pickle model formats: every header, offset and reference is
checked against the file it lives in, so a malformed or hostile file is an issue, not a crash
in whatever loads it later.

Each ``check_*`` function takes a path and returns ``tuple[ModelIssue, ...]``. Nothing is loaded,
imported or executed; headers are read with bounded reads, tensor data never. Every loop is
bounded by the bytes that back it and by a work budget, so a header claiming 2**60 elements
costs nothing. A file that cannot be read at all raises :class:`ConfigError`; everything else
malformed becomes an issue. Issue offsets are byte offsets into the file (into the member when
``member`` is set).

The pickles these formats may carry are not scanned here (see ``pickle_scan``).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import struct
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from modelseal.errors import ConfigError
from modelseal.findings import Severity
from modelseal.models.bytesource import ByteSource
from modelseal.models.formats import (
    INFLATABLE_ZIP_METHODS,
    SAFETENSORS_MAX_HEADER,
    ZIP_ERRORS,
    Detected,
    hdf5_offset,
)
from modelseal.models.issues import Format, ModelIssue, short
from modelseal.models.protobuf import (
    WIRE_LEN,
    FieldTuple,
    ProtoError,
    iter_proto_buffer,
    iter_proto_fields,
)

#: Issues listed per file; the rest are counted in one closing issue.
MAX_ISSUES: Final = 100

BAD_HEADER: Final = "bad-header"
PATH_ESCAPE: Final = "path-escape"
CUSTOM_CODE: Final = "custom-code"
UNVERIFIABLE: Final = "unverifiable"


class _Issues:
    """Collects issues up to :data:`MAX_ISSUES`, then counts the rest."""

    def __init__(self) -> None:
        self.items: list[ModelIssue] = []
        self._dropped = 0
        self._dropped_severity = Severity.UNKNOWN

    def add(
        self,
        kind: str,
        severity: Severity,
        title: str,
        *,
        member: str | None = None,
        offset: int | None = None,
        **detail: str,
    ) -> None:
        if len(self.items) < MAX_ISSUES:
            self.items.append(ModelIssue(kind, severity, title, member, offset, detail))
        else:
            self._dropped += 1
            self._dropped_severity = max(self._dropped_severity, severity)

    def result(self) -> tuple[ModelIssue, ...]:
        items = list(self.items)
        if self._dropped:
            items.append(
                ModelIssue(
                    items[-1].kind,
                    self._dropped_severity,
                    f"{self._dropped} more problem(s) in this file, not listed",
                )
            )
        return tuple(items)


def _json_no_constants(name: str) -> object:
    # Python's json accepts NaN/Infinity; the safetensors (serde) parser does not.
    raise ValueError(f"non-standard JSON constant {name}")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Parsers disagree on duplicate keys (first wins, last wins, error): an ambiguity a
    # hostile file can use to show a checker one tensor and the loader another.
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


#: JSON values parsed per document at most (counted as ',' and ':' bytes, in C, before
#: parsing): json.loads builds Python objects ~50x the size of the text, so a legal 100 MB
#: safetensors header could otherwise cost gigabytes. 2M is ~250k tensors in one header.
MAX_JSON_TOKENS: Final = 2_000_000


def _json_too_complex(raw: bytes) -> bool:
    return raw.count(b",") + raw.count(b":") > MAX_JSON_TOKENS


# --------------------------------------------------------------------------------------------
# safetensors

#: Bits per element of every safetensors dtype (sub-byte dtypes pack; see _tensor_bytes).
SAFETENSORS_DTYPE_BITS: Final = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "F64": 64, "I64": 64, "U64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip


def _is_uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _elements_capped(shape: list[int], cap: int) -> int:
    """Product of ``shape``, or ``cap + 1`` once it exceeds ``cap`` (a 2**60 claim is cheap)."""
    if 0 in shape:
        return 0
    n = 1
    for d in shape:
        n *= d
        if n > cap:
            return cap + 1
    return n


def check_safetensors(path: Path) -> tuple[ModelIssue, ...]:
    """Check a safetensors file: header bounds, JSON schema, dtypes, shapes vs. byte sizes,
    and that the tensors tile the data area exactly (no overlap, no gap, no trailing bytes)."""
    out = _Issues()
    with ByteSource(path) as src:
        _safetensors(src, out)
    return out.result()


def _safetensors(src: ByteSource, out: _Issues) -> None:
    size = src.size
    if size < 8:
        out.add(BAD_HEADER, Severity.HIGH, "shorter than the 8-byte header length", offset=0)
        return
    (n,) = struct.unpack("<Q", src.read(0, 8))
    if n > SAFETENSORS_MAX_HEADER:
        out.add(
            BAD_HEADER, Severity.HIGH,
            f"header length {n} exceeds the {SAFETENSORS_MAX_HEADER}-byte limit", offset=0,
        )  # fmt: skip
        return
    if n > size - 8:
        out.add(
            BAD_HEADER, Severity.HIGH,
            f"header length {n} runs past the end of the {size}-byte file", offset=0,
        )  # fmt: skip
        return
    raw = src.read(8, n)
    if len(raw) < n:
        out.add(BAD_HEADER, Severity.HIGH, "the file is shorter than its header", offset=8)
        return
    if raw[:1] != b"{":
        out.add(BAD_HEADER, Severity.HIGH, "the header does not start with '{'", offset=8)
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        out.add(BAD_HEADER, Severity.HIGH, "the header is not valid UTF-8", offset=8 + e.start)
        return
    if _json_too_complex(raw):
        out.add(
            UNVERIFIABLE, Severity.MEDIUM,
            f"the header has more than {MAX_JSON_TOKENS} JSON values: not checked", offset=8,
        )  # fmt: skip
        return
    try:
        header = json.loads(
            text, object_pairs_hook=_unique_pairs, parse_constant=_json_no_constants
        )
    except json.JSONDecodeError as e:
        at = 8 + len(text[: e.pos].encode("utf-8"))
        out.add(BAD_HEADER, Severity.HIGH, f"the header is not valid JSON: {e.msg}", offset=at)
        return
    except _DuplicateKey as e:
        out.add(
            BAD_HEADER, Severity.HIGH, f"the header repeats key {short(e.key)!r}",
            offset=8, tensor=short(e.key),
        )  # fmt: skip
        return
    except (ValueError, RecursionError) as e:
        out.add(BAD_HEADER, Severity.HIGH, f"the header is not valid JSON: {e}", offset=8)
        return
    if not isinstance(header, dict):
        out.add(BAD_HEADER, Severity.HIGH, "the header is not a JSON object", offset=8)
        return

    data_start = 8 + n
    data_len = size - data_start
    small_header = n <= 1 << 20

    def key_offset(name: str) -> int:
        # Point at the tensor's key in the header when it is cheap to find.
        if small_header:
            for form in (json.dumps(name, ensure_ascii=False), json.dumps(name)):
                i = raw.find(form.encode("utf-8"))
                if i >= 0:
                    return 8 + i
        return 8

    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                out.add(
                    BAD_HEADER, Severity.HIGH, "__metadata__ must map strings to strings",
                    offset=key_offset(name),
                )  # fmt: skip
            continue
        problem, span = _safetensors_entry(info, data_len)
        if problem:
            out.add(
                BAD_HEADER, Severity.HIGH, f"tensor {short(name)!r}: {problem}",
                offset=key_offset(name), tensor=short(name),
            )  # fmt: skip
        elif span is not None:
            spans.append((span[0], span[1], name))

    expected = 0
    for begin, end, name in sorted(spans):
        if begin > expected:
            out.add(
                BAD_HEADER, Severity.HIGH,
                f"{begin - expected} unreferenced byte(s) before tensor {short(name)!r}",
                offset=data_start + expected, tensor=short(name),
            )  # fmt: skip
        elif begin < expected:
            out.add(
                BAD_HEADER, Severity.HIGH,
                f"tensor {short(name)!r} overlaps the tensor before it",
                offset=data_start + begin, tensor=short(name),
            )  # fmt: skip
        expected = max(expected, end)
    if expected < data_len:
        out.add(
            BAD_HEADER, Severity.HIGH,
            f"{data_len - expected} trailing byte(s) after the last tensor",
            offset=data_start + expected,
        )  # fmt: skip


def _safetensors_entry(info: object, data_len: int) -> tuple[str | None, tuple[int, int] | None]:
    """(problem, (begin, end)) for one tensor entry."""
    if not isinstance(info, dict):
        return "the entry is not an object", None
    if set(info) != {"dtype", "shape", "data_offsets"}:
        keys = ", ".join(sorted(map(str, info)))
        return f"expected exactly dtype, shape, data_offsets (got {short(keys)})", None
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    bits = SAFETENSORS_DTYPE_BITS.get(dtype) if isinstance(dtype, str) else None
    if bits is None:
        return f"unknown dtype {short(repr(dtype))}", None
    # type() is exact: bool is an int subclass but not a valid dimension.
    if not (isinstance(shape, list) and set(map(type, shape)) <= {int} and min(shape or [0]) >= 0):
        return "shape must be a list of non-negative integers", None
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_uint, offsets))):
        return "data_offsets must be [begin, end] non-negative integers", None
    begin, end = offsets
    if begin > end:
        return f"data_offsets begin {begin} > end {end}", None
    if end > data_len:
        return f"data_offsets end {end} is past the {data_len}-byte data area", None
    span = end - begin
    elements = _elements_capped(shape, (span * 8) // bits + 1)
    total_bits = elements * bits
    if total_bits % 8:
        return f"{elements} {dtype} elements are not a whole number of bytes", None
    if total_bits // 8 != span:
        want = f"more than {span}" if elements > (span * 8) // bits + 1 else str(total_bits // 8)
        return f"shape × dtype needs {want} byte(s), data_offsets span {span}", None
    return None, (begin, end)


# --------------------------------------------------------------------------------------------
# GGUF

#: GGUF metadata value types with a fixed size.
_GGUF_SCALARS: Final = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING: Final = 8
_GGUF_ARRAY: Final = 9
_GGUF_UINT32: Final = 4
#: ggml type id → (elements per block, bytes per block), from ggml.h / gguf-py constants.
GGML_TYPES: Final = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
    14: (256, 210), 15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98),
    19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1),
    25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54),
    35: (256, 66), 39: (32, 17), 40: (64, 36),
}  # fmt: skip
GGML_MAX_DIMS: Final = 4
MAX_GGUF_TENSORS: Final = 1 << 20
MAX_GGUF_KV: Final = 1 << 20
#: Array elements and nested values walked per file before giving up as unverifiable.
GGUF_WORK_BUDGET: Final = 1 << 24
_DUNDER: Final = re.compile(rb"__[A-Za-z_]+__")
_CHAT_TEMPLATE_READ: Final = 4 << 20


class _Stop(Exception):
    """Ends a walk with an issue: (kind, severity, message, offset)."""

    def __init__(self, kind: str, severity: Severity, message: str, offset: int) -> None:
        super().__init__(message)
        self.kind, self.severity, self.message, self.offset = kind, severity, message, offset


def _truncated(what: str, offset: int) -> _Stop:
    return _Stop(BAD_HEADER, Severity.HIGH, f"truncated: {what} runs past the end", offset)


class _GgufCursor:
    """Sequential, bounds-checked reads of a GGUF header."""

    def __init__(self, src: ByteSource, endian: str, version: int) -> None:
        self.src, self.pos = src, 0
        self.e = "<" if endian == "little" else ">"
        self.wide = version >= 2  # v1 used 32-bit counts and lengths
        self.budget = GGUF_WORK_BUDGET

    def remaining(self) -> int:
        return self.src.size - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.remaining():
            raise _truncated(what, self.pos)
        data = self.src.read(self.pos, n)
        if len(data) < n:
            raise _truncated(what, self.pos)
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n > self.remaining():
            raise _truncated(what, self.pos)
        self.pos += n

    def u32(self, what: str) -> int:
        return int(struct.unpack(self.e + "I", self.take(4, what))[0])

    def u64(self, what: str) -> int:
        return int(struct.unpack(self.e + "Q", self.take(8, what))[0])

    def count(self, what: str) -> int:
        return self.u64(what) if self.wide else self.u32(what)

    def string_len(self, what: str) -> int:
        at = self.pos
        n = self.count(what + " length")
        if n > self.remaining():
            raise _truncated(f"{what} ({n} bytes)", at)
        return n

    def spend(self, n: int) -> None:
        self.budget -= n
        if self.budget < 0:
            raise _Stop(
                UNVERIFIABLE, Severity.MEDIUM,
                "metadata too large to walk within modelseal's bounds", self.pos,
            )  # fmt: skip


def check_gguf(path: Path) -> tuple[ModelIssue, ...]:
    """Check a GGUF file: version, counts against the file size, every metadata value and
    tensor info, alignment, and that tensor data lies inside the file without overlap. Also
    flags chat templates that reach Python internals (template injection)."""
    out = _Issues()
    with ByteSource(path) as src:
        try:
            _gguf(src, out)
        except _Stop as stop:
            out.add(stop.kind, stop.severity, stop.message, offset=stop.offset)
    return out.result()


def _gguf(src: ByteSource, out: _Issues) -> None:
    head = src.read(0, 8)
    if len(head) < 8 or head[:4] != b"GGUF":
        raise _Stop(BAD_HEADER, Severity.HIGH, "no GGUF magic and version", 0)
    endian, version = "little", struct.unpack("<I", head[4:8])[0]
    if not 1 <= version <= 3:
        endian, version = "big", struct.unpack(">I", head[4:8])[0]
    if not 1 <= version <= 3:
        raise _Stop(BAD_HEADER, Severity.HIGH, "unsupported GGUF version", 4)
    cur = _GgufCursor(src, endian, version)
    cur.pos = 8
    n_tensors = cur.count("tensor count")
    n_kv = cur.count("metadata count")
    width = 8 if cur.wide else 4
    # The smallest tensor info: name length, n_dims, type, offset; a metadata pair: key
    # length, type, a one-byte value. A count the remaining bytes cannot hold is a lie.
    min_tensor, min_kv = width + 4 + 4 + 8, width + 4 + 1
    if n_tensors > MAX_GGUF_TENSORS or n_tensors * min_tensor > cur.remaining():
        raise _Stop(BAD_HEADER, Severity.HIGH, f"implausible tensor count {n_tensors}", 8)
    if n_kv > MAX_GGUF_KV or n_kv * min_kv > cur.remaining():
        raise _Stop(BAD_HEADER, Severity.HIGH, f"implausible metadata count {n_kv}", 8 + width)

    alignment = 32
    keys: set[bytes] = set()
    for _ in range(n_kv):
        key_at = cur.pos
        key = cur.take(cur.string_len("metadata key"), "metadata key")
        if key in keys:
            out.add(
                BAD_HEADER, Severity.HIGH, f"metadata key {_key(key)!r} appears twice",
                offset=key_at, key=_key(key),
            )  # fmt: skip
        keys.add(key)
        vtype_at = cur.pos
        vtype = cur.u32("metadata value type")
        value_at = cur.pos
        _gguf_value(cur, vtype, vtype_at, 0)
        if key == b"general.alignment":
            value = src.read(value_at, 4)
            align = struct.unpack(cur.e + "I", value)[0] if vtype == _GGUF_UINT32 else 0
            if align <= 0 or align & (align - 1):
                out.add(
                    BAD_HEADER, Severity.HIGH,
                    "general.alignment must be a power-of-two uint32", offset=value_at,
                )  # fmt: skip
            else:
                alignment = align
        elif key.startswith(b"tokenizer.chat_template") and vtype == _GGUF_STRING:
            _chat_template(src, cur, value_at, key, out)

    tensors: list[tuple[int, int, str, int]] = []  # (offset, nbytes, name, info offset)
    names: set[bytes] = set()
    for _ in range(n_tensors):
        info_at = cur.pos
        raw_name = cur.take(cur.string_len("tensor name"), "tensor name")
        name = _key(raw_name)
        if raw_name in names:
            out.add(
                BAD_HEADER, Severity.HIGH, f"tensor {name!r} is listed twice",
                offset=info_at, tensor=name,
            )  # fmt: skip
        names.add(raw_name)
        n_dims = cur.u32("tensor dimension count")
        if n_dims > GGML_MAX_DIMS:
            raise _Stop(
                BAD_HEADER, Severity.HIGH,
                f"tensor {name!r} has {n_dims} dimensions (at most {GGML_MAX_DIMS})", info_at,
            )  # fmt: skip
        dims = [cur.count("tensor dimension") for _ in range(n_dims)]
        ggml_type = cur.u32("tensor type")
        offset = cur.u64("tensor offset")
        nbytes = _ggml_nbytes(name, dims, ggml_type, info_at, out)
        if offset % alignment:
            out.add(
                BAD_HEADER, Severity.HIGH,
                f"tensor {name!r} offset {offset} is not a multiple of the alignment {alignment}",
                offset=info_at, tensor=name,
            )  # fmt: skip
        if nbytes is not None:
            tensors.append((offset, nbytes, name, info_at))

    data_start = -(-cur.pos // alignment) * alignment
    prev_end, prev_name = 0, ""
    for offset, nbytes, name, info_at in sorted(tensors):
        if data_start + offset + nbytes > src.size:
            out.add(
                BAD_HEADER, Severity.HIGH,
                f"tensor {name!r} data ({nbytes} bytes at data offset {offset}) runs past the "
                "end of the file",
                offset=info_at, tensor=name,
            )  # fmt: skip
        elif offset < prev_end:
            out.add(
                BAD_HEADER, Severity.HIGH, f"tensor {name!r} overlaps tensor {prev_name!r}",
                offset=data_start + offset, tensor=name,
            )  # fmt: skip
        if offset + nbytes > prev_end:
            prev_end, prev_name = offset + nbytes, name


def _key(raw: bytes) -> str:
    return short(raw.decode("utf-8", "replace"))


def _gguf_value(cur: _GgufCursor, vtype: int, at: int, depth: int) -> None:
    """Skip one metadata value, bounds-checking every length against the file."""
    if vtype in _GGUF_SCALARS:
        cur.skip(_GGUF_SCALARS[vtype], "metadata value")
    elif vtype == _GGUF_STRING:
        cur.skip(cur.string_len("metadata string"), "metadata string")
    elif vtype == _GGUF_ARRAY:
        if depth >= 4:
            raise _Stop(BAD_HEADER, Severity.HIGH, "arrays nested too deeply", at)
        etype_at = cur.pos
        etype = cur.u32("array element type")
        count_at = cur.pos
        count = cur.count("array length")
        if etype in _GGUF_SCALARS:
            cur.skip(count * _GGUF_SCALARS[etype], f"array of {count} values")
            return
        # Each element takes at least a length (strings) or a type and count (arrays).
        if etype not in (_GGUF_STRING, _GGUF_ARRAY):
            raise _Stop(BAD_HEADER, Severity.HIGH, f"unknown array element type {etype}", etype_at)
        if count * 4 > cur.remaining():
            raise _truncated(f"array of {count} values", count_at)
        cur.spend(count)
        for _ in range(count):
            _gguf_value(cur, etype, count_at, depth + 1)
    else:
        raise _Stop(BAD_HEADER, Severity.HIGH, f"unknown metadata value type {vtype}", at)


def _chat_template(
    src: ByteSource, cur: _GgufCursor, value_at: int, key: bytes, out: _Issues
) -> None:
    width = 8 if cur.wide else 4
    n = int.from_bytes(src.read(value_at, width), "little" if cur.e == "<" else "big")
    text = src.read(value_at + width, min(n, _CHAT_TEMPLATE_READ))
    found = sorted({m.decode() for m in _DUNDER.findall(text)})
    if found:
        # Jinja chat templates render in the serving process; dunder attributes are the
        # classic way out of a (non-sandboxed) template into Python (CVE-2024-34359).
        out.add(
            CUSTOM_CODE, Severity.HIGH,
            f"chat template {_key(key)!r} reaches Python internals ({', '.join(found[:5])})",
            offset=value_at, key=_key(key), attributes=short(",".join(found)),
        )  # fmt: skip


def _ggml_nbytes(name: str, dims: list[int], ggml_type: int, at: int, out: _Issues) -> int | None:
    spec = GGML_TYPES.get(ggml_type)
    if spec is None:
        out.add(
            UNVERIFIABLE, Severity.MEDIUM,
            f"tensor {name!r} has ggml type {ggml_type}, unknown to modelseal",
            offset=at, tensor=name,
        )  # fmt: skip
        return None
    if any(d >= 1 << 63 for d in dims):
        out.add(BAD_HEADER, Severity.HIGH, f"tensor {name!r} dimension overflows", offset=at)
        return None
    elements = 1
    for d in dims:
        elements *= d
    if elements >= 1 << 63:
        out.add(BAD_HEADER, Severity.HIGH, f"tensor {name!r} element count overflows", offset=at)
        return None
    block, block_bytes = spec
    if dims and dims[0] % block:
        out.add(
            BAD_HEADER, Severity.HIGH,
            f"tensor {name!r} row of {dims[0]} is not a multiple of the block size {block}",
            offset=at, tensor=name,
        )  # fmt: skip
        return None
    return elements // block * block_bytes


# --------------------------------------------------------------------------------------------
# ONNX

#: Where TensorProtos can hide, per message: field number → message kind (onnx.proto).
_ONNX_CHILDREN: Final[Mapping[str, Mapping[int, str]]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
#: Nested graphs (If/Loop/Scan bodies) walked; protobuf itself stops at 100 levels.
MAX_ONNX_GRAPH_DEPTH: Final = 64
MAX_ONNX_FIELDS: Final = 5_000_000
_MAX_LOCATION: Final = 4096
_WINDOWS_DRIVE: Final = re.compile(r"[A-Za-z]:")


def check_onnx(path: Path, model_dir: Path) -> tuple[ModelIssue, ...]:
    """Check every external-data ``location`` of an ONNX model (initializers, sparse
    initializers, node attribute tensors, nested If/Loop graphs, training graphs, functions):
    absolute, or escaping ``model_dir`` lexically (``..``) or through a symlink, is a
    ``path-escape``. Locations resolve against the model file's directory."""
    out = _Issues()
    with ByteSource(path) as src:
        try:
            _OnnxWalk(src, path, model_dir, out).run()
        except ProtoError as e:
            out.add(BAD_HEADER, Severity.HIGH, f"malformed protobuf: {e}", offset=e.offset)
        except _Stop as stop:
            out.add(stop.kind, stop.severity, stop.message, offset=stop.offset)
    return tuple(sorted(out.result(), key=lambda i: i.offset or 0))


#: Messages up to this size are read whole and parsed in memory (nodes, attributes, tensor
#: headers); larger ones (the graph, tensors with inline data) are walked through the file.
_ONNX_INLINE: Final = 1 << 20


class _OnnxWalk:
    """An iterative walk over the messages that can hold TensorProtos, in file order."""

    def __init__(self, src: ByteSource, path: Path, model_dir: Path, out: _Issues) -> None:
        self.src, self.path, self.model_dir, self.out = src, path, model_dir, out
        self.budget = MAX_ONNX_FIELDS
        # Exports point thousands of tensors at one or two files: judge each location once.
        self.verdicts: dict[str, str | None] = {}

    def fields(
        self, start: int, end: int, buf: bytes | None, base: int
    ) -> tuple[Iterable[FieldTuple], bytes | None, int]:
        """The fields of ``[start, end)``, and the in-memory buffer holding it, if any."""
        if buf is None and end - start <= _ONNX_INLINE:
            buf, base = self.src.read(start, end - start), start
            if len(buf) < end - start:
                raise ProtoError(start, "the file ends inside a message")
        if buf is not None:
            return iter_proto_buffer(buf, base, start - base, end - base), buf, base
        walk = ((f.number, f.wire_type, f.offset, f.value, f.length)
                for f in iter_proto_fields(self.src, start, end))  # fmt: skip
        return walk, None, 0

    def spend(self, offset: int) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise _Stop(
                UNVERIFIABLE, Severity.MEDIUM,
                "too many protobuf fields to walk within modelseal's bounds", offset,
            )  # fmt: skip

    def run(self) -> None:
        # (kind, start, end, graph depth, buffer holding the message or None, buffer's base)
        stack: list[tuple[str, int, int, int, bytes | None, int]] = [
            ("model", 0, self.src.size, 0, None, 0)
        ]
        while stack:
            kind, start, end, depth, buf, base = stack.pop()
            fields, buf, base = self.fields(start, end, buf, base)
            if kind == "tensor":
                self.tensor(fields, buf, base)
                continue
            children = _ONNX_CHILDREN[kind]
            found: list[tuple[str, int, int, int, bytes | None, int]] = []
            for number, wire, offset, value, length in fields:
                self.spend(offset)
                child = children.get(number)
                if child is None:
                    continue
                if wire != WIRE_LEN:
                    raise ProtoError(offset, f"{kind} field {number} is not a message")
                child_depth = depth + (child == "graph")
                if child_depth > MAX_ONNX_GRAPH_DEPTH:
                    raise _Stop(
                        UNVERIFIABLE, Severity.MEDIUM,
                        f"graphs nested more than {MAX_ONNX_GRAPH_DEPTH} deep", offset,
                    )  # fmt: skip
                found.append((child, value, value + length, child_depth, buf, base))
            stack.extend(reversed(found))  # keep file order: reads stay sequential

    def string(self, wire: int, offset: int, at: int, length: int, buf: bytes | None,
               base: int, limit: int) -> bytes | None:  # fmt: skip
        if wire != WIRE_LEN:
            raise ProtoError(offset, "a string field is not length-delimited")
        if length > limit:
            return None
        if buf is not None:
            return buf[at - base : at - base + length]
        return self.src.read(at, length)

    def tensor(self, fields: Iterable[FieldTuple], buf: bytes | None, base: int) -> None:
        name = b""
        locations: list[tuple[bytes | None, int]] = []
        for number, wire, offset, value, length in fields:
            self.spend(offset)
            if number == 8:  # name
                name = self.string(wire, offset, value, length, buf, base, 256) or b"?"
            elif number == 13:  # external_data: StringStringEntryProto {key = 1, value = 2}
                if wire != WIRE_LEN:
                    raise ProtoError(offset, "external_data is not a message")
                entry, ebuf, ebase = self.fields(value, value + length, buf, base)
                key: bytes | None = b""
                loc: bytes | None = b""
                loc_at = offset
                for enumber, ewire, eoffset, evalue, elength in entry:
                    if enumber == 1:
                        key = self.string(ewire, eoffset, evalue, elength, ebuf, ebase, 256)
                    elif enumber == 2:
                        loc = self.string(
                            ewire, eoffset, evalue, elength, ebuf, ebase, _MAX_LOCATION
                        )
                        loc_at = evalue
                if key == b"location":
                    locations.append((loc, loc_at))
        tensor = short(name.decode("utf-8", "replace"))
        for raw, at in locations:
            if raw is None:
                self.out.add(
                    PATH_ESCAPE, Severity.CRITICAL,
                    f"tensor {tensor!r}: external data location longer than {_MAX_LOCATION} bytes",
                    offset=at, tensor=tensor,
                )  # fmt: skip
                continue
            location = raw.decode("utf-8", "surrogateescape")
            if location not in self.verdicts:
                self.verdicts[location] = _location_problem(location, self.path, self.model_dir)
            problem = self.verdicts[location]
            if problem:
                self.out.add(
                    PATH_ESCAPE, Severity.CRITICAL,
                    f"tensor {tensor!r}: external data location {short(repr(location))} {problem}",
                    offset=at, tensor=tensor, location=short(location),
                )  # fmt: skip


def _location_problem(location: str, path: Path, model_dir: Path) -> str | None:
    """Why an external-data location is unsafe, or None."""
    if "\0" in location:
        # C++ loaders stop at the NUL: judge the part they would use, and flag the trick.
        head = location.split("\0", 1)[0]
        return _location_problem(head, path, model_dir) or "contains a NUL byte"
    posix = location.replace("\\", "/")  # a separator on Windows, where the model may be served
    if posix.startswith("/") or _WINDOWS_DRIVE.match(posix):
        return "is absolute"
    base = os.path.abspath(model_dir)
    here = os.path.relpath(os.path.abspath(path.parent), base).replace(os.sep, "/")
    joined = posixpath.normpath(posixpath.join(here, posix))
    if joined == ".." or joined.startswith("../"):
        return "escapes the model directory"
    real_base = os.path.realpath(base)
    real = os.path.realpath(os.path.join(path.parent, posix))
    if os.path.commonpath([real_base, real]) != real_base:
        return "resolves through a symlink outside the model directory"
    return None


# --------------------------------------------------------------------------------------------
# Keras

#: config.json / model_config JSON read at most (a Keras config is kilobytes to a few MiB).
MAX_KERAS_CONFIG: Final = 64 << 20
MAX_KERAS_NODES: Final = 2_000_000
#: HDF5 bytes searched for the model_config JSON, and JSON documents tried there.
MAX_H5_SCAN: Final = 4 << 30
MAX_H5_CANDIDATES: Final = 1000
_KERAS_MODULES: Final = ("keras", "tf_keras")
#: TFOpLambda wraps a TensorFlow API function by name; these can touch files or run Python.
_RISKY_TF_OPS: Final = re.compile(
    r"(?:^|\.)(?:io|raw_ops|summary|py_function|numpy_function|py_func|print|debugging)(?:\.|$)"
)
#: A JSON object that starts like a Keras object: ``{"class_name": …`` (model_config, Keras 2
#: layers) or ``{"module": …`` (Keras 3 objects).
_H5_CANDIDATE: Final = re.compile(rb'\{\s{0,32}"(?:class_name|module)"\s{0,32}:')
_H5_CLASS_NAME: Final = re.compile(rb'"class_name"')


def check_keras(path: Path) -> tuple[ModelIssue, ...]:
    """Check a Keras model (``.keras`` zip or legacy HDF5) for code it would run: ``Lambda``
    layers and ``__lambda__`` functions (marshalled Python bytecode, CRITICAL), objects from
    modules outside Keras or registered as custom objects (HIGH), and ``TFOpLambda`` layers
    (MEDIUM; HIGH for TF functions that touch files or run Python)."""
    out = _Issues()
    with ByteSource(path) as src:
        if src.read(0, 4) == b"PK\x03\x04":
            _keras_zip(src, out)
        elif hdf5_offset(src) is not None:
            _keras_h5(src, out)
        else:
            out.add(BAD_HEADER, Severity.HIGH, "neither a .keras zip nor an HDF5 file", offset=0)
    return out.result()


def _keras_zip(src: ByteSource, out: _Issues) -> None:
    try:
        with zipfile.ZipFile(src.file) as zf:
            infos = [i for i in zf.infolist() if i.filename == "config.json"]
            if not infos:
                out.add(BAD_HEADER, Severity.HIGH, "no config.json in the .keras archive")
                return
            if len(infos) > 1:
                out.add(
                    BAD_HEADER, Severity.HIGH, "config.json appears more than once",
                    member="config.json",
                )  # fmt: skip
            if infos[-1].compress_type not in INFLATABLE_ZIP_METHODS:
                out.add(
                    BAD_HEADER, Severity.HIGH,
                    "config.json is bz2- or lzma-compressed: modelseal does not inflate it",
                    member="config.json",
                )  # fmt: skip
                return
            with zf.open(infos[-1]) as fh:  # zipfile (and so Keras) reads the last one
                raw = fh.read(MAX_KERAS_CONFIG + 1)
    except ZIP_ERRORS as e:
        out.add(BAD_HEADER, Severity.HIGH, f"broken .keras archive: {short(str(e))}")
        return
    if len(raw) > MAX_KERAS_CONFIG or _json_too_complex(raw):
        out.add(
            UNVERIFIABLE, Severity.MEDIUM, "config.json is too large to check",
            member="config.json",
        )  # fmt: skip
        return
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as e:
        out.add(
            BAD_HEADER, Severity.HIGH, f"config.json is not valid JSON: {short(str(e))}",
            member="config.json",
        )  # fmt: skip
        return
    _keras_config(config, out, member="config.json", offset=None)


def _keras_config(root: object, out: _Issues, *, member: str | None, offset: int | None) -> None:
    """Flag code-carrying objects anywhere in a Keras config tree."""
    stack: list[tuple[object, str, bool]] = [(root, "$", False)]
    visited = 0
    while stack:
        node, where, in_lambda = stack.pop()
        visited += 1
        if visited > MAX_KERAS_NODES:
            out.add(
                UNVERIFIABLE, Severity.MEDIUM, "the model config is too large to walk",
                member=member, offset=offset,
            )  # fmt: skip
            return
        if isinstance(node, list):
            stack.extend((v, f"{where}[{i}]", in_lambda) for i, v in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        cls = node.get("class_name")
        if isinstance(cls, str):
            in_lambda = _keras_object(node, cls, where, in_lambda, out, member, offset)
        stack.extend((v, f"{where}.{k}", in_lambda) for k, v in node.items())


def _keras_object(
    node: dict[str, object],
    cls: str,
    where: str,
    in_lambda: bool,
    out: _Issues,
    member: str | None,
    offset: int | None,
) -> bool:
    """Check one ``{"class_name": …}`` object; returns whether its subtree is a Lambda's."""
    config = node.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    detail = {"class_name": short(cls), "path": short(where)}
    if isinstance(name, str):
        detail["layer"] = short(name)
    label = f"{cls} {name!r}" if isinstance(name, str) else cls
    if cls == "Lambda":
        out.add(
            CUSTOM_CODE, Severity.CRITICAL,
            f"Lambda layer {name!r} carries marshalled Python bytecode that runs on load",
            member=member, offset=offset, **detail,
        )  # fmt: skip
        return True
    if cls == "__lambda__":
        if not in_lambda:
            out.add(
                CUSTOM_CODE, Severity.CRITICAL,
                "a serialized Python lambda (marshalled bytecode) in the model config",
                member=member, offset=offset, **detail,
            )  # fmt: skip
        return in_lambda
    if cls in ("TFOpLambda", "SlicingOpLambda"):
        fn = config.get("function") if isinstance(config, dict) else None
        fn_name = fn if isinstance(fn, str) else ""
        risky = bool(_RISKY_TF_OPS.search(fn_name))
        out.add(
            CUSTOM_CODE, Severity.HIGH if risky else Severity.MEDIUM,
            f"{label} calls TensorFlow function {fn_name or '?'!r} by name on load",
            member=member, offset=offset, function=short(fn_name), **detail,
        )  # fmt: skip
        return in_lambda
    if cls.startswith("__") and cls.endswith("__"):
        return in_lambda  # Keras' own value encodings (__tuple__, __numpy__, __typespec__ …)
    reasons: list[str] = []
    if "module" in node:
        module = node["module"]
        if module is None:
            reasons.append("defined in __main__")
        elif not isinstance(module, str) or not (
            module in _KERAS_MODULES or module.startswith(tuple(m + "." for m in _KERAS_MODULES))
        ):
            reasons.append(f"from module {short(str(module))!r}")
            detail["module"] = short(str(module))
    registered = node.get("registered_name")
    if isinstance(registered, str) and ">" in registered and not registered.startswith("keras>"):
        reasons.append(f"registered custom object {short(registered)!r}")
        detail["registered_name"] = short(registered)
    if reasons:
        out.add(
            CUSTOM_CODE, Severity.HIGH,
            f"{label} is custom code ({'; '.join(reasons)}): loading imports and runs it",
            member=member, offset=offset, **detail,
        )  # fmt: skip
    return in_lambda


def _keras_h5(src: ByteSource, out: _Issues) -> None:
    """Find the model_config JSON in an HDF5 file without an HDF5 library.

    HDF5 keeps attribute values uncompressed (inline in the object header, or in a global heap
    for variable-length strings), so the JSON is in the file as plain bytes. Every object
    starting ``{"class_name": …`` or ``{"module": …`` is parsed as a JSON document; a
    ``"class_name"`` left outside every parsed document means config we could not read (a
    broken or reordered document), reported as unverifiable rather than passed.
    """
    limit = min(src.size, MAX_H5_SCAN)
    parsed: list[tuple[int, int]] = []
    covered = 0
    stray: int | None = None
    tried = 0
    last_candidate = last_class = -1
    for chunk_at, chunk in _chunks(src, limit):
        for m in _H5_CANDIDATE.finditer(chunk):
            at = chunk_at + m.start()
            if at <= last_candidate or at < covered:
                continue
            last_candidate = at
            if tried >= MAX_H5_CANDIDATES:
                break
            tried += 1
            doc = _json_at(src, at)
            if doc is None:
                continue
            value, end = doc
            parsed.append((at, end))
            covered = end
            _keras_config(value, out, member=None, offset=at)
        for m in _H5_CLASS_NAME.finditer(chunk):
            at = chunk_at + m.start()
            if at <= last_class:
                continue
            last_class = at
            if stray is None and not any(s <= at < e for s, e in parsed):
                stray = at
    if stray is not None:
        out.add(
            UNVERIFIABLE, Severity.MEDIUM,
            "part of the model config could not be parsed; it was not checked for custom code",
            offset=stray,
        )  # fmt: skip
    elif not parsed:
        scanned = "" if src.size <= limit else f" (first {limit} bytes searched)"
        out.add(
            UNVERIFIABLE, Severity.MEDIUM,
            f"HDF5 file without a readable Keras model_config{scanned}: "
            "cannot check it for custom code",
        )  # fmt: skip


def _chunks(src: ByteSource, limit: int) -> Iterable[tuple[int, bytes]]:
    """The first ``limit`` bytes as (offset, chunk), 1 MiB chunks overlapping by 256 bytes so
    that no short match is cut in two; a match may be seen twice, callers dedupe by offset."""
    size, overlap, pos = 1 << 20, 256, 0
    while pos < limit:
        chunk = src.read(pos, min(size, limit - pos))
        if not chunk:
            return
        yield pos, chunk
        if pos + len(chunk) >= limit:
            return
        pos += len(chunk) - overlap


def _json_at(src: ByteSource, at: int) -> tuple[object, int] | None:
    """Parse the JSON object starting at ``at``: (value, end offset) or None.

    latin-1 keeps byte offsets equal to character offsets for finding the end; the exact span
    is then decoded as UTF-8. The window grows only while the parse runs out of bytes.
    """
    window = 64 << 10
    decoder = json.JSONDecoder()
    while True:
        data = src.read(at, window)
        if _json_too_complex(data):
            return None
        try:
            _, end = decoder.raw_decode(data.decode("latin-1"))
        except json.JSONDecodeError as e:
            if e.pos >= len(data) - 64 and len(data) == window and window < MAX_KERAS_CONFIG:
                window *= 4
                continue
            return None
        except (ValueError, RecursionError):
            return None
        try:
            value = json.loads(data[:end].decode("utf-8"))
        except (ValueError, RecursionError):
            return None
        return value, at + end


# --------------------------------------------------------------------------------------------
# TensorFlow SavedModel, TorchScript, zip containers

MAX_DIR_ENTRIES: Final = 100_000


def check_savedmodel(path: Path) -> tuple[ModelIssue, ...]:
    """Check a SavedModel directory: its graph is never verified (unverifiable, MEDIUM), and
    any symlink in it that resolves outside it is a ``path-escape``."""
    out = _Issues()
    if not path.exists():
        raise ConfigError(f"cannot read model directory {path}: it does not exist.")
    if not path.is_dir():
        out.add(BAD_HEADER, Severity.HIGH, "a SavedModel must be a directory")
        return out.result()
    graph = next((g for g in ("saved_model.pb", "saved_model.pbtxt") if (path / g).is_file()), None)
    if graph is None:
        out.add(BAD_HEADER, Severity.HIGH, "no saved_model.pb in the SavedModel directory")
    else:
        out.add(
            UNVERIFIABLE, Severity.MEDIUM,
            "a SavedModel graph can run arbitrary TensorFlow ops (file reads and writes "
            "included) when loaded or served; modelseal does not verify the graph",
            member=graph,
        )  # fmt: skip
    base = os.path.realpath(path)
    seen = 0
    errors: list[OSError] = []
    for top, dirs, files in os.walk(path, followlinks=False, onerror=errors.append):
        for entry in sorted(dirs) + sorted(files):
            seen += 1
            if seen > MAX_DIR_ENTRIES:
                out.add(
                    UNVERIFIABLE, Severity.MEDIUM,
                    f"more than {MAX_DIR_ENTRIES} entries; the rest were not checked",
                )  # fmt: skip
                return out.result()
            full = os.path.join(top, entry)
            if not os.path.islink(full):
                continue
            real = os.path.realpath(full)
            if os.path.commonpath([base, real]) != base:
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                out.add(
                    PATH_ESCAPE, Severity.CRITICAL,
                    f"{rel} is a symlink to {short(os.readlink(full))}, outside the SavedModel",
                    member=rel, target=short(os.readlink(full)),
                )  # fmt: skip
    for e in errors[:5]:
        out.add(
            UNVERIFIABLE, Severity.MEDIUM, f"cannot list {e.filename}: {e.strerror}",
            member=os.path.relpath(str(e.filename), path) if e.filename else None,
        )  # fmt: skip
    return out.result()


def check_torchscript(path: Path) -> tuple[ModelIssue, ...]:
    """A TorchScript archive's ``code/`` members are source that is compiled and run on load:
    one ``custom-code`` issue (HIGH) listing them. Its pickles are the pickle scanner's."""
    out = _Issues()
    with ByteSource(path) as src:
        try:
            with zipfile.ZipFile(src.file) as zf:
                names = [i.filename for i in zf.infolist() if not i.filename.endswith("/")]
        except ZIP_ERRORS as e:
            out.add(BAD_HEADER, Severity.HIGH, f"broken TorchScript archive: {short(str(e))}")
            return out.result()
    code = [n for n in names if n.count("/") >= 2 and n.split("/")[1] == "code"]
    if code:
        root = code[0].split("/", 1)[0]
        out.add(
            CUSTOM_CODE, Severity.HIGH,
            f"TorchScript archive carries {len(code)} code file(s) compiled and run on load",
            member=f"{root}/code/", count=str(len(code)), members=short(", ".join(code), 1000),
        )  # fmt: skip
    return out.result()


def check_zip(path: Path) -> tuple[ModelIssue, ...]:
    """Container checks for any zip-based format (PyTorch, TorchScript, npz, .keras):
    duplicate member names (readers disagree on which one wins), absolute or ``..`` member
    names, encrypted members, and local headers that contradict the central directory."""
    out = _Issues()
    with ByteSource(path) as src:
        try:
            with zipfile.ZipFile(src.file) as zf:
                infos = zf.infolist()
                for name, n in Counter(i.filename for i in infos).items():
                    if n > 1:
                        out.add(
                            BAD_HEADER, Severity.HIGH,
                            f"member {short(name)!r} appears {n} times; readers disagree "
                            "on which one is used",
                            member=name,
                        )  # fmt: skip
                for info in infos:
                    _zip_member(zf, info, out)
        except ZIP_ERRORS as e:
            out.add(BAD_HEADER, Severity.HIGH, f"broken zip archive: {short(str(e))}")
    return out.result()


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: _Issues) -> None:
    name = info.filename
    if not name:
        out.add(BAD_HEADER, Severity.HIGH, "a member has an empty name", offset=info.header_offset)
    posix = name.replace("\\", "/")
    parts = posix.split("/")
    if posix.startswith("/") or _WINDOWS_DRIVE.match(posix) or ".." in parts:
        out.add(
            PATH_ESCAPE, Severity.HIGH,
            f"member name {short(name)!r} points outside the archive when extracted",
            member=name, offset=info.header_offset,
        )  # fmt: skip
    if info.flag_bits & 0x1:
        out.add(
            BAD_HEADER, Severity.HIGH, f"member {short(name)!r} is encrypted: not checkable",
            member=name, offset=info.header_offset,
        )  # fmt: skip
        return
    try:
        with zf.open(info):
            pass  # opening checks the local header against the central directory
    except ZIP_ERRORS as e:
        out.add(
            BAD_HEADER, Severity.HIGH, f"member {short(name)!r}: {short(str(e))}",
            member=name, offset=info.header_offset,
        )  # fmt: skip


def check_structure(path: Path, detected: Detected, model_dir: Path) -> tuple[ModelIssue, ...]:
    """Every structure check that applies to a detected file (container checks included)."""
    fmt = detected.format
    issues: list[ModelIssue] = []
    if fmt in (Format.PYTORCH_ZIP, Format.TORCHSCRIPT, Format.NUMPY_ZIP, Format.KERAS):
        issues += check_zip(path)
    if fmt is Format.SAFETENSORS:
        issues += check_safetensors(path)
    elif fmt is Format.GGUF:
        issues += check_gguf(path)
    elif fmt is Format.ONNX:
        issues += check_onnx(path, model_dir)
    elif fmt in (Format.KERAS, Format.KERAS_H5):
        issues += check_keras(path)
    elif fmt is Format.TF_SAVEDMODEL:
        issues += check_savedmodel(path)
    elif fmt is Format.TORCHSCRIPT:
        issues += check_torchscript(path)
    return tuple(issues)
