"""The model-artifact gates.

``models`` (before and beside the build): the files under the model paths against models.lock
(missing, extra, changed), their formats from the bytes, every pickle they carry against the
allowlist, their structure; optionally an OpenSSF model-signing signature.

``models-image`` (after the build): the model paths in the built image's resolved filesystem
(:mod:`modelseal.imagefs`: layers applied as a runtime applies them, symlinks followed inside
the image) against models.lock — what was verified is what ships, and no symlink swapped in by a
``RUN`` step leads the server elsewhere.

Both collect evidence only; :mod:`modelseal.judge` applies ``models.*`` of the policy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from modelseal.errors import ConfigError, GateError
from modelseal.evcache import file_digest
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.gates import RegisteredGate
from modelseal.imagefs import FsEntry, ImageFs, printable
from modelseal.models.allowlist import Allowlist
from modelseal.models.card import CARD_FILE, CONFIG_FILE, ModelCard, read_model_card
from modelseal.models.hashing import FileDigest, hash_files
from modelseal.models.issues import Format
from modelseal.models.limits import scan_limits
from modelseal.models.lock import (
    LockEntry,
    ModelsLock,
    collect_files,
    is_ignored,
    load_lock,
    verify_lock,
    walk_files,
)
from modelseal.models.mlbom import model_records, write_models_json
from modelseal.models.scan import GATE, FileScan, scan_files, scan_findings
from modelseal.pipeline import Context
from modelseal.postbuild import built_layout, image_fs

IMAGE_GATE = "models-image"


class ModelsGate(RegisteredGate):
    """Gate ``models``: pins, formats, pickles, structure of the model files in the context."""

    name = GATE

    def run(self, ctx: Context) -> GateResult:
        """Verify the lock, then scan every model file."""
        pol = ctx.policy.policy.models
        base = ctx.options.context.resolve()
        lock_path = (base / pol.lock).resolve()
        findings: list[Finding] = []
        facts: dict[str, str] = {"lock": pol.lock}
        lock: ModelsLock | None = None
        _refuse_unreadable_lock(base / pol.lock)
        if lock_path.is_file():
            lock = load_lock(lock_path)
            assert lock.sha256 is not None
            facts["lock.sha256"] = lock.sha256
        else:
            findings.append(
                Finding(
                    gate=GATE,
                    id="models.no-lock",
                    severity=Severity.HIGH,
                    title=f"{pol.lock} does not exist, so no model file is pinned",
                    subject=pol.lock,
                    location=pol.lock,
                    evidence={"fix": "run `modelseal models lock PATH…` and commit the lock"},
                )
            )
        roots = _roots(pol.paths, lock, base)
        if not roots:
            raise ConfigError(
                "the models gate has nothing to check: set models.paths in the policy or create "
                f"{pol.lock} with `modelseal models lock PATH…` (or set models.enabled: false)."
            )
        ctx.progress(self.name, "hashing and checking the lock")
        digests: dict[str, FileDigest] = {}
        files: list[str] | None = None
        verified: set[str] = set()  # pinned files the lock check found unchanged (base-relative)
        if lock is not None:
            lock_base = lock.base
            to_base = _rebase(lock_base, base)
            # Without models.paths the roots are the lock's: walk them once for both checks.
            walked = walk_files(lock_base, lock.roots) if lock.roots and not pol.paths else None
            mismatches, digests_rel = verify_lock(lock, ignore=pol.ignore, walked=walked)
            for m in mismatches:
                findings.append(mismatch_finding(m.kind, m.path, m.expected, m.actual, lock.path))
            digests = {to_base(p): d for p, d in digests_rel.items()}
            bad = {m.path for m in mismatches}
            verified = {to_base(e.path) for e in lock.entries if e.path not in bad}
            if walked is not None:
                files = [f for f in map(to_base, walked) if not is_ignored(f, pol.ignore)]
        if files is None:
            files = collect_files(base, roots, pol.ignore)
        missing = [f for f in files if f not in digests]
        hashed = hash_files([base / f for f in missing])
        digests |= {f: hashed[base / f] for f in missing}
        ctx.progress(self.name, f"scanning {len(files)} model file(s)")
        scans = scan_files(
            [base / f for f in files], Allowlist.default(), limits=scan_limits(pol.limits)
        )
        pinned = lock.by_path() if lock else {}
        to_lock = _rebase(base, lock.base) if lock else None
        records: list[dict[str, Any]] = []
        cards = _cards(base, files, scans, verified, digests)
        for rel, scan in zip(files, scans, strict=True):
            findings += scan_findings(rel, *_metadata_scan(rel, scan))
            d = digests[rel]
            entry = pinned.get(to_lock(rel)) if to_lock else None
            card = cards.get(rel)
            records.append(
                {
                    "path": rel,
                    "size": d.size,
                    "sha256": d.sha256,
                    "format": scan.format.value,
                    "source": entry.source.to_json() if entry and entry.source else None,
                    "card": card.to_json() if card else None,
                }
            )
        described = [c for c in cards.values() if c]
        if described:
            facts["models.cards"] = str(len(described))
            facts["models.card_notes"] = str(sum(len(c.notes) for c in described))
        if pol.signature is not None:
            ctx.progress(self.name, "verifying the model signature")
            findings += _verify_signature(ctx, base)
        models_json = ctx.out_dir / "models.json"
        write_models_json(models_json, model_records(records))
        facts["models.count"] = str(len(records))
        facts["models.bytes"] = str(sum(r["size"] for r in records))
        return GateResult(
            GATE, Status.PASSED, findings=tuple(findings), facts=facts,
            artifacts={"models_json": models_json},
        )  # fmt: skip


METADATA_FILES = frozenset({CARD_FILE, CONFIG_FILE})
"""The model card and config: pinned and lock-checked like every file, scanned (a pickle or
other model format under these names is judged as such), but text in no model format is not an
``unknown-format`` finding — they are what the ML-BOM reads to say what the model is."""


def _metadata_scan(rel: str, scan: FileScan) -> tuple[FileScan, bool]:
    """``scan`` and whether ``rel`` is a model card or config in no model format (then less
    its ``unknown-format`` issue; its ``models.format`` finding says ``metadata``)."""
    if scan.format is not Format.UNKNOWN or rel.rpartition("/")[2] not in METADATA_FILES:
        return scan, False
    kept = tuple(i for i in scan.issues if i.kind != "unknown-format")
    return replace(scan, issues=kept), True


def _cards(
    base: Path,
    files: list[str],
    scans: list[FileScan],
    verified: set[str],
    digests: dict[str, FileDigest],
) -> dict[str, ModelCard]:
    """The model card facts for each file in a model format, from the ``README.md`` and
    ``config.json`` in its directory — read only when the gate checked them too, or when the
    lock pins them and the lock check found them unchanged (``verified``; also when
    ``models.ignore`` leaves them out of the format checks), and only if the bytes read still
    have the digest checked, so what the ML-BOM says comes from verified files. One read per
    directory."""
    by_dir: dict[str, set[str]] = {}
    for rel in [*files, *(v for v in verified if v.rpartition("/")[2] in METADATA_FILES)]:
        parent, _, name = rel.rpartition("/")
        by_dir.setdefault(parent, set()).add(name)
    read: dict[str, ModelCard] = {}
    out: dict[str, ModelCard] = {}
    for rel, scan in zip(files, scans, strict=True):
        if scan.format is Format.UNKNOWN:
            continue
        parent = rel.rpartition("/")[0]
        if parent not in read:
            sums = {
                n: d.sha256
                for n in by_dir[parent] & METADATA_FILES
                if (d := digests.get(f"{parent}/{n}" if parent else n)) is not None
            }
            read[parent] = read_model_card(base / parent, frozenset(sums), sha256=sums)
        out[rel] = read[parent]
    return out


def _roots(paths: list[str], lock: ModelsLock | None, base: Path) -> list[str]:
    if paths:
        return [_clean(p) for p in paths]
    if lock is None:
        return []
    return list(map(_rebase(lock.base, base), lock.roots))


def _clean(p: str) -> str:
    parts = Path(p).parts
    if Path(p).is_absolute() or ".." in parts:
        raise ConfigError(
            f"models.paths: {p!r} must be relative to the build context, without '..'."
        )
    return Path(p).as_posix()


def _rebase(src: Path, dst: Path) -> Callable[[str], str]:
    """A function taking a clean path relative to the directory ``src`` to the same path
    relative to ``dst``; both are resolved, so nothing is resolved per path."""
    src, dst = src.resolve(), dst.resolve()
    if src.is_relative_to(dst):
        prefix = src.relative_to(dst).as_posix() + "/"
        if prefix == "./":
            return lambda rel: rel
        return lambda rel: prefix + rel
    below = dst.relative_to(src).as_posix() + "/" if dst.is_relative_to(src) else None

    def rebase(rel: str) -> str:
        if below is not None and rel.startswith(below):
            return rel[len(below) :]
        if below is not None and rel + "/" == below:
            return "."
        raise ConfigError(f"{src / rel} is outside the build context {dst}.")

    return rebase


def mismatch_finding(
    kind: str, path: str, expected: str | None, actual: str | None, lock: Path | None
) -> Finding:
    lock_name = lock.name if lock else "models.lock"
    titles = {
        "changed": f"{path} does not match {lock_name}: sha256 {actual} on disk, {expected} pinned",
        "missing": f"{path} is pinned in {lock_name} but missing",
        "extra": f"{path} is not pinned in {lock_name}",
    }
    evidence = {k: v for k, v in (("pinned_sha256", expected), ("actual_sha256", actual)) if v}
    return Finding(
        gate=GATE,
        id=f"models.{kind}",
        severity=Severity.CRITICAL if kind == "changed" else Severity.HIGH,
        title=titles[kind],
        subject=path,
        location=path,
        evidence=evidence,
    )


def _refuse_unreadable_lock(named: Path) -> None:
    """A lock that is there but is no regular file inside the repository (a FIFO, a device, a
    link out of it) is refused, not taken for a missing lock."""
    if (named.exists() or named.is_symlink()) and not (
        named.is_file() and named.resolve().is_relative_to(named.parent.resolve())
    ):
        load_lock(named)  # raises the reason (read_input's checks)


def _verify_signature(ctx: Context, base: Path) -> list[Finding]:
    sig = ctx.policy.policy.models.signature
    assert sig is not None
    from modelseal.models.signing import verify_model_signature

    trust = None
    if sig.identity is not None:
        from modelseal.sign.trust import load_trust_config

        sign_trust = ctx.policy.policy.sign.trust_config
        if sig.trust_config is not None:
            trust = load_trust_config(base / sig.trust_config)
        elif sign_trust is not None:
            trust = load_trust_config(Path(ctx.policy.source).parent / sign_trust)
    problem = verify_model_signature(
        model_dir=base / sig.model_dir,
        signature=base / sig.path,
        public_key=base / sig.public_key if sig.public_key else None,
        identity=sig.identity,
        issuer=sig.issuer,
        trust=trust,
    )
    if problem is None:
        return []
    return [
        Finding(
            gate=GATE,
            id="models.signature",
            severity=Severity.CRITICAL,
            title=f"the model signature {sig.path} does not verify: {problem}",
            subject=sig.model_dir,
            location=sig.path,
        )
    ]


class ModelsImageGate(RegisteredGate):
    """Gate ``models-image``: the model files inside the built image against models.lock."""

    name = IMAGE_GATE

    def run(self, ctx: Context) -> GateResult:
        """Read the model paths out of the image's layers and compare them with the lock."""
        pol = ctx.policy.policy.models
        base = ctx.options.context.resolve()
        if not pol.image_paths:
            finding = Finding(
                gate=IMAGE_GATE, id="models.image-unchecked", severity=Severity.MEDIUM,
                title="models.image_paths is empty, so the model files inside the image are not "
                "compared with models.lock",
                subject="policy", location="models.image_paths",
                evidence={"fix": 'map each locked model directory to its image path, e.g. '
                          'image_paths: {"model": "/app/model"}'},
            )  # fmt: skip
            return GateResult(IMAGE_GATE, Status.PASSED, findings=(finding,))
        lock_path = (base / pol.lock).resolve()
        _refuse_unreadable_lock(base / pol.lock)
        if not lock_path.is_file():
            raise GateError(f"{pol.lock} does not exist; the image cannot be compared with it.")
        lock = load_lock(lock_path)
        layout, manifests = built_layout(ctx, "to read the model files from")
        to_base = _rebase(lock.base, base)
        locked = [(to_base(e.path), e) for e in lock.entries]
        expected = _expected_in_image(locked, pol.image_paths)
        dirs = _image_dirs(pol.image_paths, {rel for rel, _ in locked})

        def check() -> list[Finding]:
            findings: list[Finding] = []
            for platform, digest in sorted(manifests.items()):
                ctx.progress(self.name, f"reading model files from the image ({platform})")
                # One pass over the layers, shared with pip-audit; the files under the model
                # paths are hashed while streaming (modelseal.postbuild).
                fs = image_fs(ctx, layout, digest)
                findings += _check_image(fs, platform, expected, dirs, pol.ignore)
            return findings

        facts = {
            "checked": str(len(expected) * len(manifests)),
            "platforms": ",".join(sorted(manifests)),
        }
        # The comparison is a function of the images, the lock (and where it sits) and the
        # models policy: an earlier identical comparison is reused.
        key = ctx.cache.key(
            "models-image", manifests=json.dumps(sorted(manifests.items())),
            lock=file_digest(lock_path), context=str(base), policy=pol.model_dump_json(),
        )  # fmt: skip
        findings = ctx.cache.through(
            key, check, dump=lambda fs: [f.to_json() for f in fs],
            load=lambda data: [Finding.from_json(f) for f in data], facts=facts,
            label="models-image.cache",
        )  # fmt: skip
        return GateResult(IMAGE_GATE, Status.PASSED, findings=tuple(findings), facts=facts)


def _check_image(
    fs: ImageFs,
    platform: str,
    expected: dict[str, LockEntry],
    dirs: list[tuple[str, str]],
    ignore: list[str],
) -> list[Finding]:
    """One platform image against the lock, on its resolved filesystem: every locked path must
    lead to a regular file with the pinned digest without crossing a symlink (the lock records
    none); every other file, symlink or special file under the model directories is reported."""
    findings: list[Finding] = []
    links: dict[str, tuple[str, list[str]]] = {}  # symlink path → (target, locked paths behind)
    resolved = {path: fs.resolve(path) for path in expected}
    for path, r in resolved.items():
        for link, target in r.symlinks:
            links.setdefault(link, (target, []))[1].append(path)
    # The model directories themselves. One reached through a symlink is a finding as such and
    # is not walked (it may lead to / and would list the whole image as unpinned files).
    walked: list[str] = []
    for prefix, _ in dirs:
        name = prefix.rstrip("/")
        r = fs.resolve(name)
        for link, target in r.symlinks:
            links.setdefault(link, (target, []))
        if r.entry is not None and r.entry.kind == "dir" and not r.symlinks:
            walked.append(name)
    for link, (target, behind) in sorted(links.items()):
        findings.append(_symlink_finding(link, target, platform, sorted(behind)))
    hashable = [r.resolved for r in resolved.values() if r.entry and r.entry.kind == "file"]
    digests = fs.hash_files(hashable)
    for image_path, entry in sorted(expected.items()):
        r = resolved[image_path]
        if r.entry is None:
            findings.append(
                _image_finding("image-missing", image_path, platform, entry.sha256, None,
                               entry.path, r.problem)
            )  # fmt: skip
        elif r.entry.kind != "file":
            findings.append(
                _image_finding("image-not-a-file", image_path, platform, entry.sha256,
                               r.entry.describe(), entry.path)
            )  # fmt: skip
        elif digests[r.resolved] != entry.sha256:
            findings.append(
                _image_finding("image-changed", image_path, platform, entry.sha256,
                               digests[r.resolved], entry.path)
            )  # fmt: skip
    extras: dict[str, FsEntry] = {}
    for name in walked:
        for e in fs.walk(name):
            if e.kind == "dir" or e.path in expected or e.path in extras or e.path in links:
                continue
            if e.kind == "file" and any(
                is_ignored(rel, ignore) for rel in _local_paths(e.path, dirs)
            ):
                continue
            extras[e.path] = e
    extra_digests = fs.hash_files(e.path for e in extras.values() if e.kind == "file")
    for shown, e in sorted(extras.items()):
        if e.kind == "symlink":
            findings.append(_symlink_finding(shown, e.link, platform, []))
        else:
            findings.append(
                _image_finding("image-extra", shown, platform, None, extra_digests.get(e.path),
                               None, "" if e.kind == "file" else e.describe())
            )  # fmt: skip
    return findings


def _expected_in_image(
    locked: list[tuple[str, LockEntry]], image_paths: dict[str, str]
) -> dict[str, LockEntry]:
    """Image path → the lock entry that must be there; ``locked`` holds the entries with their
    paths relative to the build context."""
    out: dict[str, LockEntry] = {}
    for local, image_dir in image_paths.items():
        local_rel = _clean(local).rstrip("/")
        for rel, entry in locked:
            if rel == local_rel or rel.startswith(local_rel + "/"):
                rest = rel[len(local_rel) :].lstrip("/") or rel.rsplit("/", 1)[-1]
                out[f"{image_dir.strip('/')}/{rest}"] = entry
    return out


def _image_dirs(image_paths: dict[str, str], locked: set[str]) -> list[tuple[str, str]]:
    """Per ``models.image_paths`` entry: the image directory (``/``-terminated, without the
    leading ``/``) and the build-context directory whose files it holds (for a locked file
    mapped by itself, the file's directory)."""
    out = []
    for local, image_dir in image_paths.items():
        local_rel = _clean(local).rstrip("/")
        if local_rel in locked:
            local_rel = local_rel.rpartition("/")[0]
        out.append((image_dir.strip("/") + "/", "" if local_rel == "." else local_rel))
    return out


def _local_paths(name: str, dirs: list[tuple[str, str]]) -> list[str]:
    """The build-context paths the image file ``name`` stands for, one per image directory
    holding it: what the ``ignore`` globs are matched against, as on disk."""
    return [
        f"{local}/{name[len(prefix) :]}" if local else name[len(prefix) :]
        for prefix, local in dirs
        if name.startswith(prefix)
    ]


def _image_finding(
    kind: str,
    image_path: str,
    platform: str,
    pinned: str | None,
    actual: str | None,
    local: str | None,
    what: str = "",
) -> Finding:
    image_path = printable(image_path)
    because = f" ({what})" if what else ""
    titles = {
        "image-missing": f"/{image_path} is pinned ({local}) but not in the image{because}",
        "image-not-a-file": f"/{image_path} in the image is a {actual}, not the pinned file {local}",
        "image-changed": f"/{image_path} in the image does not match {local}: sha256 {actual}, pinned {pinned}",
        "image-extra": f"/{image_path} in the image is not pinned in models.lock"
        + (f": a {what}" if what else ""),
    }
    evidence = {"platform": platform}
    if pinned:
        evidence["pinned_sha256"] = pinned
    if actual and kind != "image-not-a-file":
        evidence["image_sha256"] = actual
    if what:
        evidence["kind" if kind == "image-extra" else "reason"] = what
    return Finding(
        gate=IMAGE_GATE,
        id=f"models.{kind}",
        severity=Severity.CRITICAL
        if kind in ("image-changed", "image-not-a-file")
        else Severity.HIGH,
        title=titles[kind],
        subject=f"/{image_path}",
        location=f"/{image_path} ({platform})",
        evidence=evidence,
    )


def _symlink_finding(link: str, target: str, platform: str, behind: list[str]) -> Finding:
    """A symlink at or above a model path: the lock records files only, so whatever the link
    leads to was never verified (a RUN step can swap the weights this way)."""
    link, target, behind = printable(link), printable(target), [printable(p) for p in behind]
    evidence = {"platform": platform, "target": target}
    if behind:
        shown = ", ".join(f"/{p}" for p in behind[:5]) + (" …" if len(behind) > 5 else "")
        evidence["pinned_paths"] = shown
    return Finding(
        gate=IMAGE_GATE,
        id="models.image-symlink",
        severity=Severity.CRITICAL,
        title=f"/{link} in the image is a symlink to {target}, which models.lock does not record"
        + (f"; {len(behind)} pinned file(s) are read through it" if behind else ""),
        subject=f"/{link}",
        location=f"/{link} ({platform})",
        evidence=evidence,
    )
