"""Structure checks: every violation gets its issue kind and a useful offset or member."""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
from tests.support.model_files import (
    GGML_F16,
    GGML_F32,
    GGML_Q4_0,
    GGUF_ARRAY,
    GGUF_F32,
    GGUF_I32,
    GGUF_STRING,
    GGUF_U8,
    GGUF_U32,
    HDF5_SIGNATURE,
    KERAS_DENSE,
    KERAS_LAMBDA,
    gguf_file,
    gguf_kv,
    gguf_str,
    gguf_tensor_info,
    keras_config,
    keras_h5,
    keras_zip,
    onnx_attr_graph,
    onnx_attr_tensor,
    onnx_graph,
    onnx_model,
    onnx_node,
    onnx_tensor,
    pb_bytes,
    pb_int,
    safetensors_file,
    torch_zip,
    torchscript_zip,
    valid_gguf,
    valid_gguf_parts,
    valid_onnx,
    valid_safetensors,
    write,
    zip_bytes,
)

from modelseal.errors import ConfigError
from modelseal.findings import Severity
from modelseal.models.formats import detect_format
from modelseal.models.issues import ModelIssue
from modelseal.models.structure import (
    MAX_ISSUES,
    check_gguf,
    check_keras,
    check_onnx,
    check_safetensors,
    check_savedmodel,
    check_structure,
    check_torchscript,
    check_zip,
)


def kinds(issues: tuple[ModelIssue, ...]) -> list[str]:
    return [i.kind for i in issues]


def one(issues: tuple[ModelIssue, ...], kind: str) -> ModelIssue:
    found = [i for i in issues if i.kind == kind]
    assert len(found) == 1, issues
    return found[0]


# ------------------------------------------------------------------------------------------
# safetensors


def st_check(tmp_path: Path, data: bytes) -> tuple[ModelIssue, ...]:
    return check_safetensors(write(tmp_path, "m.safetensors", data))


def st_header_len(data: bytes) -> int:
    return int(struct.unpack("<Q", data[:8])[0])


def test_valid_safetensors_is_clean(tmp_path: Path) -> None:
    assert st_check(tmp_path, valid_safetensors()) == ()


def test_empty_safetensors_is_clean(tmp_path: Path) -> None:
    assert st_check(tmp_path, safetensors_file({}, b"")) == ()


@pytest.mark.parametrize(
    ("data", "offset", "words"),
    [
        (b"\x01\x00\x00", 0, "shorter"),
        (struct.pack("<Q", 100_000_001) + b"{}", 0, "limit"),
        (struct.pack("<Q", 64) + b"{}", 0, "past the end"),
        (struct.pack("<Q", 2) + b"[]", 8, "start with '{'"),
        (struct.pack("<Q", 8) + b'{"a":"\xff"}', 14, "UTF-8"),
        (struct.pack("<Q", 8) + b'{"a":1,}', 15, "JSON"),
        (struct.pack("<Q", 12) + b'{"a":NaN}   ', 8, "JSON"),
        (struct.pack("<Q", 4) + b"{}{}", 10, "JSON"),
    ],
)
def test_safetensors_header_bounds(tmp_path: Path, data: bytes, offset: int, words: str) -> None:
    (issue,) = st_check(tmp_path, data)
    assert issue.kind == "bad-header" and issue.severity is Severity.HIGH
    assert issue.offset == offset and words in issue.title


def test_safetensors_duplicate_key(tmp_path: Path) -> None:
    header = b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    (issue,) = st_check(tmp_path, safetensors_file({}, b"\0", header_bytes=header))
    assert issue.kind == "bad-header" and "repeats key 'a'" in issue.title


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ([1, 2], "not an object"),
        ({"dtype": "F32", "shape": [1]}, "expected exactly"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "extra": 1}, "expected exactly"),
        ({"dtype": "F128", "shape": [1], "data_offsets": [0, 4]}, "unknown dtype"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, "shape"),
        ({"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}, "shape"),
        ({"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}, "shape"),
        ({"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}, "shape"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [0]}, "data_offsets"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}, "begin 4 > end 0"),
        ({"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}, "needs 8 byte(s)"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [0, 400]}, "past the 4-byte data area"),
        ({"dtype": "F4", "shape": [3], "data_offsets": [0, 4]}, "whole number of bytes"),
        ({"dtype": "F32", "shape": [2**60, 2**60], "data_offsets": [0, 4]}, "more than 4"),
    ],
)
def test_safetensors_tensor_entry(tmp_path: Path, entry: Any, words: str) -> None:
    data = safetensors_file({"t": entry}, b"\0" * 4)
    issues = st_check(tmp_path, data)
    issue = issues[0]
    assert issue.kind == "bad-header" and words in issue.title, issues
    assert issue.detail["tensor"] == "t"
    assert data[issue.offset or 0 :].startswith(b'"t"')  # points at the tensor's key


@pytest.mark.parametrize(
    ("dtype", "shape", "nbytes"),
    [("F4", [4], 2), ("F6_E2M3", [4], 3), ("F6_E3M2", [8], 6), ("F8_E8M0", [3], 3),
     ("C64", [2], 16), ("BOOL", [5], 5), ("BF16", [2, 0, 3], 0)],
)  # fmt: skip
def test_safetensors_dtype_sizes(tmp_path: Path, dtype: str, shape: list[int], nbytes: int) -> None:
    data = safetensors_file(
        {"t": {"dtype": dtype, "shape": shape, "data_offsets": [0, nbytes]}}, b"\0" * nbytes
    )
    assert st_check(tmp_path, data) == ()


def test_safetensors_metadata_must_be_strings(tmp_path: Path) -> None:
    data = safetensors_file({}, b"", metadata={"epoch": 3})
    (issue,) = st_check(tmp_path, data)
    assert "__metadata__" in issue.title and data[issue.offset or 0 :].startswith(b'"__metadata__"')


def tiled(spans: dict[str, tuple[int, int]], size: int) -> bytes:
    return safetensors_file(
        {
            n: {"dtype": "U8", "shape": [e - b], "data_offsets": [b, e]}
            for n, (b, e) in spans.items()
        },
        b"\0" * size,
    )


def test_safetensors_overlap(tmp_path: Path) -> None:
    data = tiled({"a": (0, 8), "b": (4, 12)}, 12)
    (issue,) = st_check(tmp_path, data)
    assert "overlaps" in issue.title and issue.detail["tensor"] == "b"
    assert issue.offset == 8 + st_header_len(data) + 4


def test_safetensors_gap(tmp_path: Path) -> None:
    data = tiled({"a": (0, 4), "b": (6, 10)}, 10)
    (issue,) = st_check(tmp_path, data)
    assert "2 unreferenced byte(s) before tensor 'b'" in issue.title
    assert issue.offset == 8 + st_header_len(data) + 4


def test_safetensors_gap_at_start(tmp_path: Path) -> None:
    (issue,) = st_check(tmp_path, tiled({"a": (2, 4)}, 4))
    assert "unreferenced" in issue.title


def test_safetensors_trailing_bytes(tmp_path: Path) -> None:
    data = tiled({"a": (0, 4)}, 4) + b"EXTRA"
    (issue,) = st_check(tmp_path, data)
    assert "5 trailing byte(s)" in issue.title
    assert issue.offset == 8 + st_header_len(data) + 4
    assert data[issue.offset :] == b"EXTRA"


def test_safetensors_zero_size_tensors(tmp_path: Path) -> None:
    assert st_check(tmp_path, tiled({"a": (0, 0), "b": (0, 4), "c": (4, 4)}, 4)) == ()


def test_safetensors_issue_count_is_capped(tmp_path: Path) -> None:
    entries = {f"t{i}": {"dtype": "X", "shape": [1], "data_offsets": [0, 1]} for i in range(300)}
    issues = st_check(tmp_path, safetensors_file(entries, b""))
    assert len(issues) == MAX_ISSUES + 1
    assert "200 more problem(s)" in issues[-1].title


def test_safetensors_huge_sparse_file_never_reads_data(tmp_path: Path) -> None:
    import tracemalloc

    size = 8 << 30

    def header_for(n: int) -> bytes:
        return json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()

    header_len = len(header_for(size)) + 8
    data_len = size - 8 - header_len
    header = header_for(data_len).ljust(header_len)
    p = tmp_path / "huge.safetensors"
    with p.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(size)
    tracemalloc.start()
    try:
        assert check_safetensors(p) == ()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


# ------------------------------------------------------------------------------------------
# GGUF


def gg_check(tmp_path: Path, data: bytes) -> tuple[ModelIssue, ...]:
    return check_gguf(write(tmp_path, "m.gguf", data))


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("endian", ["<", ">"])
def test_valid_gguf_is_clean(tmp_path: Path, version: int, endian: str) -> None:
    assert gg_check(tmp_path, valid_gguf(version, endian)) == ()


def test_gguf_bad_version(tmp_path: Path) -> None:
    (issue,) = gg_check(tmp_path, b"GGUF" + struct.pack("<I", 7) + bytes(32))
    assert issue.kind == "bad-header" and issue.offset == 4 and "version" in issue.title


def test_gguf_every_truncation_is_an_issue(tmp_path: Path) -> None:
    data = valid_gguf()
    kvs, infos, _ = valid_gguf_parts()
    header_end = 24 + sum(map(len, kvs)) + sum(map(len, infos))
    for cut in range(0, header_end, 7):
        issues = gg_check(tmp_path, data[:cut])
        assert issues and all(i.kind == "bad-header" for i in issues), cut
        assert all(i.offset is not None and i.offset <= cut for i in issues), cut
    # Cut inside the tensor data: the tensors run past the end.
    issues = gg_check(tmp_path, data[:-4])
    assert kinds(issues) == ["bad-header"] and "runs past the end" in issues[0].title


def test_gguf_implausible_counts(tmp_path: Path) -> None:
    kvs, infos, data = valid_gguf_parts()
    (issue,) = gg_check(tmp_path, gguf_file(kvs, infos, data, n_tensors=2**60))
    assert "tensor count" in issue.title and issue.offset == 8
    (issue,) = gg_check(tmp_path, gguf_file(kvs, infos, data, n_kv=2**40))
    assert "metadata count" in issue.title and issue.offset == 16


def test_gguf_huge_string_length(tmp_path: Path) -> None:
    kv = gguf_str("k") + struct.pack("<I", GGUF_STRING) + struct.pack("<Q", 2**62) + b"abc"
    (issue,) = gg_check(tmp_path, gguf_file([kv], [], b""))
    assert "truncated" in issue.title and issue.offset == 24 + 9 + 4


def test_gguf_huge_array(tmp_path: Path) -> None:
    kv = gguf_kv("k", GGUF_ARRAY, struct.pack("<IQ", GGUF_I32, 2**40) + b"\0" * 16)
    (issue,) = gg_check(tmp_path, gguf_file([kv], [], b""))
    assert "truncated" in issue.title


def test_gguf_string_array_larger_than_the_budget_is_unverifiable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelseal.models.structure import gguf

    kv = gguf_kv("k", GGUF_ARRAY, struct.pack("<IQ", GGUF_STRING, 3) + gguf_str("a") * 3)
    monkeypatch.setattr(gguf, "GGUF_WORK_BUDGET", 2)
    (issue,) = gg_check(tmp_path, gguf_file([kv], [], b""))
    assert issue.kind == "unverifiable" and issue.severity is Severity.MEDIUM


def test_gguf_nested_arrays_are_walked(tmp_path: Path) -> None:
    inner = struct.pack("<IQ", GGUF_U8, 2) + b"\1\2"
    kv = gguf_kv("k", GGUF_ARRAY, struct.pack("<IQ", GGUF_ARRAY, 2) + inner + inner)
    assert gg_check(tmp_path, gguf_file([kv], [], b"")) == ()


@pytest.mark.parametrize(
    ("kv", "words", "offset"),
    [
        (gguf_kv("k", 13, b"\0" * 8), "unknown metadata value type 13", 24 + 9),
        (
            gguf_kv("k", GGUF_ARRAY, struct.pack("<IQ", 77, 1) + b"\0" * 8),
            "element type 77",
            24 + 9 + 4,
        ),
    ],
)
def test_gguf_unknown_types(tmp_path: Path, kv: bytes, words: str, offset: int) -> None:
    (issue,) = gg_check(tmp_path, gguf_file([kv], [], b"\0" * 8))
    assert words in issue.title and issue.offset == offset


def test_gguf_duplicate_key_and_tensor(tmp_path: Path) -> None:
    kv = gguf_kv("k", GGUF_U8, b"\1")
    info = gguf_tensor_info("t", [8], GGML_F32, 0)
    issues = gg_check(tmp_path, gguf_file([kv, kv], [info, info], b"\0" * 32))
    titles = [i.title for i in issues]
    assert "metadata key 'k' appears twice" in titles[0] and issues[0].offset == 24 + len(kv)
    assert any("tensor 't' is listed twice" in t for t in titles)
    assert any("overlaps" in t for t in titles)


def test_gguf_too_many_dims(tmp_path: Path) -> None:
    info = gguf_tensor_info("t", [1, 1, 1, 1, 1], GGML_F32, 0)
    (issue,) = gg_check(tmp_path, gguf_file([], [info], b"\0" * 4))
    assert "5 dimensions" in issue.title and issue.offset == 24


def test_gguf_unknown_tensor_type_is_unverifiable(tmp_path: Path) -> None:
    info = gguf_tensor_info("t", [8], 99, 0)
    (issue,) = gg_check(tmp_path, gguf_file([], [info], b"\0" * 32))
    assert issue.kind == "unverifiable" and issue.detail["tensor"] == "t"


def test_gguf_block_size(tmp_path: Path) -> None:
    ok = gguf_tensor_info("q", [64], GGML_Q4_0, 0)  # 2 blocks of 18 bytes
    assert gg_check(tmp_path, gguf_file([], [ok], b"\0" * 36)) == ()
    bad = gguf_tensor_info("q", [31], GGML_Q4_0, 0)
    (issue,) = gg_check(tmp_path, gguf_file([], [bad], b"\0" * 36))
    assert "block size 32" in issue.title


def test_gguf_misaligned_offset(tmp_path: Path) -> None:
    infos = [gguf_tensor_info("a", [2], GGML_F32, 0), gguf_tensor_info("b", [2], GGML_F32, 8)]
    (issue,) = gg_check(tmp_path, gguf_file([], infos, b"\0" * 40))
    assert "not a multiple of the alignment 32" in issue.title and issue.detail["tensor"] == "b"


def test_gguf_custom_alignment(tmp_path: Path) -> None:
    align = gguf_kv("general.alignment", GGUF_U32, struct.pack("<I", 64))
    infos = [gguf_tensor_info("a", [2], GGML_F32, 0), gguf_tensor_info("b", [2], GGML_F16, 64)]
    data = gguf_file([align], infos, b"\0" * 68, alignment=64)
    assert gg_check(tmp_path, data) == ()
    assert len(data) % 64 == 68 % 64  # the data section started on a 64-byte boundary


@pytest.mark.parametrize(
    "kv",
    [
        gguf_kv("general.alignment", GGUF_U32, struct.pack("<I", 48)),
        gguf_kv("general.alignment", GGUF_U32, struct.pack("<I", 0)),
        gguf_kv("general.alignment", GGUF_F32, struct.pack("<f", 32.0)),
    ],
)
def test_gguf_bad_alignment(tmp_path: Path, kv: bytes) -> None:
    (issue,) = gg_check(tmp_path, gguf_file([kv], [], b""))
    assert "power-of-two uint32" in issue.title and issue.offset == 24 + 8 + 17 + 4


def test_gguf_tensor_past_the_end(tmp_path: Path) -> None:
    info = gguf_tensor_info("big", [2**40], GGML_F32, 0)
    (issue,) = gg_check(tmp_path, gguf_file([], [info], b"\0" * 32))
    assert "runs past the end" in issue.title and issue.offset == 24


def test_gguf_huge_element_count(tmp_path: Path) -> None:
    info = gguf_tensor_info("big", [2**32, 2**32, 2**32, 2**32], GGML_F32, 0)
    (issue,) = gg_check(tmp_path, gguf_file([], [info], b""))
    assert "overflows" in issue.title


def test_gguf_chat_template_reaching_python_internals(tmp_path: Path) -> None:
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    kv = gguf_kv("tokenizer.chat_template", GGUF_STRING, gguf_str(evil))
    (issue,) = gg_check(tmp_path, gguf_file([kv], [], b""))
    assert issue.kind == "custom-code" and issue.severity is Severity.HIGH
    assert issue.detail["attributes"] == "__class__,__mro__,__subclasses__"


# ------------------------------------------------------------------------------------------
# ONNX


def onnx_check(tmp_path: Path, data: bytes, sub: str = "") -> tuple[ModelIssue, ...]:
    model_dir = tmp_path / "models"
    path = write(model_dir / sub if sub else model_dir, "model.onnx", data)
    return check_onnx(path, model_dir)


def assert_escape(data: bytes, issues: tuple[ModelIssue, ...], location: str) -> ModelIssue:
    issue = one(issues, "path-escape")
    assert issue.severity is Severity.CRITICAL and issue.detail["location"] == location
    assert data[issue.offset or 0 :].startswith(location.encode())  # offset of the string
    return issue


def test_valid_onnx_is_clean(tmp_path: Path) -> None:
    assert onnx_check(tmp_path, valid_onnx()) == ()


@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("/etc/passwd", "absolute"),
        ("../../secret.bin", "escapes"),
        ("weights/../../x.bin", "escapes"),
        ("..", "escapes"),
        ("C:\\Windows\\system.ini", "absolute"),
        ("..\\..\\x.bin", "escapes"),
        ("\\\\server\\share\\x", "absolute"),
    ],
)
def test_onnx_initializer_location_escape(tmp_path: Path, location: str, words: str) -> None:
    data = onnx_model(onnx_graph(initializers=[onnx_tensor("w", location=location)]))
    issue = assert_escape(data, onnx_check(tmp_path, data), location)
    assert words in issue.title and issue.detail["tensor"] == "w"


@pytest.mark.parametrize("location", ["w.bin", "./w.bin", "sub/../w.bin", "a/b/c.bin", ""])
def test_onnx_relative_locations_are_fine(tmp_path: Path, location: str) -> None:
    data = onnx_model(onnx_graph(initializers=[onnx_tensor("w", location=location)]))
    assert onnx_check(tmp_path, data) == ()


def test_onnx_dotdot_that_stays_in_the_model_dir_is_fine(tmp_path: Path) -> None:
    data = onnx_model(onnx_graph(initializers=[onnx_tensor("w", location="../shared/w.bin")]))
    assert onnx_check(tmp_path, data, sub="encoder") == ()


def test_onnx_location_with_nul(tmp_path: Path) -> None:
    data = onnx_model(onnx_graph(initializers=[onnx_tensor("w", location=b"ok.bin\0/etc")]))
    issue = one(onnx_check(tmp_path, data), "path-escape")
    assert "NUL" in issue.title


def test_onnx_location_too_long(tmp_path: Path) -> None:
    data = onnx_model(onnx_graph(initializers=[onnx_tensor("w", location="a" * 5000)]))
    assert "longer than" in one(onnx_check(tmp_path, data), "path-escape").title


def test_onnx_node_attribute_tensor(tmp_path: Path) -> None:
    node = onnx_node("Constant", [onnx_attr_tensor("value", onnx_tensor("c", location="/x"))])
    data = onnx_model(onnx_graph(nodes=[node]))
    assert assert_escape(data, onnx_check(tmp_path, data), "/x").detail["tensor"] == "c"


def test_onnx_node_attribute_tensors_list(tmp_path: Path) -> None:
    attr = pb_bytes(1, "ts") + pb_int(20, 9) + pb_bytes(10, onnx_tensor("t", location="/y"))
    data = onnx_model(onnx_graph(nodes=[onnx_node("Custom", [attr])]))
    assert_escape(data, onnx_check(tmp_path, data), "/y")


def test_onnx_sparse_initializer(tmp_path: Path) -> None:
    sparse = pb_bytes(1, onnx_tensor("values", location="../../v.bin")) + pb_bytes(
        2, onnx_tensor("indices")
    )
    data = onnx_model(onnx_graph(sparse=[sparse]))
    assert_escape(data, onnx_check(tmp_path, data), "../../v.bin")


def test_onnx_sparse_tensor_attribute(tmp_path: Path) -> None:
    sparse = pb_bytes(1, onnx_tensor("values", location="/s"))
    attr = pb_bytes(1, "sparse_value") + pb_int(20, 11) + pb_bytes(22, sparse)
    data = onnx_model(onnx_graph(nodes=[onnx_node("Constant", [attr])]))
    assert_escape(data, onnx_check(tmp_path, data), "/s")


def test_onnx_nested_subgraphs(tmp_path: Path) -> None:
    inner = onnx_graph(initializers=[onnx_tensor("deep", location="/deep")])
    loop_body = onnx_graph(nodes=[onnx_node("If", [onnx_attr_graph("then_branch", inner)])])
    data = onnx_model(onnx_graph(nodes=[onnx_node("Loop", [onnx_attr_graph("body", loop_body)])]))
    assert assert_escape(data, onnx_check(tmp_path, data), "/deep").detail["tensor"] == "deep"


def test_onnx_graphs_attribute_list(tmp_path: Path) -> None:
    inner = onnx_graph(initializers=[onnx_tensor("g", location="/g")])
    attr = pb_bytes(1, "branches") + pb_int(20, 10) + pb_bytes(11, inner)
    data = onnx_model(onnx_graph(nodes=[onnx_node("Custom", [attr])]))
    assert_escape(data, onnx_check(tmp_path, data), "/g")


def test_onnx_training_info_and_functions(tmp_path: Path) -> None:
    training = pb_bytes(1, onnx_graph(initializers=[onnx_tensor("init", location="/t1")]))
    training += pb_bytes(2, onnx_graph(initializers=[onnx_tensor("algo", location="/t2")]))
    function = pb_bytes(1, "f") + pb_bytes(
        7, onnx_node("Constant", [onnx_attr_tensor("value", onnx_tensor("fc", location="/f"))])
    )
    function += pb_bytes(11, onnx_attr_tensor("default", onnx_tensor("fd", location="/fd")))
    data = onnx_model(onnx_graph(), extra=pb_bytes(20, training) + pb_bytes(25, function))
    issues = onnx_check(tmp_path, data)
    assert sorted(i.detail["location"] for i in issues) == ["/f", "/fd", "/t1", "/t2"]
    assert [i.offset for i in issues] == sorted(i.offset or 0 for i in issues)


def test_onnx_symlink_escape(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(b"s")
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    (model_dir / "weights.bin").symlink_to(outside / "secret.bin")
    (model_dir / "linkdir").symlink_to(outside)
    (model_dir / "real").mkdir()
    (model_dir / "inside").symlink_to(model_dir / "real")
    data = onnx_model(
        onnx_graph(
            initializers=[
                onnx_tensor("a", location="weights.bin"),
                onnx_tensor("b", location="linkdir/secret.bin"),
                onnx_tensor("c", location="inside/ok.bin"),
            ]
        )
    )
    path = write(model_dir, "model.onnx", data)
    issues = check_onnx(path, model_dir)
    assert {i.detail["tensor"] for i in issues} == {"a", "b"}
    assert all(i.kind == "path-escape" and "symlink" in i.title for i in issues)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (valid_onnx()[:-3], "runs past"),
        (pb_int(1, 9) + pb_int(7, 5), "not a message"),
        (pb_int(1, 9) + b"\x0b\x00", "wire type 3"),
        (pb_int(1, 9) + b"\xff" * 11, "varint"),
        (pb_int(1, 9) + b"\x00\x01", "field number 0"),
    ],
)
def test_onnx_malformed_protobuf(tmp_path: Path, data: bytes, words: str) -> None:
    issue = one(onnx_check(tmp_path, data), "bad-header")
    assert words in issue.title and issue.offset is not None


def test_onnx_nesting_bound(tmp_path: Path) -> None:
    graph = onnx_graph()
    for _ in range(70):
        graph = onnx_graph(nodes=[onnx_node("If", [onnx_attr_graph("then_branch", graph)])])
    issue = one(onnx_check(tmp_path, onnx_model(graph)), "unverifiable")
    assert "nested" in issue.title


# ------------------------------------------------------------------------------------------
# Keras


def keras_check(tmp_path: Path, data: bytes, name: str = "m.keras") -> tuple[ModelIssue, ...]:
    return check_keras(write(tmp_path, name, data))


def test_clean_keras_zip(tmp_path: Path) -> None:
    assert keras_check(tmp_path, keras_zip(keras_config([KERAS_DENSE]))) == ()


def test_keras_lambda_layer(tmp_path: Path) -> None:
    issues = keras_check(tmp_path, keras_zip(keras_config([KERAS_DENSE, KERAS_LAMBDA])))
    (issue,) = issues  # the __lambda__ inside the Lambda layer is not reported again
    assert issue.kind == "custom-code" and issue.severity is Severity.CRITICAL
    assert issue.member == "config.json" and issue.detail["layer"] == "boom"
    assert issue.detail["path"] == "$.config.layers[1]"


def test_keras_lambda_function_elsewhere(tmp_path: Path) -> None:
    dense = json.loads(json.dumps(KERAS_DENSE))
    dense["config"]["activation"] = {"class_name": "__lambda__", "config": {"value": ["x"]}}
    (issue,) = keras_check(tmp_path, keras_zip(keras_config([dense])))
    assert issue.severity is Severity.CRITICAL and "lambda" in issue.title


@pytest.mark.parametrize(
    ("obj", "detail_key", "value"),
    [
        ({"module": "my_pkg.layers", "class_name": "Evil", "config": {"name": "e"},
          "registered_name": None}, "module", "my_pkg.layers"),
        ({"module": "keras.layers", "class_name": "MyLayer", "config": {"name": "m"},
          "registered_name": "MyPkg>MyLayer"}, "registered_name", "MyPkg>MyLayer"),
        ({"module": "builtins", "class_name": "function", "config": "exec",
          "registered_name": None}, "module", "builtins"),
        ({"module": None, "class_name": "Mine", "config": {"name": "x"},
          "registered_name": "Mine"}, "class_name", "Mine"),
    ],
)  # fmt: skip
def test_keras_custom_objects(
    tmp_path: Path, obj: dict[str, Any], detail_key: str, value: str
) -> None:
    (issue,) = keras_check(tmp_path, keras_zip(keras_config([KERAS_DENSE, obj])))
    assert issue.kind == "custom-code" and issue.severity is Severity.HIGH
    assert issue.detail[detail_key] == value


@pytest.mark.parametrize(
    "obj",
    [
        {"module": "keras.src.models.functional", "class_name": "Functional",
         "config": {}, "registered_name": "Functional"},
        {"module": "keras.activations", "class_name": "function", "config": "relu",
         "registered_name": "relu"},
        {"class_name": "__typespec__", "spec_name": "TensorSpec",
         "module": "tensorflow.python.framework.tensor", "config": [], "registered_name": None},
        {"class_name": "__tuple__", "config": {"value": [1, 2]}},
        {"module": "tf_keras.src.engine.functional", "class_name": "Functional", "config": {}},
    ],
)  # fmt: skip
def test_keras_builtins_are_fine(tmp_path: Path, obj: dict[str, Any]) -> None:
    assert keras_check(tmp_path, keras_zip(keras_config([obj]))) == ()


@pytest.mark.parametrize(("fn", "severity"), [("math.add", "MEDIUM"), ("io.write_file", "HIGH")])
def test_keras_tfoplambda(tmp_path: Path, fn: str, severity: str) -> None:
    layer = {"class_name": "TFOpLambda", "config": {"name": "op", "function": fn}}
    (issue,) = keras_check(tmp_path, keras_zip(keras_config([layer])))
    assert issue.kind == "custom-code" and issue.severity is Severity[severity]
    assert issue.detail["function"] == fn


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (keras_zip(b"{not json"), "not valid JSON"),
        (zip_bytes([("metadata.json", b"{}")]), "no config.json"),
        (b"PK\x03\x04" + bytes(40), "broken"),
        (b"neither", "neither"),
    ],
)
def test_keras_broken(tmp_path: Path, data: bytes, words: str) -> None:
    issue = one(keras_check(tmp_path, data), "bad-header")
    assert words in issue.title


def test_keras_duplicate_config(tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = keras_zip(
            keras_config([]), extra=[("config.json", json.dumps(KERAS_LAMBDA).encode())]
        )
    issues = keras_check(tmp_path, data)
    assert sorted(kinds(issues)) == ["bad-header", "custom-code"]  # the last copy is checked


def h5_config(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """model_config as Keras writes it into HDF5: class_name first, layers in Keras 3 form."""
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}


def test_keras_h5_lambda(tmp_path: Path) -> None:
    data = keras_h5(h5_config([KERAS_DENSE, KERAS_LAMBDA]), at=1000)
    (issue,) = keras_check(tmp_path, data, "m.h5")
    assert issue.kind == "custom-code" and issue.severity is Severity.CRITICAL
    assert issue.offset == 1000 and issue.detail["layer"] == "boom"


def test_keras_h5_clean(tmp_path: Path) -> None:
    assert keras_check(tmp_path, keras_h5(h5_config([KERAS_DENSE])), "m.h5") == ()
    # a Keras 3 object (module first) is a candidate too
    assert keras_check(tmp_path, keras_h5(keras_config([KERAS_DENSE])), "m.h5") == ()


def test_keras_h5_keras2_format(tmp_path: Path) -> None:
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [
                {"class_name": "Lambda", "config": {"name": "l", "function": ["4wE=", None]}}
            ],
        },
    }
    (issue,) = keras_check(tmp_path, keras_h5(config), "m.h5")
    assert issue.severity is Severity.CRITICAL and issue.detail["layer"] == "l"


def test_keras_h5_without_config(tmp_path: Path) -> None:
    (issue,) = keras_check(tmp_path, keras_h5(None), "m.h5")
    assert issue.kind == "unverifiable" and issue.severity is Severity.MEDIUM


def test_keras_h5_reordered_keys_are_not_silently_passed(tmp_path: Path) -> None:
    config = {"config": {"name": "x", "function": ["4wE=", None]}, "class_name": "Lambda"}
    (issue,) = keras_check(tmp_path, keras_h5(config), "m.h5")
    assert issue.kind == "unverifiable" and issue.offset is not None


def test_keras_h5_config_across_a_chunk_boundary(tmp_path: Path) -> None:
    at = (1 << 20) - 5
    data = keras_h5(h5_config([KERAS_LAMBDA]), at=at, size=(1 << 20) + 4096)
    (issue,) = keras_check(tmp_path, data, "m.h5")
    assert issue.severity is Severity.CRITICAL and issue.offset == at


def test_keras_h5_behind_a_userblock(tmp_path: Path) -> None:
    data = bytes(512) + keras_h5(h5_config([KERAS_LAMBDA]))
    assert kinds(keras_check(tmp_path, data, "m.h5")) == ["custom-code"]


def test_keras_h5_broken_json_is_unverifiable(tmp_path: Path) -> None:
    data = keras_h5(b'{"class_name": "Sequential", "config": {"layers": [ \x00\x00')
    (issue,) = keras_check(tmp_path, data, "m.h5")
    assert issue.kind == "unverifiable" and issue.offset == 800 + 1


# ------------------------------------------------------------------------------------------
# SavedModel, TorchScript, zip containers


def savedmodel(tmp_path: Path) -> Path:
    sm = tmp_path / "sm"
    (sm / "variables").mkdir(parents=True)
    (sm / "assets").mkdir()
    (sm / "saved_model.pb").write_bytes(b"\x08\x01")
    (sm / "variables" / "variables.index").write_bytes(b"")
    return sm


def test_savedmodel_is_unverifiable_but_nothing_else(tmp_path: Path) -> None:
    (issue,) = check_savedmodel(savedmodel(tmp_path))
    assert issue.kind == "unverifiable" and issue.severity is Severity.MEDIUM
    assert issue.member == "saved_model.pb"


def test_savedmodel_symlink_escapes(tmp_path: Path) -> None:
    sm = savedmodel(tmp_path)
    (sm / "assets" / "vocab.txt").symlink_to("/etc/passwd")
    (sm / "variables" / "shard").symlink_to(tmp_path)  # the parent: outside
    (sm / "assets" / "dangling").symlink_to("../../nowhere")
    (sm / "assets" / "ok").symlink_to("../variables/variables.index")
    issues = [i for i in check_savedmodel(sm) if i.kind == "path-escape"]
    assert {i.member for i in issues} == {"assets/vocab.txt", "variables/shard", "assets/dangling"}
    assert all(i.severity is Severity.CRITICAL for i in issues)
    assert {i.detail["target"] for i in issues} >= {"/etc/passwd"}


def test_savedmodel_without_graph(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    assert kinds(check_savedmodel(tmp_path / "x")) == ["bad-header"]


def test_savedmodel_missing_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        check_savedmodel(tmp_path / "nope")


def test_torchscript_code_members(tmp_path: Path) -> None:
    (issue,) = check_torchscript(write(tmp_path, "m.pt", torchscript_zip()))
    assert issue.kind == "custom-code" and issue.severity is Severity.HIGH
    assert issue.member == "archive/code/" and issue.detail["count"] == "2"
    assert "archive/code/__torch__/model.py" in issue.detail["members"]


def test_torchscript_without_code_and_broken(tmp_path: Path) -> None:
    assert check_torchscript(write(tmp_path, "a.pt", torch_zip())) == ()
    assert kinds(check_torchscript(write(tmp_path, "b.pt", b"PK\x03\x04junk"))) == ["bad-header"]


def test_zip_container_checks(tmp_path: Path) -> None:
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("archive/data.pkl", b"\x80\x02N.")
            zf.writestr("archive/data.pkl", b"\x80\x02N.")
            zf.writestr("../../etc/cron.d/x", b"x")
            zf.writestr("/abs", b"x")
    issues = check_zip(write(tmp_path, "m.pt", buf.getvalue()))
    assert sorted(kinds(issues)) == ["bad-header", "path-escape", "path-escape"]
    assert one(issues, "bad-header").member == "archive/data.pkl"


def test_zip_encrypted_and_mismatched_members(tmp_path: Path) -> None:
    data = bytearray(zip_bytes([("a.pkl", b"\x80\x02N."), ("b.pkl", b"\x80\x02N.")]))
    data[6] |= 1  # local header of a.pkl: "encrypted"
    cd = data.find(b"PK\x01\x02")
    data[cd + 8] |= 1  # and in the central directory
    second = data.find(b"PK\x03\x04", 4)
    data[second + 30] = ord("c")  # local name "c.pkl" vs central "b.pkl"
    issues = check_zip(write(tmp_path, "m.zip", bytes(data)))
    assert [(i.member, i.kind) for i in issues] == [
        ("a.pkl", "bad-header"),
        ("b.pkl", "bad-header"),
    ]
    assert "encrypted" in issues[0].title and issues[1].offset == second


def test_clean_zips_have_no_container_issues(tmp_path: Path) -> None:
    for data in (torch_zip(), torchscript_zip(), keras_zip(keras_config([KERAS_DENSE]))):
        assert check_zip(write(tmp_path, "m.zip", data)) == ()


def test_check_structure_dispatches(tmp_path: Path) -> None:
    cases = {
        "a.safetensors": (valid_safetensors() + b"X", ["bad-header"]),
        "b.gguf": (valid_gguf(), []),
        "c.onnx": (onnx_model(onnx_graph(initializers=[onnx_tensor("w", location="/x")])),
                   ["path-escape"]),
        "d.keras": (keras_zip(keras_config([KERAS_LAMBDA])), ["custom-code"]),
        "e.h5": (keras_h5(None), ["unverifiable"]),
        "f.pt": (torchscript_zip(), ["custom-code"]),
        "g.pt": (torch_zip(), []),
        "h.bin": (HDF5_SIGNATURE[:4], []),
    }  # fmt: skip
    for name, (data, expected) in cases.items():
        p = write(tmp_path, name, data)
        assert kinds(check_structure(p, detect_format(p), tmp_path)) == expected, name
    sm = savedmodel(tmp_path)
    assert kinds(check_structure(sm, detect_format(sm), tmp_path)) == ["unverifiable"]


def test_unreadable_paths_are_config_errors(tmp_path: Path) -> None:
    for check in (check_safetensors, check_gguf, check_keras, check_torchscript, check_zip):
        with pytest.raises(ConfigError):
            check(tmp_path / "missing")
    with pytest.raises(ConfigError):
        check_onnx(tmp_path / "missing", tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        check_safetensors(fifo)


def test_gguf_array_of_every_scalar(tmp_path: Path) -> None:
    kvs = [
        gguf_kv(f"a{t}", GGUF_ARRAY, struct.pack("<IQ", t, 3) + b"\0" * (3 * size))
        for t, size in ((GGUF_U8, 1), (GGUF_F32, 4), (GGUF_I32, 4), (10, 8), (12, 8), (7, 1))
    ]
    assert gg_check(tmp_path, gguf_file(kvs, [], b"")) == ()
