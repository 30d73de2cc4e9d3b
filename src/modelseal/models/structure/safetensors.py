"""safetensors: header bounds, strict JSON (no duplicate keys, no NaN), dtypes, shapes vs.
byte sizes, and tensors that tile the data area exactly.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Final

from modelseal.findings import Severity
from modelseal.models.bytesource import ByteSource
from modelseal.models.formats import (
    SAFETENSORS_MAX_HEADER,
)
from modelseal.models.issues import ModelIssue, short
from modelseal.models.structure._common import (
    BAD_HEADER,
    MAX_JSON_TOKENS,
    UNVERIFIABLE,
    Issues,
    json_too_complex,
)


def _json_no_constants(name: str) -> object:
    # Python's json accepts NaN/Infinity; the safetensors (serde) parser does not.
    raise ValueError(f"non-standard JSON constant {name}")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Parsers disagree on duplicate keys (first wins, last wins, error): an ambiguity a
    # hostile file can use to show a checker one tensor and the loader another.
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


#: Bits per element of every safetensors dtype (sub-byte dtypes pack; see _safetensors_entry).
SAFETENSORS_DTYPE_BITS: Final = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "F64": 64, "I64": 64, "U64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip


def _is_uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _elements_capped(shape: list[int], cap: int) -> int:
    """Product of ``shape``, or ``cap + 1`` once it exceeds ``cap`` (a 2**60 claim is cheap)."""
    if 0 in shape:
        return 0
    n = 1
    for d in shape:
        n *= d
        if n > cap:
            return cap + 1
    return n


def check_safetensors(path: Path) -> tuple[ModelIssue, ...]:
    """Check a safetensors file: header bounds, JSON schema, dtypes, shapes vs. byte sizes,
    and that the tensors tile the data area exactly (no overlap, no gap, no trailing bytes)."""
    out = Issues()
    with ByteSource(path) as src:
        _safetensors(src, out)
    return out.result()


def _safetensors(src: ByteSource, out: Issues) -> None:
    size = src.size
    if size < 8:
        out.add(BAD_HEADER, Severity.HIGH, "shorter than the 8-byte header length", offset=0)
        return
    (n,) = struct.unpack("<Q", src.read(0, 8))
    if n > SAFETENSORS_MAX_HEADER:
        out.add(
            BAD_HEADER, Severity.HIGH,
            f"header length {n} exceeds the {SAFETENSORS_MAX_HEADER}-byte limit", offset=0,
        )  # fmt: skip
        return
    if n > size - 8:
        out.add(
            BAD_HEADER, Severity.HIGH,
            f"header length {n} runs past the end of the {size}-byte file", offset=0,
        )  # fmt: skip
        return
    raw = src.read(8, n)
    if len(raw) < n:
        out.add(BAD_HEADER, Severity.HIGH, "the file is shorter than its header", offset=8)
        return
    if raw[:1] != b"{":
        out.add(BAD_HEADER, Severity.HIGH, "the header does not start with '{'", offset=8)
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        out.add(BAD_HEADER, Severity.HIGH, "the header is not valid UTF-8", offset=8 + e.start)
        return
    if json_too_complex(raw):
        out.add(
            UNVERIFIABLE, Severity.MEDIUM,
            f"the header has more than {MAX_JSON_TOKENS} JSON values: not checked", offset=8,
        )  # fmt: skip
        return
    try:
        header = json.loads(
            text, object_pairs_hook=_unique_pairs, parse_constant=_json_no_constants
        )
    except json.JSONDecodeError as e:
        at = 8 + len(text[: e.pos].encode("utf-8"))
        out.add(BAD_HEADER, Severity.HIGH, f"the header is not valid JSON: {e.msg}", offset=at)
        return
    except _DuplicateKey as e:
        out.add(
            BAD_HEADER, Severity.HIGH, f"the header repeats key {short(e.key)!r}",
            offset=8, tensor=short(e.key),
        )  # fmt: skip
        return
    except (ValueError, RecursionError) as e:
        out.add(BAD_HEADER, Severity.HIGH, f"the header is not valid JSON: {e}", offset=8)
        return
    if not isinstance(header, dict):
        out.add(BAD_HEADER, Severity.HIGH, "the header is not a JSON object", offset=8)
        return

    data_start = 8 + n
    data_len = size - data_start
    small_header = n <= 1 << 20

    def key_offset(name: str) -> int:
        # Point at the tensor's key in the header when it is cheap to find.
        if small_header:
            for form in (json.dumps(name, ensure_ascii=False), json.dumps(name)):
                i = raw.find(form.encode("utf-8"))
                if i >= 0:
                    return 8 + i
        return 8

    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                out.add(
                    BAD_HEADER, Severity.HIGH, "__metadata__ must map strings to strings",
                    offset=key_offset(name),
                )  # fmt: skip
            continue
        problem, span = _safetensors_entry(info, data_len)
        if problem:
            out.add(
                BAD_HEADER, Severity.HIGH, f"tensor {short(name)!r}: {problem}",
                offset=key_offset(name), tensor=short(name),
            )  # fmt: skip
        elif span is not None:
            spans.append((span[0], span[1], name))

    expected = 0
    for begin, end, name in sorted(spans):
        if begin > expected:
            out.add(
                BAD_HEADER, Severity.HIGH,
                f"{begin - expected} unreferenced byte(s) before tensor {short(name)!r}",
                offset=data_start + expected, tensor=short(name),
            )  # fmt: skip
        elif begin < expected:
            out.add(
                BAD_HEADER, Severity.HIGH,
                f"tensor {short(name)!r} overlaps the tensor before it",
                offset=data_start + begin, tensor=short(name),
            )  # fmt: skip
        expected = max(expected, end)
    if expected < data_len:
        out.add(
            BAD_HEADER, Severity.HIGH,
            f"{data_len - expected} trailing byte(s) after the last tensor",
            offset=data_start + expected,
        )  # fmt: skip


def _safetensors_entry(info: object, data_len: int) -> tuple[str | None, tuple[int, int] | None]:
    """(problem, (begin, end)) for one tensor entry."""
    if not isinstance(info, dict):
        return "the entry is not an object", None
    if set(info) != {"dtype", "shape", "data_offsets"}:
        keys = ", ".join(sorted(map(str, info)))
        return f"expected exactly dtype, shape, data_offsets (got {short(keys)})", None
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    bits = SAFETENSORS_DTYPE_BITS.get(dtype) if isinstance(dtype, str) else None
    if bits is None:
        return f"unknown dtype {short(repr(dtype))}", None
    # type() is exact: bool is an int subclass but not a valid dimension.
    if not (isinstance(shape, list) and set(map(type, shape)) <= {int} and min(shape or [0]) >= 0):
        return "shape must be a list of non-negative integers", None
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_uint, offsets))):
        return "data_offsets must be [begin, end] non-negative integers", None
    begin, end = offsets
    if begin > end:
        return f"data_offsets begin {begin} > end {end}", None
    if end > data_len:
        return f"data_offsets end {end} is past the {data_len}-byte data area", None
    span = end - begin
    elements = _elements_capped(shape, (span * 8) // bits + 1)
    total_bits = elements * bits
    if total_bits % 8:
        return f"{elements} {dtype} elements are not a whole number of bytes", None
    if total_bits // 8 != span:
        want = f"more than {span}" if elements > (span * 8) // bits + 1 else str(total_bits // 8)
        return f"shape × dtype needs {want} byte(s), data_offsets span {span}", None
    return None, (begin, end)
