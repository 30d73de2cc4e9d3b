"""The model-artifact gates.

``models`` (before and beside the build): the files under the model paths against models.lock
(missing, extra, changed), their formats from the bytes, every pickle they carry against the
allowlist, their structure; optionally an OpenSSF model-signing signature.

``models-image`` (after the build): the model files inside the built image's layers against
models.lock — what was verified is what ships.

Both collect evidence only; :mod:`modelseal.judge` applies ``models.*`` of the policy.
"""

from __future__ import annotations

import fnmatch
import hashlib
from pathlib import Path
from typing import Any

from modelseal.errors import ConfigError, GateError
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.models.hashing import FileDigest, hash_files
from modelseal.models.lock import LockEntry, ModelsLock, collect_files, load_lock, verify_lock
from modelseal.models.mlbom import model_records, write_models_json
from modelseal.models.pickle_scan import Allowlist
from modelseal.models.scan import FileScan, scan_files
from modelseal.oci import OciLayout, image_files
from modelseal.pipeline import Context
from modelseal.policy import LoadedPolicy

GATE = "models"
IMAGE_GATE = "models-image"


class ModelsGate:
    """Gate ``models``: pins, formats, pickles, structure of the model files in the context."""

    name = GATE
    requires: tuple[str, ...] = ()

    def enabled(self, policy: LoadedPolicy) -> bool:
        """Switched by ``models.enabled``."""
        return policy.policy.models.enabled

    def run(self, ctx: Context) -> GateResult:
        """Verify the lock, then scan every model file."""
        pol = ctx.policy.policy.models
        base = ctx.options.context.resolve()
        lock_path = (base / pol.lock).resolve()
        findings: list[Finding] = []
        facts: dict[str, str] = {"lock": pol.lock}
        lock: ModelsLock | None = None
        if lock_path.is_file():
            lock = load_lock(lock_path)
            facts["lock.sha256"] = hashlib.sha256(lock_path.read_bytes()).hexdigest()
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
        if lock is not None:
            mismatches, digests_rel = verify_lock(lock, ignore=pol.ignore)
            lock_base = lock.base
            for m in mismatches:
                findings.append(mismatch_finding(m.kind, m.path, m.expected, m.actual, lock.path))
            digests = {_rel(lock_base / p, base): d for p, d in digests_rel.items()}
        files = collect_files(base, roots, pol.ignore)
        missing = [base / f for f in files if f not in digests]
        digests |= {_rel(p, base): d for p, d in hash_files(missing).items()}
        ctx.progress(self.name, f"scanning {len(files)} model file(s)")
        scans = scan_files([base / f for f in files], Allowlist.default())
        pinned = lock.by_path() if lock else {}
        records: list[dict[str, Any]] = []
        for rel, scan in zip(files, scans, strict=True):
            findings += scan_findings(rel, scan)
            d = digests[rel]
            entry = pinned.get(_rel(base / rel, lock.base)) if lock else None
            records.append(
                {
                    "path": rel,
                    "size": d.size,
                    "sha256": d.sha256,
                    "format": scan.format.value,
                    "source": _source(entry),
                }
            )
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


def _roots(paths: list[str], lock: ModelsLock | None, base: Path) -> list[str]:
    if paths:
        return [_clean(p) for p in paths]
    if lock is None:
        return []
    return [_rel(lock.base / r, base) for r in lock.roots]


def _clean(p: str) -> str:
    parts = Path(p).parts
    if Path(p).is_absolute() or ".." in parts:
        raise ConfigError(
            f"models.paths: {p!r} must be relative to the build context, without '..'."
        )
    return Path(p).as_posix()


def _rel(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        raise ConfigError(f"{path} is outside the build context {base}.") from None


def _source(entry: LockEntry | None) -> dict[str, str] | None:
    if entry is None or entry.source is None:
        return None
    src = {"uri": entry.source.uri}
    if entry.source.revision:
        src["revision"] = entry.source.revision
    return src


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


def scan_findings(rel: str, scan: FileScan) -> list[Finding]:
    det = scan.detected
    out = [
        Finding(
            gate=GATE,
            id="models.format",
            severity=Severity.HIGH if scan.carries_pickle else Severity.LOW,
            title=f"{rel} is {scan.format.value}"
            + (" (carries pickle data)" if scan.carries_pickle else ""),
            subject=rel,
            location=rel,
            evidence={"format": scan.format.value, "pickle": "yes" if scan.carries_pickle else "no"}
            | {f"detail.{k}": str(v) for k, v in det.detail.items()},
        )
    ]
    for issue in scan.issues:
        where = issue.where()
        out.append(
            Finding(
                gate=GATE,
                id=f"models.{issue.kind}",
                severity=issue.severity,
                title=f"{rel}: {issue.title}",
                subject=rel,
                location=f"{rel} ({where})" if where else rel,
                evidence=dict(issue.detail)
                | ({"member": issue.member} if issue.member else {})
                | ({"offset": str(issue.offset)} if issue.offset is not None else {}),
            )
        )
    return out


def _verify_signature(ctx: Context, base: Path) -> list[Finding]:
    sig = ctx.policy.policy.models.signature
    assert sig is not None
    from modelseal.models.signing import verify_model_signature

    problem = verify_model_signature(
        model_dir=base / sig.model_dir,
        signature=base / sig.path,
        public_key=base / sig.public_key if sig.public_key else None,
        identity=sig.identity,
        issuer=sig.issuer,
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


class ModelsImageGate:
    """Gate ``models-image``: the model files inside the built image against models.lock."""

    name = IMAGE_GATE
    requires: tuple[str, ...] = ("build",)

    def enabled(self, policy: LoadedPolicy) -> bool:
        """On whenever the models gate is."""
        return policy.policy.models.enabled

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
        if not lock_path.is_file():
            raise GateError(f"{pol.lock} does not exist; the image cannot be compared with it.")
        lock = load_lock(lock_path)
        build = ctx.result("build")
        layout_dir = build.artifacts.get("oci_layout")
        manifests = {k.removeprefix("image.manifest."): v for k, v in build.facts.items()
                     if k.startswith("image.manifest.")}  # fmt: skip
        if layout_dir is None or not manifests:
            raise GateError("the build gate left no OCI layout to read the model files from.")
        layout = OciLayout(Path(layout_dir))
        expected = _expected_in_image(lock, base, pol.image_paths)
        prefixes = tuple(p.strip("/") + "/" for p in pol.image_paths.values())
        findings: list[Finding] = []
        checked = 0
        for platform, digest in sorted(manifests.items()):
            ctx.progress(self.name, f"reading model files from the image ({platform})")
            files = image_files(layout, digest, lambda n: n.startswith(prefixes))
            found = {n: f for n, f in files.items() if f.kind != "dir"}
            for image_path, entry in sorted(expected.items()):
                f = found.get(image_path)
                if f is None:
                    findings.append(
                        _image_finding(
                            "image-missing", image_path, platform, entry.sha256, None, entry.path
                        )
                    )
                elif f.kind != "file":
                    findings.append(
                        _image_finding(
                            "image-not-a-file",
                            image_path,
                            platform,
                            entry.sha256,
                            f.kind,
                            entry.path,
                        )
                    )
                elif f.sha256 != entry.sha256:
                    findings.append(
                        _image_finding(
                            "image-changed",
                            image_path,
                            platform,
                            entry.sha256,
                            f.sha256,
                            entry.path,
                        )
                    )
                checked += 1
            for name in sorted(found.keys() - expected.keys()):
                if any(fnmatch.fnmatchcase(name.rsplit("/", 1)[-1], p) for p in pol.ignore):
                    continue
                findings.append(
                    _image_finding("image-extra", name, platform, None, found[name].sha256, None)
                )
        return GateResult(
            IMAGE_GATE, Status.PASSED, findings=tuple(findings),
            facts={"checked": str(checked), "platforms": ",".join(sorted(manifests))},
        )  # fmt: skip


def _expected_in_image(
    lock: ModelsLock, base: Path, image_paths: dict[str, str]
) -> dict[str, LockEntry]:
    out: dict[str, LockEntry] = {}
    for local, image_dir in image_paths.items():
        local_rel = _clean(local).rstrip("/")
        for entry in lock.entries:
            rel = _rel(lock.base / entry.path, base)
            if rel == local_rel or rel.startswith(local_rel + "/"):
                rest = rel[len(local_rel) :].lstrip("/") or rel.rsplit("/", 1)[-1]
                out[f"{image_dir.strip('/')}/{rest}"] = entry
    return out


def _image_finding(
    kind: str,
    image_path: str,
    platform: str,
    pinned: str | None,
    actual: str | None,
    local: str | None,
) -> Finding:
    titles = {
        "image-missing": f"/{image_path} is pinned ({local}) but not in the image",
        "image-not-a-file": f"/{image_path} in the image is a {actual}, not the pinned file {local}",
        "image-changed": f"/{image_path} in the image does not match {local}: sha256 {actual}, pinned {pinned}",
        "image-extra": f"/{image_path} in the image is not pinned in models.lock",
    }
    evidence = {"platform": platform}
    if pinned:
        evidence["pinned_sha256"] = pinned
    if actual and kind != "image-not-a-file":
        evidence["image_sha256"] = actual
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
