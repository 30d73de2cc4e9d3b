#!/usr/bin/env python3
"""The shared post-build pass over a model-sized layer against the floor: how close
``ImageFs.build`` comes to ``zstd -dc | sha256sum`` (and ``gzip -dc | sha256sum``) on the same
blob.

Setup (in ``/var/tmp``, removed at the end): one tar with a single file ``app/model/w.bin`` of
``--size-mib`` MiB of random bytes (weights look random), compressed once with ``zstd -1`` and
once with gzip (stored blocks, what any gzip level makes of random bytes), each blob the one
layer of an image manifest of an OCI layout.

Measured, interleaved round by round (``--rounds``), each in a process of its own (wall time,
peak RSS from the launcher of _common):

imagefs   ``ImageFs.build`` with ``hash_paths`` selecting the file (the models-image hash)
          and the image gate's ``PayloadTap`` (as :mod:`modelseal.postbuild` runs it); the
          time printed is the build's own (the interpreter's start-up left out), RSS the
          whole child's
floor     ``zstd -dcq BLOB | sha256sum`` / ``gzip -dc BLOB | sha256sum`` (sh, wall time)
openssl   the same with ``openssl dgst -sha256`` in place of sha256sum: coreutils' sha256sum
          may not use the CPU's SHA instructions (9.1 here: ~340 MB/s, OpenSSL and hashlib
          ~1.3 GB/s), so this is the floor that hashes as fast as hashlib can
python    the least Python can do: zlib + hashlib in 1 MiB steps (gzip), or ``zstd -dcq``
          piped into hashlib (zstd) — GNU gzip inflates at a fraction of zlib's speed, so
          for gzip this, not the pipes, is the floor

Every digest printed is checked (the file's from ImageFs, the tar's from the floors: a fast
wrong answer is a failure). Prints each round and the median, with the ratios of the build to
each floor (the floors' times include starting their processes, a few tens of ms).

``--baseline SRC`` also times another source tree's ImageFs in the same rounds (before/after).

    python benchmarks/imagefs_read.py [--size-mib 2048] [--rounds 3] [--only zstd|gzip]
        [--baseline SRC]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

from _common import REPO, run_peak

PYTHON = REPO / ".venv" / "bin" / "python"
FILE = "app/model/w.bin"
_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# The python floors: print the sha256 of the decompressed blob, nothing else done.
_PY_GZIP = """import hashlib, sys, zlib
z, h = zlib.decompressobj(31), hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    while b := f.read(1 << 20):
        h.update(z.decompress(b))
print(h.hexdigest())"""
_PY_PIPE = (
    "import hashlib, sys; h = hashlib.sha256(); r = sys.stdin.buffer.raw.read\n"
    "while b := r(1 << 20): h.update(b)\n"
    "print(h.hexdigest())"
)
_MEDIA = {
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
}


def child(src: str, layout_dir: str, manifest: str) -> None:
    """One measured pass (``--child``) with the modelseal of ``src``: prints seconds and the
    file's digest as JSON."""
    sys.path.insert(0, src)
    from modelseal import fsio
    from modelseal.imagefs import ImageFs
    from modelseal.imagegate.payloads import PayloadTap
    from modelseal.oci import OciLayout

    layout = OciLayout(Path(layout_dir))

    def hashed(path: str) -> bool:
        return path.startswith("app/model/")

    with fsio.private_temp_dir("bench-") as tmp:
        cpu0 = _cpu()
        t0 = time.perf_counter()
        fs = ImageFs.build(
            layout, manifest, hash_paths=hashed, keep=lambda p, s: False, spool=Path(tmp),
            tap=PayloadTap(Path(tmp), hashed, 1 << 40),
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        cpu = _cpu() - cpu0
    entry = fs.entry(FILE)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "sha256": entry.sha256 if entry else None}))


def _cpu() -> float:
    """CPU seconds (user + system) of this process and of its children waited for."""
    return sum(
        u.ru_utime + u.ru_stime
        for u in (resource.getrusage(resource.RUSAGE_SELF),
                  resource.getrusage(resource.RUSAGE_CHILDREN))
    )  # fmt: skip


def make_layout(work: Path, size_mib: int) -> tuple[dict[str, str], str, str]:
    """Write the tar, both blobs and a layout; returns compression → manifest digest, the
    file's sha256 and the tar's (what the floor prints)."""
    layout = work / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    tar_path = work / "layer.tar"
    h = hashlib.sha256()
    size = size_mib << 20
    with tar_path.open("wb") as out:
        info = tarfile.TarInfo(FILE)
        info.size, info.mode, info.mtime = size, 0o644, 1700000000
        out.write(info.tobuf(format=tarfile.PAX_FORMAT))
        for _ in range(size_mib):
            chunk = os.urandom(1 << 20)
            h.update(chunk)
            out.write(chunk)
        out.write(bytes(-size % 512 + 1024))
    tar_digest = _file_digest(tar_path)
    manifests: dict[str, str] = {}
    index = []
    for kind in ("zstd", "gzip"):
        tmp_blob = work / f"layer.{kind}"
        with tar_path.open("rb") as src, tmp_blob.open("wb") as dst:
            if kind == "zstd":
                subprocess.run(["zstd", "-1", "-T0", "-q", "-c", "-"], stdin=src, stdout=dst,
                               check=True)  # fmt: skip
            else:
                # Level 0: stored deflate blocks, what gzip writes for random bytes at any
                # level (they do not compress), made in a second instead of minutes.
                comp = zlib.compressobj(0, zlib.DEFLATED, 31)
                while chunk := src.read(1 << 20):
                    dst.write(comp.compress(chunk))
                dst.write(comp.flush())
        blob_digest = _file_digest(tmp_blob)
        tmp_blob.rename(layout / "blobs" / "sha256" / blob_digest)
        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        config_digest = hashlib.sha256(config).hexdigest()
        (layout / "blobs" / "sha256" / config_digest).write_bytes(config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": _MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": f"sha256:{config_digest}", "size": len(config)},
            "layers": [{"mediaType": _MEDIA[kind], "digest": f"sha256:{blob_digest}",
                        "size": (layout / "blobs" / "sha256" / blob_digest).stat().st_size}],
        }).encode()  # fmt: skip
        manifest_digest = hashlib.sha256(manifest).hexdigest()
        (layout / "blobs" / "sha256" / manifest_digest).write_bytes(manifest)
        manifests[kind] = f"sha256:{manifest_digest}"
        index.append({"mediaType": _MANIFEST, "digest": manifests[kind], "size": len(manifest)})
    tar_path.unlink()
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": index}))
    return manifests, h.hexdigest(), tar_digest


def _file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def blob_of(layout: Path, manifest: str) -> Path:
    m = json.loads((layout / "blobs" / "sha256" / manifest[7:]).read_text())
    return layout / "blobs" / "sha256" / m["layers"][0]["digest"][7:]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=sorted(_MEDIA))
    ap.add_argument(
        "--baseline", metavar="SRC",
        help="also time the ImageFs of another source tree (a src/ directory, e.g. of main made "
        "with `git archive main src | tar -x -C DIR`), interleaved: before and after, one run",
    )  # fmt: skip
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0
    work = Path(tempfile.mkdtemp(prefix="modelseal-imagefs-bench-", dir="/var/tmp"))
    try:
        t0 = time.monotonic()
        manifests, want, want_tar = make_layout(work, args.size_mib)
        layout = work / "layout"
        print(f"setup: {args.size_mib} MiB file, layers made in {time.monotonic() - t0:.1f} s")
        kinds = [args.only] if args.only else sorted(manifests, reverse=True)
        trees = [("imagefs", str(REPO / "src"))]
        if args.baseline:
            trees.insert(0, ("baseline", str(Path(args.baseline).resolve())))
        rows: dict[tuple[str, str], list[tuple[float, ...]]] = {
            (label, k): [] for label, _ in trees for k in kinds
        }
        env = {**os.environ, "LC_ALL": "C"}
        for r in range(args.rounds):
            for kind in kinds:
                blob = blob_of(layout, manifests[kind])
                tool = "zstd -dcq" if kind == "zstd" else "gzip -dc"
                floors = []
                for floor in ("sha256sum", "openssl dgst -sha256 -r", "python"):
                    if floor != "python":
                        argv = ["sh", "-c", f"{tool} '{blob}' | {floor}"]
                    elif kind == "gzip":
                        argv = [sys.executable, "-c", _PY_GZIP, str(blob)]
                    else:
                        argv = ["sh", "-c", f"{tool} '{blob}' | '{sys.executable}' -c '{_PY_PIPE}'"]
                    with tempfile.TemporaryFile("w+") as out:
                        cpu0 = _cpu()
                        code, seconds, _ = run_peak(argv, timeout=3600, env=env, stdout=out)
                        cpu = _cpu() - cpu0
                        out.seek(0)
                        got = out.read().split()[0] if code == 0 else ""
                    if got != want_tar:
                        sys.exit(f"{kind} {floor}: exit {code}, digest {got!r} (want {want_tar})")
                    floors.append((seconds, cpu))
                (floor_s, floor_cpu), (ossl_s, ossl_cpu), (py_s, py_cpu) = floors
                for label, src in trees:
                    with tempfile.TemporaryFile("w+") as out:
                        code, wall, rss = run_peak(
                            [str(PYTHON), __file__, "--child", src, str(layout), manifests[kind]],
                            timeout=3600, env=env, stdout=out,
                        )  # fmt: skip
                        out.seek(0)
                        text = out.read()
                    if code != 0:
                        sys.exit(f"{label} {kind}: exit {code}\n{text[-2000:]}")
                    res = json.loads(text.strip().splitlines()[-1])
                    if res["sha256"] != want:
                        sys.exit(f"{label} {kind}: digest {res['sha256']!r} (want {want})")
                    rows[label, kind].append((
                        res["seconds"], res["cpu"], wall, rss, floor_s, floor_cpu, ossl_s,
                        ossl_cpu, py_s, py_cpu,
                    ))  # fmt: skip
                    took = res["seconds"]
                    print(
                        f"round {r + 1} {kind} {label}: {took:.2f} s (wall {wall:.2f} s, CPU "
                        f"{res['cpu']:.2f} s, peak RSS {rss:.0f} MiB); floor {floor_s:.2f} s "
                        f"({took / floor_s:.2f}x, CPU {floor_cpu:.2f} s), openssl {ossl_s:.2f} s "
                        f"({took / ossl_s:.2f}x, CPU {ossl_cpu:.2f} s), python {py_s:.2f} s "
                        f"({took / py_s:.2f}x, CPU {py_cpu:.2f} s)", flush=True,
                    )  # fmt: skip
        print(f"\nmedian of {args.rounds} rounds, {args.size_mib} MiB:")
        print("wall seconds (CPU seconds, the process and its children); ratios of wall times")
        print(f"{'layer':<6}{'tree':<10}{'build':>14}{'RSS MiB':>9}{'floor':>14}{'ratio':>7}"
              f"{'openssl':>14}{'ratio':>7}{'python':>14}{'ratio':>7}")  # fmt: skip
        for (label, kind), got in rows.items():
            s, c, _, rss, f, fc, o, oc, p, pc = (
                statistics.median(x[i] for x in got) for i in range(10)
            )
            print(f"{kind:<6}{label:<10}{s:>7.2f} ({c:>4.2f}){rss:>9.0f}{f:>7.2f} ({fc:>4.2f})"
                  f"{s / f:>6.2f}x{o:>7.2f} ({oc:>4.2f}){s / o:>6.2f}x{p:>7.2f} ({pc:>4.2f})"
                  f"{s / p:>6.2f}x")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
