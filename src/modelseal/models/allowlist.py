"""The pickle allowlist: which globals a pickle may import.

The default list covers what ``torch.save`` / ``numpy`` / ``joblib`` write for tensors, arrays
and plain containers; a policy may add entries (``models.pickle_allow``) but never the modules
and names that run code. The policy and the judge read it from here; the scanner
(:mod:`modelseal.models.pickle_scan`) asks it about every global it finds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# torch.load of a state_dict or checkpoint (zip and legacy formats) needs exactly these. Each
# builds a tensor, storage or small constant from data; none takes a callable or a class to
# call, imports by name, or touches files. ``_rebuild_parameter_with_state`` restores instance
# attributes with setattr, but only values the pickle could build anyway (from this list).
_TORCH_REBUILDERS = (
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_sparse_tensor",
    "torch._utils._rebuild_nested_tensor",
    "torch._utils._rebuild_meta_tensor_no_storage",
    # device tensors (XLA, ORT, …) round-tripped through CPU memory; _rebuild_xla_tensor is an
    # older alias of the numpy variant, still found in old checkpoints.
    "torch._utils._rebuild_device_tensor_from_numpy",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor",
    "torch._utils._rebuild_xla_tensor",
    # Deliberately absent: _rebuild_wrapper_subclass (takes a class to instantiate, useful only
    # with tensor-subclass globals that are not allowed anyway) and torch._tensor.
    # _rebuild_from_type[_v2] (calls a pickled callable and __setstate__ of a pickled type).
)

# Storage classes appear as data inside persistent ids (torch's persistent_load reads their
# dtype); torch.save normalizes CUDA storages to these CPU names, so torch.cuda.* is not needed.
_TORCH_STORAGES = (
    *(
        f"torch.{kind}Storage"
        for kind in (
            "Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte",
            "Bool", "ComplexFloat", "ComplexDouble", "QInt8", "QUInt8", "QInt32", "QUInt4x2",
            "QUInt2x4",
        )
    ),
    "torch.UntypedStorage",
    "torch.storage.UntypedStorage",
)  # fmt: skip

# Constants torch pickles by name (dtype, layout, memory_format and qscheme objects): looked up,
# never called.
_TORCH_DTYPES = tuple(
    f"torch.{name}"
    for name in (
        "float16", "float32", "float64", "bfloat16", "complex32", "complex64", "complex128",
        "bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
        "qint8", "quint8", "qint32", "quint4x2", "quint2x4",
        "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
        "float4_e2m1fn_x2", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16",
        "uint1", "uint2", "uint3", "uint4", "uint5", "uint6", "uint7",
        "int1", "int2", "int3", "int4", "int5", "int6", "int7",
    )
)  # fmt: skip
_TORCH_CONSTANTS = (
    # layouts (normally pickled through _get_layout, below)
    "torch.strided", "torch.sparse_coo", "torch.sparse_csr", "torch.sparse_csc",
    "torch.sparse_bsr", "torch.sparse_bsc", "torch._mkldnn", "torch.jagged",
    # memory formats
    "torch.contiguous_format", "torch.channels_last", "torch.channels_last_3d",
    "torch.preserve_format",
    # quantization schemes (arguments of _rebuild_qtensor)
    "torch.per_tensor_affine", "torch.per_tensor_symmetric", "torch.per_channel_affine",
    "torch.per_channel_symmetric", "torch.per_channel_affine_float_qparams",
)  # fmt: skip

# Small value types: torch.Size(tuple), torch.device("cuda:0"), and the layout lookup registered
# with copyreg (a dict lookup of torch's own layout objects by their str()).
_TORCH_VALUES = ("torch.Size", "torch.device", "torch.serialization._get_layout")

# numpy arrays, dtypes and scalars as ndarray.__reduce_ex__ writes them, for numpy 1.x
# (numpy.core) and 2.x (numpy._core). _reconstruct makes an empty array of a given ndarray
# subclass (the subclass is itself a global, so it must be allowed too), scalar() and
# _frombuffer() reinterpret bytes; object arrays pickle their items as ordinary pickle values,
# so anything inside is checked like everything else. numpy.load is not here.
_NUMPY = (
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.core.numeric._frombuffer",
    "numpy._core.numeric._frombuffer",
)

# Built-in containers and scalars that pickle writes as globals (sets, frozensets, bytearrays
# and complex numbers at every protocol; empty bytes and range/slice objects; the types
# themselves when a type object is pickled). Their constructors only convert data.
# NOT builtins.object: on its own it is harmless, but the only pickles needing it are instances
# of plain Python classes (copyreg._reconstructor(cls, object, state)), and such a class is not
# on the default list anyway; a policy allowing one can add builtins.object with it.
# NOT builtins.type (builds classes), getattr & co (reach anything), eval/exec/compile/open/…
_BUILTINS = tuple(
    f"builtins.{name}"
    for name in (
        "dict", "list", "tuple", "set", "frozenset", "bytearray", "bytes", "str", "int",
        "float", "complex", "bool", "slice", "range",
    )
)  # fmt: skip

_STDLIB = (
    # OrderedDict: every state_dict is one.
    "collections.OrderedDict",
    # bytes at protocols 0-2 (numpy and torch metadata): _codecs.encode(text, "latin1").
    # encode() only turns a str into bytes with a named codec. A codec name can only select a
    # registered codec; the stdlib search function imports at most a dot-free module of the
    # stdlib ``encodings`` package, and every codec (hex, rot13, zlib, base64, …) is a pure data
    # transform. _codecs.decode is NOT allowed (decompression bombs through zlib/bz2 codecs).
    "_codecs.encode",
    # Instances of builtin subclasses at protocols 0/1: _reconstructor(cls, base, state) calls
    # base.__new__(cls, state) and base.__init__(obj, state). cls and base are themselves
    # globals in the stream, so they must be allowed too, and __new__ refuses a cls that is not
    # a subtype of base: it can only build an instance of an allowed type.
    "copyreg._reconstructor",
)

_DEFAULT_ENTRIES = (
    _TORCH_REBUILDERS
    + _TORCH_STORAGES
    + _TORCH_DTYPES
    + _TORCH_CONSTANTS
    + _TORCH_VALUES
    + _NUMPY
    + _BUILTINS
    + _STDLIB
)

# Never allowed, not even by policy: modules whose globals run commands, import, load code or
# call arbitrary callables (the classic gadgets behind scanner bypasses), and the few builtins
# that reach everything. A policy entry naming one of these is a policy error.
_NEVER_MODULES = frozenset(
    {
        "os", "posix", "nt", "subprocess", "sys", "runpy", "importlib", "pkgutil", "imp",
        "operator", "_operator", "functools", "_functools", "pickle", "_pickle", "cPickle",
        "marshal", "types", "ctypes", "_ctypes", "code", "codeop", "shutil", "socket", "_socket",
        "webbrowser", "pty", "commands", "multiprocessing", "_posixsubprocess", "asyncio",
        "threading", "_thread", "signal", "platform", "torch.hub", "numpy.testing",
        "numpy.f2py", "numpy.distutils", "dill", "cloudpickle", "__builtin__",
    }
)  # fmt: skip
_NEVER_NAMES = frozenset(
    {
        *(
            f"builtins.{name}"
            for name in (
                "eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "hasattr",
                "__import__", "breakpoint", "input", "globals", "locals", "vars", "apply",
                "execfile", "reload", "help", "exit", "quit", "type",
            )
        ),
        "torch.load", "torch.serialization.load", "torch.serialization._load",
        "torch.serialization._legacy_load", "torch._utils._rebuild_from_type",
        "torch._tensor._rebuild_from_type", "torch._tensor._rebuild_from_type_v2",
        "torch.jit.load", "torch.jit._serialization.load", "torch.package.PackageImporter",
        "numpy.load", "numpy.lib.npyio.load", "numpy.fromfile", "numpy.loadtxt", "joblib.load",
        "joblib.numpy_pickle.load",
        "_codecs.decode", "codecs.decode", "copyreg.__newobj__", "copyreg.__newobj_ex__",
    }
)  # fmt: skip

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_ENTRY_RE = re.compile(rf"(?:{_IDENT}\.)+(?:{_IDENT}|\*)")
_WILDCARD_NAME_RE = re.compile(_IDENT)


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _never(entry: str) -> bool:
    """Whether ``entry`` ("mod.name" or "mod.*") falls under the never-allowed lists."""
    module = entry.rpartition(".")[0]
    if entry in _NEVER_NAMES:
        return True
    parts = module.split(".")
    return any(".".join(parts[:i]) in _NEVER_MODULES for i in range(1, len(parts) + 1))


@dataclass(frozen=True)
class Allowlist:
    """The globals a pickle may import: exact ``module.name`` entries and ``module.*`` wildcards.

    A wildcard admits plain attribute names of that one module (no dotted paths, which would
    walk into other objects at protocol >= 4, and no ``__dunder__`` names); it does not cover
    submodules. Exact entries compare the joined ``module.name`` string.
    """

    exact: frozenset[str] = frozenset()
    modules: frozenset[str] = frozenset()  # from "module.*"

    @classmethod
    def default(cls) -> Allowlist:
        """The built-in list: torch tensors and storages, numpy arrays, builtin containers."""
        return cls(exact=frozenset(_DEFAULT_ENTRIES))

    def extended(self, extra: Iterable[str]) -> Allowlist:
        """A copy with policy-supplied entries added.

        Each entry is ``"module.name"`` or ``"module.*"`` (ASCII identifiers separated by dots).
        Raises ValueError for anything else, for a ``__dunder__`` name, and for entries that are
        never allowed (os, subprocess, builtins.eval, operator, functools, importlib, …).
        """
        exact = set(self.exact)
        modules = set(self.modules)
        for raw in extra:
            entry = raw.strip() if isinstance(raw, str) else raw
            if not isinstance(entry, str) or not _ENTRY_RE.fullmatch(entry):
                raise ValueError(
                    f"invalid pickle allowlist entry {raw!r}: expected 'module.name' or 'module.*'"
                )
            module, _, name = entry.rpartition(".")
            if _is_dunder(name):
                raise ValueError(f"pickle allowlist entry {entry!r} names a dunder attribute")
            if _never(entry) or (name == "*" and module == "builtins"):
                raise ValueError(
                    f"pickle allowlist entry {entry!r} is never allowed: it can run code"
                )
            if name == "*":
                modules.add(module)
            else:
                exact.add(entry)
        return Allowlist(exact=frozenset(exact), modules=frozenset(modules))

    def allows(self, module: str, name: str) -> bool:
        """Whether importing ``name`` from ``module`` is allowed."""
        if f"{module}.{name}" in self.exact:
            return True
        # a wildcard never admits what no exact entry could name (e.g. torch.* and torch.load)
        return (
            module in self.modules
            and _WILDCARD_NAME_RE.fullmatch(name) is not None
            and not _is_dunder(name)
            and not _never(f"{module}.{name}")
        )
