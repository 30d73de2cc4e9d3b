#!/usr/bin/env python3
"""Decompression bombs against ``modelseal models scan``: generate one of each kind, scan each
in a fresh child process, and print its time and peak memory.

Kinds: a torch ``.pt`` whose deflated ``data.pkl`` inflates to 1 GiB; an ``.npz`` whose
object-array member does; a compressed joblib file for every codec joblib writes (zlib, gzip,
bz2, xz, lzma, lz4) and the pre-0.10 ``ZF`` zlib; a tar-era torch checkpoint with a sparse
``pickle`` member of 1 GiB (holes cost no bytes); a ``.tar.gz`` of one; a ``.pt`` carrying a
zip bomb as a member; a ``.pt`` with 80 members of 15 MiB each (each under the ratio grace,
together over the per-file budget); a pickle that is slow to walk (``max_seconds``); and two
files that must still pass — a high-ratio member under the ratio grace and a 20 MiB benign
compressed pickle. Every bomb payload is a valid pickle of one-step opcodes (``NONE POP`` …),
so nothing but the limits can stop its scan early.

Every file is built in a few milliseconds without compressing gigabytes: a deflate block after
a full flush, a bzip2 block and an LZ4 block are each repeated verbatim (their checksums are
computed over the repeated content), so a 1 GiB bomb costs a few KiB to write.

``--rounds N`` fuzzes: each round varies the payload pattern, sizes and member names and may
truncate the compressed bytes at a random point; every case must still finish within the
limits. Each scan runs under a wall-clock timeout; its own peak RSS is measured (``run_peak``).

    python benchmarks/soak_scanner.py [--quick] [--rounds N] [--seed S] [--modelseal PATH]

Exit status 1 when a case breaks its expectation (a bomb that is not reported with the limit
and member, a scan over the time or memory bound, a benign file that fails).
"""

from __future__ import annotations

import argparse
import bz2
import json
import lzma
import os
import random
import resource
import struct
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

try:
    from benchmarks._common import run_peak  # imported as a package (the tests)
except ImportError:
    from _common import run_peak  # run as a script

MB = 1 << 20
GB = 1 << 30
#: NONE then POP: a pickle body of any even length, one scanner step per two bytes.
OPS = b"N0"
HEAD = b"\x80\x04"
END = b"N."
#: The documented defaults (README, models.limits): what every case is judged against.
MAX_SECONDS = 60
MAX_INFLATED = 1 << 30
#: Peak RSS a scan child may reach (interpreter, pydantic and an 8 MiB in-memory spool).
MAX_RSS_MB = 160
POLICY = (
    "version: 1\nmodels:\n  pickle: scan\n"
    "  formats: [pickle, pytorch-zip, torch-legacy, numpy, numpy-zip, joblib]\n"
)


# --------------------------------------------------------------------------------------------
# Streams built by repetition


def _chunk(pattern: bytes, size: int) -> bytes:
    return pattern * (size // len(pattern))


def deflate_repeat(
    prefix: bytes, chunk: bytes, n: int, suffix: bytes
) -> tuple[bytes, int, int, int]:
    """Raw deflate of ``prefix + chunk * n + suffix``: (data, crc32, adler32, size). After a
    full flush the compressor starts afresh, so compressing ``chunk`` again gives the same
    bytes: the middle is one block repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)]
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    assert block == again, "deflate is not deterministic after a full flush"
    out.append(block * (n - 1) + again if n else b"")
    out.append(c.compress(suffix) + c.flush())
    crc = zlib.crc32(prefix)
    adler = zlib.adler32(prefix)
    for _ in range(n):
        crc = zlib.crc32(chunk, crc)
        adler = zlib.adler32(chunk, adler)
    crc = zlib.crc32(suffix, crc)
    adler = zlib.adler32(suffix, adler)
    return b"".join(out), crc, adler, len(prefix) + len(chunk) * n + len(suffix)


def zlib_repeat(prefix: bytes, chunk: bytes, n: int, suffix: bytes) -> bytes:
    raw, _, adler, _ = deflate_repeat(prefix, chunk, n, suffix)
    return b"\x78\xda" + raw + struct.pack(">I", adler)


def gzip_repeat(prefix: bytes, chunk: bytes, n: int, suffix: bytes) -> bytes:
    raw, crc, _, size = deflate_repeat(prefix, chunk, n, suffix)
    return (
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
        + raw
        + struct.pack("<II", crc, size % (1 << 32))
    )


_BZ_EOS = 0x177245385090


def _bz2_block(data: bytes) -> tuple[int, int, int]:
    """(block bits, bit length, block CRC) of ``data`` compressed as one bzip2 block."""
    stream = bz2.compress(data, 9)
    total = len(stream) * 8
    value = int.from_bytes(stream, "big")
    for pad in range(8):
        end = total - pad
        if value & ((1 << pad) - 1):
            break
        tail = (value >> pad) & ((1 << 80) - 1)
        if tail >> 32 == _BZ_EOS:
            bits = end - 80 - 32  # after "BZh9", before the end-of-stream marker
            block = (value >> (pad + 80)) & ((1 << bits) - 1)
            crc = (block >> (bits - 48 - 32)) & 0xFFFFFFFF
            return block, bits, crc
    raise AssertionError("no bzip2 end-of-stream marker")


def bz2_repeat(prefix: bytes, chunk: bytes, n: int, suffix: bytes) -> bytes:
    """One bzip2 stream of ``prefix + chunk * n + suffix``, ``chunk`` one block repeated
    verbatim (each piece must fit one 900 kB block)."""
    pieces = [_bz2_block(prefix), *([_bz2_block(chunk)] if n else []), _bz2_block(suffix)]
    order = [pieces[0], *([pieces[1]] * n if n else []), pieces[-1]]
    value, bits, combined = 0, 0, 0
    for block, length, crc in order:
        value = (value << length) | block
        bits += length
        combined = (((combined << 1) | (combined >> 31)) & 0xFFFFFFFF) ^ crc
    value = (value << 80) | (_BZ_EOS << 32) | combined
    bits += 80
    pad = -bits % 8
    return b"BZh9" + (value << pad).to_bytes((bits + pad) // 8, "big")


def lzma_stream(data_size: int, pattern: bytes, fmt: int) -> bytes:
    """xz or lzma-alone of a pickle of ``data_size`` bytes (compressed for real: fast enough)."""
    c = lzma.LZMACompressor(format=fmt, preset=0)
    out = [c.compress(HEAD)]
    chunk = _chunk(pattern, MB)
    for _ in range(data_size // MB):
        out.append(c.compress(chunk))
    out.append(c.compress(END))
    out.append(c.flush())
    return b"".join(out)


def lz4_repeat(pattern: bytes, blocks: int) -> bytes:
    """An LZ4 frame of 4 MiB blocks, each ``pattern`` then one long match repeating it."""
    block_size = 4 * MB
    match = block_size - 2 * len(pattern)
    rest = match - 4 - 15
    ext = b"\xff" * (rest // 255) + bytes([rest % 255])
    body = bytes([(len(pattern) << 4) | 15]) + pattern + struct.pack("<H", len(pattern)) + ext
    body += bytes([len(pattern) << 4]) + pattern  # the last sequence: literals only
    out = b"\x04\x22\x4d\x18" + bytes([0x60, 0x70, 0x00])  # v1, independent, 4 MiB blocks
    out += struct.pack("<I", 0x80000000 | 2) + HEAD  # stored block: the pickle header
    for _ in range(blocks):
        out += struct.pack("<I", len(body)) + body
    out += struct.pack("<I", 0x80000000 | 2) + END
    return out + struct.pack("<I", 0)


# --------------------------------------------------------------------------------------------
# Containers written by hand (zipfile cannot take pre-compressed data; tarfile cannot write
# sparse members)

ZipMember = tuple[str, int, bytes, int, int]  # name, method, data, crc32, size


def zip_bytes(members: list[ZipMember]) -> bytes:
    """A zip (no zip64: every size under 4 GiB) of already-compressed members."""
    out, central = bytearray(), bytearray()
    for name, method, data, crc, size in members:
        raw = name.encode()
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data),
                           size, len(raw), 0) + raw + data  # fmt: skip
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21,
                               crc, len(data), size, len(raw), 0, 0, 0, 0, 0, offset) + raw  # fmt: skip
    n = len(members)
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central),
                                 len(out), 0)  # fmt: skip
    return bytes(out)


def stored(name: str, data: bytes) -> ZipMember:
    return (name, 0, data, zlib.crc32(data), len(data))


def deflated(name: str, prefix: bytes, chunk: bytes, n: int, suffix: bytes) -> ZipMember:
    raw, crc, _, size = deflate_repeat(prefix, chunk, n, suffix)
    return (name, 8, raw, crc, size)


def tar_header(name: str, size: int, typeflag: bytes = b"0", sparse: list[tuple[int, int]] | None = None, realsize: int = 0) -> bytes:  # fmt: skip
    """One GNU tar header (``sparse``: old-GNU sparse runs, with the member's real size)."""
    h = bytearray(512)
    h[0 : len(name)] = name.encode()
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"%011o\0" % 0
    h[156:157] = typeflag
    h[257:265] = b"ustar  \0"
    for i, (offset, length) in enumerate(sparse or []):
        at = 386 + 24 * i
        h[at : at + 12] = b"%011o\0" % offset
        h[at + 12 : at + 24] = b"%011o\0" % length
    if sparse is not None:
        h[483:495] = b"%011o\0" % realsize
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def tar_member(name: str, data: bytes) -> bytes:
    return tar_header(name, len(data)) + data + bytes(-len(data) % 512)


def legacy_torch_tar(extra: bytes = b"") -> bytes:
    """A tar-era torch checkpoint (sys_info, pickle, storages, tensors) plus ``extra``."""
    small = HEAD + b"}."
    members = b"".join(tar_member(n, small) for n in ("sys_info", "pickle", "storages", "tensors"))
    return members + extra + bytes(1024)


def sparse_member(name: str, realsize: int) -> bytes:
    """A sparse member of ``realsize`` bytes storing only its last 512 (a pickle's end)."""
    data = (b"N" * 510 + END)[:512]
    return tar_header(name, 512, b"S", [(realsize - 512, 512)], realsize) + data


def benign_pickle(floats: int, seed: int = 7) -> bytes:
    """``floats`` × (BINFLOAT of random bytes, POP), then an empty dict: 10 bytes a float."""
    rnd = random.Random(seed).randbytes(8 * floats)
    body = bytearray(10 * floats)
    body[0::10] = b"G" * floats
    for k in range(8):
        body[1 + k :: 10] = rnd[k::8]
    body[9::10] = b"0" * floats
    return HEAD + bytes(body) + b"}."


def npy_object_header() -> bytes:
    text = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    hlen = 64 - 10
    while hlen < len(text) + 1:
        hlen += 64
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", hlen) + (text.ljust(hlen - 1) + "\n").encode()


# --------------------------------------------------------------------------------------------
# The cases


@dataclass(frozen=True)
class Case:
    """One file to scan and what the scan must say about it."""

    name: str
    build: Callable[[Path], Path]
    #: ``models.limits.<limit>`` the scan-limit finding must name (None: a file that passes).
    limit: str | None
    member: str | None = None
    policy: str = POLICY
    #: Another expectation instead of a limit (e.g. the file is reported unknown).
    finding: str | None = None


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def cases(inflate: int = GB, pattern: bytes = OPS, names: tuple[str, str] = ("archive", "arr_0")) -> list[Case]:  # fmt: skip
    """One case of each kind; bombs inflate to ``inflate`` bytes of ``pattern`` opcodes."""
    chunk = _chunk(pattern, MB)
    n = inflate // MB
    bz_chunk = _chunk(pattern, 800_000)
    root, arr = names
    data_pkl = f"{root}/data.pkl"

    def torch_zip(d: Path) -> Path:
        return _write(d / "bomb.pt", zip_bytes([
            deflated(data_pkl, HEAD, chunk, n, END), stored(f"{root}/version", b"3\n"),
        ]))  # fmt: skip

    def npz(d: Path) -> Path:
        return _write(d / "bomb.npz", zip_bytes([
            deflated(f"{arr}.npy", npy_object_header() + HEAD, chunk, n, END),
        ]))  # fmt: skip

    def joblib(codec: str) -> Callable[[Path], Path]:
        def build(d: Path) -> Path:
            if codec == "zlib":
                data = zlib_repeat(HEAD, chunk, n, END)
            elif codec == "gzip":
                data = gzip_repeat(HEAD, chunk, n, END)
            elif codec == "zlib-zf":
                data = zlib_repeat(HEAD, chunk, n, END)
                data = b"ZF" + hex(inflate).encode().ljust(19) + data
            elif codec == "bz2":
                data = bz2_repeat(HEAD, bz_chunk, inflate // len(bz_chunk), END)
            elif codec == "xz":
                data = lzma_stream(min(inflate, 64 * MB), pattern, lzma.FORMAT_XZ)
            elif codec == "lzma":
                data = lzma_stream(min(inflate, 64 * MB), pattern, lzma.FORMAT_ALONE)
            else:
                data = lz4_repeat(pattern, inflate // (4 * MB))
            return _write(d / f"bomb-{codec}.joblib", data)

        return build

    def sparse_tar(d: Path) -> Path:
        return _write(d / "bomb-sparse.pt", legacy_torch_tar(sparse_member("pickle", inflate)))

    def tar_gz(d: Path) -> Path:
        inner = legacy_torch_tar(tar_header("pickle", inflate))
        return _write(d / "bomb.tar.gz", gzip_repeat(inner, bytes(MB), n, bytes(1024)))

    def nested_zip(d: Path) -> Path:
        bomb = deflated("0.pkl", HEAD, chunk, n, END)
        inner = zip_bytes([(f"{i}.pkl", *bomb[1:]) for i in range(4)])
        return _write(d / "nested.pt", zip_bytes([
            stored(data_pkl, HEAD + b"}."), stored(f"{root}/extra/inner.zip", inner),
        ]))  # fmt: skip

    def many_members(d: Path) -> Path:
        # Fast to scan (one BINBYTES8 of zeros each) and under the ratio grace each: only the
        # per-file budget stops it.
        size = 15 * MB
        blob = HEAD + b"\x8e" + struct.pack("<Q", size)
        count = MAX_INFLATED // size + 8
        member = deflated("m.pkl", blob, bytes(MB), size // MB, b".")
        return _write(d / "many.pt", zip_bytes([
            stored(data_pkl, HEAD + b"}."), *((f"{root}/m{i}.pkl", *member[1:]) for i in range(count)),
        ]))  # fmt: skip

    def slow_pickle(d: Path) -> Path:
        return _write(d / "slow.pkl", HEAD + _chunk(pattern, 64 * MB) + END)

    def high_ratio_ok(d: Path) -> Path:
        # 12 MiB at about 1000:1: over max_ratio, under the grace: accepted. Made of 255-byte
        # SHORT_BINBYTES, so that its scan is quick.
        blobs = _chunk(b"C\xff" + bytes(255) + b"0", MB)
        return _write(d / "small-high-ratio.pt", zip_bytes([
            deflated(data_pkl, HEAD, blobs, 12, END), stored(f"{root}/version", b"3\n"),
        ]))  # fmt: skip

    def benign_large(d: Path) -> Path:
        return _write(d / "benign.joblib", zlib.compress(benign_pickle(2 * MB), 1))

    slow_policy = POLICY + "  limits:\n    max_seconds: 2\n"

    def declared(size: int) -> str:
        # A member whose declared size is over the budget is refused before it is read;
        # otherwise its declared (and then its real) ratio is.
        return "max_inflated_bytes" if size > MAX_INFLATED else "max_ratio"

    return [
        Case("torch .pt, deflated data.pkl", torch_zip, declared(inflate + 4), data_pkl),
        Case(".npz, object-array member", npz, declared(inflate + 132), f"{arr}.npy"),
        *(
            Case(f"joblib {codec}", joblib(codec), "max_ratio", f"({codec}-decompressed)")
            for codec in ("zlib", "gzip", "zlib-zf", "bz2", "xz", "lzma", "lz4")
        ),
        # The four small members before it count too.
        Case("tar-era torch, sparse pickle member", sparse_tar, declared(inflate + 16), "pickle"),
        Case(".tar.gz of a torch tar", tar_gz, None, finding="models.unknown-format"),
        Case("zip bomb nested in a .pt", nested_zip, None),
        Case("80 members of 15 MiB", many_members, "max_inflated_bytes"),
        Case("slow pickle (max_seconds: 2)", slow_pickle, "max_seconds", policy=slow_policy),
        Case("high ratio under the grace", high_ratio_ok, None),
        Case("benign 20 MiB compressed pickle", benign_large, None),
    ]


# --------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class Result:
    case: str
    size: int
    seconds: float
    rss_mb: float
    ok: bool
    why: str


def scan(modelseal: list[str], case: Case, work: Path, timeout: float) -> Result:
    """Build ``case`` in ``work`` and scan it in a child; judge what it printed."""
    path = _build_in_child(case, work)
    policy = work / "policy.yml"
    policy.write_text(case.policy)
    argv = [*modelseal, "models", "scan", str(path), "--policy", str(policy), "--format", "json"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        rc, seconds, rss = run_peak(argv, timeout=timeout, stdout=out, stderr=err)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    size = path.stat().st_size
    path.unlink()
    ok, why = _judge(case, rc, stdout, stderr)
    if ok and seconds > timeout:
        ok, why = False, f"took {seconds:.1f} s"
    if ok and rss > MAX_RSS_MB:
        ok, why = False, f"peak RSS {rss:.0f} MB over {MAX_RSS_MB}"
    return Result(case.name, size, seconds, rss, ok, why)


def _build_in_child(case: Case, work: Path) -> Path:
    """``case.build`` in a forked child: Linux counts a parent's resident memory at exec time
    into its child's ru_maxrss, so this process never holds a bomb's bytes itself."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read_fd)
            os.write(write_fd, str(case.build(work)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        path = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not path:
        raise SystemExit(f"building {case.name!r} failed")
    return Path(path)


def _judge(case: Case, rc: int, stdout: str, stderr: str) -> tuple[bool, str]:
    if rc not in (0, 1):
        return False, f"exit {rc}: {stderr.strip()[-300:]}"
    try:
        findings = json.loads(stdout)["findings"]
    except (ValueError, KeyError):
        return False, f"unreadable output: {stdout[-200:]!r}"
    failing = [f for f in findings if f["decision"] == "fail"]
    limits = [f for f in findings if f["id"] == "models.scan-limit"]
    if case.limit is not None:
        want = f"models.limits.{case.limit}"
        hits = [f for f in limits if f["evidence"].get("limit") == want]
        if rc != 1 or not hits:
            return False, f"no {want} finding (exit {rc}; {[f['id'] for f in failing]})"
        f = hits[0]
        if case.member is not None and (
            f["evidence"].get("member") != case.member or repr(case.member) not in f["title"]
        ):
            return False, f"finding does not name {case.member!r}: {f['title']}"
        return True, f"{want} ({f['evidence'].get('member', '-')})"
    if limits:
        return False, f"unexpected scan-limit: {limits[0]['title']}"
    if case.finding is not None:
        hit = any(f["id"] == case.finding for f in failing)
        return hit, case.finding if hit else f"no {case.finding} finding"
    return (rc == 0, "passed") if rc == 0 else (False, f"failed: {[f['title'] for f in failing]}")


def fuzz_cases(rng: random.Random, quick: bool) -> list[Case]:
    """One round of varied cases: other opcode patterns, sizes and names; some truncated."""
    pattern = rng.choice([OPS, b"N0" * 3, b"K\x010", b"J\x00\x00\x00\x000", b"\x88\x89" + b"00"])
    inflate = rng.choice([64 * MB, 256 * MB] if quick else [64 * MB, 512 * MB, GB, 3 * GB])
    names = (rng.choice(["archive", "model", "x" * 40]), rng.choice(["arr_0", "w", "a b"]))
    out = []
    for case in cases(inflate, pattern, names):
        if case.limit is None or case.limit == "max_seconds":
            continue
        if rng.random() < 0.3:
            out.append(_truncated(case, rng))
        else:
            out.append(case)
    return out


def _truncated(case: Case, rng: random.Random) -> Case:
    """``case`` with its file cut short: any limit or a failure finding is fine, a pass not."""
    cut = rng.random()

    def build(d: Path) -> Path:
        path = case.build(d)
        data = path.read_bytes()
        path.write_bytes(data[: max(16, int(len(data) * cut))])
        return path

    return Case(f"{case.name}, cut at {cut:.0%}", build, None, finding="*")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="bombs of 256 MiB, no fuzz rounds by default"
    )
    ap.add_argument("--rounds", type=int, default=0, help="fuzz rounds after the fixed cases")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--modelseal", default=str(Path(sys.executable).parent / "modelseal"))
    args = ap.parse_args()
    timeout = MAX_SECONDS + 30.0
    rng = random.Random(args.seed)
    todo = cases(256 * MB if args.quick else GB)
    for _ in range(args.rounds):
        todo += fuzz_cases(rng, args.quick)
    bad = 0
    print(f"{'case':<46} {'file':>9} {'time':>7} {'peak RSS':>9}  result")
    with tempfile.TemporaryDirectory(prefix="modelseal-soak-") as tmp:
        for case in todo:
            if case.finding == "*":
                result = _scan_truncated(args.modelseal, case, Path(tmp), timeout)
            else:
                result = scan([args.modelseal], case, Path(tmp), timeout)
            bad += not result.ok
            mark = "ok " if result.ok else "BAD"
            print(f"{result.case[:46]:<46} {_size(result.size):>9} {result.seconds:6.2f}s "
                  f"{result.rss_mb:6.0f} MB  {mark} {result.why}", flush=True)  # fmt: skip
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{len(todo)} case(s), {bad} bad; this process's own peak RSS: {floor:.0f} MB")
    return 1 if bad else 0


def _scan_truncated(modelseal: str, case: Case, work: Path, timeout: float) -> Result:
    # A cut can leave a valid smaller file (a tar cut before its sparse member) or a broken
    # one: either verdict is fine; a crash, the time or the memory bound is not.
    r = scan([modelseal], Case(case.name, case.build, None), work, timeout)
    if r.ok or r.why.startswith(("unexpected scan-limit", "failed:")):
        verdict = "passed" if r.ok else "fails closed"
        return Result(r.case, r.size, r.seconds, r.rss_mb, True, verdict)
    return r


def _size(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= MB else f"{n / 1024:.1f} kB"


if __name__ == "__main__":
    sys.exit(main())
