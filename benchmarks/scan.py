#!/usr/bin/env python3
"""modelseal's post-build scan gates (sbom, trivy, pip-audit, run concurrently) vs the same three
tools run one after another by hand on the same OCI layout, in one run.

Setup (all local, nothing leaves 127.0.0.1): the example base image, a context ``FROM base`` that
copies 22 hand-made dist-info directories (requests 2.19.0, urllib3 1.26.4, pkg0..pkg19 1.0) into
/usr/lib/python3/dist-packages, the offline Trivy DB of examples/offline/trivydb.py and the local
OSV server of examples/offline/osv_server.py.

(a) modelseal: ``modelseal run CTX --gate build --gate sbom --gate trivy --gate pip-audit`` with
    a warm build cache and without the evidence cache (``--no-evidence-cache``: every scan
    runs, as by hand). The build is not what is measured, so the scan phase is the whole CLI
    wall time minus the build gate's ``duration_s`` from report.json. It therefore includes
    modelseal's own costs (startup, policy, engine probe, reading the layout, judging, reports).
(b) by hand, sequentially on OUT/oci of a modelseal run: ``syft scan oci-dir:…``, ``trivy image
    --input …`` and the pip-audit pipeline (extracting the package metadata from the image with
    modelseal.vuln.site_packages.extract_packages, then ``pip-audit --path DIR`` per site directory),
    with the same flags modelseal uses. Their sum is the sequential total.

Median of N runs each (interleaved). Printed: each raw tool, the sequential sum, modelseal's phase,
and modelseal vs the largest single tool (the lower bound for any concurrency) and vs the sum.

    python benchmarks/scan.py [--runs 5]
Target: modelseal concurrent ≤ 0.70× the sequential sum.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import EPOCH, REPO, engine_and_base, timed


def make_context(ctx: Path) -> None:
    site = ctx / "site"
    pkgs = [("requests", "2.19.0"), ("urllib3", "1.26.4")]
    pkgs += [(f"pkg{i}", "1.0") for i in range(20)]
    for name, version in pkgs:
        d = site / f"{name}-{version}.dist-info"
        d.mkdir(parents=True)
        (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (ctx / "Dockerfile").write_text("FROM base\nCOPY site/ /usr/lib/python3/dist-packages/\n")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if args.runs < 3:
        ap.error("--runs must be at least 3")
    sys.path.insert(0, str(REPO / "src"))
    sys.path.insert(0, str(REPO))
    from examples.offline.osv_server import start_osv_server

    from modelseal._tools import find_tool
    from modelseal.oci import OciLayout, platform_manifests
    from modelseal.sbom.gate import SYFT_ENV_OFFLINE
    from modelseal.vuln.osv import OsvEndpoint
    from modelseal.vuln.pip_audit import pip_audit_argv
    from modelseal.vuln.site_packages import extract_packages
    from modelseal.vuln.trivy import scan_argv

    work = Path(tempfile.mkdtemp(prefix="modelseal-bench-scan-"))
    try:
        with engine_and_base() as base:
            cache = work / "cache"
            subprocess.run(
                [sys.executable, str(REPO / "examples/offline/trivydb.py"), "--cache-dir", str(cache / "trivy")],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            ctx = work / "ctx"
            make_context(ctx)
            env = {**os.environ, "MODELSEAL_CACHE_DIR": str(cache), "SOURCE_DATE_EPOCH": EPOCH}
            syft_env = {**env, **SYFT_ENV_OFFLINE}
            with start_osv_server() as (osv, _stop):
                endpoint = OsvEndpoint.from_policy(osv)
                policy = work / "policy.yml"
                policy.write_text(
                    "version: 1\nbuild:\n  rebuild_check: false\ntrivy:\n  db:\n    mode: offline\n"
                    f"pip_audit:\n  osv_url: {osv}\nvulnerabilities:\n  fail_on: critical\n"
                )

                def seal(out: Path) -> tuple[float, float, dict[str, float]]:
                    argv = [
                        find_tool("modelseal"), "run", str(ctx),
                        "--gate", "build", "--gate", "sbom", "--gate", "trivy", "--gate", "pip-audit",
                        "--policy", str(policy), "--build-context", f"base={base}",
                        "--source-date-epoch", EPOCH, "-o", str(out),
                        # Every run scans afresh, as the by-hand side does: the evidence cache
                        # would otherwise answer sbom and trivy from the warm run's outputs.
                        "--no-evidence-cache",
                    ]  # fmt: skip
                    wall = timed(argv, env, ok=(0, 1))
                    report = json.loads((out / "report.json").read_text())
                    durations = {
                        g["gate"]: float(g["evidence"]["duration_s"]) for g in report["gates"]
                    }
                    return wall, durations["build"], durations

                # Warm run: fills the build cache and gives the layout for the by-hand side.
                warm = work / "warm"
                seal(warm)
                report = json.loads((warm / "report.json").read_text())
                build_facts = next(
                    g["evidence"]["facts"] for g in report["gates"] if g["gate"] == "build"
                )
                manifest = next(iter(platform_manifests(build_facts).values()))
                oci = warm / "oci"

                def by_hand(i: int) -> dict[str, float]:
                    d = work / f"hand-{i}"
                    d.mkdir()
                    t: dict[str, float] = {}
                    t["syft"] = timed(
                        [find_tool("syft"), "scan", f"oci-dir:{oci}", "-o",
                         f"cyclonedx-json={d / 'sbom.json'}", "--quiet"],
                        syft_env,
                    )  # fmt: skip
                    t["trivy"] = timed(scan_argv(find_tool("trivy"), oci, cache / "trivy"), env)
                    t0 = time.perf_counter()
                    root = d / "rootfs"
                    root.mkdir()
                    packages = extract_packages(OciLayout(oci), manifest, root)
                    sites = sorted({root / p.site_dir for p in packages})
                    for site in sites:
                        timed(
                            pip_audit_argv(find_tool("pip-audit"), site, endpoint, d / "pa-cache"),
                            {**env, "PIP_NO_INPUT": "1"},
                            ok=(0, 1),
                        )
                    t["pip-audit (extract + audit)"] = time.perf_counter() - t0
                    t["sites"] = len(sites)
                    return t

                rows: dict[str, list[float]] = {}
                gates: dict[str, list[float]] = {"sbom": [], "trivy": [], "pip-audit": []}
                phase: list[float] = []
                outside: list[float] = []
                sites = 0
                for i in range(args.runs):
                    # Interleaved so drift on a shared machine hits both sides alike.
                    hand = by_hand(i)
                    sites = int(hand.pop("sites"))
                    for k, v in hand.items():
                        rows.setdefault(k, []).append(v)
                    rows.setdefault("sequential sum", []).append(sum(hand.values()))
                    wall, build, durations = seal(work / f"seal-{i}")
                    phase.append(wall - build)
                    outside.append(wall - build - max(durations[g] for g in gates))
                    for g in gates:
                        gates[g].append(durations[g])

    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in rows.items()}
    seq = med["sequential sum"]
    biggest = max(med[k] for k in rows if k != "sequential sum")
    ph = statistics.median(phase)
    print(
        f"\nscan of the built image (22 dist-infos, {sites} site dir(s)), median of {args.runs} runs"
    )
    print(f"{os.cpu_count()} CPU(s)\n")
    print(f"{'by hand, one after another':48}{'median s':>10}{'min s':>10}")
    for k, v in rows.items():
        print(f"  {k:46}{med[k]:10.2f}{min(v):10.2f}")
    print(f"\n{'modelseal (gate duration_s, concurrent)':48}{'median s':>10}{'min s':>10}")
    for g, v in gates.items():
        print(f"  {g:46}{statistics.median(v):10.2f}{min(v):10.2f}")
    name = "modelseal: sbom+trivy+pip-audit concurrently"
    print(f"  {name:46}{ph:10.2f}{min(phase):10.2f}")
    print("    (= CLI wall time − build gate duration_s, incl. startup/judging/reports)")
    rest = "  of which outside the scan gates"
    print(f"{rest:48}{statistics.median(outside):10.2f}{min(outside):10.2f}")
    print("    (= phase − longest scan gate: CLI startup, engine probe, judging, reports)")
    print(f"\nmodelseal vs max single raw tool ({biggest:.2f}s): {ph / biggest:.2f}×")
    print(f"modelseal vs sequential sum ({seq:.2f}s): {ph / seq:.2f}× (target ≤ 0.70×)")
    print("target met" if ph / seq <= 0.70 else "target NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
