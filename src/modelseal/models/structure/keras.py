"""Keras (``.keras`` zip and legacy HDF5): the model config, searched for code it would run."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from modelseal.findings import Severity
from modelseal.models.bytesource import ByteSource
from modelseal.models.formats import (
    INFLATABLE_ZIP_METHODS,
    ZIP_ERRORS,
    hdf5_offset,
)
from modelseal.models.issues import ModelIssue, short
from modelseal.models.structure._common import (
    BAD_HEADER,
    CUSTOM_CODE,
    UNVERIFIABLE,
    Issues,
    json_too_complex,
)

#: config.json / model_config JSON read at most (a Keras config is kilobytes to a few MiB).
MAX_KERAS_CONFIG: Final = 64 << 20
MAX_KERAS_NODES: Final = 2_000_000
#: HDF5 bytes searched for the model_config JSON, and JSON documents tried there.
MAX_H5_SCAN: Final = 4 << 30
MAX_H5_CANDIDATES: Final = 1000
_KERAS_MODULES: Final = ("keras", "tf_keras")
#: TFOpLambda wraps a TensorFlow API function by name; these can touch files or run Python.
_RISKY_TF_OPS: Final = re.compile(
    r"(?:^|\.)(?:io|raw_ops|summary|py_function|numpy_function|py_func|print|debugging)(?:\.|$)"
)
#: A JSON object that starts like a Keras object: ``{"class_name": …`` (model_config, Keras 2
#: layers) or ``{"module": …`` (Keras 3 objects).
_H5_CANDIDATE: Final = re.compile(rb'\{\s{0,32}"(?:class_name|module)"\s{0,32}:')
_H5_CLASS_NAME: Final = re.compile(rb'"class_name"')


def check_keras(path: Path) -> tuple[ModelIssue, ...]:
    """Check a Keras model (``.keras`` zip or legacy HDF5) for code it would run: ``Lambda``
    layers and ``__lambda__`` functions (marshalled Python bytecode, CRITICAL), objects from
    modules outside Keras or registered as custom objects (HIGH), and ``TFOpLambda`` layers
    (MEDIUM; HIGH for TF functions that touch files or run Python)."""
    out = Issues()
    with ByteSource(path) as src:
        if src.read(0, 4) == b"PK\x03\x04":
            _keras_zip(src, out)
        elif hdf5_offset(src) is not None:
            _keras_h5(src, out)
        else:
            out.add(BAD_HEADER, Severity.HIGH, "neither a .keras zip nor an HDF5 file", offset=0)
    return out.result()


def _keras_zip(src: ByteSource, out: Issues) -> None:
    try:
        with zipfile.ZipFile(src.file) as zf:
            infos = [i for i in zf.infolist() if i.filename == "config.json"]
            if not infos:
                out.add(BAD_HEADER, Severity.HIGH, "no config.json in the .keras archive")
                return
            if len(infos) > 1:
                out.add(
                    BAD_HEADER, Severity.HIGH, "config.json appears more than once",
                    member="config.json",
                )  # fmt: skip
            if infos[-1].compress_type not in INFLATABLE_ZIP_METHODS:
                out.add(
                    BAD_HEADER, Severity.HIGH,
                    "config.json is bz2- or lzma-compressed: modelseal does not inflate it",
                    member="config.json",
                )  # fmt: skip
                return
            with zf.open(infos[-1]) as fh:  # zipfile (and so Keras) reads the last one
                raw = fh.read(MAX_KERAS_CONFIG + 1)
    except ZIP_ERRORS as e:
        out.add(BAD_HEADER, Severity.HIGH, f"broken .keras archive: {short(str(e))}")
        return
    if len(raw) > MAX_KERAS_CONFIG or json_too_complex(raw):
        out.add(
            UNVERIFIABLE, Severity.MEDIUM, "config.json is too large to check",
            member="config.json",
        )  # fmt: skip
        return
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as e:
        out.add(
            BAD_HEADER, Severity.HIGH, f"config.json is not valid JSON: {short(str(e))}",
            member="config.json",
        )  # fmt: skip
        return
    _keras_config(config, out, member="config.json", offset=None)


def _keras_config(root: object, out: Issues, *, member: str | None, offset: int | None) -> None:
    """Flag code-carrying objects anywhere in a Keras config tree."""
    stack: list[tuple[object, str, bool]] = [(root, "$", False)]
    visited = 0
    while stack:
        node, where, in_lambda = stack.pop()
        visited += 1
        if visited > MAX_KERAS_NODES:
            out.add(
                UNVERIFIABLE, Severity.MEDIUM, "the model config is too large to walk",
                member=member, offset=offset,
            )  # fmt: skip
            return
        if isinstance(node, list):
            stack.extend((v, f"{where}[{i}]", in_lambda) for i, v in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        cls = node.get("class_name")
        if isinstance(cls, str):
            in_lambda = _keras_object(node, cls, where, in_lambda, out, member, offset)
        stack.extend((v, f"{where}.{k}", in_lambda) for k, v in node.items())


def _keras_object(
    node: dict[str, object],
    cls: str,
    where: str,
    in_lambda: bool,
    out: Issues,
    member: str | None,
    offset: int | None,
) -> bool:
    """Check one ``{"class_name": …}`` object; returns whether its subtree is a Lambda's."""
    config = node.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    detail = {"class_name": short(cls), "path": short(where)}
    if isinstance(name, str):
        detail["layer"] = short(name)
    label = f"{cls} {name!r}" if isinstance(name, str) else cls
    if cls == "Lambda":
        out.add(
            CUSTOM_CODE, Severity.CRITICAL,
            f"Lambda layer {name!r} carries marshalled Python bytecode that runs on load",
            member=member, offset=offset, **detail,
        )  # fmt: skip
        return True
    if cls == "__lambda__":
        if not in_lambda:
            out.add(
                CUSTOM_CODE, Severity.CRITICAL,
                "a serialized Python lambda (marshalled bytecode) in the model config",
                member=member, offset=offset, **detail,
            )  # fmt: skip
        return in_lambda
    if cls in ("TFOpLambda", "SlicingOpLambda"):
        fn = config.get("function") if isinstance(config, dict) else None
        fn_name = fn if isinstance(fn, str) else ""
        risky = bool(_RISKY_TF_OPS.search(fn_name))
        out.add(
            CUSTOM_CODE, Severity.HIGH if risky else Severity.MEDIUM,
            f"{label} calls TensorFlow function {fn_name or '?'!r} by name on load",
            member=member, offset=offset, function=short(fn_name), **detail,
        )  # fmt: skip
        return in_lambda
    if cls.startswith("__") and cls.endswith("__"):
        return in_lambda  # Keras' own value encodings (__tuple__, __numpy__, __typespec__ …)
    reasons: list[str] = []
    if "module" in node:
        module = node["module"]
        if module is None:
            reasons.append("defined in __main__")
        elif not isinstance(module, str) or not (
            module in _KERAS_MODULES or module.startswith(tuple(m + "." for m in _KERAS_MODULES))
        ):
            reasons.append(f"from module {short(str(module))!r}")
            detail["module"] = short(str(module))
    registered = node.get("registered_name")
    if isinstance(registered, str) and ">" in registered and not registered.startswith("keras>"):
        reasons.append(f"registered custom object {short(registered)!r}")
        detail["registered_name"] = short(registered)
    if reasons:
        out.add(
            CUSTOM_CODE, Severity.HIGH,
            f"{label} is custom code ({'; '.join(reasons)}): loading imports and runs it",
            member=member, offset=offset, **detail,
        )  # fmt: skip
    return in_lambda


def _keras_h5(src: ByteSource, out: Issues) -> None:
    """Find the model_config JSON in an HDF5 file without an HDF5 library.

    HDF5 keeps attribute values uncompressed (inline in the object header, or in a global heap
    for variable-length strings), so the JSON is in the file as plain bytes. Every object
    starting ``{"class_name": …`` or ``{"module": …`` is parsed as a JSON document; a
    ``"class_name"`` left outside every parsed document means config we could not read (a
    broken or reordered document), reported as unverifiable rather than passed.
    """
    limit = min(src.size, MAX_H5_SCAN)
    parsed: list[tuple[int, int]] = []
    covered = 0
    stray: int | None = None
    tried = 0
    last_candidate = last_class = -1
    for chunk_at, chunk in _chunks(src, limit):
        for m in _H5_CANDIDATE.finditer(chunk):
            at = chunk_at + m.start()
            if at <= last_candidate or at < covered:
                continue
            last_candidate = at
            if tried >= MAX_H5_CANDIDATES:
                break
            tried += 1
            doc = _json_at(src, at)
            if doc is None:
                continue
            value, end = doc
            parsed.append((at, end))
            covered = end
            _keras_config(value, out, member=None, offset=at)
        for m in _H5_CLASS_NAME.finditer(chunk):
            at = chunk_at + m.start()
            if at <= last_class:
                continue
            last_class = at
            if stray is None and not any(s <= at < e for s, e in parsed):
                stray = at
    if stray is not None:
        out.add(
            UNVERIFIABLE, Severity.MEDIUM,
            "part of the model config could not be parsed; it was not checked for custom code",
            offset=stray,
        )  # fmt: skip
    elif not parsed:
        scanned = "" if src.size <= limit else f" (first {limit} bytes searched)"
        out.add(
            UNVERIFIABLE, Severity.MEDIUM,
            f"HDF5 file without a readable Keras model_config{scanned}: "
            "cannot check it for custom code",
        )  # fmt: skip


def _chunks(src: ByteSource, limit: int) -> Iterable[tuple[int, bytes]]:
    """The first ``limit`` bytes as (offset, chunk), 1 MiB chunks overlapping by 256 bytes so
    that no short match is cut in two; a match may be seen twice, callers dedupe by offset."""
    size, overlap, pos = 1 << 20, 256, 0
    while pos < limit:
        chunk = src.read(pos, min(size, limit - pos))
        if not chunk:
            return
        yield pos, chunk
        if pos + len(chunk) >= limit:
            return
        pos += len(chunk) - overlap


def _json_at(src: ByteSource, at: int) -> tuple[object, int] | None:
    """Parse the JSON object starting at ``at``: (value, end offset) or None.

    latin-1 keeps byte offsets equal to character offsets for finding the end; the exact span
    is then decoded as UTF-8. The window grows only while the parse runs out of bytes.
    """
    window = 64 << 10
    decoder = json.JSONDecoder()
    while True:
        data = src.read(at, window)
        if json_too_complex(data):
            return None
        try:
            _, end = decoder.raw_decode(data.decode("latin-1"))
        except json.JSONDecodeError as e:
            if e.pos >= len(data) - 64 and len(data) == window and window < MAX_KERAS_CONFIG:
                window *= 4
                continue
            return None
        except (ValueError, RecursionError):
            return None
        try:
            value = json.loads(data[:end].decode("utf-8"))
        except (ValueError, RecursionError):
            return None
        return value, at + end
