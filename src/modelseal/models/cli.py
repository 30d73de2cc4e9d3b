"""``modelseal models lock | verify | scan | sign``: the model gate's checks, usable on their own."""

from __future__ import annotations

import json
import locale
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelseal.errors import ConfigError, ExitCode
from modelseal.untrusted import untrusted

# Each command imports what it uses: `lock` needs only hashing and format detection, and
# `scan` forks its scanning child before the scanner, the judge or the policy is imported
# (start-up is a large part of locking one big file or scanning a few small ones).
if TYPE_CHECKING:
    from modelseal.findings import Finding
    from modelseal.models.limits import ScanLimits
    from modelseal.models.lock import Source
    from modelseal.policy import LoadedPolicy
    from modelseal.sign.interface import Signer
    from modelseal.sign.trust import TrustConfig


def lock_command(
    paths: Sequence[Path],
    lock_path: Path,
    ignore: Sequence[str],
    uri: str | None,
    revision: str | None,
) -> int:
    """Write (or refresh) a lock file for ``paths``. The lock is replaced atomically: a
    failed run leaves the previous one whole, and a link at its name is replaced, not written
    through (:mod:`modelseal.fsio`)."""
    from modelseal import fsio
    from modelseal.models.formats import detect_format
    from modelseal.models.lock import load_lock, make_lock

    # The lock's directory is checked (no link on the way) rather than resolved: paths in the
    # lock are relative to where the file really is.
    base = fsio.ensure_dir(fsio.absolute(lock_path).parent)
    roots = []
    for p in paths:
        rel = os.path.relpath(p.resolve(), base)
        if rel.startswith(".."):
            raise ConfigError(f"{p} is outside {base}, the lock file's directory.")
        roots.append(Path(rel).as_posix())
    previous = load_lock(lock_path) if lock_path.is_file() else None
    if revision and not uri:
        raise ConfigError("--source-revision needs --source-uri.")
    source = _lock_source(uri, revision) if uri else None
    lock = make_lock(
        base, roots, detect=lambda p: detect_format(p).format.value, ignore=ignore,
        previous=previous, source=source,
    )  # fmt: skip
    # In the encoding load_lock decodes with (Path.write_text's, before the writes were atomic).
    fsio.write_text_atomic(lock_path, lock.to_text(), encoding=locale.getpreferredencoding(False))
    total = sum(e.size for e in lock.entries)
    print(
        f"{untrusted(lock_path, markup=False)}: {len(lock.entries)} file(s), {total} bytes pinned"
    )
    for e in lock.entries:
        print(f"  {e.sha256[:16]}  {e.format:<13} {untrusted(e.path, markup=False)}")
    return 0


def _lock_source(uri: str, revision: str | None) -> Source:
    """``--source-uri``/``--source-revision`` as a lock source. An hf:// source must be one
    ``models verify`` accepts — ``hf://ORG/NAME`` at a full 40-hex commit (``@COMMIT`` in the
    URI or ``--source-revision``) — else exit 2 with the reason; other URIs are free text."""
    from modelseal.models.hub import is_commit, parse_hf_uri
    from modelseal.models.lock import Source

    if not uri.startswith("hf://"):
        return Source(uri, revision)
    ref = parse_hf_uri(uri, where="--source-uri")
    if ref.revision and revision and ref.revision.lower() != revision.lower():
        raise ConfigError(
            f"--source-uri names revision {untrusted(ref.revision, markup=False)!r}, "
            f"--source-revision {untrusted(revision, markup=False)!r}; give one."
        )
    rev = (revision or ref.revision or "").lower()
    if not is_commit(rev):
        got = f"{untrusted(revision or ref.revision, markup=False)!r}" if rev else "no revision"
        raise ConfigError(
            f"--source-uri {untrusted(ref.uri, markup=False)}: {got} is not a full 40-hex "
            "commit; a branch, tag or short hash can move, and `models verify` reports such a "
            "source. Give the commit (--source-revision COMMIT)."
        )
    return Source(ref.uri, rev)


def verify_command(
    lock_path: Path, policy: LoadedPolicy, as_json: bool, *, check_source: bool = False
) -> int:
    """Check the files against the lock, and the lock's hf:// sources: a revision that is not
    a full commit always, whether the Hub still has each file there with ``check_source``."""
    from modelseal.models.fetch import limits_of, source_findings
    from modelseal.models.gate import mismatch_finding
    from modelseal.models.lock import load_lock, verify_lock

    lock = load_lock(lock_path)
    mismatches, _ = verify_lock(lock, ignore=policy.policy.models.ignore)
    findings = [
        mismatch_finding(m.kind, m.path, m.expected, m.actual, lock.path) for m in mismatches
    ]
    findings += source_findings(lock, check_source=check_source, limits=limits_of(policy))
    if as_json:
        print(json.dumps({"lock": str(lock_path), "files": len(lock.entries),
                          "mismatches": [f.to_json() for f in findings]}, indent=2))  # fmt: skip
    else:
        for f in findings:
            print(f"✗ {untrusted(f.id, markup=False)}: {untrusted(f.title, markup=False)}")
        tree = len(mismatches)
        state = "matches" if not tree else f"has {tree} mismatch(es)"
        sources = len(findings) - tree
        about = f"; {sources} source finding(s)" if sources else ""
        shown = untrusted(lock_path, markup=False)
        print(f"{shown}: {len(lock.entries)} pinned file(s); the tree {state}{about}")
    return int(ExitCode.BREACHED if findings else ExitCode.PASSED)


def scan_command(
    paths: Sequence[Path], load_policy: Callable[[], LoadedPolicy], as_json: bool
) -> int:
    """Scan files and directories and judge them under the policy's models section.

    The policy is loaded (``load_policy``) while a forked child already walks the directories
    and scans the files: importing pydantic and validating the policy is most of a small
    scan's time and the scan does not need it (the policy's ``ignore`` globs then pick which
    of the scans count). The child is forked before the scanner, the judge or the policy is
    imported, and sends back findings, so that this process imports no scanner for a small
    scan; with many files left once the policy is in, it scans the back half of them
    (:class:`~modelseal.models.ahead.Shared`: both cores). No child is forked when no core is
    idle (:func:`~modelseal.models.ahead.idle_core`). When there is no child, it fails
    (a bad directory: its error is raised here), or the policy sets other scan limits, this
    process does the same work itself.
    """
    from modelseal.models.ahead import Shared, idle_core

    for p in paths:
        if not p.exists():
            raise ConfigError(f"{p} does not exist.")
    shared = Shared(
        lambda: _scan_targets(paths), _scan_one, min_share=SHARE_MIN_FILES, start=idle_core()
    )
    from modelseal.findings import GateResult, Status
    from modelseal.judge import Outcome, judge_gate
    from modelseal.models.limits import DEFAULT_LIMITS, scan_limits

    try:
        policy = load_policy()
    except BaseException:
        shared.cancel()  # an invalid policy: nothing will read what the child scans
        raise
    ignore = policy.policy.models.ignore
    limits = scan_limits(policy.policy.models.limits)
    if limits != DEFAULT_LIMITS:
        shared.cancel()  # scanned within other limits: its results would not count
    both = shared.finish(_scan_one)
    done = [s for _, s in both] if both is not None else _scanned(paths, limits, ignore)
    files = done
    if ignore:  # the lock module (its hashing) only for the globs
        from modelseal.models.lock import is_ignored

        files = [s for s in done if s.rel is None or not is_ignored(s.rel, ignore)]
    findings = [f for s in files for f in s.findings]
    verdict = judge_gate(GateResult(_GATE, Status.PASSED, findings=tuple(findings)), policy.policy)
    if as_json:
        out: dict[str, Any] = {
            "status": verdict.status.value,
            "files": [{"path": str(s.path), "format": s.format, "pickle": s.pickle} for s in files],
            "findings": [
                {**d.finding.to_json(), "decision": d.outcome.value, "reason": d.reason}
                for d in verdict.decisions
            ],
        }
        # json's C encoder only runs without ``indent``; the indented form is for people.
        indent = 2 if sys.stdout.isatty() else None
        sys.stdout.write(json.dumps(out, indent=indent) + "\n")
    else:
        for s in files:
            print(f"{s.format:<13} {untrusted(s.path, markup=False)}")
        for d in verdict.decisions:
            if d.outcome is Outcome.IGNORED:
                continue
            mark = "✗" if d.outcome is Outcome.FAIL else "!"
            f = d.finding
            text = untrusted(f"{f.id} [{f.severity.name}] {f.title} — {d.reason}", markup=False)
            print(f"{mark} {text}")
        print(f"{len(files)} file(s) scanned: {verdict.status.value}")
    return int(ExitCode.BREACHED if verdict.status is Status.FAILED else ExitCode.PASSED)


_GATE = "models"
"""The gate ``models scan`` judges as: :data:`modelseal.models.scan.GATE`, which only the
scanning child imports."""


@dataclass(frozen=True)
class _Scanned:
    """What ``models scan`` reports of one file (what its child sends back)."""

    path: Path
    rel: str | None
    """The path relative to the directory named (None: the file was named itself)."""
    format: str
    pickle: bool
    findings: tuple[Finding, ...]


def _scanned(
    paths: Sequence[Path], limits: ScanLimits | None, ignore: Sequence[str]
) -> list[_Scanned]:
    """Walk ``paths`` and scan every file (but the ``ignore``d) within ``limits``."""
    _collect_garbage_from_now_on()
    from modelseal.models.limits import DEFAULT_LIMITS
    from modelseal.models.lock import is_ignored
    from modelseal.models.scan import scan_files, scan_findings

    targets = [
        (p, rel) for p, rel in _scan_targets(paths) if rel is None or not is_ignored(rel, ignore)
    ]
    scans = scan_files([p for p, _ in targets], limits=limits or DEFAULT_LIMITS)
    return [
        _Scanned(p, rel, s.format.value, s.carries_pickle, tuple(scan_findings(str(p), s)))
        for (p, rel), s in zip(targets, scans, strict=True)
    ]


#: Files left to scan, once the policy is loaded, from which ``models scan`` takes a share of
#: them rather than wait for its child: ~0.3 ms a file, so below this importing the scanner
#: (~15 ms) would cost this process more than it gains.
SHARE_MIN_FILES = 128


def _scan_one(target: tuple[Path, str | None]) -> _Scanned:
    """One file of ``models scan`` (a path and its name under the directory named), scanned
    within the default limits."""
    from modelseal.models.scan import scan_file, scan_findings

    _collect_garbage_from_now_on()
    p, rel = target
    s = scan_file(p)
    return _Scanned(p, rel, s.format.value, s.carries_pickle, tuple(scan_findings(str(p), s)))


def _collect_garbage_from_now_on() -> None:
    """The cycle collector back on for the scan (off for the start-up, _cli.entry: thousands of
    files make garbage), over what is made from now on: the modules, pydantic's models and the
    policy made while it was off stay for the whole run, and walking them in every collection
    (they were all still in the youngest generation) cost ~10 % of a 200-file scan."""
    import gc

    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _scan_targets(paths: Sequence[Path]) -> list[tuple[Path, str | None]]:
    """Every file to scan, with its path relative to the directory named on the command line
    (``None`` for a path named itself, which ``ignore`` globs do not drop)."""
    from modelseal.models.lock import walk_files

    files: list[tuple[Path, str | None]] = []
    for p in paths:
        if p.is_dir() and not (p / "saved_model.pb").exists():
            files += [(p / rel, rel) for rel in walk_files(p, _top(p))]
        else:
            files.append((p, None))
    return files


def _top(p: Path) -> list[str]:
    return sorted(c.name for c in p.iterdir())


def sign_command(
    model_dir: Path | None,
    lock_path: Path,
    signature: Path | None,
    *,
    key: Path | None,
    keyless: bool,
    trust_config: Path | None,
    policy: LoadedPolicy,
    as_json: bool,
) -> int:
    """Sign the files ``lock_path`` pins under ``model_dir`` with model-signing (a key, or
    keyless with the ambient CI identity or ``$SIGSTORE_ID_TOKEN``), after checking them
    against the lock (a mismatch: exit 1, nothing signed), and verify the signature made."""
    from modelseal import fsio
    from modelseal.models.gate import mismatch_finding
    from modelseal.models.lock import load_lock, verify_lock
    from modelseal.models.signing import (
        DEFAULT_SIGNATURE_NAME,
        check_signature_path,
        model_dir_in_lock,
        sign_model_directory,
    )

    if (key is None) == (not keyless):
        raise ConfigError("models sign: give exactly one of --key FILE and --keyless.")
    if trust_config is not None and not keyless:
        raise ConfigError("models sign: --trust-config goes with --keyless.")
    lock = load_lock(lock_path)
    rel = model_dir_in_lock(lock, model_dir)
    out = signature if signature is not None else (lock.base / rel).parent / DEFAULT_SIGNATURE_NAME
    out = fsio.absolute(out)
    check_signature_path(out)
    signer, trust = _model_signer(policy, key=key, trust_config=trust_config)
    mismatches, _ = verify_lock(lock, ignore=policy.policy.models.ignore)
    prefix = rel + "/"
    findings = [
        mismatch_finding(m.kind, m.path, m.expected, m.actual, lock.path)
        for m in mismatches
        if m.path.startswith(prefix)
    ]
    if findings:
        for f in findings:
            print(f"✗ {untrusted(f.id, markup=False)}: {untrusted(f.title, markup=False)}")
        print(f"{untrusted(rel, markup=False)} does not match the lock: nothing was signed")
        return int(ExitCode.BREACHED)
    made = sign_model_directory(
        lock, rel, signature=out, signer=signer, trust=trust, ignore=policy.policy.models.ignore
    )
    if as_json:
        print(json.dumps(made.to_json(), indent=2))
    else:
        who = f" as {made.identity} ({made.issuer})" if made.identity else " with the key"
        print(
            f"{untrusted(made.path, markup=False)}: {made.files} file(s) of "
            f"{untrusted(rel, markup=False)} signed{untrusted(who, markup=False)} and verified "
            f"(model digest sha256:{made.model_digest})"
        )
    return 0


def _model_signer(
    policy: LoadedPolicy, *, key: Path | None, trust_config: Path | None
) -> tuple[Signer, TrustConfig | None]:
    """The signer ``models sign`` uses, by the run's rules (:func:`modelseal.app.sign_options`:
    the policy's ``sign.trust_config`` unless ``--trust-config``), and the trust to verify
    with. Keyless takes ``$SIGSTORE_ID_TOKEN`` when set, else the CI's ambient identity."""
    from modelseal.app import sign_options
    from modelseal.publish.run import make_signer

    options = sign_options(
        policy, mode="key" if key is not None else "keyless", key_file=key,
        trust_config=trust_config,
    )  # fmt: skip
    if options.mode == "key":
        signer = make_signer(options)
        assert signer is not None
        return signer, None
    from modelseal.sign.keyless import KeylessSigner
    from modelseal.sign.trust import load_trust_config

    token = os.environ.get("SIGSTORE_ID_TOKEN") or None
    if token is None:
        signer = make_signer(options)  # the ambient identity (and the public-log check)
        assert signer is not None
    else:
        if options.trust_config is None:
            from modelseal.publish.github_attestations import check_public_log

            check_public_log(public_transparency_log=options.public_transparency_log)
        signer = KeylessSigner(
            load_trust_config(options.trust_config), identity_token=token,
            attempts=options.attempts,
        )  # fmt: skip
    return signer, load_trust_config(options.trust_config)
