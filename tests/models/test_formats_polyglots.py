"""The full detector (models gate) on polyglots and on what hides a pickle from a bounded
window (review r17): a pickle from offset 0 is a pickle whatever else its bytes match, long
string arguments are stepped over, V7 tars and zips with data before their first local header
are archives; and the genuine formats whose first bytes happen to start like a pickle stay
what they are."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import pytest
from tests.support.model_files import EVIL, safetensors_bytes, v7_tar, valid_gguf, zip_bytes

from modelseal.models.formats import detect_format
from modelseal.models.issues import Format
from modelseal.models.scan import scan_file, scan_payload


def _detect(tmp_path: Path, data: bytes) -> tuple[Format, tuple[str, ...]]:
    path = tmp_path / "f"
    path.write_bytes(data)
    scan = scan_file(path)
    return scan.format, tuple(i.kind for i in scan.issues)


@pytest.mark.parametrize(
    "data",
    [
        # safetensors: the first 8 bytes a 37.9 MB header length, the 9th "{"
        (b"\x80\x02B\x02\x00\x00\x00\x00{0" + EVIL).ljust(0x2420280 + 8 + 16, b" "),
        # GGUF: "G" BINFLOAT eats "GUF", the version and a byte
        b"GGUF\x03\x00\x00\x00\x00" + b"0" + EVIL + b"\0" * 64,
        # HDF5: the signature at 512, after a text pickle in the user block
        EVIL.ljust(512, b"\0") + b"\x89HDF\r\n\x1a\n" + b"\0" * 600,
        # a 2 MiB leading string, then POP (past the 64 KiB window)
        b"X" + struct.pack("<I", 2 << 20) + b"a" * (2 << 20) + b"0" + EVIL,
        b"B" + struct.pack("<I", 2 << 20) + b"a" * (2 << 20) + b"0" + EVIL,
    ],
    ids=["safetensors", "gguf", "hdf5-userblock", "binunicode", "binbytes"],
)
def test_a_pickle_that_runs_code_is_scanned_whatever_else_it_matches(
    tmp_path: Path, data: bytes
) -> None:
    fmt, kinds = _detect(tmp_path, data)
    assert fmt is Format.PICKLE
    assert "unsafe-global" in kinds


@pytest.mark.parametrize("header_len", [0x2E28, 0x0280, 0x0580, 0x12E28])
def test_genuine_safetensors_starting_like_a_pickle_stay_safetensors(
    tmp_path: Path, header_len: int
) -> None:
    # "(." (MARK STOP) or PROTO 2..5 as the header length's first bytes: no import, no call.
    header = b'{"__metadata__":{}}'.ljust(header_len, b" ")
    data = struct.pack("<Q", header_len) + header + b"\0" * 64
    assert detect_format(_w(tmp_path, data)).format is Format.SAFETENSORS


def _w(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "w"
    path.write_bytes(data)
    return path


def test_real_safetensors_and_gguf_are_unchanged(tmp_path: Path) -> None:
    assert detect_format(_w(tmp_path, safetensors_bytes([1.0] * 64))).format is Format.SAFETENSORS
    assert detect_format(_w(tmp_path, valid_gguf())).format is Format.GGUF


def test_a_v7_legacy_torch_tar_is_detected_and_its_pickle_scanned(tmp_path: Path) -> None:
    data = v7_tar([("storages", b"\0" * 4096), ("tensors", b"\0"), ("pickle", EVIL)])
    assert bytes(data[257:262]) != b"ustar"
    fmt, kinds = _detect(tmp_path, data)
    assert fmt is Format.TORCH_LEGACY
    assert "unsafe-global" in kinds


def test_a_zip_with_data_before_its_first_local_header_is_a_zip(tmp_path: Path) -> None:
    data = b"#!/usr/bin/env python3\n" + zip_bytes([("archive/data.pkl", EVIL)])
    path = _w(tmp_path, data)
    found = detect_format(path)
    assert found.detail.get("container") == "zip" or found.format is Format.PYTORCH_ZIP
    assert "archive/data.pkl" in found.zip_pickle_members


def test_payload_scan_opens_tars_and_nested_archives_within_the_nesting_bound(
    tmp_path: Path,
) -> None:
    from modelseal.models.limits import MAX_NESTING

    data = zip_bytes([("evil.pkl", EVIL)], compress=True)
    for depth in range(MAX_NESTING + 1):
        data = zip_bytes([(f"level{depth}.zip", data)], compress=True)
    kinds = {i.kind: i for i in scan_payload(_w(tmp_path, data)).issues}
    assert "unsafe-global" not in kinds, kinds  # deeper than the bound: not read ...
    assert kinds["scan-limit"].detail["limit"] == "archive-bound"  # ... and said so
    shallow = v7_tar([("a.zip", zip_bytes([("b/evil.pkl", EVIL)]))])
    (issue,) = [i for i in scan_payload(_w(tmp_path, shallow)).issues if i.kind == "unsafe-global"]
    assert issue.member == "a.zip/b/evil.pkl"


def test_text_that_starts_like_a_global_is_still_not_a_pickle(tmp_path: Path) -> None:
    for text in (b"cat\ndog\nfish\n", b"ccopy_reg\n_reconstructor\n", b"(x)\n" * 100):
        assert detect_format(_w(tmp_path, text)).format is Format.UNKNOWN, text
    assert pickle.loads(b"cos\ngetcwd\n.")  # an import and a STOP: what the walk calls a pickle
