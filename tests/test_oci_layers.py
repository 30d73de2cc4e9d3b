"""Reading layer blobs (modelseal.oci.open_layer, stream_tar): the gzip reader reads what
GzipFile reads, in large steps; every compressed stream reads exactly what was asked for; a
truncated or corrupt blob read through ImageFs is a GateError naming the layer."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
from tests.support.layouts import M, layer, make_layout
from tests.support.tools import require

from modelseal import oci
from modelseal.errors import GateError
from modelseal.imagefs import ImageFs, MemberSink

BIG = (3 << 20) + 5  # crosses the 1 MiB chunks, and ends off a tar block


def _zstd(data: bytes) -> bytes:
    require(shutil.which("zstd") is not None, "zstd")
    return subprocess.run(["zstd", "-q", "-c", "-1"], input=data, capture_output=True,
                          check=True).stdout  # fmt: skip


def _compress(kind: str, data: bytes) -> bytes:
    return _zstd(data) if kind == "zstd" else gzip.compress(data, mtime=0)


def _read_all(path: Path, media: str, step: int) -> bytes:
    parts = []
    with oci.open_layer(path, media) as f:
        while chunk := f.read(step):
            parts.append(chunk)
            assert len(chunk) == step or not f.read(step), "a short read before the end"
    return b"".join(parts)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
@pytest.mark.parametrize("step", [1, 512, 1 << 20, 3 << 20])
def test_a_layer_reads_whole_in_any_step(tmp_path: Path, kind: str, step: int) -> None:
    # Random (stored) and repetitive (compressed) parts, so that both kinds of block are read.
    raw = os.urandom(1 << 20) + b"weights" * 300_000 + os.urandom(12345)
    if step == 1:
        raw = raw[:70_000]
    blob = tmp_path / "blob"
    blob.write_bytes(_compress(kind, raw))
    assert _read_all(blob, f"application/vnd.oci.image.layer.v1.tar+{kind}", step) == raw


def test_gzip_members_and_zero_padding_read_as_gzipfile_reads_them(tmp_path: Path) -> None:
    parts = [os.urandom(700_000), b"", b"x" * 2_000_000, os.urandom(10)]
    blob = tmp_path / "blob"
    blob.write_bytes(
        gzip.compress(parts[0], mtime=0) + bytes(1000) + gzip.compress(parts[1], mtime=0)
        + gzip.compress(parts[2], mtime=0) + gzip.compress(parts[3], mtime=0) + bytes(3)
    )  # fmt: skip
    with gzip.GzipFile(blob) as reference:
        assert reference.read() == b"".join(parts)
    assert _read_all(blob, "", 512) == _read_all(blob, "", 1 << 20) == b"".join(parts)


@pytest.mark.parametrize(
    "damage", ["truncated", "bad crc", "bad length", "garbage after", "bad deflate"]
)
def test_a_damaged_gzip_stream_is_an_error(tmp_path: Path, damage: str) -> None:
    raw = b"model weights " * 50_000
    good = bytearray(gzip.compress(raw, mtime=0))
    if damage == "truncated":
        blob = bytes(good[: len(good) - 20])
    elif damage == "bad crc":
        good[-8] ^= 1
        blob = bytes(good)
    elif damage == "bad length":
        good[-1] ^= 1
        blob = bytes(good)
    elif damage == "garbage after":
        blob = bytes(good) + b"\x00\x00junk"
    else:
        good[len(good) // 2] ^= 0xFF
        blob = bytes(good)
    (tmp_path / "blob").write_bytes(blob)
    with pytest.raises((EOFError, OSError, zlib.error)), gzip.GzipFile(tmp_path / "blob") as ref:
        ref.read()  # GzipFile refuses it too
    with pytest.raises((EOFError, zlib.error)):
        _read_all(tmp_path / "blob", "", 1 << 20)


class _Tap:
    """Records what ImageFs shows a tap: each member's head, and the whole content of one."""

    def __init__(self, take: str) -> None:
        self.take = take
        self.heads: dict[str, bytes] = {}
        self.content = bytearray()
        self.closed = False

    def member(
        self, layer: int, ordinal: int, path: str, size: int, head: bytes
    ) -> MemberSink | None:
        self.heads[path] = head
        return self if path == self.take else None

    def write(self, data: bytes) -> None:
        self.content += data

    def close(self) -> None:
        self.closed = True

    def hashed(self, layer: int, ordinal: int, sha256: str) -> None:
        pass


@pytest.mark.parametrize("kind", ["gzip", "zstd", "uncompressed"])
def test_imagefs_reads_big_members_whole_and_shows_the_tap_the_first_mib(
    tmp_path: Path, kind: str
) -> None:
    big, skipped, other = os.urandom(BIG), os.urandom(BIG), os.urandom(1000)
    tar = layer(M("app/model/w.bin", data=big), M("app/skipped", data=skipped),
                M("app/model/small", data=other), M("app/empty"))  # fmt: skip
    blob = tar if kind == "uncompressed" else _compress(kind, tar)
    layout, digest = make_layout(tmp_path / "oci", [blob])
    tap = _Tap(take="app/model/w.bin")
    fs = ImageFs.build(layout, digest, hash_paths=lambda p: p.startswith("app/model/"), tap=tap)
    for path, data in (("app/model/w.bin", big), ("app/model/small", other)):
        entry = fs.entry(path)
        assert entry is not None and entry.sha256 == hashlib.sha256(data).hexdigest()
    assert tap.heads["app/model/w.bin"] == big[: 1 << 20]
    assert tap.heads["app/model/small"] == other
    assert len(tap.heads["app/skipped"]) == 1 << 20  # only the head of what nobody takes
    assert "app/empty" not in tap.heads
    assert bytes(tap.content) == big and tap.closed
    assert fs.hash_files(["app/skipped"])["app/skipped"] == hashlib.sha256(skipped).hexdigest()


def _damaged(kind: str, damage: str, tar: bytes) -> bytes:
    blob = bytearray(_compress(kind, tar))
    if damage == "truncated":
        return bytes(blob[: len(blob) // 2])
    blob[len(blob) // 2] ^= 0xFF
    return bytes(blob)


@pytest.mark.parametrize(
    ("kind", "damage"),
    [("zstd", "truncated"), ("zstd", "corrupt"), ("gzip", "truncated"), ("gzip", "corrupt")],
)
def test_a_damaged_layer_is_a_gate_error_naming_it(tmp_path: Path, kind: str, damage: str) -> None:
    # Compressible content, so that a flipped byte breaks the compressed data itself.
    tar = layer(M("app/a", data=b"a" * 100_000), M("app/model/w.bin", data=b"weights" * 400_000),
                M("app/z", data=b"z" * 1000))  # fmt: skip
    blob = _damaged(kind, damage, tar)
    layout, digest = make_layout(tmp_path / "oci", [layer(M("base")), blob])
    layer_digest = hashlib.sha256(blob).hexdigest()
    with pytest.raises(GateError) as caught:
        ImageFs.build(layout, digest, hash_paths=lambda p: True)
    message = caught.value.message
    assert layer_digest[:12] in message, message
    if kind == "gzip":
        assert "layer 2 (sha256:" in message and "unreadable" in message


def test_the_forward_reader_never_seeks_back(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(layer(M("a", data=b"x" * 2000), M("b")))
    with oci.open_layer(blob, "") as stream, oci.stream_tar(stream) as tar:
        first = tar.next()
        assert first is not None and first.name == "a"
        forward = tar.fileobj
        assert forward is not None
        assert forward.read(10) == b"x" * 10
        with pytest.raises(OSError, match="cannot seek back"):
            forward.seek(0)


@pytest.mark.parametrize("kind", ["zstd", "gzip"])
@pytest.mark.parametrize("padding", [0, 20_000, 900_000])
def test_a_flipped_byte_in_stored_weights_is_found_at_the_stream_end(
    tmp_path: Path, kind: str, padding: int
) -> None:
    # Random weights are stored as they are (zstd raw blocks, deflate stored blocks): a flipped
    # byte decompresses "fine" and only the stream's checksum at its end (zstd's frame
    # checksum, gzip's CRC-32) finds it, after the tar's end-of-archive blocks (and whatever
    # padding a writer put after them), which the tar reader itself never needs.
    tar = layer(M("app/model/w.bin", data=os.urandom(BIG))) + bytes(padding)
    blob = bytearray(_compress(kind, tar))
    blob[len(blob) // 3] ^= 0x01
    layout, digest = make_layout(tmp_path / "oci", [bytes(blob)])
    with pytest.raises(GateError) as caught:
        ImageFs.build(layout, digest, hash_paths=lambda p: True)
    assert hashlib.sha256(blob).hexdigest()[:12] in caught.value.message


def test_many_tiny_gzip_members_cost_what_their_bytes_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hostile blob of 20,000 empty gzip members: each member's leftover input must not be
    # handed to zlib (and copied by it) whole again, which made reading quadratic in the
    # members per MiB read.
    fed = [0]

    class Counting:
        def __init__(self, wbits: int) -> None:
            self._z = zlib.decompressobj(wbits)

        def decompress(self, data: bytes, limit: int) -> bytes:
            fed[0] += len(data)
            return self._z.decompress(data, limit)

        def __getattr__(self, name: str) -> object:
            return getattr(self._z, name)

    monkeypatch.setattr(oci, "zlib", SimpleNamespace(decompressobj=Counting, error=zlib.error))
    blob = gzip.compress(b"x" * 1000, mtime=0) + gzip.compress(b"", mtime=0) * 20_000
    (tmp_path / "blob").write_bytes(blob + bytes(5))
    assert _read_all(tmp_path / "blob", "", 512) == b"x" * 1000
    # At most one first feed per member (then doubling), not the rest of the read each time.
    bound = len(blob) + 20_001 * oci._FIRST_FEED
    assert fed[0] <= bound, f"{fed[0]} bytes given to zlib for a {len(blob)}-byte blob"
