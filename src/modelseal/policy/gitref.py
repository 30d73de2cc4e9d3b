"""Reading the policy file from a git ref instead of the working tree (``--policy-ref``).

In a ``pull_request`` workflow the checked-out ``modelseal.yml`` is the pull request's own: a
PR that sets ``fail_on: none`` would pass under the policy it wrote. Judging it under the
policy of the base branch (``git show BASE:modelseal.yml``) means a PR cannot loosen the policy
that judges it; a change it makes to the policy takes effect once it is merged.

The ref is resolved locally first (as given, then as ``origin/REF``); when the checkout does
not have it (``actions/checkout`` fetches one commit), it is fetched with a bounded,
non-interactive ``git fetch --depth=1 origin REF``. A policy file missing at the ref means
the built-in defaults (every check on): a PR that introduces the policy file cannot choose
its own. "Missing" is what ``git ls-tree`` says of the commit's tree; any other failure of git
(an object a partial clone cannot fetch, a corrupt repository) stops the run (exit 3) — never
the defaults.

The policy names other files it trusts: VEX documents, the model-signing public key, the
Sigstore trust config, a baseline report or the key an image baseline is verified with. Read from the checkout, a PR could change those instead of the policy,
so :func:`check_trust_inputs` refuses the run when the checkout's copy of any of them is not
byte for byte the file committed at the same commit as the policy, and refuses a Trivy DB
cache directory inside the checkout (a PR could commit a fake DB there).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from modelseal._tools import run_tool
from modelseal.bounded import read_input, shown_path
from modelseal.errors import ConfigError, ToolError
from modelseal.policy.loader import (
    MAX_POLICY_BYTES,
    LoadedPolicy,
    default_policy,
    load_policy_text,
)
from modelseal.vuln.policy import MAX_VEX_BYTES

__all__ = [
    "COMMIT_RE",
    "TrustInput",
    "check_ref",
    "check_trust_inputs",
    "load_policy_at_ref",
    "repo_path",
]

#: A full commit name: SHA-1 (40 hex digits) or SHA-256 (64) object format.
COMMIT_RE: Final = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_GIT_TIMEOUT: Final = 30.0
_FETCH_TIMEOUT: Final = 120.0
# git's ref grammar (check-ref-format), narrowed: no option-like or relative forms, no
# reflog syntax, no revision operators.
_REF: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,254}")


def _non_interactive() -> dict[str, str]:
    """git must never stop to ask for a password or a host key: a CI job would hang until
    killed. An ssh command the user configured is kept (it may carry a deploy key)."""
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_LITERAL_PATHSPECS": "1"}
    if not os.environ.get("GIT_SSH_COMMAND") and not os.environ.get("GIT_SSH"):
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    return env


def check_ref(ref: str, what: str = "--policy-ref") -> str:
    """``ref`` if it is a plain branch, tag, full ref or commit name; ConfigError otherwise."""
    if (
        not _REF.fullmatch(ref)
        or ".." in ref
        or "//" in ref
        or ref.endswith((".", "/", ".lock"))
        or "/." in ref
    ):
        raise ConfigError(
            f"{what} {ref!r} is not a git ref: expected a branch, tag or commit name such as "
            "main, refs/heads/main, v1.2 or a full commit SHA (letters, digits, _ . / -; not "
            "starting with - or containing ..)."
        )
    return ref


def repo_path(policy: Path, repo: Path) -> str:
    """The policy file's path inside the repository at ``repo`` (the form ``git show REF:PATH``
    takes); ConfigError for a path outside it."""
    top = _toplevel(repo)
    text = _below(policy, top)
    if text is None:
        raise ConfigError(
            f"policy file {shown_path(policy)} is not inside the git repository at "
            f"{shown_path(top)}: --policy-ref reads it from a commit of that repository."
        )
    if text in ("", ".") or text.startswith("-") or any(c in text for c in "\n\r\t:"):
        raise ConfigError(f"policy file {shown_path(policy)} cannot be read from a git ref.")
    return text


def _toplevel(repo: Path) -> Path:
    found = _git(repo, "rev-parse", "--show-toplevel", check=False).strip()
    if not found:
        raise ConfigError(
            f"--policy-ref reads the policy from the git repository at {shown_path(repo)}, but "
            "that is not in a git repository (run modelseal in the checkout)."
        )
    return Path(found).resolve()


def _below(path: Path, top: Path) -> str | None:
    """``path``'s name inside the repository whose top directory is ``top``, or None.

    Only the directories down to the checkout's top are resolved (the checkout may sit under a
    symlink); below it the path is taken as written: a link the pull request commits (``conf ->
    fixtures``) must not choose which of the commit's files is read.
    """
    literal = PurePosixPath(os.path.normpath(os.path.abspath(path)))
    for ancestor in reversed(literal.parents):  # the shallowest first
        if Path(os.path.realpath(ancestor)) == top:
            return literal.relative_to(ancestor).as_posix()
    return None


def load_policy_at_ref(policy: Path, ref: str, repo: Path | None = None) -> LoadedPolicy:
    """The policy file ``policy`` as committed at ``ref`` of the repository at ``repo``
    (default: the one holding the working directory — the checkout).

    Its ``source`` is the repository path, ``ref`` and ``commit`` say where it came from, and
    ``sha256`` is the digest of the committed bytes. A file absent at ``ref`` gives the
    built-in defaults (recorded with the same ref and commit).
    """
    check_ref(ref)
    path = repo_path(policy, repo or Path.cwd())
    repo = repo or Path.cwd()
    commit = _resolve(repo, ref)
    spec = f"{commit}:{path}"
    entry = _tree_entry(repo, commit, path)
    if entry is None:
        defaults = default_policy()
        return LoadedPolicy(defaults.policy, defaults.source, defaults.sha256, ref, commit)
    if entry.kind != "blob" or entry.mode == _SYMLINK_MODE:
        what = "symbolic link" if entry.mode == _SYMLINK_MODE else entry.kind
        raise ConfigError(f"{path} at {ref} ({commit[:12]}) is a {what}, not a policy file.")
    size = int(_git(repo, "cat-file", "-s", spec).strip() or "0")
    if size > MAX_POLICY_BYTES:
        raise ConfigError(
            f"{path} at {ref} is {size} bytes; a policy file may be at most {MAX_POLICY_BYTES}."
        )
    text = _git(repo, "cat-file", "blob", spec)
    if len(text.encode("utf-8", "surrogatepass")) != size or "\ufffd" in text:
        # Read as text, a CR or a byte that is not UTF-8 would change and the digest recorded
        # would not be the committed file's.
        raise ConfigError(
            f"{path} at {ref} ({commit[:12]}) is not plain UTF-8 text with LF line ends."
        )
    loaded = load_policy_text(text, f"{path}@{ref}")
    # The source stays the path as given (trust_config and the like are relative to it); the
    # ref is recorded beside it.
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return LoadedPolicy(loaded.policy, str(policy), digest, ref, commit)


@dataclass(frozen=True)
class TrustInput:
    """A file the policy names and trusts, found identical to its copy at the policy's commit."""

    key: str
    """The policy key naming it (``vulnerabilities.vex``, ``sign.trust_config`` …)."""
    path: str
    """Its name in the repository."""
    sha256: str
    """Hex SHA-256 of its bytes; empty when it is in neither the checkout nor the commit (the
    gate that reads it reports that)."""


def check_trust_inputs(
    loaded: LoadedPolicy, context: Path, repo: Path | None = None, baseline: str | None = None
) -> tuple[TrustInput, ...]:
    """Under a policy read from a git ref: refuse (ConfigError) a run whose checkout holds a
    file the policy trusts that is not byte for byte the file committed at the policy's
    commit, and a Trivy DB cache directory given relative to the build context or inside the
    checkout. Returns the files checked. Without a ref (the working tree's policy) there is
    nothing to check: ``()``.

    The files: ``vulnerabilities.vex``, ``models.signature.public_key`` and
    ``models.signature.trust_config``, ``sign.trust_config`` (relative to the policy file), and
    the run's baseline (``baseline``, the ``--baseline`` flag or Action input, else the
    policy's ``vulnerabilities.baseline``): a report file, or for an image baseline the
    ``verify.public_key`` its scan report is verified with (relative to the policy file). A
    pull request that changes one of them is refused (exit 2), as it would otherwise be judged
    by the VEX statements, the key or the baseline it wrote; the change takes effect once
    merged. A ``--baseline`` file outside the checkout (a downloaded artifact) is the caller's,
    not the pull request's, and is read as it is; one inside the checkout is checked like the
    policy's. The model signature, the lock and the model files themselves are what the run
    checks, not what it trusts: they stay the checkout's.
    """
    if loaded.ref is None or loaded.commit is None:
        return ()
    from modelseal.vuln.baseline import MAX_BASELINE_BYTES, parse_spec

    repo = repo or Path.cwd()
    top = _toplevel(repo)
    policy = loaded.policy
    _check_cache_dir(loaded, context, top)
    policy_dir = Path(loaded.source).parent
    named: list[tuple[str, Path, int]] = [
        ("vulnerabilities.vex", context / rel, MAX_VEX_BYTES) for rel in policy.vulnerabilities.vex
    ]
    sig = policy.models.signature
    if sig is not None and sig.public_key is not None:
        named.append(("models.signature.public_key", context / sig.public_key, MAX_VEX_BYTES))
    if sig is not None and sig.trust_config is not None:
        named.append(("models.signature.trust_config", context / sig.trust_config, MAX_VEX_BYTES))
    if policy.sign.trust_config is not None:
        named.append(("sign.trust_config", policy_dir / policy.sign.trust_config, MAX_VEX_BYTES))
    text = baseline if baseline is not None else policy.vulnerabilities.baseline
    if text is not None:
        # The baseline decides which findings count as existing: the pull request must supply
        # neither the report nor the key an image's report is verified with (the identity and
        # issuer are the policy's own text; the trust config is sign.trust_config, above).
        key = "--baseline" if baseline is not None else "vulnerabilities.baseline"
        try:
            spec = parse_spec(text, Path(".") if baseline is not None else context)
        except ConfigError as e:
            raise ConfigError(f"{key}: {e.message}") from None
        if spec.path is not None and (baseline is None or _below(spec.path, top) is not None):
            named.append((key, spec.path, MAX_BASELINE_BYTES))
        if spec.image is not None and policy.verify.public_key is not None:
            from modelseal.sign.key import MAX_KEY_BYTES

            named.append(
                ("verify.public_key", policy_dir / policy.verify.public_key, MAX_KEY_BYTES)
            )
    return tuple(_check_input(key, path, loaded, repo, top, limit) for key, path, limit in named)


def _check_input(
    key: str, path: Path, loaded: LoadedPolicy, repo: Path, top: Path, limit: int
) -> TrustInput:
    ref, commit = str(loaded.ref), str(loaded.commit)
    at = f"{ref} ({commit[:12]})"
    shown = shown_path(path)
    name = _below(path, top)
    if name is None or name in ("", "."):
        raise ConfigError(
            f"{key} {shown} is outside the git repository at {shown_path(top)}: the policy is "
            f"read from {at}, and a file it trusts must be committed beside it to be checked "
            "against that commit."
        )
    entry = _tree_entry(repo, commit, name)
    here = os.path.lexists(path)
    if entry is None and not here:
        return TrustInput(key, name, "")
    if entry is None or entry.kind != "blob" or entry.mode == _SYMLINK_MODE:
        what = "not there" if entry is None else (
            "a symbolic link" if entry.mode == _SYMLINK_MODE else f"a {entry.kind}"
        )  # fmt: skip
        if here:
            what += "; the checkout has its own"
        raise ConfigError(
            f"{key} {shown}: {name} at {at}, the commit whose policy judges this run, is "
            f"{what}. Refusing to judge by a file the checkout supplies: a change to a file "
            "the policy trusts takes effect once it is merged."
        )
    if not here:
        raise ConfigError(
            f"{key} {shown} is missing from the checkout but committed at {at}, the commit "
            "whose policy judges this run."
        )
    data = read_input(path, what=f"{key} file", limit=limit)
    # git's object name for these bytes: equal names, equal contents (no blob is fetched).
    algo = hashlib.sha1 if len(entry.oid) == 40 else hashlib.sha256
    if algo(b"blob %d\0" % len(data) + data).hexdigest() != entry.oid:
        raise ConfigError(
            f"{key} {shown} differs from {name} as committed at {at}, the commit whose policy "
            "judges this run. Refusing to judge by a file the pull request changed: a change to "
            "a file the policy trusts takes effect once it is merged.",
            hint="(A file checked out with line-end conversion or through git LFS differs too.)",
        )
    return TrustInput(key, name, hashlib.sha256(data).hexdigest())


def _check_cache_dir(loaded: LoadedPolicy, context: Path, top: Path) -> None:
    """A Trivy DB the checkout supplies would decide which vulnerabilities exist."""
    from modelseal.vuln.trivy import resolve_cache_dir

    db = loaded.policy.trivy.db
    if not loaded.policy.trivy.enabled:
        return
    at = f"{loaded.ref} ({str(loaded.commit)[:12]})"
    if db.cache_dir is not None and not Path(db.cache_dir).expanduser().is_absolute():
        raise ConfigError(
            f"trivy.db.cache_dir {db.cache_dir!r} is relative to the build context, whose files "
            f"the checkout supplies; under a policy read from {at} the Trivy DB must come from "
            "outside the checkout (an absolute trivy.db.cache_dir, or the default)."
        )
    cache = resolve_cache_dir(db, context)
    if cache.is_relative_to(top):  # both resolved
        raise ConfigError(
            f"the Trivy DB cache directory {shown_path(cache)} is inside the checkout "
            f"({shown_path(top)}), whose files the pull request supplies; under a policy read "
            f"from {at} it must be outside (trivy.db.cache_dir or MODELSEAL_CACHE_DIR)."
        )


def _resolve(repo: Path, ref: str) -> str:
    """The commit ``ref`` names: locally as given, then ``origin/REF``, else fetched."""
    candidates = [ref] if ref.startswith("refs/") or COMMIT_RE.fullmatch(ref) else [
        ref, f"refs/remotes/origin/{ref}"
    ]  # fmt: skip
    for name in candidates:
        out = _git(
            repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}",
            check=False,
        )  # fmt: skip
        if COMMIT_RE.fullmatch(out.strip()):
            return out.strip()
    try:
        run_tool(
            ["git", "-C", str(repo), "fetch", "--quiet", "--no-tags", "--no-recurse-submodules",
             "--depth=1", "origin", ref],
            timeout=_FETCH_TIMEOUT, env=_non_interactive(),
        )  # fmt: skip
    except ToolError as e:
        raise ConfigError(
            f"--policy-ref {ref}: not in this checkout, and fetching it from origin failed: "
            f"{e.diagnostics()}"
        ) from None
    out = _git(repo, "rev-parse", "--verify", "--quiet", "FETCH_HEAD^{commit}", check=False)
    if not COMMIT_RE.fullmatch(out.strip()):
        raise ConfigError(f"--policy-ref {ref}: fetched, but it names no commit.")
    return out.strip()


@dataclass(frozen=True)
class _Entry:
    """One entry of a commit's tree, as ``git ls-tree`` lists it."""

    mode: str
    kind: str
    oid: str


_SYMLINK_MODE: Final = "120000"


def _tree_entry(repo: Path, commit: str, path: str) -> _Entry | None:
    """The entry ``path`` names in ``commit``'s tree; None only when git says it is not there.

    ``git ls-tree`` exits 0 with no output for a missing path; every other outcome (an object a
    partial clone cannot fetch, a corrupt repository, a timeout) raises: a policy file that
    could not be read must not be taken for one that is not there.
    """
    out = _git(repo, "ls-tree", "-z", "--full-tree", commit, "--", path)
    for record in out.split("\0"):
        meta, tab, name = record.partition("\t")
        fields = meta.split(" ")
        if tab and name == path and len(fields) == 3 and COMMIT_RE.fullmatch(fields[2]):
            return _Entry(fields[0], fields[1], fields[2])
        if record:
            raise ToolError(
                f"--policy-ref: git ls-tree listed {record[:120]!r} for {path}; expected that "
                "path's entry."
            )
    return None


def _git(repo: Path, *args: str, check: bool = True) -> str:
    """git's output; with ``check``, a failure is a ToolError (exit 3: the policy could not be
    read), never an empty answer."""
    try:
        result = run_tool(
            ["git", "-C", str(repo), *args], timeout=_GIT_TIMEOUT, env=_non_interactive(),
            check=check,
        )  # fmt: skip
    except ToolError as e:
        raise ToolError(
            f"--policy-ref: git could not read the repository at {shown_path(repo)}: {e.message}",
            command=e.command,
            stderr_tail=e.stderr_tail,
        ) from None
    return result.stdout if result.returncode == 0 else ""
