"""The models gates end to end through the CLI: lock, verify, scan, run."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
from tests.support.model_files import safetensors_bytes
from tests.support.reports import read_report, report_gates

from modelseal._cli import main
from modelseal.models.scan import scan_files


class Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ctx"
    (root / "model").mkdir(parents=True)
    (root / "model" / "w.safetensors").write_bytes(safetensors_bytes([0.5, -1.0, 2.0]))
    (root / "model" / "README.md").write_text("notes")
    monkeypatch.chdir(root)
    return root


def _policy(root: Path, text: str) -> str:
    (root / "policy.yml").write_text("version: 1\n" + text)
    return str(root / "policy.yml")


def _run(root: Path, policy: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main(
        ["run", str(root), "--gate", "models", "--policy", policy, "-o", str(root.parent / "out")]
    )
    capsys.readouterr()
    report = read_report(root.parent / "out" / "report.json")
    (gate,) = report_gates(report).values()
    return code, gate


def _failing(gate: dict) -> list[str]:
    return [f["id"] for f in gate["findings"] if f["decision"] == "fail"]


def test_lock_then_run_passes_and_writes_ml_bom_data(
    ctx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "models",
                "lock",
                "model",
                "--ignore",
                "*.md",
                "--source-uri",
                "hf://acme/tiny",
                "--source-revision",
                "0123abc" + "0" * 33,  # a full commit: `models verify` reports anything less
            ]
        )
        == 0
    )
    lock = json.loads((ctx / "models.lock").read_text())
    assert [f["path"] for f in lock["files"]] == ["model/w.safetensors"]
    assert lock["files"][0]["format"] == "safetensors"
    policy = _policy(ctx, "models:\n  ignore: ['*.md']\n")
    assert main(["models", "verify", "--policy", policy]) == 0
    code, gate = _run(ctx, policy, capsys)
    assert code == 0, gate
    assert gate["status"] == "PASSED" and _failing(gate) == []
    lock_sha256 = hashlib.sha256((ctx / "models.lock").read_bytes()).hexdigest()
    assert gate["facts"]["lock.sha256"] == lock_sha256
    models = json.loads(Path(gate["artifacts"]["models_json"]).read_text())["models"]
    assert models == [
        {
            "path": "model/w.safetensors",
            "size": (ctx / "model/w.safetensors").stat().st_size,
            "sha256": lock["files"][0]["sha256"],
            "format": "safetensors",
            "source": {"uri": "hf://acme/tiny", "revision": "0123abc" + "0" * 33},
        }
    ]


def test_one_changed_byte_fails_naming_both_digests(
    ctx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "lock", "model", "--ignore", "*.md"]) == 0
    before = json.loads((ctx / "models.lock").read_text())["files"][0]["sha256"]
    f = ctx / "model" / "w.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    policy = _policy(ctx, "models:\n  ignore: ['*.md']\n")
    assert main(["models", "verify", "--policy", policy]) == 1
    out = capsys.readouterr().out
    assert "models.changed" in out and before in out
    code, gate = _run(ctx, policy, capsys)
    assert code == 1
    (changed,) = [x for x in gate["findings"] if x["id"] == "models.changed"]
    assert changed["evidence"]["pinned_sha256"] == before
    assert changed["evidence"]["actual_sha256"] != before


@pytest.mark.parametrize("paths", ["", "  paths: [mdl/m]\n"])
def test_a_lock_below_the_context_root_maps_paths_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], paths: str
) -> None:
    root = tmp_path / "ctx"
    (root / "mdl" / "m").mkdir(parents=True)
    (root / "mdl" / "m" / "w.safetensors").write_bytes(safetensors_bytes([1.0]))
    monkeypatch.chdir(root)
    lock = ["models", "lock", "mdl/m", "--lock", "mdl/models.lock", "--source-uri", "hf://a/b",
            "--source-revision", "c" * 40]  # fmt: skip
    assert main(lock) == 0
    code, gate = _run(root, _policy(root, "models:\n  lock: mdl/models.lock\n" + paths), capsys)
    assert code == 0, gate
    models = json.loads(Path(gate["artifacts"]["models_json"]).read_text())["models"]
    assert [(m["path"], m["source"]) for m in models] == [
        ("mdl/m/w.safetensors", {"uri": "hf://a/b", "revision": "c" * 40})
    ]


def test_image_files_match_ignore_globs_by_their_build_context_path() -> None:
    from modelseal.models.gate import _image_dirs, _local_paths
    from modelseal.models.lock import is_ignored

    image_paths = {"model": "/app/model", "one/w.bin": "/opt/w/", "./": "/srv"}
    dirs = _image_dirs(image_paths, {"one/w.bin"})
    assert dirs == [("app/model/", "model"), ("opt/w/", "one"), ("srv/", "")]
    assert _local_paths("app/model/sub/n.md", dirs) == ["model/sub/n.md"]
    assert _local_paths("opt/w/x.md", dirs) == ["one/x.md"]
    assert _local_paths("srv/a/b", dirs) == ["a/b"]
    # As on disk: the whole relative path or the file name.
    assert is_ignored("model/sub/n.md", ["model/sub/*.md"])
    assert is_ignored("model/sub/n.md", ["*.md"])
    assert not is_ignored("model/sub/n.md", ["sub/*.md"])


def test_pickle_disguised_as_safetensors_is_denied_by_default(
    ctx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (ctx / "model" / "extra.safetensors").write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=4))
    assert main(["models", "lock", "model", "--ignore", "*.md"]) == 0
    code, gate = _run(ctx, _policy(ctx, "models:\n  ignore: ['*.md']\n"), capsys)
    assert code == 1
    (fmt,) = [x for x in gate["findings"] if x["id"] == "models.format" and x["decision"] == "fail"]
    assert fmt["subject"] == "model/extra.safetensors" and fmt["evidence"]["format"] == "pickle"
    assert fmt["reason"] == "format pickle is not in models.formats (safetensors, gguf, onnx)"


def test_scan_mode_admits_benign_pickles_and_names_the_evil_global(
    ctx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (ctx / "model" / "ok.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    assert main(["models", "lock", "model", "--ignore", "*.md"]) == 0
    scan_policy = "models:\n  ignore: ['*.md']\n  pickle: scan\n  formats: [safetensors, pickle]\n"
    code, gate = _run(ctx, _policy(ctx, scan_policy), capsys)
    assert code == 0, _failing(gate)

    (ctx / "model" / "evil.pkl").write_bytes(pickle.dumps(Evil(), protocol=4))
    assert main(["models", "lock", "model", "--ignore", "*.md"]) == 0
    code, gate = _run(ctx, _policy(ctx, scan_policy), capsys)
    assert code == 1
    (evil,) = [x for x in gate["findings"] if x["id"] == "models.unsafe-global"]
    assert evil["evidence"]["global"] in ("posix.system", "os.system", "nt.system")
    assert evil["subject"] == "model/evil.pkl" and "offset" in evil["location"]

    # The CLI scan alone, as JSON, says the same.
    assert (
        main(["models", "scan", "model", "--policy", str(ctx / "policy.yml"), "--format", "json"])
        == 1
    )
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "FAILED"
    assert any(
        f["id"] == "models.unsafe-global" and f["decision"] == "fail" for f in out["findings"]
    )


def test_missing_lock_fails_unless_not_required(
    ctx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, gate = _run(ctx, _policy(ctx, "models:\n  paths: [model]\n  ignore: ['*.md']\n"), capsys)
    assert code == 1 and _failing(gate) == ["models.no-lock"]
    lax = "models:\n  paths: [model]\n  ignore: ['*.md']\n  require_lock: false\n"
    code, gate = _run(ctx, _policy(ctx, lax), capsys)
    assert code == 0


def test_nothing_to_check_is_an_error_not_a_pass(
    ctx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, gate = _run(ctx, _policy(ctx, ""), capsys)
    assert code == 3
    assert gate["status"] == "ERRORED"
    assert "nothing to check" in gate["error"] and "models lock" in gate["error"]


def test_rejudge_with_allowed_globals(ctx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A harmless global that is not on the built-in list: the policy may admit it.
    (ctx / "model" / "dates.pkl").write_bytes(pickle.dumps(datetime.date(2026, 1, 1), protocol=4))
    assert main(["models", "lock", "model", "--ignore", "*.md"]) == 0
    scan_policy = "models:\n  ignore: ['*.md']\n  pickle: scan\n  formats: [safetensors, pickle]\n"
    code, gate = _run(ctx, _policy(ctx, scan_policy), capsys)
    assert code == 1
    name = next(x for x in gate["findings"] if x["id"] == "models.unsafe-global")["evidence"][
        "global"
    ]
    assert name == "datetime.date"
    report = str(ctx.parent / "out" / "report.json")
    assert main(["judge", report, "--policy", _policy(ctx, scan_policy + "  allowed_globals: ['datetime.date']\n")]) == 0  # fmt: skip
    assert main(["judge", report, "--policy", _policy(ctx, scan_policy + "  allowed_globals: ['datetime.*']\n")]) == 0  # fmt: skip
    capsys.readouterr()
    # What could run code is refused by the policy loader, not waved through by the judge.
    for entry in ("posix.system", "builtins.*", "torch.*.__reduce__", "os.*"):
        assert main(["judge", report, "--policy", _policy(ctx, scan_policy + f"  allowed_globals: ['{entry}']\n")]) == 2  # fmt: skip
        assert "models.allowed_globals" in capsys.readouterr().err


def test_worker_processes_give_the_serial_results(tmp_path: Path) -> None:
    # Results (and their read-only mappings) must cross process boundaries intact.
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"ok{i}.pkl")
        paths[-1].write_bytes(pickle.dumps({"i": i}, protocol=4))
    paths.append(tmp_path / "evil.pkl")
    paths[-1].write_bytes(pickle.dumps(Evil(), protocol=2))
    assert scan_files(paths, workers=2) == scan_files(paths, workers=1)


def test_scanning_a_directory_judges_every_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(12):
        (tmp_path / f"ok{i}.pkl").write_bytes(pickle.dumps({"i": i}, protocol=4))
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Evil(), protocol=2))
    (tmp_path / "w.safetensors").write_bytes(safetensors_bytes([1.0]))
    (tmp_path / "p.yml").write_text(
        "version: 1\nmodels:\n  pickle: scan\n  formats: [pickle, safetensors]\n"
    )
    code = main(
        ["models", "scan", str(tmp_path), "--policy", str(tmp_path / "p.yml"), "--format", "json"]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert len(out["files"]) == 15  # the policy file itself is scanned too: it is in the directory
    failing = [f for f in out["findings"] if f["decision"] == "fail"]
    assert {(f["id"], f["subject"].rsplit("/", 1)[-1]) for f in failing} >= {
        ("models.unsafe-global", "evil.pkl")
    }
    assert not any(f["subject"].endswith(("ok3.pkl", "w.safetensors")) for f in failing)


def _torch_tar(path: Path, main_object: object) -> Path:
    """A tar-era torch.save layout: four members, each starting with a pickle; tensors and
    storages continue with raw records after their first pickle."""
    import io
    import tarfile

    members = {
        "sys_info": pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
        "pickle": pickle.dumps(main_object, protocol=2),
        "tensors": pickle.dumps(0, protocol=2) + b"\x01\x02raw-tensor-records",
        "storages": pickle.dumps(0, protocol=2) + b"\x00raw-storage-bytes",
    }
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_tar_era_torch_members_are_scanned(tmp_path: Path) -> None:
    from modelseal.models.issues import Format
    from modelseal.models.scan import scan_file

    clean = scan_file(_torch_tar(tmp_path / "old.pt", {"w": [1.0]}))
    assert clean.format is Format.TORCH_LEGACY
    assert sorted((i.kind, i.member) for i in clean.issues) == [
        ("unverifiable", "storages"),
        ("unverifiable", "tensors"),
    ]
    evil = scan_file(_torch_tar(tmp_path / "evil.pt", Evil()))
    flagged = [
        (i.kind, i.member, i.detail.get("global")) for i in evil.issues if i.kind == "unsafe-global"
    ]
    assert flagged and flagged[0][1] == "pickle" and flagged[0][2] in ("posix.system", "os.system")
