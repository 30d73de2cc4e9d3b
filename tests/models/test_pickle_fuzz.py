"""Property tests for the pickle scanner: arbitrary and mutated input never crashes it, always
ends in a verdict, and hostile sizes stay within time and memory bounds.

The differential test runs CPython's pure-Python unpickler (``pickle._Unpickler``) on the same
bytes with ``find_class`` and ``persistent_load`` replaced by inert stubs, so nothing real is
imported or called, and checks that every global it asks for is one the scanner reported.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.tools import require

from modelseal.models.allowlist import Allowlist
from modelseal.models.pickle_scan import PickleScan, scan_pickle

ALLOW = Allowlist.default()
FAILURE_KINDS = {"unparsable", "trailing-data", "scan-limit"}


class Reduce:
    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.fn, self.args)


def _seeds() -> list[bytes]:
    benign = {
        "a": [1, 2.5, "x", b"y", None, True],
        "b": (frozenset({1}), {2}, bytearray(b"z"), 3j),
        "c": collections.OrderedDict(k=[{"n": i} for i in range(3)]),
        "d": "é" * 3,
    }
    evil = [
        Reduce(os.system, "id"),
        Reduce(getattr, collections.OrderedDict, "fromkeys"),
        Reduce(eval, "1"),
    ]
    seeds = [pickle.dumps(benign, protocol=p) for p in range(6)]
    seeds += [pickle.dumps(e, protocol=p) for e in evil for p in (0, 2, 4, 5)]
    seeds.append(pickle.dumps([1], protocol=2) + pickle.dumps(evil[0], protocol=4))
    return seeds


SEEDS = _seeds()


def check_verdict(data: bytes, result: PickleScan, start: int = 0) -> None:
    """What must hold for any input."""
    assert isinstance(result, PickleScan)
    assert start <= result.end <= len(data)
    kinds = {i.kind for i in result.issues}
    if result.pickles == 0:
        assert kinds, "no pickle parsed, yet nothing reported"
    if result.end < len(data):
        assert kinds & FAILURE_KINDS, "bytes left unscanned without saying why"
    for issue in result.issues:
        assert issue.offset is not None and start <= issue.offset <= len(data)
    for ref in result.globals:
        assert start <= ref.offset < len(data)


# --------------------------------------------------------------------------------------------
# The reference: CPython's unpickler with everything dangerous stubbed out


class _Stub:
    """Whatever a stubbed global or persistent id is, and whatever calling it returns."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Stub:
        return _Stub()

    def __setstate__(self, state: Any = None) -> None:
        pass


class _RecordingUnpickler(pickle._Unpickler):
    def __init__(self, file: io.BytesIO, asked: list[str]) -> None:
        super().__init__(file)
        self.asked = asked

    def find_class(self, module: str, name: str) -> type[_Stub]:
        # the same name mapping as pickle.Unpickler.find_class, minus the import
        if getattr(self, "proto", 0) < 3 and getattr(self, "fix_imports", True):
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        self.asked.append(f"{module}.{name}")
        return _Stub

    def persistent_load(self, pid: Any) -> _Stub:
        return _Stub()


def globals_asked(data: bytes) -> list[str]:
    """Every global the real unpickler asks for, loading pickle after pickle until it fails."""
    asked: list[str] = []
    f = io.BytesIO(data)
    while f.tell() < len(data):
        try:
            _RecordingUnpickler(f, asked).load()
        except Exception:  # any failure ends loading, as it would for real
            break
    return asked


def check_differential(data: bytes, result: PickleScan) -> None:
    kinds = {i.kind for i in result.issues}
    if kinds & (FAILURE_KINDS | {"dynamic-global"}):
        return  # the scanner stopped (or gave up on a name) and said so
    scanned = {g.qualified for g in result.globals}
    assert set(globals_asked(data)) <= scanned


# --------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=400, deadline=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    result = scan_pickle(data, allow=ALLOW)
    check_verdict(data, result)
    check_differential(data, result)


# single-byte opcodes, and opcodes with arguments that build strings, globals and memo entries
SOUP = [bytes([c]) for c in b"()N]}.012tldeusaRbo\x81\x85\x86\x93\x94Q"] + [
    b"h\x00", b"h\x01", b"q\x00", b"q\x01", b"K\x01", b"\x8c\x02os", b"\x8c\x06system",
    b"Vos\n", b"cos\nsystem\n", b"ccollections\nOrderedDict\n", b"\x80\x02", b"\x80\x04",
    b"\x95\x05\x00\x00\x00\x00\x00\x00\x00", b"P1\n", b"\x82\x01", b"iab\nc\n",
]  # fmt: skip


@settings(max_examples=300, deadline=500)
@given(st.lists(st.sampled_from(SOUP), max_size=60))
def test_opcode_soup_never_crashes(parts: list[bytes]) -> None:
    data = b"".join(parts)
    result = scan_pickle(data, allow=ALLOW)
    check_verdict(data, result)
    check_differential(data, result)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "byte", "truncate", "insert", "delete", "repeat"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[at] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


@settings(max_examples=500, deadline=500)
@given(mutated())
def test_mutated_pickles_never_crash(data: bytes) -> None:
    result = scan_pickle(data, allow=ALLOW)
    check_verdict(data, result)
    check_differential(data, result)


@settings(max_examples=200, deadline=500)
@given(st.sampled_from(SEEDS), st.data())
def test_regions_and_buffers_agree(seed: bytes, data: st.DataObject) -> None:
    prefix = data.draw(st.binary(max_size=16))
    buf = prefix + seed + data.draw(st.binary(max_size=16))
    end = len(prefix) + len(seed)
    result = scan_pickle(buf, start=len(prefix), end=end, allow=ALLOW)
    check_verdict(buf[:end], result, start=len(prefix))
    assert scan_pickle(memoryview(buf), start=len(prefix), end=end, allow=ALLOW) == result
    assert result.pickles >= 1 and result.end == end


def test_seeds_are_what_they_claim() -> None:
    for seed in SEEDS:
        result = scan_pickle(seed, allow=ALLOW)
        assert not {i.kind for i in result.issues} & FAILURE_KINDS
        check_differential(seed, result)
        assert set(globals_asked(seed)) == {g.qualified for g in result.globals}


# --------------------------------------------------------------------------------------------
# Hostile sizes: bounded time and memory

MB = 1 << 20


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking (pytest) process.
_CHILD = """
import json, re, sys, time
from pathlib import Path
from modelseal.models.allowlist import Allowlist
from modelseal.models.pickle_scan import scan_pickle
def peak_kib():
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1])
data = Path(sys.argv[1]).read_bytes()
before = peak_kib()
t0 = time.perf_counter()
result = scan_pickle(data, allow=Allowlist.default())
elapsed = time.perf_counter() - t0
after = peak_kib()
print(json.dumps({"kinds": sorted({i.kind for i in result.issues}), "end": result.end,
                  "pickles": result.pickles, "elapsed": elapsed, "extra_kib": after - before}))
"""


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("10 MB of MARK", b"(" * (10 * MB), "scan-limit"),
        ("10 MB of NONE", b"N" * (10 * MB), "scan-limit"),
        ("MARK and NONE", b"(N" * (5 * MB), "scan-limit"),
        ("empty tuples", b"(t" * (2 * MB), "unparsable"),
        ("4 MB of MEMOIZE", b"N" + b"\x94" * (4 * MB), "unparsable"),
        (
            "sparse memo keys",
            b"N" + b"".join(b"r" + (i * 4099).to_bytes(4, "little") for i in range(100_000)),
            "scan-limit",
        ),
        ("memoized strings", b"\x8c\x01a\x94" * (1 << 20) + b"\x8c\x01b\x94" * 100, "scan-limit"),
        ("tiny pickles", b"N." * MB, ""),
        (
            "BINBYTES8 2**63",
            b"\x80\x05\x8e" + (2**63).to_bytes(8, "little") + b"x" * 64,
            "unparsable",
        ),
        ("BYTEARRAY8 2**64-1", b"\x80\x05\x96" + b"\xff" * 8, "unparsable"),
        ("BINUNICODE8 2**40", b"\x80\x04\x8d" + (2**40).to_bytes(8, "little") + b"a", "unparsable"),
        ("LONG4 2**31-1", b"\x8b" + (2**31 - 1).to_bytes(4, "little"), "unparsable"),
        ("BINSTRING 2**31-1", b"T\xff\xff\xff\x7f", "unparsable"),
        ("FRAME 2**64-1", b"\x80\x04\x95" + b"\xff" * 8 + b"N.", "unparsable"),
        ("huge text memo key", b"Np" + b"9" * 5000 + b"\n.", "unparsable"),
        (
            "long valid string",
            b"\x80\x04\x8d" + (8 * MB).to_bytes(8, "little") + b"\xc3\xa9" * (4 * MB) + b".",
            "",
        ),
        (
            "long invalid string",
            b"\x80\x04\x8d" + (8 * MB).to_bytes(8, "little") + b"a" * (8 * MB - 1) + b"\xff.",
            "unparsable",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "",
)
def test_hostile_sizes_are_bounded(name: str, data: bytes, kind: str, tmp_path: Path) -> None:
    require(Path("/proc/self/status").exists(), "Linux /proc (peak RSS)")
    # A child process, so its peak RSS measures this scan alone (and no tracing slows it down).
    path = tmp_path / "hostile.pkl"
    path.write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["end"] <= len(data)
    if got["end"] < len(data) or got["pickles"] == 0:
        assert set(got["kinds"]) & FAILURE_KINDS
    if kind:
        assert kind in got["kinds"], name
    assert got["elapsed"] < 30, name  # typically well under 5 s
    # 8-byte stack slots per input byte at most, plus the fixed caps (memo bitmap <= 4 MiB,
    # at most 2**20 memoized strings/globals: ~100 MB)
    extra = got["extra_kib"] * 1024
    assert extra < 8 * len(data) + 160 * MB, f"{name}: {extra / MB:.0f} MB"
    print(f"{name}: {got['elapsed']:.2f} s, +{extra / MB:.0f} MB")  # shown with -s
