#!/usr/bin/env python3
"""The post-build gates on a model-sized image: before (each gate reads the layers on its own)
and after (models-image and the pip-audit extraction share one pass; syft skips the model paths),
side by side, with how often each consumer opened (decompressed) each layer blob.

Setup (all local): the example base image and a context ``FROM base`` + ``COPY model/
/app/model/`` with one safetensors file of ``--size-mib`` MiB of random bytes (weights look
random), locked; built once with ``modelseal build`` (gzip layers, rebuild check off). ``--work
DIR`` keeps that build and reuses it on the next run.

Measured, each consumer in a child process of its own (wall time, peak RSS from a launcher, and
the layer blobs it opened, sampled from ``/proc/PID/fd`` every 20 ms — a 2 GiB layer takes
seconds to decompress, so no open is missed; for Python consumers also counted exactly by
instrumenting the layer reader):

before  models-image          ImageFs of its own, model paths hashed while applying
        pip-audit extraction  ImageFs of its own, then the metadata files read again
        syft                  ``syft scan oci-dir:…`` (every file, weights included)
after   models-image + pip-audit extraction, one ImageFs (modelseal.postbuild)
        syft --exclude /app/model --exclude '/app/model/**'
both    trivy                 ``trivy image --input …`` as the gate runs it (offline DB)

Then ``modelseal run`` with every gate but the rebuild check (the build from BuildKit's cache),
its gates' times from report.json, and the peak of the summed RSS of its whole process tree
(modelseal, syft, trivy, pip-audit …), sampled every 50 ms.

    python benchmarks/post_build.py [--size-mib 2048] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    _LAUNCHER,
    EPOCH,
    REPO,
    count_layer_opens,
    engine_and_base,
    ensure_trivy_db,
    trivy_input,
)

MODELSEAL = REPO / ".venv" / "bin" / "modelseal"
PYTHON = REPO / ".venv" / "bin" / "python"


# -- measuring a child ----------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Every child of every thread of ``pid`` (modelseal starts its tools from gate threads)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for tid in tasks:
        try:
            out += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            continue
    return out


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(
    argv: list[str], blobs: dict[str, str], *, env: dict[str, str] | None = None,
    timeout: float = 3600, interval: float = 0.02,
) -> dict[str, Any]:  # fmt: skip
    """Run ``argv`` below the launcher of _common (its own peak RSS); meanwhile sample its
    process tree: the summed RSS, and which of ``blobs`` (path → short name) each process has
    open (a new (pid, fd) on a blob is one more open); ``blobs`` maps a blob's digest (hex)
    to its short name, matched on the file name of whatever the process has open."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _LAUNCHER, rss.name, *argv], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        opens: dict[str, int] = {}
        seen: set[tuple[int, int, str]] = set()
        peak_tree = 0
        at_peak: dict[str, int] = {}
        own_peak = (0, 0.0)  # the measured process's own RSS peak and when (s)
        done = threading.Event()
        out: dict[str, str] = {}

        def drain() -> None:
            o, e = proc.communicate(timeout=timeout)
            out["stdout"], out["stderr"] = o, e
            done.set()

        threading.Thread(target=drain, daemon=True).start()
        while not done.wait(interval):
            pids = _tree(proc.pid)[1:]  # not the launcher
            rss_now = {p: _rss_kib(p) for p in pids}
            if pids and rss_now[pids[0]] > own_peak[0]:
                own_peak = (rss_now[pids[0]], time.monotonic() - t0)
            if sum(rss_now.values()) > peak_tree:
                peak_tree = sum(rss_now.values())
                at_peak = {}
                for p, kib in rss_now.items():
                    at_peak[_comm(p)] = at_peak.get(_comm(p), 0) + kib // 1024
            now: set[tuple[int, int, str]] = set()
            for p in pids:
                try:
                    fds = os.listdir(f"/proc/{p}/fd")
                except OSError:
                    continue
                for fd in fds:
                    try:
                        target = os.readlink(f"/proc/{p}/fd/{fd}")
                    except OSError:
                        continue
                    name = blobs.get(os.path.basename(target))
                    if name is not None:
                        now.add((p, int(fd), name))
            for key in now - seen:
                opens[key[2]] = opens.get(key[2], 0) + 1
            seen = now
        seconds = time.monotonic() - t0
        text = rss.read().strip()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(argv)}\n{out['stderr'][-3000:]}")
    return {
        "seconds": seconds, "rss_mib": int(text) / 1024 if text else 0.0,
        "tree_mib": peak_tree / 1024, "opens": opens, "stdout": out["stdout"],
        "stderr": out["stderr"], "at_peak": at_peak, "own_peak_at": own_peak[1],
    }  # fmt: skip


# -- the Python consumers, run as children of this script (--child MODE) ----------------------


def child(mode: str, layout_dir: str, manifest: str, work: str) -> None:
    sys.path.insert(0, str(REPO / "src"))
    from modelseal import fsio
    from modelseal.imagefs import ImageFs
    from modelseal.models.gate import _check_image, _expected_in_image, _image_dirs
    from modelseal.models.lock import load_lock
    from modelseal.oci import OciLayout
    from modelseal.vuln.site_packages import is_metadata_file, packages_from

    opened = count_layer_opens()
    layout = OciLayout(Path(layout_dir))
    ctx = Path(work) / "ctx"
    lock = load_lock(ctx / "models.lock")
    locked = [(e.path, e) for e in lock.entries]
    expected = _expected_in_image(locked, {"model": "/app/model"})
    dirs = _image_dirs({"model": "/app/model"}, {rel for rel, _ in locked})
    result: dict[str, Any] = {}
    with fsio.private_temp_dir("bench-") as tmp:
        if mode == "models-image":  # before: as the gate did on its own
            fs = ImageFs.build(layout, manifest, hash_paths=lambda n: n.startswith("app/model/"))
            result["findings"] = len(_check_image(fs, "p", expected, dirs, []))
        elif mode == "pip-extract":  # before: ImageFs of its own, metadata read again
            fs = ImageFs.build(layout, manifest)
            result["packages"] = len(packages_from(fs, Path(tmp) / "root"))
        elif mode == "shared":  # after: one pass for both
            spool = fsio.ensure_dir(Path(tmp) / "spool")
            fs = ImageFs.build(
                layout, manifest, hash_paths=lambda n: n.startswith("app/model/"),
                keep=is_metadata_file, spool=spool,
            )  # fmt: skip
            result["findings"] = len(_check_image(fs, "p", expected, dirs, []))
            result["packages"] = len(packages_from(fs, Path(tmp) / "root"))
    result["reads"] = opened
    print(json.dumps(result))


# -- the benchmark ----------------------------------------------------------------------------


def write_context(ctx: Path, mib: int) -> None:
    import struct

    (ctx / "model").mkdir(parents=True, exist_ok=True)
    n = mib << 20
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (-len(header) % 8)
    with (ctx / "model" / "model.safetensors").open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        left = n
        while left:
            k = min(1 << 20, left)
            f.write(os.urandom(k))
            left -= k
    (ctx / "Dockerfile").write_text("FROM base\nCOPY model/ /app/model/\n")


def row(name: str, m: dict[str, Any], blobs: dict[str, str], big: str) -> list[str]:
    reads = m.get("reads") or m["opens"]
    return [
        name, f"{m['seconds']:.1f}", f"{m['rss_mib']:.0f}", f"{m['tree_mib']:.0f}",
        str(reads.get(big[:12], reads.get(big, 0))),
        str(max((v for k, v in reads.items() if k[:12] != big[:12]), default=0)),
    ]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--work", type=Path, help="keep the build here and reuse it next time")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0
    sys.path.insert(0, str(REPO / "src"))
    sys.path.insert(0, str(REPO))
    from examples.offline.osv_server import start_osv_server

    from modelseal.oci import OciLayout
    from modelseal.sbom.gate import SYFT_ENV_OFFLINE
    from modelseal.vuln.trivy import scan_argv

    work = args.work or Path(tempfile.mkdtemp(prefix="modelseal-bench-postbuild-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx, out = work / "ctx", work / "out"
    try:
        with engine_and_base() as base, start_osv_server() as (osv_url, _stop):
            cache = work / "cache"
            ensure_trivy_db(cache / "trivy")
            policy = work / "policy.yml"
            policy.write_text(
                "version: 1\nbuild:\n  rebuild_check: false\n"
                "models:\n  image_paths: {model: /app/model}\n"
                f"trivy:\n  db:\n    mode: offline\n    cache_dir: {cache / 'trivy'}\n"
                f"pip_audit:\n  osv_url: {osv_url}\n"
            )
            if not (out / "report.json").exists():
                write_context(ctx, args.size_mib)
                subprocess.run([str(MODELSEAL), "models", "lock", str(ctx / "model"), "--lock",
                                str(ctx / "models.lock")], check=True, capture_output=True)  # fmt: skip
                built = measure([str(MODELSEAL), "build", str(ctx), "--policy", str(policy),
                                 "--build-context", f"base={base}", "--source-date-epoch", EPOCH,
                                 "-o", str(out)], {}, interval=0.2)  # fmt: skip
                print(f"modelseal build: {built['seconds']:.0f} s, "
                      f"peak RSS {built['tree_mib']:.0f} MiB (process tree)")  # fmt: skip
            report = json.loads((out / "report.json").read_text())
            facts = report["gates"][0]["evidence"]["facts"]
            manifest = next(v for k, v in facts.items() if k.startswith("image.manifest."))
            layout = OciLayout(out / "oci")
            layers = [d["digest"] for d in layout.manifest(manifest)["layers"]]
            sizes = {d: layout.blob(d).stat().st_size for d in layers}
            big = max(sizes, key=lambda d: sizes[d]).removeprefix("sha256:")
            blobs = {d.removeprefix("sha256:"): d.removeprefix("sha256:")[:12] for d in layers}
            print(f"image: {len(layers)} layers, the model layer {sizes['sha256:' + big] / 2**20:.0f}"
                  f" MiB (gzip); model {args.size_mib} MiB")  # fmt: skip

            def py(mode: str) -> dict[str, Any]:
                m = measure([str(PYTHON), __file__, "--child", mode, str(out / "oci"), manifest,
                             str(work)], blobs)  # fmt: skip
                m.update(json.loads(m["stdout"]))
                return m

            syft = shutil.which("syft", path=str(REPO / ".venv" / "bin")) or "syft"
            syft_cfg = work / "syft.yaml"
            syft_cfg.write_text("{}\n")
            syft_env = {**os.environ, **SYFT_ENV_OFFLINE, "TMPDIR": str(work)}

            def syft_run(*extra: str) -> Callable[[], dict[str, Any]]:
                argv = [syft, "scan", f"oci-dir:{out / 'oci'}", "-o",
                        f"cyclonedx-json@1.6={work / 'syft.json'}", "--config", str(syft_cfg),
                        "--quiet", *extra]  # fmt: skip

                def run() -> dict[str, Any]:
                    m = measure(argv, blobs, env=syft_env)
                    doc = json.loads((work / "syft.json").read_text())
                    m["components"] = len(doc.get("components", []))
                    return m

                return run

            trivy, single = trivy_input(layout, manifest, work)

            def trivy_run() -> dict[str, Any]:
                return measure(scan_argv(trivy, single, cache / "trivy"), blobs)

            exclude = ["--exclude", "/app/model", "--exclude", "/app/model/**"]
            results = {
                "before: models-image": py("models-image"),
                "before: pip-audit extraction": py("pip-extract"),
                "before: syft": syft_run()(),
                "after: models-image + pip-audit extraction (one pass)": py("shared"),
                "after: syft --exclude the model paths": syft_run(*exclude)(),
                "trivy (before and after)": trivy_run(),
            }
            for name in ("before: syft", "after: syft --exclude the model paths"):
                results[name]["note"] = f"{results[name]['components']} components"
            print(f"\npost-build consumers, {args.size_mib} MiB model (one run each)")
            header = ["", "s", "peak RSS MiB", "tree MiB", "model-layer opens", "other max"]
            rows = [header] + [row(n, m, blobs, big) for n, m in results.items()]
            widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
            for r in rows:
                print("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                                for i, c in enumerate(r)))  # fmt: skip
            before = sum(results[k]["seconds"] for k in results if k.startswith("before"))
            after = sum(results[k]["seconds"] for k in results if k.startswith("after"))
            trivy_s = results["trivy (before and after)"]["seconds"]
            print(f"\nsequential sum before: {before + trivy_s:.1f} s, after: {after + trivy_s:.1f} s"
                  f" ({(after + trivy_s) / (before + trivy_s):.2f}×)")  # fmt: skip
            opens_before = sum(
                int(row(n, m, blobs, big)[4])
                for n, m in results.items()
                if not n.startswith("after")
            )
            opens_after = sum(
                int(row(n, m, blobs, big)[4])
                for n, m in results.items()
                if not n.startswith("before")
            )
            print(f"model layer decompressed: {opens_before}× before, {opens_after}× after")

            # The whole run, every gate (the build from the cache), its process tree's memory.
            run_out = work / "run-out"
            shutil.rmtree(run_out, ignore_errors=True)
            full = measure([str(MODELSEAL), "run", str(ctx), "--policy", str(policy),
                            "--build-context", f"base={base}", "--source-date-epoch", EPOCH,
                            "--no-evidence-cache", "-o", str(run_out)], blobs,
                           interval=0.05)  # fmt: skip
            rep = json.loads((run_out / "report.json").read_text())
            print("\nmodelseal run (every gate, rebuild check off; the build from the cache when "
                  "this invocation built the image, else cold on a fresh engine): "
                  f"{full['seconds']:.1f} s; peak RSS: modelseal {full['rss_mib']:.0f} MiB, "
                  f"whole process tree (summed) {full['tree_mib']:.0f} MiB; verdict {rep['verdict']}")  # fmt: skip
            for g in rep["gates"]:
                ev = g["evidence"]
                print(f"  {g['gate']:14} {ev.get('duration_s') or 0:7.1f} s  {ev['status']}")
            print(f"  model layer opened by the run: {full['opens'].get(big[:12], 0)}×")
            print(f"  at the tree's peak (MiB by process): {full['at_peak']}")
            print(f"  modelseal's own RSS peaked {full['own_peak_at']:.0f} s into the run; "
                  "its progress around then:")  # fmt: skip
            for line in (full["stderr"] + full["stdout"]).splitlines():
                try:
                    at = float(line.split("]")[0].strip("[ s"))
                except ValueError:
                    continue
                if abs(at - full["own_peak_at"]) < 15:
                    print(f"    {line[:120]}")
            return 0
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
