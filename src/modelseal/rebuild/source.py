"""The source a rebuild builds from: ``--source DIR`` at the recorded commit, and the models
beside it.

``DIR`` must be a git work tree. At the recorded commit with no tracked file modified, it is
built in place (untracked files are allowed: model weights fetched beside the code are what a
rebuilder needs); with tracked files modified the rebuild is refused, naming them (exit 2); at
another commit, ``DIR`` is cloned into the work directory and the recorded commit checked out
there (untracked files do not come along); a commit ``DIR`` does not hold stops it (exit 3).

Model files (:class:`~modelseal.rebuild.plan.ModelPin`) are hashed where the build context
holds them, streaming and bounded by the recorded size; a missing or different file is a note
in the report, not an error: the digest comparison decides.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from modelseal._tools import run_tool
from modelseal.errors import ConfigError, ToolError
from modelseal.rebuild.plan import CannotRebuild, ModelPin
from modelseal.untrusted import untrusted

#: Seconds one git command may take (a clone of a large repository included).
GIT_TIMEOUT = 600.0
#: Modified files a refusal names.
MAX_NAMED = 20
_CHUNK = 1 << 20

# A work tree is the user's, but its .git/config may name programs git would run (an fsmonitor
# on `status`, hooks on `checkout`): none of them run here.
_SAFE_GIT = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null")


@dataclass(frozen=True)
class Checkout:
    """The work tree the rebuild builds from."""

    root: Path
    """Its top level."""
    commit: str
    how: str
    """``in place`` or ``clone``."""
    note: str | None = None


def _git(repo: Path, *args: str, check: bool = True) -> str:
    result = run_tool(["git", "-C", str(repo), *_SAFE_GIT, *args], timeout=GIT_TIMEOUT, check=check)
    return result.stdout.strip() if result.returncode == 0 else ""


def prepare_source(source: Path, commit: str, work_dir: Path) -> Checkout:
    """The checkout of ``commit`` from ``source``; see the module docstring."""
    shown = untrusted(source, markup=False, limit=200)
    if not source.is_dir():
        raise ConfigError(f"--source {shown} is not a directory.")
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
    head = _git(root, "rev-parse", "--verify", "HEAD", check=False)
    if head == commit:
        modified = run_tool(
            [
                "git",
                "-C",
                str(root),
                *_SAFE_GIT,
                "status",
                "--porcelain=v1",
                "--untracked-files=no",
                "-z",
            ],
            timeout=GIT_TIMEOUT,
        ).stdout  # not stripped: each entry starts with its two status columns
        names = [entry[3:] for entry in modified.split("\0") if len(entry) > 3]
        if names:
            listed = ", ".join(untrusted(n, markup=False, limit=200) for n in names[:MAX_NAMED])
            more = f" (+{len(names) - MAX_NAMED} more)" if len(names) > MAX_NAMED else ""
            raise ConfigError(
                f"--source {shown} is at the recorded commit {commit[:12]} but tracked files "
                f"are modified: {listed}{more}. The rebuild must build what was committed.",
                hint="Commit or stash them (`git stash`), or give a clean clone.",
            )
        return Checkout(root, commit, "in place")
    found = run_tool(
        ["git", "-C", str(root), *_SAFE_GIT, "cat-file", "-e", f"{commit}^{{commit}}"],
        timeout=GIT_TIMEOUT, check=False,
    )  # fmt: skip
    if found.returncode != 0:
        raise CannotRebuild(
            f"the recorded source commit {commit} is not in {shown}.",
            hint="Fetch it (`git fetch origin " + commit + "`), or give a clone that has it.",
        )
    dest = work_dir / "source"
    try:
        run_tool(
            ["git", *_SAFE_GIT, "clone", "--quiet", "--no-checkout", str(root), str(dest)],
            timeout=GIT_TIMEOUT,
        )
        _git(dest, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit)
    except ToolError as e:
        raise CannotRebuild(
            f"checking out {commit} from {shown} into {dest} failed: {e.message}"
        ) from None
    note = (
        f"--source is at {head[:12] or 'no commit'}, not the recorded {commit[:12]}: built from "
        f"a clone at {commit[:12]} (untracked files, e.g. model weights, do not come along)"
    )
    return Checkout(dest, commit, "clone", note)


def inside(root: Path, relative: str, what: str) -> Path:
    """``root/relative``, which must exist and resolve inside ``root`` (a symbolic link in the
    checkout cannot take the build elsewhere)."""
    path = root / relative
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise CannotRebuild(
            f"{what} {untrusted(relative, markup=False, limit=200)} leaves the checkout "
            f"(it resolves to {untrusted(real, markup=False, limit=200)})."
        )
    if not path.exists():
        raise CannotRebuild(
            f"{what} {untrusted(relative, markup=False, limit=200)} is not in the checkout at "
            f"{untrusted(root, markup=False, limit=200)}."
        )
    return path


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
            digest = hashlib.sha256()
            left = model.size + 1
            while left > 0 and (chunk := f.read(min(_CHUNK, left))):
                digest.update(chunk)
                left -= len(chunk)
        if digest.hexdigest() != model.sha256:
            notes.append(
                f"model {shown}: sha256 {digest.hexdigest()}, the provenance records {model.sha256}"
            )
    return notes
