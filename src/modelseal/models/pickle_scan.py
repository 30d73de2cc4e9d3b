"""Static, allowlist-based scanner for pickle streams.

A pickle is a program for a small stack machine whose instructions can import any global and
call it. Blocklist scanners ask "does it name something known to be bad?" and are bypassed by
every new gadget; this scanner asks "does it name only things known to be harmless?" and
reports everything else. It never loads, executes or imports anything from the stream.

How it works: an opcode parser of its own (``pickletools.genops`` trusts length fields and would
allocate whatever a forged ``BINBYTES8`` asks for) walks the buffer with a bounds check before
every read, and a symbolic stack machine mirrors CPython's unpickler closely enough to know
every global the real loader would import:

- string constants are tracked through the stack and the memo, so ``STACK_GLOBAL`` is resolved
  even through memo indirection; a ``STACK_GLOBAL`` fed anything but known strings is reported
  as a *dynamic* global (the name is computed at load time);
- references to globals are followed so that a call through something that is not a named
  global (``indirect-call``) and an attempt to set state on a class or function
  (``global-mutation``) are reported too — neither occurs in pickles written by ``pickle``
  itself;
- small data values (None, bools, ints, short tuples and dicts, bytes constants, numpy dtypes)
  are tracked too, for two loaders that read more than the pickle: joblib, whose
  ``NumpyArrayWrapper`` BUILD is followed by the array's raw bytes (skipped exactly, by the
  recorded dtype and shape, or the scan fails closed; only in joblib streams, and such a stream
  is read a second time as pickle.load reads it), and ``torch.storage._load_from_bytes``,
  whose literal bytes argument is handed to a ``nested`` scan like a top-level file (any
  other use of it is reported at once); numpy's random-generator pickle helpers, which call
  their arguments, are checked the same way; everything else is opaque;
- MARK frames, memo keys (including ``MEMOIZE``'s implicit ones) and protocol-dependent name
  mapping (Python 2 names such as ``__builtin__`` at protocol < 3) follow the C unpickler.

Anything the scanner cannot follow to a STOP is reported (``unparsable``; ``trailing-data``
after a complete pickle; ``scan-limit`` when a resource cap is hit): it fails closed. The buffer
(``bytes``, ``memoryview`` or ``mmap``) is never copied; only opcode arguments are sliced. An
``mmap`` is released behind the scan as it goes, so a multi-gigabyte stream never becomes
resident all at once, and a :class:`~modelseal.models.limits.Budget`'s deadline is checked every
MiB (:class:`~modelseal.models.limits.ScanLimitExceeded` when it is up).

Why this is one module, over the ~600-line rule of thumb: it is one parser and the one state
machine it drives. The symbolic values, the memo, the opcode table and its dispatch kinds, the
name resolution and the scanner's loop are read together on every opcode, and have to be read
together to check that they mirror the C unpickler (every resource cap is enforced inside that
loop). Split, these private parts would become cross-module API with no second user, and a
reviewer would follow one opcode through several files. What has other users already lives
elsewhere: the allowlist (:mod:`~modelseal.models.allowlist`), issues
(:mod:`~modelseal.models.issues`) and limits (:mod:`~modelseal.models.limits`).
"""

from __future__ import annotations

import _compat_pickle
import codecs
import mmap
import pickletools
import re
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeAlias

from modelseal.findings import Severity
from modelseal.models.allowlist import Allowlist, constructor_checked
from modelseal.models.issues import ModelIssue
from modelseal.models.limits import Budget

__all__ = ["Allowlist", "GlobalRef", "PickleScan", "scan_pickle"]

#: Highest pickle protocol the unpickler accepts (``PROTO`` above it fails to load).
HIGHEST_PROTOCOL = 5

# Resource caps. Each is far above anything a pickle written by ``pickle.dump`` needs (the
# pickler batches containers in runs of 1000 and recursion limits nesting), and each bounds the
# memory a hostile stream can make the scanner use. Hitting one is a ``scan-limit`` issue.
MAX_STACK = 1 << 23  # symbolic stack slots (8 bytes each)
MAX_MARKS = 1 << 20  # open MARKs
MAX_KNOWN_VALUES = 1 << 20  # memo entries holding a string or global reference
MAX_EXTRA_VALUES = 1 << 18  # memo entries holding other known values (tuples, dtypes …)
MAX_BIG_MEMO_KEYS = 1 << 16  # memo keys beyond the bitmap (pickle numbers keys 0, 1, 2, …)
MAX_PICKLES = 1 << 20  # pickles in one stream
MAX_ISSUES = 1000  # distinct issues recorded per scan
MAX_GLOBALS = 10_000  # distinct globals recorded per scan

_BITMAP_KEYS = 1 << 25  # memo keys tracked in a presence bitmap (at most 4 MiB)
_KNOWN_STR_MAX = 1024  # longer strings are opaque: no importable name is that long
_UTF8_CHUNK = 1 << 20  # long strings are validated in chunks, never decoded whole
_CHECK_EVERY = 1 << 20  # bytes between stack / MARK size checks


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class GlobalRef:
    """A global the stream imports, as the unpickler resolves it, and where."""

    module: str
    name: str
    offset: int  # absolute offset of the opcode in the scanned buffer
    opcode: str  # GLOBAL, STACK_GLOBAL or INST

    @property
    def qualified(self) -> str:
        """``module.name``."""
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class PickleScan:
    """What scanning a pickle stream found.

    ``globals`` lists each distinct (module, name, opcode) once, at its first offset, allowed
    or not. ``pickles`` counts complete pickles (ended by STOP); ``end`` is the absolute offset
    just past the last of them (``start`` when there is none) — for a legacy torch file that is
    where the raw storage bytes begin.
    """

    globals: tuple[GlobalRef, ...]
    issues: tuple[ModelIssue, ...]
    pickles: int
    end: int


# --------------------------------------------------------------------------------------------
# Symbolic values


class _Opaque:
    """Any value the scanner does not follow (numbers, containers, call results …)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<opaque>"


class _Ref:
    """A reference to a global (possibly one already reported as unsafe or dynamic);
    ``special`` says which of the few globals the scanner follows further it is."""

    __slots__ = ("label", "special")

    def __init__(self, label: str, special: int = 0) -> None:
        self.label = label
        self.special = special


# Globals whose calls the scanner follows (_Ref.special).
(
    _S_WRAPPER,
    _S_DTYPE,
    _S_RECONSTRUCTOR,
    _S_LOAD_FROM_BYTES,
    _S_BITGEN_CTOR,
    _S_GEN_CTOR,
    _S_DICT,
) = range(1, 8)
_SPECIAL: dict[str, int] = {
    # joblib's array placeholder (and its copy vendored in scikit-learn < 0.23): joblib.load
    # reads the array's raw bytes from the stream right after the wrapper's BUILD.
    "joblib.numpy_pickle.NumpyArrayWrapper": _S_WRAPPER,
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper": _S_WRAPPER,
    "numpy.dtype": _S_DTYPE,
    "copyreg._reconstructor": _S_RECONSTRUCTOR,
    # torch.load of nested bytes: only as safe as those bytes, which are scanned in turn.
    "torch.storage._load_from_bytes": _S_LOAD_FROM_BYTES,
    # numpy's random-generator pickle helpers call what they are given: __bit_generator_ctor
    # calls a class argument, the two others call their second argument on their first.
    "numpy.random._pickle.__bit_generator_ctor": _S_BITGEN_CTOR,
    "numpy.random._pickle.__generator_ctor": _S_GEN_CTOR,
    "numpy.random._pickle.__randomstate_ctor": _S_GEN_CTOR,
    # dicts made by a call, then filled by SETITEM(S): tracked so that a BUILD state made this
    # way has its keys checked like a literal dict's
    "builtins.dict": _S_DICT,
    "collections.OrderedDict": _S_DICT,
    "collections.defaultdict": _S_DICT,
}
_MEMMAP_HINT = (
    " (a numpy memmap: it is never allowed, since a pickled memmap can reopen a file by "
    "name; save the array with numpy.asarray(...) so it pickles as a plain ndarray)"
)
#: Why some refused globals are refused, appended to their issue's title.
_HINTS: dict[str, str] = {
    name: _MEMMAP_HINT
    for name in ("numpy.memmap", "numpy._core.memmap.memmap", "numpy.core.memmap.memmap")
}
#: The bit-generator classes numpy pickles name (what __bit_generator_ctor may call).
_BIT_GENERATORS = frozenset(
    f"numpy.random.{path}"
    for path in (
        "_mt19937.MT19937", "_pcg64.PCG64", "_pcg64.PCG64DXSM", "_philox.Philox",
        "_sfc64.SFC64", "MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64",
    )
)  # fmt: skip
#: joblib writes at most this many alignment padding bytes (NUMPY_ARRAY_ALIGNMENT_BYTES), and
#: the padding-length byte is then 1..16: never a pickle opcode (the lowest is 0x28), so
#: pickle.load (rather than joblib.load) of the file stops there without running anything.
_JOBLIB_MAX_PADDING = 16


class _Blob:
    """A bytes constant (BINBYTES family): where its bytes are in the buffer."""

    __slots__ = ("size", "start")

    def __init__(self, start: int, size: int) -> None:
        self.start = start
        self.size = size


class _Dict:
    """A dict built from known keys (a joblib wrapper's state); ``items`` is None once it holds
    an unknown key or more than :data:`_SMALL` entries (then only its identity matters)."""

    __slots__ = ("items", "risky")

    def __init__(self) -> None:
        self.items: dict[object, _Value] | None = {}
        self.risky: str | None = None  # a dunder key (or "?": a key that is not a literal)

    def update(self, pairs: list[_Value]) -> None:
        """Add key/value pairs (alternating), as SETITEM(S) do."""
        if self.risky is None:
            # As an instance's BUILD state, a __dunder__ key would plant a method (e.g.
            # __sklearn_clone__, __reduce__) that library code later calls: remembered however
            # large the dict grows.
            for i in range(0, len(pairs), 2):
                key = pairs[i]
                kind = type(key)
                if kind is str:
                    if key[:2] == "__" and key[-2:] == "__":  # type: ignore[index]
                        self.risky = key  # type: ignore[assignment]
                        break
                elif kind is _Opaque:
                    self.risky = "?"
                    break
        items = self.items
        if items is None:
            return
        if len(items) + len(pairs) // 2 > _SMALL:
            self.items = None
            return
        for i in range(0, len(pairs), 2):
            key = pairs[i]
            if type(key) is not str:
                self.items = None
                return
            items[key] = pairs[i + 1]


class _DType:
    """A ``numpy.dtype(type_string, …)`` call result and the state its BUILD gave it."""

    __slots__ = ("state", "type_string")

    def __init__(self, type_string: str) -> None:
        self.type_string = type_string
        self.state: _Value | None = None


class _Wrapper:
    """A joblib ``NumpyArrayWrapper`` instance: its attributes, as BUILDs set them (None once a
    BUILD gave it a state that is not a dict of known keys)."""

    __slots__ = ("attrs",)

    def __init__(self, attrs: dict[object, _Value] | None = None, *, known: bool = True) -> None:
        self.attrs: dict[object, _Value] | None = {} if known and attrs is None else attrs


class _Missing:
    """A memo key that was never stored."""

    __slots__ = ()


_OPAQUE = _Opaque()
_MISSING = _Missing()
#: Memo values that are never forgotten (see _Memo.put).
_ESSENTIAL: frozenset[type] = frozenset({str, _Ref, _Wrapper})
#: Known tuples and dicts hold at most this many items (a shape, a dtype or wrapper state).
_SMALL = 64
_Value: TypeAlias = (
    "_Opaque | str | _Ref | int | tuple[_Value, ...] | _Blob | _Dict | _DType | _Wrapper"
    " | _BitGenerator | None"
)


class _Memo:
    """The unpickler's memo, compactly: a presence bitmap for the small keys pickle uses, and
    only the string / global values (everything else is opaque), so a stream of ten million
    MEMOIZE opcodes costs megabytes, not gigabytes."""

    __slots__ = ("big", "bits", "count", "essential", "extra", "values")

    def __init__(self) -> None:
        self.bits = bytearray()
        self.big: set[int] = set()
        self.values: dict[int, _Value] = {}
        self.count = 0  # distinct keys: MEMOIZE stores at this key
        self.essential = 0  # strings, globals and joblib wrappers held
        self.extra = 0  # other known values stored so far (never decremented: a cap, not a size)

    def put(self, key: int, value: _Value) -> str | None:
        """Store; returns a scan-limit reason instead when a cap is hit."""
        if key < _BITMAP_KEYS:
            byte = key >> 3
            bits = self.bits
            if byte >= len(bits):
                grow = max(byte + 1, min(2 * len(bits), _BITMAP_KEYS >> 3)) - len(bits)
                bits.extend(bytes(grow))
            mask = 1 << (key & 7)
            if not bits[byte] & mask:
                bits[byte] |= mask
                self.count += 1
        elif key not in self.big:
            if len(self.big) >= MAX_BIG_MEMO_KEYS:
                return f"more than {MAX_BIG_MEMO_KEYS} large memo keys"
            self.big.add(key)
            self.count += 1
        values = self.values
        old = values.get(key, _OPAQUE) if values else _OPAQUE
        if type(old) in _ESSENTIAL:
            self.essential -= 1
        kind = type(value)
        if kind is _Opaque:
            if values:
                values.pop(key, None)
        elif kind in _ESSENTIAL:
            # strings and globals decide what is imported, and a joblib wrapper where raw
            # bytes follow: forgetting one would change the scan, so a full memo fails
            if self.essential >= MAX_KNOWN_VALUES:
                return f"more than {MAX_KNOWN_VALUES} memoized strings and globals"
            self.essential += 1
            values[key] = value
        elif self.extra < MAX_EXTRA_VALUES:
            self.extra += 1
            values[key] = value
        elif values:
            # other known values only help to size joblib arrays: beyond the cap they are
            # forgotten (a wrapper that needs one then fails closed)
            values.pop(key, None)
        return None

    def get(self, key: int) -> _Value | _Missing:
        """The value at ``key``; :data:`_MISSING` when the key was never stored."""
        if key < _BITMAP_KEYS:
            byte = key >> 3
            if byte >= len(self.bits) or not self.bits[byte] & (1 << (key & 7)):
                return _MISSING
        elif key not in self.big:
            return _MISSING
        return self.values.get(key, _OPAQUE)


# --------------------------------------------------------------------------------------------
# Opcodes


_CODES: dict[str, int] = {op.name: ord(op.code) for op in pickletools.opcodes}
_NAMES: dict[int, str] = {code: name for name, code in _CODES.items()}

_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U64 = struct.Struct("<Q").unpack_from

# Kinds of opcodes the main loop dispatches on.
(
    K_PUSH,  # fixed-size argument, pushes one opaque value
    K_PUSH_VAL,  # pushes a small known value (None, a bool, a small int, (), {})
    K_PUSH_BLOB,  # length-prefixed bytes / long: pushes one opaque value
    K_PUSH_STR,  # length-prefixed string: pushes a known string
    K_PUSH_LINE,  # newline-terminated number: pushes one opaque value
    K_STRING,  # quoted, escaped protocol-0 string
    K_UNICODE,  # raw-unicode-escape protocol-0 string
    K_PERSID,  # ASCII persistent id line
    K_POP_PUSH,  # pops n, pushes one opaque value
    K_MARK_PUSH,  # pops to MARK, pushes one opaque value (tuple, list, dict, frozenset)
    K_MARK_INTO,  # pops to MARK, adds the items to the object below (appends, setitems…)
    K_INTO,  # pops n, modifies the object below (append, setitem, build)
    K_CALL,  # REDUCE, NEWOBJ, NEWOBJ_EX: pops callable and arguments, pushes the result
    K_OBJ,
    K_INST,
    K_GLOBAL,
    K_STACK_GLOBAL,
    K_EXT,
    K_PUT,
    K_MEMOIZE,
    K_GET,
    K_MARK,
    K_POP,
    K_POP_MARK,
    K_DUP,
    K_STOP,
    K_PROTO,
    K_FRAME,
) = range(28)

# name: (kind, n) — n is the fixed argument size, the length-field size, or the pop count.
_TABLE_SPEC: dict[str, tuple[int, int]] = {
    "NONE": (K_PUSH_VAL, 0),
    "NEWTRUE": (K_PUSH_VAL, 0),
    "NEWFALSE": (K_PUSH_VAL, 0),
    "EMPTY_TUPLE": (K_PUSH_VAL, 0),
    "EMPTY_LIST": (K_PUSH, 0),
    "EMPTY_DICT": (K_PUSH_VAL, 0),
    "EMPTY_SET": (K_PUSH, 0),
    "NEXT_BUFFER": (K_PUSH, 0),
    "BININT": (K_PUSH_VAL, 4),
    "BININT1": (K_PUSH_VAL, 1),
    "BININT2": (K_PUSH_VAL, 2),
    "BINFLOAT": (K_PUSH, 8),
    "LONG1": (K_PUSH_BLOB, 1),
    "LONG4": (K_PUSH_BLOB, -4),  # negative: signed length field
    "SHORT_BINBYTES": (K_PUSH_BLOB, 1),
    "BINBYTES": (K_PUSH_BLOB, 4),
    "BINBYTES8": (K_PUSH_BLOB, 8),
    "BYTEARRAY8": (K_PUSH_BLOB, 8),
    "SHORT_BINSTRING": (K_PUSH_STR, 1),
    "BINSTRING": (K_PUSH_STR, -4),
    "SHORT_BINUNICODE": (K_PUSH_STR, 1),
    "BINUNICODE": (K_PUSH_STR, 4),
    "BINUNICODE8": (K_PUSH_STR, 8),
    "INT": (K_PUSH_LINE, 0),
    "LONG": (K_PUSH_LINE, 0),
    "FLOAT": (K_PUSH_LINE, 0),
    "STRING": (K_STRING, 0),
    "UNICODE": (K_UNICODE, 0),
    "PERSID": (K_PERSID, 0),
    "BINPERSID": (K_POP_PUSH, 1),
    "READONLY_BUFFER": (K_POP_PUSH, 1),
    "TUPLE1": (K_POP_PUSH, 1),
    "TUPLE2": (K_POP_PUSH, 2),
    "TUPLE3": (K_POP_PUSH, 3),
    "TUPLE": (K_MARK_PUSH, 0),
    "LIST": (K_MARK_PUSH, 0),
    "DICT": (K_MARK_PUSH, 2),  # n: items must come in pairs
    "FROZENSET": (K_MARK_PUSH, 0),
    "APPENDS": (K_MARK_INTO, 0),
    "SETITEMS": (K_MARK_INTO, 2),
    "ADDITEMS": (K_MARK_INTO, 0),
    "APPEND": (K_INTO, 1),
    "SETITEM": (K_INTO, 2),
    "BUILD": (K_INTO, 1),
    "REDUCE": (K_CALL, 2),
    "NEWOBJ": (K_CALL, 2),
    "NEWOBJ_EX": (K_CALL, 3),
    "OBJ": (K_OBJ, 0),
    "INST": (K_INST, 0),
    "GLOBAL": (K_GLOBAL, 0),
    "STACK_GLOBAL": (K_STACK_GLOBAL, 0),
    "EXT1": (K_EXT, 1),
    "EXT2": (K_EXT, 2),
    "EXT4": (K_EXT, 4),
    "PUT": (K_PUT, 0),
    "BINPUT": (K_PUT, 1),
    "LONG_BINPUT": (K_PUT, 4),
    "MEMOIZE": (K_MEMOIZE, 0),
    "GET": (K_GET, 0),
    "BINGET": (K_GET, 1),
    "LONG_BINGET": (K_GET, 4),
    "MARK": (K_MARK, 0),
    "POP": (K_POP, 0),
    "POP_MARK": (K_POP_MARK, 0),
    "DUP": (K_DUP, 0),
    "STOP": (K_STOP, 0),
    "PROTO": (K_PROTO, 1),
    "FRAME": (K_FRAME, 8),
}

_KIND: list[int] = [-1] * 256  # -1: not an opcode
_ARG: list[int] = [0] * 256
for _name, (_kind, _n) in _TABLE_SPEC.items():
    _KIND[_CODES[_name]] = _kind
    _ARG[_CODES[_name]] = _n
del _name, _kind, _n
# An opcode missing from the table (a newer Python may add some) stays unknown: a stream using
# it is reported unparsable rather than guessed at.

# Opcodes whose string constants are bytes in Python 3 (decoded with the unpickler's
# ``encoding``, "ASCII" by default); their names can only match the ASCII allowlist if they are
# ASCII, so latin-1 (one char per byte) shows them faithfully without guessing the encoding.
_BYTESTRING_OPS = frozenset({_CODES["SHORT_BINSTRING"], _CODES["BINSTRING"], _CODES["STRING"]})
_BYTES_OPS = frozenset({_CODES["SHORT_BINBYTES"], _CODES["BINBYTES"], _CODES["BINBYTES8"]})
(_NONE, _NEWTRUE, _NEWFALSE, _EMPTY_TUPLE, _EMPTY_DICT, _BININT, _BININT1, _BININT2, _LONG1,
 _TUPLE, _DICT, _BUILD, _SETITEM, _SETITEMS, _REDUCE, _NEWOBJ, _INT, _LONG, _TUPLE1,
 _TUPLE3, _BINPERSID) = (
    _CODES[name] for name in (
        "NONE", "NEWTRUE", "NEWFALSE", "EMPTY_TUPLE", "EMPTY_DICT", "BININT", "BININT1",
        "BININT2", "LONG1", "TUPLE", "DICT", "BUILD", "SETITEM", "SETITEMS", "REDUCE", "NEWOBJ",
        "INT", "LONG", "TUPLE1", "TUPLE3", "BINPERSID",
    )
)  # fmt: skip


def _line_int(line: bytes, code: int) -> _Value:
    """An INT or LONG line as int() reads it (protocol 0's "I01"/"I00" are True/False);
    anything else (FLOAT, oversized or odd numbers) stays opaque."""
    if code == _INT:
        if line == b"01":
            return True
        if line == b"00":
            return False
    elif code == _LONG:
        line = line[:-1] if line.endswith(b"L") else line
    else:
        return _OPAQUE
    if len(line) > 20:
        return _OPAQUE
    try:
        return int(line)
    except ValueError:
        return _OPAQUE


def _carries(value: _Value, special: int, depth: int = 0) -> bool:
    """Whether ``value`` is, or is a tuple holding, a reference to the special global
    ``special`` (or, for the joblib wrapper, an instance of it); tuples nested too deeply to look
    into count as holding one."""
    kind = type(value)
    if kind is _Wrapper:
        return special == _S_WRAPPER
    if kind is _Ref:
        return value.special == special  # type: ignore[union-attr]
    if kind is tuple:
        if depth > 16:
            return True
        return any(_carries(v, special, depth + 1) for v in value)  # type: ignore[union-attr]
    return False


def _carries_wrapper(value: _Value) -> bool:
    """Whether ``value`` is, or is a tuple holding, a joblib wrapper class or instance."""
    return _carries(value, _S_WRAPPER)


def _carries_loader(value: _Value) -> bool:
    """Whether ``value`` is, or is a tuple holding, a ``torch.storage._load_from_bytes``
    reference."""
    return _carries(value, _S_LOAD_FROM_BYTES)


class _BitGenerator:
    """The result of ``numpy.random._pickle.__bit_generator_ctor``: a bit-generator instance."""

    __slots__ = ()


_BITGEN = _BitGenerator()


#: _risky_state's answer for a state that may be a dict whose keys are not known.
_UNKNOWN_STATE = "<state>"


def _risky_state(state: _Value) -> str | None:
    """The __dunder__ (or non-literal) key a BUILD state would set on an instance, if any: a
    ``__dict__`` or a ``(__dict__, slots)`` pair. Without ``__setstate__``, pickle sets the
    items of any dict (a subclass too, or one a call returned) as attributes: a state that
    may be a dict but is not one whose keys were all seen is :data:`_UNKNOWN_STATE`."""
    kind = type(state)
    if kind is _Dict:
        return state.risky  # type: ignore[union-attr]
    if kind is tuple and len(state) == 2:  # type: ignore[arg-type]
        for part in state:  # type: ignore[union-attr]
            risky = _risky_part(part)
            if risky is not None:
                return risky
        return None
    return _risky_part(state)


def _risky_part(part: _Value) -> str | None:
    """_risky_state of a ``__dict__`` or slot state on its own."""
    kind = type(part)
    if kind is _Dict:
        return part.risky  # type: ignore[union-attr]
    if kind is _Opaque or kind is _Ref:
        return _UNKNOWN_STATE  # a call's result, a container, a global: may be a dict
    return None


def _dtype_layout(dtype: _DType, depth: int = 0) -> tuple[int, bool] | str:
    """(itemsize, holds Python objects) of a pickled numpy dtype, or why it cannot be known.

    Booleans, numbers, datetimes, fixed-size bytes, strings and void, object, and structured
    and subarray dtypes made of those (e.g. the node records of scikit-learn trees); whether
    one holds objects is judged from its fields, and flags that disagree fail closed."""
    if depth > 8:
        return "dtype nested too deeply"
    m = re.fullmatch(r"([bciufmMOSUV])([0-9]{1,6})", dtype.type_string)
    if m is None:
        return f"unsupported dtype {_shorten(dtype.type_string, 40)!r}"
    kind, size = m.group(1), int(m.group(2))
    state = dtype.state
    elsize = -1
    if state is not None:
        if type(state) is not tuple or len(state) not in (8, 9) or state[0] not in (3, 4):
            return "dtype state the scanner cannot follow"
        size_v, flags = state[5], state[7]
        if not isinstance(size_v, int) or not isinstance(flags, int) or size_v is True:
            return "dtype state the scanner cannot follow"
        elsize = size_v
        if state[2] is not None or state[3] is not None or state[4] is not None:
            layout = _compound_layout(dtype.type_string, state, elsize, depth)
            # numpy trusts the pickled flags of a V (and S) dtype over its fields: joblib then
            # reads raw bytes as a nested pickle (or a nested pickle as raw bytes)
            if not isinstance(layout, str) and bool(flags & 1) != layout[1]:
                return "dtype state flags disagree with its fields about holding objects"
            return layout
        if kind != "O" and flags & 1:
            return "dtype state says it holds objects"
    if kind == "O":
        return (size, True)
    if kind in "SUV":
        expect = size * 4 if kind == "U" else size
        if state is not None and elsize != expect:
            return f"dtype {dtype.type_string!r} with item size {elsize}"
        return (expect, False) if expect > 0 else "zero-size flexible dtype"
    fixed = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8, 12, 16),
             "c": (8, 16, 24, 32), "m": (8,), "M": (8,)}  # fmt: skip
    if size not in fixed[kind]:
        return f"unsupported dtype {dtype.type_string!r}"
    return (size, False)


def _compound_layout(
    type_string: str, state: tuple[_Value, ...], elsize: int, depth: int
) -> tuple[int, bool] | str:
    """A structured (names, fields) or subarray (base, shape) void dtype."""
    if type_string != f"V{elsize}" or elsize <= 0:
        return f"compound dtype {_shorten(type_string, 40)!r} of item size {elsize}"
    subdescr, names, fields = state[2], state[3], state[4]
    bases: list[_Value] = []
    if subdescr is not None:
        if type(subdescr) is not tuple or len(subdescr) != 2:
            return "subarray dtype the scanner cannot follow"
        bases.append(subdescr[0])
    if names is not None or fields is not None:
        if type(names) is not tuple or type(fields) is not _Dict or fields.items is None:
            return "structured dtype the scanner cannot follow"
        if set(fields.items) != set(names):
            return "structured dtype whose names and fields differ"
        for field in fields.items.values():
            if type(field) is not tuple or len(field) not in (2, 3) or type(field[1]) is not int:
                return "structured dtype field the scanner cannot follow"
            bases.append(field[0])
    objects = False
    for base in bases:
        if type(base) is not _DType:
            return "compound dtype whose parts the scanner cannot follow"
        layout = _dtype_layout(base, depth + 1)
        if isinstance(layout, str):
            return layout
        objects = objects or layout[1]
    return (elsize, objects)


#: Scans a nested payload (``buf[start:start + size]``, at nesting ``depth``) like a top-level
#: file; given by the caller that knows about files and formats (modelseal.models.scan).
NestedScan: TypeAlias = Callable[[int, int, int], tuple[ModelIssue, ...]]


# --------------------------------------------------------------------------------------------
# Name resolution (pickle.Unpickler.find_class)


def _py2_mapped(module: str, name: str) -> tuple[str, str]:
    """The Python 3 name for a Python 2 one, as ``fix_imports`` maps it (identity otherwise)."""
    mapped = _compat_pickle.NAME_MAPPING.get((module, name))
    if mapped is not None:
        return mapped
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _importable_py3(module: str) -> bool:
    """False for Python 2-only module names (``__builtin__``, ``copy_reg`` …), which no Python 3
    unpickler can import: a raw Python 2 name is only dangerous if it is also a real module."""
    top = module.partition(".")[0]
    return top in sys.stdlib_module_names or module not in _compat_pickle.IMPORT_MAPPING


def _shorten(text: str, limit: int = 200) -> str:
    """A name as shown in an issue: a hostile stream can make GLOBAL lines megabytes long."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


class _Fail(Exception):
    """Parsing stops here."""

    def __init__(self, offset: int, reason: str, *, limit: bool = False) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason
        self.limit = limit


# --------------------------------------------------------------------------------------------
# The scanner


class _Scanner:
    """One scan of one buffer region; collects issues and globals."""

    def __init__(
        self,
        buf: bytes | memoryview | mmap.mmap,
        start: int,
        end: int,
        allow: Allowlist,
        member: str | None,
        budget: Budget | None = None,
        nested: NestedScan | None = None,
        *,
        joblib: bool = False,
    ) -> None:
        self.buf = buf
        self.nested = nested
        # joblib.load's reading: raw array bytes follow each NumpyArrayWrapper BUILD (False:
        # pickle.load's, where a wrapper is an ordinary object)
        self.joblib = joblib
        self.arrays = 0  # joblib arrays skipped
        self.pending_loads = 0  # _load_from_bytes references not yet called on literal bytes
        self.wrappers = False  # a joblib wrapper class was imported: see guard_wrappers
        self.loaders = False  # a followed _load_from_bytes was imported: see guard
        self.strict_wrappers = False  # a wrapper BUILD outside joblib mode fails closed
        self.plain = False  # the plain (pickle.load) read of a joblib stream: see _plain_pass
        self.budget = budget
        self._released = 0
        self.start = start
        self.end = end
        self.allow = allow
        self.member = member
        self.issues: list[ModelIssue] = []
        self._issue_keys: set[tuple[object, ...]] = set()
        self._issues_capped = False
        self.globals: list[GlobalRef] = []
        self._global_keys: set[tuple[str, str, str]] = set()
        self._refs: dict[str, _Ref] = {}  # one stack value per global name
        self.find_nl: Callable[[int], int] = self._nl_finder(buf, end)

    # -- reporting ---------------------------------------------------------------------------

    def issue(
        self,
        kind: str,
        severity: Severity,
        title: str,
        offset: int,
        detail: dict[str, str],
        *,
        dedupe: bool = True,
    ) -> None:
        """Record an issue once per (kind, detail), at its first offset."""
        key: tuple[object, ...] = (kind, tuple(sorted(detail.items())))
        if not dedupe:
            key = (*key, offset)
        if key in self._issue_keys:
            return
        if len(self.issues) >= MAX_ISSUES:
            if not self._issues_capped:
                self._issues_capped = True
                self.issues.append(
                    ModelIssue(
                        "scan-limit",
                        Severity.HIGH,
                        f"more than {MAX_ISSUES} distinct pickle issues; the rest are not listed",
                        member=self.member,
                        offset=offset,
                    )
                )
            return
        self._issue_keys.add(key)
        self.issues.append(
            ModelIssue(kind, severity, title, member=self.member, offset=offset, detail=detail)
        )

    def global_ref(self, raw_module: str, raw_name: str, proto: int, offset: int, op: str) -> _Ref:
        """Resolve and check one imported global; returns its stack value."""
        # What CPython's find_class imports (fix_imports maps Python 2 names below protocol 3),
        # and what a loader mapping the other way would: both must be allowed.
        mapped = _py2_mapped(raw_module, raw_name)
        raw = (raw_module, raw_name)
        resolved = mapped if proto < 3 else raw
        other = raw if proto < 3 else mapped
        key = (*resolved, op)
        if key not in self._global_keys and len(self.globals) < MAX_GLOBALS:
            self._global_keys.add(key)
            self.globals.append(GlobalRef(resolved[0], resolved[1], offset, op))
        candidates = [resolved]
        if other != resolved and (other is mapped or _importable_py3(other[0])):
            candidates.append(other)
        for module, name in candidates:
            if self.nested is not None and f"{module}.{name}" == "torch.storage._load_from_bytes":
                continue  # judged by what it loads (call_special), or reported at STOP
            if not self.allow.allows(module, name):
                qualified = _shorten(f"{module}.{name}")
                self.issue(
                    "unsafe-global",
                    Severity.CRITICAL,
                    f"pickle imports {qualified!r}, which is not on the allowlist"
                    + _HINTS.get(qualified, ""),
                    offset,
                    {"global": qualified, "opcode": op},
                )
        label = _shorten(f"{resolved[0]}.{resolved[1]}")
        ref = self._refs.get(label)
        if ref is None:
            ref = _Ref(label, _SPECIAL.get(label, 0))
            if len(self._refs) < MAX_GLOBALS:
                self._refs[label] = ref
        if ref.special == _S_LOAD_FROM_BYTES:
            self.pending_loads += 1
            self.loaders = self.nested is not None
        elif ref.special == _S_WRAPPER:
            self.wrappers = True
        return ref

    # -- buffer access -----------------------------------------------------------------------

    @staticmethod
    def _nl_finder(buf: bytes | memoryview | mmap.mmap, end: int) -> Callable[[int], int]:
        if isinstance(buf, memoryview):
            # memoryview has no find(); re searches any buffer without copying it.
            search = re.compile(b"\n").search

            def find_mv(pos: int) -> int:
                m = search(buf, pos, end)
                return -1 if m is None else m.start()

            return find_mv
        find = buf.find

        def find_plain(pos: int) -> int:
            return find(b"\n", pos, end)

        return find_plain

    def line(self, pos: int, op_offset: int) -> tuple[bytes, int]:
        """The newline-terminated argument at ``pos`` (without the newline), and the position
        after it."""
        nl = self.find_nl(pos)
        if nl < 0:
            raise _Fail(op_offset, f"{_NAMES[self.buf[op_offset]]} argument has no newline")
        return bytes(self.buf[pos:nl]), nl + 1

    def length(self, pos: int, size: int, op_offset: int) -> int:
        """A little-endian length field (``size`` < 0: signed 4 bytes)."""
        end = self.end
        buf = self.buf
        if size == 1:
            if pos >= end:
                raise _Fail(op_offset, "truncated length field")
            return buf[pos]
        width = -size if size < 0 else size
        if pos + width > end:
            raise _Fail(op_offset, "truncated length field")
        if size == 4:
            n: int = _U32(buf, pos)[0]
        elif size == 8:
            n = _U64(buf, pos)[0]
        else:
            n = _I32(buf, pos)[0]
            if n < 0:
                raise _Fail(op_offset, f"{_NAMES[buf[op_offset]]} has a negative length")
        return n

    def text(self, pos: int, n: int, op_offset: int, *, bytestring: bool) -> str | _Opaque:
        """Decode a length-prefixed string as the unpickler would; long ones stay opaque."""
        buf = self.buf
        if bytestring:
            # BINSTRING family: bytes in Python 3 (see _BYTESTRING_OPS); nothing to validate.
            return str(buf[pos : pos + n], "latin-1") if n <= _KNOWN_STR_MAX else _OPAQUE
        if n <= _KNOWN_STR_MAX * 4:
            try:
                s = str(buf[pos : pos + n], "utf-8", "surrogatepass")
            except UnicodeDecodeError as e:
                raise _Fail(op_offset, f"string is not valid UTF-8 ({e.reason})") from None
            return s if len(s) <= _KNOWN_STR_MAX else _OPAQUE
        # A long string: validate in chunks so a 1 GB string never becomes a 1 GB str.
        decoder = codecs.getincrementaldecoder("utf-8")("surrogatepass")
        try:
            for chunk_start in range(pos, pos + n, _UTF8_CHUNK):
                chunk_end = min(chunk_start + _UTF8_CHUNK, pos + n)
                decoder.decode(buf[chunk_start:chunk_end], final=chunk_end == pos + n)
        except UnicodeDecodeError as e:
            raise _Fail(op_offset, f"string is not valid UTF-8 ({e.reason})") from None
        return _OPAQUE

    def checkpoint(self, pos: int) -> None:
        """Every MiB or so: is the time up? And an mmap'ed stream gives back the pages the
        scan has left behind (re-reading one later only faults it in again)."""
        if self.budget is not None:
            self.budget.check_time(self.member)
        buf = self.buf
        if isinstance(buf, mmap.mmap):
            done = (pos - _CHECK_EVERY) & ~(mmap.PAGESIZE - 1)
            if done - self._released >= _CHECK_EVERY:
                buf.madvise(mmap.MADV_DONTNEED, self._released, done - self._released)
                self._released = done

    # -- one pickle --------------------------------------------------------------------------

    def run(
        self,
        pos: int,
        memo: _Memo,
        *,
        joblib: bool = True,
    ) -> int:
        """Parse one pickle starting at ``pos`` (up to and including its STOP); returns the
        position after STOP. Raises _Fail.

        ``joblib`` False: a nested object array's pickle, which joblib reads with pickle.load
        (its wrappers are ordinary objects) even when the scanner follows joblib.load."""
        buf = self.buf
        end = self.end
        kinds = _KIND
        args = _ARG
        opaque = _OPAQUE
        joblib = joblib and self.joblib
        stack: list[_Value] = []
        marks: list[int] = []
        proto = 0
        frame_end = -1  # end of the last FRAME
        fence = 0  # stack index of the innermost MARK
        push = stack.append
        # Stack and MARK sizes are checked every _CHECK_EVERY bytes rather than on every push
        # (each opcode is at least one byte, so neither can overshoot by more than that).
        checkpoint = min(end, pos + _CHECK_EVERY)

        while True:
            if pos >= checkpoint:
                if pos >= end:
                    raise _Fail(pos, "stream ends without a STOP opcode")
                if len(stack) > MAX_STACK:
                    raise _Fail(pos, f"stack deeper than {MAX_STACK}", limit=True)
                if len(marks) > MAX_MARKS:
                    raise _Fail(pos, f"more than {MAX_MARKS} open MARKs", limit=True)
                self.checkpoint(pos)
                checkpoint = min(end, pos + _CHECK_EVERY)
            at = pos
            code = buf[pos]
            kind = kinds[code]
            pos += 1

            # Branches in order of how often they occur in real pickles.
            if kind == K_PUSH:
                pos += args[code]
                if pos > end:
                    raise _Fail(at, "truncated argument")
                push(opaque)

            elif kind == K_PUSH_VAL:
                if code == _BININT1:
                    if pos >= end:
                        raise _Fail(at, "truncated argument")
                    push(buf[pos])
                    pos += 1
                elif code == _NONE:
                    push(None)
                elif code == _EMPTY_TUPLE:
                    push(())
                elif code == _EMPTY_DICT:
                    push(_Dict())
                elif code in (_NEWTRUE, _NEWFALSE):
                    push(code == _NEWTRUE)
                else:
                    n = args[code]
                    if pos + n > end:
                        raise _Fail(at, "truncated argument")
                    push(_I32(buf, pos)[0] if n == 4 else _U16(buf, pos)[0])
                    pos += n

            elif kind == K_GET:
                key, pos = self.memo_arg(args[code], pos, at, end)
                value = memo.get(key)
                if isinstance(value, _Missing):
                    raise _Fail(at, f"memo key {key} was never stored")
                if type(value) is _Ref and value.special == _S_LOAD_FROM_BYTES:
                    self.pending_loads += 1
                push(value)

            elif kind == K_MEMOIZE:
                if len(stack) <= fence:
                    raise _Fail(at, "MEMOIZE with an empty stack")
                reason = memo.put(memo.count, stack[-1])
                if reason:
                    raise _Fail(at, reason, limit=True)

            elif kind == K_PUT:
                key, pos = self.memo_arg(args[code], pos, at, end)
                if len(stack) <= fence:
                    raise _Fail(at, "PUT with an empty stack")
                reason = memo.put(key, stack[-1])
                if reason:
                    raise _Fail(at, reason, limit=True)

            elif kind == K_MARK:
                fence = len(stack)
                marks.append(fence)

            elif kind == K_PUSH_STR:
                n = args[code]
                size = self.length(pos, n, at)
                pos += -n if n < 0 else n
                if size > end - pos:
                    raise _Fail(at, f"string of {size} bytes runs past the end of the data")
                push(self.text(pos, size, at, bytestring=code in _BYTESTRING_OPS))
                pos += size

            elif kind == K_POP_PUSH:
                n = args[code]
                if len(stack) - fence < n:
                    raise _Fail(at, f"stack underflow at {_NAMES[code]}")
                if code < _TUPLE1 or code > _TUPLE3:
                    # BINPERSID, READONLY_BUFFER. Legacy torch.save records a whole module's
                    # class as the persistent id ("module", cls, file, source), and its
                    # persistent_load returns cls: that call is a call of cls (itself a global,
                    # checked where it was imported). No other loader resolves persistent ids.
                    pid = stack[-1]
                    if self.wrappers or self.loaders:
                        self.guard(stack[-1:], at)
                    if (
                        code == _BINPERSID
                        and type(pid) is tuple
                        and len(pid) == 4
                        and pid[0] == "module"
                        and type(pid[1]) is _Ref
                    ):
                        stack[-1] = pid[1]
                    else:
                        stack[-1] = opaque
                else:
                    value = tuple(stack[-n:])
                    if self.loaders and _carries_loader(value):
                        self.unfollowed_load(at)
                    del stack[-n:]
                    push(value)

            elif kind in (K_MARK_PUSH, K_MARK_INTO):
                if not marks:
                    raise _Fail(at, f"{_NAMES[code]} without a MARK")
                mark = marks.pop()
                items = len(stack) - mark
                if args[code] == 2 and items % 2:
                    raise _Fail(at, f"{_NAMES[code]} with an odd number of items")
                value = opaque
                if self.wrappers and not (code == _TUPLE and items <= _SMALL):
                    self.guard_wrappers(stack[mark:], at)
                if self.loaders:
                    self.guard_loaders(stack[mark:], at)
                if code == _TUPLE and items <= _SMALL:
                    value = tuple(stack[mark:])
                elif code == _DICT:
                    value = _Dict()
                    value.update(stack[mark:])
                elif code == _SETITEMS and mark > 0:
                    target = stack[mark - 1]
                    if type(target) is _Dict:
                        if items > 2 * _SMALL:
                            target.items = None  # too big to follow, but its keys are checked
                        target.update(stack[mark:])
                del stack[mark:]
                fence = marks[-1] if marks else 0
                if kind == K_MARK_PUSH:
                    push(value)
                else:
                    if len(stack) <= fence:
                        raise _Fail(at, f"{_NAMES[code]} with nothing to add to")
                    self.check_target(stack[-1], code, at)

            elif kind == K_CALL:
                n = args[code]
                if len(stack) - fence < n:
                    raise _Fail(at, f"stack underflow at {_NAMES[code]}")
                fn = stack[-n]
                self.check_callable(fn, code, at)
                if self.wrappers and not (
                    type(fn) is _Ref and fn.special in (_S_WRAPPER, _S_RECONSTRUCTOR)
                ):
                    self.guard_wrappers(stack[-n + 1 :], at)
                if self.loaders:
                    self.guard_loaders(stack[-n + 1 :], at)
                result: _Value = opaque
                if type(fn) is _Ref:
                    if fn.special:
                        result = self.call_special(fn, stack[-n + 1], code, at)
                    elif code == _REDUCE:
                        self.check_constructor(fn, at)
                del stack[-n:]
                push(result)

            elif kind == K_INTO:
                n = args[code]
                if len(stack) - fence < n + 1:
                    raise _Fail(at, f"stack underflow at {_NAMES[code]}")
                target = stack[-n - 1]
                if self.wrappers or self.loaders:
                    self.guard(stack[-n:], at)
                if code == _BUILD and type(target) not in (_BitGenerator, _DType):
                    # (numpy's bit generators and dtypes take their state with __setstate__)
                    risky = _risky_state(stack[-1])
                    if risky is not None:
                        self.risky_build(risky, at)
                if isinstance(target, _Wrapper) and code == _BUILD:
                    state = stack.pop()
                    if joblib:
                        if pos < frame_end:
                            # joblib.load reads the array from the file, which is already past
                            # the whole frame; pickle goes on with the rest of the frame. joblib
                            # itself ends the frame before writing an array.
                            raise _Fail(at, "joblib array wrapper BUILD is not the last opcode "
                                        "of its FRAME (joblib.load would read the array from "
                                        "after the frame)")  # fmt: skip
                        pos = self.joblib_array(target, state, pos, at)
                        self.arrays += 1
                        stack[-1] = opaque  # joblib.load puts the array in its place
                    elif not self.joblib and self.strict_wrappers:
                        raise _Fail(at, "joblib array wrapper BUILD in a stream not detected as "
                                    "joblib (joblib.load would read raw bytes after it)")  # fmt: skip
                elif isinstance(target, _DType) and code == _BUILD:
                    target.state = stack.pop()
                elif isinstance(target, _Dict) and code == _SETITEM:
                    target.update(stack[-2:])
                    del stack[-2:]
                else:
                    del stack[-n:]
                    self.check_target(target, code, at)

            elif kind == K_PUSH_BLOB:
                n = args[code]
                size = self.length(pos, n, at)
                pos += -n if n < 0 else n
                if size > end - pos:
                    raise _Fail(at, f"{_NAMES[code]} of {size} bytes runs past the end of the data")
                if code in _BYTES_OPS:
                    push(_Blob(pos, size))
                elif code == _LONG1 and size <= 8:
                    push(int.from_bytes(buf[pos : pos + size], "little", signed=True))
                else:
                    push(opaque)
                pos += size

            elif kind == K_STACK_GLOBAL:
                if len(stack) - fence < 2:
                    raise _Fail(at, "stack underflow at STACK_GLOBAL")
                name_v = stack.pop()
                module_v = stack.pop()
                if type(module_v) is str and type(name_v) is str:
                    push(self.global_ref(module_v, name_v, proto, at, "STACK_GLOBAL"))
                elif self.plain and (type(module_v) is not _Opaque or type(name_v) is not _Opaque):
                    # the plain read of a joblib stream: an operand known not to be a str (a
                    # class, a dict, a number …) stops pickle.load here ("STACK_GLOBAL requires
                    # str"), before anything is imported
                    raise _Fail(at, "STACK_GLOBAL on a value that is not a str")
                else:
                    self.dynamic_global(module_v, name_v, at)
                    push(_Ref("<dynamic>"))

            elif kind in (K_GLOBAL, K_INST):
                opname = _NAMES[code]
                module_b, pos = self.line(pos, at)
                name_b, pos = self.line(pos, at)
                if not module_b or not name_b:
                    raise _Fail(at, f"{opname} with an empty module or name")
                # GLOBAL's lines are UTF-8, INST's ASCII (as in CPython).
                encoding = "UTF-8" if kind == K_GLOBAL else "ASCII"
                try:
                    module = module_b.decode(encoding)
                    name = name_b.decode(encoding)
                except UnicodeDecodeError:
                    raise _Fail(at, f"{opname} argument is not valid {encoding}") from None
                ref = self.global_ref(module, name, proto, at, opname)
                if kind == K_GLOBAL:
                    push(ref)
                else:
                    # INST: instantiate the class with the items above the MARK
                    if not marks:
                        raise _Fail(at, "INST without a MARK")
                    if self.wrappers or self.loaders:
                        self.guard(stack[marks[-1] :], at)
                    if not ref.special:
                        self.check_constructor(ref, at)
                    del stack[marks.pop() :]
                    fence = marks[-1] if marks else 0
                    # an instance joblib would treat as an array wrapper: its BUILD fails closed
                    push(_Wrapper(None, known=False) if ref.special == _S_WRAPPER else opaque)

            elif kind == K_STOP:
                if len(stack) <= fence:
                    raise _Fail(at, "STOP with an empty stack")
                if pos < frame_end:
                    # pickle ends its frame with the STOP; the C unpickler has read the whole
                    # frame already, so what follows the STOP inside it is dropped by a reader
                    # that reads the next pickle from the file, not by this scan
                    raise _Fail(at, "STOP before the end of its FRAME")
                if self.pending_loads:
                    self.unfollowed_load(at)
                return pos

            elif kind == K_FRAME:
                if at < frame_end:
                    # pickle never writes one (Python's unpickler refuses it; the C one reads
                    # on): a frame inside a frame would hide the outer frame's end from the
                    # STOP check below
                    raise _Fail(at, "FRAME before the end of the previous FRAME")
                if pos + 8 > end:
                    raise _Fail(at, "truncated argument")
                size = _U64(buf, pos)[0]
                pos += 8
                # The C unpickler reads the whole frame up front: it must all be there.
                if size > end - pos:
                    raise _Fail(at, f"FRAME of {size} bytes runs past the end of the data")
                frame_end = pos + size

            elif kind == K_PROTO:
                if pos >= end:
                    raise _Fail(at, "truncated argument")
                proto = buf[pos]
                pos += 1
                if proto > HIGHEST_PROTOCOL:
                    raise _Fail(at, f"unsupported pickle protocol {proto}")

            elif kind == K_POP:
                if len(stack) > fence:
                    stack.pop()
                elif marks:
                    # pickle pops the MARK itself when its frame is empty
                    marks.pop()
                    fence = marks[-1] if marks else 0
                else:
                    raise _Fail(at, "POP with an empty stack")

            elif kind == K_POP_MARK:
                if not marks:
                    raise _Fail(at, "POP_MARK without a MARK")
                del stack[marks.pop() :]
                fence = marks[-1] if marks else 0

            elif kind == K_DUP:
                if len(stack) <= fence:
                    raise _Fail(at, "DUP with an empty stack")
                value = stack[-1]
                if type(value) is _Ref and value.special == _S_LOAD_FROM_BYTES:
                    self.pending_loads += 1
                push(value)

            elif kind == K_OBJ:
                if not marks:
                    raise _Fail(at, "OBJ without a MARK")
                mark = marks.pop()
                if len(stack) - mark < 1:
                    raise _Fail(at, "OBJ without a class")
                cls = stack[mark]
                self.check_callable(cls, code, at)
                if self.wrappers or self.loaders:
                    self.guard(stack[mark + 1 :], at)
                if type(cls) is _Ref and not cls.special:
                    self.check_constructor(cls, at)
                del stack[mark:]
                fence = marks[-1] if marks else 0
                wrapper = type(cls) is _Ref and cls.special == _S_WRAPPER
                push(_Wrapper(None, known=False) if wrapper else opaque)

            elif kind == K_PUSH_LINE:
                line, pos = self.line(pos, at)
                if not line:
                    raise _Fail(at, f"empty {_NAMES[code]} argument")
                push(_line_int(line, code))

            elif kind == K_STRING:
                line, pos = self.line(pos, at)
                push(self.quoted_string(line, at))

            elif kind == K_UNICODE:
                line, pos = self.line(pos, at)
                try:
                    s = str(line, "raw-unicode-escape")
                except UnicodeDecodeError:
                    raise _Fail(at, "bad escape in UNICODE argument") from None
                push(s if len(s) <= _KNOWN_STR_MAX else opaque)

            elif kind == K_PERSID:
                line, pos = self.line(pos, at)
                if not line.isascii():
                    raise _Fail(at, "PERSID argument is not ASCII")
                push(opaque)

            elif kind == K_EXT:
                n = args[code]
                if pos + n > end:
                    raise _Fail(at, "truncated argument")
                ext = buf[pos] if n == 1 else _U16(buf, pos)[0] if n == 2 else _I32(buf, pos)[0]
                pos += n
                self.issue(
                    "pickle-extension",
                    Severity.CRITICAL,
                    "pickle imports a global through the copyreg extension registry "
                    "(unknowable without loading)",
                    at,
                    {"code": str(ext), "opcode": _NAMES[code]},
                )
                push(_Ref(f"<extension {ext}>"))

            else:
                raise _Fail(at, f"unknown opcode 0x{code:02x}")

    def memo_arg(self, n: int, pos: int, at: int, end: int) -> tuple[int, int]:
        """The memo key of a GET/PUT-family opcode: one byte, four bytes, or a decimal line
        (``n`` is the opcode's argument width, negative for a line)."""
        if n == 1:
            if pos >= end:
                raise _Fail(at, "truncated argument")
            return self.buf[pos], pos + 1
        if n == 4:
            if pos + 4 > end:
                raise _Fail(at, "truncated argument")
            return _U32(self.buf, pos)[0], pos + 4
        return self.memo_key(pos, at)

    def memo_key(self, pos: int, at: int) -> tuple[int, int]:
        """A protocol-0 PUT/GET key: a decimal line, as int() reads it."""
        line, pos = self.line(pos, at)
        try:
            key = int(line)
        except ValueError:
            raise _Fail(at, "memo key is not a number") from None
        if key < 0:
            raise _Fail(at, "negative memo key")
        if key > sys.maxsize:
            raise _Fail(at, "memo key too large")
        return key, pos

    def quoted_string(self, line: bytes, at: int) -> str | _Opaque:
        """A protocol-0 STRING argument: quoted, with Python escapes."""
        if len(line) < 2 or line[0] != line[-1] or line[0] not in b"'\"":
            raise _Fail(at, "STRING argument is not quoted")
        try:
            data = codecs.escape_decode(line[1:-1])[0]
        except ValueError:
            raise _Fail(at, "bad escape in STRING argument") from None
        return str(data, "latin-1") if len(data) <= _KNOWN_STR_MAX else _OPAQUE

    def dynamic_global(self, module: _Value, name: _Value, at: int) -> None:
        """STACK_GLOBAL on values that are not known strings: the name is computed at load."""
        self.issue(
            "dynamic-global",
            Severity.CRITICAL,
            "pickle imports a global whose name is computed while loading",
            at,
            {
                "module": _shorten(module) if isinstance(module, str) else "?",
                "name": _shorten(name) if isinstance(name, str) else "?",
                "opcode": "STACK_GLOBAL",
            },
            dedupe=False,
        )

    def check_callable(self, value: _Value, code: int, at: int) -> None:
        """Every call must go to a named global: anything else (the result of another call, a
        persistent object) is something the allowlist never vouched for."""
        if type(value) is not _Ref:
            self.issue(
                "indirect-call",
                Severity.CRITICAL,
                f"pickle calls something that is not a named global ({_NAMES[code]})",
                at,
                {"opcode": _NAMES[code]},
                dedupe=False,
            )

    def call_special(self, fn: _Ref, arg: _Value, code: int, at: int) -> _Value:
        """The result of calling a global the scanner follows (``arg``: the argument tuple of
        REDUCE, the class's argument tuple of NEWOBJ)."""
        special = fn.special
        if special == _S_WRAPPER:
            # joblib writes NEWOBJ (__new__ only: the BUILD state is all its attributes).
            # Calling the class runs __init__, whose defaults differ between joblib versions
            # (numpy_array_alignment_bytes: absent before 1.2, 16 since): a BUILD on such a
            # wrapper cannot be sized for every loader, so it fails closed.
            return _Wrapper() if code == _NEWOBJ else _Wrapper(None, known=False)
        if special == _S_DTYPE:
            if type(arg) is tuple and arg and type(arg[0]) is str:
                return _DType(arg[0])
            return _OPAQUE
        if special == _S_RECONSTRUCTOR:
            # protocol 0/1 instances: copyreg._reconstructor(cls, object, None). Any other
            # base has base.__init__(obj, state) called: a constructor call of base.
            base = arg[1] if type(arg) is tuple and len(arg) == 3 else _OPAQUE
            if type(base) is _Ref:
                if base.label != "builtins.object":
                    self.check_constructor(base, at)
            else:
                self.check_callable(base, code, at)
            if type(arg) is tuple and len(arg) == 3 and _carries_wrapper(arg):
                # base.__new__(cls, state): a wrapper whenever the class is; its attributes
                # are known only in the (cls, object, None) form pickle writes
                plain = code == _REDUCE and type(arg[0]) is _Ref and arg[2] is None
                if self.wrappers and not plain:
                    self.guard_wrappers(arg[1:], at)
                return _Wrapper() if plain else _Wrapper(None, known=False)
            if self.wrappers:
                self.guard_wrappers([arg], at)
            return _OPAQUE
        if special == _S_DICT:
            if code == _REDUCE:
                self.check_constructor(fn, at)
            made = _Dict()
            # NEWOBJ is cls.__new__(cls): always empty. A call fills it from its arguments
            # (dict(pairs), dict(**kw) …) except defaultdict(factory), OrderedDict().
            empty = code == _NEWOBJ or (
                code == _REDUCE
                and type(arg) is tuple
                and (not arg or (fn.label == "collections.defaultdict" and len(arg) == 1))
            )
            if not empty:
                made.risky = "?"
            return made
        if special in (_S_BITGEN_CTOR, _S_GEN_CTOR):
            self.check_random_ctor(fn, arg, code, at)
            return _BITGEN if special == _S_BITGEN_CTOR else _OPAQUE
        # _S_LOAD_FROM_BYTES
        if self.nested is None:
            return _OPAQUE  # reported as an unsafe global already
        self.pending_loads -= 1
        if code == _REDUCE and type(arg) is tuple and len(arg) == 1 and type(arg[0]) is _Blob:
            self.descend(arg[0], at)
        else:
            self.unfollowed_load(at)  # not a call on literal bytes
        return _OPAQUE

    def check_random_ctor(self, fn: _Ref, arg: _Value, code: int, at: int) -> None:
        """numpy.random._pickle's helpers call what they are given: ``__bit_generator_ctor(x)``
        calls ``x`` when it is a class, ``__generator_ctor(x, ctor)`` and
        ``__randomstate_ctor(x, ctor)`` call ``ctor(x)``. Only what numpy writes passes: a
        bit-generator name or class, a bit generator, and __bit_generator_ctor itself."""
        ok = code == _REDUCE and type(arg) is tuple
        if ok:
            args: tuple[_Value, ...] = arg  # type: ignore[assignment]
            first_ok: tuple[type, ...] = (str,)
            if fn.special == _S_GEN_CTOR:
                first_ok = (str, _BitGenerator)
                ok = len(args) <= 2 and (
                    len(args) < 2 or (type(args[1]) is _Ref and args[1].special == _S_BITGEN_CTOR)
                )
            else:
                ok = len(args) <= 1
            if ok and args:
                a0 = args[0]
                ok = type(a0) in first_ok or (type(a0) is _Ref and a0.label in _BIT_GENERATORS)
        if not ok:
            self.issue(
                "unsafe-call",
                Severity.CRITICAL,
                f"pickle calls {fn.label} with arguments numpy never writes (it would call them)",
                at,
                {"global": fn.label, "opcode": _NAMES[code]},
                dedupe=False,
            )

    def check_constructor(self, fn: _Ref, at: int) -> None:
        """A class called with arguments (REDUCE, INST, OBJ) runs its real constructor, which
        for a class the allowlist does not hold itself may open files (xgboost's and lightgbm's
        Booster(model_file=…)). Their libraries pickle them with NEWOBJ (``__new__``) or
        copyreg._reconstructor, then BUILD. The call is reported as its own use of the global
        (``use: constructor``): the judge admits it only for a class the policy names exactly,
        never through a profile or a ``**`` pattern (unless reviewed constructor-safe)."""
        module, _, name = fn.label.rpartition(".")
        if (
            not module
            or not constructor_checked(fn.label)
            or self.allow.allows_constructor(module, name)
        ):
            return
        self.issue(
            "unsafe-global",
            Severity.CRITICAL,
            f"pickle calls the constructor of {fn.label!r} (it may open files or run code; "
            "its library pickles it with __new__ and BUILD)",
            at,
            {"global": fn.label, "opcode": _NAMES[self.buf[at]], "use": "constructor"},
        )

    def guard(self, values: list[_Value] | tuple[_Value, ...], at: int) -> None:
        """guard_wrappers and guard_loaders, as far as each applies."""
        if self.wrappers:
            self.guard_wrappers(values, at)
        if self.loaders:
            self.guard_loaders(values, at)

    def guard_loaders(self, values: list[_Value] | tuple[_Value, ...], at: int) -> None:
        """A _load_from_bytes reference is only followed when it is called directly on literal
        bytes. Put anywhere else (a tuple, a container, a persistent id, an argument, a state)
        it could come back to be called on anything: reported at once."""
        for value in values:
            if _carries_loader(value):
                self.unfollowed_load(at)
                return

    def risky_build(self, key: str, at: int) -> None:
        """A BUILD state setting a __dunder__ attribute on an instance plants a method that
        library code later calls (sklearn's clone calls ``__sklearn_clone__``)."""
        shown = (
            "a key that is not a literal string"
            if key == "?"
            else "a state that may be a dict whose keys are not known"
            if key == _UNKNOWN_STATE
            else repr(_shorten(key, 60))
        )
        self.issue(
            "unsafe-state",
            Severity.CRITICAL,
            f"pickle sets an instance attribute from {shown} (BUILD): a dunder attribute "
            "overrides a method the object's library calls",
            at,
            {"key": _shorten(key, 60), "opcode": "BUILD"},
            dedupe=False,
        )

    def guard_wrappers(self, values: list[_Value] | tuple[_Value, ...], at: int) -> None:
        """A joblib wrapper (class or instance) is only ever built and then BUILT by what
        joblib writes. Handed to anything else (an argument, a container, a state) it could
        come back as a value the scanner no longer recognizes, whose BUILD joblib.load would
        follow with raw bytes the scanner would parse as opcodes: fail closed."""
        for value in values:
            if _carries_wrapper(value):
                raise _Fail(at, f"joblib array wrapper used in a way the scanner cannot follow "
                            f"({_NAMES[self.buf[at]]})")  # fmt: skip

    def descend(self, blob: _Blob, at: int) -> None:
        """Scan the bytes ``torch.storage._load_from_bytes`` hands to torch.load, and report
        what is found inside with the path through the nesting."""
        assert self.nested is not None
        where = f"_load_from_bytes@{at}"
        path = f"{self.member} → {where}" if self.member else where
        for found in self.nested(blob.start, blob.size, at):
            if len(self.issues) >= MAX_ISSUES:
                break
            inner = found.member
            self.issues.append(replace(found, member=f"{path} → {inner}" if inner else path))

    def unfollowed_load(self, at: int) -> None:
        """A reference to torch.storage._load_from_bytes was used other than as a call on
        literal bytes: what it would load cannot be known."""
        self.pending_loads = 0
        self.issue(
            "unsafe-global",
            Severity.CRITICAL,
            "pickle imports 'torch.storage._load_from_bytes' and uses it other than on "
            "literal bytes, so what it loads cannot be scanned",
            at,
            {"global": "torch.storage._load_from_bytes", "opcode": "REDUCE"},
        )

    def joblib_array(
        self,
        wrapper: _Wrapper,
        state: _Value,
        pos: int,
        at: int,
    ) -> int:
        """joblib.load after a NumpyArrayWrapper BUILD at ``at``: the array's bytes follow at
        ``pos``; returns the position after them. Raises _Fail when they cannot be sized
        exactly from the wrapper's recorded dtype and shape, or do not fit."""
        attrs = wrapper.attrs
        if attrs is None or type(state) is not _Dict or state.items is None:
            raise _Fail(at, "joblib array wrapper whose state the scanner cannot follow")
        attrs.update(state.items)
        dtype, shape = attrs.get("dtype"), attrs.get("shape")
        if type(dtype) is not _DType:
            raise _Fail(at, "joblib array wrapper without a dtype the scanner can follow")
        layout = _dtype_layout(dtype)
        if isinstance(layout, str):
            raise _Fail(at, f"joblib array wrapper: {layout}")
        itemsize, hasobject = layout
        if hasobject:
            # An object array is a nested pickle (protocol 5), read with pickle's Unpickler.
            return self.run(pos, _Memo(), joblib=False)
        dims = [d for d in shape if type(d) is int and d >= 0] if isinstance(shape, tuple) else []
        if not isinstance(shape, tuple) or len(dims) != len(shape):
            raise _Fail(at, "joblib array wrapper without a shape the scanner can follow")
        align = attrs.get("numpy_array_alignment_bytes")
        end = self.end
        if align is not None:
            if type(align) is not int:
                raise _Fail(at, "joblib array wrapper with a non-integer alignment")
            if pos >= end:
                raise _Fail(pos, "joblib array data is missing (truncated before its padding)")
            padding = self.buf[pos]
            if padding > _JOBLIB_MAX_PADDING:
                raise _Fail(pos, f"joblib array padding of {padding} bytes (joblib writes 1-16)")
            pos += 1 + padding
        nbytes = itemsize
        for d in dims:
            nbytes *= d
            if nbytes > end:
                break
        if nbytes > end - pos:
            raise _Fail(
                pos,
                f"joblib array data at offset {pos} should be {nbytes} bytes "
                f"({dtype.type_string} {shape}) but only {max(0, end - pos)} remain",
            )
        return pos + nbytes

    def check_target(self, value: _Value, code: int, at: int) -> None:
        """BUILD/APPEND/SETITEM on a class or function object itself monkey-patches it."""
        if isinstance(value, _Ref):
            self.issue(
                "global-mutation",
                Severity.CRITICAL,
                f"pickle modifies the global {value.label} itself ({_NAMES[code]})",
                at,
                {"global": value.label, "opcode": _NAMES[code]},
            )


# --------------------------------------------------------------------------------------------
# Entry point


def scan_pickle(
    buf: bytes | memoryview | mmap.mmap,
    *,
    start: int = 0,
    end: int | None = None,
    allow: Allowlist,
    member: str | None = None,
    max_pickles: int | None = None,
    budget: Budget | None = None,
    nested: NestedScan | None = None,
    joblib: bool | None = None,
) -> PickleScan:
    """Scan the pickle stream in ``buf[start:end]`` statically; never loads anything.

    Pickles following each other are all scanned, to the end of the region: bytes after the
    last STOP that do not form a pickle are a ``trailing-data`` issue. Give ``end`` when the
    pickle region is shorter than the buffer, or ``max_pickles`` to stop after that many
    pickles (legacy ``torch.save``: five pickles, then raw storage bytes). Offsets in issues and
    globals are absolute in ``buf``; ``member`` is copied into every issue. With a ``budget``,
    its deadline stops the scan (:class:`~modelseal.models.limits.ScanLimitExceeded`).

    ``joblib`` (None: whether the stream names ``joblib.numpy_pickle`` in its first 4 MiB, as
    format detection decides): read it as joblib.load does — after each ``NumpyArrayWrapper``
    BUILD, which must end its FRAME, the array's raw bytes are skipped, exactly as many as its
    recorded dtype and shape say (anything else fails closed) — and, when any array was
    skipped, read it once more as pickle.load / numpy.load / torch.load do (every opcode in
    turn; where that read fails, those loaders stop too) and report what that read would run.
    Without joblib, a wrapper BUILD fails closed. With ``nested``,
    ``torch.storage._load_from_bytes`` called on literal bytes is judged by what ``nested``
    finds in those bytes (without it, it is an unsafe global like any other).
    """
    if isinstance(buf, memoryview) and (buf.ndim != 1 or buf.format != "B"):
        buf = buf.cast("B")
    size = len(buf)
    stop = size if end is None else end
    if not 0 <= start <= stop <= size:
        raise ValueError(f"bad pickle region [{start}, {end}) for a buffer of {size} bytes")
    if max_pickles is not None and max_pickles < 1:
        raise ValueError("max_pickles must be at least 1")

    if joblib is None:
        joblib = _find(buf, _JOBLIB_MARKER, start, min(stop, start + _JOBLIB_WINDOW)) >= 0
    scanner = _Scanner(buf, start, stop, allow, member, budget, nested, joblib=joblib)
    scanner.strict_wrappers = not joblib
    pos = start
    pickles = 0
    if start == stop:
        scanner.issue("unparsable", Severity.HIGH, "no pickle data", start, {"reason": "empty"})
    limit = MAX_PICKLES if max_pickles is None else min(max_pickles, MAX_PICKLES)
    while pos < stop and pickles < limit:
        if pickles & 0x3FF == 0x3FF:
            scanner.checkpoint(pos)  # a million tiny pickles never reach run()'s checkpoints
        # Each pickle is what one pickle.load() reads, with a new Unpickler and so an empty
        # memo (pickle.load, torch.load, joblib and numpy all do this). A stream that only loads
        # with one Unpickler reused across load() calls (its memo carries over) reads a key its
        # own pickle never stored: that fails here, as it would in those loaders.
        try:
            pos = scanner.run(pos, _Memo())
        except _Fail as fail:
            _report_failure(scanner, fail, first=pickles == 0)
            break
        pickles += 1
    else:
        if pos < stop and max_pickles is None:
            scanner.issue(
                "scan-limit",
                Severity.HIGH,
                f"more than {MAX_PICKLES} pickles in one stream; the rest is not scanned",
                pos,
                {},
            )
    if scanner.arrays:
        _plain_pass(scanner, limit)
    return PickleScan(
        globals=tuple(scanner.globals),
        issues=tuple(scanner.issues),
        pickles=pickles,
        end=pos,  # a failed pickle never advances pos: this is past the last complete one
    )


#: What marks a joblib stream (as modelseal.models.formats detects one), and how far in.
_JOBLIB_MARKER = b"joblib.numpy_pickle"
_JOBLIB_WINDOW = 4 << 20
#: The longest pickle of an int as large as torch's legacy magic number (protocol 0, padded).
_MAGIC_PICKLE_MAX = 64
#: Issues of a plain read that stop the loader rather than run anything.
_PARSE_KINDS = frozenset({"unparsable", "trailing-data"})


def _find(buf: bytes | memoryview | mmap.mmap, needle: bytes, start: int, end: int) -> int:
    if isinstance(buf, memoryview):
        m = re.compile(re.escape(needle)).search(buf, start, end)
        return -1 if m is None else m.start()
    return buf.find(needle, start, end)


def _plain_pass(main: _Scanner, max_pickles: int) -> None:
    """Read a joblib stream whose arrays were skipped as pickle.load reads it (a file is only
    safe if it is safe under every loader a user may hand it to): the array bytes are then
    opcodes. Where this read fails, the plain loaders fail too, having run only what was read
    before: only what it would import or call is reported (and scanner limits)."""
    plain = _Scanner(
        main.buf, main.start, main.end, main.allow, main.member, main.budget, main.nested
    )
    plain.plain = True
    pos = main.start
    for n in range(max_pickles):
        if pos >= main.end:
            break
        if n == 1 and pos - main.start > _MAGIC_PICKLE_MAX:
            # pickle.load, numpy.load and joblib's nested reads stop after one pickle; only
            # torch's legacy reader goes on, and only after a first pickle that is its magic
            # number (a few bytes): anything longer and it raises there
            break
        try:
            pos = plain.run(pos, _Memo())
        except _Fail as fail:
            if fail.limit:
                _report_failure(plain, fail, first=True)
            break
    seen = {(i.kind, i.offset, i.member, i.title) for i in main.issues}
    for found in plain.issues:
        if (
            found.kind in _PARSE_KINDS
            or (found.kind, found.offset, found.member, found.title) in seen
        ):
            continue
        if len(main.issues) >= MAX_ISSUES:
            break
        main.issues.append(
            replace(
                found,
                title=f"read by pickle.load (not joblib.load), which runs joblib array bytes as "
                f"opcodes: {found.title}",
                detail={**found.detail, "reader": "pickle.load"},
            )
        )


def _report_failure(scanner: _Scanner, fail: _Fail, *, first: bool) -> None:
    if fail.limit:
        scanner.issue(
            "scan-limit",
            Severity.HIGH,
            f"pickle stream exceeds a scanner limit ({fail.reason}); the rest is not scanned",
            fail.offset,
            {"reason": fail.reason},
        )
    elif first:
        scanner.issue(
            "unparsable",
            Severity.HIGH,
            f"not a valid pickle stream: {fail.reason}",
            fail.offset,
            {"reason": fail.reason},
        )
    else:
        scanner.issue(
            "trailing-data",
            Severity.HIGH,
            f"data after the last complete pickle is not a pickle: {fail.reason}",
            fail.offset,
            {"reason": fail.reason},
        )
