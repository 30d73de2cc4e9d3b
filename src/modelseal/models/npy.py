"""numpy ``.npy`` headers, parsed without numpy.

The header dict is read with :func:`ast.literal_eval` on a bounded number of bytes; nothing is
evaluated or imported, and no array data is read.
"""

from __future__ import annotations

import ast
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from modelseal.models.issues import short

#: numpy itself refuses headers over 10 000 bytes by default; older numpy had no bound.
NPY_MAX_HEADER: Final = 64 << 10
#: Every ``.npy`` file starts with these bytes.
NPY_MAGIC: Final = b"\x93NUMPY"


_SAFE_DESCR: Final = re.compile(
    r"[<>|=]?(?:[?bBhHiIlLqQpPefdgFDGuc]\d*|[SUVa]\d*|[mM]8(?:\[\d*[A-Za-z]+\])?)"
)
_OBJECT_DESCR: Final = re.compile(r"[<>|=]?O\d*")

ObjectAnswer = Literal["yes", "no", "unknown"]


@dataclass(frozen=True)
class NpyHeader:
    """A parsed ``.npy`` header (``error`` set when it is malformed).

    ``object`` is ``"yes"`` when the dtype holds Python objects (the data is then a pickle
    starting at ``data_offset``), ``"unknown"`` when the header cannot be understood.
    """

    version: str
    data_offset: int | None
    descr: str = ""
    shape: str = ""
    fortran_order: str = ""
    object: ObjectAnswer = "unknown"
    error: str | None = None

    def detail(self) -> dict[str, str]:
        """The header as ``Detected.detail`` strings."""
        d = {"version": self.version, "object": self.object}
        if self.descr:
            d["dtype"] = self.descr
        if self.shape:
            d["shape"] = self.shape
        if self.fortran_order:
            d["fortran_order"] = self.fortran_order
        if self.error:
            d["error"] = self.error
        return d


def _descr_object(descr: object, depth: int = 0) -> ObjectAnswer:
    """Whether a numpy ``descr`` (as numpy's header writer emits it) contains objects."""
    if depth > 32:
        return "unknown"
    if isinstance(descr, str):
        if _OBJECT_DESCR.fullmatch(descr):
            return "yes"
        # Anything but the canonical codes numpy writes is hand-made; do not guess.
        return "no" if _SAFE_DESCR.fullmatch(descr) else "unknown"
    if isinstance(descr, tuple) and len(descr) == 2:  # (base, subarray shape)
        return _descr_object(descr[0], depth + 1)
    if isinstance(descr, list) and descr:
        answers: set[ObjectAnswer] = set()
        for item in descr:
            if not (isinstance(item, tuple) and len(item) in (2, 3)):
                return "unknown"
            answers.add(_descr_object(item[1], depth + 1))
        for answer in ("yes", "unknown"):
            if answer in answers:
                return answer
        return "no"
    return "unknown"


def parse_npy_header(read: Callable[[int], bytes]) -> NpyHeader | None:
    """Parse a ``.npy`` header through ``read(n)`` (sequential, from the magic on).

    Returns ``None`` when the bytes are not ``.npy`` at all. The header dict is parsed with
    :func:`ast.literal_eval` on at most :data:`NPY_MAX_HEADER` bytes; nothing is evaluated.
    """
    prefix = read(8)
    if len(prefix) < 8 or prefix[:6] != NPY_MAGIC:
        return None
    major, minor = prefix[6], prefix[7]
    version = f"{major}.{minor}"
    if major == 1:
        raw, start, fmt = read(2), 10, "<H"
    elif major in (2, 3):
        raw, start, fmt = read(4), 12, "<I"
    else:
        return NpyHeader(version, None, error=f"unsupported .npy version {version}")
    if len(raw) < struct.calcsize(fmt):
        return NpyHeader(version, None, error="truncated .npy header")
    (hlen,) = struct.unpack(fmt, raw)
    data_offset = start + hlen
    if hlen > NPY_MAX_HEADER:
        return NpyHeader(version, data_offset, error=f"{hlen}-byte .npy header is too large")
    text = read(hlen)
    if len(text) < hlen:
        return NpyHeader(version, None, error="truncated .npy header")
    try:
        header = ast.literal_eval(text.decode("utf-8" if major == 3 else "latin-1"))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, UnicodeError):
        return NpyHeader(version, data_offset, error="unparsable .npy header")
    if not (isinstance(header, dict) and set(header) == {"descr", "fortran_order", "shape"}):
        return NpyHeader(version, data_offset, error="the .npy header is not the expected dict")
    descr, shape, fortran = header["descr"], header["shape"], header["fortran_order"]
    shape_ok = isinstance(shape, tuple) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    )
    return NpyHeader(
        version,
        data_offset,
        descr=short(repr(descr) if not isinstance(descr, str) else descr),
        shape=short(repr(shape)),
        fortran_order=short(repr(fortran)),
        object=_descr_object(descr),
        error=None if shape_ok and isinstance(fortran, bool) else "malformed shape/fortran_order",
    )
