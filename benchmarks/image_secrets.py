#!/usr/bin/env python3
"""Trivy's secret scan (the image gate's) on a model-sized image, and what one Trivy pass with
``--scanners vuln,secret`` would save over the two passes the trivy gate (vuln) and the image
gate (secret) make.

Setup as in post_build.py (the example base, ``COPY model/ /app/model/`` with one safetensors
file of ``--size-mib`` MiB of random bytes; built once with ``modelseal build``, ``--work DIR``
keeps and reuses it). Measured, each a child process of its own (wall time, peak RSS):

trivy vuln            the trivy gate's command (offline DB)
trivy secret          the image gate's secret command (``--scanners secret``)
trivy vuln,secret     both scanners in one pass
image gate            its time in ``modelseal run --gate build --gate image`` (report.json),
                      from the run that built the image (not repeated with ``--work``)

    python benchmarks/image_secrets.py [--size-mib 2048] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from _common import EPOCH, REPO, engine_and_base, ensure_trivy_db, trivy_input
from post_build import MODELSEAL, measure, write_context


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--work", type=Path, help="keep the build here and reuse it next time")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from modelseal.imagegate.secrets import secret_argv, write_secret_config
    from modelseal.oci import OciLayout
    from modelseal.vuln.trivy import scan_argv

    work = args.work or Path(tempfile.mkdtemp(prefix="modelseal-bench-secrets-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx, out = work / "ctx", work / "out"
    try:
        with engine_and_base() as base:
            cache = work / "cache"
            ensure_trivy_db(cache / "trivy")
            policy = work / "policy.yml"
            policy.write_text(
                "version: 1\nbuild:\n  rebuild_check: false\n"
                "models:\n  enabled: false\n  image_paths: {model: /app/model}\n"
                # The benchmark image runs as root: reported, not failed (the run must pass).
                "image:\n  require_non_root: false\n"
                f"trivy:\n  db:\n    mode: offline\n    cache_dir: {cache / 'trivy'}\n"
            )
            if not (ctx / "Dockerfile").exists():
                write_context(ctx, args.size_mib)
            run = [str(MODELSEAL), "run", str(ctx), "--policy", str(policy), "--gate", "build",
                   "--gate", "image", "--build-context", f"base={base}",
                   "--source-date-epoch", EPOCH, "-o", str(out)]  # fmt: skip
            if not (out / "report.json").exists():
                measure(run, {}, interval=0.2)
            report = json.loads((out / "report.json").read_text())
            gates = {g["gate"]: g["evidence"] for g in report["gates"]}
            manifest = next(
                v for k, v in gates["build"]["facts"].items() if k.startswith("image.manifest.")
            )
            layout = OciLayout(out / "oci")
            sizes = [layout.blob(d["digest"]).stat().st_size
                     for d in layout.manifest(manifest)["layers"]]  # fmt: skip
            print(f"image: {len(sizes)} layers, the model layer {max(sizes) / 2**20:.0f} MiB "
                  f"(gzip); model {args.size_mib} MiB")  # fmt: skip
            trivy, single = trivy_input(layout, manifest, work)
            vuln = scan_argv(trivy, single, cache / "trivy")
            both = list(vuln)
            both[both.index("--scanners") + 1] = "vuln,secret"
            rows = {
                "trivy vuln (trivy gate)": measure(vuln, {}),
                "trivy secret (image gate)": measure(
                    secret_argv(trivy, single, cache / "trivy", write_secret_config(work)), {}
                ),
                "trivy vuln,secret (one pass)": measure(both, {}),
            }
            print(f"\n{'':34}{'seconds':>9}{'peak RSS MiB':>14}")
            for name, m in rows.items():
                print(f"{name:34}{m['seconds']:9.1f}{m['rss_mib']:14.0f}")
            image = gates["image"]
            print(f"{'image gate (in modelseal run)':34}{image['duration_s']:9.1f}")
            two = (
                rows["trivy vuln (trivy gate)"]["seconds"]
                + rows["trivy secret (image gate)"]["seconds"]
            )
            one = rows["trivy vuln,secret (one pass)"]["seconds"]
            print(f"\ntwo Trivy passes: {two:.1f} s; one pass: {one:.1f} s ({one / two:.2f}×)")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
