"""ONNX: every external-data ``location`` of a model, walked through the protobuf without
loading it, judged against the model directory.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from modelseal.findings import Severity
from modelseal.models.bytesource import ByteSource
from modelseal.models.issues import ModelIssue, short
from modelseal.models.protobuf import (
    WIRE_LEN,
    FieldTuple,
    ProtoError,
    iter_proto_buffer,
    iter_proto_fields,
)
from modelseal.models.structure._common import (
    BAD_HEADER,
    PATH_ESCAPE,
    UNVERIFIABLE,
    WINDOWS_DRIVE,
    Issues,
    Stop,
)

#: Where TensorProtos can hide, per message: field number → message kind (onnx.proto).
_ONNX_CHILDREN: Final[Mapping[str, Mapping[int, str]]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
#: Nested graphs (If/Loop/Scan bodies) walked; protobuf itself stops at 100 levels.
MAX_ONNX_GRAPH_DEPTH: Final = 64
MAX_ONNX_FIELDS: Final = 5_000_000
_MAX_LOCATION: Final = 4096


def check_onnx(path: Path, model_dir: Path) -> tuple[ModelIssue, ...]:
    """Check every external-data ``location`` of an ONNX model (initializers, sparse
    initializers, node attribute tensors, nested If/Loop graphs, training graphs, functions):
    absolute, or escaping ``model_dir`` lexically (``..``) or through a symlink, is a
    ``path-escape``. Locations resolve against the model file's directory."""
    out = Issues()
    with ByteSource(path) as src:
        try:
            _OnnxWalk(src, path, model_dir, out).run()
        except ProtoError as e:
            out.add(BAD_HEADER, Severity.HIGH, f"malformed protobuf: {e}", offset=e.offset)
        except Stop as stop:
            out.add(stop.kind, stop.severity, stop.message, offset=stop.offset)
    return tuple(sorted(out.result(), key=lambda i: i.offset or 0))


#: Messages up to this size are read whole and parsed in memory (nodes, attributes, tensor
#: headers); larger ones (the graph, tensors with inline data) are walked through the file.
_ONNX_INLINE: Final = 1 << 20


class _OnnxWalk:
    """An iterative walk over the messages that can hold TensorProtos, in file order."""

    def __init__(self, src: ByteSource, path: Path, model_dir: Path, out: Issues) -> None:
        self.src, self.path, self.model_dir, self.out = src, path, model_dir, out
        self.budget = MAX_ONNX_FIELDS
        # Exports point thousands of tensors at one or two files: judge each location once.
        self.verdicts: dict[str, str | None] = {}

    def fields(
        self, start: int, end: int, buf: bytes | None, base: int
    ) -> tuple[Iterable[FieldTuple], bytes | None, int]:
        """The fields of ``[start, end)``, and the in-memory buffer holding it, if any."""
        if buf is None and end - start <= _ONNX_INLINE:
            buf, base = self.src.read(start, end - start), start
            if len(buf) < end - start:
                raise ProtoError(start, "the file ends inside a message")
        if buf is not None:
            return iter_proto_buffer(buf, base, start - base, end - base), buf, base
        walk = ((f.number, f.wire_type, f.offset, f.value, f.length)
                for f in iter_proto_fields(self.src, start, end))  # fmt: skip
        return walk, None, 0

    def spend(self, offset: int) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise Stop(
                UNVERIFIABLE, Severity.MEDIUM,
                "too many protobuf fields to walk within modelseal's bounds", offset,
            )  # fmt: skip

    def run(self) -> None:
        # (kind, start, end, graph depth, buffer holding the message or None, buffer's base)
        stack: list[tuple[str, int, int, int, bytes | None, int]] = [
            ("model", 0, self.src.size, 0, None, 0)
        ]
        while stack:
            kind, start, end, depth, buf, base = stack.pop()
            fields, buf, base = self.fields(start, end, buf, base)
            if kind == "tensor":
                self.tensor(fields, buf, base)
                continue
            children = _ONNX_CHILDREN[kind]
            found: list[tuple[str, int, int, int, bytes | None, int]] = []
            for number, wire, offset, value, length in fields:
                self.spend(offset)
                child = children.get(number)
                if child is None:
                    continue
                if wire != WIRE_LEN:
                    raise ProtoError(offset, f"{kind} field {number} is not a message")
                child_depth = depth + (child == "graph")
                if child_depth > MAX_ONNX_GRAPH_DEPTH:
                    raise Stop(
                        UNVERIFIABLE, Severity.MEDIUM,
                        f"graphs nested more than {MAX_ONNX_GRAPH_DEPTH} deep", offset,
                    )  # fmt: skip
                found.append((child, value, value + length, child_depth, buf, base))
            stack.extend(reversed(found))  # keep file order: reads stay sequential

    def string(self, wire: int, offset: int, at: int, length: int, buf: bytes | None,
               base: int, limit: int) -> bytes | None:  # fmt: skip
        if wire != WIRE_LEN:
            raise ProtoError(offset, "a string field is not length-delimited")
        if length > limit:
            return None
        if buf is not None:
            return buf[at - base : at - base + length]
        return self.src.read(at, length)

    def tensor(self, fields: Iterable[FieldTuple], buf: bytes | None, base: int) -> None:
        name = b""
        locations: list[tuple[bytes | None, int]] = []
        for number, wire, offset, value, length in fields:
            self.spend(offset)
            if number == 8:  # name
                name = self.string(wire, offset, value, length, buf, base, 256) or b"?"
            elif number == 13:  # external_data: StringStringEntryProto {key = 1, value = 2}
                if wire != WIRE_LEN:
                    raise ProtoError(offset, "external_data is not a message")
                entry, ebuf, ebase = self.fields(value, value + length, buf, base)
                key: bytes | None = b""
                loc: bytes | None = b""
                loc_at = offset
                for enumber, ewire, eoffset, evalue, elength in entry:
                    if enumber == 1:
                        key = self.string(ewire, eoffset, evalue, elength, ebuf, ebase, 256)
                    elif enumber == 2:
                        loc = self.string(
                            ewire, eoffset, evalue, elength, ebuf, ebase, _MAX_LOCATION
                        )
                        loc_at = evalue
                if key == b"location":
                    locations.append((loc, loc_at))
        tensor = short(name.decode("utf-8", "replace"))
        for raw, at in locations:
            if raw is None:
                self.out.add(
                    PATH_ESCAPE, Severity.CRITICAL,
                    f"tensor {tensor!r}: external data location longer than {_MAX_LOCATION} bytes",
                    offset=at, tensor=tensor,
                )  # fmt: skip
                continue
            location = raw.decode("utf-8", "surrogateescape")
            if location not in self.verdicts:
                self.verdicts[location] = _location_problem(location, self.path, self.model_dir)
            problem = self.verdicts[location]
            if problem:
                self.out.add(
                    PATH_ESCAPE, Severity.CRITICAL,
                    f"tensor {tensor!r}: external data location {short(repr(location))} {problem}",
                    offset=at, tensor=tensor, location=short(location),
                )  # fmt: skip


def _location_problem(location: str, path: Path, model_dir: Path) -> str | None:
    """Why an external-data location is unsafe, or None."""
    if "\0" in location:
        # C++ loaders stop at the NUL: judge the part they would use, and flag the trick.
        head = location.split("\0", 1)[0]
        return _location_problem(head, path, model_dir) or "contains a NUL byte"
    posix = location.replace("\\", "/")  # a separator on Windows, where the model may be served
    if posix.startswith("/") or WINDOWS_DRIVE.match(posix):
        return "is absolute"
    base = os.path.abspath(model_dir)
    here = os.path.relpath(os.path.abspath(path.parent), base).replace(os.sep, "/")
    joined = posixpath.normpath(posixpath.join(here, posix))
    if joined == ".." or joined.startswith("../"):
        return "escapes the model directory"
    real_base = os.path.realpath(base)
    real = os.path.realpath(os.path.join(path.parent, posix))
    if os.path.commonpath([real_base, real]) != real_base:
        return "resolves through a symlink outside the model directory"
    return None
