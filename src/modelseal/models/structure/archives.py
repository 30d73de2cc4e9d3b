"""Directory and zip containers: TensorFlow SavedModel, TorchScript, and the member checks
every zip-based format gets.
"""

from __future__ import annotations

import os
import zipfile
from collections import Counter
from pathlib import Path
from typing import Final

from modelseal.errors import ConfigError
from modelseal.findings import Severity
from modelseal.models.bytesource import ByteSource
from modelseal.models.formats import (
    ZIP_ERRORS,
)
from modelseal.models.issues import ModelIssue, short
from modelseal.models.structure._common import (
    BAD_HEADER,
    CUSTOM_CODE,
    PATH_ESCAPE,
    UNVERIFIABLE,
    WINDOWS_DRIVE,
    Issues,
)

MAX_DIR_ENTRIES: Final = 100_000


def check_savedmodel(path: Path) -> tuple[ModelIssue, ...]:
    """Check a SavedModel directory: its graph is never verified (unverifiable, MEDIUM), and
    any symlink in it that resolves outside it is a ``path-escape``."""
    out = Issues()
    if not path.exists():
        raise ConfigError(f"cannot read model directory {path}: it does not exist.")
    if not path.is_dir():
        out.add(BAD_HEADER, Severity.HIGH, "a SavedModel must be a directory")
        return out.result()
    graph = next((g for g in ("saved_model.pb", "saved_model.pbtxt") if (path / g).is_file()), None)
    if graph is None:
        out.add(BAD_HEADER, Severity.HIGH, "no saved_model.pb in the SavedModel directory")
    else:
        out.add(
            UNVERIFIABLE, Severity.MEDIUM,
            "a SavedModel graph can run arbitrary TensorFlow ops (file reads and writes "
            "included) when loaded or served; modelseal does not verify the graph",
            member=graph,
        )  # fmt: skip
    base = os.path.realpath(path)
    seen = 0
    errors: list[OSError] = []
    for top, dirs, files in os.walk(path, followlinks=False, onerror=errors.append):
        for entry in sorted(dirs) + sorted(files):
            seen += 1
            if seen > MAX_DIR_ENTRIES:
                out.add(
                    UNVERIFIABLE, Severity.MEDIUM,
                    f"more than {MAX_DIR_ENTRIES} entries; the rest were not checked",
                )  # fmt: skip
                return out.result()
            full = os.path.join(top, entry)
            if not os.path.islink(full):
                continue
            real = os.path.realpath(full)
            if os.path.commonpath([base, real]) != base:
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                out.add(
                    PATH_ESCAPE, Severity.CRITICAL,
                    f"{rel} is a symlink to {short(os.readlink(full))}, outside the SavedModel",
                    member=rel, target=short(os.readlink(full)),
                )  # fmt: skip
    for e in errors[:5]:
        out.add(
            UNVERIFIABLE, Severity.MEDIUM, f"cannot list {e.filename}: {e.strerror}",
            member=os.path.relpath(str(e.filename), path) if e.filename else None,
        )  # fmt: skip
    return out.result()


def check_torchscript(path: Path) -> tuple[ModelIssue, ...]:
    """A TorchScript archive's ``code/`` members are source that is compiled and run on load:
    one ``custom-code`` issue (HIGH) listing them. Its pickles are the pickle scanner's."""
    out = Issues()
    with ByteSource(path) as src:
        try:
            with zipfile.ZipFile(src.file) as zf:
                names = [i.filename for i in zf.infolist() if not i.filename.endswith("/")]
        except ZIP_ERRORS as e:
            out.add(BAD_HEADER, Severity.HIGH, f"broken TorchScript archive: {short(str(e))}")
            return out.result()
    code = [n for n in names if n.count("/") >= 2 and n.split("/")[1] == "code"]
    if code:
        root = code[0].split("/", 1)[0]
        out.add(
            CUSTOM_CODE, Severity.HIGH,
            f"TorchScript archive carries {len(code)} code file(s) compiled and run on load",
            member=f"{root}/code/", count=str(len(code)), members=short(", ".join(code), 1000),
        )  # fmt: skip
    return out.result()


def check_zip(path: Path) -> tuple[ModelIssue, ...]:
    """Container checks for any zip-based format (PyTorch, TorchScript, npz, .keras):
    duplicate member names (readers disagree on which one wins), absolute or ``..`` member
    names, encrypted members, and local headers that contradict the central directory."""
    out = Issues()
    with ByteSource(path) as src:
        try:
            with zipfile.ZipFile(src.file) as zf:
                infos = zf.infolist()
                for name, n in Counter(i.filename for i in infos).items():
                    if n > 1:
                        out.add(
                            BAD_HEADER, Severity.HIGH,
                            f"member {short(name)!r} appears {n} times; readers disagree "
                            "on which one is used",
                            member=name,
                        )  # fmt: skip
                for info in infos:
                    _zip_member(zf, info, out)
        except ZIP_ERRORS as e:
            out.add(BAD_HEADER, Severity.HIGH, f"broken zip archive: {short(str(e))}")
    return out.result()


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: Issues) -> None:
    name = info.filename
    if not name:
        out.add(BAD_HEADER, Severity.HIGH, "a member has an empty name", offset=info.header_offset)
    posix = name.replace("\\", "/")
    parts = posix.split("/")
    if posix.startswith("/") or WINDOWS_DRIVE.match(posix) or ".." in parts:
        out.add(
            PATH_ESCAPE, Severity.HIGH,
            f"member name {short(name)!r} points outside the archive when extracted",
            member=name, offset=info.header_offset,
        )  # fmt: skip
    if info.flag_bits & 0x1:
        out.add(
            BAD_HEADER, Severity.HIGH, f"member {short(name)!r} is encrypted: not checkable",
            member=name, offset=info.header_offset,
        )  # fmt: skip
        return
    try:
        with zf.open(info):
            pass  # opening checks the local header against the central directory
    except ZIP_ERRORS as e:
        out.add(
            BAD_HEADER, Severity.HIGH, f"member {short(name)!r}: {short(str(e))}",
            member=name, offset=info.header_offset,
        )  # fmt: skip
