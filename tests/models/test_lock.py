"""models.lock and the hashing beneath it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from modelseal.errors import ConfigError
from modelseal.models.hashing import hash_file, hash_files
from modelseal.models.lock import Source, load_lock, make_lock, verify_lock


def _tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def test_hash_file_matches_hashlib_across_chunk_boundaries(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 + 17)
    p = tmp_path / "f"
    p.write_bytes(data)
    d = hash_file(p, chunk=1024)
    assert d.size == len(data) and d.sha256 == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "e"
    empty.write_bytes(b"")
    assert hash_file(empty).sha256 == hashlib.sha256(b"").hexdigest()


def test_hash_files_parallel_equals_serial(tmp_path: Path) -> None:
    paths = []
    for i in range(9):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(1000 * (i + 1)))
        paths.append(p)
    assert hash_files(paths, workers=4) == hash_files(paths, workers=1)
    assert set(hash_files(paths)) == set(paths)


def test_hash_of_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read model file"):
        hash_file(tmp_path / "missing")


def _lock(tmp_path: Path, **kw: object):
    lock = make_lock(tmp_path, ["model"], detect=lambda p: "safetensors", **kw)  # type: ignore[arg-type]
    (tmp_path / "models.lock").write_text(lock.to_text())
    return load_lock(tmp_path / "models.lock")


def test_lock_round_trip_and_stable_text(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {"model/a.safetensors": b"a" * 10, "model/sub/b.bin": b"b", "model/README.md": b"r"},
    )
    lock = _lock(tmp_path, ignore=["*.md"], source=Source("hf://org/m", "abc123"))
    data = json.loads((tmp_path / "models.lock").read_text())
    assert data["version"] == 1 and data["roots"] == ["model"]
    assert [f["path"] for f in data["files"]] == ["model/a.safetensors", "model/sub/b.bin"]
    first = data["files"][0]
    assert first == {
        "path": "model/a.safetensors",
        "size": 10,
        "sha256": hashlib.sha256(b"a" * 10).hexdigest(),
        "format": "safetensors",
        "source": {"uri": "hf://org/m", "revision": "abc123"},
    }
    assert lock.to_text() == (tmp_path / "models.lock").read_text()
    assert verify_lock(lock, ignore=["*.md"])[0] == []


def test_relock_keeps_sources_of_unchanged_files(tmp_path: Path) -> None:
    _tree(tmp_path, {"model/a": b"a", "model/b": b"b"})
    first = _lock(tmp_path, source=Source("hf://org/m", "r1"))
    (tmp_path / "model/b").write_bytes(b"B")
    second = make_lock(tmp_path, ["model"], detect=lambda p: "x", previous=first)
    by = second.by_path()
    assert by["model/a"].source == Source("hf://org/m", "r1")
    assert by["model/b"].source is None


def test_verify_names_changed_missing_extra_with_both_digests(tmp_path: Path) -> None:
    _tree(tmp_path, {"model/a": b"aaaa", "model/b": b"b", "model/notes.txt": b"n"})
    lock = _lock(tmp_path, ignore=["*.txt"])
    (tmp_path / "model/a").write_bytes(b"aaab")  # same size, one byte
    (tmp_path / "model/b").unlink()
    (tmp_path / "model/c").write_bytes(b"c")
    problems, digests = verify_lock(lock, ignore=["*.txt"])
    kinds = {(p.kind, p.path) for p in problems}
    assert kinds == {("changed", "model/a"), ("missing", "model/b"), ("extra", "model/c")}
    changed = next(p for p in problems if p.kind == "changed")
    assert changed.expected == hashlib.sha256(b"aaaa").hexdigest()
    assert changed.actual == hashlib.sha256(b"aaab").hexdigest()
    assert digests["model/a"].sha256 == changed.actual


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ('{"version": 2}', "not a models.lock of version 1"),
        (
            '{"version": 1, "files": [{"path": "../x", "size": 1, "sha256": "' + "0" * 64 + '"}]}',
            "must be relative",
        ),
        (
            '{"version": 1, "files": [{"path": "x", "size": -1, "sha256": "' + "0" * 64 + '"}]}',
            "non-negative",
        ),
        (
            '{"version": 1, "files": [{"path": "x", "size": 1, "sha256": "zz"}]}',
            "64 lower-case hex",
        ),
        ('{"version": 1, "files": [{"path": "x", "size": 1}]}', "missing 'sha256'"),
    ],
)
def test_bad_lock_files_are_config_errors_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    p = tmp_path / "models.lock"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message) as exc:
        load_lock(p)
    assert str(p) in exc.value.message


def test_symlinks_in_model_paths_are_refused(tmp_path: Path) -> None:
    _tree(tmp_path, {"model/a": b"a", "elsewhere": b"x"})
    (tmp_path / "model/link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="symlink"):
        make_lock(tmp_path, ["model"], detect=lambda p: "x")


@pytest.mark.parametrize(
    ("root", "file", "swapped"),
    [("model/w", "model/w", "model"), ("models/m", "models/m/w", "models")],  # file, dir root
)
def test_a_directory_above_a_locked_path_swapped_for_a_symlink_is_refused(
    tmp_path: Path, root: str, file: str, swapped: str
) -> None:
    _tree(tmp_path, {file: b"w"})
    lock = make_lock(tmp_path, [root], detect=lambda p: "x")
    (tmp_path / "models.lock").write_text(lock.to_text())
    lock = load_lock(tmp_path / "models.lock")
    assert verify_lock(lock)[0] == []
    # Same bytes, but read through a link to a directory nobody reviewed.
    (tmp_path / swapped).rename(tmp_path / "elsewhere")
    (tmp_path / swapped).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match=f"model path {swapped} is a symlink"):
        verify_lock(lock)
    with pytest.raises(ConfigError, match=f"model path {swapped} is a symlink"):
        make_lock(tmp_path, [root], detect=lambda p: "x")


def test_fifos_under_model_paths_are_reported_not_skipped(tmp_path: Path) -> None:
    _tree(tmp_path, {"model/a": b"a", "model/b": b"b"})
    lock = _lock(tmp_path)
    os.mkfifo(tmp_path / "model" / "pipe")
    with pytest.raises(ConfigError, match="model path model/pipe is a fifo"):
        make_lock(tmp_path, ["model"], detect=lambda p: "x")
    with pytest.raises(ConfigError, match="model path model/pipe is a fifo"):
        verify_lock(lock)
    (tmp_path / "model" / "pipe").unlink()
    (tmp_path / "model" / "b").unlink()
    os.mkfifo(tmp_path / "model" / "b")  # a locked file replaced by a fifo
    with pytest.raises(ConfigError, match="model path model/b is a fifo"):
        verify_lock(lock)


def test_hashing_a_fifo_fails_instead_of_blocking(tmp_path: Path) -> None:
    import signal

    fifo = tmp_path / "w"
    os.mkfifo(fifo)

    def hung(*_: object) -> None:
        raise TimeoutError("hash_file blocked on a fifo")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(5)
    try:
        with pytest.raises(ConfigError, match="not a regular file"):
            hash_file(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_bytes(b"x")
    with pytest.raises(ConfigError, match="cannot read model file"):
        hash_file(link)
