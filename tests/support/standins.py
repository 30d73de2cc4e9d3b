"""``modelseal build`` with and without stand-ins, and the models.lock that gives them: the
helpers of the stand-in tests (tests/imagebuild), which compare a build with stand-ins to one
without."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from tests.support import EPOCH
from tests.support.reports import read_report, report_gates

from modelseal._cli import main


def run_build(
    ctx: Path, policy: str, out: Path, base: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any] | None, str]:
    """``modelseal build`` of ``ctx`` under the policy text ``policy`` (written next to ``out``)
    with ``base`` as the build context ``base``: the exit code, the build gate of report.json
    (None without a report) and what was printed."""
    path = out.parent / f"{out.name}.yml"
    path.write_text(policy)
    code = main(["build", str(ctx), "--policy", str(path), "-o", str(out),
                 "--source-date-epoch", str(EPOCH), "--build-context", f"base={base}"])  # fmt: skip
    printed = capsys.readouterr()
    gate: dict[str, Any] | None = None
    if (out / "report.json").exists():
        (gate,) = report_gates(read_report(out / "report.json")).values()
    return code, gate, printed.out + printed.err


def build(
    ctx: Path, out: Path, base: str, stand_ins: bool, capsys: pytest.CaptureFixture[str],
    compression: str | None = None,
) -> tuple[int, dict[str, str], str]:  # fmt: skip
    """A build with ``build.stand_ins`` on or off (and ``build.compression`` when given): the
    exit code, the build gate's facts (its error as ``error``) and what was printed."""
    policy = (
        "version: 1\nbuild:\n  rebuild_check: never\n"
        f"  stand_ins: {'true' if stand_ins else 'false'}\n"
        + (f"  compression: {compression}\n" if compression is not None else "")
    )
    code, gate, printed = run_build(ctx, policy, out, base, capsys)
    facts: dict[str, str] = {}
    if gate is not None:
        facts = dict(gate["facts"])
        if gate.get("error"):
            facts["error"] = str(gate["error"])
    return code, facts, printed


def write_lock(ctx: Path, paths: list[str], *, pinned: dict[str, bytes] | None = None) -> None:
    """A models.lock in ``ctx`` pinning ``paths`` (relative to it) as they are now, or as the
    bytes ``pinned`` gives for a path; its roots are the paths' first components."""
    files = []
    for p in paths:
        data = (pinned or {}).get(p)
        if data is None:
            data = (ctx / p).read_bytes()
        files.append({"path": p, "size": len(data), "format": "unknown",
                      "sha256": hashlib.sha256(data).hexdigest()})  # fmt: skip
    roots = sorted({p.split("/")[0] for p in paths})
    (ctx / "models.lock").write_text(json.dumps({"version": 1, "roots": roots, "files": files}))


def pins_of(root: Path, *rels: str) -> dict[str, tuple[int, str]]:
    """What :class:`~modelseal.imagebuild.standins.StandIns` takes: each of ``rels`` (relative
    to ``root``) to its size and sha256 now."""
    return {r: ((root / r).stat().st_size, hashlib.sha256((root / r).read_bytes()).hexdigest())
            for r in rels}  # fmt: skip


def passwd_bytes(size: int) -> bytes:
    """An /etc/passwd of at least ``size`` bytes that names the user ``app`` (uid 1234)."""
    lines = [b"root:x:0:0:root:/root:/bin/sh\n", b"app:x:1234:1234::/home/app:/bin/sh\n"]
    n, total = 0, sum(map(len, lines))
    while total < size:
        lines.append(b"user%06d:x:%d:%d::/home/user%06d:/bin/sh\n" % (n, 2000 + n, 2000 + n, n))
        total += len(lines[-1])
        n += 1
    return b"".join(lines)


def finalized(stand_ins: Any, *members: tuple[str, bytes]) -> bytes:
    """The layer the finalizer writes (:func:`~modelseal.imagebuild.finalize.clamp_tar`) from a
    USTAR layer of ``members`` (``(name, data)``), with ``stand_ins`` replaced."""
    import io

    from tests.support.layers import ustar

    from modelseal.imagebuild.finalize import clamp_tar

    return b"".join(clamp_tar(io.BytesIO(ustar(*members)), EPOCH, "L", stand_ins=stand_ins))
