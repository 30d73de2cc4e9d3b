"""Model files in every format, built byte by byte here (no downloaded files, no
numpy/torch/onnx/safetensors): the formats tests, the structure tests and the gate tests share
them."""

from __future__ import annotations

import io
import json
import pickle
import random
import struct
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def safetensors_bytes(values: list[float]) -> bytes:
    """A valid one-tensor safetensors file, written by hand."""
    data = struct.pack(f"<{len(values)}f", *values)
    header = {
        "__metadata__": {"format": "pt"},
        "w": {"dtype": "F32", "shape": [len(values)], "data_offsets": [0, len(data)]},
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def safetensors_file(
    tensors: Mapping[str, Mapping[str, Any]],
    data: bytes,
    *,
    metadata: Mapping[str, Any] | None = None,
    header_bytes: bytes | None = None,
) -> bytes:
    """A safetensors file from a header dict (or raw header bytes) and a data area."""
    if header_bytes is None:
        header: dict[str, Any] = dict(tensors)
        if metadata is not None:
            header["__metadata__"] = dict(metadata)
        header_bytes = json.dumps(header, separators=(",", ":")).encode()
        header_bytes += b" " * (-len(header_bytes) % 8)  # the writer pads to 8
    return struct.pack("<Q", len(header_bytes)) + header_bytes + data


def valid_safetensors() -> bytes:
    """Two tensors (F32 2×2, I8 3) tiling the data area, with metadata."""
    a = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)
    b = bytes([1, 2, 3])
    return safetensors_file(
        {
            "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
            "b": {"dtype": "I8", "shape": [3], "data_offsets": [16, 19]},
        },
        a + b,
        metadata={"format": "pt"},
    )


# GGUF ---------------------------------------------------------------------------------------

GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL = range(8)
GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64 = 8, 9, 10, 11, 12
GGML_F32, GGML_F16, GGML_Q4_0 = 0, 1, 2


def gguf_str(s: bytes | str, e: str = "<", wide: bool = True) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack(e + ("Q" if wide else "I"), len(raw)) + raw


def gguf_kv(key: str, vtype: int, payload: bytes, e: str = "<", wide: bool = True) -> bytes:
    return gguf_str(key, e, wide) + struct.pack(e + "I", vtype) + payload


def gguf_tensor_info(
    name: str, dims: list[int], ggml_type: int, offset: int, e: str = "<", wide: bool = True
) -> bytes:
    dim_fmt = "Q" if wide else "I"
    return (
        gguf_str(name, e, wide)
        + struct.pack(e + "I", len(dims))
        + b"".join(struct.pack(e + dim_fmt, d) for d in dims)
        + struct.pack(e + "IQ", ggml_type, offset)
    )


def gguf_file(
    kvs: list[bytes],
    infos: list[bytes],
    data: bytes,
    *,
    version: int = 3,
    alignment: int = 32,
    e: str = "<",
    n_tensors: int | None = None,
    n_kv: int | None = None,
) -> bytes:
    """A GGUF file: header, metadata, tensor infos, padding to ``alignment``, data."""
    wide = version >= 2
    count = "Q" if wide else "I"
    out = b"GGUF" + struct.pack(e + "I", version)
    out += struct.pack(e + count, len(infos) if n_tensors is None else n_tensors)
    out += struct.pack(e + count, len(kvs) if n_kv is None else n_kv)
    out += b"".join(kvs) + b"".join(infos)
    out += b"\0" * (-len(out) % alignment)
    return out + data


def valid_gguf_parts(e: str = "<", wide: bool = True) -> tuple[list[bytes], list[bytes], bytes]:
    """KV pairs of every value type (arrays included) and two tensors."""
    kvs = [
        gguf_kv("general.architecture", GGUF_STRING, gguf_str("llama", e, wide), e, wide),
        gguf_kv("general.alignment", GGUF_U32, struct.pack(e + "I", 32), e, wide),
        gguf_kv("t.u8", GGUF_U8, b"\x07", e, wide),
        gguf_kv("t.i8", GGUF_I8, b"\xff", e, wide),
        gguf_kv("t.u16", GGUF_U16, struct.pack(e + "H", 7), e, wide),
        gguf_kv("t.i16", GGUF_I16, struct.pack(e + "h", -7), e, wide),
        gguf_kv("t.i32", GGUF_I32, struct.pack(e + "i", -7), e, wide),
        gguf_kv("t.f32", GGUF_F32, struct.pack(e + "f", 0.5), e, wide),
        gguf_kv("t.bool", GGUF_BOOL, b"\x01", e, wide),
        gguf_kv("t.u64", GGUF_U64, struct.pack(e + "Q", 7), e, wide),
        gguf_kv("t.i64", GGUF_I64, struct.pack(e + "q", -7), e, wide),
        gguf_kv("t.f64", GGUF_F64, struct.pack(e + "d", 0.25), e, wide),
        gguf_kv(
            "t.ints", GGUF_ARRAY,
            struct.pack(e + "I", GGUF_I32) + struct.pack(e + ("Q" if wide else "I"), 3)
            + struct.pack(e + "3i", 1, 2, 3), e, wide,
        ),
        gguf_kv(
            "tokenizer.ggml.tokens", GGUF_ARRAY,
            struct.pack(e + "I", GGUF_STRING) + struct.pack(e + ("Q" if wide else "I"), 2)
            + gguf_str("<s>", e, wide) + gguf_str("hello", e, wide), e, wide,
        ),
        gguf_kv(
            "tokenizer.chat_template", GGUF_STRING,
            gguf_str("{% for m in messages %}{{ m['content'] }}{% endfor %}", e, wide), e, wide,
        ),
    ]  # fmt: skip
    infos = [
        gguf_tensor_info("a", [4, 2], GGML_F32, 0, e, wide),  # 32 bytes
        gguf_tensor_info("b", [8], GGML_F16, 32, e, wide),  # 16 bytes
    ]
    return kvs, infos, bytes(range(48))


def valid_gguf(version: int = 3, e: str = "<") -> bytes:
    kvs, infos, data = valid_gguf_parts(e, version >= 2)
    return gguf_file(kvs, infos, data, version=version, e=e)


# Protobuf / ONNX ----------------------------------------------------------------------------


def pb_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_int(field: int, value: int) -> bytes:
    return pb_varint(field << 3) + pb_varint(value)


def pb_bytes(field: int, data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return pb_varint(field << 3 | 2) + pb_varint(len(raw)) + raw


def onnx_tensor(name: str, *, location: str | bytes | None = None, raw: bytes = b"") -> bytes:
    """A FLOAT TensorProto: inline raw_data, or external data at ``location``."""
    out = pb_int(1, 2) + pb_int(2, 1) + pb_bytes(8, name)
    if location is None:
        return out + pb_bytes(9, raw or b"\0" * 8)
    out += pb_bytes(13, pb_bytes(1, "location") + pb_bytes(2, location))
    out += pb_bytes(13, pb_bytes(1, "offset") + pb_bytes(2, "0"))
    return out + pb_int(14, 1)


def onnx_attr_tensor(name: str, tensor: bytes) -> bytes:
    return pb_bytes(1, name) + pb_int(20, 4) + pb_bytes(5, tensor)


def onnx_attr_graph(name: str, graph: bytes) -> bytes:
    return pb_bytes(1, name) + pb_int(20, 5) + pb_bytes(6, graph)


def onnx_node(op_type: str, attrs: Iterable[bytes] = ()) -> bytes:
    out = pb_bytes(1, "x") + pb_bytes(2, "y") + pb_bytes(4, op_type)
    return out + b"".join(pb_bytes(5, a) for a in attrs)


def onnx_graph(
    nodes: Iterable[bytes] = (), initializers: Iterable[bytes] = (), sparse: Iterable[bytes] = ()
) -> bytes:
    out = b"".join(pb_bytes(1, n) for n in nodes) + pb_bytes(2, "g")
    out += b"".join(pb_bytes(5, t) for t in initializers)
    return out + b"".join(pb_bytes(15, s) for s in sparse)


def onnx_model(graph: bytes, *, extra: bytes = b"", ir_version: int = 9) -> bytes:
    """ModelProto in field-number order, as protobuf serializers write it."""
    return (
        pb_int(1, ir_version)
        + pb_bytes(2, "modelseal-tests")
        + pb_bytes(3, "1.0")
        + pb_bytes(7, graph)
        + pb_bytes(8, pb_bytes(1, "") + pb_int(2, 17))
        + extra
    )


def valid_onnx() -> bytes:
    return onnx_model(
        onnx_graph(
            nodes=[onnx_node("Relu")],
            initializers=[onnx_tensor("w"), onnx_tensor("e", location="weights/e.bin")],
        )
    )


# Zips, numpy, Keras, torch ------------------------------------------------------------------


def zip_bytes(members: Iterable[tuple[str, bytes]], *, compress: bool = False) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def npy_bytes(
    descr: Any, shape: tuple[int, ...], data: bytes, *, version: int = 1, fortran: bool = False
) -> bytes:
    """A .npy file as numpy's writer lays it out (header padded to 64 bytes, ending in \\n)."""
    text = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    prefix = 10 if version == 1 else 12
    pad = -(prefix + len(text) + 1) % 64
    header = (text + " " * pad + "\n").encode("latin-1" if version < 3 else "utf-8")
    size = struct.pack("<H" if version == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header + data


def npy_data_offset(npy: bytes) -> int:
    if npy[6] == 1:
        return 10 + int(struct.unpack("<H", npy[8:10])[0])
    return 12 + int(struct.unpack("<I", npy[8:12])[0])


NUMERIC_NPY = npy_bytes("<f4", (2, 3), struct.pack("<6f", *range(6)))
OBJECT_NPY = npy_bytes("|O", (2,), pickle.dumps([1, "x"], protocol=3))

KERAS_DENSE: dict[str, Any] = {
    "module": "keras.layers",
    "class_name": "Dense",
    "config": {"name": "dense", "units": 2, "activation": "relu"},
    "registered_name": None,
}
KERAS_LAMBDA: dict[str, Any] = {
    "module": "keras.layers",
    "class_name": "Lambda",
    "config": {
        "name": "boom",
        "function": {"class_name": "__lambda__", "config": {"value": ["4wEAAAAAAAAA", None]}},
    },
    "registered_name": None,
}


def keras_config(layers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "sequential", "layers": layers},
        "registered_name": None,
    }


def keras_zip(config: Any, *, extra: Iterable[tuple[str, bytes]] = ()) -> bytes:
    """A Keras 3 .keras archive (config.json, metadata.json, model.weights.h5)."""
    raw = config if isinstance(config, bytes) else json.dumps(config).encode()
    meta = json.dumps({"keras_version": "3.6.0", "date_saved": "2024-01-01"}).encode()
    return zip_bytes(
        [
            ("metadata.json", meta),
            ("config.json", raw),
            ("model.weights.h5", HDF5_SIGNATURE + bytes(56)),
            *extra,
        ]
    )


def keras_h5(config: Any | None, *, at: int = 800, size: int = 4096) -> bytes:
    """An HDF5-signed file with the model_config JSON stored inline at ``at``."""
    out = bytearray(HDF5_SIGNATURE + bytes(max(size, at) - 8))
    if config is not None:
        raw = config if isinstance(config, bytes) else json.dumps(config).encode()
        out[at : at + len(raw)] = raw
    return bytes(out)


def torch_zip(*, root: str = "archive", storage: bytes = b"\x80\x02junk") -> bytes:
    """torch.save's zip layout: data.pkl, raw storages under data/, version, byteorder."""
    return zip_bytes(
        [
            (f"{root}/data.pkl", pickle.dumps({"w": 1}, protocol=2)),
            (f"{root}/byteorder", b"little"),
            (f"{root}/data/0", storage),
            (f"{root}/version", b"3\n"),
            (f"{root}/.data/serialization_id", b"1234567890"),
        ]
    )


def torchscript_zip() -> bytes:
    root = "archive"
    return zip_bytes(
        [
            (f"{root}/data.pkl", pickle.dumps({"w": 1}, protocol=2)),
            (f"{root}/constants.pkl", pickle.dumps((), protocol=2)),
            (f"{root}/code/__torch__/model.py", b"class Model(Module):\n  pass\n"),
            (f"{root}/code/__torch__/model.py.debug_pkl", pickle.dumps((), protocol=2)),
            (f"{root}/data/0", b"\0" * 16),
            (f"{root}/version", b"3\n"),
        ]
    )


def legacy_torch_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (
            ("sys_info", pickle.dumps({"little_endian": True}, protocol=2)),
            ("pickle", pickle.dumps({"w": 1}, protocol=2)),
            ("tensors", pickle.dumps(0, protocol=2)),
            ("storages", pickle.dumps(0, protocol=2)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def lz4_frame(blocks: Iterable[bytes]) -> bytes:
    """An LZ4 frame with the given (already encoded) blocks; checksums are not checked."""
    out = b"\x04\x22\x4d\x18" + bytes([0x60, 0x40, 0x00])  # v1, independent blocks, 64 KiB
    for block in blocks:
        out += struct.pack("<I", len(block)) + block
    return out + struct.pack("<I", 0)


def lz4_literals(data: bytes) -> bytes:
    """One LZ4 sequence holding only literals (a valid last sequence)."""
    n = len(data)
    if n < 15:
        return bytes([n << 4]) + data
    rest, ext = n - 15, bytearray()
    while rest >= 255:
        ext.append(255)
        rest -= 255
    ext.append(rest)
    return bytes([0xF0]) + bytes(ext) + data


def noise(n: int, seed: int = 0) -> bytes:
    """Deterministic random bytes."""
    return random.Random(seed).randbytes(n)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


#: A protocol-0 pickle that calls ``os.system("echo pwned")`` when loaded.
EVIL = b"cos\nsystem\n(S'echo pwned'\ntR."


def tar_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A ustar archive of regular files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def v7_tar(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A tar whose headers carry no ``ustar`` magic (the V7 format): tarfile, and so torch's
    legacy tar loader (``tarfile.open(mode="r:")``), reads it all the same."""
    raw = bytearray(tar_bytes(members))
    off = 0
    while off + 512 <= len(raw) and raw[off : off + 512].strip(b"\0"):
        hdr = raw[off : off + 512]
        size = int(hdr[124:136].strip(b"\0 ") or b"0", 8)
        hdr[257:265] = b"\0" * 8
        hdr[148:156] = b" " * 8
        hdr[148:156] = b"%06o\0 " % sum(hdr)
        raw[off : off + 512] = hdr
        off += 512 + (size + 511) // 512 * 512
    return bytes(raw)
