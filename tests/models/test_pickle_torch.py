"""The pickle scanner on real ``torch.save`` output: benign checkpoints are clean in both the zip
and the legacy format, at every pickle protocol; a malicious object saved with torch is flagged.

Needs torch (CPU build); it skips on a developer machine without it and FAILS when ``CI`` is set.
"""

from __future__ import annotations

import collections
import importlib.util
import io
import mmap
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
from tests.support.tools import require

from modelseal.models.allowlist import Allowlist
from modelseal.models.pickle_scan import scan_pickle

ALLOW = Allowlist.default()
LEGACY_PICKLES = 5  # magic number, protocol version, sys_info, the object, storage keys


@pytest.fixture(scope="module")
def torch() -> Any:
    require(importlib.util.find_spec("torch") is not None, "torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Failed to initialize NumPy" when numpy is absent
        import torch as torch_module
    return torch_module


class Evil:
    """Pickles as os.system("echo pwned"); torch.save only records the callable."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


def checkpoint(torch: Any) -> dict[str, Any]:
    """A realistic checkpoint: model and optimizer state, assorted dtypes and torch values."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized dtypes are deprecated, still loadable
        quantized = torch.quantize_per_tensor(torch.ones(2), 0.5, 0, torch.quint8)
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "param": torch.nn.Parameter(torch.ones(3)),
        "half": torch.ones(2, 2, dtype=torch.float16),
        "bf16": torch.arange(4, dtype=torch.bfloat16),
        "int64": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "view": torch.arange(10.0)[2:8:2],  # storage offset and stride
        "shared": [torch.zeros(1)] * 2,  # one storage, referenced twice
        "nested": collections.OrderedDict(a=collections.OrderedDict(b=torch.zeros(1))),
        "size": torch.Size([2, 3]),
        "device": torch.device("cpu"),
        "dtype": torch.float32,
        "layout": torch.strided,
        "sparse": torch.eye(3).to_sparse(),
        "quantized": quantized,
        "meta": torch.empty(2, device="meta"),
        "uint16": torch.zeros(2, dtype=torch.uint16),
        "float8": torch.zeros(2, dtype=torch.float8_e4m3fn),
        "epoch": 3,
        "name": "résumé",
    }


def save(torch: Any, obj: Any, *, legacy: bool, protocol: int = 2) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, pickle_protocol=protocol, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def data_pkl(archive: bytes) -> tuple[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith("/data.pkl")]
        return name, zf.read(name)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_zip_checkpoint_is_clean(torch: Any, protocol: int) -> None:
    name, pkl = data_pkl(save(torch, checkpoint(torch), legacy=False, protocol=protocol))
    result = scan_pickle(pkl, allow=ALLOW, member=name)
    assert result.issues == ()
    assert (result.pickles, result.end) == (1, len(pkl))
    names = {g.qualified for g in result.globals}
    assert {"torch._utils._rebuild_tensor_v2", "collections.OrderedDict",
            "torch._utils._rebuild_parameter", "torch.FloatStorage"} <= names  # fmt: skip


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_legacy_checkpoint_is_clean(torch: Any, protocol: int) -> None:
    data = save(torch, checkpoint(torch), legacy=True, protocol=protocol)
    result = scan_pickle(data, allow=ALLOW, max_pickles=LEGACY_PICKLES)
    assert result.issues == ()
    assert result.pickles == LEGACY_PICKLES
    assert result.end < len(data)  # raw storage bytes follow, and were not read as pickle
    # where the pickles end, the storages begin (8-byte element count of the first one)
    assert len(data) - result.end > 8


def test_legacy_checkpoint_without_max_pickles_reports_the_raw_bytes(torch: Any) -> None:
    data = save(torch, {"w": torch.ones(3)}, legacy=True)
    (issue,) = scan_pickle(data, allow=ALLOW).issues
    assert issue.kind == "trailing-data"
    assert issue.offset == scan_pickle(data, allow=ALLOW, max_pickles=LEGACY_PICKLES).end


def test_legacy_checkpoint_scanned_through_mmap(torch: Any, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(checkpoint(torch), path, _use_new_zipfile_serialization=False)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        result = scan_pickle(m, allow=ALLOW, max_pickles=LEGACY_PICKLES)
    assert (result.issues, result.pickles) == ((), LEGACY_PICKLES)


def test_bare_tensor_and_module_state(torch: Any) -> None:
    for obj in (torch.ones(2), torch.nn.Linear(2, 2).state_dict(), [torch.ones(1), 2.5]):
        _, pkl = data_pkl(save(torch, obj, legacy=False))
        assert scan_pickle(pkl, allow=ALLOW).issues == ()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_object_saved_with_torch_is_flagged(
    torch: Any, legacy: bool, protocol: int
) -> None:
    obj = {"state_dict": torch.nn.Linear(2, 2).state_dict(), "hook": Evil()}
    data = save(torch, obj, legacy=legacy, protocol=protocol)
    if legacy:
        result = scan_pickle(data, allow=ALLOW, max_pickles=LEGACY_PICKLES)
        member = None
    else:
        member, data = data_pkl(data)
        result = scan_pickle(data, allow=ALLOW, member=member)
    (issue,) = result.issues
    assert issue.kind == "unsafe-global"
    assert issue.detail["global"] == "posix.system"
    assert issue.member == member
    opcode = 0x93 if protocol >= 4 else ord("c")  # STACK_GLOBAL or GLOBAL
    assert issue.offset is not None and data[issue.offset] == opcode


def test_full_module_pickle_is_flagged(torch: Any) -> None:
    # torch.save(model) pickles the classes themselves: not a state_dict, so not allowed
    _, pkl = data_pkl(save(torch, torch.nn.Linear(2, 2), legacy=False))
    flagged = {i.detail.get("global") for i in scan_pickle(pkl, allow=ALLOW).issues}
    assert "torch.nn.modules.linear.Linear" in flagged
