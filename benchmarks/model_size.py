#!/usr/bin/env python3
"""A model-sized image: plain `docker buildx build` vs `modelseal run`, cold, in one run.

The context is the one of issue 16: ``FROM base`` (the example base, a local OCI layout) and
``COPY model/ /app/model/`` with one safetensors file of random bytes (weights look random to a
compressor) of --size-mib MiB. Every build starts from an empty BuildKit cache
(``docker builder prune -af`` before it). Nothing leaves 127.0.0.1: the Trivy DB is generated
offline (examples/offline/trivydb.py) and the policy switches pip-audit off.

Part 1, where the seconds go (--flags-size-mib, default 256; 0 skips it): plain buildx builds
with the OCI exporter's flags one at a time — the default (gzip, no rewrite-timestamp), with
rewrite-timestamp (modelseal's flags before the layout finalizer), zstd, and uncompressed
without the rewrite (what modelseal asks for now: BuildKit's floor) — each split into BuildKit's own phases (context
transfer, the COPY step, "exporting layers", "rewriting layers with source-date-epoch", the
rest of the export). Then modelseal's normalized context with and without rewrite-timestamp:
the tar headers of the COPY layer, to see whether the normalization is what makes the rewrite
recompress it.

Part 2, the targets (--size-mib, default 2048; --runs, interleaved): plain
``docker buildx build`` with default flags (gzip, OCI layout, no rewrite-timestamp) vs
``modelseal run`` with every gate but pip-audit (no evidence cache), one run per --variants
entry COMPRESSION-off|on (build.compression; the rebuild check off or on; default: zstd — the
setting recommended for model images — and gzip, the default, each off and on). Each gate's
``duration_s`` from report.json is printed, BuildKit's phases of each first build (from the
build log), the build gate's own split (normalizing the context, buildx, the layout finalizer:
its ``seconds.*`` facts), and the ratios against the targets: modelseal (rebuild off) ≤ 0.5× plain, (rebuild on) ≤ 1.0× plain, post-build gates
together (models-image + sbom + trivy + image) ≤ 10 % of the build gate.

With --registry-base the Dockerfile is ``FROM 127.0.0.1:PORT/bench/base@sha256:…`` instead: the
same base pushed to a local docker-registry, pinned by digest (BuildKit pulls it; modelseal
reads its configs from the registry before the build, for stand-ins).

    python benchmarks/model_size.py [--size-mib 2048] [--runs 1] [--variants zstd-off,zstd-on,gzip-off,gzip-on]
        [--registry-base] [--no-plain] [--flags-size-mib 256]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from _common import EPOCH, REPO, engine_and_base, run_peak

MIB = 1 << 20
POST_BUILD = ("models-image", "sbom", "trivy", "image")
#: The build gate's seconds.* facts: copying the context normalized, `docker buildx build`
#: (uncompressed new layers), the layout finalizer (clamp + compress once).
_BUILD_PARTS = (
    "normalize",
    "buildx",
    "finalize",
    "rebuild.engine_wait",
    "rebuild.buildx",
    "rebuild.finalize",
    "rebuild.compare",
)

# BuildKit's plain progress: "#7 exporting layers 11.5s done", "#4 transferring context:
# 268.50MB 3.2s done", "#6 DONE 3.1s".
_PHASES = {
    "context transfer": re.compile(r"transferring context: [\d.]+[kMG]?B ([\d.]+)s done"),
    "exporting layers (compress)": re.compile(r"exporting layers ([\d.]+)s done"),
    "rewrite-timestamp (recompress)": re.compile(r"rewriting layers with source-date-epoch .* ([\d.]+)s done"),
    "export total": re.compile(r"exporting to oci image format\n(?:#\d+ .*\n)*?#\d+ DONE ([\d.]+)s"),
}  # fmt: skip


_PROGRESS = re.compile(r"^\[ *([\d.]+)s\] ([\w-]+): (started|done)$", re.MULTILINE)


def make_context(ctx: Path, size_mib: int) -> None:
    """``FROM base`` + ``COPY model/ /app/model/`` with a valid safetensors file of random
    bytes (one U8 tensor) and its models.lock."""
    model = ctx / "model"
    model.mkdir(parents=True)
    n = size_mib * MIB - 4096
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (-len(header) % 8)
    h = hashlib.sha256()
    path = model / "model.safetensors"
    with path.open("wb") as f:
        for chunk in (struct.pack("<Q", len(header)), header):
            f.write(chunk)
            h.update(chunk)
        left = n
        while left:
            chunk = os.urandom(min(left, 4 * MIB))
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
    lock = {
        "version": 1,
        "roots": ["model"],
        "files": [{"path": "model/model.safetensors", "size": path.stat().st_size,
                   "sha256": h.hexdigest(), "format": "safetensors"}],
    }  # fmt: skip
    (ctx / "models.lock").write_text(json.dumps(lock, indent=2) + "\n")
    # USER: the image gate (every gate runs) requires a non-root user.
    (ctx / "Dockerfile").write_text("FROM base\nCOPY model/ /app/model/\nUSER 65534:65534\n")
    (ctx / ".dockerignore").write_text("models.lock\n")


def registry_base(stack: contextlib.ExitStack, base: str, work: Path) -> str:
    """The example base (``oci-layout://DIR@DIGEST``) pushed to a docker-registry on 127.0.0.1
    started here (stopped with ``stack``): ``HOST/bench/base@DIGEST``."""
    sys.path.insert(0, str(REPO))
    from examples.offline.registry import local_registry

    host = stack.enter_context(local_registry(work))
    layout, _, digest = base.removeprefix("oci-layout://").rpartition("@")
    name = f"{host}/bench/base"
    subprocess.run(
        ["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
         f"oci:{layout}", f"docker://{name}:1"],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return f"{name}@{digest}"


def prune() -> None:
    """An empty BuildKit cache: every build below is cold."""
    subprocess.run(["docker", "builder", "prune", "-af"], capture_output=True, check=False)


def plain(
    ctx: Path, base: str, dest: Path, flags: str = "", *, epoch: bool = False
) -> dict[str, float]:
    """One cold plain build; its wall time and BuildKit's phases."""
    prune()
    argv = [
        "docker", "buildx", "build", "--pull=false", "--provenance=false", "--sbom=false",
        "--progress", "plain", "--build-context", f"base={base}",
        "--output", f"type=oci,dest={dest},tar=false{flags}",
        "--metadata-file", f"{dest}.json",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    if epoch:
        argv += ["--build-arg", f"SOURCE_DATE_EPOCH={EPOCH}"]
        env["SOURCE_DATE_EPOCH"] = EPOCH
    t0 = time.perf_counter()
    proc = subprocess.run([*argv, str(ctx)], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"plain build failed:\n{proc.stderr[-3000:]}")
    out = {"wall": wall}
    for name, rx in _PHASES.items():
        m = rx.search(proc.stderr)
        if m:
            out[name] = float(m.group(1))
    return out


def top_layer(dest: Path) -> tuple[str, list[tuple[str, int]]]:
    """The last layer's digest and its members' (name, mtime) as the tar headers say."""
    digest = json.loads(Path(f"{dest}.json").read_text())["containerimage.digest"]
    manifest = json.loads((dest / "blobs/sha256" / digest.split(":")[1]).read_text())
    layer = manifest["layers"][-1]
    blob = dest / "blobs/sha256" / layer["digest"].split(":")[1]
    members: list[tuple[str, int]] = []
    if layer["mediaType"].endswith("gzip"):
        with tarfile.open(blob, "r|gz") as tar:
            members = [(m.name, int(m.mtime)) for m in tar]
    return layer["digest"], members


def seal(ctx: Path, base: str, policy: Path, out: Path, env: dict[str, str]) -> dict[str, float]:
    """One cold ``modelseal run``: wall time and each gate's duration_s."""
    prune()
    argv = [
        sys.executable, "-m", "modelseal", "run", str(ctx), "--policy", str(policy),
        "--build-context", f"base={base}", "--source-date-epoch", EPOCH,
        "--no-evidence-cache", "-o", str(out),
    ]  # fmt: skip
    # Through a small launcher: the peak RSS of modelseal and of the tools it waits for (the
    # largest one process reached; wait4's rusage), not of this benchmark.
    log = out.parent / f"{out.name}.stderr"
    with log.open("w") as err:
        code, wall, peak = run_peak(argv, timeout=7200, env=env, stdout=subprocess.DEVNULL,
                                    stderr=err)  # fmt: skip
    stderr = log.read_text(errors="replace")
    report = (
        json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    )
    gates = {g["gate"]: g for g in report.get("gates", [])}
    bad = {
        n: (g["decision"]["status"], g["evidence"]["error"])
        for n, g in gates.items()
        if g["decision"]["status"].lower() not in ("passed", "skipped")
    }
    if code or bad:
        sys.exit(f"modelseal run failed ({code}, {bad}):\n{stderr[-3000:]}")
    row = {"wall": wall, "peak RSS MiB": peak}
    # The post-build gates run side by side: their wall time is the span from the first one's
    # start to the last one's end (the progress lines: "[  12.3s] sbom: started").
    marks = [(float(m.group(1)), m.group(2), m.group(3)) for m in _PROGRESS.finditer(stderr)
             if m.group(2) in POST_BUILD]  # fmt: skip
    starts = [t for t, _, what in marks if what == "started"]
    ends = [t for t, _, what in marks if what == "done"]
    if starts and ends:
        row["post-build wall"] = max(ends) - min(starts)
    for name, g in gates.items():
        if g["evidence"]["status"].lower() == "passed":
            row[name] = float(g["evidence"]["duration_s"])
    # BuildKit's phases of modelseal's (first) build, from its log.
    log = (out / "build.log").read_text(errors="replace") if (out / "build.log").is_file() else ""
    for phase, rx in _PHASES.items():
        m = rx.search(log)
        if m:
            row[phase] = float(m.group(1))
    facts = gates["build"]["evidence"]["facts"]
    # The build gate's own split: normalizing the context, docker buildx build, the finalizer.
    for part in _BUILD_PARTS:
        if f"seconds.{part}" in facts:
            row[f"build: {part}"] = float(facts[f"seconds.{part}"])
    row["reproducible"] = 1.0 if facts.get("rebuild.reproducible", "yes") == "yes" else 0.0
    row["stand-ins"] = float(facts.get("stand_ins", "0"))
    return row


def part1(work: Path, base: str, size_mib: int) -> None:
    ctx = work / "flags-ctx"
    make_context(ctx, size_mib)
    sys.path.insert(0, str(REPO / "src"))
    from modelseal.imagebuild.context import DockerIgnore, normalize_context

    norm = work / "flags-norm"
    normalize_context(ctx, norm, epoch=int(EPOCH), ignore=DockerIgnore.load(ctx, None))
    rows = {
        "default (gzip, no rewrite)": plain(ctx, base, work / "f-default"),
        "gzip + rewrite-timestamp": plain(ctx, base, work / "f-rw", ",rewrite-timestamp=true", epoch=True),
        "zstd + rewrite-timestamp": plain(ctx, base, work / "f-zstd", ",rewrite-timestamp=true,compression=zstd", epoch=True),
        "zstd, no rewrite": plain(ctx, base, work / "f-zstd-nrw", ",compression=zstd", epoch=True),
        # What modelseal asks for since the layout finalizer: BuildKit's floor.
        "uncompressed, no rewrite": plain(ctx, base, work / "f-unc", ",compression=uncompressed", epoch=True),
        "normalized, gzip, no rewrite": plain(norm, base, work / "f-norm", epoch=True),
        "normalized, gzip + rewrite": plain(norm, base, work / "f-norm-rw", ",rewrite-timestamp=true", epoch=True),
    }  # fmt: skip
    phases = ["wall", *_PHASES]
    print(f"\npart 1: where the seconds go — plain buildx, cold, {size_mib} MiB of random weights")
    print(f"{'':34}" + "".join(f"{p[:14]:>16}" for p in phases))
    for name, row in rows.items():
        print(
            f"{name:34}" + "".join(f"{row[p]:16.1f}" if p in row else f"{'-':>16}" for p in phases)
        )
    d_plain, m_plain = top_layer(work / "f-norm")
    d_rw, m_rw = top_layer(work / "f-norm-rw")
    print("\nthe COPY layer of the normalized context, tar header mtimes (epoch " + EPOCH + "):")
    print(f"  without rewrite: {d_plain[:19]}… {m_plain}")
    print(f"  with rewrite:    {d_rw[:19]}… {m_rw}")
    late = [n for n, t in m_plain if t > int(EPOCH)]
    print(
        "  entries above the epoch without rewrite: "
        + (", ".join(late) if late else "none")
        + " (the model file's sub-second offset is truncated by the layer's tar writer; a "
        "directory the COPY creates carries the build's wall clock)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--flags-size-mib", type=int, default=256)
    ap.add_argument(
        "--no-plain", action="store_true",
        help="skip the plain builds (e.g. at 8 GiB, for modelseal's time and peak RSS alone: a "
        "plain build needs four copies of the model on disk)",
    )  # fmt: skip
    ap.add_argument(
        "--variants", default="zstd-off,zstd-on,gzip-off,gzip-on",
        help="the modelseal runs, COMPRESSION-off|on (rebuild check), comma-separated",
    )  # fmt: skip
    ap.add_argument(
        "--registry-base", action="store_true",
        help="FROM the example base pushed to a local registry (docker-registry on 127.0.0.1) "
        "and pinned by digest, as model-serving images usually are, instead of the OCI-layout "
        "build context: BuildKit pulls it, modelseal reads its configs from the registry",
    )  # fmt: skip
    ap.add_argument(
        "--baseline-src", type=Path, default=None,
        help="also run each variant with this src/ directory first on PYTHONPATH (another "
        "modelseal, e.g. `git archive COMMIT src | tar -x -C DIR`, then DIR/src)",
    )  # fmt: skip
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    work = Path(tempfile.mkdtemp(prefix="modelseal-bench-size-", dir="/var/tmp"))
    try:
        with engine_and_base() as base, contextlib.ExitStack() as stack:
            if args.flags_size_mib:
                part1(work, base, args.flags_size_mib)
            cache = work / "cache"
            subprocess.run(
                [sys.executable, str(REPO / "examples/offline/trivydb.py"), "--cache-dir", str(cache / "trivy")],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            env = {**os.environ, "MODELSEAL_CACHE_DIR": str(cache), "SOURCE_DATE_EPOCH": EPOCH}
            ctx = work / "ctx"
            make_context(ctx, args.size_mib)
            if args.registry_base:
                ref = registry_base(stack, base, work / "registry")
                dockerfile = ctx / "Dockerfile"
                dockerfile.write_text(
                    dockerfile.read_text().replace("FROM base\n", f"FROM {ref}\n")
                )
                print(f"base: {ref} (a local registry)", file=sys.stderr, flush=True)
            variants: dict[str, Path] = {}
            baseline: dict[str, Path] = {}
            trees = {"": None} | ({" (baseline)": args.baseline_src} if args.baseline_src else {})
            for variant, (label, tree) in itertools.product(
                args.variants.split(","), trees.items()
            ):
                comp, _, rb = variant.partition("-")
                if True:
                    policy = work / f"policy-{comp}-{rb}.yml"
                    policy.write_text(
                        "version: 1\nbuild:\n  rebuild_check: "
                        + ("always" if rb == "on" else "never")
                        + f"\n  compression: {comp}\n"
                        "models:\n  lock: models.lock\n  image_paths:\n    model: /app/model\n"
                        "trivy:\n  db:\n    mode: offline\npip_audit:\n  enabled: false\n"
                    )
                    name = f"modelseal run, {comp}, rebuild {rb}{label}"
                    variants[name] = policy
                    if tree is not None:
                        baseline[name] = tree
            rows: dict[str, list[dict[str, float]]] = {"plain": []}
            rows |= {name: [] for name in variants}
            for i in range(args.runs):
                # Interleaved so drift on a shared machine hits every side alike.
                if not args.no_plain:
                    rows["plain"].append(plain(ctx, base, work / f"plain-{i}"))
                    print(f"plain: {rows['plain'][-1]}", file=sys.stderr, flush=True)
                    shutil.rmtree(work / f"plain-{i}", ignore_errors=True)
                    prune()  # its cache holds the model too (disk)
                for name, policy in variants.items():
                    out = work / f"seal-{policy.stem}-{i}{'-b' if name in baseline else ''}"
                    # A baseline variant runs another checkout's src/ (e.g. the commit before
                    # a change), same engine, same context, interleaved.
                    run_env = (
                        {**env, "PYTHONPATH": str(baseline[name])} if name in baseline else env
                    )
                    rows[name].append(seal(ctx, base, policy, out, run_env))
                    print(f"{name}: {rows[name][-1]}", file=sys.stderr, flush=True)
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(name: str, key: str) -> float:
        vals = [r[key] for r in rows[name] if key in r]
        return statistics.median(vals) if vals else float("nan")

    base_s = med("plain", "wall")
    print(
        f"\npart 2: {args.size_mib} MiB model, cold, median of {args.runs} run(s), {os.cpu_count()} CPU(s)"
    )
    print(f"plain docker buildx build (default flags: gzip, OCI layout): {base_s:.1f} s")
    for p in _PHASES:
        print(f"  {p:40}{med('plain', p):8.1f} s")
    gates = ["models", "build", *POST_BUILD, "post-build wall"]
    print(f"\n{'':36}{'wall s':>9}" + "".join(f"{g:>16}" for g in gates) + f"{'ratio':>8}"
          + f"{'peak RSS':>10}")  # fmt: skip
    for name in variants:
        print(f"{name:36}{med(name, 'wall'):9.1f}" + "".join(f"{med(name, g):16.1f}" for g in gates)
              + f"{med(name, 'wall') / base_s:7.2f}×" + f"{med(name, 'peak RSS MiB'):7.0f} MiB")  # fmt: skip
    print(
        f"\n{'BuildKit phases of the first build':36}" + "".join(f"{p[:22]:>24}" for p in _PHASES)
    )
    for name in ["plain", *variants]:
        print(f"{name:36}" + "".join(f"{med(name, p):24.1f}" for p in _PHASES))
    print(f"\n{'the build gate, split':36}" + "".join(f"{p:>20}" for p in _BUILD_PARTS))
    for name in variants:
        print(f"{name:36}" + "".join(f"{med(name, 'build: ' + p):20.1f}" for p in _BUILD_PARTS))
    print()
    for name in variants:
        wall = med(name, "wall") / base_s
        target = 1.0 if "rebuild on" in name else 0.5
        post = sum(med(name, g) for g in POST_BUILD) / med(name, "build")
        post_wall = med(name, "post-build wall") / med(name, "build")
        peak = med(name, "peak RSS MiB")
        repro = all(r["reproducible"] for r in rows[name])
        print(f"{name}: {wall:.2f}× plain (target ≤ {target}×: {'met' if wall <= target else 'NOT met'}); "
              f"post-build gates {post:.0%} of the build gate summed, {post_wall:.0%} as they run "
              f"side by side (target ≤ 10%: {'met' if post_wall <= 0.10 else 'NOT met'}); "
              f"peak RSS {peak:.0f} MiB (target < 300: {'met' if peak < 300 else 'NOT met'}); "
              f"reproducible: {'yes' if repro else 'NO'}; "
              f"stand-ins: {med(name, 'stand-ins'):.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
