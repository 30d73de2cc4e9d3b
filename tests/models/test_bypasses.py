"""The malicious corpus: every published scanner bypass we found, 100 % flagged (issue 15 §1).

Each case names its technique and source (advisory id or thread). They are scanned under the most
permissive policy this gate allows: ``pickle: scan``, every curated profile, and ``**`` patterns
on the ML packages whose gadgets the bypasses reach for (numpy, sklearn, joblib, xgboost,
lightgbm). Payloads are written as raw opcodes, so nothing is imported or executed to build them
(several target modules do not even exist on this Python: that makes no difference to a scanner
that must refuse what it does not know).

Sources (GitHub advisories of mmaitre314/picklescan unless noted):
- INST opcode import: picklescan issue #13 (Doyensec, 2023).
- memo confusion mixing PUT and MEMOIZE: picklescan issue #14 (Doyensec, 2023).
- ``numpy.__builtins__`` + ``dict.get``; dotted GLOBAL names walking ``numpy.prod.os.system`` and
  ``core._internal.sys.modules``: protectai/modelscan issue #89.
- BUILD monkey-patching an allowed function, then STACK_GLOBAL on its attributes:
  protectai/modelscan issue #85; the same with ``numpy.size`` state: modelscan issue #330.
- ``pkgutil.resolve_name``: GHSA-vvpj-8cmc-gx39; ``importlib.import_module`` / ``marshal.loads``:
  picklescan PR #74 and issue #66.
- ``pip.main``: CVE-2025-1716; ``ensurepip._run_pip``: GHSA-xp4f-hrf8-rxw7; ``venv``: fickling
  PR #210 (GHSA-vqmv-47xg-9wpr).
- ``timeit.timeit``: GHSA-v7x6-rv5q-mhwc; ``cProfile.run`` / ``profile.run`` / ``pdb`` / ``bdb`` /
  ``trace`` / ``doctest``: GHSA-46h3-79wf-xr6c, GHSA-4675-36f9-wf6r (via fickling PR #210).
- ``_operator.attrgetter`` / ``methodcaller``: GHSA-m273-6v24-x4m4, GHSA-955r-x9j8-7rhh.
- nested ``pickle.loads`` / ``_pickle.loads``: GHSA-84r2-jw7c-4r5q, modelscan issue #267.
- ``distutils.file_util.write_file``, ``_io.FileIO``, ``shutil``: CVE-2025-10155/10156; ``asyncio``
  subprocess transport: CVE-2025-10157 (JFrog; via fickling PR #210).
- ``idlelib`` / ``lib2to3``: GHSA-r8g5-cgf2-4m4m; ``http.client`` / ``ssl``: GHSA-hgrh-qx5j-jfwx.
- ``uuid._get_command_stdout``, ``imaplib.IMAP4_stream``, ``_pyrepl.pager``,
  ``_osx_support._read_output``, ``_aix_support``: CVE-2026-56315 (picklescan 1.0.4).
- ``logging.FileHandler``: CVE-2026-56304; ``mailcap.findmatch``: protectai/modelscan PR #346.
- ``numpy.f2py.crackfortran.getlincoef``: fickling PR #210; ``functools.partial``: same.
- ``collections.defaultdict`` factory edges: promptfoo/modelaudit PR #1063 (the factory global).
- NEWOBJ_EX constructors and copyreg extension codes (EXT1/2/4): promptfoo/modelaudit PR #1636.
- STACK_GLOBAL with non-string operands: modelaudit PR #330 (STACK_GLOBAL/memo tracking).
- ``runpy``, ``code``, ``pydoc``, ``torch._inductor``, ``torch.fx`` code loading: issue 15's list.
- Non-standard file extension: CVE-2025-1889; zip flag bits / bad CRC: CVE-2025-1945; zip file
  name manipulation: CVE-2025-1944 (Sonatype).
- torch ``_load_from_bytes`` wrapping a malicious checkpoint, and joblib array bytes that
  ``pickle.load`` would run: this change's own descents (issue 15 §1).
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import pickle
import pickletools
import struct
import subprocess
import sys
import tarfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.tools import require

from modelseal.models.allowlist import Allowlist
from modelseal.models.profiles import PROFILES
from modelseal.models.scan import scan_file

#: The most permissive allowlist a policy can ask for.
PERMISSIVE = (
    Allowlist.default()
    .with_profiles(PROFILES)
    .extended(["numpy.**", "sklearn.**", "joblib.**", "xgboost.**", "lightgbm.**"])
)
FLAGGING = {"unsafe-global", "dynamic-global", "indirect-call", "global-mutation",
            "pickle-extension", "unparsable", "trailing-data", "unsafe-call",
            "unsafe-state"}  # fmt: skip


def g(module: str, name: str) -> bytes:
    """GLOBAL (protocol 0 text)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def u(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def call(module: str, name: str, *args: bytes) -> bytes:
    """module.name(*args) at protocol 4, ending the pickle."""
    return b"\x80\x04" + g(module, name) + b"(" + b"".join(args) + b"tR."


@dataclass(frozen=True)
class Case:
    name: str
    source: str
    data: bytes
    filename: str = "evil.pkl"


def _cases() -> list[Case]:
    cases = [
        Case("INST imports and calls in one opcode", "picklescan#13",
             b"(S'echo pwned'\nios\nsystem\n."),
        Case("memo confusion: PUT and MEMOIZE mixed", "picklescan#14",
             b"\x80\x04" + u("os") + b"q\x00" + u("system") + b"q\x01" + u("torch._utils")
             + b"\x94" + u("_rebuild_tensor_v2") + b"\x94h\x00h\x01\x93" + u("id") + b"\x85R."),
        Case("numpy.__builtins__ via dict.get", "modelscan#89",
             b"\x80\x05" + g("builtins", "dict.get") + g("numpy", "__builtins__")
             + b"Vexec\n\x86RV__import__('os').system('id')\n\x85R."),
        Case("dotted GLOBAL walking numpy.prod to os.system", "modelscan#89",
             b"\x80\x05" + g("numpy", "prod.os.system") + b"Vid\n\x85R."),
        Case("dotted GLOBAL into numpy.core._internal.sys.modules", "modelscan#89",
             b"\x80\x05" + g("numpy", "core._internal.sys.modules") + b"."),
        Case("BUILD monkey-patches numpy.prod, STACK_GLOBAL reads it back", "modelscan#85",
             b"\x80\x05" + g("numpy", "prod") + b"N(Va\nVos\nd\x86b0" + g("numpy", "prod.a")
             + b"p0\n0" + b"g0\nVsystem\n\x93Vid\n\x85R."),
        Case("BUILD on numpy.size with __builtins__ state", "modelscan#330",
             b"\x80\x04" + u("numpy") + u("size") + b"\x93\x94\x94" + u("numpy")
             + u("__builtins__") + b"\x93\x94\x94h\x01}}" + u("shape") + b"h\x03s\x86bh\x01h\x01"
             + u("eval") + b"\x86R" + u("__import__('os').system('id')") + b"\x85R."),
        Case("pkgutil.resolve_name", "GHSA-vvpj-8cmc-gx39", call("pkgutil", "resolve_name", u("os:system"))),
        Case("importlib.import_module", "picklescan PR #74", call("importlib", "import_module", u("os"))),
        Case("marshal.loads of a code object", "picklescan PR #74", call("marshal", "loads", b"C\x01\x00")),
        Case("pip.main", "CVE-2025-1716", call("pip", "main", b"(" + u("install") + u("evil") + b"l")),
        Case("ensurepip._run_pip", "GHSA-xp4f-hrf8-rxw7", call("ensurepip", "_run_pip", b"]")),
        Case("venv.create", "GHSA-vqmv-47xg-9wpr", call("venv", "create", u("/tmp/x"))),
        Case("timeit.timeit", "GHSA-v7x6-rv5q-mhwc", call("timeit", "timeit", u("__import__('os').system('id')"))),
        Case("cProfile.run", "GHSA-46h3-79wf-xr6c", call("cProfile", "run", u("__import__('os')"))),
        Case("profile.run", "GHSA-46h3-79wf-xr6c", call("profile", "run", u("__import__('os')"))),
        Case("pdb.run", "GHSA-4675-36f9-wf6r", call("pdb", "run", u("__import__('os')"))),
        Case("bdb.Bdb.run", "GHSA-4675-36f9-wf6r", call("bdb", "Bdb.run", u("x"))),
        Case("trace.Trace.run", "GHSA-4675-36f9-wf6r", call("trace", "Trace.run", u("x"))),
        Case("doctest.debug_script", "GHSA-4675-36f9-wf6r", call("doctest", "debug_script", u("x"))),
        Case("_operator.attrgetter", "GHSA-m273-6v24-x4m4", call("_operator", "attrgetter", u("system"))),
        Case("operator.methodcaller", "GHSA-955r-x9j8-7rhh", call("operator", "methodcaller", u("system"))),
        Case("nested pickle.loads", "GHSA-84r2-jw7c-4r5q", call("pickle", "loads", b"C\x02N.")),
        Case("nested _pickle.loads", "modelscan#267", call("_pickle", "loads", b"C\x02N.")),
        Case("distutils.file_util.write_file", "CVE-2025-10155", call("distutils.file_util", "write_file", u("/tmp/x"), b"]")),
        Case("_io.FileIO", "CVE-2025-10156", call("_io", "FileIO", u("/etc/passwd"), u("w"))),
        Case("shutil.rmtree", "CVE-2025-10156", call("shutil", "rmtree", u("/"))),
        Case("asyncio subprocess transport", "CVE-2025-10157",
             call("asyncio.unix_events", "_UnixSubprocessTransport", u("id"))),
        Case("idlelib.run", "GHSA-r8g5-cgf2-4m4m", call("idlelib.pyshell", "main")),
        Case("lib2to3.main", "GHSA-r8g5-cgf2-4m4m", call("lib2to3.main", "main", u("x"))),
        Case("http.client.HTTPConnection", "GHSA-hgrh-qx5j-jfwx", call("http.client", "HTTPConnection", u("evil"))),
        Case("ssl.get_server_certificate", "GHSA-hgrh-qx5j-jfwx", call("ssl", "get_server_certificate", u("x"))),
        Case("uuid._get_command_stdout", "CVE-2026-56315", call("uuid", "_get_command_stdout", u("id"))),
        Case("imaplib.IMAP4_stream", "CVE-2026-56315", call("imaplib", "IMAP4_stream", u("id"))),
        Case("_pyrepl.pager.pipe_pager", "CVE-2026-56315", call("_pyrepl.pager", "pipe_pager", u("x"), u("id"))),
        Case("_osx_support._read_output", "CVE-2026-56315", call("_osx_support", "_read_output", u("id"))),
        Case("_aix_support._read_cmd_output", "CVE-2026-56315", call("_aix_support", "_read_cmd_output", u("id"))),
        Case("logging.FileHandler", "CVE-2026-56304", call("logging", "FileHandler", u("/tmp/x"))),
        Case("mailcap.findmatch", "modelscan PR #346", call("mailcap", "findmatch", b"}", u("text/plain"))),
        Case("numpy.f2py.crackfortran.getlincoef", "fickling PR #210",
             call("numpy.f2py.crackfortran", "getlincoef", u("__import__('os')"), b"}")),
        Case("functools.partial around os.system", "fickling PR #210",
             call("functools", "partial", g("os", "system"), u("id"))),
        Case("defaultdict whose factory is os.system", "modelaudit PR #1063",
             call("collections", "defaultdict", g("os", "system"))),
        Case("NEWOBJ_EX constructor", "modelaudit PR #1636",
             b"\x80\x04" + g("subprocess", "Popen") + b"(" + u("id") + b"t}\x92."),
        Case("copyreg extension code (EXT1)", "modelaudit PR #1636", b"\x80\x02\x82\x01)R."),
        Case("STACK_GLOBAL on a non-string (int) operand", "modelaudit PR #330",
             b"\x80\x04K\x01" + u("system") + b"\x93."),
        Case("runpy.run_path", "issue 15", call("runpy", "run_path", u("/tmp/x.py"))),
        Case("code.InteractiveInterpreter.runsource", "issue 15",
             call("code", "InteractiveInterpreter.runsource", u("x"))),
        Case("pydoc.pipepager", "issue 15", call("pydoc", "pipepager", u("x"), u("id"))),
        Case("torch._inductor code cache", "issue 15",
             call("torch._inductor.codecache", "PyCodeCache.load", u("import os"))),
        Case("torch.fx generated code (exec)", "issue 15",
             call("torch.fx.graph_module", "reduce_graph_module", b"}", u("import os"))),
        Case("sklearn dataset loader inside sklearn.**", "gadget list (this change)",
             call("sklearn.datasets._base", "load_files", u("/etc"))),
        Case("joblib.load inside joblib.**", "gadget list (this change)",
             call("joblib.numpy_pickle", "load", u("/tmp/evil.pkl"))),
        Case("joblib NDArrayWrapper (np.load of a named file)", "gadget list (this change)",
             b"\x80\x04" + g("joblib.numpy_pickle_compat", "NDArrayWrapper") + b")\x81."),
        Case("numpy.load inside numpy.**", "gadget list (this change)",
             call("numpy.lib._npyio_impl", "load", u("/tmp/x.npy"))),
        Case("xgboost tracker server inside xgboost.**", "gadget list (this change)",
             call("xgboost.tracker", "RabitTracker", b"K\x02")),
        Case("non-standard file extension", "CVE-2025-1889",
             call("os", "system", u("id")), filename="weights.txt"),
    ]  # fmt: skip
    return cases


def _zip_tricks() -> list[Case]:
    evil = call("os", "system", u("id"))
    out: list[Case] = []

    def archive(*members: tuple[str, bytes]) -> bytes:
        import io

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("archive/version", b"3\n")
            for name, data in members:
                zf.writestr(name, data)
        return buf.getvalue()

    benign = b"\x80\x02}q\x00."
    # CVE-2025-1945: flag bits changed (encrypted bit, here) and CRC broken on data.pkl
    data = bytearray(archive(("archive/data.pkl", evil)))
    local = data.index(b"PK\x03\x04" + data[4:6], data.index(b"archive/data.pkl") - 40)
    struct.pack_into("<H", data, local + 6, 1)  # general-purpose flags: encrypted
    out.append(Case("zip flag bits changed on the pickle member", "CVE-2025-1945",
                    bytes(data), "model.pt"))  # fmt: skip
    data = bytearray(archive(("archive/data.pkl", evil)))
    cd = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 16, 0xDEADBEEF)  # central directory CRC
    out.append(Case("zip member with a bad CRC", "CVE-2025-1945", bytes(data), "model.pt"))
    # CVE-2025-1944: the name differs between local header and central directory, and
    # duplicate names (a reader that takes the first vs the last)
    with pytest.warns(UserWarning):
        dup = archive(("archive/data.pkl", benign), ("archive/data.pkl", evil))
    out.append(Case("duplicate zip member names", "CVE-2025-1944", dup, "model.pt"))
    data = bytearray(archive(("archive/data.pkl", evil)))
    at = data.index(b"archive/data.pkl")  # the local header's copy of the name
    data[at : at + 16] = b"archive/data.pkx"
    out.append(Case("zip local name differs from the central directory", "CVE-2025-1944",
                    bytes(data), "model.pt"))  # fmt: skip
    return out


def _descents() -> list[Case]:
    # torch.storage._load_from_bytes(legacy torch.save of an object that runs os.system)
    legacy_magic = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."
    inner = (
        legacy_magic
        + b"\x80\x02M\xe9\x03."
        + b"\x80\x02}q\x00."
        + b"\x80\x02" + g("os", "system") + b"X\x02\x00\x00\x00id\x85R."
        + b"\x80\x02]q\x00."
    )  # fmt: skip
    outer = (
        b"\x80\x04" + g("torch.storage", "_load_from_bytes")
        + b"B" + struct.pack("<I", len(inner)) + inner + b"\x85R."
    )  # fmt: skip
    return [
        Case("malicious checkpoint inside torch.storage._load_from_bytes", "issue 15 §1", outer)
    ]


CASES = _cases() + _zip_tricks() + _descents()


def test_corpus_is_large_and_distinct() -> None:
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)
    assert all(c.source for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_published_bypass_is_flagged(tmp_path: Path, case: Case) -> None:
    path = tmp_path / case.filename
    path.write_bytes(case.data)
    issues = scan_file(path, PERMISSIVE).issues
    flagging = [i for i in issues if i.kind in FLAGGING]
    assert flagging, f"{case.name} ({case.source}) passed: {[(i.kind, i.title) for i in issues]}"


# --------------------------------------------------------------------------------------------
# Bypasses found by review of the scanner itself (issue 15 review, /tmp/review15s): each file is
# generated here as the reviewer's generator did; the real loader is run on it in a subprocess
# where that is cheap, as evidence that it does run code (it only creates a marker file).


def lib(name: str) -> Any:
    require(importlib.util.find_spec(name) is not None, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def flagged(path: Path, allow: Allowlist = PERMISSIVE) -> list[str]:
    return [f"{i.kind}: {i.title}" for i in scan_file(path, allow).issues if i.kind in FLAGGING]


def runs_code(path: Path, loader: str, marker: Path) -> bool:
    """Whether ``loader`` (pickle / joblib) of ``path`` creates ``marker``: the evidence that
    the case is real."""
    code = {
        "pickle": "import pickle,sys; pickle.load(open(sys.argv[1],'rb'))",
        "joblib": "import joblib,sys; joblib.load(sys.argv[1])",
        "numpy": "import numpy,sys; numpy.load(sys.argv[1], allow_pickle=True)",
    }[loader]
    subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=path.parent, capture_output=True,
        timeout=120, check=False,
    )  # fmt: skip
    return marker.exists()


def touch(marker: Path) -> bytes:
    cmd = f"touch {marker}".encode()
    return b"cos\nsystem\n" + b"X" + struct.pack("<I", len(cmd)) + cmd + b"\x85R."


class _NoTell(io.RawIOBase):
    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.data += b
        return len(b)

    def tell(self) -> int:
        raise io.UnsupportedOperation("tell")


def _unaligned_prefix(n: int) -> tuple[bytes, int]:
    """joblib.dump of an unaligned uint8 array of n bytes, cut just after its wrapper's BUILD,
    and how many MEMOIZE opcodes come before."""
    np, joblib = lib("numpy"), lib("joblib")
    out = _NoTell()
    joblib.dump(np.zeros(n, np.uint8), out, protocol=4)
    raw = bytes(out.data)
    prefix = raw[: raw.rindex(b"ub") + 2]
    memoize = sum(1 for op, _, _ in pickletools.genops(prefix + b".") if op.name == "MEMOIZE")
    return prefix, memoize


def _memo_drift_payload(marker: Path, n: int, memoize: int) -> bytes:
    """n bytes that pickle.load runs: a BINPUT to a key the outer memo already holds, then
    MEMOIZE (a shadow memo would count one key too many), BINGET, then os.system."""
    cmd = f"touch {marker}".encode()
    body = (b"q\x00" + b"\x94" + b"h" + bytes([memoize]) + b"0"
            + b"cos\nsystem\n" + b"X" + struct.pack("<I", len(cmd)) + cmd + b"\x85R.")  # fmt: skip
    pad = n - len(body)
    assert pad >= 0
    if pad % 2:
        body = body[:-1] + b"0."
        pad -= 1
    return body[:5] + b"N0" * (pad // 2) + body[5:]


def test_review_b1_joblib_wrapper_build_inside_a_frame_fails_closed(tmp_path: Path) -> None:
    """A wrapper BUILD that is not the last byte of its FRAME: joblib.load reads the array from
    after the frame while pickle runs the rest of the frame (reviewer's b3)."""
    marker = tmp_path / "PWNED"
    prefix, memoize = _unaligned_prefix(101)
    payload = _memo_drift_payload(marker, 101, memoize)
    assert prefix[2] == 0x95
    prefix = prefix[:3] + struct.pack("<Q", len(prefix) - 11 + len(payload)) + prefix[11:]
    filler = b"." + b"N." * ((len(payload) - 1) // 2)
    path = tmp_path / "frame_desync.joblib"
    path.write_bytes(prefix + payload + filler)
    assert any("FRAME" in f for f in flagged(path)), flagged(path)
    assert runs_code(path, "joblib", marker)


def test_review_b1_joblib_object_array_frame_desync_fails_closed(tmp_path: Path) -> None:
    """An object array's wrapper BUILD inside a FRAME: joblib.load reads the nested pickle from
    after the frame with a fresh memo (reviewer's b8, also zlib-compressed)."""
    np, joblib = lib("numpy"), lib("joblib")
    marker = tmp_path / "PWNED"
    bio = io.BytesIO()
    joblib.dump(np.array([None], dtype=object), bio, protocol=4)
    raw = bio.getvalue()
    prefix = raw[: raw.index(b"ub\x80\x05") + 2]
    rest = b"N."
    prefix = prefix[:3] + struct.pack("<Q", len(prefix) - 11 + len(rest)) + prefix[11:]
    cmd = f"touch {marker}".encode()
    tail = (b"\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93"
            + b"X" + struct.pack("<I", len(cmd)) + cmd + b"\x85R.")  # fmt: skip
    path = tmp_path / "object_frame.joblib"
    path.write_bytes(prefix + rest + tail)
    assert any("FRAME" in f for f in flagged(path)), flagged(path)
    import zlib

    zpath = tmp_path / "object_frame_z.joblib"
    zpath.write_bytes(zlib.compress(path.read_bytes()))  # joblib's zlib compressor
    assert any("FRAME" in f for f in flagged(zpath)), flagged(zpath)
    assert runs_code(path, "joblib", marker)


def test_review_b1_shadow_memo_key_count_drift_is_flagged(tmp_path: Path) -> None:
    """pickle.load of an unaligned joblib file whose array bytes are opcodes that BINPUT to a
    key the outer memo holds, then MEMOIZE: the old shadow re-read counted one key too many
    and resolved BINGET to a harmless value (reviewer's b2)."""
    marker = tmp_path / "PWNED"
    prefix, memoize = _unaligned_prefix(101)
    path = tmp_path / "drift.pkl"
    path.write_bytes(prefix + _memo_drift_payload(marker, 101, memoize) + b".")
    found = flagged(path)
    assert any("os.system" in f and "pickle.load" in f for f in found), found
    assert runs_code(path, "pickle", marker)


def _object_pickleload(marker: Path) -> bytes:
    """A joblib object-array stream whose nested pickle, read by pickle.load with the OUTER
    memo, fetches "os"/"system" (stored up front) where joblib's fresh memo has harmless
    strings (reviewer's b9)."""
    np, joblib = lib("numpy"), lib("joblib")
    bio = io.BytesIO()
    joblib.dump(np.array([None], dtype=object), bio, protocol=4)
    raw = bio.getvalue()
    body = raw[11 : raw.index(b"ub\x80\x05") + 2]
    assert body.count(b"h\x06") == 1
    body = body.replace(b"h\x06", b"h\x08")
    outer = b"\x80\x04" + b"\x8c\x02os\x94\x8c\x06system\x94" + b"00" + body
    cmd = f"touch {marker}".encode()
    inner = (b"\x8c\x05numpy\x94\x8c\x05dtype\x94h\x00h\x01\x93"
             + b"X" + struct.pack("<I", len(cmd)) + cmd + b"\x85R.")  # fmt: skip
    return outer + inner + b"."


def test_review_b2_joblib_object_array_read_by_pickle_load_is_flagged(tmp_path: Path) -> None:
    """pickle.load of a joblib object-array file (reviewer's b9)."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "object_pickleload.pkl"
    path.write_bytes(_object_pickleload(marker))
    found = flagged(path)
    assert any("os.system" in f for f in found), found
    assert runs_code(path, "pickle", marker)


def test_review_b2_joblib_rules_do_not_apply_to_numpy_files(tmp_path: Path) -> None:
    """The same stream as an .npy object array: numpy.load reads it with pickle.load, never
    skipping array bytes (reviewer's b10): a wrapper BUILD outside a joblib stream fails
    closed."""
    marker = tmp_path / "PWNED"
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header = header.ljust(117, b" ") + b"\n"
    path = tmp_path / "evil.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header
                     + _object_pickleload(marker))  # fmt: skip
    found = flagged(path)
    assert any("not detected as joblib" in f for f in found), found
    assert runs_code(path, "numpy", marker)


def test_review_b4_sklearn_deep_pattern_admits_only_classes(tmp_path: Path) -> None:
    """``sklearn.**`` alone: re-exported functions import os and fetch os.system
    (check_library_installed, _check_response_method), partial wraps it, and BUILD plants it
    as __sklearn_clone__, which sklearn.base.clone calls (reviewer's b1b)."""
    lib("sklearn")
    marker = tmp_path / "PWNED"

    def su(text: str) -> bytes:
        data = text.encode()
        return b"X" + struct.pack("<I", len(data)) + data

    ossys = (g("sklearn.utils.validation", "_check_response_method")
             + g("sklearn.utils._set_output", "check_library_installed") + su("os") + b"\x85R"
             + su("system") + b"\x86R")  # fmt: skip
    data = (b"\x80\x02" + g("sklearn.base", "clone")
            + g("sklearn.linear_model._logistic", "LogisticRegression") + b")R"
            + b"}" + su("__sklearn_clone__") + g("sklearn.metrics._scorer", "partial") + ossys
            + su(f"touch {marker}") + b"\x86R" + b"sb" + b"\x85R.")  # fmt: skip
    path = tmp_path / "deep.pkl"
    path.write_bytes(data)
    deep = Allowlist.default().extended(["sklearn.**"])
    found = flagged(path, deep)
    for name in ("sklearn.base.clone", "sklearn.metrics._scorer.partial",
                 "sklearn.utils._set_output.check_library_installed",
                 "sklearn.utils.validation._check_response_method"):  # fmt: skip
        assert any(name in f for f in found), (name, found)
    assert any(f.startswith("unsafe-state") and "__sklearn_clone__" in f for f in found), found
    assert deep.allows("sklearn.linear_model._logistic", "LogisticRegression")
    for module, name in (("sklearn", "_importlib"), ("sklearn.utils", "check_memory"),
                         ("sklearn.utils._param_validation", "partial")):  # fmt: skip
        assert not deep.allows(module, name), (module, name)
    numpy_deep = Allowlist.default().extended(["numpy.**"])
    assert not numpy_deep.allows("numpy._core.multiarray", "fromfile")
    assert (
        not Allowlist.default()
        .extended(["joblib.**"])
        .allows("joblib.numpy_pickle", "NDArrayWrapper")
    )
    assert runs_code(path, "pickle", marker)


def test_review_b5_numpy_random_ctor_arguments_are_calls(tmp_path: Path) -> None:
    """numpy.random._pickle.__generator_ctor(x, f) calls f(x): with the numpy profile, a
    callable built from allowed parts runs (reviewer's b1)."""
    lib("sklearn")
    marker = tmp_path / "PWNED"

    def su(text: str) -> bytes:
        data = text.encode()
        return b"X" + struct.pack("<I", len(data)) + data

    data = (b"\x80\x02" + g("numpy.random._pickle", "__generator_ctor") + su(f"touch {marker}")
            + g("sklearn.utils.validation", "_check_response_method")
            + g("sklearn.utils._set_output", "check_library_installed") + su("os") + b"\x85R"
            + su("system") + b"\x86R" + b"\x86R.")  # fmt: skip
    path = tmp_path / "ctor.pkl"
    path.write_bytes(data)
    found = flagged(path)
    assert any(f.startswith("unsafe-call") and "__generator_ctor" in f for f in found), found
    for name in ("__bit_generator_ctor", "__randomstate_ctor"):
        evil = (b"\x80\x02" + g("numpy.random._pickle", name) + g("collections", "Counter")
                + b"\x85R.")  # fmt: skip
        path.write_bytes(evil)
        assert any(f.startswith("unsafe-call") for f in flagged(path)), name
    path.write_bytes(data)
    assert runs_code(path, "pickle", marker)


def test_review_b5_real_numpy_generators_pass(tmp_path: Path) -> None:
    np = lib("numpy")
    for i, value in enumerate((np.random.default_rng(0), np.random.RandomState(0),
                               np.random.Generator(np.random.PCG64DXSM(1)))):  # fmt: skip
        for proto in (2, 5):
            path = tmp_path / f"rng{i}_{proto}.pkl"
            path.write_bytes(pickle.dumps(value, protocol=proto))
            assert flagged(path) == [], (value, proto, flagged(path))


def test_review_b6_load_from_bytes_hidden_in_a_persistent_id_is_flagged(tmp_path: Path) -> None:
    """The _load_from_bytes reference copied out of a ('module', ref, None, None) persistent id
    twice: one copy called on benign bytes, the other handed to __generator_ctor (reviewer's
    b6)."""
    magic = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."
    header = pickle.dumps(1001, protocol=2) + pickle.dumps(
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}, protocol=2
    )
    benign = magic + header + pickle.dumps("x", protocol=2) + pickle.dumps([], protocol=2)

    def su(text: str) -> bytes:
        data = text.encode()
        return b"X" + struct.pack("<I", len(data)) + data

    evil = "cos\nsystem\n(S'touch PWNED'\ntR."
    obj = (b"\x80\x02" + b"(" + su("module") + g("torch.storage", "_load_from_bytes") + b"NNt"
           + b"q\x01" + b"Q" + b"B" + struct.pack("<I", len(benign)) + benign + b"\x85R" + b"0"
           + g("numpy.random._pickle", "__generator_ctor")
           + g("_codecs", "encode") + su(evil) + su("latin1") + b"\x86R"
           + b"h\x01Q" + b"\x86R.")  # fmt: skip
    path = tmp_path / "persid.pt"
    path.write_bytes(magic + header + obj + pickle.dumps([], protocol=2))
    found = flagged(path)
    assert any("_load_from_bytes" in f and "other than" in f for f in found), found
    # the same reference in a tuple, or fetched from the memo into an argument
    for body in (
        g("torch.storage", "_load_from_bytes") + b"\x85.",
        g("torch.storage", "_load_from_bytes") + b"q\x00" + g("builtins", "list") + b"h\x00\x85R.",
    ):
        path.write_bytes(b"\x80\x02" + body)
        assert any("other than" in f for f in flagged(path)), body


def test_review_b7_profile_classes_are_not_called_through_their_constructor(
    tmp_path: Path,
) -> None:
    """xgboost/lightgbm Booster(None, None, '/etc/passwd') opens a file: the libraries pickle
    their classes with __new__ + BUILD, so a REDUCE of a profile class is refused (reviewer's
    b7); the judge admits the call only for a class named exactly in the policy."""
    for module in ("xgboost.core", "lightgbm.basic"):
        path = tmp_path / f"{module}.pkl"
        path.write_bytes(g(module, "Booster") + b"(NNS'/etc/passwd'\ntR.")
        issues = scan_file(path, PERMISSIVE).issues
        assert any(i.detail.get("use") == "constructor" for i in issues), issues
        judge = Allowlist().extended([]).with_profiles(PROFILES)
        assert judge.allows(module, "Booster")
        assert not judge.allows_constructor(module, "Booster")
        assert Allowlist().extended([f"{module}.Booster"]).allows_constructor(module, "Booster")


def test_review_b8_nested_payload_is_read_as_torch_load_reads_it(tmp_path: Path) -> None:
    """A _load_from_bytes payload that is a tar (or anything not a zip): torch.load of bytes
    never reads a tar, it runs the legacy pickles from offset 0 (reviewer's b4/b5)."""
    evil = b"cos\nsystem\n(S'touch PWNED'\ntR."
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name in (evil.decode("latin-1"), "sys_info", "pickle", "tensors", "storages"):
            info = tarfile.TarInfo(name)
            data = pickle.dumps(0, protocol=2)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    inner = buf.getvalue()
    assert inner.startswith(evil)
    polyglot = (evil.ljust(257, b"\0") + b"ustar" + b"\0" * 250)[:512]
    for payload in (inner, polyglot, evil.ljust(512, b"\0")):
        path = tmp_path / "nested.pkl"
        path.write_bytes(b"\x80\x02" + g("torch.storage", "_load_from_bytes") + b"B"
                         + struct.pack("<I", len(payload)) + payload + b"\x85R.")  # fmt: skip
        found = flagged(path)
        assert any("os.system" in f for f in found), found


def test_review_protocol_0_and_1_instances_of_allowed_classes_pass(tmp_path: Path) -> None:
    """copyreg._reconstructor(cls, builtins.object, None) is what NEWOBJ does at protocol 2+:
    an allowed class pickled at protocol 0/1 passes."""
    sklearn = lib("sklearn")
    np = lib("numpy")
    from sklearn.linear_model import LogisticRegression

    x = np.arange(20.0).reshape(10, 2)
    model = LogisticRegression().fit(x, np.arange(10) % 2)
    assert sklearn
    for proto in (0, 1):
        path = tmp_path / f"lr{proto}.pkl"
        path.write_bytes(pickle.dumps(model, protocol=proto))
        allow = Allowlist.default().with_profiles(["sklearn"])
        assert flagged(path, allow) == [], flagged(path, allow)


def test_review_memoized_legacy_payload_is_charged_per_scan(tmp_path: Path) -> None:
    """One legacy payload memoized and loaded N times is scanned N times: each scan is charged
    to the file's byte budget, so a small file cannot buy unbounded scanning."""
    from modelseal.models.limits import ScanLimits

    magic = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."
    payload = magic + pickle.dumps(1001, protocol=2) + b"\x80\x02X" + struct.pack("<I", 4000)
    payload += b"a" * 4000 + b"." + pickle.dumps({}, protocol=2) + pickle.dumps([], protocol=2)
    payload += pickle.dumps([], protocol=2)
    calls = b"h\x00h\x01\x85R0" * 200
    data = (b"\x80\x02" + g("torch.storage", "_load_from_bytes") + b"q\x00"
            + b"B" + struct.pack("<I", len(payload)) + payload + b"q\x01" + b"\x85R0" + calls
            + b"N.")  # fmt: skip
    path = tmp_path / "rescan.pkl"
    path.write_bytes(data)
    assert [i for i in scan_file(path, PERMISSIVE).issues if i.kind in FLAGGING] == []
    limits = ScanLimits(max_inflated_bytes=200_000)
    issues = scan_file(path, PERMISSIVE, limits=limits).issues
    assert any(i.kind == "scan-limit" for i in issues), issues


def test_review_memmap_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "mm.pkl"
    path.write_bytes(b"\x80\x02" + g("numpy", "memmap") + b")R.")
    found = flagged(path)
    assert any("numpy.asarray" in f for f in found), found


def test_review_dunder_state_key_is_found_in_any_setitems_batch(tmp_path: Path) -> None:
    """A BUILD state dict of more than a thousand keys (pickle batches SETITEMS by 1000): a
    __dunder__ key in a later batch is still found."""
    batch1 = b"(" + b"".join(u(f"k{i}") + b"N" for i in range(1000)) + b"u"
    batch2 = b"(" + u("__reduce__") + b"N" + b"u"
    path = tmp_path / "big_state.pkl"
    path.write_bytes(b"\x80\x04" + g("builtins", "set") + b")R}" + batch1 + batch2 + b"b.")
    assert any(f.startswith("unsafe-state") for f in flagged(path)), flagged(path)


# --------------------------------------------------------------------------------------------
# Second review (/tmp/review15t): generated here as the reviewer's mk*.py did.


def _dtype(ts: str, state: bytes) -> bytes:
    return g("numpy", "dtype") + u(ts) + b"\x89\x88\x87R(" + state + b"tb"


def _dtype_plain(ts: str, flags: int) -> bytes:
    return _dtype(ts, b"K\x03" + u("|") + b"NNN" + b"J\xff\xff\xff\xff" * 2 + bytes([75, flags]))


def _dtype_struct(elsize: int, fields: list[tuple[str, bytes, int]], flags: int) -> bytes:
    names = b"(" + b"".join(u(n) for n, _, _ in fields) + b"t"
    fd = b"}(" + b"".join(u(n) + d + bytes([75, o]) + b"\x86" for n, d, o in fields) + b"u"
    st = (b"K\x03" + u("|") + b"N" + names + fd + b"J" + struct.pack("<i", elsize) + b"K\x01"
          + b"J" + struct.pack("<i", flags))  # fmt: skip
    return _dtype(f"V{elsize}", st)


def _wrapper(dtype: bytes, shape: list[int]) -> bytes:
    s = g("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81}("
    s += u("subclass") + g("numpy", "ndarray")
    s += u("shape") + b"(" + b"".join(bytes([75, x]) for x in shape) + b"t"
    s += u("order") + u("C") + u("dtype") + dtype + u("allow_mmap") + b"\x88"
    return s + b"ub"


def _frame(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


def _system(marker: Path) -> bytes:
    return b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR"


def test_review2_structured_dtype_flags_without_objects_fail_closed(tmp_path: Path) -> None:
    """A structured dtype with an object field whose pickled flags say no objects: numpy trusts
    the flags, joblib reads the array as raw bytes, the scanner read a nested pickle (review
    15t, A)."""
    marker = tmp_path / "PWNED_A"
    dt = _dtype_struct(16, [("a", _dtype_plain("O8", 63), 8)], 0)
    outer = b"\x80\x04" + _frame(_wrapper(dt, [1]))
    data = b"\x00" + b"\x00" * 8 + b"0" + _system(marker) + b"."
    inner = b"\x80\x04B" + struct.pack("<I", len(data)) + data + b"."
    path = tmp_path / "a.joblib"
    path.write_bytes(outer + inner + b".")
    found = flagged(path)
    assert any("flags disagree" in f for f in found), found
    assert runs_code(path, "joblib", marker)


def test_review2_structured_dtype_flags_claiming_objects_fail_closed(tmp_path: Path) -> None:
    """A structured int dtype whose pickled flags claim objects: joblib runs the "array" bytes
    as a nested pickle, the scanner skipped them as raw bytes (review 15t, B)."""
    marker = tmp_path / "PWNED_B"
    inner = (b"\x80\x04" + u("os") + b"\x94" + u("system") + b"\x94h\x00h\x01\x93"
             + b"(V" + f"touch {marker}".encode() + b"\ntR.")  # fmt: skip
    dt = _dtype_struct(len(inner), [("a", _dtype_plain("i1", 0), 0)], 1)
    outer = b"\x80\x04" + _frame(b"}\x940" + _wrapper(dt, [1]))
    path = tmp_path / "b.joblib"
    path.write_bytes(outer + inner + b".")
    found = flagged(path)
    assert any("flags disagree" in f for f in found), found
    assert runs_code(path, "joblib", marker)


def test_review2_object_array_frame_past_its_stop_fails_closed(tmp_path: Path) -> None:
    """An object array's nested pickle whose FRAME runs past its STOP: joblib's unpickler has
    read (and drops) the whole frame, the scanner resumed right after the STOP (review 15t, E;
    also zlib-compressed)."""
    import zlib

    np, joblib = lib("numpy"), lib("joblib")
    marker = tmp_path / "PWNED_E"
    bio = io.BytesIO()
    joblib.dump(np.array([None], dtype=object), bio)
    d = bio.getvalue()
    i = d.index(b"ub\x80\x05\x95") + 2
    outer, nested = d[:i], d[i:-1]
    content = nested[11:]
    evil = b"0" + _system(marker) + b"."
    body = content + b"B" + struct.pack("<I", len(evil))
    path = tmp_path / "e.joblib"
    path.write_bytes(outer + b"\x80\x05" + _frame(body) + evil + b"0.")
    zpath = tmp_path / "e_z.joblib"
    zpath.write_bytes(zlib.compress(path.read_bytes()))
    for p in (path, zpath):
        assert any("STOP before the end of its FRAME" in f for f in flagged(p)), flagged(p)
    assert runs_code(path, "joblib", marker)


_TORCH_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."


def _legacy_overhang(marker: Path, fill: int) -> bytes:
    evil = b"\x80\x02" + _system(marker) + b"."
    content = b"M\xe9\x03." + b"B" + struct.pack("<I", fill + len(evil)) + b"\x00" * fill
    return (_TORCH_MAGIC + b"\x80\x04" + _frame(content) + evil + b"." + b"\x80\x02}q\x00."
            + b"\x80\x02]q\x00.")  # fmt: skip


def test_review2_legacy_torch_frame_past_its_stop_fails_closed(tmp_path: Path) -> None:
    """Legacy torch.save: pickle 2's FRAME runs past its STOP, torch.load reads pickle 3 from
    the frame's end (review 15t, F); the same inside torch.storage._load_from_bytes (G)."""
    path = tmp_path / "f.pt"
    path.write_bytes(_legacy_overhang(tmp_path / "PWNED_F", 9000))
    assert any("STOP before the end of its FRAME" in f for f in flagged(path)), flagged(path)
    inner = _legacy_overhang(tmp_path / "PWNED_G", 0)
    nested = tmp_path / "g.pkl"
    nested.write_bytes(b"\x80\x02" + g("torch.storage", "_load_from_bytes") + b"B"
                       + struct.pack("<I", len(inner)) + inner + b"\x85R.")  # fmt: skip
    assert any("STOP before the end of its FRAME" in f for f in flagged(nested)), flagged(nested)
    lib("torch")
    assert runs_code(nested, "pickle", tmp_path / "PWNED_G")


def test_review2_dunder_state_in_a_dict_made_by_a_call_is_flagged(tmp_path: Path) -> None:
    """A BUILD state (or slot state) that is a dict made by a call and filled by SETITEM(S):
    NEWOBJ builtins.dict, OrderedDict(), defaultdict(f), dict(pairs), a dict subclass, or a
    ``(None, dict)`` pair (review 15t, C). pickle sets any dict's items as attributes; the
    planted __sklearn_clone__ runs when sklearn.base.clone is called."""
    lib("sklearn")
    marker = tmp_path / "PWNED_C"

    def su(text: str) -> bytes:
        data = text.encode()
        return b"X" + struct.pack("<I", len(data)) + data

    est = g("sklearn.linear_model._logistic", "LogisticRegression") + b")\x81"
    ossys = (g("sklearn.utils.validation", "_check_response_method")
             + g("sklearn.utils._set_output", "check_library_installed") + su("os") + b"\x85R"
             + su("system") + b"\x86R")  # fmt: skip
    planted = su("__sklearn_clone__") + g("sklearn.metrics._scorer", "partial") + ossys
    planted += su(f"touch {marker}") + b"\x86R"
    data = (b"\x80\x02" + g("sklearn.base", "clone") + est + g("builtins", "dict") + b")\x81"
            + b"(" + planted + b"u" + b"b" + b"\x85R.")  # fmt: skip
    path = tmp_path / "c.pkl"
    path.write_bytes(data)
    is_state = lambda found: any(f.startswith("unsafe-state") for f in found)  # noqa: E731
    assert is_state(flagged(path)), flagged(path)
    key = su("__class__") + g("sklearn.linear_model._ridge", "Ridge")
    states = {
        "newobj": g("builtins", "dict") + b")\x81(" + key + b"u",
        "ordered": g("collections", "OrderedDict") + b")R(" + key + b"u",
        "default": g("collections", "defaultdict") + g("builtins", "list") + b"\x85R" + key + b"s",
        "pairs": g("builtins", "dict") + b"]" + key + b"\x86a\x85R",
        "subclass": g("sklearn.utils", "Bunch") + b")\x81(" + key + b"u",
        "slotstate": b"N" + g("builtins", "dict") + b")\x81(" + key + b"u\x86",
        "slot_subclass": b"N" + g("sklearn.utils", "Bunch") + b")\x81(" + key + b"u\x86",
    }
    for name, state in states.items():
        path.write_bytes(b"\x80\x02" + est + state + b"b.")
        assert is_state(flagged(path)), (name, flagged(path))
    # what libraries write passes: a literal dict, or a dict made by a call with plain keys
    for state in (b"}(" + su("C") + b"K\x01u", g("builtins", "dict") + b")\x81(" + su("C")
                  + b"K\x01u", b"N}(" + su("C") + b"K\x01u\x86"):  # fmt: skip
        path.write_bytes(b"\x80\x02" + est + state + b"b.")
        assert not is_state(flagged(path)), (state, flagged(path))
    path.write_bytes(data)
    assert runs_code(path, "pickle", marker)


def test_review2_reconstructor_base_init_is_a_constructor_call(tmp_path: Path) -> None:
    """copyreg._reconstructor(cls, base, state) calls base.__init__(obj, state): a base other
    than object is a constructor call (review 15t, H); a base that is not a global fails
    closed."""
    path = tmp_path / "h.pkl"
    for module in ("xgboost.core", "lightgbm.basic"):
        path.write_bytes(g("copyreg", "_reconstructor") + b"(" + g(module, "Booster")
                         + g(module, "Booster") + b"(dtR.")  # fmt: skip
        issues = scan_file(path, PERMISSIVE).issues
        assert any(i.detail.get("use") == "constructor" for i in issues), issues
    path.write_bytes(g("copyreg", "_reconstructor") + b"(" + g("collections", "Counter")
                     + g("collections", "Counter") + b")RNtR.")  # fmt: skip
    assert any(f.startswith("indirect-call") for f in flagged(path)), flagged(path)


def test_review2_frame_inside_a_frame_fails_closed(tmp_path: Path) -> None:
    """A FRAME inside a FRAME (never written by pickle) would hide the outer frame running past
    the STOP: refused."""
    inner = _frame(b"N")
    path = tmp_path / "nested_frame.pkl"
    path.write_bytes(b"\x80\x04" + _frame(inner + b"." + b"N0") + b".")
    assert any("FRAME before the end" in f for f in flagged(path)), flagged(path)
