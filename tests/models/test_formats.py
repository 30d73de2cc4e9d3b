"""Format detection from the bytes: every format, built by hand here (no downloaded files, no
numpy/torch/onnx/safetensors), plus the look-alikes that must not be misdetected.

The builders live in tests/support/model_files.py (test_structure*.py use them too).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from tests.support.model_files import (
    HDF5_SIGNATURE,
    KERAS_DENSE,
    NUMERIC_NPY,
    OBJECT_NPY,
    keras_config,
    keras_h5,
    keras_zip,
    legacy_torch_tar,
    lz4_frame,
    lz4_literals,
    noise,
    npy_bytes,
    npy_data_offset,
    pb_bytes,
    pb_int,
    pb_varint,
    torch_zip,
    torchscript_zip,
    valid_gguf,
    valid_onnx,
    valid_safetensors,
    write,
    zip_bytes,
)

from modelseal.errors import ConfigError
from modelseal.models.decompress import decompress_prefix
from modelseal.models.formats import (
    TORCH_LEGACY_MAGIC,
    Detected,
    detect_format,
    looks_like_pickle,
)
from modelseal.models.issues import Format

# ------------------------------------------------------------------------------------------
# Tests


def detect(tmp_path: Path, data: bytes, name: str = "model.bin") -> Detected:
    return detect_format(write(tmp_path, name, data))


JOBLIB_LIKE = (
    b"\x80\x04\x95\x40\x00\x00\x00\x00\x00\x00\x00\x8c\x13joblib.numpy_pickle\x94"
    b"\x8c\x11NumpyArrayWrapper\x94\x93\x94)\x81\x94."
)


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (pickle.dumps({"a": 1}, protocol=2), Format.PICKLE),
        (pickle.dumps({"a": 1}, protocol=5), Format.PICKLE),
        (pickle.dumps({"a": [1, 2]}, protocol=0), Format.PICKLE),
        (pickle.dumps({"a": [1, 2]}, protocol=1), Format.PICKLE),
        (b"cos\nsystem\n(S'id'\ntR.", Format.PICKLE),
        (valid_safetensors(), Format.SAFETENSORS),
        (valid_gguf(), Format.GGUF),
        (valid_onnx(), Format.ONNX),
        (NUMERIC_NPY, Format.NUMPY),
        (torch_zip(), Format.PYTORCH_ZIP),
        (torchscript_zip(), Format.TORCHSCRIPT),
        (zip_bytes([("a.npy", NUMERIC_NPY), ("b.npy", OBJECT_NPY)]), Format.NUMPY_ZIP),
        (keras_zip(keras_config([KERAS_DENSE])), Format.KERAS),
        (keras_h5(keras_config([KERAS_DENSE])), Format.KERAS_H5),
        (JOBLIB_LIKE, Format.JOBLIB),
        (pickle.dumps(TORCH_LEGACY_MAGIC, protocol=2) + pickle.dumps(1001), Format.TORCH_LEGACY),
        (legacy_torch_tar(), Format.TORCH_LEGACY),
        (noise(4096), Format.UNKNOWN),
        (zip_bytes([("readme.txt", b"hello")]), Format.UNKNOWN),
    ],
    ids=lambda v: v.value if isinstance(v, Format) else "",
)
def test_detects_each_format(tmp_path: Path, data: bytes, fmt: Format) -> None:
    assert detect(tmp_path, data).format is fmt


def test_legacy_magic_pickle_is_exactly_the_documented_bytes() -> None:
    assert pickle.dumps(TORCH_LEGACY_MAGIC, protocol=2) == (
        b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
    )


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_legacy_torch_magic_in_any_protocol(tmp_path: Path, protocol: int) -> None:
    data = pickle.dumps(TORCH_LEGACY_MAGIC, protocol=protocol) + pickle.dumps(1001, protocol=2)
    d = detect(tmp_path, data)
    assert d.format is Format.TORCH_LEGACY
    assert d.detail["variant"] == "pickle-stream" and d.pickle_offset == 0


def test_legacy_torch_tar_lists_its_pickle_members(tmp_path: Path) -> None:
    d = detect(tmp_path, legacy_torch_tar())
    assert d.format is Format.TORCH_LEGACY and d.detail["variant"] == "tar"
    assert set(d.zip_pickle_members) == {"sys_info", "pickle", "tensors", "storages"}


def test_a_tar_that_is_not_torch_is_unknown(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("notes.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    d = detect(tmp_path, buf.getvalue())
    assert d.format is Format.UNKNOWN and d.detail["container"] == "tar"


@pytest.mark.parametrize(
    ("name", "data", "fmt"),
    [
        ("model.safetensors", pickle.dumps({"a": 1}, protocol=4), Format.PICKLE),
        ("model.pkl", valid_safetensors(), Format.SAFETENSORS),
        ("model.onnx", valid_gguf(), Format.GGUF),
        ("weights.npy", b"cos\nsystem\n(S'id'\ntR.", Format.PICKLE),
        ("model.pt", b"just text, honest\n", Format.UNKNOWN),
    ],
)
def test_extension_never_decides(tmp_path: Path, name: str, data: bytes, fmt: Format) -> None:
    assert detect(tmp_path, data, name).format is fmt


def test_safetensors_whose_length_starts_like_a_pickle_is_safetensors(tmp_path: Path) -> None:
    # A 640-byte header length is b"\x80\x02\0\0\0\0\0\0": safetensors must be tried first.
    header = json.dumps({"__metadata__": {"pad": "x" * 600}}).encode()
    header += b" " * (640 - len(header))
    data = struct.pack("<Q", 640) + header
    assert data[:2] == b"\x80\x02"
    d = detect(tmp_path, data)
    assert d.format is Format.SAFETENSORS and d.detail["header_len"] == "640"


# Protocol 0/1 pickles are text: catch real ones, never ordinary text -------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"cos\nsystem\n(S'id'\ntR.",
        b"cos\nsystem\n(S'id'\ntR",  # no STOP: the call still runs before EOF is noticed
        b"cos\nsystem\n(S'id'\ntR" + b"\x00garbage after the call",
        b"(cos\nsystem\nS'id'\no.",  # INST/OBJ style
        b"cposix\nsystem\np0\n(Vtouch /tmp/x\np1\ntp2\nRp3\n.",
        b"N.",
        pickle.dumps([1, 2, {"k": "v"}], protocol=0),
        pickle.dumps(("t", 1.5, None, True), protocol=1),
    ],
)
def test_protocol_0_and_1_pickles_are_pickles(tmp_path: Path, data: bytes) -> None:
    d = detect(tmp_path, data)
    assert d.format is Format.PICKLE, data
    assert d.pickle_offset == 0 and d.detail["protocol"] == "0-1"


@pytest.mark.parametrize(
    "text",
    [
        "Hello world.\n",
        "# Model card\n\nThis model was trained on data.\n",
        '{"architectures": ["BertModel"], "hidden_size": 768}\n',
        "cat\ndog\nfish\n",
        "(c) 2024 ACME Corp.\nAll rights reserved.\n",
        "class Model(nn.Module):\n    pass\n",
        "import torch\n",
        "I love models.\n",
        "Sure.\n",
        "N/A\n",
        "[PAD]\n[UNK]\n[CLS]\n",
        "id,label\n1,cat\n",
        "a\n",
        ".",
        "\n",
        "S'unterminated\n",
        "ccopy_reg\n_reconstructor\n",  # a GLOBAL alone, never called, no STOP
    ],
)
def test_text_is_not_a_pickle(tmp_path: Path, text: str) -> None:
    assert detect(tmp_path, text.encode()).format is Format.UNKNOWN


def test_looks_like_pickle_prefix_vs_complete() -> None:
    long_pickle = pickle.dumps(list(range(5000)), protocol=0)
    assert looks_like_pickle(long_pickle[:4096], complete=False)
    assert not looks_like_pickle(b"(lp0\nI1\n", complete=True)  # too little to tell
    assert looks_like_pickle(b"\x80\x05anything", complete=True)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_opcode_walk_agrees_with_pickletools_at_every_cut(tmp_path: Path, protocol: int) -> None:
    """The detection walk steps over fixed-width arguments it does not keep (floats, ints,
    memo indexes) without decoding them: at every cut of the stream, and within every read
    budget, it must still count exactly the opcodes pickletools reads whole, keep the same
    first values, and say whether the bytes or the budget ended it."""
    import pickletools

    from modelseal.models.bytesource import ByteSource
    from modelseal.models.formats import _walk_pickle, _walk_source

    data = pickle.dumps(
        {"w": [0.5, -1.25, 3.0], "n": [1, 300, 70000, -5, 2**40], "s": "x" * 30}, protocol
    )
    ops = list(pickletools.genops(data))
    ends = [pos for _, _, pos in ops[1:]] + [len(data)]  # where each opcode ends
    memo = {"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"}
    for cut in range(1, len(data) + 1):
        walk = _walk_pickle(data[:cut], complete=False)
        whole = [op for (op, _, _), end in zip(ops, ends, strict=True) if end <= cut]
        assert walk.ops == len(whole), cut
        kept = [(op.name, arg) for op, arg, _ in ops if op.name not in memo][:4]
        assert walk.values == tuple(kept[: len([o for o in whole if o.name not in memo])]), cut
        assert walk.cut == ("" if cut == len(data) else "prefix"), cut
        assert walk.stopped == (cut == len(data))
    path = tmp_path / "walk.pkl"
    path.write_bytes(data)
    for budget in range(1, len(data) + 2):
        with ByteSource(path) as src:
            walk = _walk_source(src, limit=budget)
        assert walk.ops == len([e for e in ends if e <= budget]), budget
        assert walk.cut == ("window" if budget < len(data) else ""), budget


def test_detection_walks_opcodes_only_where_the_answer_needs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zip (its "PK" is PERSID, whose argument runs to a newline) or a numpy file is not
    walked as a pickle; a PROTO 2-5 pickle is walked for its first two values only (the
    legacy torch magic), whether or not it runs code; a safetensors-like header in a pickle
    still gets the whole walk."""
    from modelseal.models import formats

    calls: list[int | None] = []
    real = formats._walk_source

    def spy(src: Any, **kw: Any) -> Any:
        calls.append(kw.get("max_values"))
        return real(src, **kw)

    monkeypatch.setattr(formats, "_walk_source", spy)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"a": 1}, protocol=2))
    cases = [
        (buf.getvalue(), []),
        (b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }"
         + b" " * 45 + b"\n" + b"\0" * 4, []),
        (pickle.dumps({"w": [0.5] * 100}, protocol=4), [2]),
        (pickle.dumps(TORCH_LEGACY_MAGIC, protocol=2), [2]),
        (b"\x80\x02" + b"\x00" * 6 + b'{"a": 1}' + b" " * 40, [None]),
    ]  # fmt: skip
    for i, (data, walks) in enumerate(cases):
        calls.clear()
        (tmp_path / f"f{i}").write_bytes(data)
        detect_format(tmp_path / f"f{i}")
        assert calls == walks, i
    assert detect_format(tmp_path / "f3").format is Format.TORCH_LEGACY


# joblib -------------------------------------------------------------------------------------


def test_plain_pickle_with_joblib_wrapper_is_joblib(tmp_path: Path) -> None:
    d = detect(tmp_path, JOBLIB_LIKE)
    assert d.format is Format.JOBLIB and d.pickle_offset == 0 and d.detail["protocol"] == "4"


def test_protocol_2_joblib_global(tmp_path: Path) -> None:
    data = b"\x80\x02cjoblib.numpy_pickle\nNumpyArrayWrapper\nq\x00)\x81q\x01."
    assert detect(tmp_path, data).format is Format.JOBLIB


def test_plain_pickle_without_marker_is_pickle(tmp_path: Path) -> None:
    assert detect(tmp_path, pickle.dumps({"joblib": 1}, protocol=4)).format is Format.PICKLE


PAYLOAD = pickle.dumps({"k": list(range(50))}, protocol=4) + b"".join([b"joblib.numpy_pickle"])


@pytest.mark.parametrize(
    ("codec", "data"),
    [
        ("zlib", zlib.compress(PAYLOAD)),
        ("gzip", gzip.compress(PAYLOAD, mtime=0)),
        ("bz2", bz2.compress(PAYLOAD)),
        ("xz", lzma.compress(PAYLOAD)),
        ("lzma", lzma.compress(PAYLOAD, format=lzma.FORMAT_ALONE)),
        ("lz4", lz4_frame([lz4_literals(PAYLOAD)])),
        ("zlib-zf", b"ZF" + hex(len(PAYLOAD)).encode().ljust(19) + zlib.compress(PAYLOAD)),
    ],
)
def test_compressed_joblib(tmp_path: Path, codec: str, data: bytes) -> None:
    p = write(tmp_path, "model.joblib", data)
    d = detect_format(p)
    assert d.format is Format.JOBLIB
    assert d.detail["compressed"] == codec and d.detail["marker"] == "yes"
    assert d.pickle_offset is None  # the pickle is in the decompressed stream, not the file
    assert decompress_prefix(p, codec, 1 << 20) == PAYLOAD
    assert decompress_prefix(p, codec, 10) == PAYLOAD[:10]


@pytest.mark.parametrize(
    "data",
    [
        gzip.compress(b"just some compressed text", mtime=0),
        bz2.compress(b"just some compressed text"),
        zlib.compress(b"{}"),
        lz4_frame([lz4_literals(b"not a pickle at all")]),
        b"\x1f\x8b\x08" + noise(64),  # corrupt gzip
    ],
)
def test_compressed_non_pickle_is_unknown(tmp_path: Path, data: bytes) -> None:
    assert detect(tmp_path, data).format is Format.UNKNOWN


def test_lz4_matches_and_linked_blocks(tmp_path: Path) -> None:
    # "ab" then a 10-byte overlapping match at offset 2, then literals "!"; a second block
    # refers back into the first (linked blocks).
    block1 = bytes([0x26]) + b"ab" + b"\x02\x00" + bytes([0x10]) + b"!"
    block2 = bytes([0x01]) + b"\x0d\x00" + bytes([0x10]) + b"?"
    p = write(tmp_path, "x.lz4", lz4_frame([block1, block2]))
    assert decompress_prefix(p, "lz4", 1000) == b"ab" + b"ababababab" + b"!" + b"ababa" + b"?"
    assert decompress_prefix(p, "lz4", 5) == b"ababa"


def test_lz4_offset_outside_history_is_corrupt(tmp_path: Path) -> None:
    p = write(tmp_path, "x.lz4", lz4_frame([bytes([0x10]) + b"a" + b"\x09\x00" + b"\x00"]))
    with pytest.raises(ValueError, match="outside"):
        decompress_prefix(p, "lz4", 100)


def test_decompress_prefix_reads_a_bomb_only_up_to_the_limit(tmp_path: Path) -> None:
    p = write(tmp_path, "bomb.gz", gzip.compress(b"\x80\x04" + bytes(50 << 20), mtime=0))
    assert len(decompress_prefix(p, "gzip", 4096)) == 4096
    assert detect_format(p).format is Format.JOBLIB


# numpy --------------------------------------------------------------------------------------


def test_numeric_npy_carries_no_pickle(tmp_path: Path) -> None:
    d = detect(tmp_path, NUMERIC_NPY)
    assert d.format is Format.NUMPY and d.pickle_offset is None
    assert dict(d.detail) == {
        "version": "1.0",
        "object": "no",
        "dtype": "<f4",
        "shape": "(2, 3)",
        "fortran_order": "False",
    }


@pytest.mark.parametrize("version", [1, 2, 3])
def test_object_npy_points_at_its_pickle(tmp_path: Path, version: int) -> None:
    data = npy_bytes("|O", (2,), pickle.dumps([1, "x"], protocol=3), version=version)
    d = detect(tmp_path, data)
    assert d.format is Format.NUMPY and d.detail["object"] == "yes"
    assert d.detail["version"] == f"{version}.0"
    assert d.pickle_offset == npy_data_offset(data)
    assert data[d.pickle_offset : d.pickle_offset + 2] == b"\x80\x03"


@pytest.mark.parametrize(
    ("descr", "obj"),
    [
        ([("a", "<f4"), ("b", "|O")], "yes"),
        ([("a", "<f4"), ("b", "<i8", (2,))], "no"),
        ([(("title", "a"), "<f4"), ("n", [("x", "|O")])], "yes"),
        ("<M8[ns]", "no"),
        ("|S5", "no"),
        ("<U10", "no"),
        ("|b1", "no"),
        ("|O8", "yes"),
        ("object", "unknown"),  # numpy never writes this; do not guess
        ("f4,O", "unknown"),
    ],
)
def test_npy_object_detection(tmp_path: Path, descr: Any, obj: str) -> None:
    d = detect(tmp_path, npy_bytes(descr, (1,), b"\0" * 16))
    assert d.detail["object"] == obj
    assert (d.pickle_offset is not None) == (obj != "no")


@pytest.mark.parametrize(
    "header",
    [
        b"{'descr': '<f4', 'fortran_order': False}",  # a key missing
        b"__import__('os').system('id')",  # never evaluated
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
        b"(" * 500,
        b"\xff\xfe garbage",
    ],
)
def test_malformed_npy_header_fails_closed(tmp_path: Path, header: bytes) -> None:
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 8
    d = detect(tmp_path, data)
    assert d.format is Format.NUMPY and "error" in d.detail
    assert d.pickle_offset == 10 + len(header)  # the scanner gets a look and reports


def test_npy_header_too_large_is_not_read(tmp_path: Path) -> None:
    data = b"\x93NUMPY\x02\x00" + struct.pack("<I", 1 << 30) + b"{" * 100
    d = detect(tmp_path, data)
    assert d.format is Format.NUMPY and "too large" in d.detail["error"]
    assert d.pickle_offset is None  # the claimed data offset is past the end of the file


def test_npz_lists_only_object_arrays_with_offsets(tmp_path: Path) -> None:
    d = detect(tmp_path, zip_bytes([("x.npy", NUMERIC_NPY), ("y.npy", OBJECT_NPY)], compress=True))
    assert d.format is Format.NUMPY_ZIP and d.detail["arrays"] == "2"
    assert d.zip_pickle_members == ("y.npy",)
    assert d.member_offsets["y.npy"] == npy_data_offset(OBJECT_NPY)


# zips ---------------------------------------------------------------------------------------


def test_pytorch_zip_skips_raw_storages(tmp_path: Path) -> None:
    # data/0 happens to start like a pickle; torch reads it as raw bytes, never unpickles it.
    d = detect(tmp_path, torch_zip(root="mymodel"))
    assert d.format is Format.PYTORCH_ZIP and d.detail["root"] == "mymodel"
    assert d.zip_pickle_members == ("mymodel/data.pkl",)
    assert d.member_offsets == {"mymodel/data.pkl": 0}


def test_torchscript_members(tmp_path: Path) -> None:
    d = detect(tmp_path, torchscript_zip())
    assert d.format is Format.TORCHSCRIPT
    assert set(d.zip_pickle_members) == {
        "archive/data.pkl",
        "archive/constants.pkl",
        "archive/code/__torch__/model.py.debug_pkl",  # by its bytes: not named .pkl
    }


def test_pickle_members_found_by_content_in_any_zip(tmp_path: Path) -> None:
    d = detect(
        tmp_path,
        zip_bytes(
            [
                ("payload", b"cos\nsystem\n(S'id'\ntR."),
                ("blob", pickle.dumps([1], protocol=4)),
                ("notes.pkl", b"named like a pickle"),
                ("code.py", b"class Foo:\n    pass\n"),
                ("config.json", b'{"a": 1}'),
                ("vocab.txt", b"cat\ndog\n"),
            ],
            compress=True,
        ),
    )
    assert d.format is Format.UNKNOWN and d.detail["container"] == "zip"
    assert set(d.zip_pickle_members) == {"payload", "blob", "notes.pkl"}


def test_member_sniffing_is_budgeted_and_fails_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelseal.models import formats

    monkeypatch.setattr(formats, "ZIP_SNIFF_BUDGET", 1)
    d = detect(tmp_path, zip_bytes([("a.npy", NUMERIC_NPY), ("b.npy", NUMERIC_NPY)]))
    assert d.detail["unchecked_members"] == "1"
    assert d.zip_pickle_members == ("b.npy",)  # not read, so handed to the scanner


def test_keras_zip_has_no_pickle_members(tmp_path: Path) -> None:
    d = detect(tmp_path, keras_zip(keras_config([KERAS_DENSE])))
    assert d.format is Format.KERAS and d.zip_pickle_members == ()
    assert d.detail["weights"] == "model.weights.h5"


def test_duplicate_zip_members_are_reported(tmp_path: Path) -> None:
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("archive/data.pkl", pickle.dumps(1, protocol=2))
            zf.writestr("archive/data.pkl", b"cos\nsystem\n(S'id'\ntR.")
    d = detect(tmp_path, buf.getvalue())
    assert d.format is Format.PYTORCH_ZIP
    assert d.detail["duplicate_members"] == "archive/data.pkl"


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x03\x04" + noise(200),  # no central directory
        b"PK\x03\x04" + bytes(100) + b"PK\x05\x06" + bytes(4) + b"\xff\xff\xff\xff" + bytes(10),
        zip_bytes([("a", b"x")])[:-10],  # truncated end record
    ],
)
def test_broken_zip_is_unknown(tmp_path: Path, data: bytes) -> None:
    d = detect(tmp_path, data)
    assert d.format is Format.UNKNOWN and d.detail["container"] == "zip"
    assert d.detail.get("error") or d.detail["members"] == "0"


def test_zip_with_too_many_members_is_not_opened(tmp_path: Path) -> None:
    eocd = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFF0, 0, 0)
    # Zip64 locator and record claiming 2**40 members.
    rec = b"PK\x06\x06" + struct.pack("<QHHIIQQQQ", 44, 45, 45, 0, 0, 1 << 40, 1 << 40, 1, 0)
    body = b"PK\x03\x04" + bytes(60)
    loc = b"PK\x06\x07" + struct.pack("<IQI", 0, len(body), 1)
    d = detect(tmp_path, body + rec + loc + eocd)
    assert d.format is Format.UNKNOWN and "members" in d.detail["error"]


# other formats ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2, 3])
def test_gguf_versions(tmp_path: Path, version: int) -> None:
    d = detect(tmp_path, valid_gguf(version))
    assert d.format is Format.GGUF and d.detail == {"version": str(version), "endian": "little"}


def test_gguf_big_endian(tmp_path: Path) -> None:
    d = detect(tmp_path, valid_gguf(3, e=">"))
    assert d.format is Format.GGUF and d.detail["endian"] == "big"


def test_gguf_unknown_version_is_unknown(tmp_path: Path) -> None:
    assert detect(tmp_path, b"GGUF" + struct.pack("<I", 9) + bytes(64)).format is Format.UNKNOWN


def test_onnx_detail(tmp_path: Path) -> None:
    d = detect(tmp_path, valid_onnx())
    assert d.format is Format.ONNX and d.detail == {"ir_version": "9"}


@pytest.mark.parametrize(
    "data",
    [
        pb_int(1, 9) + pb_bytes(2, "no graph here"),  # no graph
        pb_int(1, 9) + pb_int(7, 3),  # graph with the wrong wire type
        pb_int(1, 500) + pb_bytes(7, b""),  # implausible ir_version
        pb_int(1, 9) + pb_varint(7 << 3 | 2) + pb_varint(1 << 40),  # graph past EOF
        b"\x08" + noise(100),
    ],
)
def test_onnx_look_alikes_are_unknown(tmp_path: Path, data: bytes) -> None:
    assert detect(tmp_path, data).format is Format.UNKNOWN


@pytest.mark.parametrize("userblock", [0, 512, 2048])
def test_hdf5_signature_at_userblock_offsets(tmp_path: Path, userblock: int) -> None:
    data = bytes(userblock) + HDF5_SIGNATURE + bytes(100)
    d = detect(tmp_path, data)
    assert d.format is Format.KERAS_H5 and d.detail["userblock"] == str(userblock)


def test_hdf5_signature_at_odd_offset_is_not_hdf5(tmp_path: Path) -> None:
    assert detect(tmp_path, bytes(700) + HDF5_SIGNATURE + bytes(100)).format is Format.UNKNOWN


@pytest.mark.parametrize("graph", ["saved_model.pb", "saved_model.pbtxt"])
def test_savedmodel_directory(tmp_path: Path, graph: str) -> None:
    (tmp_path / "sm" / "variables").mkdir(parents=True)
    (tmp_path / "sm" / graph).write_bytes(b"\x08\x01")
    d = detect_format(tmp_path / "sm")
    assert d.format is Format.TF_SAVEDMODEL and d.detail["graph"] == graph


def test_other_directory_is_unknown(tmp_path: Path) -> None:
    assert detect_format(tmp_path).format is Format.UNKNOWN


def test_empty_file_is_unknown(tmp_path: Path) -> None:
    assert detect(tmp_path, b"").detail["reason"] == "empty file"


def test_fifo_is_unknown_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert detect_format(fifo).format is Format.UNKNOWN


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read model file"):
        detect_format(tmp_path / "nope")


def test_unreadable_file_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, "secret.bin", b"\x80\x04N.")
    # Root reads a mode-0 file anyway, so the refusal is made by hand.
    real_open = os.open

    def refusing_open(path: object, flags: int, *args: object, **kw: object) -> int:
        if str(path) == str(p):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(ConfigError, match="cannot read model file"):
        detect_format(p)


def test_huge_sparse_file_reads_only_headers(tmp_path: Path) -> None:
    import tracemalloc

    p = tmp_path / "huge.bin"
    with p.open("wb") as f:
        f.write(pickle.dumps({"a": 1}, protocol=4))
        f.truncate(8 << 30)  # sparse: 8 GiB of (unread) zeros
    tracemalloc.start()
    try:
        d = detect_format(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert d.format is Format.PICKLE
    assert peak < 16 << 20
