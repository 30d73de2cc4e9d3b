"""``modelseal models fetch`` (download a Hub repository pinned to a commit, checked against the
Hub's digests and the lock) and the source checks of ``models verify``."""

from __future__ import annotations

import locale
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from modelseal import fsio
from modelseal.errors import ConfigError, ExitCode
from modelseal.findings import Finding, Severity
from modelseal.models.hashing import FileDigest, hash_files
from modelseal.models.hub import (
    DEFAULT_ENDPOINT,
    FetchLimits,
    HubError,
    HubFile,
    HubNotFound,
    HubRef,
    HubSession,
    HubUnreadable,
    check_selection,
    git_blob_sha1,
    is_commit,
    parse_hf_uri,
    public_endpoint,
    select,
)
from modelseal.models.lock import LockEntry, ModelsLock, Source, load_lock, walk_files
from modelseal.untrusted import untrusted

if TYPE_CHECKING:
    from modelseal.policy import LoadedPolicy

GATE = "models"


def limits_of(policy: LoadedPolicy) -> FetchLimits:
    """The policy's ``models.fetch`` limits."""
    fp = policy.policy.models.fetch
    return FetchLimits(fp.max_files, fp.max_bytes, fp.max_seconds)


def _say(text: str) -> None:
    print(untrusted(text, markup=False))


def _warn(text: str) -> None:
    print(f"modelseal: warning: {untrusted(text, markup=False)}", file=sys.stderr)


def fetch_command(
    uri: str,
    *,
    includes: Sequence[str],
    dest: Path | None,
    lock_path: Path,
    allow_ref: bool,
    replace: bool,
    policy: LoadedPolicy,
) -> int:
    """Download ``uri`` (``hf://ORG/NAME@COMMIT``) into ``dest`` and pin it in the lock.
    Exit 1, with nothing written, when a file does not match the Hub's digest or the lock."""
    ref = parse_hf_uri(uri, where="models fetch")
    allow = allow_ref or policy.policy.models.fetch.allow_refs
    if not is_commit(ref.revision) and not allow:
        named = f"{ref.revision!r} is a branch or tag" if ref.revision else "no revision is given"
        raise ConfigError(
            f"{untrusted(ref, markup=False)}: {untrusted(named, markup=False)}, not a commit; "
            "a ref can move to other files after review, so models fetch pins a full 40-hex "
            "commit (hf://ORG/NAME@COMMIT).",
            hint="Give the commit, or pass --allow-ref (policy: models.fetch.allow_refs) to "
            "resolve the ref now and record the commit it points at.",
        )
    limits = limits_of(policy)
    base = fsio.ensure_dir(fsio.absolute(lock_path).parent)
    name = ref.repo_id.split("/")[1]
    dest = fsio.absolute(dest) if dest is not None else base / "models" / name
    dest_rel = Path(os.path.relpath(dest, base)).as_posix()
    if dest_rel == "." or dest_rel.startswith("../") or dest_rel == "..":
        raise ConfigError(
            f"--dest {fsio.shown(dest)} must be a directory below {fsio.shown(base)}, the lock "
            "file's directory (lock paths are relative to it)."
        )
    if lock_path.exists() and lock_path.is_dir():
        # Checked before anything is downloaded or replaced: the lock is written last.
        raise ConfigError(f"--lock {fsio.shown(lock_path)} is a directory, not a lock file.")
    previous = load_lock(lock_path) if lock_path.is_file() else None
    _check_dest(dest, replace)

    with HubSession.from_env(limits) as hub:
        commit = hub.resolve(ref)
        if ref.revision != commit:
            _warn(
                f"{ref} is not a commit; fetched the commit it points at now, {commit}, and "
                f"recorded that. Pin it: {ref.uri}@{commit}"
            )
        chosen = select(hub.list_files(ref, commit), includes)
        if not chosen:
            raise ConfigError(
                f"{ref.uri}@{commit}: no file matches "
                + (
                    ", ".join(repr(g) for g in includes)
                    if includes
                    else "(the repository is empty)"
                )
                + "."
            )
        check_selection(ref, commit, chosen, limits)
        cached = [f.path for f in chosen if f.path.split("/", 1)[0] == ".cache"]
        if cached:
            # huggingface_hub keeps its download state in DEST/.cache/huggingface, which is
            # removed after the download: a repository file there would collide with it.
            raise ConfigError(
                f"{ref.uri}@{commit}: {untrusted(cached[0], limit=200, markup=False)!r} is under "
                ".cache/, where huggingface_hub keeps its download state; models fetch does not "
                "fetch files there (leave them out with --include)."
            )
        hub.guard.allow(sum(f.size for f in chosen))
        parent = fsio.ensure_dir(dest.parent)
        staging = fsio.make_temp_dir(parent, "modelseal-fetch")
        try:
            with fsio.private_temp_dir("modelseal-hf-cache-") as cache:
                for f in chosen:
                    hub.download(ref, commit, f, staging, Path(cache))
            fsio.remove(staging / ".cache")  # huggingface_hub's state (no repo file: above)
            _only_the_files(staging, chosen)
            digests = hash_files([staging / f.path for f in chosen])
            pinned = previous.by_path() if previous else {}
            problems = _mismatches(chosen, staging, digests, pinned, dest_rel, lock_path)
            if problems:
                for line in problems:
                    print(f"✗ {untrusted(line, markup=False)}")
                _say(
                    f"{ref.uri}@{commit}: {len(problems)} mismatch(es); nothing was written to "
                    f"{dest} or {lock_path}."
                )
                return int(ExitCode.BREACHED)
            from modelseal.models.formats import detect_format

            # Everything that can fail is done before the destination is replaced: formats
            # detected and the lock's text made in staging; then the move, then the write.
            endpoint = public_endpoint(hub.endpoint)
            recorded = endpoint if endpoint != DEFAULT_ENDPOINT else None
            entries = [
                LockEntry(
                    f"{dest_rel}/{f.path}",
                    digests[staging / f.path].size,
                    digests[staging / f.path].sha256,
                    detect_format(staging / f.path).format.value,
                    Source(ref.uri, commit, f.path, recorded),
                )
                for f in chosen
            ]
            text = _merged(previous, dest_rel, entries).to_text()
            fsio.replace_dir(staging, dest)
        finally:
            fsio.remove(staging)

    fsio.write_text_atomic(lock_path, text, encoding=locale.getpreferredencoding(False))
    for e in entries:
        _say(f"  {e.sha256[:16]}  {e.format:<13} {e.path}")
    total = sum(e.size for e in entries)
    _say(
        f"{ref.uri}@{commit}: {len(entries)} file(s), {total} bytes checked against the Hub's "
        f"digests and written to {dest}; pinned in {lock_path}"
    )
    return int(ExitCode.PASSED)


def _check_dest(dest: Path, replace: bool) -> None:
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return
    import stat

    if stat.S_ISDIR(st.st_mode) and not os.listdir(dest):
        return
    if not replace:
        raise ConfigError(
            f"--dest {fsio.shown(dest)} exists and is not an empty directory; models fetch "
            "replaces its destination as a whole.",
            hint="Pass --replace to replace it, or choose another --dest.",
        )


def _only_the_files(staging: Path, chosen: Sequence[HubFile]) -> None:
    """What huggingface_hub left in ``staging`` must be exactly the selected regular files."""
    found = set(walk_files(staging, sorted(os.listdir(staging))))
    expected = {f.path for f in chosen}
    odd = sorted((found - expected) | (expected - found))
    if odd:
        raise HubError(
            f"the download left {untrusted(odd[0], limit=200, markup=False)!r} "
            f"{'unexpected' if odd[0] in found else 'missing'}; nothing was written."
        )


def _mismatches(
    chosen: Sequence[HubFile],
    staging: Path,
    digests: dict[Path, FileDigest],
    pinned: dict[str, LockEntry],
    dest_rel: str,
    lock_path: Path,
) -> list[str]:
    out = []
    for f in chosen:
        d = digests[staging / f.path]
        algorithm, expected = f.expected
        actual = d.sha256 if algorithm == "sha256" else git_blob_sha1(staging / f.path)
        if d.size != f.size:
            out.append(f"{f.path}: {d.size} bytes downloaded, the Hub lists {f.size}")
        elif actual != expected:
            out.append(
                f"{f.path}: {algorithm} {actual} downloaded, the Hub lists {algorithm} {expected}"
            )
        entry = pinned.get(f"{dest_rel}/{f.path}")
        if entry is not None and (entry.sha256 != d.sha256 or entry.size != d.size):
            out.append(
                f"{f.path}: sha256 {d.sha256} downloaded, {lock_path} pins sha256 {entry.sha256}"
            )
    return out


def _merged(previous: ModelsLock | None, dest_rel: str, entries: list[LockEntry]) -> ModelsLock:
    """``previous`` with everything under ``dest_rel`` replaced by ``entries``."""

    def under(p: str) -> bool:
        return p == dest_rel or p.startswith(dest_rel + "/")

    kept = [e for e in (previous.entries if previous else ()) if not under(e.path)]
    roots = [r for r in (previous.roots if previous else ()) if not under(r)]
    if not any(dest_rel.startswith(r + "/") for r in roots):
        roots.append(dest_rel)
    return ModelsLock(roots=tuple(roots), entries=tuple(kept + entries))


def _finding(kind: str, entry: LockEntry, title: str, severity: Severity, **ev: str) -> Finding:
    return Finding(
        gate=GATE,
        id=f"models.{kind}",
        severity=severity,
        title=title,
        subject=entry.path,
        location=entry.path,
        evidence={k: v for k, v in ev.items() if v},
    )


def source_findings(lock: ModelsLock, *, check_source: bool, limits: FetchLimits) -> list[Finding]:
    """What the lock's hf:// sources say: a revision that is not a full commit (always), and
    with ``check_source``, a file the Hub no longer has at that commit with that digest."""
    out: list[Finding] = []
    groups: dict[tuple[str, str], list[LockEntry]] = {}
    for e in lock.entries:
        src = e.source
        if src is None or not src.uri.startswith("hf://"):
            continue
        try:
            ref = parse_hf_uri(src.uri, where=f"{e.path}: source")
        except ConfigError as err:
            out.append(_finding("source-invalid", e, err.message, Severity.HIGH, uri=src.uri))
            continue
        if not is_commit(src.revision):
            out.append(
                _finding(
                    "source-unpinned",
                    e,
                    f"{e.path}: its source {src.uri} is pinned to "
                    f"{src.revision!r}, not a full commit; a branch or tag can move",
                    Severity.HIGH,
                    uri=src.uri,
                    revision=src.revision or "",
                )
            )
            continue
        groups.setdefault((ref.repo_id, str(src.revision)), []).append(e)
    if not check_source or not groups:
        return out
    with HubSession.from_env(limits) as hub:
        here = public_endpoint(hub.endpoint)
        for (repo_id, commit), members in sorted(groups.items()):
            recorded = {
                (e.source.endpoint if e.source else None) or DEFAULT_ENDPOINT for e in members
            }
            other = sorted(recorded - {here})
            if other:
                # HF_TOKEN is never sent to an endpoint a (hostile) lock names: refuse instead.
                raise ConfigError(
                    f"{lock.path or 'models.lock'}: {members[0].path} was fetched from the hub "
                    f"at {untrusted(other[0], limit=200, markup=False)}, but HF_ENDPOINT is "
                    f"{untrusted(here, limit=200, markup=False)}; set HF_ENDPOINT to the "
                    "recorded endpoint to check its source."
                )
            out += _check_group(hub, lock, HubRef(repo_id, commit), commit, members)
    return out


def _check_group(
    hub: HubSession, lock: ModelsLock, ref: HubRef, commit: str, members: list[LockEntry]
) -> list[Finding]:
    out: list[Finding] = []
    checkable = [e for e in members if e.source is not None and e.source.path]
    for e in members:
        if e not in checkable:
            out.append(
                _finding(
                    "source-unchecked",
                    e,
                    f"{e.path}: its source records no path in {ref.uri}; fetch it again with "
                    "`modelseal models fetch` to record one",
                    Severity.MEDIUM,
                    uri=ref.uri,
                    revision=commit,
                )
            )
    if not checkable:
        return out
    try:
        found = hub.paths_info(
            ref, commit, sorted({str(e.source.path) for e in checkable if e.source})
        )
    except HubUnreadable as hidden:
        raise HubError(
            f"could not check the sources from {ref.uri}@{commit}: {hidden.message}"
        ) from None
    except HubNotFound as gone:
        return out + [
            _finding(
                "source-moved",
                e,
                f"{e.path}: {ref.uri}@{commit} is gone ({gone.message})",
                Severity.HIGH,
                uri=ref.uri,
                revision=commit,
            )
            for e in checkable
        ]
    for e in checkable:
        in_repo = str(e.source.path) if e.source else ""
        hub_file = found.get(in_repo)
        why = _moved(lock, e, hub_file)
        if why:
            out.append(
                _finding(
                    "source-moved",
                    e,
                    f"{e.path}: {why} at {ref.uri}@{commit}",
                    Severity.HIGH,
                    uri=ref.uri,
                    revision=commit,
                    repo_path=in_repo,
                    pinned_sha256=e.sha256,
                )
            )
    return out


def _moved(lock: ModelsLock, e: LockEntry, f: HubFile | None) -> str | None:
    if f is None:
        return f"{e.source.path if e.source else ''} is no longer there"
    if f.lfs_sha256 is not None:
        if f.lfs_sha256 != e.sha256:
            return f"the Hub lists sha256 {f.lfs_sha256}, the lock pins {e.sha256}"
        return None
    if f.size != e.size:
        return f"the Hub lists {f.size} bytes, the lock pins {e.size}"
    local = lock.base / e.path
    from modelseal.models.hashing import hash_file

    try:
        same = local.is_file() and not local.is_symlink() and hash_file(local).sha256 == e.sha256
    except ConfigError:
        same = False
    if same and git_blob_sha1(local) != f.blob_id:
        return f"the Hub lists git blob {f.blob_id}, the pinned bytes are another"
    return None
