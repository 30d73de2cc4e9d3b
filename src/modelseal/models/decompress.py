"""Streaming decompressors for the codecs joblib writes (zlib, gzip, bz2, xz, lzma, lz4).

Output comes piece by piece, each piece bounded, so memory stays flat whatever the compression
ratio and the caller decides when to stop (a decompression bomb costs only the bytes the caller
asks for). LZ4 has no standard-library decoder: a minimal frame decoder lives here.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Literal

from modelseal.models.bytesource import READ_CHUNK, ByteSource

#: liblzma allocates the dictionary the header asks for; a hostile header may ask for 4 GiB.
LZMA_MEMLIMIT: Final = 256 << 20

Codec = Literal["zlib", "zlib-zf", "gzip", "bz2", "xz", "lzma", "lz4"]


def sniff_codec(head: bytes) -> Codec | None:
    """The compression joblib may have used, from the magic bytes."""
    if head.startswith(b"\x1f\x8b\x08"):
        return "gzip"
    if head.startswith(b"BZh") and head[3:4].isdigit() and head[4:10] == b"1AY&SY":
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x04\x22\x4d\x18"):
        return "lz4"
    if head.startswith(b"ZF0x"):
        return "zlib-zf"  # joblib < 0.10: b"ZF" + hex length padded to 19 bytes + zlib
    if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"
    if head[:1] == b"\x5d" and head[1:3] == b"\x00\x00":
        return "lzma"  # joblib's "lzma": FORMAT_ALONE, lc=3 lp=0 pb=2
    return None


def decompress_prefix(path: Path, codec: str, limit: int) -> bytes:
    """The first ``limit`` bytes of the decompressed content of a compressed file.

    Raises :class:`ValueError` when the stream is corrupt (and :class:`ConfigError` when the
    file cannot be read). Only as much input as needed is read; memory is ``O(limit)``.
    """
    with ByteSource(path) as src:
        return decompress_source_prefix(src, codec, limit)


def decompress_source_prefix(src: ByteSource, codec: str, limit: int) -> bytes:
    out = bytearray()
    for chunk, _ in iter_decompressed(src, codec, min(limit, READ_CHUNK)):
        out += chunk[: limit - len(out)]
        if len(out) >= limit:
            break
    return bytes(out)


def iter_decompressed(
    src: ByteSource, codec: str, chunk: int = READ_CHUNK
) -> Iterator[tuple[bytes, int]]:
    """The decompressed content of ``src`` piece by piece, with the compressed bytes consumed
    so far: each piece is at most ``chunk`` bytes (an LZ4 block: at most its frame's block
    size), so memory stays flat whatever the ratio. The caller decides when to stop.

    Raises :class:`ValueError` when the stream is corrupt (:class:`ConfigError` when the file
    cannot be read).
    """
    try:
        if codec == "lz4":
            yield from _lz4_pieces(src)
        else:
            yield from _stdlib_pieces(src, codec, chunk)
    except (zlib.error, lzma.LZMAError, OSError, EOFError, MemoryError) as e:
        raise ValueError(f"corrupt {codec} stream: {e}") from None


def _stdlib_pieces(src: ByteSource, codec: str, chunk: int) -> Iterator[tuple[bytes, int]]:
    pos = 21 if codec == "zlib-zf" else 0
    if codec in ("zlib", "zlib-zf", "gzip"):
        z = zlib.decompressobj(31 if codec == "gzip" else 15)
        tail = b""
        while not z.eof:
            data = tail or src.read(pos, READ_CHUNK)
            if not tail:
                if not data:
                    return
                pos += len(data)
            out = z.decompress(data, chunk)
            tail = z.unconsumed_tail
            if out:
                yield out, pos - len(tail)
        return
    d: bz2.BZ2Decompressor | lzma.LZMADecompressor
    if codec == "bz2":
        d = bz2.BZ2Decompressor()
    elif codec in ("xz", "lzma"):
        form = lzma.FORMAT_XZ if codec == "xz" else lzma.FORMAT_ALONE
        d = lzma.LZMADecompressor(format=form, memlimit=LZMA_MEMLIMIT)
    else:
        raise ValueError(f"unknown codec {codec!r}")
    while not d.eof:
        data = b""
        if d.needs_input:
            # Small reads: bz2 buffers its unconsumed input, and the consumed count is only
            # as exact as the read size.
            data = src.read(pos, 64 << 10)
            if not data:
                return
            pos += len(data)
        out = d.decompress(data, chunk)
        if out:
            yield out, pos


_LZ4_BLOCK_MAX: Final = {4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20}
#: LZ4 matches reach at most this far back.
_LZ4_WINDOW: Final = 64 << 10


def _lz4_pieces(src: ByteSource) -> Iterator[tuple[bytes, int]]:
    """A minimal LZ4 *frame* decoder (joblib's lz4): one piece per block, each at most the
    frame's block size; only the 64 KiB that later matches can refer to are kept."""
    head = src.read(0, 19)
    if len(head) < 7 or head[:4] != b"\x04\x22\x4d\x18":
        raise ValueError("not an LZ4 frame")
    flg, bd = head[4], head[5]
    if flg >> 6 != 1:
        raise ValueError("unsupported LZ4 frame version")
    block_max = _LZ4_BLOCK_MAX.get((bd >> 4) & 7)
    if block_max is None:
        raise ValueError("invalid LZ4 block size")
    pos = 6 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0) + 1
    out = bytearray()
    while True:
        raw = src.read(pos, 4)
        if len(raw) < 4:
            return
        size = int.from_bytes(raw, "little")
        if size == 0:
            return  # end mark
        stored, size = bool(size & 0x80000000), size & 0x7FFFFFFF
        if size > block_max:
            raise ValueError("LZ4 block larger than the frame allows")
        block = src.read(pos + 4, size)
        pos += 4 + size + (4 if flg & 0x10 else 0)
        if len(out) > _LZ4_WINDOW:
            del out[: len(out) - _LZ4_WINDOW]
        start = len(out)
        if stored:
            out += block
        else:
            _lz4_block(block, out, start + block_max + 1)
        if len(out) - start > block_max:
            raise ValueError("LZ4 block inflates past the frame's block size")
        if len(out) > start:
            yield bytes(out[start:]), min(pos, src.size)
        if len(block) < size:
            return


def _lz4_block(src: bytes, out: bytearray, limit: int) -> None:
    """Decode one LZ4 block onto ``out`` (which holds the history linked blocks refer to),
    stopping once ``out`` holds ``limit`` bytes."""
    i, n = 0, len(src)

    def length(base: int) -> int:
        nonlocal i
        if base != 15:
            return base
        while True:
            if i >= n:
                raise ValueError("truncated LZ4 length")
            b = src[i]
            i += 1
            base += b
            if b != 255:
                return base

    while i < n and len(out) < limit:
        token = src[i]
        i += 1
        literals = length(token >> 4)
        out += src[i : i + literals]
        i += literals
        if i >= n:
            return  # the last sequence has literals only
        if i + 2 > n:
            raise ValueError("truncated LZ4 offset")
        offset = src[i] | src[i + 1] << 8
        i += 2
        if offset == 0 or offset > len(out):
            raise ValueError("LZ4 match offset outside the history")
        match = min(length(token & 15) + 4, max(limit - len(out), 0))
        start = len(out) - offset
        if offset >= match:
            out += out[start : start + match]
        else:  # overlapping copy: the pattern repeats
            pattern = bytes(out[start:])
            out += (pattern * (match // offset + 1))[:match]
