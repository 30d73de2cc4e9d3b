"""The pickle allowlist: which globals a pickle may import.

The default list covers what ``torch.save`` / ``numpy`` / ``joblib`` write for tensors, arrays
and plain containers; a policy may add entries (``models.pickle_allow``) but never the modules
and names that run code. The policy and the judge read it from here; the scanner
(:mod:`modelseal.models.pickle_scan`) asks it about every global it finds.
"""

from __future__ import annotations

import re
import sys
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
# builtins.object: object() and object.__new__ only make an empty object; protocol 0/1 pickles
# of any allowed class need it (copyreg._reconstructor(cls, object, None), what NEWOBJ does at
# protocol 2+).
# NOT builtins.type (builds classes), getattr & co (reach anything), eval/exec/compile/open/…
_BUILTINS = tuple(
    f"builtins.{name}"
    for name in (
        "dict", "list", "tuple", "set", "frozenset", "bytearray", "bytes", "str", "int",
        "float", "complex", "bool", "slice", "range", "object",
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

# joblib's array placeholder: the scanner follows it exactly (the array's raw bytes after its
# BUILD are skipped by their recorded size, anything else fails closed), and joblib only sets
# its attributes. Also under scikit-learn's vendored copy (sklearn.externals.joblib, < 0.23).
_JOBLIB = (
    "joblib.numpy_pickle.NumpyArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
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
    + _JOBLIB
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

# Gadgets inside the ML packages a policy allows by pattern (``sklearn.**``) or profile: modules
# and names reachable by pickle that import, exec/eval, open, write or delete files, start
# processes or servers, load native libraries, or change global configuration. Found by reading
# the packages' sources for importlib / exec / eval / open / subprocess / ctypes / socket calls.
# Like the lists above they win over any allow, exact entries included.
_GADGET_MODULES = frozenset(
    {
        # joblib: file caches and disk helpers (open, write, rmtree), process pools and their
        # reducers (memmaps opened by name), the vendored cloudpickle/loky (build functions from
        # code objects, spawn processes), old array wrappers (np.load of a file named by the
        # pickle), compressor file objects (open by name), loggers (open log files)
        "joblib.memory", "joblib.disk", "joblib._store_backends", "joblib.pool",
        "joblib._memmapping_reducer", "joblib.externals", "joblib.parallel",
        "joblib._parallel_backends", "joblib.executor", "joblib._dask", "joblib.numpy_pickle_compat",
        "joblib.compressor", "joblib.logger", "joblib.func_inspect", "joblib.backports",
        "joblib._multiprocessing_helpers", "joblib._utils",
        # scikit-learn: dataset loaders (open files, fetch URLs), build/test helpers (import,
        # run scripts), estimator discovery (imports every module), version report (imports),
        # export (writes files), global configuration, the vendored array-API shims (import)
        "sklearn.datasets", "sklearn._build_utils", "sklearn.utils._testing",
        "sklearn.utils.estimator_checks", "sklearn.utils._show_versions",
        "sklearn.utils.discovery", "sklearn.utils._joblib", "sklearn.utils.parallel",
        "sklearn.utils._config", "sklearn._config", "sklearn.utils._optional_dependencies",
        "sklearn.tree._export", "sklearn.externals.array_api_compat",
        "sklearn.externals.array_api_extra", "sklearn.externals._packaging",
        "sklearn.externals._scipy", "sklearn.__check_build",
        "sklearn.experimental", "sklearn.callback", "sklearn.utils._repr_html",
        # xgboost / lightgbm: native library loading, the collective/tracker (network servers),
        # training entry points, callbacks that write checkpoints, dask/spark integrations
        "xgboost.libpath", "xgboost.collective", "xgboost.tracker", "xgboost.federated",
        "xgboost.dask", "xgboost.spark", "xgboost.training", "xgboost.callback",
        "xgboost.config", "xgboost.compat", "xgboost.plotting",
        "lightgbm.libpath", "lightgbm.engine", "lightgbm.callback", "lightgbm.dask",
        "lightgbm.plotting",
        # numpy: file readers and writers, memory maps, the data-source fetcher, native library
        # loading, build tools, the typing plugin
        "numpy.lib.npyio", "numpy.lib._npyio_impl", "numpy.lib.format", "numpy.lib._format_impl",
        "numpy.lib._datasource", "numpy.lib._utils_impl", "numpy.lib.utils", "numpy.ctypeslib",
        "numpy._core.memmap", "numpy.core.memmap", "numpy._core.records", "numpy.core.records",
        "numpy.rec", "numpy.ma.mrecords", "numpy._pyinstaller", "numpy.typing",
        "numpy.random._examples", "numpy._pytesttester", "numpy.__config__",
        # torch: code generation and loading (inductor, dynamo, fx's exec of generated code,
        # jit, package, cpp_extension), hubs and downloads, native ops and libraries, process
        # and network machinery, export/onnx, profilers writing traces, environment probes
        "torch._inductor", "torch._dynamo", "torch.fx", "torch.jit", "torch.package",
        "torch.utils.cpp_extension", "torch.utils.collect_env", "torch.utils.benchmark",
        "torch.utils.model_zoo", "torch.utils.tensorboard", "torch.utils.data",
        "torch.utils.checkpoint", "torch.utils._config_module", "torch.ops", "torch._ops",
        "torch.classes", "torch._classes", "torch._C", "torch.library", "torch._library",
        "torch.onnx", "torch.export", "torch._export", "torch.multiprocessing",
        "torch.distributed", "torch.testing", "torch.compiler", "torch._functorch",
        "torch._higher_order_ops", "torch._logging", "torch.profiler", "torch.autograd.profiler",
        "torch._utils_internal", "torch._sources", "torch._jit_internal", "torch._lazy",
        "torch.backends", "torch.cuda", "torch.mps", "torch.xpu", "torch._subclasses",
        "torch.__config__", "torch._appdirs", "torch.func", "torch._prims", "torch._refs",
        "torch._decomp", "torch.overrides", "torch.autograd.graph",
    }
)  # fmt: skip
_GADGET_NAMES = frozenset(
    {
        "joblib.load", "joblib.dump", "joblib.Memory", "joblib.Parallel", "joblib.parallel_backend",
        "joblib.parallel_config", "joblib.register_parallel_backend", "joblib.register_compressor",
        "joblib.register_store_backend", "joblib.wrap_non_picklable_objects",
        "joblib.numpy_pickle.dump", "joblib.numpy_pickle._unpickle",
        "joblib.numpy_pickle._read_fileobject", "joblib.numpy_pickle.load_temporary_memmap",
        "joblib.numpy_pickle.NumpyUnpickler", "joblib.numpy_pickle.NumpyPickler",
        "joblib.numpy_pickle.make_memmap", "joblib.numpy_pickle.load_compatibility",
        "joblib.numpy_pickle.register_compressor", "joblib.numpy_pickle.BinaryZlibFile",
        "sklearn.set_config", "sklearn.config_context", "sklearn.show_versions",
        "sklearn.utils.all_estimators", "sklearn.utils.check_memory",
        "sklearn.utils.validation.check_memory", "sklearn.tree.export_graphviz",
        "sklearn.tree.export_text",
        "xgboost.set_config", "xgboost.config_context", "xgboost.train", "xgboost.cv",
        "xgboost.core._load_lib", "xgboost.core._LIB", "xgboost.core.build_info",
        "lightgbm.train", "lightgbm.cv", "lightgbm.basic._load_lib", "lightgbm.basic._LIB",
        "numpy.load", "numpy.save", "numpy.savez", "numpy.savez_compressed", "numpy.savetxt",
        "numpy.loadtxt", "numpy.genfromtxt", "numpy.fromregex", "numpy.fromfile",
        "numpy.memmap", "numpy.DataSource", "numpy.show_config", "numpy.info", "numpy.source",
        "numpy.lookfor", "numpy.test", "numpy.get_include", "numpy.recfromcsv",
        "numpy.recfromtxt", "numpy.ndarray.tofile", "numpy.ndarray.dump",
        "torch.save", "torch.compile", "torch.export", "torch.cond", "torch.vmap",
        "torch.use_deterministic_algorithms", "torch.set_default_device",
        "torch.set_default_dtype", "torch.set_default_tensor_type", "torch.manual_seed",
        "torch.from_file", "torch.storage._load_from_bytes",
        "torch.serialization.save", "torch.serialization._open_file_like",
        "torch.serialization._open_zipfile_reader", "torch.serialization.register_package",
        "torch.serialization.add_safe_globals", "torch.serialization.safe_globals",
        "torch.storage.UntypedStorage.from_file", "torch.storage.TypedStorage.from_file",
        # found by review (issue 15): functions re-exported by scikit-learn modules that import
        # a module by name, fetch an attribute by name, or wrap a callable; numpy's file reader
        # under its private module path; joblib's old array wrappers (np.load of a named file)
        "sklearn.utils._set_output.check_library_installed",
        "sklearn.utils.validation._check_response_method",
        "sklearn.metrics._scorer.partial",
        "numpy._core.multiarray.fromfile", "numpy.core.multiarray.fromfile",
        "joblib.numpy_pickle.NDArrayWrapper", "joblib.numpy_pickle.ZNDArrayWrapper",
    }
)  # fmt: skip
#: Names that are gadgets in whatever module re-exports them (import, getattr, call wrappers,
#: file readers), refused under every pattern and profile.
_GADGET_BASENAMES = frozenset(
    {
        "partial", "partialmethod", "attrgetter", "itemgetter", "methodcaller", "reduce",
        "import_module", "check_library_installed", "_check_response_method", "check_memory",
        "fromfile", "NDArrayWrapper", "ZNDArrayWrapper", "memmap", "load", "loads",
        "eval", "exec", "getattr", "setattr", "system", "popen", "Popen",
    }
)  # fmt: skip
#: What a ``**`` pattern can admit: a class-like name (a capital first letter). Functions,
#: modules and other values bound to lower-case or private names are re-exported everywhere
#: (functools.partial as sklearn.metrics._scorer.partial, modules as sklearn._importlib …), so
#: a pattern never reaches them: name such a global exactly, or use a profile.
_CLASS_NAME_RE = re.compile(r"[A-Z][A-Za-z0-9_]*")
#: Classes a profile or pattern admits whose constructor only stores or converts its arguments,
#: so a pickle may call them (REDUCE/INST/OBJ) rather than build them with __new__ + BUILD.
_CONSTRUCTOR_SAFE = frozenset(
    {
        "collections.defaultdict", "collections.OrderedDict",
        # numpy bit generators: the constructor takes a seed
        "numpy.random._mt19937.MT19937", "numpy.random._pcg64.PCG64",
        "numpy.random._pcg64.PCG64DXSM", "numpy.random._philox.Philox",
        "numpy.random._sfc64.SFC64",
    }
)  # fmt: skip
#: scikit-learn's compiled (Cython) modules: their classes pickle by __reduce__ as cls(sizes,
#: arrays, …) + __setstate__, and their constructors only allocate from numbers and arrays.
_CONSTRUCTOR_SAFE_MODULES = frozenset(
    {
        "sklearn._loss._loss", "sklearn.tree._tree", "sklearn.tree._criterion",
        "sklearn.tree._splitter", "sklearn.neighbors._ball_tree", "sklearn.neighbors._kd_tree",
        "sklearn.neighbors._quad_tree", "sklearn.metrics._dist_metrics",
        "sklearn.linear_model._sgd_fast",
    }
)  # fmt: skip
# Test and build helper modules import, execute and write: never allowed inside the ML packages
# below, nor through any ``**`` pattern (a policy may still name a class of its own tests).
_ML_PACKAGES = frozenset({"sklearn", "joblib", "xgboost", "lightgbm", "numpy", "torch", "scipy"})
_GADGET_SEGMENTS = frozenset({"tests", "test", "testing", "_testing", "conftest", "_build_utils"})
#: Packages too large to review whole for gadgets: a ``**`` pattern on them is refused (name
#: classes, or use a profile such as ``torch-modules``). The standard library is one too.
_NO_DEEP = frozenset({"torch", "pip", "setuptools", "pkg_resources", "_pytest", "pytest",
                      "IPython", "distutils", "Cython", "numba", "scipy", "tensorflow", "keras",
                      "jax", "transformers"})  # fmt: skip

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_ENTRY_RE = re.compile(rf"(?:{_IDENT}\.)+(?:{_IDENT}|\*\*|\*)")
_WILDCARD_NAME_RE = re.compile(_IDENT)


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _never(entry: str, *, deep: bool = False) -> bool:
    """Whether ``entry`` ("mod.name", "mod.*" or "pkg.**") falls under the never-allowed lists
    (code-running modules and names, and the gadgets inside the ML packages)."""
    if entry.startswith("sklearn.externals.joblib."):
        entry = entry[len("sklearn.externals.") :]  # the vendored joblib: the same gadgets
    module, _, name = entry.rpartition(".")
    if entry in _NEVER_NAMES or entry in _GADGET_NAMES or name in _GADGET_BASENAMES:
        return True
    parts = module.split(".")
    if (deep or parts[0] in _ML_PACKAGES) and any(part in _GADGET_SEGMENTS for part in parts):
        return True
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if prefix in _NEVER_MODULES or prefix in _GADGET_MODULES:
            return True
    return False


def constructor_checked(qualified: str) -> bool:
    """Whether a call of the global ``qualified`` with arguments is judged as a constructor
    call (:meth:`Allowlist.allows_constructor`): a class-like name not reviewed as
    constructor-safe."""
    module, _, name = qualified.rpartition(".")
    return (
        _CLASS_NAME_RE.fullmatch(name) is not None
        and qualified not in _CONSTRUCTOR_SAFE
        and module not in _CONSTRUCTOR_SAFE_MODULES
    )


def _too_deep(package: str) -> bool:
    """Whether ``package.**`` is refused: the standard library and unreviewably large
    packages (their gadgets cannot all be listed)."""
    top = package.partition(".")[0]
    return top in _NO_DEEP or top in sys.stdlib_module_names or top == "builtins"


@dataclass(frozen=True)
class Allowlist:
    """The globals a pickle may import: exact ``module.name`` entries, ``module.*`` wildcards
    and ``package.**`` patterns.

    ``module.*`` admits plain attribute names of that one module (no dotted paths, which would
    walk into other objects at protocol >= 4, and no ``__dunder__`` names); it does not cover
    submodules. ``package.**`` admits class-like names only (a capital first letter: no
    functions, modules or private names, which packages re-export freely) in the package and
    every submodule at any depth (``sklearn.**`` covers
    ``sklearn.linear_model._logistic.LogisticRegression``, not ``sklearn.metrics._scorer.
    partial``); a class it or a profile admits is not to be called with arguments
    (:meth:`allows_constructor`). Neither
    ever admits a never-allowed name or a known gadget inside the package (the lists above win
    over any allow). Exact entries compare the joined ``module.name`` string.
    """

    exact: frozenset[str] = frozenset()
    modules: frozenset[str] = frozenset()  # from "module.*"
    packages: frozenset[str] = frozenset()  # from "package.**"
    profiled: frozenset[str] = frozenset()  # exact entries that came from profiles only

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
        packages = set(self.packages)
        for raw in extra:
            entry = raw.strip() if isinstance(raw, str) else raw
            if not isinstance(entry, str) or not _ENTRY_RE.fullmatch(entry):
                raise ValueError(
                    f"invalid pickle allowlist entry {raw!r}: expected 'module.name', "
                    "'module.*' or 'package.**'"
                )
            module, _, name = entry.rpartition(".")
            if _is_dunder(name):
                raise ValueError(f"pickle allowlist entry {entry!r} names a dunder attribute")
            if _never(entry, deep=name == "**") or (name == "*" and module == "builtins"):
                raise ValueError(
                    f"pickle allowlist entry {entry!r} is never allowed: it can run code"
                )
            if name == "**":
                if _too_deep(module):
                    raise ValueError(
                        f"pickle allowlist entry {entry!r} is never allowed: {module} is the "
                        "standard library or too large to allow whole (name its classes, or "
                        "use a profile in models.allow)"
                    )
                packages.add(module)
            elif name == "*":
                modules.add(module)
            else:
                exact.add(entry)
        return Allowlist(
            exact=frozenset(exact),
            modules=frozenset(modules),
            packages=frozenset(packages),
            profiled=self.profiled,
        )

    def with_profiles(self, names: Iterable[str]) -> Allowlist:
        """A copy with the curated profiles ``names`` added (:mod:`modelseal.models.profiles`);
        raises ValueError for an unknown name."""
        from modelseal.models.profiles import PROFILES

        exact = set(self.exact)
        profiled = set(self.profiled)
        for name in names:
            entries = PROFILES.get(name)
            if entries is None:
                raise ValueError(
                    f"unknown allowlist profile {name!r} (known: {', '.join(sorted(PROFILES))})"
                )
            profiled.update(e for e in entries if e not in self.exact)
            exact.update(entries)
        return Allowlist(
            exact=frozenset(exact),
            modules=self.modules,
            packages=self.packages,
            profiled=frozenset(profiled),
        )

    def allows_constructor(self, module: str, name: str) -> bool:
        """Whether a pickle may call the class ``module.name`` with arguments (REDUCE, INST,
        OBJ): allowed, and not admitted only by a profile or a ``**`` pattern (their libraries
        pickle those with ``__new__`` + BUILD; their constructors may open files, e.g.
        Booster(model_file=…)) unless it is a reviewed constructor-safe class."""
        qualified = f"{module}.{name}"
        if not self.allows(module, name):
            return False
        if not constructor_checked(qualified):
            return True
        if qualified in self.profiled:
            return False
        return qualified in self.exact or module in self.modules

    def allows(self, module: str, name: str) -> bool:
        """Whether importing ``name`` from ``module`` is allowed."""
        if f"{module}.{name}" in self.exact:
            return True
        deep = module not in self.modules
        if deep and not (self._in_package(module) and _CLASS_NAME_RE.fullmatch(name)):
            return False
        # a pattern never admits what no exact entry could name (e.g. torch.* and torch.load)
        return (
            _WILDCARD_NAME_RE.fullmatch(name) is not None
            and not _is_dunder(name)
            and not _never(f"{module}.{name}", deep=deep)
        )

    def _in_package(self, module: str) -> bool:
        packages = self.packages
        if not packages:
            return False
        if module in packages:
            return True
        dot = module.find(".")
        while dot > 0:
            if module[:dot] in packages:
                return True
            dot = module.find(".", dot + 1)
        return False
