"""Decompression bombs and slow inputs: every kind ends in a ``scan-limit`` issue naming the
member and the limit, quickly, and files under the limits are still scanned in full.

The bombs come from benchmarks/soak_scanner.py (built by repetition, so a 1 GiB bomb costs
milliseconds to write). Before the limits, each bomb test ran into its pytest timeout (the
1 GiB pickle members were read whole and walked op by op for minutes) or found no limit.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic
import pytest

from modelseal._cli import main
from modelseal.models.decompress import decompress_prefix
from modelseal.models.issues import ModelIssue
from modelseal.models.limits import ScanLimits
from modelseal.models.scan import PREFETCH_MIN_FILES, SPOOL_IN_MEMORY, PrefetchedScans, scan_file
from modelseal.policy.model import ModelScanLimitsPolicy

REPO = Path(__file__).resolve().parents[2]
MB = 1 << 20
GB = 1 << 30


def _soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "soak_scanner", REPO / "benchmarks/soak_scanner.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak_scanner"] = module
    spec.loader.exec_module(module)
    return module


soak = _soak()
CASES = {c.name: c for c in soak.cases(GB)}


def _limit_issue(issues: tuple[ModelIssue, ...], limit: str) -> ModelIssue:
    hits = [i for i in issues if i.kind == "scan-limit" and i.detail.get("limit") == limit]
    assert hits, f"no {limit} issue in {[(i.kind, i.title) for i in issues]}"
    return hits[0]


def _scan_case(
    tmp_path: Path, case: str | Any, limits: ScanLimits | None = None
) -> tuple[ModelIssue, ...]:
    path = (CASES[case] if isinstance(case, str) else case).build(tmp_path)
    t0 = time.monotonic()
    scan = scan_file(path, limits=limits or ScanLimits())
    assert time.monotonic() - t0 < 20, "a bomb must be stopped in seconds"
    return scan.issues


def _assert_names(issue: ModelIssue, member: str, limit: str) -> None:
    assert issue.member == member
    assert repr(member) in issue.title and limit in issue.title
    assert issue.detail["limit"] == limit


ARCHIVES = [
    "torch .pt, deflated data.pkl",
    ".npz, object-array member",
    "tar-era torch, sparse pickle member",
]
JOBLIB = [f"joblib {codec}" for codec in ("zlib", "gzip", "zlib-zf", "bz2", "xz", "lzma", "lz4")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("case", "inflate"),
    [
        *((c, GB) for c in ARCHIVES),
        *((c, 512 * MB) for c in ARCHIVES),
        *((c, GB) for c in JOBLIB),
    ],
)
def test_bomb(tmp_path: Path, case: str, inflate: int) -> None:
    # 1 GiB members are refused on their declared size (over the whole file's budget); 512 MiB
    # ones on their ratio; compressed joblib streams (no declared size) on the ratio of what
    # they inflate, at 16 MiB.
    bomb = {c.name: c for c in soak.cases(inflate)}[case]
    issues = _scan_case(tmp_path, bomb)
    limit = f"models.limits.{bomb.limit}"
    _assert_names(_limit_issue(issues, limit), bomb.member, limit)


@pytest.mark.timeout(60)
def test_members_share_one_budget(tmp_path: Path) -> None:
    # 76 members of 15 MiB: each under the ratio grace, together over 1 GiB.
    issues = _scan_case(tmp_path, "80 members of 15 MiB")
    issue = _limit_issue(issues, "models.limits.max_inflated_bytes")
    assert issue.member is not None and issue.member.startswith("archive/m")
    assert repr(issue.member) in issue.title and "max_inflated_bytes" in issue.title


@pytest.mark.timeout(60)
def test_lower_budget_counts_every_member(tmp_path: Path) -> None:
    issues = _scan_case(tmp_path, "80 members of 15 MiB", ScanLimits(max_inflated_bytes=40 * MB))
    # data.pkl, then m0 and m1 (30 MiB) fit; m2 would pass 40 MiB: refused before reading.
    issue = _limit_issue(issues, "models.limits.max_inflated_bytes")
    assert issue.member == "archive/m2.pkl"


@pytest.mark.timeout(30)
def test_nested_zip_is_not_inflated(tmp_path: Path) -> None:
    # A zip of four 1 GiB bombs stored as a member of a .pt: not a pickle, so never opened.
    issues = _scan_case(tmp_path, "zip bomb nested in a .pt")
    assert issues == ()


@pytest.mark.timeout(30)
def test_tar_gz_bomb_reads_only_a_prefix(tmp_path: Path) -> None:
    issues = _scan_case(tmp_path, ".tar.gz of a torch tar")
    assert [i.kind for i in issues] == ["unknown-format"]


@pytest.mark.timeout(30)
def test_bz2_zip_member_is_never_inflated(tmp_path: Path) -> None:
    # zipfile inflates all of a read's bz2 input at once: 4 KiB can become gigabytes.
    chunk = soak._chunk(soak.OPS, 800_000)
    bomb = soak.bz2_repeat(soak.HEAD, chunk, GB // len(chunk), soak.END)
    member = ("archive/data.pkl", 12, bomb, 0, GB)
    path = tmp_path / "bz2.pt"
    path.write_bytes(soak.zip_bytes([member]))
    t0 = time.monotonic()
    issues = scan_file(path).issues
    assert time.monotonic() - t0 < 10
    hits = [i for i in issues if i.member == "archive/data.pkl" and "method 12" in i.title]
    assert hits and hits[0].kind == "unparsable"


@pytest.mark.timeout(30)
def test_deadline_stops_the_pickle_walk(tmp_path: Path) -> None:
    path = tmp_path / "slow.pkl"
    path.write_bytes(soak.HEAD + soak._chunk(soak.OPS, 64 * MB) + soak.END)
    t0 = time.monotonic()
    issues = scan_file(path, limits=ScanLimits(max_seconds=1)).issues
    elapsed = time.monotonic() - t0
    issue = _limit_issue(issues, "models.limits.max_seconds")
    assert issue.member is None and "the file" in issue.title and "(1 s)" in issue.title
    assert elapsed < 3, f"the deadline was 1 s, the scan took {elapsed:.1f} s"


@pytest.mark.timeout(30)
def test_deadline_stops_inflating(tmp_path: Path) -> None:
    # Ratio and size limits out of reach: only the clock stops a slow stream.
    path = CASES["joblib bz2"].build(tmp_path)
    limits = ScanLimits(max_inflated_bytes=64 * GB, max_ratio=100_000, max_seconds=1)
    t0 = time.monotonic()
    issues = scan_file(path, limits=limits).issues
    assert time.monotonic() - t0 < 4
    issue = _limit_issue(issues, "models.limits.max_seconds")
    assert issue.member == "(bz2-decompressed)"


def test_high_ratio_under_the_grace_is_accepted(tmp_path: Path) -> None:
    path = CASES["high ratio under the grace"].build(tmp_path)
    assert path.stat().st_size * 200 < 12 * MB  # over max_ratio…
    assert scan_file(path).issues == ()  # …but 12 MiB is under the 16 MiB grace


def test_benign_large_compressed_pickle_is_scanned_to_the_end(tmp_path: Path) -> None:
    # 20 MiB inflated (spooled to a temporary file), with an unsafe global at its very end.
    benign = soak.benign_pickle(2 * MB)
    evil = b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
    path = tmp_path / "model.joblib"
    path.write_bytes(zlib.compress(benign + evil, 1))
    assert len(benign) > SPOOL_IN_MEMORY
    issues = scan_file(path).issues
    assert not [i for i in issues if i.kind == "scan-limit"]
    unsafe = [i for i in issues if i.kind == "unsafe-global"]
    assert unsafe and unsafe[0].offset == len(benign) + 2
    assert unsafe[0].member == "(zlib-decompressed)"


def test_policy_limits_are_bounded() -> None:
    assert ModelScanLimitsPolicy().max_inflated_bytes == ScanLimits().max_inflated_bytes
    for field, value in [
        ("max_inflated_bytes", 0),
        ("max_inflated_bytes", 65 * GB),
        ("max_ratio", 1),
        ("max_seconds", 0),
        ("max_seconds", 86_400),
    ]:
        with pytest.raises(pydantic.ValidationError):
            ModelScanLimitsPolicy.model_validate({field: value})


def test_scan_command_applies_the_policy_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = CASES["high ratio under the grace"].build(tmp_path)
    policy = tmp_path / "policy.yml"
    policy.write_text(soak.POLICY + "  limits:\n    max_inflated_bytes: 1048576\n")
    rc = main(["models", "scan", str(path), "--policy", str(policy)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "models.scan-limit" in out and "'archive/data.pkl'" in out
    assert "max_inflated_bytes (1048576 bytes" in out


def test_lz4_block_inflating_past_its_frame_size_is_corrupt(tmp_path: Path) -> None:
    # A block may not decode to more than the frame's block size (64 KiB here).
    block = bytes([0x1F]) + b"a" + b"\x01\x00" + b"\xff" * 300 + b"\x00" + bytes([0x10]) + b"a"
    frame = b"\x04\x22\x4d\x18" + bytes([0x60, 0x40, 0x00])
    frame += len(block).to_bytes(4, "little") + block + bytes(4)
    path = tmp_path / "x.lz4"
    path.write_bytes(frame)
    with pytest.raises(ValueError, match="block size"):
        decompress_prefix(path, "lz4", 1 << 20)


def test_prefetched_scans_are_redone_under_the_policy_limits(tmp_path: Path) -> None:
    # The prefetching child scans within the default limits before the policy is read; other
    # limits must not be answered from its results.
    paths = []
    for i in range(PREFETCH_MIN_FILES):
        p = tmp_path / f"f{i}.pkl"
        p.write_bytes(soak.HEAD + b"}.")
        paths.append(p)
    paths.append(CASES["high ratio under the grace"].build(tmp_path))
    prefetch = PrefetchedScans(paths)
    scans = prefetch.take(paths, ScanLimits(max_inflated_bytes=MB))
    assert scans[-1].issues and scans[-1].issues[0].kind == "scan-limit"
    assert PrefetchedScans(paths).take(paths)[-1].issues == ()
