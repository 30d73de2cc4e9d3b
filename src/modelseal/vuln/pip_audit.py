"""The pip-audit gate: the Python packages installed in the built image, checked against OSV.

For every platform image the gate extracts the package metadata (``*.dist-info`` /
``*.egg-info`` under any ``site-packages`` or ``dist-packages`` directory, after the layers'
whiteouts) and runs, per such directory::

    pip-audit --path DIR --strict -f json --progress-spinner off --cache-dir TMP -s osv
              [--osv-url URL/v1/query]

It never passes silently: pip-audit exits 1 both when it found vulnerabilities (JSON on stdout:
data) and when it could not audit something (no JSON: an error); every package found in the image
must appear, at the same version, in pip-audit's report, or the gate errors naming it. Severities
come from the advisory records on the same OSV service (``GET /v1/vulns/ID``): the highest CVSS
v3 base score, else the database's own rating, else UNKNOWN (the policy decides).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import importlib.metadata
import json
import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from modelseal import fsio
from modelseal._http import BoundedResponse, bounded_request
from modelseal._tools import find_tool, run_tool, tail
from modelseal.errors import Error, GateError, ToolError
from modelseal.findings import Finding, GateResult, Severity, Status
from modelseal.gates import RegisteredGate
from modelseal.imagefs import ImageFs, printable
from modelseal.oci import OciLayout, platform_manifests
from modelseal.pipeline import Context
from modelseal.vuln.cvss import CvssError, base_score, severity_from_score
from modelseal.vuln.findings import vuln_finding

GATE = "pip-audit"
#: The public OSV API (what pip-audit uses by default).
DEFAULT_OSV_URL = "https://api.osv.dev/v1/query"
#: Seconds one pip-audit run may take.
PIP_AUDIT_TIMEOUT = 900.0
#: Seconds one advisory look-up may take.
#: Wall-clock seconds of one request to the OSV service, connection to last byte.
OSV_REQUEST_SECONDS = 60.0
#: Bytes of one OSV answer (an advisory record is a few KiB; the largest are well under 1 MiB).
OSV_MAX_BYTES = 4 << 20
#: Environment variable naming another pip-audit executable.
PIP_AUDIT_ENV = "MODELSEAL_PIP_AUDIT"

#: Bytes of one METADATA / PKG-INFO file read from an image.
MAX_METADATA_BYTES = 16 << 20

_SITE_DIRS = ("site-packages", "dist-packages")
_META_SUFFIXES = (".dist-info", ".egg-info")
_DB_SEVERITY = {
    "CRITICAL": Severity.CRITICAL,
    "HIGH": Severity.HIGH,
    "MODERATE": Severity.MEDIUM,
    "MEDIUM": Severity.MEDIUM,
    "LOW": Severity.LOW,
}
_FATAL = re.compile(r"^ERROR:pip_audit\.[\w.]+:(.*)$", re.MULTILINE)
_HTTP_ERROR = re.compile(r"(\d{3} (?:Client|Server) Error: [^\n]*?) for url")


@dataclass(frozen=True)
class OsvEndpoint:
    """The OSV service: ``query_url`` for pip-audit, ``base`` for ``/v1/vulns/ID``."""

    base: str
    query_url: str
    default: bool

    @classmethod
    def from_policy(cls, osv_url: str | None) -> OsvEndpoint:
        """Accept ``https://host[/prefix]`` or the full ``…/v1/query`` URL."""
        url = (osv_url or DEFAULT_OSV_URL).rstrip("/")
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise GateError(f"pip_audit.osv_url {osv_url!r} is not an http(s) URL.")
        base = url.removesuffix("/v1/query")
        return cls(base=base, query_url=f"{base}/v1/query", default=osv_url is None)


@dataclass(frozen=True)
class InstalledPackage:
    """A distribution's metadata as found in the image."""

    name: str
    version: str
    site_dir: str  # image path, no leading "/"
    meta_path: str  # the .dist-info / .egg-info path in the image, no leading "/"


class PipAuditGate(RegisteredGate):
    """Gate ``pip-audit``: known vulnerabilities of the image's Python packages."""

    name = GATE

    def run(self, ctx: Context) -> GateResult:
        """Extract, audit, and look up severities; raises :class:`GateError` when any package
        could not be audited."""
        build = ctx.result("build")
        layout_dir = build.artifacts.get("oci_layout")
        manifests = platform_manifests(build.facts)
        if layout_dir is None or not manifests:
            raise GateError("the build gate left no OCI layout / image manifest to audit.")
        layout = OciLayout(Path(layout_dir))
        endpoint = OsvEndpoint.from_policy(ctx.policy.policy.pip_audit.osv_url)
        tool = find_tool(
            "pip-audit",
            env_var=PIP_AUDIT_ENV,
            hint="Install pip-audit into modelseal's environment (pip install pip-audit).",
        )
        facts: dict[str, str] = {
            "pip_audit.version": _tool_version(tool),
            "pip_audit.osv_url": endpoint.query_url,
        }
        lookup = _AdvisoryLookup(endpoint)
        findings: dict[tuple[str, str, str], Finding] = {}
        total = 0
        for index, (platform, digest) in enumerate(manifests.items()):
            ctx.progress(self.name, f"extracting Python package metadata ({platform})")
            root = ctx.work_dir / f"image-{index}"
            # What the image holds is a function of its digest: an earlier extraction is
            # reused. pip-audit's answers (a live service) are never cached.
            packages = ctx.cache.through(
                ctx.cache.key("pip-audit-extract", manifest=digest),
                functools.partial(extract_packages, layout, digest, root),
                dump=functools.partial(dump_extraction, root=root),
                load=functools.partial(load_extraction, root=root),
                facts=facts, label=f"pip_audit.cache.{platform}",
            )  # fmt: skip
            facts[f"pip_audit.packages.{platform}"] = str(len(packages))
            total += len(packages)
            by_site: dict[str, list[InstalledPackage]] = {}
            for p in packages:
                by_site.setdefault(p.site_dir, []).append(p)
            for site_dir, pkgs in sorted(by_site.items()):
                ctx.progress(
                    self.name, f"auditing /{printable(site_dir)} ({len(pkgs)} packages, {platform})"
                )
                report = run_pip_audit(
                    tool, root / site_dir, endpoint, ctx.work_dir / "cache", pkgs, lookup
                )
                for f in _findings(report, pkgs, site_dir, lookup):
                    key = (f.id, f.subject, f.location or "")
                    prev = findings.get(key)
                    if prev is None:
                        findings[key] = dataclasses.replace(
                            f, evidence={**f.evidence, "platforms": platform}
                        )
                    else:
                        platforms = f"{prev.evidence['platforms']},{platform}"
                        findings[key] = dataclasses.replace(
                            prev, evidence={**prev.evidence, "platforms": platforms}
                        )
        facts["pip_audit.packages"] = str(total)
        ordered = sorted(findings.values(), key=lambda f: (f.subject, f.location or "", f.id))
        return GateResult(self.name, Status.PASSED, findings=tuple(ordered), facts=facts)


def _tool_version(tool: str) -> str:
    # pip-audit installed beside modelseal (its script runs this very interpreter) is the
    # distribution this process sees: asking the script costs a Python start-up that imports
    # pip-audit (a third of a second, on the path of every run).
    if _runs_this_python(tool):
        try:
            return importlib.metadata.version("pip-audit")
        except importlib.metadata.PackageNotFoundError:
            pass
    result = run_tool([tool, "--version"], timeout=60.0)
    text = result.stdout.strip()
    if not text.startswith("pip-audit "):
        raise ToolError(
            f"{tool} --version printed {text[:80]!r}, not a pip-audit version.",
            command=f"{tool} --version",
            stderr_tail=tail(result.stderr),
        )
    return text.removeprefix("pip-audit ").strip()


def _runs_this_python(tool: str) -> bool:
    """Whether ``tool`` is a script whose ``#!`` line names this interpreter."""
    try:
        with open(tool, "rb") as f:
            first = f.readline(4096)
    except OSError:
        return False
    return first.rstrip(b"\r\n") == b"#!" + os.fsencode(sys.executable)


# --- extraction ---------------------------------------------------------------------------------


def _meta_index(parts: list[str]) -> int | None:
    """Index of the metadata dir/file segment when ``parts`` is at or under
    ``…/site-packages/NAME.dist-info``."""
    for i in range(len(parts) - 1):
        if parts[i] in _SITE_DIRS and parts[i + 1].endswith(_META_SUFFIXES):
            return i + 1
    return None


def extract_packages(layout: OciLayout, manifest_digest: str, root: Path) -> list[InstalledPackage]:
    """Extract the package metadata of one image into ``root`` (image paths kept) and read each
    distribution's name and version; unreadable metadata is an error naming the path.

    The image is read as a container sees it (:class:`ImageFs`): what a later layer deleted is
    gone, and a metadata path that is a symlink is followed inside the image, as pip would."""
    fsio.ensure_dir(root)
    fs = ImageFs.build(layout, manifest_digest)
    copies: dict[str, list[str]] = {}  # metadata file in the image → its paths under root
    metas: list[tuple[str, str]] = []  # (metadata dir/file, its metadata file), image paths
    for e in fs.walk():
        parts = e.path.split("/")
        if _meta_index(parts) != len(parts) - 1:
            continue
        meta_file, local = _metadata_file(fs, e.path)
        copies.setdefault(meta_file, []).append(local)
        metas.append((e.path, local))
    fs.extract({image: root / locals_[0] for image, locals_ in copies.items()})
    for locals_ in copies.values():
        for other in locals_[1:]:
            (root / other).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / locals_[0], root / other, follow_symlinks=False)
    packages: list[InstalledPackage] = []
    for meta, local in sorted(metas):
        text = (root / local).read_text(errors="replace")
        headers = HeaderParser().parsestr(text)
        name, version = headers.get("Name"), headers.get("Version")
        if not name or not version:
            raise GateError(
                f"/{printable(local)} in the image lacks a Name or Version header: the package cannot be "
                "audited."
            )
        site_dir = meta.rpartition("/")[0]
        packages.append(InstalledPackage(name.strip(), version.strip(), site_dir, meta))
    return packages


def dump_extraction(packages: list[InstalledPackage], root: Path) -> dict[str, Any]:
    """What :func:`extract_packages` found and wrote under ``root``, JSON-ready (for the
    evidence cache): the packages, and each extracted file's bytes (base64)."""
    files: dict[str, str] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            files[path.relative_to(root).as_posix()] = base64.b64encode(path.read_bytes()).decode(
                "ascii"
            )
    return {"packages": [dataclasses.asdict(p) for p in packages], "files": files}


def load_extraction(data: Any, root: Path) -> list[InstalledPackage]:
    """Inverse of :func:`dump_extraction`: checks the whole entry (an untrusted cache file),
    then writes its files under the empty ``root``; ValueError/TypeError/KeyError when the
    entry cannot be trusted."""
    packages = [
        InstalledPackage(**{k: _str(p[k]) for k in ("name", "version", "site_dir", "meta_path")})
        for p in data["packages"]
    ]
    files: dict[str, bytes] = {}
    for name, b64 in dict(data["files"]).items():
        parts = _str(name).split("/")
        if any(part in ("", ".", "..") for part in parts) or "\0" in name:
            raise ValueError(f"extracted file name {name!r} is not a plain relative path")
        if not any(part in _SITE_DIRS for part in parts):
            raise ValueError(f"extracted file {name!r} is not below a site-packages directory")
        content = base64.b64decode(_str(b64), validate=True)
        if len(content) > MAX_METADATA_BYTES:
            raise ValueError(f"extracted file {name!r} is larger than {MAX_METADATA_BYTES} bytes")
        files[name] = content
    for p in packages:
        if not (
            p.meta_path.startswith(p.site_dir + "/") and p.site_dir.split("/")[-1] in _SITE_DIRS
        ):
            raise ValueError(f"package {p.name!r} is not in a site-packages directory")
    fsio.ensure_dir(root)
    for name, content in files.items():
        fsio.write_bytes_atomic(root / name, content)
    return packages


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _metadata_file(fs: ImageFs, meta: str) -> tuple[str, str]:
    """Where the metadata of a ``*.dist-info`` / ``*.egg-info`` entry is: the file's image path
    (symlinks followed inside the image, as pip would) and its path as extracted; a GateError
    when pip would find none (it would skip the package, so it could not be audited)."""
    r = fs.resolve(meta)
    kind = r.entry.kind if r.entry is not None else None
    if kind == "file" and meta.endswith(".egg-info"):
        found, local = r, meta  # distutils' single-file PKG-INFO
    elif kind == "dir":
        name = "METADATA" if meta.endswith(".dist-info") else "PKG-INFO"
        found, local = fs.resolve(f"{r.resolved}/{name}"), f"{meta}/{name}"
    else:  # a .dist-info that is not a directory, a dangling or looping symlink …
        found, local = dataclasses.replace(r, entry=None), meta
    if found.entry is None or found.entry.kind != "file":
        what = found.problem or (
            found.entry.describe() if found.entry else r.entry.describe() if r.entry else "missing"
        )
        raise GateError(
            f"/{printable(meta)} in the image has no readable metadata file "
            f"(/{printable(found.resolved)}: {what}): "
            "pip-audit would skip this package, so it cannot be audited."
        )
    if found.entry.size > MAX_METADATA_BYTES:
        raise GateError(
            f"/{printable(found.resolved)} in the image is larger than {MAX_METADATA_BYTES} bytes; it is "
            "not read as package metadata."
        )
    return found.resolved, local


# --- running pip-audit --------------------------------------------------------------------------


def pip_audit_argv(tool: str, site_dir: Path, endpoint: OsvEndpoint, cache_dir: Path) -> list[str]:
    """The audit command for one extracted site-packages directory."""
    argv = [
        tool, "--path", str(site_dir), "--strict", "-f", "json", "--progress-spinner", "off",
        "--cache-dir", str(cache_dir), "-s", "osv",
    ]  # fmt: skip
    if not endpoint.default:
        argv += ["--osv-url", endpoint.query_url]
    return argv


def run_pip_audit(
    tool: str,
    site_dir: Path,
    endpoint: OsvEndpoint,
    cache_dir: Path,
    packages: list[InstalledPackage],
    lookup: _AdvisoryLookup,
) -> list[dict[str, Any]]:
    """Run pip-audit on one extracted site-packages directory; returns its ``dependencies``,
    checked to cover every package of ``packages`` at the same version."""
    argv = pip_audit_argv(tool, site_dir, endpoint, cache_dir)
    result = run_tool(argv, timeout=PIP_AUDIT_TIMEOUT, check=False, env={"PIP_NO_INPUT": "1"})
    shown = " ".join(argv)
    deps = _parse_report(result.stdout) if result.returncode in (0, 1) else None
    if deps is None:
        raise _explain_failure(result.returncode, result.stderr, shown, endpoint, packages, lookup)
    has_vulns = any(d.get("vulns") for d in deps)
    if result.returncode == 1 and not has_vulns:
        raise ToolError(
            "pip-audit exited with code 1 but reported no vulnerability: the audit is incomplete.",
            command=shown,
            stderr_tail=tail(result.stderr),
        )
    skipped = [f"{d.get('name')}: {d['skip_reason']}" for d in deps if d.get("skip_reason")]
    if skipped:
        raise GateError(
            "pip-audit skipped package(s) in /"
            + _image_path(site_dir, packages)
            + ": "
            + "; ".join(skipped)
        )
    _check_coverage(deps, packages)
    return deps


def _image_path(site_dir: Path, packages: list[InstalledPackage]) -> str:
    return printable(packages[0].site_dir if packages else site_dir.name)


def _parse_report(stdout: str) -> list[dict[str, Any]] | None:
    try:
        data = json.loads(stdout)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("dependencies"), list):
        return None
    deps: list[dict[str, Any]] = data["dependencies"]
    for d in deps:
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            return None
        vulns = d.get("vulns", [])
        if not isinstance(vulns, list) or not all(
            isinstance(v, dict) and isinstance(v.get("id"), str) for v in vulns
        ):
            return None
    return deps


def _explain_failure(
    code: int,
    stderr: str,
    command: str,
    endpoint: OsvEndpoint,
    packages: list[InstalledPackage],
    lookup: _AdvisoryLookup,
) -> Error:
    """Why pip-audit left no usable report: unreachable service, an HTTP error (naming the
    packages whose query fails), a package it could not audit, or a crash."""
    fatal = _FATAL.findall(stderr)
    if fatal:
        return GateError(
            "pip-audit could not audit every package: " + "; ".join(m.strip() for m in fatal),
            hint=f"Command: {command}",
        )
    if "ServiceError" in stderr or _HTTP_ERROR.search(stderr):
        m = _HTTP_ERROR.search(stderr)
        failing = lookup.failing_queries(packages)
        who = (
            " for "
            + ", ".join(f"{p.name} {p.version} (/{printable(p.meta_path)})" for p in failing)
            if failing
            else ""
        )
        return GateError(
            f"the OSV service {endpoint.query_url} answered an error{who}"
            + (f" ({m.group(1)})" if m else "")
            + ": those packages could not be audited.",
            hint=f"Command: {command}",
        )
    if re.search(r"ConnectionError|Connection refused|Max retries exceeded|ConnectTimeout", stderr):
        return GateError(
            f"the OSV service {endpoint.query_url} could not be reached: no package was audited.",
            hint="Check pip_audit.osv_url in the policy and the network.\n" + tail(stderr, 3),
        )
    return ToolError(
        f"pip-audit exited with code {code} without a JSON report.",
        command=command,
        stderr_tail=tail(stderr),
    )


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def _check_coverage(deps: list[dict[str, Any]], packages: list[InstalledPackage]) -> None:
    audited = {canonicalize_name(d["name"]): str(d.get("version", "")) for d in deps}
    problems = []
    for p in packages:
        got = audited.get(canonicalize_name(p.name))
        if got is None:
            problems.append(
                f"{p.name} {p.version} (/{printable(p.meta_path)}) is missing from its report"
            )
        elif not _same_version(got, p.version):
            problems.append(
                f"{p.name} (/{printable(p.meta_path)}) has version {p.version!r} but pip-audit audited {got!r}"
            )
    if problems:
        raise GateError("pip-audit did not audit every package: " + "; ".join(problems) + ".")


# --- findings and severities --------------------------------------------------------------------


def _findings(
    deps: list[dict[str, Any]],
    packages: list[InstalledPackage],
    site_dir: str,
    lookup: _AdvisoryLookup,
) -> Iterable[Finding]:
    meta = {canonicalize_name(p.name): p for p in packages}
    for d in deps:
        pkg = meta.get(canonicalize_name(d["name"]))
        location = (
            f"/{printable(pkg.meta_path)}"
            if pkg
            else f"/{printable(site_dir)}/{d['name']}-{d.get('version')}"
        )
        for v in d.get("vulns", []):
            vid: str = v["id"]
            aliases = [str(a) for a in v.get("aliases", []) if a]
            sev = lookup.severity(vid, aliases)
            description = " ".join(str(v.get("description") or "").split())
            if len(description) > 160:
                description = description[:159] + "…"
            yield vuln_finding(
                gate=GATE,
                id=vid,
                package=pkg.name if pkg else d["name"],
                version=str(d.get("version", "")),
                ecosystem="pypi",
                severity=sev.severity,
                title=f"{d['name']} {d.get('version')}: {description or vid}",
                fixed_in=_lowest(v.get("fix_versions", [])),
                location=location,
                aliases=aliases,
                cvss=sev.cvss,
                cvss_vector=sev.vector,
                url=f"https://osv.dev/vulnerability/{urllib.parse.quote(vid)}",
                severity_source=sev.source,
            )


def _lowest(versions: Iterable[object]) -> str | None:
    parsed: list[tuple[Version, str]] = []
    for text in versions:
        try:
            parsed.append((Version(str(text)), str(text)))
        except InvalidVersion:
            continue
    return min(parsed)[1] if parsed else None


@dataclass(frozen=True)
class AdvisorySeverity:
    """A severity and where it came from."""

    severity: Severity
    source: str
    cvss: float | None = None
    vector: str | None = None


def severity_of(records: Iterable[Mapping[str, Any]]) -> AdvisorySeverity:
    """The highest CVSS v3 base score of the records' ``severity[]``, else the highest
    ``database_specific.severity``, else UNKNOWN."""
    best: tuple[float, str] | None = None
    db: Severity | None = None
    for record in records:
        for entry in record.get("severity") or []:
            if not isinstance(entry, dict) or entry.get("type") != "CVSS_V3":
                continue
            try:
                score = base_score(str(entry.get("score", "")))
            except CvssError:
                continue
            if best is None or score.base_score > best[0]:
                best = (score.base_score, score.vector)
        specific = record.get("database_specific")
        rating = specific.get("severity") if isinstance(specific, dict) else None
        if isinstance(rating, str) and rating.upper() in _DB_SEVERITY:
            mapped = _DB_SEVERITY[rating.upper()]
            db = mapped if db is None or mapped > db else db
    if best is not None:
        return AdvisorySeverity(severity_from_score(best[0]), "osv:cvss", best[0], best[1])
    if db is not None:
        return AdvisorySeverity(db, "osv:database_specific")
    return AdvisorySeverity(Severity.UNKNOWN, "unknown")


def _osv_request(req: urllib.request.Request, what: str) -> BoundedResponse:
    """One OSV request, its answer capped at :data:`OSV_MAX_BYTES` and the whole exchange at
    :data:`OSV_REQUEST_SECONDS` of wall-clock time (a server dripping a byte at a time would
    otherwise hold the gate for as long as it likes); a breach is an :class:`HttpLimitError`
    naming the limit, which makes the gate ERRORED."""
    return bounded_request(
        req, seconds=OSV_REQUEST_SECONDS, max_bytes=OSV_MAX_BYTES, what=what,
        time_limit="OSV_REQUEST_SECONDS", size_limit="OSV_MAX_BYTES",
    )  # fmt: skip


class _AdvisoryLookup:
    """``GET {base}/v1/vulns/ID`` on the configured OSV service, cached per run."""

    def __init__(self, endpoint: OsvEndpoint) -> None:
        self.endpoint = endpoint
        self._cache: dict[str, dict[str, Any] | None] = {}

    def record(self, vid: str) -> dict[str, Any] | None:
        """The record, or ``None`` when the service does not know the id (404)."""
        if vid in self._cache:
            return self._cache[vid]
        url = f"{self.endpoint.base}/v1/vulns/{urllib.parse.quote(vid, safe='')}"
        try:
            resp = _osv_request(urllib.request.Request(url), f"the OSV service ({url})")  # noqa: S310
            if resp.status == 404:
                self._cache[vid] = None
                return None
            if resp.status != 200:
                raise GateError(f"the OSV service answered HTTP {resp.status} for {url}.")
            data = json.loads(resp.body)
        except (urllib.error.URLError, OSError, ValueError, RecursionError) as e:
            reason = getattr(e, "reason", None) or e
            raise GateError(f"cannot read the advisory {vid} from {url}: {reason}.") from None
        record = data if isinstance(data, dict) else None
        self._cache[vid] = record
        return record

    def severity(self, vid: str, aliases: Iterable[str]) -> AdvisorySeverity:
        """The severity of an advisory from its record and its aliases' records."""
        records: dict[str, dict[str, Any]] = {}
        for i in (vid, *aliases):
            r = self.record(i)
            if r is not None:
                records.setdefault(str(r.get("id", i)), r)
        return severity_of(records.values())

    def failing_queries(self, packages: Iterable[InstalledPackage]) -> list[InstalledPackage]:
        """The packages whose ``/v1/query`` the service answers with an error (diagnostics)."""
        failing = []
        for p in packages:
            body = json.dumps(
                {"package": {"name": p.name, "ecosystem": "PyPI"}, "version": p.version}
            ).encode()
            req = urllib.request.Request(  # noqa: S310
                self.endpoint.query_url, data=body, headers={"Content-Type": "application/json"}
            )
            try:
                resp = _osv_request(req, f"the OSV service ({self.endpoint.query_url})")
            except (urllib.error.URLError, OSError):
                return []
            if resp.status >= 400:
                failing.append(p)
        return failing
