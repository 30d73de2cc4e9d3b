"""What the model scanners report: issues found in one model file, and the formats they know."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from modelseal.findings import PicklableFrozen, Severity


class Format(Enum):
    """Model file formats, detected by content (magic bytes, container layout), never by name."""

    PICKLE = "pickle"
    PYTORCH_ZIP = "pytorch-zip"  # torch.save since 1.6: a zip with <root>/data.pkl
    TORCH_LEGACY = "torch-legacy"  # torch.save(_use_new_zipfile_serialization=False), tar era
    TORCHSCRIPT = "torchscript"  # torch.jit.save: zip with constants.pkl and code/
    NUMPY = "numpy"  # .npy
    NUMPY_ZIP = "numpy-zip"  # .npz
    JOBLIB = "joblib"
    SAFETENSORS = "safetensors"
    GGUF = "gguf"
    ONNX = "onnx"
    KERAS = "keras"  # Keras 3 .keras zip
    KERAS_H5 = "keras-h5"  # HDF5
    TF_SAVEDMODEL = "tf-savedmodel"  # a directory with saved_model.pb
    UNKNOWN = "unknown"

    @property
    def carries_pickle(self) -> bool:
        """Formats that are (or may embed) pickle streams: code until proven otherwise."""
        return self in PICKLE_FORMATS


PICKLE_FORMATS = frozenset(
    {
        Format.PICKLE,
        Format.PYTORCH_ZIP,
        Format.TORCH_LEGACY,
        Format.TORCHSCRIPT,
        Format.JOBLIB,
        Format.NUMPY,  # only object arrays carry a pickle; the scanner says which
        Format.NUMPY_ZIP,
    }
)


@dataclass(frozen=True)
class ModelIssue(PicklableFrozen):
    """One problem in one model file.

    ``kind`` is a stable short id (it becomes the finding id ``models.<kind>``):
    ``unsafe-global``, ``dynamic-global``, ``pickle-extension``, ``unparsable``,
    ``trailing-data``, ``bad-header``, ``custom-code``, ``path-escape``, ``unknown-format`` …
    """

    kind: str
    severity: Severity
    title: str
    member: str | None = None  # zip/tar member, or a path inside a model directory
    offset: int | None = None  # byte offset (within the member when there is one)
    detail: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", MappingProxyType(dict(self.detail)))

    def where(self) -> str:
        """``member@offset`` as far as known, for messages."""
        parts = []
        if self.member:
            parts.append(self.member)
        if self.offset is not None:
            parts.append(f"offset {self.offset}")
        return ", ".join(parts)


def short(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters (the last one an ellipsis) for an issue's detail."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
