"""The layout finalizer (issue 16): BuildKit leaves the new layers uncompressed and their
timestamps as they are; modelseal clamps the tar headers to SOURCE_DATE_EPOCH and compresses
each layer once. Header patching is checked here on tars written by Python's tarfile (PAX and
GNU formats); real builds are in test_compression.py."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from modelseal.errors import GateError
from modelseal.imagebuild.finalize import (
    MAX_PAX,
    LayerStats,
    clamp_tar,
    finalize_layout,
)

EPOCH = 1_700_000_000
LATE = EPOCH + 12_345


def _tar(
    members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.PAX_FORMAT
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name: str, *, mtime: float = LATE, data: bytes = b"", kind: bytes = tarfile.REGTYPE,
          link: str = "", pax: dict[str, str] | None = None) -> tuple[tarfile.TarInfo, bytes | None]:  # fmt: skip
    info = tarfile.TarInfo(name)
    info.mtime = mtime  # type: ignore[assignment]  # tarfile keeps floats in PAX
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    if pax:
        info.pax_headers = dict(pax)
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def _clamp(raw: bytes, stats: LayerStats | None = None) -> bytes:
    return b"".join(clamp_tar(io.BytesIO(raw), EPOCH, "test", stats))


def _members(raw: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        return tar.getmembers()


def test_late_mtimes_are_clamped_and_everything_else_is_kept() -> None:
    long_name = "app/" + "d" * 150 + "/" + "f" * 120
    raw = _tar([
        _info("app/", kind=tarfile.DIRTYPE),
        _info("app/model.bin", data=b"weights" * 1000, mtime=LATE + 0.25),
        _info(long_name, data=b"long"),
        _info("app/hard", kind=tarfile.LNKTYPE, link="app/model.bin"),
        _info("app/sym", kind=tarfile.SYMTYPE, link="model.bin"),
        _info("app/.wh.gone", data=b""),
        _info("app/x", data=b"x", pax={"SCHILY.xattr.user.k": "v\u00e9", "atime": f"{LATE}.5",
                                     "ctime": f"{LATE}"}),
        _info("app/old", data=b"old", mtime=EPOCH - 10),
    ])  # fmt: skip
    stats = LayerStats()
    out = _clamp(raw, stats)
    before, after = _members(raw), _members(out)
    assert [m.name for m in after] == [m.name for m in before]
    for a, b in zip(before, after, strict=True):
        assert (b.type, b.linkname, b.size, b.mode) == (a.type, a.linkname, a.size, a.mode)
        assert b.mtime == min(a.mtime, EPOCH)
        for key in ("atime", "ctime"):
            if key in a.pax_headers:
                assert float(b.pax_headers[key]) <= EPOCH
    x = next(m for m in after if m.name == "app/x")
    assert x.pax_headers["SCHILY.xattr.user.k"] == "v\u00e9"
    assert next(m for m in after if m.name == "app/old").mtime == EPOCH - 10
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        f = tar.extractfile("app/model.bin")
        assert f is not None and f.read() == b"weights" * 1000
    assert stats.members >= len(before) and stats.clamped >= 7


def test_a_tar_without_late_times_passes_byte_for_byte() -> None:
    raw = _tar([_info("a/", kind=tarfile.DIRTYPE, mtime=EPOCH),
                _info("a/b", data=b"b" * 700, mtime=EPOCH - 1)])  # fmt: skip
    stats = LayerStats()
    assert _clamp(raw, stats) == raw
    assert stats.clamped == 0


def test_gnu_long_names_and_links_pass_through() -> None:
    name = "m/" + "n" * 300
    raw = _tar([_info(name, data=b"z"), _info("m/l", kind=tarfile.SYMTYPE, link="t" * 200)],
               fmt=tarfile.GNU_FORMAT)  # fmt: skip
    after = _members(_clamp(raw))
    assert [m.name for m in after] == [name, "m/l"]
    assert after[1].linkname == "t" * 200
    assert all(m.mtime == EPOCH for m in after)


def test_the_clamp_is_deterministic_and_matches_the_epoch_exactly() -> None:
    raw = _tar([_info("f", data=b"1", mtime=LATE + 0.999)])
    assert _clamp(raw) == _clamp(raw)
    (m,) = _members(_clamp(raw))
    assert m.mtime == EPOCH and float(m.pax_headers.get("mtime", EPOCH)) == EPOCH


def test_a_pax_size_record_decides_the_data_length() -> None:
    # Files over 8 GiB carry their size in a PAX record (the ustar field cannot hold it).
    info, data = _info("big", data=b"0123456789", pax={"size": "10"})
    raw = bytearray(_tar([(info, data), _info("after", data=b"a")]))
    # The file's own header: after the PAX header block and its data block.
    hdr = 1024
    assert raw[hdr : hdr + 3] == b"big"
    raw[hdr + 124 : hdr + 136] = b"%011o\0" % 0
    raw[hdr + 148 : hdr + 156] = b" " * 8
    raw[hdr + 148 : hdr + 156] = b"%06o\0 " % sum(raw[hdr : hdr + 512])
    after = _members(_clamp(bytes(raw)))
    assert [(m.name, m.size) for m in after] == [("big", 10), ("after", 1)]


def _header_offset_error(raw: bytes, match: str) -> None:
    with pytest.raises(GateError, match=match) as e:
        _clamp(raw)
    assert "layer test" in e.value.message


def test_a_bad_checksum_is_refused_with_its_offset() -> None:
    raw = bytearray(_tar([_info("a", data=b"a", mtime=EPOCH), _info("b", data=b"b")]))
    raw[1024 + 10] ^= 0x01  # the second member's name
    _header_offset_error(bytes(raw), r"byte 1024: the header checksum")


def test_an_oversize_pax_header_is_refused() -> None:
    raw = _tar([_info("a", data=b"a", pax={"comment": "c" * (MAX_PAX + 10)})])
    _header_offset_error(raw, "PAX header of")


def test_a_malformed_pax_record_is_refused() -> None:
    raw = bytearray(_tar([_info("a", data=b"a", pax={"comment": "hello"})]))
    start = raw.index(b"comment=hello")
    raw[start - 3 : start - 1] = b"99"  # a record length past the header's end
    _header_offset_error(bytes(raw), "PAX record")


def test_a_truncated_layer_is_refused() -> None:
    raw = _tar([_info("a", data=b"a" * 5000)])
    _header_offset_error(raw[:2048], "truncated")
    _header_offset_error(raw[: 512 + 5120 + 100], "end-of-archive|truncated")


def test_a_link_with_data_is_refused() -> None:
    info, _ = _info("l", kind=tarfile.SYMTYPE, link="x")
    block = bytearray(info.tobuf(tarfile.USTAR_FORMAT))
    block[124:136] = b"%011o\0" % 512
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    _header_offset_error(bytes(block) + bytes(512) + bytes(1024), "declares 512 bytes")


def test_a_non_octal_field_is_refused() -> None:
    block = bytearray(tarfile.TarInfo("a").tobuf(tarfile.USTAR_FORMAT))
    block[136:148] = b"12345678z01\0"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    _header_offset_error(bytes(block) + bytes(1024), "mtime field")


# --- a whole layout ------------------------------------------------------------------------------


def _layout(tmp: Path, layers: list[tuple[bytes, str]]) -> tuple[Path, str]:
    """A minimal OCI layout of one image (blobs written as given)."""
    root = tmp / "oci"
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        d = hashlib.sha256(data).hexdigest()
        (blobs / d).write_bytes(data)
        return "sha256:" + d

    descs, diffs = [], []
    for blob, media in layers:
        raw = gzip.decompress(blob) if media.endswith("gzip") else blob
        diffs.append("sha256:" + hashlib.sha256(raw).hexdigest())
        descs.append({"mediaType": media, "digest": put(blob), "size": len(blob)})
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()  # fmt: skip
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put(config), "size": len(config)},
        "layers": descs,
    }).encode()  # fmt: skip
    top = put(manifest)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": top,
         "size": len(manifest)}]}))  # fmt: skip
    return root, top


_TAR = "application/vnd.oci.image.layer.v1.tar"


@pytest.mark.parametrize("compression", ["zstd", "gzip", "uncompressed"])
def test_a_layout_is_finalized_reproducibly(tmp_path: Path, compression: str) -> None:
    base = gzip.compress(_tar([_info("etc/", kind=tarfile.DIRTYPE)]), mtime=0)
    new = _tar([_info("app/", kind=tarfile.DIRTYPE), _info("app/w", data=b"w" * 4096)])
    digests = []
    for run in ("a", "b"):
        root, top = _layout(tmp_path / run, [(base, _TAR + "+gzip"), (new, _TAR)])
        fin = finalize_layout(root, top, compression=compression, level=None, force=False,
                              epoch=EPOCH)  # fmt: skip
        digests.append(fin.top_digest)
        index = json.loads((root / "index.json").read_text())
        assert [d["digest"] for d in index["manifests"]] == [fin.top_digest]
        manifest = json.loads((root / "blobs/sha256" / fin.top_digest[7:]).read_bytes())
        # The base layer is untouched; the new one compressed as asked, timestamps clamped.
        assert manifest["layers"][0]["digest"] == "sha256:" + hashlib.sha256(base).hexdigest()
        layer = manifest["layers"][1]
        assert layer["mediaType"] == _TAR + {"zstd": "+zstd", "gzip": "+gzip"}.get(compression, "")
        blob = (root / "blobs/sha256" / layer["digest"][7:]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == layer["digest"][7:]
        assert len(blob) == layer["size"]
        if compression == "zstd":
            raw = subprocess.run(
                ["zstd", "-dc"], input=blob, capture_output=True, check=True
            ).stdout
        elif compression == "gzip":
            raw = gzip.decompress(blob)
        else:
            raw = blob
        assert [m.mtime for m in _members(raw)] == [EPOCH, EPOCH]
        config = json.loads((root / "blobs/sha256" / manifest["config"]["digest"][7:]).read_bytes())
        assert config["rootfs"]["diff_ids"][1] == "sha256:" + hashlib.sha256(raw).hexdigest()
        assert fin.diff_ids == {"sha256:" + hashlib.sha256(new).hexdigest():
                                config["rootfs"]["diff_ids"][1]}  # fmt: skip
        # What BuildKit wrote and the finalized layout no longer needs is gone.
        assert not (root / "blobs/sha256" / hashlib.sha256(new).hexdigest()).exists() or (
            compression == "uncompressed"
        )
    assert digests[0] == digests[1]


def test_force_recompresses_the_base_without_touching_its_headers(tmp_path: Path) -> None:
    inner = _tar([_info("etc/x", data=b"x")])  # a late mtime, but a base layer: kept
    root, top = _layout(tmp_path, [(gzip.compress(inner, mtime=0), _TAR + "+gzip"),
                                   (_tar([_info("app/", kind=tarfile.DIRTYPE)]), _TAR)])  # fmt: skip
    fin = finalize_layout(root, top, compression="zstd", level=1, force=True, epoch=EPOCH)
    manifest = json.loads((root / "blobs/sha256" / fin.top_digest[7:]).read_bytes())
    assert [x["mediaType"] for x in manifest["layers"]] == [_TAR + "+zstd"] * 2
    config = json.loads((root / "blobs/sha256" / manifest["config"]["digest"][7:]).read_bytes())
    assert config["rootfs"]["diff_ids"][0] == "sha256:" + hashlib.sha256(inner).hexdigest()


@pytest.mark.parametrize(
    ("members", "model_only"),
    [
        ([_info("app/", kind=tarfile.DIRTYPE), _info("app/model/", kind=tarfile.DIRTYPE),
          _info("app/model/w.bin", data=b"w"), _info("app/model/.wh.old")], True),
        # a PAX long name below the model path
        ([_info("app/model/" + "n" * 200, data=b"w")], True),
        ([_info("app/model/w.bin", data=b"w"), _info("app/server.py", data=b"x")], False),
        # a whiteout outside the model path deletes something a scanner must not see
        ([_info("app/model/w.bin", data=b"w"), _info("usr/.wh.lib")], False),
        # a directory that is not on the way to the model path
        ([_info("app/model/w.bin", data=b"w"), _info("etc/", kind=tarfile.DIRTYPE)], False),
        # a symlink at a model path's parent is not a directory on the way
        ([_info("app", kind=tarfile.SYMTYPE, link="/srv")], False),
        # "app/models" is not below "app/model"
        ([_info("app/models/w.bin", data=b"w")], False),
    ],
)  # fmt: skip
def test_a_layer_holding_only_model_files_is_told_apart(
    members: list[tuple[tarfile.TarInfo, bytes | None]], model_only: bool
) -> None:
    stats = LayerStats(model_paths=("app/model",))
    _clamp(_tar(members), stats)
    assert stats.model_only is model_only
    gnu = LayerStats(model_paths=("app/model",))
    _clamp(_tar(members, fmt=tarfile.GNU_FORMAT), gnu)
    assert gnu.model_only is model_only


def test_a_ustar_name_prefix_is_read_as_part_of_the_name() -> None:
    deep = "app/model/" + "d" * 120 + "/w.bin"  # over 100 bytes: ustar's prefix field
    inside, outside = LayerStats(model_paths=("app/model",)), LayerStats(model_paths=("srv",))
    raw = _tar([_info(deep, data=b"w")], fmt=tarfile.USTAR_FORMAT)
    assert raw[345:355] == b"app/model/"
    _clamp(raw, inside)
    _clamp(raw, outside)
    assert inside.model_only and not outside.model_only


def test_the_zstd_output_does_not_depend_on_the_number_of_threads(tmp_path: Path) -> None:
    """The finalizer runs zstd with -T0 (as many threads as cores); the bytes must be those of
    any other thread count, or a rebuild on a machine with more cores would differ."""
    # Compressible and over several of zstd's jobs (its multi-threaded mode splits the input).
    data = b"".join(hashlib.sha256(b"%d" % (i // 7)).digest() * 4 for i in range(400_000))
    layer = _tar([_info("app/w", data=data, mtime=EPOCH)])
    root, top = _layout(tmp_path, [(layer, _TAR)])
    fin = finalize_layout(root, top, compression="zstd", level=None, force=False, epoch=EPOCH)
    manifest = json.loads((root / "blobs/sha256" / fin.top_digest[7:]).read_bytes())
    blob = (root / "blobs/sha256" / manifest["layers"][0]["digest"][7:]).read_bytes()
    for threads in ("-T1", "-T3", "-T8"):
        other = subprocess.run(["zstd", "-q", "-c", "-3", threads], input=layer,
                               capture_output=True, check=True).stdout  # fmt: skip
        assert other == blob, threads


def test_offsets_in_errors_count_the_input_after_a_clamped_pax_header() -> None:
    # A PAX header just over one block, which the clamp shrinks to one block: the output is
    # shorter than the input from there on, and offsets in messages are the input's.
    for n in range(380, 520):
        first = _info("a", data=b"a", mtime=LATE + 0.123456789, pax={"comment": "c" * n})
        raw = bytearray(_tar([first, _info("b", data=b"b", mtime=EPOCH)]))
        if 512 < int(raw[124:135], 8) <= 520:
            break
    else:
        raise AssertionError("no PAX header of 513-520 bytes")
    assert len(_clamp(bytes(raw))) < len(raw)
    second = _members(bytes(raw))[1].offset
    raw[second + 1] ^= 0x01  # "b"'s header no longer matches its checksum
    _header_offset_error(bytes(raw), f"byte {second}: the header checksum")


#: FINALIZER_VERSION and the SHA-256 of finalize.py without that line: a change to the module
#: must be looked at — one that can change a layer's or a manifest's bytes bumps the version
#: (recorded in the provenance as internalParameters.layoutFinalizer; a rebuild refuses
#: another), then this pin is updated either way.
PINNED_FINALIZER = (1, "6613df08b16fd7f3a4518b16725db84d7489c90ca3ce818728ad7137997be47b")


def test_the_finalizer_version_is_bumped_with_the_finalizer() -> None:
    from modelseal.imagebuild import finalize

    text = Path(finalize.__file__ or "").read_text(encoding="utf-8")
    kept = [ln for ln in text.splitlines() if not ln.startswith("FINALIZER_VERSION")]
    actual = hashlib.sha256("\n".join(kept).encode()).hexdigest()
    assert (finalize.FINALIZER_VERSION, actual) == PINNED_FINALIZER, (
        "src/modelseal/imagebuild/finalize.py changed. If the change can change the finalized "
        "layout's bytes (headers, compression, JSON), bump FINALIZER_VERSION there; then, in "
        f"any case, set PINNED_FINALIZER in {Path(__file__).name} to "
        f'({finalize.FINALIZER_VERSION}, "{actual}").'
    )
