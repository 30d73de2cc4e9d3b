"""Structure checks for the non-pickle model formats: every header, offset and reference is
checked against the file it lives in, so a malformed or hostile file is an issue, not a crash
in whatever loads it later.

Each ``check_*`` function takes a path and returns ``tuple[ModelIssue, ...]``. Nothing is loaded,
imported or executed; headers are read with bounded reads, tensor data never. Every loop is
bounded by the bytes that back it and by a work budget, so a header claiming 2**60 elements
costs nothing. A file that cannot be read at all raises :class:`ConfigError`; everything else
malformed becomes an issue. Issue offsets are byte offsets into the file (into the member when
``member`` is set).

The pickles these formats may carry are not scanned here (see ``pickle_scan``).

One module per format: ``safetensors``, ``gguf``, ``onnx``, ``keras`` (``.keras`` zip and HDF5),
``archives`` (SavedModel directories, TorchScript, the member checks every zip gets); what they
share (the capped issue collector, issue kinds, JSON bound) is in ``_common``.
"""

from __future__ import annotations

from pathlib import Path

from modelseal.models.formats import Detected
from modelseal.models.issues import Format, ModelIssue
from modelseal.models.structure._common import MAX_ISSUES
from modelseal.models.structure.archives import check_savedmodel, check_torchscript, check_zip
from modelseal.models.structure.gguf import check_gguf
from modelseal.models.structure.keras import check_keras
from modelseal.models.structure.onnx import check_onnx
from modelseal.models.structure.safetensors import check_safetensors

__all__ = [
    "MAX_ISSUES",
    "check_gguf",
    "check_keras",
    "check_onnx",
    "check_safetensors",
    "check_savedmodel",
    "check_structure",
    "check_torchscript",
    "check_zip",
]


def check_structure(path: Path, detected: Detected, model_dir: Path) -> tuple[ModelIssue, ...]:
    """Every structure check that applies to a detected file (container checks included)."""
    fmt = detected.format
    issues: list[ModelIssue] = []
    if fmt in (Format.PYTORCH_ZIP, Format.TORCHSCRIPT, Format.NUMPY_ZIP, Format.KERAS):
        issues += check_zip(path)
    if fmt is Format.SAFETENSORS:
        issues += check_safetensors(path)
    elif fmt is Format.GGUF:
        issues += check_gguf(path)
    elif fmt is Format.ONNX:
        issues += check_onnx(path, model_dir)
    elif fmt in (Format.KERAS, Format.KERAS_H5):
        issues += check_keras(path)
    elif fmt is Format.TF_SAVEDMODEL:
        issues += check_savedmodel(path)
    elif fmt is Format.TORCHSCRIPT:
        issues += check_torchscript(path)
    return tuple(issues)
