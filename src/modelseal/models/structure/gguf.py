"""GGUF: version, counts against the file size, every metadata value and tensor info,
alignment, tensor data bounds and overlap, and chat templates that reach Python internals.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Final

from modelseal.findings import Severity
from modelseal.models.bytesource import ByteSource
from modelseal.models.issues import ModelIssue, short
from modelseal.models.structure._common import (
    BAD_HEADER,
    CUSTOM_CODE,
    UNVERIFIABLE,
    Issues,
    Stop,
)

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


def _truncated(what: str, offset: int) -> Stop:
    return Stop(BAD_HEADER, Severity.HIGH, f"truncated: {what} runs past the end", offset)


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
            raise Stop(
                UNVERIFIABLE, Severity.MEDIUM,
                "metadata too large to walk within modelseal's bounds", self.pos,
            )  # fmt: skip


def check_gguf(path: Path) -> tuple[ModelIssue, ...]:
    """Check a GGUF file: version, counts against the file size, every metadata value and
    tensor info, alignment, and that tensor data lies inside the file without overlap. Also
    flags chat templates that reach Python internals (template injection)."""
    out = Issues()
    with ByteSource(path) as src:
        try:
            _gguf(src, out)
        except Stop as stop:
            out.add(stop.kind, stop.severity, stop.message, offset=stop.offset)
    return out.result()


def _gguf(src: ByteSource, out: Issues) -> None:
    head = src.read(0, 8)
    if len(head) < 8 or head[:4] != b"GGUF":
        raise Stop(BAD_HEADER, Severity.HIGH, "no GGUF magic and version", 0)
    endian, version = "little", struct.unpack("<I", head[4:8])[0]
    if not 1 <= version <= 3:
        endian, version = "big", struct.unpack(">I", head[4:8])[0]
    if not 1 <= version <= 3:
        raise Stop(BAD_HEADER, Severity.HIGH, "unsupported GGUF version", 4)
    cur = _GgufCursor(src, endian, version)
    cur.pos = 8
    n_tensors = cur.count("tensor count")
    n_kv = cur.count("metadata count")
    width = 8 if cur.wide else 4
    # The smallest tensor info: name length, n_dims, type, offset; a metadata pair: key
    # length, type, a one-byte value. A count the remaining bytes cannot hold is a lie.
    min_tensor, min_kv = width + 4 + 4 + 8, width + 4 + 1
    if n_tensors > MAX_GGUF_TENSORS or n_tensors * min_tensor > cur.remaining():
        raise Stop(BAD_HEADER, Severity.HIGH, f"implausible tensor count {n_tensors}", 8)
    if n_kv > MAX_GGUF_KV or n_kv * min_kv > cur.remaining():
        raise Stop(BAD_HEADER, Severity.HIGH, f"implausible metadata count {n_kv}", 8 + width)

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
            raise Stop(
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
            raise Stop(BAD_HEADER, Severity.HIGH, "arrays nested too deeply", at)
        etype_at = cur.pos
        etype = cur.u32("array element type")
        count_at = cur.pos
        count = cur.count("array length")
        if etype in _GGUF_SCALARS:
            cur.skip(count * _GGUF_SCALARS[etype], f"array of {count} values")
            return
        # Each element takes at least a length (strings) or a type and count (arrays).
        if etype not in (_GGUF_STRING, _GGUF_ARRAY):
            raise Stop(BAD_HEADER, Severity.HIGH, f"unknown array element type {etype}", etype_at)
        if count * 4 > cur.remaining():
            raise _truncated(f"array of {count} values", count_at)
        cur.spend(count)
        for _ in range(count):
            _gguf_value(cur, etype, count_at, depth + 1)
    else:
        raise Stop(BAD_HEADER, Severity.HIGH, f"unknown metadata value type {vtype}", at)


def _chat_template(
    src: ByteSource, cur: _GgufCursor, value_at: int, key: bytes, out: Issues
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


def _ggml_nbytes(name: str, dims: list[int], ggml_type: int, at: int, out: Issues) -> int | None:
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
