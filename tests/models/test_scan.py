"""scan_files and the prefetching child used by `modelseal models scan`."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from modelseal._cli import main
from modelseal.models.scan import PREFETCH_MIN_FILES, PrefetchedScans, scan_files


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


def _tree(root: Path, n: int) -> list[Path]:
    root.mkdir()
    paths = []
    for i in range(n):
        p = root / f"f{i:02d}.pkl"
        p.write_bytes(pickle.dumps({"i": i, "w": [0.5] * i}, protocol=2 + i % 4))
        paths.append(p)
    evil = root / "zz-evil.bin"
    evil.write_bytes(pickle.dumps(_Evil(), protocol=4))  # written, never loaded
    return [*paths, evil]


def test_prefetched_scans_equal_serial_scans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _tree(tmp_path / "d", PREFETCH_MIN_FILES + 4)
    subset = [*paths[::3], paths[-1]]
    serial = scan_files(subset)
    prefetch = PrefetchedScans(paths)
    assert prefetch._pid != 0, "a background child should scan this many files"
    import modelseal.models.scan as scan

    # The child was forked with the real scanner; this process may not scan at all, so the
    # results can only be the child's.
    def no_rescan(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("take() scanned in this process instead of using the child's scans")

    monkeypatch.setattr(scan, "scan_file", no_rescan)
    got = prefetch.take(subset)
    assert got == serial
    assert [i.kind for i in got[-1].issues] == ["unsafe-global"], got[-1]


def test_prefetch_falls_back_when_the_child_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _tree(tmp_path / "d", PREFETCH_MIN_FILES)
    import modelseal.models.scan as scan

    # The child dies before writing anything: the parent scans by itself, same results.
    monkeypatch.setattr(scan, "_dump_scans", lambda _scans: os._exit(3))
    prefetch = PrefetchedScans(paths)
    assert prefetch.take(paths) == scan_files(paths)


def test_few_files_are_scanned_in_process(tmp_path: Path) -> None:
    paths = _tree(tmp_path / "d", 2)
    prefetch = PrefetchedScans(paths)
    assert prefetch._pid == 0
    assert prefetch.take(paths) == scan_files(paths)


def test_scan_command_applies_the_policy_ignore_to_prefetched_scans(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _tree(tmp_path / "d", PREFETCH_MIN_FILES + 2)
    policy = tmp_path / "p.yml"
    policy.write_text("version: 1\nmodels:\n  pickle: scan\n  formats: [pickle]\n")
    assert (
        main(["models", "scan", str(tmp_path / "d"), "--policy", str(policy), "--format", "json"])
        == 1
    )
    out = json.loads(capsys.readouterr().out)
    assert len(out["files"]) == PREFETCH_MIN_FILES + 3
    assert out["status"] == "FAILED"
    policy.write_text(
        "version: 1\nmodels:\n  pickle: scan\n  formats: [pickle]\n  ignore: ['zz-*']\n"
    )
    assert (
        main(["models", "scan", str(tmp_path / "d"), "--policy", str(policy), "--format", "json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert len(out["files"]) == PREFETCH_MIN_FILES + 2
    assert all(not f["path"].endswith("zz-evil.bin") for f in out["files"])
