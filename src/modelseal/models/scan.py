"""Scanning one model file: detect its format from the bytes, scan every pickle it carries
(plain, inside zip or tar members, after a numpy header), and check its structure.

Nothing here imports, loads or executes model content. Files are memory-mapped, so scanning a
checkpoint reads its pickle parts and headers, never its tensor data. Compressed streams and
archive members are inflated piece by piece into a bounded spool (memory up to
:data:`SPOOL_IN_MEMORY`, then an unlinked temporary file scanned through ``mmap``), and every
byte inflated and every second spent is charged to the file's
:class:`~modelseal.models.limits.Budget`: a decompression bomb ends in a ``scan-limit`` issue
naming the member and the limit, never in gigabytes of memory or minutes of work.
"""

from __future__ import annotations

import mmap
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Final

from modelseal.findings import Finding, Severity
from modelseal.models.ahead import Ahead
from modelseal.models.allowlist import Allowlist
from modelseal.models.bytesource import ByteSource
from modelseal.models.decompress import iter_decompressed
from modelseal.models.formats import (
    INFLATABLE_ZIP_METHODS,
    MAX_ZIP_MEMBERS,
    ZIP_ERRORS,
    ZIP_TAIL,
    Detected,
    detect_format,
    detect_prefix,
    detect_zip,
    is_tar_header,
    may_carry_pickle,
    zip_tail,
)
from modelseal.models.issues import Format, ModelIssue
from modelseal.models.limits import (
    CUTOFF,
    DEFAULT_LIMITS,
    MAX_NESTING,
    Budget,
    ScanLimitExceeded,
    ScanLimits,
)
from modelseal.models.pickle_scan import NestedScan, scan_pickle
from modelseal.models.structure import check_structure

#: An inflated member or stream up to this size is scanned from memory; a larger one is spooled
#: to an unlinked temporary file and scanned through mmap, released as the scan goes.
SPOOL_IN_MEMORY: Final = 8 << 20
#: Bytes pulled from a member per read: the most an inflating read holds in memory at once.
_PIECE: Final = 1 << 20
#: Legacy torch.save: magic number, protocol, sys_info, the object, the storage keys.
LEGACY_TORCH_PICKLES = 5
#: The first of them: torch's MAGIC_NUMBER (0x1950a86a20f9469cfc6c) pickled at protocol 2.
_LEGACY_MAGIC: Final = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."
#: A zip archive's first local header, which torch.load checks for in-memory bytes.
_ZIP_MAGIC: Final = b"PK\x03\x04"


GATE: Final = "models"
"""The gate that reports what the scan finds (:mod:`modelseal.models.gate`, and
``modelseal models scan``, which judges its findings without importing the gate's machinery)."""


@dataclass(frozen=True)
class FileScan:
    """What scanning one file found."""

    path: Path
    detected: Detected
    issues: tuple[ModelIssue, ...]

    @property
    def format(self) -> Format:
        """The detected format."""
        return self.detected.format

    @property
    def carries_pickle(self) -> bool:
        """Whether the file holds pickle data (numpy: only object arrays do)."""
        if self.detected.format is Format.NUMPY:
            return self.detected.pickle_offset is not None
        if self.detected.format in (Format.NUMPY_ZIP, Format.KERAS):
            return bool(self.detected.zip_pickle_members)
        return self.detected.format.carries_pickle


def scan_file(
    path: Path,
    allow: Allowlist | None = None,
    *,
    model_dir: Path | None = None,
    limits: ScanLimits = DEFAULT_LIMITS,
) -> FileScan:
    """Detect, scan and check one file (or a SavedModel directory) within ``limits``."""
    allow = allow or Allowlist.default()
    budget = Budget(limits)
    detected = detect_format(path)
    return FileScan(path, detected, _scan_detected(path, detected, allow, budget, model_dir, 0))


def _scan_detected(
    path: Path,
    detected: Detected,
    allow: Allowlist,
    budget: Budget,
    model_dir: Path | None,
    depth: int,
) -> tuple[ModelIssue, ...]:
    """The issues of one file, ``depth`` payloads deep (0: the file itself)."""
    fmt = detected.format
    issues: list[ModelIssue] = []
    try:
        try:
            if fmt is Format.JOBLIB and detected.detail.get("compressed"):
                issues += _scan_compressed(
                    path, detected.detail["compressed"], allow, budget, depth
                )
            elif fmt in (Format.PICKLE, Format.JOBLIB):
                issues += _scan_mapped(
                    path, allow, budget, depth, start=0, joblib=fmt is Format.JOBLIB
                )
            elif fmt is Format.TORCH_LEGACY and detected.detail.get("variant") == "tar":
                issues += _scan_tar_members(path, detected, allow, budget, depth)
            elif fmt is Format.TORCH_LEGACY:
                issues += _scan_mapped(
                    path,
                    allow,
                    budget,
                    depth,
                    start=0,
                    max_pickles=LEGACY_TORCH_PICKLES,
                    joblib=False,
                )
            elif fmt is Format.NUMPY and detected.pickle_offset is not None:
                issues += _scan_mapped(
                    path, allow, budget, depth, start=detected.pickle_offset, joblib=False
                )
            elif fmt in (Format.PYTORCH_ZIP, Format.TORCHSCRIPT, Format.NUMPY_ZIP, Format.KERAS):
                issues += _scan_zip_members(path, detected, allow, budget, depth)
        except ScanLimitExceeded as e:
            issues.append(_limit_issue(e))
            if e.limit in ("max_seconds", CUTOFF):
                # The deadline stops the work: the structure checks are skipped too.
                return tuple(issues)
        issues += check_structure(path, detected, model_dir or path.parent)
    except OSError as e:
        issues.append(
            ModelIssue("unreadable", Severity.HIGH, f"cannot read the file: {e.strerror or e}")
        )
    if fmt is Format.UNKNOWN:
        issues.append(
            ModelIssue(
                "unknown-format",
                Severity.HIGH,
                "not a model format modelseal recognizes; unknown formats are not a pass",
                detail=dict(detected.detail),
            )
        )
    return tuple(issues)


def _nested(buf: bytes | mmap.mmap, allow: Allowlist, budget: Budget, depth: int) -> NestedScan:
    """The scanner of payloads nested in ``buf`` (torch.storage._load_from_bytes): each is
    written to a private temporary file and judged like a top-level file, one level deeper,
    within the same budget."""

    def scan_nested(start: int, size: int, at: int) -> tuple[ModelIssue, ...]:
        if depth + 1 > MAX_NESTING:
            return (
                ModelIssue(
                    "scan-limit",
                    Severity.HIGH,
                    f"payload nested more than {MAX_NESTING} deep is not scanned",
                    offset=at,
                ),
            )
        member = f"_load_from_bytes@{at}"
        if buf[start : start + len(_ZIP_MAGIC)] != _ZIP_MAGIC:
            # torch.load of in-memory bytes: a zip archive by its magic, anything else the legacy
            # format read from offset 0 (never a tar: that needs a real file). What torch writes
            # here (Storage.__reduce__ saves in the legacy format): its pickles are scanned where
            # they are, without copying the storage bytes after them. Each scan is charged, so a
            # payload memoized once and loaded many times costs its size every time.
            budget.check_time(member)
            scanned = scan_pickle(
                buf,
                start=start,
                end=start + size,
                allow=allow,
                max_pickles=LEGACY_TORCH_PICKLES,
                budget=budget,
                nested=_nested(buf, allow, budget, depth + 1),
                joblib=False,
            )
            budget.charge(member, max(0, scanned.end - start), 0, 0)
            return scanned.issues
        budget.charge(member, size, 0, 0)
        import tempfile  # here: most scans never spill (an import is part of a small scan's time)

        with tempfile.TemporaryDirectory(prefix="modelseal-nested-") as tmp:
            inner = Path(tmp) / "payload"
            # a fresh file in a fresh private directory: never through an existing name
            with inner.open("xb") as out:
                for piece in range(start, start + size, _PIECE):
                    out.write(buf[piece : min(piece + _PIECE, start + size)])
            detected = detect_format(inner)
            found = _scan_detected(inner, detected, allow, budget, None, depth + 1)
            if detected.format not in (Format.PYTORCH_ZIP, Format.TORCHSCRIPT):
                # torch.load reads any zip as a torch archive: one modelseal does not recognize
                # as such is not judged by the same rules
                found += (
                    ModelIssue(
                        "unparsable",
                        Severity.HIGH,
                        f"nested zip payload is not a torch archive ({detected.format.value})",
                        offset=at,
                    ),
                )
            return found

    return scan_nested


@contextmanager
def _mapped(path: Path) -> Iterator[mmap.mmap | bytes]:
    with path.open("rb") as f:
        size = f.seek(0, 2)
        if size == 0:
            yield b""
            return
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            yield m
        finally:
            m.close()


def _scan_mapped(
    path: Path,
    allow: Allowlist,
    budget: Budget,
    depth: int,
    *,
    start: int,
    max_pickles: int | None = None,
    joblib: bool,
) -> tuple[ModelIssue, ...]:
    with _mapped(path) as buf:
        return scan_pickle(
            buf,
            start=start,
            allow=allow,
            max_pickles=max_pickles,
            budget=budget,
            nested=_nested(buf, allow, budget, depth),
            joblib=joblib,
        ).issues


def _limit_issue(e: ScanLimitExceeded) -> ModelIssue:
    what = f"member {e.member!r}" if e.member else "the file"
    limit = e.limit if e.limit == CUTOFF else f"models.limits.{e.limit}"
    return ModelIssue(
        "scan-limit",
        Severity.HIGH,
        f"{what} {e.message}; the rest is not scanned",
        member=e.member,
        detail={"limit": limit, "value": e.value},
    )


class _Spool:
    """Inflated bytes of one member or stream: in memory while small, then in an unlinked
    temporary file (created fresh by the OS, never through a name)."""

    def __init__(self) -> None:
        self._mem = bytearray()
        self._file: IO[bytes] | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        self.size += len(data)
        if self._file is None and len(self._mem) + len(data) <= SPOOL_IN_MEMORY:
            self._mem += data
            return
        if self._file is None:
            import tempfile

            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
            self._file.write(self._mem)
            self._mem = bytearray()
        self._file.write(data)

    @contextmanager
    def view(self) -> Iterator[bytes | mmap.mmap]:
        """The spooled bytes, as bytes or a read-only mmap."""
        if self._file is None:
            yield bytes(self._mem)
            return
        self._file.flush()
        if self.size == 0:
            yield b""
            return
        m = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            yield m
        finally:
            m.close()

    def close(self) -> None:
        """Drop the bytes (and the temporary file)."""
        self._mem = bytearray()
        if self._file is not None:
            self._file.close()
            self._file = None


def _spool(
    pieces: Iterable[tuple[bytes, int]], budget: Budget, member: str, *, ratio_base: int = 0
) -> _Spool:
    """Pull ``(piece, compressed bytes consumed so far)`` into a spool, charging ``budget``;
    ``ratio_base``, when given, is the member's compressed size (for readers that do not say
    how much they consumed)."""
    spool = _Spool()
    try:
        for piece, consumed in pieces:
            budget.charge(member, len(piece), spool.size + len(piece), ratio_base or consumed)
            spool.write(piece)
    except BaseException:
        spool.close()
        raise
    return spool


def _read_pieces(fh: IO[bytes]) -> Iterator[tuple[bytes, int]]:
    while piece := fh.read(_PIECE):
        yield piece, 0


#: Tar-era torch members that hold one pickle followed by raw records whose length only the
#: record type knows: only their first pickle can be checked.
_TAR_RECORD_MEMBERS = frozenset({"tensors", "storages"})


def _scan_tar_members(
    path: Path, detected: Detected, allow: Allowlist, budget: Budget, depth: int
) -> tuple[ModelIssue, ...]:
    import tarfile  # here: tar archives are rare (an import is part of a small scan's time)

    issues: list[ModelIssue] = []
    wanted = set(detected.zip_pickle_members)
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                budget.check_time(member.name)
                if not member.isfile() or member.name not in wanted:
                    continue
                # A sparse member stores only its data runs: the holes are inflated zeros.
                stored = 0
                if member.issparse():
                    # typeshed says bytes; tarfile stores (offset, size) pairs.
                    runs: list[tuple[int, int]] = member.sparse  # type: ignore[assignment]
                    stored = max(1, sum(n for _, n in runs))
                budget.precheck(member.name, member.size, stored)
                f = tar.extractfile(member)
                if f is None:
                    continue
                spool = _spool(_read_pieces(f), budget, member.name, ratio_base=stored)
                try:
                    issues += _scan_tar_member(spool, member.name, allow, budget, depth)
                finally:
                    spool.close()
    except (tarfile.TarError, EOFError) as e:
        issues.append(ModelIssue("unparsable", Severity.HIGH, f"broken tar archive: {e}"))
    return tuple(issues)


def _scan_tar_member(
    spool: _Spool, name: str, allow: Allowlist, budget: Budget, depth: int
) -> tuple[ModelIssue, ...]:
    with spool.view() as data:
        nested = _nested(data, allow, budget, depth)
        if name not in _TAR_RECORD_MEMBERS:
            return scan_pickle(data, allow=allow, member=name, budget=budget, nested=nested).issues
        issues = scan_pickle(
            data, allow=allow, member=name, max_pickles=1, budget=budget, nested=nested
        ).issues
    return (
        *issues,
        ModelIssue(
            "unverifiable",
            Severity.MEDIUM,
            f"tar-era torch {name}: the records after the first pickle are not scanned",
            member=name,
        ),
    )


def _scan_zip_members(
    path: Path, detected: Detected, allow: Allowlist, budget: Budget, depth: int
) -> tuple[ModelIssue, ...]:
    issues: list[ModelIssue] = []
    try:
        with ByteSource(path) as src, zipfile.ZipFile(src.file) as zf:
            for name in detected.zip_pickle_members:
                budget.check_time(name)
                info = zf.getinfo(name)
                if info.compress_type not in INFLATABLE_ZIP_METHODS:
                    issues.append(_not_inflatable(name, info.compress_type))
                    continue
                # What the directory declares is checked before reading anything (the reads
                # below check what the stream really does: the sizes may lie).
                compressed = min(info.compress_size, src.size)
                ratio_base = compressed if info.compress_type != zipfile.ZIP_STORED else 0
                budget.precheck(name, info.file_size, ratio_base)
                with zf.open(info) as fh:
                    spool = _spool(_read_pieces(fh), budget, name, ratio_base=ratio_base)
                try:
                    with spool.view() as data:
                        start = detected.member_offsets.get(name, 0)
                        issues += scan_pickle(
                            data,
                            start=start,
                            allow=allow,
                            member=name,
                            budget=budget,
                            nested=_nested(data, allow, budget, depth),
                        ).issues
                finally:
                    spool.close()
    except ZIP_ERRORS as e:
        issues.append(ModelIssue("unparsable", Severity.HIGH, f"broken zip archive: {e}"))
    return tuple(issues)


def _not_inflatable(member: str, method: int) -> ModelIssue:
    return ModelIssue(
        "unparsable",
        Severity.HIGH,
        f"member {member!r} uses zip compression method {method}; modelseal inflates only "
        "stored and deflated members (a bz2 or lzma member cannot be inflated in bounded steps "
        "by zipfile), so it is not scanned",
        member=member,
        detail={"compression": str(method)},
    )


def _scan_compressed(
    path: Path, codec: str, allow: Allowlist, budget: Budget, depth: int
) -> tuple[ModelIssue, ...]:
    member = f"({codec}-decompressed)"
    try:
        with ByteSource(path) as src:
            spool = _spool(iter_decompressed(src, codec), budget, member)
    except ValueError as e:
        return (ModelIssue("unparsable", Severity.HIGH, f"corrupt {codec} stream: {e}"),)
    try:
        with spool.view() as data:
            return scan_pickle(
                data,
                allow=allow,
                member=member,
                budget=budget,
                nested=_nested(data, allow, budget, depth),
                joblib=True,
            ).issues
    finally:
        spool.close()


#: Below this many files one process scans faster than a pool: forking and sending results
#: back costs more than the scanning (200 small checkpoints: 0.07 s serial, 0.10 s with 2
#: workers). The pickle parts of model files are small; their tensor data is never read.
POOL_MIN_FILES = 1000


def scan_files(
    paths: list[Path],
    allow: Allowlist | None = None,
    *,
    workers: int | None = None,
    limits: ScanLimits = DEFAULT_LIMITS,
) -> list[FileScan]:
    """Scan many files, each within ``limits``; in parallel processes when there are very many
    (the scanner is pure Python, so threads would queue on the GIL). Results come back in
    ``paths`` order."""
    import os

    n = max(1, min(workers or os.cpu_count() or 1, len(paths)))
    if n == 1 or (workers is None and len(paths) < POOL_MIN_FILES):
        return [scan_file(p, allow, limits=limits) for p in paths]
    # Imported only for a pool: multiprocessing costs ~20 ms to import, a tenth of a small scan.
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(max_workers=n, mp_context=get_context("fork")) as pool:
        chunk = max(1, len(paths) // (n * 4))
        return list(pool.map(_scan_limited, paths, [allow] * len(paths), [limits] * len(paths),
                             chunksize=chunk))  # fmt: skip


def _scan_limited(path: Path, allow: Allowlist | None, limits: ScanLimits) -> FileScan:
    return scan_file(path, allow, limits=limits)


#: Below this many files a background scan is not worth a fork.
PREFETCH_MIN_FILES = 16


class PrefetchedScans:
    """Scan files in a forked child (:class:`~modelseal.models.ahead.Ahead`) while this process
    does something else.

    The child scans within the default limits; :meth:`take` with other limits stops it and
    scans again. Anything that goes wrong in the child only means :meth:`take` scans in this
    process instead: same results, just later.
    """

    def __init__(self, paths: list[Path]) -> None:
        self._paths = paths
        self._ahead = Ahead(
            lambda: _dump_scans(scan_files(paths)), start=len(paths) >= PREFETCH_MIN_FILES
        )

    @property
    def _pid(self) -> int:
        return self._ahead.pid

    def take(self, paths: list[Path], limits: ScanLimits = DEFAULT_LIMITS) -> list[FileScan]:
        """Scans of ``paths`` under the built-in allowlist within ``limits``, in order (paths
        that were not prefetched are scanned now)."""
        done: dict[Path, FileScan] = {}
        if limits != DEFAULT_LIMITS:
            # Scanned within other limits: its results would not count.
            self._ahead.cancel()
        data = self._ahead.take()
        if data is not None:
            done = dict(zip(self._paths, _load_scans(data), strict=True))
        return [done[p] if p in done else scan_file(p, limits=limits) for p in paths]


def _dump_scans(scans: list[FileScan]) -> bytes:
    import pickle

    return pickle.dumps(scans, protocol=pickle.HIGHEST_PROTOCOL)


def _load_scans(data: bytes) -> list[FileScan]:
    import pickle

    # The bytes come from our own forked child over a private pipe, never from a model file.
    scans: list[FileScan] = pickle.loads(data)  # noqa: S301
    return scans


def scan_findings(rel: str, scan: FileScan, metadata: bool = False) -> list[Finding]:
    """The findings of the models gate for one scanned file, named ``rel`` in them;
    ``metadata``: it is the model card or config of its directory, in no model format (the
    judge does not hold it to ``models.formats``)."""
    det = scan.detected
    out = [
        Finding(
            gate=GATE,
            id="models.format",
            severity=Severity.HIGH if scan.carries_pickle else Severity.LOW,
            title=f"{rel} is {scan.format.value}"
            + (" (carries pickle data)" if scan.carries_pickle else ""),
            subject=rel,
            location=rel,
            evidence={"format": scan.format.value, "pickle": "yes" if scan.carries_pickle else "no"}
            | {f"detail.{k}": str(v) for k, v in det.detail.items()}
            | ({"metadata": "yes"} if metadata else {}),
        )
    ]
    for issue in scan.issues:
        where = issue.where()
        out.append(
            Finding(
                gate=GATE,
                id=f"models.{issue.kind}",
                severity=issue.severity,
                title=f"{rel}: {issue.title}",
                subject=rel,
                location=f"{rel} ({where})" if where else rel,
                evidence=dict(issue.detail)
                | ({"member": issue.member} if issue.member else {})
                | ({"offset": str(issue.offset)} if issue.offset is not None else {}),
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Any file of an image (the image gate's payload scan): model formats and archives' members

#: Members of one tar archive that are looked at; past it the archive is not scanned further.
MAX_TAR_MEMBERS: Final = MAX_ZIP_MEMBERS
#: The ``limit`` of a ``scan-limit`` issue for an archive past its bounds (never read).
ARCHIVE_BOUND: Final = "archive-bound"
#: Bytes read at the start of an archive member to tell whether it is needed whole.
_MEMBER_HEAD: Final = 4096
_ZIP_FORMATS: Final = frozenset({Format.PYTORCH_ZIP, Format.TORCHSCRIPT, Format.NUMPY_ZIP,
                                 Format.KERAS})  # fmt: skip


def scan_payload(
    path: Path,
    allow: Allowlist | None = None,
    *,
    limits: ScanLimits = DEFAULT_LIMITS,
    cutoff: float | None = None,
) -> FileScan:
    """Scan any file of an image as :func:`scan_file` does (without an ``unknown-format``
    issue), and also the members of every zip or tar archive it is — by its first bytes, or a
    zip by its end record (data before the first local header) — whatever format its start is:
    pickle members as in a torch archive, and members that are themselves pickle-bearing or
    archives (by their first bytes: a zip in a zip, a tar of pickles, a gzip'd joblib) spooled
    and scanned the same way, at most :data:`MAX_NESTING` deep. All within ``limits`` and, for
    many files at once, the deadline ``cutoff`` (``time.monotonic()``): past it a
    ``scan-limit`` issue with ``detail["limit"] == CUTOFF``. An archive past its bounds is a
    ``scan-limit`` issue with ``detail["limit"] == ARCHIVE_BOUND``."""
    allow = allow or Allowlist.default()
    budget = Budget(limits, cutoff=cutoff)
    detected = detect_format(path)
    return FileScan(path, detected, _scan_payload(path, detected, allow, budget, 0))


def _scan_payload(
    path: Path, detected: Detected, allow: Allowlist, budget: Budget, depth: int
) -> tuple[ModelIssue, ...]:
    issues: list[ModelIssue] = []
    if detected.format is not Format.UNKNOWN:
        issues += _scan_detected(path, detected, allow, budget, None, depth)
        if any(i.kind == "scan-limit" and i.detail.get("limit") == CUTOFF for i in issues):
            return tuple(issues)
    try:
        issues += _scan_archive(path, detected, allow, budget, depth)
    except ScanLimitExceeded as e:
        issues.append(_limit_issue(e))
    except OSError as e:
        issues.append(
            ModelIssue("unreadable", Severity.HIGH, f"cannot read the file: {e.strerror or e}")
        )
    return tuple(issues)


def _bound_issue(what: str) -> ModelIssue:
    return ModelIssue(
        "scan-limit", Severity.HIGH, f"{what}: not scanned", detail={"limit": ARCHIVE_BOUND}
    )


def _scan_archive(
    path: Path, detected: Detected, allow: Allowlist, budget: Budget, depth: int
) -> list[ModelIssue]:
    """The members of ``path`` as a zip and as a tar archive, where it is one."""
    issues: list[ModelIssue] = []
    with ByteSource(path) as src:
        first = src.read(0, 512)
        is_tar = is_tar_header(first)
        # A tar's last member, when a zip, ends the tar too: it is scanned as the member.
        is_zip = first[:4] in (_ZIP_MAGIC, b"PK\x05\x06") or (
            not is_tar and zip_tail(src.read(max(0, src.size - ZIP_TAIL), ZIP_TAIL))
        )
        is_tar = is_tar and not (
            detected.format is Format.TORCH_LEGACY and detected.detail.get("variant") == "tar"
        )
        zipped = None
        if is_zip:
            zipped = detected if detected.detail.get("container") == "zip" else detect_zip(src)
    if zipped is not None:
        bound = zipped.detail.get("bound")
        if bound:
            issues.append(_bound_issue(f"zip archive with {bound}"))
        else:
            if detected.format not in _ZIP_FORMATS:
                issues += _scan_zip_members(path, zipped, allow, budget, depth)
            if zipped.format is Format.UNKNOWN and "error" not in zipped.detail:
                issues += _scan_zip_nested(path, zipped, allow, budget, depth)
    if is_tar:
        issues += _scan_tar_all(path, allow, budget, depth)
    return issues


def _nested_member(
    fh: IO[bytes], name: str, size: int, allow: Allowlist, budget: Budget, depth: int
) -> tuple[ModelIssue, ...]:
    """One archive member (``fh`` at its start): needed whole when its first bytes say it is
    or may be pickle-bearing (or its name ends ``.pkl``); then spooled to a private file and
    scanned as a file, one level deeper. Member names in issues are prefixed with ``name``."""
    head = fh.read(_MEMBER_HEAD)
    if not head:
        return ()
    if not (name.endswith((".pkl", ".pickle")) or may_carry_pickle(detect_prefix(head, size))):
        return ()
    if depth + 1 > MAX_NESTING:
        return (_bound_issue(f"member {name!r}: an archive nested more than {MAX_NESTING} deep"),)
    budget.precheck(name, size, 0)

    def pieces() -> Iterator[tuple[bytes, int]]:
        yield head, 0
        yield from _read_pieces(fh)

    import tempfile

    with tempfile.TemporaryDirectory(prefix="modelseal-member-") as tmp:
        inner = Path(tmp) / "member"
        with inner.open("xb") as out:  # a fresh file in a fresh private directory
            for piece, _ in pieces():
                budget.charge(name, len(piece), 0, 0)
                out.write(piece)
        detected = detect_format(inner)
        found = _scan_payload(inner, detected, allow, budget, depth + 1)
    return tuple(
        replace(i, member=f"{name}/{i.member}" if i.member else name)
        for i in found
        if i.kind != "unknown-format"
    )


def _scan_zip_nested(
    path: Path, detected: Detected, allow: Allowlist, budget: Budget, depth: int
) -> list[ModelIssue]:
    """The members of a zip in no model format that the pickle pass did not take."""
    issues: list[ModelIssue] = []
    done = set(detected.zip_pickle_members)
    try:
        with ByteSource(path) as src, zipfile.ZipFile(src.file) as zf:
            for info in zf.infolist():
                name = info.filename
                if name.endswith("/") or name in done:
                    continue
                budget.check_time(name)
                if info.compress_type not in INFLATABLE_ZIP_METHODS:
                    continue  # already reported by the pickle pass (_detect_zip lists them)
                with zf.open(info) as fh:
                    issues += _nested_member(fh, name, info.file_size, allow, budget, depth)
    except ZIP_ERRORS as e:
        issues.append(ModelIssue("unparsable", Severity.HIGH, f"broken zip archive: {e}"))
    return issues


def _scan_tar_all(path: Path, allow: Allowlist, budget: Budget, depth: int) -> list[ModelIssue]:
    """Every regular member of a tar archive (any tar format tarfile reads) that is or may be
    pickle-bearing, within :data:`MAX_TAR_MEMBERS` members."""
    import tarfile

    issues: list[ModelIssue] = []
    try:
        with tarfile.open(path, mode="r:") as tar:
            for count, member in enumerate(tar):
                if count >= MAX_TAR_MEMBERS:
                    issues.append(_bound_issue(f"tar archive with more than {MAX_TAR_MEMBERS} "
                                               "members"))  # fmt: skip
                    break
                budget.check_time(member.name)
                # Stream the members: tarfile would keep every TarInfo in memory.
                tar.members.clear()  # type: ignore[attr-defined]
                if not member.isfile():
                    continue
                f = tar.extractfile(member)
                if f is not None:
                    issues += _nested_member(f, member.name, member.size, allow, budget, depth)
    except (tarfile.TarError, EOFError) as e:
        issues.append(ModelIssue("unparsable", Severity.HIGH, f"broken tar archive: {e}"))
    return issues
