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

The extraction is :mod:`modelseal.vuln.site_packages`, the OSV client and the severities
:mod:`modelseal.vuln.osv`; this module runs pip-audit and turns its report into findings.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from modelseal._tools import find_tool, run_tool, tail
from modelseal.errors import Error, GateError, ToolError
from modelseal.findings import Finding, GateResult, Status
from modelseal.gates import RegisteredGate
from modelseal.imagefs import printable
from modelseal.pipeline import Context
from modelseal.postbuild import built_layout, image_fs
from modelseal.vuln.findings import vuln_finding
from modelseal.vuln.osv import AdvisoryLookup, OsvEndpoint
from modelseal.vuln.site_packages import (
    InstalledPackage,
    dump_extraction,
    load_extraction,
    packages_from,
)

GATE = "pip-audit"
#: Seconds one pip-audit run may take.
PIP_AUDIT_TIMEOUT = 900.0
#: Environment variable naming another pip-audit executable.
PIP_AUDIT_ENV = "MODELSEAL_PIP_AUDIT"

_FATAL = re.compile(r"^ERROR:pip_audit\.[\w.]+:(.*)$", re.MULTILINE)
_HTTP_ERROR = re.compile(r"(\d{3} (?:Client|Server) Error: [^\n]*?) for url")


class PipAuditGate(RegisteredGate):
    """Gate ``pip-audit``: known vulnerabilities of the image's Python packages."""

    name = GATE

    def run(self, ctx: Context) -> GateResult:
        """Extract, audit, and look up severities; raises :class:`GateError` when any package
        could not be audited."""
        layout, manifests = built_layout(ctx, "/ image manifest to audit")
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
        lookup = AdvisoryLookup(endpoint)
        findings: dict[tuple[str, str, str], Finding] = {}
        total = 0
        for index, (platform, digest) in enumerate(manifests.items()):
            ctx.progress(self.name, f"extracting Python package metadata ({platform})")
            root = ctx.work_dir / f"image-{index}"

            # What the image holds is a function of its digest: an earlier extraction is
            # reused. pip-audit's answers (a live service) are never cached. The layers are
            # read once for this gate and models-image together (modelseal.postbuild).
            def extract(digest: str = digest, root: Path = root) -> list[InstalledPackage]:
                return packages_from(image_fs(ctx, layout, digest), root)

            packages = ctx.cache.through(
                ctx.cache.key("pip-audit-extract", manifest=digest),
                extract,
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
    lookup: AdvisoryLookup,
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
    lookup: AdvisoryLookup,
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


# --- findings -----------------------------------------------------------------------------------


def _findings(
    deps: list[dict[str, Any]],
    packages: list[InstalledPackage],
    site_dir: str,
    lookup: AdvisoryLookup,
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
