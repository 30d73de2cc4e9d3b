"""benchmarks/soak_scanner.py --quick: every kind of bomb through `modelseal models scan` in a
child process, each stopped by the limit it must name, in bounded time and memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_soak_quick() -> None:
    modelseal = Path(sys.executable).parent / "modelseal"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/soak_scanner.py"), "--quick", "--rounds", "1",
         "--seed", "3", "--modelseal", str(modelseal)],
        capture_output=True, text=True, timeout=590, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "0 bad" in lines[-1]
    # Every fixed case ran and said what it had to.
    assert sum(" ok " in line for line in lines) >= 16
    assert any("models.limits.max_inflated_bytes" in line for line in lines)
    assert any("models.limits.max_seconds" in line for line in lines)
