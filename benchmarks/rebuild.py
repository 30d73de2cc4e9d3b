#!/usr/bin/env python3
"""`modelseal rebuild` of a published image vs a plain cold `docker buildx build` of the same
context, in one run.

The context is a git repository holding a model server's Dockerfile and one model file of
``--size-mib`` random (incompressible, like real weights) bytes, built FROM the example base
(an OCI layout). It is published once with ``modelseal run --gate build --push`` to a local
registry on 127.0.0.1, signed with an ephemeral key. Then, interleaved, N times each:

* plain: ``docker buildx build --no-cache`` of the context to an OCI layout, with the same
  reproducibility flags, on the engine that is already running (what a rebuilder would type by
  hand, minus everything that makes it a check);
* modelseal rebuild: the whole third-party check — verify the provenance's signature, check
  out the recorded commit, start a fresh private engine with an empty data root, normalize,
  build cold, compare the digest with the published one, stop and remove the engine.

    python benchmarks/rebuild.py [--size-mib 2048] [--runs 3]

Target: modelseal rebuild ≤ 1.5× the plain cold build at GB sizes (the engine start and the
checks are fixed costs; the build itself is the same BuildKit work).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import EPOCH, REPO, engine_and_base, timed

DOCKERFILE = """\
FROM base
WORKDIR /app
COPY model/ /app/model/
COPY server.py /app/server.py
USER 65534:65534
CMD ["python3", "/app/server.py"]
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@localhost",
         "-c", "commit.gpgsign=false", *args],
        check=True, capture_output=True,
    )  # fmt: skip


def _source(root: Path, size_mib: int) -> Path:
    """A git repository with the context under ``app/`` and a model of ``size_mib`` MiB."""
    repo = root / "source"
    app = repo / "app"
    (app / "model").mkdir(parents=True)
    (app / "Dockerfile").write_text(DOCKERFILE)
    (app / "server.py").write_text("print('serving')\n")
    chunk = 1 << 20
    with open(app / "model" / "weights.bin", "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(chunk))
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "model server")
    return repo


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=1024, help="model size (default 1024)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    sys.path.insert(0, str(REPO))
    from examples.offline.registry import local_registry

    from modelseal.sign.key import generate_ephemeral_key

    work = Path(tempfile.mkdtemp(prefix="modelseal-bench-rebuild-"))
    try:
        with engine_and_base() as base, local_registry(work / "registry") as host:
            repo = _source(work, args.size_mib)
            app = repo / "app"
            private, public = generate_ephemeral_key(work / "keys")
            policy = work / "policy.yml"
            policy.write_text(
                "version: 1\nbuild:\n  rebuild_check: never\npublish:\n  attestations: [provenance]\n"
            )
            env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}
            env.pop("MODELSEAL_KEY_PASSWORD", None)
            image = f"{host}/bench/rebuild:1"
            timed(
                [sys.executable, "-m", "modelseal", "run", str(app), "--gate", "build",
                 "--policy", str(policy), "--build-context", f"base={base}",
                 "-o", str(work / "seal"), "--push", image, "--sign", "key", "--key", str(private)],
                env,
            )  # fmt: skip
            docker = shutil.which("docker") or "docker"

            def plain(i: int) -> list[str]:
                return [
                    docker, "buildx", "build", "--no-cache", "--pull=false", "--provenance=false",
                    "--sbom=false", "--progress", "plain", "--network", "none",
                    "--build-arg", f"SOURCE_DATE_EPOCH={EPOCH}", "--build-context", f"base={base}",
                    "--output", f"type=oci,dest={work}/plain-{i},tar=false,rewrite-timestamp=true",
                    str(app),
                ]  # fmt: skip

            def rebuild(i: int) -> list[str]:
                return [
                    sys.executable, "-m", "modelseal", "rebuild", image, "--source", str(repo),
                    "--key", str(public), "--build-context", f"base={base}",
                    "-o", f"{work}/rebuild-{i}",
                ]  # fmt: skip

            rows: dict[str, list[float]] = {"plain docker buildx build --no-cache": [],
                                             "modelseal rebuild (fresh engine)": []}  # fmt: skip
            for i in range(args.runs):
                # Interleaved so drift on a shared machine hits both sides alike; each side's
                # output is removed at once (GBs each).
                rows["plain docker buildx build --no-cache"].append(timed(plain(i), env))
                shutil.rmtree(work / f"plain-{i}", ignore_errors=True)
                rows["modelseal rebuild (fresh engine)"].append(timed(rebuild(i), env))
                shutil.rmtree(work / f"rebuild-{i}", ignore_errors=True)
            base_median = statistics.median(rows["plain docker buildx build --no-cache"])
            print(f"\nrebuild of a {args.size_mib} MiB model image, median of {args.runs} runs")
            print(f"{'':40}{'median s':>10}{'min s':>10}{'ratio':>8}")
            for name, times in rows.items():
                med = statistics.median(times)
                print(f"{name:40}{med:10.2f}{min(times):10.2f}{med / base_median:8.2f}×")
            ratio = statistics.median(rows["modelseal rebuild (fresh engine)"]) / base_median
            print(f"\nrebuild / plain cold build (target ≤ 1.5×): {ratio:.2f}×")
            return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
