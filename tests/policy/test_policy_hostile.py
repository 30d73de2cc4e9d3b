"""Policy files that are not what they seem: devices, FIFOs, huge files, symlinks out of the
repository. Each is refused with exit 2 and a message naming the file, quickly, and nothing of
a file outside the repository is echoed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelseal.errors import ConfigError
from modelseal.policy import load_policy
from modelseal.policy.loader import MAX_POLICY_BYTES, PolicyFileError

SECRET_LINES = (
    "aws_secret_access_key: AKIAsecretsecretsecret",
    "root_password_hash: $6$saltsalt$hashhashhash",
    "github_token: ghp_0123456789abcdef",
)


def _validate(path: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``modelseal policy validate PATH`` in a child, so a hang or a memory blow-up fails the
    test (timeout, or a killed child) instead of the test run."""
    return subprocess.run(
        [sys.executable, "-m", "modelseal", "policy", "validate", path],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        # Bounded address space: an unbounded read of /dev/zero dies here instead of
        # swapping the machine.
        preexec_fn=_limit_memory,
    )


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_symlink_to_dev_zero_is_refused_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "modelseal.yml").symlink_to("/dev/zero")
    proc = _validate("modelseal.yml", tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "modelseal.yml" in proc.stderr
    assert "outside the working directory" in proc.stderr


def test_device_named_directly_is_refused_as_not_a_regular_file(tmp_path: Path) -> None:
    proc = _validate("/dev/zero", tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "/dev/zero is a character device, not a regular file" in proc.stderr


def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "modelseal.yml")
    proc = _validate("modelseal.yml", tmp_path, timeout=20)
    assert proc.returncode == 2, proc.stderr
    assert "modelseal.yml is a FIFO (named pipe), not a regular file" in proc.stderr


def test_file_over_the_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "modelseal.yml"
    with big.open("w") as f:
        f.write("version: 1\n")
        line = "# " + "x" * 1021 + "\n"
        for _ in range(50 * 1024):  # 50 MiB of comments
            f.write(line)
    proc = _validate("modelseal.yml", tmp_path, timeout=20)
    assert proc.returncode == 2, proc.stderr
    assert "modelseal.yml is larger than the 1 MiB limit" in proc.stderr


def test_file_at_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "modelseal.yml"
    head = b"version: 1\n"
    path.write_bytes(head + b"#" * (MAX_POLICY_BYTES - len(head) - 1) + b"\n")
    assert load_policy(path).policy.version == 1
    path.write_bytes(path.read_bytes() + b"\n")
    with pytest.raises(ConfigError, match="larger than the 1 MiB limit"):
        load_policy(path)


def test_symlink_out_of_the_repository_echoes_nothing_of_the_target(tmp_path: Path) -> None:
    outside = tmp_path / "host"
    outside.mkdir()
    secret = outside / "shadow"
    secret.write_text("\n".join(SECRET_LINES) + "\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "modelseal.yml").symlink_to(secret)
    proc = _validate("modelseal.yml", repo)
    assert proc.returncode == 2, proc.stderr
    assert "symbolic link to a file outside the working directory" in proc.stderr
    for line in SECRET_LINES:
        for word in line.split():
            assert word.rstrip(":") not in proc.stdout + proc.stderr


def test_symlink_inside_the_repository_is_followed(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "base.yml").write_text("version: 1\n")
    (tmp_path / "modelseal.yml").symlink_to("policies/base.yml")
    proc = _validate("modelseal.yml", tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_directory_symlink_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "modelseal.yml").write_text("\n".join(SECRET_LINES) + "\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "conf").symlink_to(outside)
    proc = _validate("conf/modelseal.yml", repo)
    assert proc.returncode == 2, proc.stderr
    assert "outside the working directory" in proc.stderr
    for line in SECRET_LINES:
        assert line.split(":")[0] not in proc.stderr + proc.stdout


def test_problems_quote_only_a_bounded_excerpt_and_a_bounded_number(tmp_path: Path) -> None:
    path = tmp_path / "modelseal.yml"
    long_key = "k" + "s" * 1000
    keys = "".join(f"unknown_{i}: 1\n" for i in range(500))
    path.write_text(f"version: 1\n{long_key}: 1\n{keys}")
    with pytest.raises(PolicyFileError) as info:
        load_policy(path)
    problems = info.value.problems
    assert len(problems) == 50
    assert problems[-1].endswith("… and 452 more problems")
    assert long_key not in str(info.value)
    assert max(len(p) for p in problems) < 400


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ("trivy:\n  db:\n    max_age_days: 1000000000\n", "trivy.db.max_age_days"),
        ("verify:\n  max_scan_age_days: 1000000000\n", "verify.max_scan_age_days"),
        ("sign:\n  attempts: 1000000\n", "sign.attempts"),
        ("vulnerabilities:\n  max_cvss: 1e308\n", "vulnerabilities.max_cvss"),
    ],
)
def test_out_of_range_numbers_are_refused_at_validation(
    tmp_path: Path, body: str, where: str
) -> None:
    (tmp_path / "modelseal.yml").write_text("version: 1\n" + body)
    proc = _validate("modelseal.yml", tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{where}: Input should be less than or equal to" in proc.stderr


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("^a|.*$", "do not anchor the whole pattern"),
        ("^(a+)+$", "repeated group contains another repetition"),
        ("^(a$", "invalid"),
    ],
)
def test_identity_regexp_is_compiled_and_checked_at_validation(
    tmp_path: Path, pattern: str, why: str
) -> None:
    (tmp_path / "modelseal.yml").write_text(
        f"version: 1\nverify:\n  identity_regexp: '{pattern}'\n"
    )
    proc = _validate("modelseal.yml", tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "verify.identity_regexp: the identity regexp is" in proc.stderr
    assert why in proc.stderr
