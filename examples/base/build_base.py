"""Build the example's base image (Debian bookworm's python3 + dash) as an OCI layout, with no
registry involved, reproducibly.

1. ``mmdebstrap --variant=extract`` unpacks python3, dash and coreutils (with their dependencies)
   into a rootfs tarball, with SOURCE_DATE_EPOCH fixed, from this machine's own Debian sources.
2. ``docker buildx build`` turns ``FROM scratch / ADD rootfs.tar /`` into an OCI image layout
   directory (``--output type=oci,tar=false,rewrite-timestamp=true``), with no cache, no network,
   no provenance or SBOM attestations (they embed build-time data).

Usage:  python3 examples/base/build_base.py --out DIR [--cache DIR] [--force]

The last line on stdout is the value for ``--build-context base=``:
``oci-layout:///abs/DIR@sha256:<manifest digest>``. Progress goes to stderr.

Idempotent: DIR gets a stamp file recording the inputs (recipe, Debian sources), the rootfs
sha256 and the digest; when it matches and the layout still holds that manifest, nothing is
rebuilt. ``--cache DIR`` keeps rootfs tarballs across runs (keyed by the same inputs) so a new
``--out`` skips mmdebstrap. The engine is the one ``DOCKER_HOST`` names; the docker CLI is
``/usr/bin/docker`` if present, else ``docker`` on PATH.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Fixed build time: every mtime in the rootfs and the image is clamped to it.
SOURCE_DATE_EPOCH = 1700000000
SUITE = "bookworm"
PACKAGES = ("python3", "dash", "coreutils")
DOCKERFILE = 'FROM scratch\nADD rootfs.tar /\nCMD ["python3"]\n'
STAMP_NAME = "build-base.stamp.json"
#: Bump when the recipe changes in a way the constants above do not show.
RECIPE_VERSION = 1

MMDEBSTRAP_TIMEOUT = 900
BUILDX_TIMEOUT = 900

PROG = "build_base"


class BuildError(Exception):
    """A failure reported to the user as one line, without a traceback."""


def log(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Inputs


def _deb822_suites(text: str) -> list[list[str]]:
    """The Suites of each stanza of a deb822 sources file whose Types include ``deb``."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = {
            m.group(1).lower(): m.group(2).strip()
            for m in re.finditer(r"^([A-Za-z][A-Za-z0-9-]*):[ \t]*(.*)$", stanza, re.MULTILINE)
        }
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            out.append(fields.get("suites", "").split())
    return out


def find_sources_file(
    sources_dir: str = "/etc/apt/sources.list.d", fallback: str = "/etc/apt/sources.list"
) -> Path:
    """The machine's own Debian sources: the first ``*.sources`` file (by name) with a ``deb``
    stanza whose Suites include bookworm, else ``/etc/apt/sources.list``."""
    for path in sorted(glob.glob(os.path.join(sources_dir, "*.sources"))):
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if any(SUITE in suites for suites in _deb822_suites(text)):
            return Path(path)
    fb = Path(fallback)
    if fb.is_file() and fb.stat().st_size > 0:
        return fb
    raise BuildError(
        f"found no Debian sources for {SUITE}: no {sources_dir}/*.sources names it and "
        f"{fallback} is missing or empty"
    )


def inputs_key(sources: Path) -> str:
    """A digest of everything the build reads besides the mirror's contents."""
    doc = {
        "recipe": RECIPE_VERSION,
        "suite": SUITE,
        "packages": list(PACKAGES),
        "variant": "extract",
        "source_date_epoch": SOURCE_DATE_EPOCH,
        "dockerfile": DOCKERFILE,
        "sources": sources.read_text(encoding="utf-8", errors="replace"),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Tools


def find_docker() -> str:
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if not found:
        raise BuildError("the docker CLI was not found (/usr/bin/docker, or docker on PATH)")
    return found


def find_mmdebstrap() -> str:
    found = shutil.which("mmdebstrap")
    if not found:
        raise BuildError("mmdebstrap was not found on PATH (Debian: apt-get install mmdebstrap)")
    return found


def _reason(text: str) -> str:
    """The most telling line of a failed tool's output: its first error line (mmdebstrap and apt
    print the cause first, then generic "failed" lines), else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("E: ", "ERROR: ", "ERROR ")):
            return line
    return lines[-1] if lines else "(no output)"


def run(
    argv: list[str],
    *,
    what: str,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Run ``argv``; on failure raise a one-line :class:`BuildError` quoting its last line."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            env=full_env,
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise BuildError(f"{what}: {argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise BuildError(
            f"{what} failed (exit {proc.returncode}): {_reason(proc.stderr or proc.stdout)}"
        )
    log(f"{what}: done in {time.monotonic() - started:.1f} s")


# --------------------------------------------------------------------------------------------
# Steps


def make_rootfs(dest: Path, sources: Path) -> None:
    """``mmdebstrap`` the rootfs tarball into ``dest`` (written beside it, then renamed)."""
    mmdebstrap = find_mmdebstrap()
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp.tar")
    log(f"mmdebstrap {SUITE} ({', '.join(PACKAGES)}) from {sources} ...")
    try:
        run(
            [
                mmdebstrap,
                "--variant=extract",
                f"--include={','.join(PACKAGES)}",
                "--format=tar",
                SUITE,
                str(tmp),
                str(sources),
            ],
            what="mmdebstrap",
            timeout=MMDEBSTRAP_TIMEOUT,
            env={"SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)},
        )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def layout_has(layout: Path, digest: str) -> bool:
    """Whether ``layout`` is an OCI layout whose index.json lists ``digest``, blob present."""
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        return False  # never a path: a stamp could name sha256:/etc/passwd
    try:
        index = json.loads((layout / "index.json").read_text())
    except (OSError, ValueError):
        return False
    if not (layout / "oci-layout").is_file():
        return False
    listed = {m.get("digest") for m in index.get("manifests", []) if isinstance(m, dict)}
    algo, _, hexpart = digest.partition(":")
    return digest in listed and (layout / "blobs" / algo / hexpart).is_file()


def build_layout(rootfs: Path, dest: Path, docker: str, work: Path) -> str:
    """``docker buildx build`` the FROM-scratch image into the OCI layout ``dest``; its digest."""
    context = work / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    try:
        os.link(rootfs, context / "rootfs.tar")
    except OSError:
        shutil.copyfile(rootfs, context / "rootfs.tar")
    metadata = work / "m.json"
    log("docker buildx build (FROM scratch, ADD rootfs.tar) -> OCI layout ...")
    run(
        [
            docker,
            "buildx",
            "build",
            "--no-cache",
            "--pull=false",
            "--network",
            "none",
            "--provenance=false",
            "--sbom=false",
            "--build-arg",
            f"SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH}",
            "--output",
            f"type=oci,dest={dest},tar=false,rewrite-timestamp=true",
            "--metadata-file",
            str(metadata),
            str(context),
        ],
        what="docker buildx build",
        timeout=BUILDX_TIMEOUT,
        env={"SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH), "BUILDX_NO_DEFAULT_ATTESTATIONS": "1"},
    )
    try:
        digest = json.loads(metadata.read_text())["containerimage.digest"]
    except (OSError, ValueError, KeyError, TypeError):
        raise BuildError(
            "docker buildx build wrote no containerimage.digest to its metadata file"
        ) from None
    if not isinstance(digest, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise BuildError(f"docker buildx build reported an unexpected digest {digest!r}")
    if not layout_has(dest, digest):
        raise BuildError(f"the OCI layout in {dest} does not list {digest}")
    return digest


def read_stamp(out: Path) -> dict[str, str] | None:
    try:
        stamp = json.loads((out / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def check_out_dir(out: Path) -> None:
    """``out`` may be missing, empty or an OCI layout: nothing else gets replaced."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "oci-layout").is_file():
        raise BuildError(f"{out} is neither empty nor an OCI layout; refusing to replace it")


def build(out: Path, cache: Path | None, *, force: bool = False) -> str:
    """Make sure ``out`` holds the base image; return its manifest digest."""
    out = out.resolve()
    check_out_dir(out)
    sources = find_sources_file()
    key = inputs_key(sources)

    stamp = read_stamp(out)
    if (
        not force
        and stamp is not None
        and stamp.get("inputs") == key
        and isinstance(stamp.get("digest"), str)
        and layout_has(out, stamp["digest"])
    ):
        log(f"{out} is up to date (rootfs sha256:{stamp.get('rootfs_sha256')})")
        return stamp["digest"]

    docker = find_docker()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-base-", dir=out.parent) as tmp:
        work = Path(tmp)
        if cache is not None:
            cache = cache.resolve()
            cache.mkdir(parents=True, exist_ok=True)
            rootfs = cache / f"rootfs-{key[:16]}.tar"
        else:
            rootfs = work / "rootfs.tar"
        if force or not rootfs.is_file():
            make_rootfs(rootfs, sources)
        else:
            log(f"using cached {rootfs}")
        rootfs_sha = sha256_file(rootfs)
        log(f"rootfs sha256:{rootfs_sha} ({rootfs.stat().st_size} bytes)")

        staged = work / "layout"
        digest = build_layout(rootfs, staged, docker, work)
        (staged / STAMP_NAME).write_text(
            json.dumps(
                {
                    "inputs": key,
                    "rootfs_sha256": rootfs_sha,
                    "digest": digest,
                    "source_date_epoch": SOURCE_DATE_EPOCH,
                    "suite": SUITE,
                    "packages": list(PACKAGES),
                },
                indent=2,
                sort_keys=True,
            )
            + "\n"
        )
        # Swap the new layout in; the old one (if any) is removed with the temp dir.
        if out.exists():
            os.replace(out, work / "old")
        os.replace(staged, out)
    log(f"built {out} ({digest})")
    return digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="build_base.py",
        description="Build the example base image (bookworm python3 + dash) as an OCI layout.",
    )
    parser.add_argument("--out", required=True, type=Path, help="the OCI layout directory to write")
    parser.add_argument("--cache", type=Path, help="a directory to keep rootfs tarballs in")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    try:
        digest = build(args.out, args.cache, force=args.force)
    except BuildError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    print(f"oci-layout://{args.out.resolve()}@{digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
