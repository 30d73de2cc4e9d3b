"""Scanning one model file: detect its format from the bytes, scan every pickle it carries
(plain, inside zip or tar members, after a numpy header), and check its structure.

Nothing here imports, loads or executes model content. Files are memory-mapped, so scanning a
checkpoint reads its pickle parts and headers, never its tensor data.
"""

from __future__ import annotations

import mmap
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelseal.findings import Severity
from modelseal.models.formats import ZIP_ERRORS, Detected, decompress_prefix, detect_format
from modelseal.models.issues import Format, ModelIssue
from modelseal.models.pickle_scan import Allowlist, scan_pickle
from modelseal.models.structure import check_structure

#: A pickle member larger than this is not read into memory; it is reported instead.
MAX_MEMBER_BYTES = 1 << 30
#: A compressed (joblib) file is decompressed this far at most; a longer stream is cut there and
#: so reported unparsable.
MAX_DECOMPRESSED_BYTES = 256 << 20
#: Legacy torch.save: magic number, protocol, sys_info, the object, the storage keys.
LEGACY_TORCH_PICKLES = 5


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
    path: Path, allow: Allowlist | None = None, *, model_dir: Path | None = None
) -> FileScan:
    """Detect, scan and check one file (or a SavedModel directory)."""
    allow = allow or Allowlist.default()
    detected = detect_format(path)
    fmt = detected.format
    issues: list[ModelIssue] = []
    try:
        if fmt is Format.JOBLIB and detected.detail.get("compressed"):
            issues += _scan_compressed(path, detected.detail["compressed"], allow)
        elif fmt in (Format.PICKLE, Format.JOBLIB):
            issues += _scan_mapped(path, allow, start=0)
        elif fmt is Format.TORCH_LEGACY and detected.detail.get("variant") == "tar":
            issues += _scan_tar_members(path, detected, allow)
        elif fmt is Format.TORCH_LEGACY:
            issues += _scan_mapped(path, allow, start=0, max_pickles=LEGACY_TORCH_PICKLES)
        elif fmt is Format.NUMPY and detected.pickle_offset is not None:
            issues += _scan_mapped(path, allow, start=detected.pickle_offset)
        elif fmt in (Format.PYTORCH_ZIP, Format.TORCHSCRIPT, Format.NUMPY_ZIP, Format.KERAS):
            issues += _scan_zip_members(path, detected, allow)
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
    return FileScan(path, detected, tuple(issues))


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
    path: Path, allow: Allowlist, *, start: int, max_pickles: int | None = None
) -> tuple[ModelIssue, ...]:
    with _mapped(path) as buf:
        return scan_pickle(buf, start=start, allow=allow, max_pickles=max_pickles).issues


#: Tar-era torch members that hold one pickle followed by raw records whose length only the
#: record type knows: only their first pickle can be checked.
_TAR_RECORD_MEMBERS = frozenset({"tensors", "storages"})


def _scan_tar_members(path: Path, detected: Detected, allow: Allowlist) -> tuple[ModelIssue, ...]:
    issues: list[ModelIssue] = []
    wanted = set(detected.zip_pickle_members)
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for member in tar:
                if not member.isfile() or member.name not in wanted:
                    continue
                if member.size > MAX_MEMBER_BYTES:
                    issues.append(_too_large(member.name, member.size))
                    continue
                f = tar.extractfile(member)
                data = f.read() if f is not None else b""
                if member.name in _TAR_RECORD_MEMBERS:
                    issues += scan_pickle(
                        data, allow=allow, member=member.name, max_pickles=1
                    ).issues
                    issues.append(
                        ModelIssue(
                            "unverifiable",
                            Severity.MEDIUM,
                            f"tar-era torch {member.name}: the records after the first pickle "
                            "are not scanned",
                            member=member.name,
                        )
                    )
                    continue
                issues += scan_pickle(data, allow=allow, member=member.name).issues
    except (tarfile.TarError, EOFError) as e:
        issues.append(ModelIssue("unparsable", Severity.HIGH, f"broken tar archive: {e}"))
    return tuple(issues)


def _scan_zip_members(path: Path, detected: Detected, allow: Allowlist) -> tuple[ModelIssue, ...]:
    issues: list[ModelIssue] = []
    try:
        with zipfile.ZipFile(path) as zf:
            for name in detected.zip_pickle_members:
                info = zf.getinfo(name)
                if info.file_size > MAX_MEMBER_BYTES:
                    issues.append(_too_large(name, info.file_size))
                    continue
                data = zf.read(info)
                start = detected.member_offsets.get(name, 0)
                issues += scan_pickle(data, start=start, allow=allow, member=name).issues
    except ZIP_ERRORS as e:
        issues.append(ModelIssue("unparsable", Severity.HIGH, f"broken zip archive: {e}"))
    return tuple(issues)


def _scan_compressed(path: Path, codec: str, allow: Allowlist) -> tuple[ModelIssue, ...]:
    try:
        data = decompress_prefix(path, codec, MAX_DECOMPRESSED_BYTES)
    except ValueError as e:
        return (ModelIssue("unparsable", Severity.HIGH, f"corrupt {codec} stream: {e}"),)
    issues = scan_pickle(data, allow=allow, member=f"({codec}-decompressed)").issues
    return issues


def _too_large(member: str, size: int) -> ModelIssue:
    return ModelIssue(
        "unparsable",
        Severity.HIGH,
        f"pickle member of {size} bytes is larger than modelseal scans ({MAX_MEMBER_BYTES})",
        member=member,
    )


#: Below this many files one process scans faster than a pool: forking and sending results
#: back costs more than the scanning (200 small checkpoints: 0.07 s serial, 0.10 s with 2
#: workers). The pickle parts of model files are small; their tensor data is never read.
POOL_MIN_FILES = 1000


def scan_files(
    paths: list[Path], allow: Allowlist | None = None, *, workers: int | None = None
) -> list[FileScan]:
    """Scan many files; in parallel processes when there are very many (the scanner is pure
    Python, so threads would queue on the GIL). Results come back in ``paths`` order."""
    import os
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    n = max(1, min(workers or os.cpu_count() or 1, len(paths)))
    if n == 1 or (workers is None and len(paths) < POOL_MIN_FILES):
        return [scan_file(p, allow) for p in paths]
    with ProcessPoolExecutor(max_workers=n, mp_context=get_context("fork")) as pool:
        chunk = max(1, len(paths) // (n * 4))
        return list(pool.map(scan_file, paths, [allow] * len(paths), chunksize=chunk))


#: Below this many files a background scan is not worth a fork.
PREFETCH_MIN_FILES = 16


class PrefetchedScans:
    """Scan files in a forked child while this process does something else.

    ``modelseal models scan`` spends a third of a small run importing pydantic and validating
    the policy, work the scan does not depend on (the scan applies the built-in allowlist; the
    policy's extra globals are applied when judging). On a machine with a second core the
    child scans meanwhile. Anything that goes wrong in the child (no ``fork``, a crash, a
    signal) only means :meth:`take` scans in this process instead: same results, just later.
    """

    def __init__(self, paths: list[Path]) -> None:
        import os

        self._paths = paths
        self._pid = 0
        self._fd = -1
        if len(paths) < PREFETCH_MIN_FILES or not hasattr(os, "fork") or (os.cpu_count() or 1) < 2:
            return
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its result is checked through take()
            code = 1
            try:
                os.close(read_fd)
                data = _dump_scans(scan_files(paths))
                with os.fdopen(write_fd, "wb") as out:
                    out.write(data)
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        self._pid, self._fd = pid, read_fd

    def take(self, paths: list[Path]) -> list[FileScan]:
        """Scans of ``paths`` under the built-in allowlist, in order (paths that were not
        prefetched are scanned now)."""
        import os

        done: dict[Path, FileScan] = {}
        if self._pid:
            with os.fdopen(self._fd, "rb") as src:
                data = src.read()
            _, status = os.waitpid(self._pid, 0)
            self._pid = 0
            if status == 0:
                done = dict(zip(self._paths, _load_scans(data), strict=True))
        return [done[p] if p in done else scan_file(p) for p in paths]


def _dump_scans(scans: list[FileScan]) -> bytes:
    import pickle

    return pickle.dumps(scans, protocol=pickle.HIGHEST_PROTOCOL)


def _load_scans(data: bytes) -> list[FileScan]:
    import pickle

    # The bytes come from our own forked child over a private pipe, never from a model file.
    scans: list[FileScan] = pickle.loads(data)  # noqa: S301
    return scans
