"""The protobuf wire format (ONNX), bounds-checked.

Fields are walked by offset: length-delimited payloads are skipped, never read, so a message of
any size costs memory proportional to one field header. Nothing here knows a schema; callers
check field numbers and wire types against theirs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from modelseal.models.bytesource import ByteSource


class ProtoError(ValueError):
    """Malformed protobuf wire data at ``offset``."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class ProtoField:
    """One field: number, wire type, where its tag is, and its value.

    ``value`` is the integer for varint/fixed fields and the payload offset for
    length-delimited ones (whose payload is ``[value, value + length)``).
    """

    number: int
    wire_type: int
    offset: int
    value: int
    length: int = 0


WIRE_VARINT: Final = 0
WIRE_FIXED64: Final = 1
WIRE_LEN: Final = 2
WIRE_FIXED32: Final = 5


def decode_varint(buf: bytes, i: int, base: int = 0) -> tuple[int, int]:
    """Decode a varint of at most 10 bytes at ``buf[i]``; returns (value, next index).

    ``base`` is the file offset of ``buf[0]``, for the error message.
    """
    result = 0
    shift = 0
    start = i
    while True:
        if i >= len(buf):
            raise ProtoError(base + start, "truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift >= 70:
            raise ProtoError(base + start, "varint longer than 10 bytes")


def iter_proto_fields(src: ByteSource, start: int, end: int) -> Iterator[ProtoField]:
    """The fields of the message stored in ``[start, end)`` of ``src``, in file order.

    Length-delimited payloads are skipped by offset, never read. Raises :class:`ProtoError` on
    a malformed tag, a truncated value, a payload running past ``end``, or a (deprecated)
    group, which no format modelseal reads uses.
    """
    end = min(end, src.size)
    pos = start
    while pos < end:
        buf = src.read(pos, min(20, end - pos))
        tag, i = decode_varint(buf, 0, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0 or number >= 1 << 29:
            raise ProtoError(pos, f"invalid field number {number}")
        if wire == WIRE_VARINT:
            value, j = decode_varint(buf, i, pos)
            yield ProtoField(number, wire, pos, value)
            pos += j
        elif wire in (WIRE_FIXED64, WIRE_FIXED32):
            width = 8 if wire == WIRE_FIXED64 else 4
            if pos + i + width > end:
                raise ProtoError(pos, f"field {number}: truncated fixed{width * 8} value")
            value = int.from_bytes(src.read(pos + i, width), "little")
            yield ProtoField(number, wire, pos, value)
            pos += i + width
        elif wire == WIRE_LEN:
            length, j = decode_varint(buf, i, pos)
            data = pos + j
            if data + length > end:
                raise ProtoError(pos, f"field {number}: {length}-byte payload runs past its end")
            yield ProtoField(number, wire, pos, data, length)
            pos = data + length
        else:
            raise ProtoError(pos, f"field {number}: unsupported wire type {wire}")


#: (number, wire type, tag offset, value or payload offset, payload length)
FieldTuple = tuple[int, int, int, int, int]


def iter_proto_buffer(
    buf: bytes, base: int = 0, lo: int = 0, hi: int | None = None
) -> Iterator[FieldTuple]:
    """The fields of the message in ``buf[lo:hi]`` (``buf[0]`` is at file offset ``base``),
    as tuples; offsets in them are file offsets. The in-memory twin of
    :func:`iter_proto_fields`, for small messages, where per-field speed matters."""
    n = len(buf) if hi is None else min(hi, len(buf))
    i = lo
    while i < n:
        start = i
        b = buf[i]
        if b < 0x80:
            tag, i = b, i + 1
        else:
            tag, i = decode_varint(buf, i, base)
        number, wire = tag >> 3, tag & 7
        if number == 0 or number >= 1 << 29:
            raise ProtoError(base + start, f"invalid field number {number}")
        if wire in (WIRE_LEN, WIRE_VARINT):
            if i >= n:
                raise ProtoError(base + start, f"field {number}: truncated value")
            b = buf[i]
            if b < 0x80:
                value, i = b, i + 1
            else:
                value, i = decode_varint(buf, i, base)
            if wire == WIRE_VARINT:
                yield number, wire, base + start, value, 0
                continue
            if i + value > n:
                raise ProtoError(
                    base + start, f"field {number}: {value}-byte payload runs past its end"
                )
            yield number, wire, base + start, base + i, value
            i += value
        elif wire in (WIRE_FIXED64, WIRE_FIXED32):
            width = 8 if wire == WIRE_FIXED64 else 4
            if i + width > n:
                raise ProtoError(base + start, f"field {number}: truncated fixed{width * 8} value")
            yield number, wire, base + start, int.from_bytes(buf[i : i + width], "little"), 0
            i += width
        else:
            raise ProtoError(base + start, f"field {number}: unsupported wire type {wire}")
