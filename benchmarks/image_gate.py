#!/usr/bin/env python3
"""The image gate on the model-sized image, side by side with Trivy's secret scanner on the same
layout, in one run.

Setup (all local): the context of benchmarks/model_size.py (``FROM base`` — the example's Debian
python3 base — and ``COPY model/ /app/model/`` with one safetensors file of --size-mib MiB of
random bytes, locked), built once with ``modelseal build`` (gzip layers, rebuild check off).
``--work DIR`` keeps that build and reuses it next time.

Measured, each in a child process of its own (wall time, peak RSS and how often each layer blob
was opened, sampled from /proc as in benchmarks/post_build.py), --runs times, interleaved:

read                 the layers applied, nothing hashed or copied: the cost of decompressing
read + payloads      the same with the payload tap, then its collect (no model hashing): what
                     the payload check costs on its own
pass                 the shared post-build pass as models-image and pip-audit make it without
                     the image gate (model paths hashed, metadata kept): what it cost before
pass + tap           the same pass with the image gate's payload tap (modelseal.postbuild
                     image_fs): the difference is what the payload check adds to the pass
image gate           ``ImageGate.run`` on its own (it makes the pass, with the tap, then runs
                     every collector): its time when it is the first post-build gate to ask
trivy secret         ``trivy image --scanners secret --input LAYOUT`` (the gate's offline
                     flags, a single-manifest copy of the layout as the trivy gate makes it)

    python benchmarks/image_gate.py [--size-mib 2048] [--runs 1] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import EPOCH, REPO, count_layer_opens, engine_and_base, trivy_input
from model_size import make_context
from post_build import MODELSEAL, PYTHON, measure

PLATFORM_KEY = "image.manifest."


def child(mode: str, layout_dir: str, manifest: str, work: str) -> None:
    """One measured consumer (``--child``): prints its result as JSON."""
    sys.path.insert(0, str(REPO / "src"))
    from modelseal import fsio
    from modelseal.findings import GateResult, Status
    from modelseal.imagefs import ImageFs
    from modelseal.imagegate.gate import ImageGate
    from modelseal.oci import OciLayout
    from modelseal.pipeline import Context, RunOptions, RunShared, SourceDateEpoch
    from modelseal.policy import load_policy
    from modelseal.postbuild import image_fs
    from modelseal.vuln.site_packages import is_metadata_file

    opened = count_layer_opens()
    layout = OciLayout(Path(layout_dir))
    result: dict[str, Any] = {}
    with fsio.private_temp_dir("bench-") as tmp:
        ctx = Context(
            policy=load_policy(Path(work) / "policy.yml"),
            options=RunOptions(context=Path(work) / "ctx"),
            epoch=SourceDateEpoch(int(EPOCH), "option"), work_dir=Path(tmp),
            out_dir=Path(tmp) / "out", shared=RunShared(Path(tmp)),
        )  # fmt: skip
        if mode == "read":
            ImageFs.build(layout, manifest)
        elif mode == "read+payloads":
            from modelseal.imagegate import payloads
            from modelseal.imagegate.view import ImageView

            spool = fsio.ensure_dir(Path(tmp) / "spool")
            limit = ctx.policy.policy.models.limits.max_inflated_bytes
            tap = payloads.PayloadTap(spool, lambda n: n.startswith("app/model/"), limit)
            fs = ImageFs.build(layout, manifest, tap=tap)
            view = ImageView.read(ctx, layout, "linux/amd64", manifest)
            view._fs = fs
            result["findings"] = len(payloads.collect(view))
        elif mode == "pass":
            spool = fsio.ensure_dir(Path(tmp) / "spool")
            ImageFs.build(layout, manifest, hash_paths=lambda n: n.startswith("app/model/"),
                          keep=is_metadata_file, spool=spool)  # fmt: skip
        elif mode == "pass+tap":
            fs = image_fs(ctx, layout, manifest)
            result["tap_members"] = len(getattr(fs.tap, "members", {}))
        elif mode == "image-gate":
            facts = {f"{PLATFORM_KEY}linux/amd64": manifest, "image.digest": manifest}
            ctx.results["build"] = GateResult("build", Status.PASSED, facts=facts,
                                              artifacts={"oci_layout": Path(layout_dir)})  # fmt: skip
            gate = ImageGate().run(ctx)
            result["findings"] = len(gate.findings)
    result["reads"] = opened
    print(json.dumps(result))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--work", type=Path, help="keep the build here and reuse it next time")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0
    sys.path.insert(0, str(REPO / "src"))
    from modelseal.oci import OciLayout
    from modelseal.vuln.trivy import scan_argv

    work = args.work or Path(tempfile.mkdtemp(prefix="modelseal-bench-imagegate-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx, out = work / "ctx", work / "out"
    with engine_and_base() as base:
        policy = work / "policy.yml"
        policy.write_text(
            "version: 1\nbuild:\n  rebuild_check: false\n"
            "models:\n  image_paths: {model: /app/model}\n"
        )
        if not (out / "report.json").exists():
            shutil.rmtree(ctx, ignore_errors=True)
            make_context(ctx, args.size_mib)
            subprocess.run(
                [str(MODELSEAL), "build", str(ctx), "--policy", str(policy), "--build-context",
                 f"base={base}", "--source-date-epoch", EPOCH, "-o", str(out)],
                check=True, capture_output=True,
            )  # fmt: skip
        report = json.loads((out / "report.json").read_text())
        facts = report["gates"][0]["evidence"]["facts"]
        manifest = next(v for k, v in facts.items() if k.startswith(PLATFORM_KEY))
        layout = OciLayout(out / "oci")
        layers = [d["digest"] for d in layout.manifest(manifest)["layers"]]
        sizes = {d: layout.blob(d).stat().st_size for d in layers}
        big = max(sizes, key=lambda d: sizes[d]).removeprefix("sha256:")
        blobs = {d.removeprefix("sha256:"): d.removeprefix("sha256:")[:12] for d in layers}
        print(f"image: {len(layers)} layers, the model layer {sizes['sha256:' + big] / 2**20:.0f} "
              f"MiB (gzip); model {args.size_mib} MiB")  # fmt: skip
        trivy, single = trivy_input(layout, manifest, work)
        argv = scan_argv(trivy, single, work / "trivy-cache")
        argv[argv.index("--scanners") + 1] = "secret"

        def py(mode: str) -> dict[str, Any]:
            m = measure([str(PYTHON), __file__, "--child", mode, str(layout.path), manifest,
                         str(work)], blobs)  # fmt: skip
            m.update(json.loads(m["stdout"]))
            return m

        def trivy_run() -> dict[str, Any]:
            m = measure(argv, blobs)
            doc = json.loads(m["stdout"] or "{}")
            m["note"] = (
                f"{sum(len(r.get('Secrets') or []) for r in doc.get('Results') or [])} secrets"
            )
            return m

        consumers = {"read": lambda: py("read"),
                     "read + payloads": lambda: py("read+payloads"), "pass": lambda: py("pass"), "pass + tap": lambda: py("pass+tap"),
                     "image gate": lambda: py("image-gate"), "trivy secret": trivy_run}  # fmt: skip
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in consumers}
        for _ in range(args.runs):
            for name, run in consumers.items():
                runs[name].append(run())
        print(f"\n{args.size_mib} MiB model, {args.runs} run(s) each, interleaved (median)")
        header = ["", "s", "peak RSS MiB", "model-layer opens", "note"]
        rows = [header]
        for name, ms in runs.items():
            m = ms[0]
            reads = m.get("reads") or m["opens"]
            note = m.get("note", "")
            if "findings" in m:
                note = f"{m['findings']} findings"
            rows.append([
                name, f"{statistics.median(x['seconds'] for x in ms):.1f}",
                f"{statistics.median(x['rss_mib'] for x in ms):.0f}",
                str(reads.get(big[:12], reads.get(big, 0))), note,
            ])  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for r in rows:
            print("  ".join(c.ljust(widths[i]) if i in (0, 4) else c.rjust(widths[i])
                            for i, c in enumerate(r)))  # fmt: skip
        med = {k: statistics.median(x["seconds"] for x in v) for k, v in runs.items()}
        print(f"\nthe tap adds {med['pass + tap'] - med['pass']:.1f} s to the shared pass; "
              f"image gate alone {med['image gate']:.1f} s vs trivy secret {med['trivy secret']:.1f} s "
              f"({med['image gate'] / med['trivy secret']:.2f}×)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
