#!/usr/bin/env python3
"""modelseal build vs plain `docker buildx build` of the same context, in one run.

Both sides build examples/app on the same engine with the same reproducibility flags (OCI layout
out, rewrite-timestamp, SOURCE_DATE_EPOCH, no network, no pull), warm cache, median of N runs.
modelseal's side is the whole CLI process: policy load, engine probe, Dockerfile parse, context
normalization, the build, reading the layout, reports. With build.rebuild_check the gate builds
twice; that is shown as its own row (it is a feature, not overhead).

    python benchmarks/build.py [--runs 5]
Target: modelseal (single build) ≤ 1.10× the plain build.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _common import EPOCH, REPO, engine_and_base, timed


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))

    work = Path(tempfile.mkdtemp(prefix="modelseal-bench-"))
    try:
        with engine_and_base() as base:
            app = REPO / "examples" / "app"
            env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}
            docker = shutil.which("docker") or "docker"
            single = work / "single.yml"
            single.write_text("version: 1\nbuild:\n  rebuild_check: false\n")
            double = work / "double.yml"
            double.write_text("version: 1\nbuild:\n  rebuild_check: true\n")

            def plain(i: int) -> list[str]:
                return [
                    docker, "buildx", "build", "--pull=false", "--provenance=false", "--sbom=false",
                    "--progress", "plain", "--network", "none",
                    "--build-arg", f"SOURCE_DATE_EPOCH={EPOCH}", "--build-context", f"base={base}",
                    "--output", f"type=oci,dest={work}/plain-{i},tar=false,rewrite-timestamp=true",
                    "--metadata-file", f"{work}/plain-{i}.json", str(app),
                ]  # fmt: skip

            def seal(i: int, policy: Path) -> list[str]:
                return [
                    sys.executable, "-m", "modelseal", "build", str(app), "--policy", str(policy),
                    "--build-context", f"base={base}", "--source-date-epoch", EPOCH,
                    "-o", f"{work}/seal-{policy.stem}-{i}",
                ]  # fmt: skip

            timed(plain(-1), env)  # warm the cache once for both sides
            rows: dict[str, list[float]] = {"plain docker buildx build": [], "modelseal build": [],
                                             "modelseal build + rebuild check": []}  # fmt: skip
            for i in range(args.runs):
                # Interleaved so drift on a shared machine hits both sides alike.
                rows["plain docker buildx build"].append(timed(plain(i), env))
                rows["modelseal build"].append(timed(seal(i, single), env))
                rows["modelseal build + rebuild check"].append(timed(seal(i, double), env))
            base_median = statistics.median(rows["plain docker buildx build"])
            print(f"\nbuild of examples/app, median of {args.runs} runs (warm cache)")
            print(f"{'':34}{'median s':>10}{'min s':>10}{'ratio':>8}")
            for name, times in rows.items():
                med = statistics.median(times)
                print(f"{name:34}{med:10.2f}{min(times):10.2f}{med / base_median:8.2f}×")
            ratio = statistics.median(rows["modelseal build"]) / base_median
            print(f"\noverhead ratio (target ≤ 1.10×): {ratio:.2f}×")
            return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
