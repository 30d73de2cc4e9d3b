"""Hostile bytes never crash detection or the structure checks, and never make them slow or
memory-hungry: arbitrary bytes, and mutations (truncation, bit flips, huge lengths spliced in)
of valid safetensors, GGUF, ONNX, Keras, numpy and zip files all end in a Detected or issues.
"""

from __future__ import annotations

import itertools
import struct
import time
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.model_files import (
    GGML_F32,
    KERAS_DENSE,
    KERAS_LAMBDA,
    NUMERIC_NPY,
    OBJECT_NPY,
    gguf_file,
    gguf_tensor_info,
    keras_config,
    keras_h5,
    keras_zip,
    onnx_attr_graph,
    onnx_graph,
    onnx_model,
    onnx_node,
    onnx_tensor,
    safetensors_file,
    torch_zip,
    torchscript_zip,
    valid_gguf,
    valid_onnx,
    valid_safetensors,
    zip_bytes,
)

from modelseal.models.formats import Detected, detect_format
from modelseal.models.issues import ModelIssue
from modelseal.models.structure import (
    check_gguf,
    check_keras,
    check_onnx,
    check_safetensors,
    check_structure,
    check_torchscript,
    check_zip,
)

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=3),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SEEDS: dict[str, bytes] = {
    "safetensors": valid_safetensors(),
    "gguf": valid_gguf(),
    "onnx": onnx_model(
        onnx_graph(
            nodes=[onnx_node("If", [onnx_attr_graph("then_branch", onnx_graph())])],
            initializers=[onnx_tensor("w"), onnx_tensor("e", location="e.bin")],
        )
    ),
    "keras": keras_zip(keras_config([KERAS_DENSE, KERAS_LAMBDA])),
    "keras_h5": keras_h5({"class_name": "Sequential", "config": {"layers": [KERAS_LAMBDA]}}),
    "npy": OBJECT_NPY,
    "npz": zip_bytes([("a.npy", NUMERIC_NPY), ("b.npy", OBJECT_NPY)]),
    "torch": torch_zip(),
    "torchscript": torchscript_zip(),
}

CHECKS: list[Callable[[Path], tuple[ModelIssue, ...]]] = [
    check_safetensors,
    check_gguf,
    check_keras,
    check_torchscript,
    check_zip,
]


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def run_everything(path: Path, model_dir: Path) -> None:
    """Detection, the matching structure checks, and every check regardless of format: each
    returns, none raises."""
    detected = detect_format(path)
    assert isinstance(detected, Detected)
    for issue in check_structure(path, detected, model_dir):
        assert isinstance(issue, ModelIssue)
    for check in CHECKS:
        assert all(isinstance(i, ModelIssue) for i in check(path))
    assert all(isinstance(i, ModelIssue) for i in check_onnx(path, model_dir))


@FUZZ
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes(fuzz_dir: Path, data: bytes) -> None:
    p = fuzz_dir / "arbitrary.bin"
    p.write_bytes(data)
    run_everything(p, fuzz_dir)


@FUZZ
@given(
    prefix=st.sampled_from(
        [b"\x80\x04", b"PK\x03\x04", b"GGUF\x03\x00\x00\x00", b"\x93NUMPY\x01\x00", b"\x08\x09",
         b"\x89HDF\r\n\x1a\n", b"\x1f\x8b\x08", b"BZh91AY&SY", b"\xfd7zXZ\x00",
         b"\x04\x22\x4d\x18", b"\x5d\x00\x00", b"x\x9c", b"ZF0x", b"cos\n", b"(", b"}"]
    ),
    rest=st.binary(max_size=2048),
)  # fmt: skip
def test_magic_then_garbage(fuzz_dir: Path, prefix: bytes, rest: bytes) -> None:
    p = fuzz_dir / "magic.bin"
    p.write_bytes(prefix + rest)
    run_everything(p, fuzz_dir)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    seed = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "huge", "byte", "splice"]))
        if not seed:
            break
        at = draw(st.integers(0, len(seed) - 1))
        if kind == "truncate":
            del seed[at:]
        elif kind == "flip":
            seed[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            seed[at] = draw(st.integers(0, 255))
        elif kind == "huge":
            value = draw(st.sampled_from([2**31, 2**32 - 1, 2**60, 2**63, 2**64 - 1]))
            width = draw(st.sampled_from([4, 8]))
            seed[at : at + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
        else:
            seed[at:at] = draw(st.binary(min_size=1, max_size=32))
    return bytes(seed)


@FUZZ
@given(data=mutated())
def test_mutated_valid_files(fuzz_dir: Path, data: bytes) -> None:
    p = fuzz_dir / "mutated.bin"
    p.write_bytes(data)
    run_everything(p, fuzz_dir)


def test_every_single_byte_truncation_of_the_seeds(fuzz_dir: Path) -> None:
    for name, seed in SEEDS.items():
        step = max(1, len(seed) // 200)
        for cut in range(0, len(seed), step):
            p = fuzz_dir / f"cut-{name}.bin"
            p.write_bytes(seed[:cut])
            run_everything(p, fuzz_dir)


# Huge claims cost nothing -------------------------------------------------------------------


def bounded(fn: Callable[[], object], *, seconds: float = 2.0, peak: int = 32 << 20) -> object:
    """Run ``fn`` twice: timed (untraced: tracemalloc slows allocation several times), then
    under tracemalloc for its peak Python memory."""
    start = time.monotonic()
    result = fn()
    assert time.monotonic() - start < seconds
    tracemalloc.start()
    try:
        fn()
        used = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert used < peak, used
    return result


HUGE_CLAIMS: dict[str, bytes] = {
    "safetensors 2**60 elements": safetensors_file(
        {"t": {"dtype": "F32", "shape": [2**60, 2**60, 2**60], "data_offsets": [0, 4]}},
        b"\0" * 4,
    ),
    "safetensors 2**63 offsets": safetensors_file(
        {"t": {"dtype": "U8", "shape": [2**63], "data_offsets": [0, 2**63]}}, b""
    ),
    "safetensors 10**6-dim shape": safetensors_file(
        {"t": {"dtype": "U8", "shape": [2] * 1_000_000, "data_offsets": [0, 1]}}, b"\0"
    ),
    "safetensors header 2**63": struct.pack("<Q", 2**63) + b"{}",
    "gguf 2**60 tensor elements": gguf_file(
        [], [gguf_tensor_info("t", [2**60, 2**60, 2**60, 2**60], GGML_F32, 0)], b""
    ),
    "gguf 2**63 string": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**63),
    "gguf 2**62 array": b"GGUF"
    + struct.pack("<IQQ", 3, 0, 1)
    + struct.pack("<Q", 1)
    + b"k"
    + struct.pack("<IIQ", 9, 8, 2**62)
    + b"\0" * 64,
    "onnx 2**62 length": b"\x08\x09\x3a" + b"\xff" * 8 + b"\x3f",
    "npy 2**32 header": b"\x93NUMPY\x02\x00\xff\xff\xff\xff{",
    "keras zip huge config": keras_zip(b"[" * 200_000),
    "onnx valid": valid_onnx(),
}


@pytest.mark.parametrize("name", sorted(HUGE_CLAIMS))
def test_huge_claims_are_cheap(fuzz_dir: Path, name: str) -> None:
    p = fuzz_dir / "huge.bin"
    p.write_bytes(HUGE_CLAIMS[name])
    bounded(lambda: run_everything(p, fuzz_dir))


def test_deeply_nested_json_and_protobuf(fuzz_dir: Path) -> None:
    graph = onnx_graph()
    for _ in range(200):
        graph = onnx_graph(nodes=[onnx_node("If", [onnx_attr_graph("b", graph)])])
    cases = [
        onnx_model(graph),
        safetensors_file(
            {}, b"", header_bytes=b"{" + b'"a":[' * 50_000 + b"1" + b"]" * 50_000 + b"}"
        ),
        keras_h5(b'{"class_name": ' + b"[" * 100_000),
        keras_zip(b'{"class_name": "X", "config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ]
    p = fuzz_dir / "deep.bin"
    for data in cases:
        p.write_bytes(data)
        bounded(lambda: run_everything(p, fuzz_dir), seconds=5)


def test_many_zip_members_bounded(fuzz_dir: Path) -> None:
    members = ((f"archive/data/{i}", b"\x80\x02") for i in range(3000))
    data = zip_bytes(itertools.chain([("archive/data.pkl", b"\x80\x02N.")], members))
    p = fuzz_dir / "many.zip"
    p.write_bytes(data)
    detected = bounded(lambda: detect_format(p))
    assert isinstance(detected, Detected)
    assert detected.zip_pickle_members == ("archive/data.pkl",)
