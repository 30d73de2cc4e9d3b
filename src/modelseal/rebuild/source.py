"""The source a rebuild builds from: a clean clone of ``--source DIR`` at the recorded commit,
and the model weights beside it.

``DIR`` must be (inside) a git work tree holding the recorded commit. The rebuild never runs a
porcelain git command in it — its ``.git/config`` is not ours (a ``filter.<x>.clean`` driver
runs on ``git status``, an fsmonitor on most commands) — and never builds from it: DIR is
cloned (``git clone --no-checkout --no-hardlinks``) into a new private directory and the commit
checked out there (``git checkout --detach``, hooks and fsmonitor off, no submodules), so
modified or untracked files of DIR never reach the build. A commit DIR does not hold stops it
(exit 3).

Model weights are often not in git. For each model file the provenance pins
(:class:`~modelseal.rebuild.plan.ModelPin`, a path relative to the build context) that the
clone lacks, the file at the same path under DIR is copied into the clone if it is a regular
file inside DIR (reached without following a symbolic link) whose SHA-256 — streamed, read no
further than the recorded size + 1 byte — is the recorded one; each copied, missing or
different file is a note in the report. Model files are then hashed where the clone's build
context holds them (:func:`check_models`); a missing or different one is a note, not an error:
the digest comparison decides.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from modelseal import fsio
from modelseal._tools import run_tool
from modelseal.errors import ConfigError, ToolError
from modelseal.rebuild.plan import CannotRebuild, ModelPin, RebuildPlan
from modelseal.untrusted import untrusted

#: Seconds one git command may take (a clone of a large repository included).
GIT_TIMEOUT = 600.0
_CHUNK = 1 << 20
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

# Programs a repository's config (or the user's) could have git run: none of them run here.
_SAFE_GIT = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null")


@dataclass(frozen=True)
class Checkout:
    """The work tree the rebuild builds from: a clean clone of ``source`` at ``commit``."""

    root: Path
    """The clone's top level (under the rebuild's private work directory)."""
    commit: str
    source: Path
    """The top of the ``--source`` work tree it was cloned from."""
    how: str = "clean clone"


def _git(repo: Path, *args: str) -> None:
    run_tool(["git", "-C", str(repo), *_SAFE_GIT, *args], timeout=GIT_TIMEOUT)


def prepare_source(source: Path, commit: str, work_dir: Path) -> Checkout:
    """A clean clone of ``source`` at ``commit`` under ``work_dir`` (a private directory of
    the rebuild's); see the module docstring."""
    shown = untrusted(source, markup=False, limit=200)
    if not source.is_dir():
        raise ConfigError(f"--source {shown} is not a directory.")
    # Plumbing only in the user's tree: it reads the config, it runs nothing from it.
    top = run_tool(
        ["git", "-C", str(source), *_SAFE_GIT, "rev-parse", "--show-toplevel"],
        timeout=GIT_TIMEOUT, check=False,
    )  # fmt: skip
    if top.returncode != 0 or not top.stdout.strip():
        raise ConfigError(
            f"--source {shown} is not a git work tree: a rebuild checks out the commit the "
            "provenance records.",
            hint="Clone the source repository and give its directory.",
        )
    root = Path(top.stdout.strip())
    dest = work_dir / "source"
    try:
        # A local clone copies the objects (all of them: a detached or dangling commit too);
        # the new repository's config is git's default, not DIR's.
        run_tool(
            ["git", *_SAFE_GIT, "clone", "--quiet", "--no-checkout", "--no-hardlinks", "--",
             str(root), str(dest)],
            timeout=GIT_TIMEOUT,
        )  # fmt: skip
    except ToolError as e:
        raise CannotRebuild(f"cloning {shown} failed: {e.message}") from None
    found = run_tool(
        ["git", "-C", str(dest), *_SAFE_GIT, "cat-file", "-e", f"{commit}^{{commit}}"],
        timeout=GIT_TIMEOUT, check=False,
    )  # fmt: skip
    if found.returncode != 0:
        raise CannotRebuild(
            f"the recorded source commit {commit} is not in {shown}.",
            hint="Fetch it (`git fetch origin " + commit + "`), or give a clone that has it.",
        )
    try:
        _git(dest, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit)
    except ToolError as e:
        raise CannotRebuild(f"checking out {commit} from {shown} failed: {e.message}") from None
    return Checkout(dest, commit, root)


def inside(root: Path, relative: str, what: str) -> Path:
    """``root/relative``, which must exist and resolve inside ``root`` (a symbolic link in the
    checkout cannot take the build elsewhere), and not into its ``.git`` directory."""
    path = root / relative
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise CannotRebuild(
            f"{what} {untrusted(relative, markup=False, limit=200)} leaves the checkout "
            f"(it resolves to {untrusted(real, markup=False, limit=200)})."
        )
    if any(part.lower() == ".git" for part in real.relative_to(real_root).parts):
        raise CannotRebuild(
            f"{what} {untrusted(relative, markup=False, limit=200)} resolves into the "
            "repository's .git directory, which is never build input."
        )
    if not path.exists():
        raise CannotRebuild(
            f"{what} {untrusted(relative, markup=False, limit=200)} is not in the checkout at "
            f"{untrusted(root, markup=False, limit=200)}."
        )
    return path


def refuse_out_dir_inside(out_dir: Path, checkout: Checkout, plan: RebuildPlan) -> None:
    """Refuse (exit 2) an ``--out-dir`` inside a directory the rebuild reads: the build
    context or a ``local`` build context, in the clone or in ``--source`` (model weights are
    copied from there): what the rebuild writes (an earlier rebuild's layout) could become
    build input."""
    read = [plan.context] + [str(c.path) for c in plan.build_contexts if c.type == "local"]
    real_out = fsio.absolute(out_dir).resolve()
    for relative in read:
        for top in (checkout.root, checkout.source):
            real = (top / relative).resolve()
            if real_out == real or real in real_out.parents:
                raise ConfigError(
                    f"--out-dir {untrusted(out_dir, markup=False, limit=200)} is inside "
                    f"{untrusted(real, markup=False, limit=200)}, a directory the rebuild reads "
                    "(the build context or a local build context, of --source or its clone): "
                    "what the rebuild writes there could become build input.",
                    hint="Give an --out-dir outside the source checkout.",
                )


def fill_models(checkout: Checkout, context: str, models: tuple[ModelPin, ...]) -> list[str]:
    """Copy into the clone each model file it lacks from ``--source`` (same path under the
    build context ``context``), if that one has the recorded SHA-256; a note per file copied,
    missing or different (see the module docstring)."""
    notes: list[str] = []
    clone_context = checkout.root.resolve() / context
    source_context = checkout.source.resolve() / context
    for model in models:
        shown = untrusted(model.path, markup=False, limit=200)
        relative = PurePosixPath(model.path)
        try:
            os.lstat(clone_context / relative)
            continue  # in git: check_models hashes it
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno != errno.ENOTDIR:
                raise
        why = _copy_verified(source_context, clone_context, relative, model)
        if why is None:
            notes.append(f"model {shown}: not in git; copied from --source (sha256 matches)")
        else:
            notes.append(f"model {shown}: not in git, and in --source {why}")
    return notes


def _sha256_upto(src: BinaryIO, size: int, sink: Callable[[bytes], object] | None = None) -> str:
    """Hex SHA-256 of what ``src`` holds, read no further than ``size`` + 1 bytes (a file that
    grew since its size was checked hashes differently, and is never read to its end); each
    chunk also goes to ``sink``."""
    digest = hashlib.sha256()
    left = size + 1
    while left > 0 and (chunk := src.read(min(_CHUNK, left))):
        digest.update(chunk)
        if sink is not None:
            sink(chunk)
        left -= len(chunk)
    return digest.hexdigest()


def _copy_verified(
    source_context: Path, clone_context: Path, relative: PurePosixPath, model: ModelPin
) -> str | None:
    """Copy ``source_context/relative`` to ``clone_context/relative`` if it is a regular file
    of the recorded size and SHA-256, reached without following a link; None when copied,
    else why not."""
    with contextlib.ExitStack() as stack:
        try:
            sfd = stack.enter_context(
                fsio.directory(source_context / relative.parent, create=False)
            )
            fd = os.open(relative.name, _READ_FLAGS, dir_fd=sfd)
        except FileNotFoundError:
            return "missing too"
        except fsio.UnsafePathError:
            return "behind a symbolic link (or a file) on its way; not copied"
        except OSError as e:
            if e.errno == errno.ELOOP:
                return "a symbolic link; not copied"
            return f"unreadable ({e.strerror}); not copied"
        src = stack.enter_context(os.fdopen(fd, "rb"))
        st = os.fstat(src.fileno())
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file; not copied"
        if st.st_size != model.size:
            return f"{st.st_size} bytes, the provenance records {model.size}; not copied"
        try:
            dfd = stack.enter_context(fsio.directory(clone_context / relative.parent))
        except fsio.UnsafePathError as e:
            return f"fine, but the clone cannot take it ({e.message}); not copied"
        tmp = f".{relative.name}.{os.getpid()}.part"
        out = os.open(tmp, _NEW_FILE_FLAGS, 0o644, dir_fd=dfd)
        try:
            with os.fdopen(out, "wb") as dst:
                got = _sha256_upto(src, model.size, dst.write)
            if got != model.sha256:
                os.unlink(tmp, dir_fd=dfd)
                return f"has sha256 {got}, the provenance records {model.sha256}; not copied"
            os.rename(tmp, relative.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
    return None


def check_models(context: Path, models: tuple[ModelPin, ...]) -> list[str]:
    """Notes on the model files the provenance pins that are missing or differ under
    ``context`` (each hashed streaming, read no further than its recorded size + 1 byte)."""
    notes: list[str] = []
    real_context = context.resolve()
    for model in models:
        shown = untrusted(model.path, markup=False, limit=200)
        path = (context / model.path).resolve()
        if real_context not in path.parents:
            notes.append(f"model {shown}: resolves outside the build context; not checked")
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            notes.append(f"model {shown}: missing from the build context (sha256 {model.sha256})")
            continue
        except OSError as e:
            notes.append(f"model {shown}: cannot be read ({e.strerror})")
            continue
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                notes.append(f"model {shown}: not a regular file")
                continue
            if st.st_size != model.size:
                notes.append(
                    f"model {shown}: {st.st_size} bytes, the provenance records {model.size}"
                )
                continue
            got = _sha256_upto(f, model.size)
        if got != model.sha256:
            notes.append(f"model {shown}: sha256 {got}, the provenance records {model.sha256}")
    return notes
